"""SMA crossover: long ``target`` when the fast average of the mid is above the slow one,
short ``target`` when below, with market orders for the difference (in whole lots).

While the engine is HALTED it sends nothing; while REDUCING it trades only toward flat (a
flip is cut to a close), so it never sends an order the risk gate must refuse on every
sample."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.book import BookView
from engine.messages import EventKind, OrderEvent
from engine.risk_gate import TradingState
from engine.strategy import ParamError, Strategy

_GONE = (EventKind.REJECTED, EventKind.CANCELLED, EventKind.EXPIRED)  # no longer working


@dataclass(frozen=True, slots=True)
class SmaParams:
    fast: int = 20
    slow: int = 100
    target: float = 100.0
    sample_every: int = 1  # use every Nth book update as a sample

    def validate(self) -> None:
        if self.fast < 1:
            raise ParamError("fast", f"must be a number of samples >= 1, got {self.fast}")
        if self.fast >= self.slow:
            raise ParamError("fast", f"must be below slow ({self.slow}), got {self.fast}")
        if not (math.isfinite(self.target) and self.target > 0):
            raise ParamError("target", f"must be a position size > 0, got {self.target}")
        if self.sample_every < 1:
            raise ParamError("sample_every", f"must be >= 1, got {self.sample_every}")


class _Window:
    """A running mean over the last ``n`` samples, in a preallocated circular list."""

    __slots__ = ("_buf", "_i", "count", "n", "total")

    def __init__(self, n: int) -> None:
        self.n = n
        self._buf = [0.0] * n
        self._i = 0
        self.count = 0
        self.total = 0.0

    def push(self, x: float) -> None:
        i = self._i
        self.total += x - self._buf[i]
        self._buf[i] = x
        self._i = (i + 1) % self.n
        if self.count < self.n:
            self.count += 1

    @property
    def full(self) -> bool:
        return self.count == self.n

    @property
    def mean(self) -> float:
        return self.total / self.count


class SmaCrossover(Strategy):
    Params = SmaParams

    def on_start(self) -> None:
        p: SmaParams = self.params
        self._fast = {i.id: _Window(p.fast) for i in self.instruments}
        self._slow = {i.id: _Window(p.slow) for i in self.instruments}
        self._seen = dict.fromkeys(self._fast, 0)
        self._pending: dict[int, int] = {}  # instrument id -> working client order id
        self.signals = 0

    def on_book(self, book: BookView) -> None:
        mid = book.mid_ticks
        if mid is None:
            return
        i = book.instrument.id
        p: SmaParams = self.params
        seen = self._seen
        n = seen[i] + 1
        seen[i] = n
        if n % p.sample_every:
            return
        fast = self._fast[i]
        slow = self._slow[i]
        fast.push(mid)
        slow.push(mid)
        if not slow.full or i in self._pending:
            return
        state = self.trading_state
        if state is TradingState.HALTED:
            return
        inst = book.instrument
        want = p.target if fast.mean > slow.mean else -p.target
        have = self.position(inst)
        if state is TradingState.REDUCING and not (want * have > 0 and abs(want) <= abs(have)):
            want = 0.0  # only toward flat: a flip or an addition would be refused
        # In lots: a position of 3 x 0.1 is 0.30000000000000004, and the float difference
        # would be a dust order the gate refuses (NOT_WHOLE_LOTS) on every sample.
        lots = inst.to_lots(want - have)
        if lots:
            self.signals += 1
            send = self.buy if lots > 0 else self.sell
            self._pending[i] = send(inst, inst.from_lots(abs(lots)))

    def on_fill(self, fill: OrderEvent) -> None:
        if fill.leaves_lots == 0 and self._pending.get(fill.instrument_id) == fill.client_order_id:
            del self._pending[fill.instrument_id]

    def on_order(self, event: OrderEvent) -> None:
        # Rejected, cancelled or expired: the position target will be retried on the next signal.
        if event.kind in _GONE and self._pending.get(event.instrument_id) == event.client_order_id:
            del self._pending[event.instrument_id]
