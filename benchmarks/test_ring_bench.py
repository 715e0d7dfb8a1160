"""Ring write + drain per message, from Python, against the queues a naive engine would use.

Each round moves 256 messages through the ring (the consumer drains in one batch, as the pump
does); pytest-benchmark reports per round, ``benchmarks/run.py`` divides by 256.
"""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np

from engine.messages import BOOK_DELTA, OrderEvent
from engine.ring import ArrayRing, ObjectRing

N = 256


def _sink(_msg) -> None:
    return None


def test_object_ring_write_drain(benchmark):
    """Order flow: claim a pooled slot, set 4 fields; drain with a handler call per message."""
    ring = ObjectRing("bench", OrderEvent, 1024)

    def go() -> None:
        claim = ring.claim
        for i in range(N):
            ev = claim()
            ev.client_order_id = i
            ev.fill_lots = i
            ev.fill_price_ticks = i
            ev.ts_recv = i
        ring.drain(_sink, N)

    benchmark.extra_info["messages_per_round"] = N
    benchmark(go)
    assert ring.head == ring.tail


def test_array_ring_batch_write_read(benchmark):
    """Market data: one batch of 256 book deltas written and read back as a view."""
    ring = ArrayRing("bench", BOOK_DELTA, 65536)
    batch = np.zeros(N, dtype=BOOK_DELTA)
    batch["price"] = np.arange(N)

    def go() -> None:
        ring.write(batch)
        view = ring.read(N)
        assert len(view) == N

    benchmark.extra_info["messages_per_round"] = N
    benchmark(go)


def test_anchor_deque(benchmark):
    """Anchor: collections.deque append + popleft of a tuple, handler call per message."""
    q: deque = deque()

    def go() -> None:
        append = q.append
        for i in range(N):
            append((i, i, i, i))
        popleft = q.popleft
        for _ in range(N):
            _sink(popleft())

    benchmark.extra_info["messages_per_round"] = N
    benchmark(go)


def test_anchor_asyncio_queue(benchmark):
    """Anchor: asyncio.Queue put_nowait + get_nowait, the usual actor mailbox."""
    q: asyncio.Queue = asyncio.Queue()

    def go() -> None:
        for i in range(N):
            q.put_nowait((i, i, i, i))
        for _ in range(N):
            _sink(q.get_nowait())

    benchmark.extra_info["messages_per_round"] = N
    benchmark(go)
