"""Clocks: nanosecond time and timers, live on the event loop or simulated for replay.

Both clocks answer ``now()`` in nanoseconds since the Unix epoch. The live clock derives it from
``perf_counter_ns`` plus an epoch offset taken once at start-up, so stage-to-stage differences are
monotonic (never jump with NTP) while absolute values still line up with venue timestamps.
Timers go through the clock so a strategy's ``on_timer`` runs unchanged in replay and live.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> int: ...

    def call_later(self, delay_ns: int, callback: Callable[[], object]) -> TimerHandle: ...


class LiveClock:
    """Wall-clock-aligned monotonic nanoseconds; timers on the asyncio (uvloop) loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._offset = time.time_ns() - time.perf_counter_ns()
        self._loop = loop

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def now(self) -> int:
        return time.perf_counter_ns() + self._offset

    def call_later(self, delay_ns: int, callback: Callable[[], object]) -> TimerHandle:
        if self._loop is None:
            raise RuntimeError("LiveClock has no event loop yet: bind() it before setting timers")
        return self._loop.call_later(max(delay_ns, 0) / 1e9, callback)


class _SimTimer:
    __slots__ = ("callback", "cancelled")

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SimClock:
    """Time that moves only when told to; due timers fire in time order as it advances."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._heap: list[tuple[int, int, _SimTimer]] = []
        self._seq = itertools.count()

    def now(self) -> int:
        return self._now

    def call_later(self, delay_ns: int, callback: Callable[[], object]) -> TimerHandle:
        timer = _SimTimer(callback)
        heapq.heappush(self._heap, (self._now + max(delay_ns, 0), next(self._seq), timer))
        return timer

    def next_due(self) -> int | None:
        """When the earliest pending timer fires, or None."""
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def advance_to(self, ts_ns: int) -> int:
        """Move time forward to ``ts_ns`` firing every timer due on the way; returns how many."""
        fired = 0
        heap = self._heap
        while heap and heap[0][0] <= ts_ns:
            due, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            self._now = max(self._now, due)
            timer.callback()
            fired += 1
        self._now = max(self._now, ts_ns)
        return fired
