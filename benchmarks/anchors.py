"""Anchors measured in the same run as our figures, so reports are ratios, not absolute numbers
from a shared, noisy machine: a uvloop loopback TCP round trip (one network hop's floor), and
the jitter of a fixed piece of work (what the machine does to a tail that is not ours)."""

from __future__ import annotations

import asyncio
import gc
import socket
import time

import numpy as np
import uvloop


class _Echo(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _Client(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future | None = None

    def connection_made(self, transport) -> None:
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


async def echo_rounds(port: int, rounds: int, size: int, warmup: int = 200) -> np.ndarray:
    """Round-trip times (ns) of ``size``-byte writes to the echo server on ``port``."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(_Client, "127.0.0.1", port)
    payload = b"x" * size
    out = np.zeros(rounds, dtype=np.int64)
    try:
        for k in range(rounds + warmup):
            client.waiter = loop.create_future()
            t0 = time.perf_counter_ns()
            transport.write(payload)
            await client.waiter
            if k >= warmup:
                out[k - warmup] = time.perf_counter_ns() - t0
    finally:
        transport.close()
    return out


def loopback_rtt_ns(rounds: int = 5000, size: int = 64) -> np.ndarray:
    """Round-trip times of ``size``-byte messages over 127.0.0.1 on uvloop (protocol API)."""

    async def main() -> np.ndarray:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await echo_rounds(port, rounds, size)
        finally:
            server.close()
            await server.wait_closed()

    return uvloop.run(main())


def _spin(n: int) -> int:
    acc = 0
    for k in range(n):
        acc += k * k
    return acc


def fixed_work_ns(target_ns: float, samples: int = 5000) -> np.ndarray:
    """Durations of one fixed piece of pure-Python work sized to take about ``target_ns``.

    The work never changes, so its spread (p99 against p50) is the machine's: preemption by
    other tenants, interrupts, frequency changes. Sized like a latency figure's p50, its p99 is
    the tail that figure would have from the machine alone. Garbage collection is off, as in
    the latency harness.
    """
    clock = time.perf_counter_ns

    def median_ns(n: int) -> float:
        runs = []
        for _ in range(31):
            t0 = clock()
            _spin(n)
            runs.append(clock() - t0)
        return float(np.median(runs))

    n = 256
    for _ in range(3):  # scale the loop count to the target by the median of short trials
        n = max(1, round(n * target_ns / max(median_ns(n), 1.0)))
    out = np.empty(samples, dtype=np.int64)
    was = gc.isenabled()
    gc.disable()
    try:
        for i in range(samples):
            t0 = clock()
            _spin(n)
            out[i] = clock() - t0
    finally:
        if was:
            gc.enable()
    return out
