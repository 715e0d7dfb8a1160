"""Order books for strategies and tests, over the ``hotpath.book`` kernels.

``BookStore`` holds every instrument's book in the kernel's arrays and applies delta batches;
``BookView`` is a strategy's read-only window on one instrument; ``L2Book`` is a standalone
single-instrument book with float prices, for research code and tests.
"""

from __future__ import annotations

import numpy as np

from engine.messages import BOOK_DELTA, NO_PRICE, BookSide, DeltaAction
from hotpath.book import UNSET, apply_deltas, depth_levels, new_book_state


class BookStore:
    """Books for ``n_instruments`` instruments, each a window of ``window`` ticks."""

    def __init__(self, n_instruments: int, window: int = 4096) -> None:
        self.window = window
        self.bid_sz, self.ask_sz, self.base, self.best_bid, self.best_ask = new_book_state(
            n_instruments, window
        )
        self.changed = np.zeros(n_instruments, dtype=np.uint8)
        self._ids = np.zeros(n_instruments, dtype=np.int64)
        self._top = np.zeros((n_instruments, 4), dtype=np.int64)
        # Top of book as Python lists, refreshed per batch for the instruments that changed:
        # strategies read it many times per callback, and a list read is ~20x cheaper than a
        # numpy scalar read.
        self.tops: list[list[int]] = [[NO_PRICE, 0, NO_PRICE, 0] for _ in range(n_instruments)]
        self.skipped = 0
        self.crossed = 0
        self._px = np.zeros(window, dtype=np.int64)
        self._sz = np.zeros(window, dtype=np.int64)

    def warm_up(self) -> None:
        """Compile (or load from cache) the kernels now, not on the first market-data batch."""
        self.apply(np.zeros(0, dtype=BOOK_DELTA), 0)
        depth_levels(self.bid_sz[0], 0, self.base[0], 0, True, self._px, self._sz)

    def apply(self, deltas: np.ndarray, now: int) -> list[int]:
        """Apply a batch; returns the ids of instruments whose top of book changed."""
        n, skipped, crossed = apply_deltas(
            deltas, self.bid_sz, self.ask_sz, self.base, self.best_bid, self.best_ask,
            self.changed, self._ids, self._top, now,
        )  # fmt: skip
        if skipped:
            self.skipped += skipped
        if crossed:
            self.crossed += crossed
        if not n:
            return []
        ids = self._ids[:n].tolist()
        tops = self.tops
        for i, row in zip(ids, self._top[:n].tolist(), strict=True):
            tops[i] = row
        return ids

    def best_bid_ticks(self, i: int) -> int:
        return self.tops[i][0]

    def best_ask_ticks(self, i: int) -> int:
        return self.tops[i][2]

    def best_bid_size(self, i: int) -> int:
        return self.tops[i][1]

    def best_ask_size(self, i: int) -> int:
        return self.tops[i][3]

    def size_at(self, i: int, side: BookSide, ticks: int) -> int:
        if self.base[i] == UNSET:
            return 0
        k = ticks - int(self.base[i])
        if not 0 <= k < self.window:
            return 0
        return int((self.bid_sz if side == BookSide.BID else self.ask_sz)[i, k])

    def depth(self, i: int, side: BookSide, n: int) -> list[tuple[int, int]]:
        """Up to ``n`` levels from the best outwards, as ``(ticks, lots)``."""
        bid = side == BookSide.BID
        best = int(self.best_bid[i] if bid else self.best_ask[i])
        if best < 0:
            return []
        sizes = self.bid_sz[i] if bid else self.ask_sz[i]
        n = min(n, self.window)
        k = depth_levels(sizes, best, self.base[i], n, bid, self._px, self._sz)
        return list(zip(self._px[:k].tolist(), self._sz[:k].tolist(), strict=True))


class BookView:
    """A strategy's read-only view of one instrument's book (prices in ticks and in currency)."""

    __slots__ = ("_i", "_store", "instrument")

    def __init__(self, store: BookStore, instrument) -> None:
        self._store = store
        self._i = instrument.id
        self.instrument = instrument

    @property
    def bid_ticks(self) -> int:
        return self._store.best_bid_ticks(self._i)

    @property
    def ask_ticks(self) -> int:
        return self._store.best_ask_ticks(self._i)

    @property
    def bid_size(self) -> float:
        return self.instrument.from_lots(self._store.best_bid_size(self._i))

    @property
    def ask_size(self) -> float:
        return self.instrument.from_lots(self._store.best_ask_size(self._i))

    @property
    def bid(self) -> float | None:
        t = self.bid_ticks
        return None if t == NO_PRICE else self.instrument.from_ticks(t)

    @property
    def ask(self) -> float | None:
        t = self.ask_ticks
        return None if t == NO_PRICE else self.instrument.from_ticks(t)

    @property
    def mid_ticks(self) -> float | None:
        """Mid in ticks (may be a half tick), or None if either side is empty."""
        top = self._store.tops[self._i]
        b = top[0]
        a = top[2]
        if b == NO_PRICE or a == NO_PRICE:
            return None
        return (b + a) / 2

    @property
    def mid(self) -> float | None:
        m = self.mid_ticks
        return None if m is None else m * self.instrument.tick_size

    def depth(self, side: BookSide, n: int) -> list[tuple[float, float]]:
        inst = self.instrument
        return [
            (inst.from_ticks(t), inst.from_lots(s)) for t, s in self._store.depth(self._i, side, n)
        ]


class L2Book:
    """A single-instrument L2 book with float prices and sizes.

    ``side`` is ``"bid"``/``"ask"`` or a ``BookSide``; a size of 0 deletes the level.
    """

    def __init__(self, tick_size: float, lot_size: float = 1.0, window: int = 4096) -> None:
        self.tick_size = tick_size
        self.lot_size = lot_size
        self._store = BookStore(1, window)
        self._one = np.zeros(1, dtype=BOOK_DELTA)

    @staticmethod
    def _side(side: str | int) -> int:
        if isinstance(side, str):
            return BookSide.BID if side.lower() in ("bid", "b", "buy") else BookSide.ASK
        return int(side)

    def apply(self, side: str | int, price: float, size: float) -> None:
        d = self._one
        d["side"] = self._side(side)
        d["action"] = DeltaAction.SET
        d["price"] = round(price / self.tick_size)
        d["size"] = round(size / self.lot_size)
        self._store.apply(d, 0)

    def apply_batch(self, sides: np.ndarray, prices: np.ndarray, sizes: np.ndarray) -> None:
        """Apply many level updates; ``sides`` holds 0 (bid) / 1 (ask)."""
        d = np.zeros(len(prices), dtype=BOOK_DELTA)
        d["side"] = sides
        d["price"] = np.rint(np.asarray(prices) / self.tick_size)
        d["size"] = np.rint(np.asarray(sizes) / self.lot_size)
        self._store.apply(d, 0)

    def _level(self, ticks: int, lots: int) -> tuple[float, float] | None:
        if ticks == NO_PRICE:
            return None
        return ticks * self.tick_size, lots * self.lot_size

    def best_bid(self) -> tuple[float, float] | None:
        return self._level(self._store.best_bid_ticks(0), self._store.best_bid_size(0))

    def best_ask(self) -> tuple[float, float] | None:
        return self._level(self._store.best_ask_ticks(0), self._store.best_ask_size(0))

    def depth(self, side: str | int, n: int) -> list[tuple[float, float]]:
        return [
            (t * self.tick_size, s * self.lot_size)
            for t, s in self._store.depth(0, self._side(side), n)
        ]

    @property
    def skipped(self) -> int:
        return self._store.skipped

    @property
    def crossed(self) -> int:
        return self._store.crossed
