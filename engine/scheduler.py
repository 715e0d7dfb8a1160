"""Run-to-completion pumping of the rings, highest priority first.

Producers (a socket's ``data_received``, a timer, a strategy callback) write into rings and call
``pump()``; the pump drains lanes in priority order until every ring is empty. After each batch it
starts again from the top, so an order command or order event produced while market data is being
handled goes before the rest of that market data (NautilusTrader's runner orders its work the same
way: commands, then events, then data). There is no asyncio task per message: the event loop only
delivers I/O and timers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Priority(IntEnum):
    ORDER_COMMANDS = 0
    ORDER_EVENTS = 1
    MARKET_DATA = 2


class _Ring(Protocol):
    name: str
    head: int
    tail: int


@dataclass(slots=True)
class Lane:
    ring: _Ring
    drain: Callable[[int], object]
    batch: int
    priority: Priority
    errors: int = 0


class Scheduler:
    """Drains registered lanes in priority order; re-entrant calls fold into the running pump."""

    def __init__(self) -> None:
        self._lanes: list[Lane] = []
        self._pumping = False
        self.pumps = 0

    def add_lane(
        self, ring: _Ring, drain: Callable[[int], object], batch: int, priority: Priority
    ) -> Lane:
        lane = Lane(ring, drain, batch, priority)
        self._lanes.append(lane)
        # Stable sort: lanes of equal priority keep registration order.
        self._lanes.sort(key=lambda lane_: lane_.priority)
        return lane

    @property
    def pumping(self) -> bool:
        """Whether a pump is running (work is being drained)."""
        return self._pumping

    def pump(self) -> None:
        """Drain every lane to empty, restarting from the highest priority after each batch."""
        if self._pumping:
            return
        self._pumping = True
        self.pumps += 1
        lanes = self._lanes
        try:
            while True:
                for lane in lanes:
                    ring = lane.ring
                    if ring.tail != ring.head:
                        try:
                            lane.drain(lane.batch)
                        except Exception:
                            lane.errors += 1
                            log.exception("lane %r: a batch failed and was skipped", ring.name)
                        break
                else:
                    return
        finally:
            self._pumping = False


class BusyPoll:
    """Keeps the event loop polling its sockets without blocking (``[engine] busy_poll``).

    A callback that schedules itself again with ``call_soon`` makes every loop iteration poll
    for I/O with a zero timeout instead of sleeping in ``epoll_wait``: the CPU never goes idle,
    so a read is picked up within one iteration (a few µs) and the caches and branch predictors
    are not handed to whatever else the core runs while it would sleep (on a VM, an idle vCPU
    halts and the host runs other work on its core). It costs one core at 100 %. Timers still
    fire on time: the loop runs them on every iteration.
    """

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._handle: Any = None
        self.spins = 0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self._handle is None:
            self._handle = self._loop.call_soon(self._spin)

    def stop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()

    def _spin(self) -> None:
        if self._handle is not None:
            self.spins += 1
            self._handle = self._loop.call_soon(self._spin)
