"""Anchors measured in the same run as our figures, so reports are ratios, not absolute numbers
from a shared, noisy machine: a uvloop loopback TCP round trip (one network hop's floor)."""

from __future__ import annotations

import asyncio
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
