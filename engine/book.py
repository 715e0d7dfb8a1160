"""Order books for strategies and tests, over the ``hotpath.book`` kernels.

``BookStore`` holds every instrument's book in the kernel's arrays and applies delta batches;
``BookView`` is a strategy's read-only window on one instrument; ``L2Book`` is a standalone
single-instrument book with float prices, for research code and tests.
"""

from __future__ import annotations

import logging

import numpy as np

from engine.messages import BOOK_DELTA, NO_PRICE, BookSide, DeltaAction
from hotpath.book import (
    BASE,
    NOVF,
    NROWS,
    apply_deltas,
    apply_levels,
    apply_span,
    depth_levels,
    grow_overflow,
    new_book_state,
)
from hotpath.jit import entry

log = logging.getLogger(__name__)

_APPLY_ENTRY = entry(apply_deltas)
_SPAN_ENTRY = entry(apply_span)


class BookStore:
    """Books for ``n_instruments`` instruments: a window of ``window`` ticks each, plus overflow.

    ``overflow`` is the initial number of levels per side kept outside the window; the store
    doubles it (for every instrument, outside the kernel, with a warning) when an instrument needs
    more, up to ``max_overflow``. A level that does not fit even then is counted in ``dropped``.
    ``max_rows`` is the number of IB depth rows kept per side.
    """

    def __init__(
        self,
        n_instruments: int,
        window: int = 4096,
        *,
        overflow: int = 256,
        max_overflow: int = 16384,
        max_rows: int = 64,
    ) -> None:
        self.window = window
        self.max_overflow = max(max_overflow, overflow)
        self.levels, self.ovf_px, self.ovf_sz, self.rows, self.meta = new_book_state(
            n_instruments, window, overflow, max_rows
        )
        self._scratch = np.zeros((2, window + overflow), dtype=np.int64)
        self._ids = np.zeros(n_instruments, dtype=np.int64)
        self._top = np.zeros((n_instruments, 4), dtype=np.int64)
        self._px = np.zeros(window + overflow, dtype=np.int64)
        self._sz = np.zeros(window + overflow, dtype=np.int64)
        self._work = np.zeros(256, dtype=BOOK_DELTA)  # apply_levels' scratch batch
        self._span_buffer: np.ndarray | None = None  # the ring buffer apply_span last checked
        # Top of book as Python lists, refreshed per batch for the instruments that changed:
        # strategies read it many times per callback, and a list read is ~20x cheaper than a
        # numpy scalar read.
        self.tops: list[list[int]] = [[NO_PRICE, 0, NO_PRICE, 0] for _ in range(n_instruments)]
        self.skipped = 0
        """Invalid deltas: instrument out of range, unknown action or side, negative size, ..."""
        self.crossed = 0
        """Instruments found crossed or locked (bid >= ask) after a batch that changed their top."""
        self.crossed_ids: list[int] = []
        """Instruments whose top the last batch changed and left crossed or locked."""
        self.dropped = 0
        """Levels not stored: outside the window with the overflow at ``max_overflow``."""
        self.overflow_grows = 0

    @property
    def overflow(self) -> int:
        """Levels per side each instrument can keep outside its window now."""
        return self.ovf_px.shape[2]

    def warm_up(self) -> None:
        """Compile (or load from cache) the kernels now, not on the first market-data batch."""
        self.apply(np.zeros(0, dtype=BOOK_DELTA), 0)
        self._levels(0, np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), 1.0, 1.0)
        if self.tops:
            self.depth(0, BookSide.BID, 0)

    def apply(self, deltas: np.ndarray, now: int) -> list[int]:
        """Apply a batch; returns the ids of instruments whose top of book changed."""
        # A contiguous BOOK_DELTA batch (every ring read) enters the kernel directly; anything
        # else goes through the dispatcher, which checks its type (``hotpath.jit.entry``).
        kernel = (
            _APPLY_ENTRY
            if deltas.dtype is BOOK_DELTA and deltas.flags.c_contiguous and deltas.ndim == 1
            else apply_deltas
        )
        end, n, skipped, crossed = kernel(
            deltas, 0, 0, self.levels, self.ovf_px, self.ovf_sz, self.rows, self.meta,
            self._ids, self._top, self._scratch, now,
        )  # fmt: skip
        while end < len(deltas):  # rare: an overflow is full
            start = end if self._make_room(int(deltas[end]["instrument_id"])) else end + 1
            end, n, more, crossed = apply_deltas(
                deltas, start, n, self.levels, self.ovf_px, self.ovf_sz, self.rows, self.meta,
                self._ids, self._top, self._scratch, now,
            )  # fmt: skip
            skipped += more
        return self._finish(n, skipped, crossed)

    def apply_span(
        self, buffer: np.ndarray, start: int, end: int, now: int
    ) -> tuple[list[int], int]:
        """Apply rows ``buffer[start:end]`` of a ring's ``BOOK_DELTA`` buffer in place (a ring
        read, ``ArrayRing.read_span``, with no view made); returns ``apply``'s ids and the
        ``ts_recv`` of the first row (0 if there is none)."""
        if buffer is not self._span_buffer:  # checked once per buffer: the entry point does not
            if not (buffer.dtype is BOOK_DELTA and buffer.ndim == 1 and buffer.flags.c_contiguous):
                raise TypeError(
                    "apply_span takes a contiguous 1-d buffer of BOOK_DELTA rows (a ring's), "
                    f"not {buffer.dtype} of shape {buffer.shape}"
                )
            self._span_buffer = buffer
        stop, n, skipped, crossed, ts_recv = _SPAN_ENTRY(
            buffer, start, end, 0, self.levels, self.ovf_px, self.ovf_sz, self.rows, self.meta,
            self._ids, self._top, self._scratch, now,
        )  # fmt: skip
        while stop < end:  # rare: an overflow is full
            first = stop if self._make_room(int(buffer[stop]["instrument_id"])) else stop + 1
            stop, n, more, crossed, _ = _SPAN_ENTRY(
                buffer, first, end, n, self.levels, self.ovf_px, self.ovf_sz, self.rows,
                self.meta, self._ids, self._top, self._scratch, now,
            )  # fmt: skip
            skipped += more
        return self._finish(n, skipped, crossed), ts_recv

    def apply_levels(
        self, i: int, sides: np.ndarray, prices: np.ndarray, sizes: np.ndarray,
        tick: float, lot: float,
    ) -> list[int]:  # fmt: skip
        """Set levels of instrument ``i`` from float prices and sizes (``L2Book``'s batch form).

        ``sides`` holds 0 (bid) / 1 (ask), ``prices`` and ``sizes`` are in currency and units,
        rounded to ``tick`` and ``lot``; a size of 0 deletes the level. Arrays of other dtypes
        or layouts are converted first.
        """
        return self._levels(
            i,
            np.ascontiguousarray(sides, dtype=np.int64),
            np.ascontiguousarray(prices, dtype=np.float64),
            np.ascontiguousarray(sizes, dtype=np.float64),
            float(tick),
            float(lot),
        )

    def _levels(self, i, sides, prices, sizes, tick, lot) -> list[int]:
        if len(prices) > len(self._work):
            self._work = np.zeros(max(len(prices), 2 * len(self._work)), dtype=BOOK_DELTA)
        end, n, skipped, crossed = apply_levels(
            sides, prices, sizes, tick, lot, i, self._work, 0, 0, self.levels, self.ovf_px,
            self.ovf_sz, self.rows, self.meta, self._ids, self._top, self._scratch,
        )  # fmt: skip
        while end < len(prices):  # rare: the overflow is full
            start = end if self._make_room(i) else end + 1
            end, n, more, crossed = apply_levels(
                sides, prices, sizes, tick, lot, i, self._work, start, n, self.levels,
                self.ovf_px, self.ovf_sz, self.rows, self.meta, self._ids, self._top,
                self._scratch,
            )  # fmt: skip
            skipped += more
        return self._finish(n, skipped, crossed)

    def _make_room(self, i: int) -> bool:
        """Grow every instrument's overflow (instrument ``i`` needs it), else count a drop."""
        old = self.overflow
        if old >= self.max_overflow:
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # log the 1st, 2nd, 4th, 8th, ...
                log.error(
                    "book of instrument %d: a level outside the %d-tick window was dropped: the "
                    "overflow holds max_overflow=%d levels per side (%d dropped so far); raise "
                    "max_overflow or the book window",
                    i, self.window, self.max_overflow, self.dropped,
                )  # fmt: skip
            return False
        new = min(2 * old, self.max_overflow)
        self.ovf_px, self.ovf_sz = grow_overflow(self.ovf_px, self.ovf_sz, new)
        size = self.window + new
        self._scratch = np.zeros((2, size), dtype=np.int64)
        self._px = np.zeros(size, dtype=np.int64)
        self._sz = np.zeros(size, dtype=np.int64)
        self.overflow_grows += 1
        log.warning(
            "book of instrument %d: more than %d levels per side outside the %d-tick window; "
            "overflow grown to %d levels per side for every instrument",
            i, old, self.window, new,
        )  # fmt: skip
        return True

    def _finish(self, n: int, skipped: int, crossed: int) -> list[int]:
        if skipped:
            self.skipped += skipped
        if not n:
            if self.crossed_ids:
                self.crossed_ids = []
            return []
        ids = self._ids[:n].tolist()
        rows = self._top[:n].tolist()
        tops = self.tops
        for k in range(n):  # an index loop: a third cheaper than zip(strict=True) here
            tops[ids[k]] = rows[k]
        if crossed:
            self.crossed += crossed
            self.crossed_ids = [
                i for i in ids if tops[i][2] != NO_PRICE and tops[i][0] >= tops[i][2]
            ]
        elif self.crossed_ids:
            self.crossed_ids = []
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
        """Lots at ``ticks`` on ``side`` (0 if there is no level there)."""
        s = int(side)
        k = ticks - int(self.meta[i, BASE])
        if 0 <= k < self.window:
            return int(self.levels[i, s, k])
        m = int(self.meta[i, NOVF + s])
        hit = np.flatnonzero(self.ovf_px[i, s, :m] == ticks)
        return int(self.ovf_sz[i, s, hit[0]]) if len(hit) else 0

    def depth(self, i: int, side: BookSide, n: int) -> list[tuple[int, int]]:
        """Up to ``n`` levels from the best outwards, as ``(ticks, lots)``."""
        if not 0 <= i < len(self.tops):  # the kernel does not check bounds
            raise IndexError(f"instrument id {i} is not in this BookStore of {len(self.tops)}")
        n = min(n, len(self._px))
        k = depth_levels(
            self.levels, self.ovf_px, self.ovf_sz, self.meta, i, int(side), n, self._px, self._sz
        )
        return list(zip(self._px[:k].tolist(), self._sz[:k].tolist(), strict=True))

    def rows_of(self, i: int, side: BookSide) -> list[tuple[int, int, int]]:
        """IB depth rows of ``side``, by position: ``(ticks, lots, mm_id)``."""
        s = int(side)
        return [tuple(r) for r in self.rows[i, s, : self.meta[i, NROWS + s]].tolist()]


class BookView:
    """A strategy's read-only view of one instrument's book (prices in ticks and in currency)."""

    __slots__ = ("_i", "_store", "_tops", "instrument")

    def __init__(self, store: BookStore, instrument) -> None:
        self._store = store
        self._tops = store.tops  # the store's list (its rows are replaced, never the list)
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
        top = self._tops[self._i]
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

    ``side`` is ``"bid"``/``"ask"`` or a ``BookSide``; a size of 0 deletes the level. Prices
    are rounded to ``tick_size`` and sizes to ``lot_size``; ``window``, ``overflow`` and
    ``max_overflow`` are ``BookStore``'s.
    """

    def __init__(
        self,
        tick_size: float,
        lot_size: float = 1.0,
        window: int = 4096,
        *,
        overflow: int = 256,
        max_overflow: int = 16384,
    ) -> None:
        self.tick_size = float(tick_size)
        self.lot_size = float(lot_size)
        self._tick_per = _per_unit(self.tick_size)
        self._lot_per = _per_unit(self.lot_size)
        self._store = BookStore(1, window, overflow=overflow, max_overflow=max_overflow, max_rows=1)
        self._side1 = np.zeros(1, dtype=np.int64)
        self._price1 = np.zeros(1, dtype=np.float64)
        self._size1 = np.zeros(1, dtype=np.float64)
        self._clear = np.zeros(1, dtype=BOOK_DELTA)
        self._clear["action"] = DeltaAction.CLEAR

    @staticmethod
    def _side(side: str | int) -> int:
        if isinstance(side, str):
            return BookSide.BID if side.lower() in ("bid", "b", "buy") else BookSide.ASK
        return int(side)

    def apply(self, side: str | int, price: float, size: float) -> None:
        """Set the size at one price level."""
        self._side1[0] = self._side(side)
        self._price1[0] = price
        self._size1[0] = size
        self._store.apply_levels(
            0, self._side1, self._price1, self._size1, self.tick_size, self.lot_size
        )

    def apply_batch(self, sides: np.ndarray, prices: np.ndarray, sizes: np.ndarray) -> None:
        """Apply many level updates in order, in one kernel call; ``sides`` holds 0 / 1."""
        self._store.apply_levels(0, sides, prices, sizes, self.tick_size, self.lot_size)

    def clear(self) -> None:
        """Empty the book (before loading a snapshot)."""
        self._store.apply(self._clear, 0)

    def _level(self, ticks: int, lots: int) -> tuple[float, float] | None:
        if ticks == NO_PRICE:
            return None
        return (
            _from_units(ticks, self.tick_size, self._tick_per),
            _from_units(lots, self.lot_size, self._lot_per),
        )

    def best_bid(self) -> tuple[float, float] | None:
        return self._level(self._store.best_bid_ticks(0), self._store.best_bid_size(0))

    def best_ask(self) -> tuple[float, float] | None:
        return self._level(self._store.best_ask_ticks(0), self._store.best_ask_size(0))

    def depth(self, side: str | int, n: int) -> list[tuple[float, float]]:
        """Up to ``n`` levels of ``side`` from the best outwards, as ``(price, size)``."""
        tick, lot, tick_per, lot_per = self.tick_size, self.lot_size, self._tick_per, self._lot_per
        return [
            (_from_units(t, tick, tick_per), _from_units(q, lot, lot_per))
            for t, q in self._store.depth(0, self._side(side), n)
        ]

    @property
    def skipped(self) -> int:
        return self._store.skipped

    @property
    def crossed(self) -> int:
        return self._store.crossed

    @property
    def dropped(self) -> int:
        return self._store.dropped


def _per_unit(unit: float) -> int:
    """``1 / unit`` if it is a whole number, else 0 (see ``_from_units``)."""
    per = round(1 / unit)
    return per if per >= 1 and abs(1 / unit - per) <= 1e-9 * per else 0


def _from_units(n: int, unit: float, per: int) -> float:
    """``n`` ticks (lots) of ``unit`` as a float, ``per`` being ``_per_unit(unit)``.

    999988 ticks of 0.01 read 9999.88: multiplying gives 9999.880000000001, while dividing by
    the whole number 1 / unit is correctly rounded.
    """
    return n / per if per else n * unit
