"""A plain-Python reference for the ``hotpath.book`` kernels: the books as they should be.

Per instrument and side, a ``sortedcontainers.SortedDict`` of ticks to lots for the price-level
form (``SET``, size 0 deletes) and a list of IB depth rows ``[ticks, lots, mm_id]`` for the
position-based form (``INSERT`` / ``UPDATE`` / ``DELETE`` at a row, as TWS defines them). The
price-level view of a side is the sum of both at each price (an instrument uses one form).
There is no window here: every level is kept, wherever it is.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sortedcontainers import SortedDict

from engine.messages import BOOK_DELTA, NO_PRICE, BookSide, DeltaAction

BID, ASK = int(BookSide.BID), int(BookSide.ASK)
SET, INSERT, UPDATE, DELETE, CLEAR = (
    int(DeltaAction.SET),
    int(DeltaAction.INSERT),
    int(DeltaAction.UPDATE),
    int(DeltaAction.DELETE),
    int(DeltaAction.CLEAR),
)
PRICE_LIMIT = 1 << 62


class Delta(NamedTuple):
    instrument: int
    action: int
    side: int = BID
    price: int = 0
    size: int = 0
    position: int = 0
    mm: int = 0


def to_deltas(rows: list[Delta] | list[tuple]) -> np.ndarray:
    """A ``BOOK_DELTA`` batch from ``Delta`` tuples."""
    d = np.zeros(len(rows), dtype=BOOK_DELTA)
    for k, r in enumerate(rows):
        r = Delta(*r)
        d[k]["instrument_id"] = r.instrument
        d[k]["action"] = r.action
        d[k]["side"] = r.side
        d[k]["price"] = r.price
        d[k]["size"] = r.size
        d[k]["position"] = r.position
        d[k]["mm_id"] = r.mm
    return d


class RefBooks:
    def __init__(self, n: int, max_rows: int) -> None:
        self.n = n
        self.max_rows = max_rows
        self.levels = [(SortedDict(), SortedDict()) for _ in range(n)]
        self.rows: list[tuple[list[list[int]], list[list[int]]]] = [([], []) for _ in range(n)]

    def apply(self, batch: list[Delta]) -> tuple[int, set[int], int]:
        """Apply in order; returns ``(skipped, instruments whose top changed, crossed)``."""
        before = [self.top(i) for i in range(self.n)]
        skipped = sum(0 if self._apply_one(Delta(*d)) else 1 for d in batch)
        changed = {i for i in range(self.n) if self.top(i) != before[i]}
        crossed = sum(1 for i in changed if self.is_crossed(i))
        return skipped, changed, crossed

    def _apply_one(self, d: Delta) -> bool:
        """Apply one delta; False if it is invalid (and then it changes nothing)."""
        if not 0 <= d.instrument < self.n:
            return False
        if d.action == CLEAR:
            for s in (BID, ASK):
                self.levels[d.instrument][s].clear()
                self.rows[d.instrument][s].clear()
            return True
        if d.side not in (BID, ASK) or d.action not in (SET, INSERT, UPDATE, DELETE):
            return False
        if d.action != DELETE and (d.size < 0 or not -PRICE_LIMIT < d.price < PRICE_LIMIT):
            return False
        if d.action == SET:
            levels = self.levels[d.instrument][d.side]
            if d.size:
                levels[d.price] = d.size
            else:
                levels.pop(d.price, None)
            return True
        rows = self.rows[d.instrument][d.side]
        row = [d.price, d.size, d.mm]
        if d.action == INSERT:
            if not 0 <= d.position <= len(rows):
                return False
            rows.insert(d.position, row)
            del rows[self.max_rows :]  # rows pushed past the last one fall off
        elif not 0 <= d.position < len(rows):
            return False
        elif d.action == UPDATE:
            rows[d.position] = row
        else:
            del rows[d.position]
        return True

    def view(self, i: int, side: int) -> SortedDict:
        """The side's price levels, ticks to lots (levels of 0 lots are no levels)."""
        out = SortedDict(self.levels[i][side])
        for price, size, _ in self.rows[i][side]:
            out[price] = out.get(price, 0) + size
        return SortedDict({p: q for p, q in out.items() if q > 0})

    def depth(self, i: int, side: int, n: int) -> list[tuple[int, int]]:
        items = list(self.view(i, side).items())
        return (items[::-1] if side == BID else items)[:n]

    def best(self, i: int, side: int) -> tuple[int, int]:
        top = self.depth(i, side, 1)
        return top[0] if top else (NO_PRICE, 0)

    def top(self, i: int) -> tuple[int, int, int, int]:
        return (*self.best(i, BID), *self.best(i, ASK))

    def is_crossed(self, i: int) -> bool:
        bid, _, ask, _ = self.top(i)
        return bid != NO_PRICE and ask != NO_PRICE and bid >= ask

    def rows_of(self, i: int, side: int) -> list[tuple[int, int, int]]:
        return [tuple(r) for r in self.rows[i][side]]
