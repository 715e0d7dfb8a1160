"""Order books: worked examples for ``engine.book.BookStore`` (over the ``hotpath.book``
kernels) and ``engine.book.L2Book``. The property tests against the plain-Python reference are
in ``test_book_kernel.py``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from book_reference import ASK, BID, CLEAR, DELETE, INSERT, SET, UPDATE, Delta, to_deltas

from engine.book import BookStore, L2Book
from engine.messages import NO_PRICE, BookSide, DeltaAction
from hotpath import book as kernels

WINDOW = 64
CENTER = 10_000
ROOT = Path(__file__).resolve().parent.parent


def kernel_top(store: BookStore, i: int) -> tuple[int, int, int, int]:
    return (
        store.best_bid_ticks(i),
        store.best_bid_size(i),
        store.best_ask_ticks(i),
        store.best_ask_size(i),
    )


def test_kernel_constants_mirror_the_message_enums() -> None:
    assert [int(a) for a in DeltaAction] == [
        kernels.ACTION_SET,
        kernels.ACTION_INSERT,
        kernels.ACTION_UPDATE,
        kernels.ACTION_DELETE,
        kernels.ACTION_CLEAR,
    ]
    assert (int(BookSide.BID), int(BookSide.ASK)) == (kernels.SIDE_BID, kernels.SIDE_ASK)


# ---- BookStore: price levels ----------------------------------------------------------------


def test_empty_book() -> None:
    store = BookStore(2, WINDOW)
    assert kernel_top(store, 0) == (NO_PRICE, 0, NO_PRICE, 0)
    assert store.depth(0, BookSide.BID, 5) == []
    assert store.depth(1, BookSide.ASK, 5) == []
    assert store.size_at(0, BookSide.BID, CENTER) == 0


def test_set_levels_best_and_depth() -> None:
    store = BookStore(2, WINDOW)
    rows = [
        (0, SET, BID, CENTER - 1, 5),
        (0, SET, BID, CENTER - 3, 7),
        (0, SET, BID, CENTER - 2, 1),
        (0, SET, ASK, CENTER + 2, 4),
        (0, SET, ASK, CENTER, 9),
    ]
    changed = store.apply(to_deltas(rows), 0)
    assert changed == [0]
    assert kernel_top(store, 0) == (CENTER - 1, 5, CENTER, 9)
    assert store.depth(0, BookSide.BID, 10) == [(CENTER - 1, 5), (CENTER - 2, 1), (CENTER - 3, 7)]
    assert store.depth(0, BookSide.BID, 2) == [(CENTER - 1, 5), (CENTER - 2, 1)]
    assert store.depth(0, BookSide.ASK, 10) == [(CENTER, 9), (CENTER + 2, 4)]
    assert store.size_at(0, BookSide.BID, CENTER - 3) == 7
    assert store.size_at(0, BookSide.ASK, CENTER + 1) == 0
    assert kernel_top(store, 1) == (NO_PRICE, 0, NO_PRICE, 0)
    assert store.skipped == 0 and store.crossed == 0


def test_size_zero_deletes_and_the_next_level_becomes_best() -> None:
    store = BookStore(1, WINDOW)
    store.apply(
        to_deltas(
            [
                (0, SET, BID, CENTER - 1, 5),
                (0, SET, BID, CENTER - 4, 2),
                (0, SET, ASK, CENTER + 1, 3),
                (0, SET, ASK, CENTER + 5, 8),
            ]
        ),
        0,
    )
    changed = store.apply(to_deltas([(0, SET, BID, CENTER - 1, 0)]), 0)
    assert changed == [0]
    assert kernel_top(store, 0) == (CENTER - 4, 2, CENTER + 1, 3)
    changed = store.apply(to_deltas([(0, SET, ASK, CENTER + 1, 0)]), 0)
    assert changed == [0]
    assert kernel_top(store, 0) == (CENTER - 4, 2, CENTER + 5, 8)
    store.apply(to_deltas([(0, SET, ASK, CENTER + 5, 0), (0, SET, BID, CENTER - 4, 0)]), 0)
    assert kernel_top(store, 0) == (NO_PRICE, 0, NO_PRICE, 0)
    assert store.depth(0, BookSide.ASK, 5) == []


def test_changes_behind_the_top_do_not_report_a_change() -> None:
    store = BookStore(2, WINDOW)
    store.apply(to_deltas([(0, SET, BID, CENTER, 5), (0, SET, ASK, CENTER + 2, 5)]), 0)
    changed = store.apply(
        to_deltas([(0, SET, BID, CENTER - 3, 4), (0, SET, ASK, CENTER + 6, 1)]), 0
    )
    assert changed == []
    changed = store.apply(to_deltas([(0, SET, BID, CENTER, 6)]), 0)  # size at the top
    assert changed == [0]


def test_clear_empties_one_instrument() -> None:
    store = BookStore(2, WINDOW)
    store.apply(
        to_deltas(
            [
                (0, SET, BID, CENTER, 5),
                (0, SET, ASK, CENTER + 1, 5),
                (1, SET, BID, 500, 1),
                (1, SET, ASK, 502, 1),
            ]
        ),
        0,
    )
    changed = store.apply(to_deltas([(0, CLEAR, 0, 0, 0)]), 0)
    assert changed == [0]
    assert kernel_top(store, 0) == (NO_PRICE, 0, NO_PRICE, 0)
    assert store.depth(0, BookSide.BID, WINDOW) == []
    assert kernel_top(store, 1) == (500, 1, 502, 1)
    # A snapshot after the clear.
    store.apply(to_deltas([(0, CLEAR, 0, 0, 0), (0, SET, BID, CENTER - 2, 3)]), 0)
    assert kernel_top(store, 0) == (CENTER - 2, 3, NO_PRICE, 0)


def test_crossed_books_are_counted() -> None:
    store = BookStore(3, WINDOW)
    store.apply(to_deltas([(0, SET, BID, CENTER, 5), (0, SET, ASK, CENTER + 1, 5)]), 0)
    assert store.crossed == 0
    store.apply(to_deltas([(0, SET, BID, CENTER + 3, 1)]), 0)  # bid above the ask
    assert store.crossed == 1 and store.crossed_ids == [0]
    # Two instruments crossed in one batch.
    store.apply(
        to_deltas(
            [
                (1, SET, ASK, 700, 1),
                (1, SET, BID, 705, 1),
                (2, SET, BID, 300, 1),
                (2, SET, ASK, 298, 1),
            ]
        ),
        0,
    )
    assert store.crossed == 3 and store.crossed_ids == [1, 2]
    # Uncrossing instrument 0 is not counted.
    store.apply(to_deltas([(0, SET, BID, CENTER + 3, 0)]), 0)
    assert store.crossed == 3 and store.crossed_ids == []
    assert kernel_top(store, 0) == (CENTER, 5, CENTER + 1, 5)


def test_ts_book_is_stamped() -> None:
    store = BookStore(1, WINDOW)
    d = to_deltas([(0, SET, BID, CENTER, 5), (0, SET, BID, CENTER + 10_000, 5)])
    store.apply(d, 777)
    assert d["ts_book"].tolist() == [777, 777]


# ---- BookStore: outside the window ----------------------------------------------------------


def test_levels_outside_the_window_are_kept_and_counted_in_best_and_depth() -> None:
    store = BookStore(2, WINDOW)
    store.apply(to_deltas([(0, SET, BID, CENTER, 5), (0, SET, ASK, CENTER + 1, 5)]), 0)
    lo, hi = CENTER - WINDOW // 2, CENTER + WINDOW // 2 - 1  # the window's first and last tick
    far = [
        (0, SET, BID, lo - 1, 9),
        (0, SET, BID, lo - 500, 2),
        (0, SET, ASK, hi + 1, 8),
        (0, SET, ASK, hi + 10_000, 1),
        (0, SET, BID, hi + 1, 0),  # deleting a level that is not there: a no-op
    ]
    changed = store.apply(to_deltas(far), 0)
    assert changed == []  # nothing at the top changed
    assert store.skipped == 0
    assert store.depth(0, BookSide.BID, 10) == [(CENTER, 5), (lo - 1, 9), (lo - 500, 2)]
    assert store.depth(0, BookSide.ASK, 10) == [(CENTER + 1, 5), (hi + 1, 8), (hi + 10_000, 1)]
    assert store.size_at(0, BookSide.BID, lo - 500) == 2
    assert store.size_at(0, BookSide.ASK, hi + 10_000) == 1
    # The inside levels go: the far ones become the top.
    changed = store.apply(to_deltas([(0, SET, BID, CENTER, 0), (0, SET, ASK, CENTER + 1, 0)]), 0)
    assert changed == [0]
    assert kernel_top(store, 0) == (lo - 1, 9, hi + 1, 8)
    assert store.depth(0, BookSide.BID, 10) == [(lo - 1, 9), (lo - 500, 2)]
    assert store.depth(0, BookSide.ASK, 10) == [(hi + 1, 8), (hi + 10_000, 1)]


def test_the_window_follows_the_market_and_levels_come_back() -> None:
    store = BookStore(1, WINDOW)
    store.apply(to_deltas([(0, SET, BID, CENTER - k, 10 + k) for k in range(1, 9)]), 0)
    store.apply(to_deltas([(0, SET, ASK, CENTER + k, 20 + k) for k in range(8)]), 0)
    bids = store.depth(0, BookSide.BID, 100)
    # The market jumps 10 windows up: a new book there, the old levels still standing.
    jump = CENTER + 10 * WINDOW
    changed = store.apply(to_deltas([(0, SET, BID, jump - 1, 3), (0, SET, ASK, jump, 4)]), 0)
    assert changed == [0]
    assert kernel_top(store, 0) == (jump - 1, 3, CENTER, 20)  # crossed: the old asks stand
    assert store.crossed == 1 and store.crossed_ids == [0]
    # The venue deletes the stale asks: the window moves to the new mid.
    store.apply(to_deltas([(0, SET, ASK, CENTER + k, 0) for k in range(8)]), 0)
    assert kernel_top(store, 0) == (jump - 1, 3, jump, 4)
    base = int(store.meta[0, kernels.BASE])
    assert base <= jump - 1 < jump < base + WINDOW
    assert store.depth(0, BookSide.BID, 100) == [(jump - 1, 3), *bids]
    # And back: the old bids return to the window and the top.
    store.apply(to_deltas([(0, SET, BID, jump - 1, 0), (0, SET, ASK, jump, 0)]), 0)
    store.apply(to_deltas([(0, SET, ASK, CENTER, 7)]), 0)
    assert kernel_top(store, 0) == (CENTER - 1, 11, CENTER, 7)
    assert store.depth(0, BookSide.BID, 100) == bids
    assert store.depth(0, BookSide.ASK, 100) == [(CENTER, 7)]
    base = int(store.meta[0, kernels.BASE])
    assert base <= CENTER - 8 < CENTER < base + WINDOW


def test_a_full_overflow_grows_and_loses_nothing(caplog) -> None:
    store = BookStore(2, WINDOW, overflow=2, max_overflow=8)
    deep = [(1, SET, BID, CENTER - 1000 * k, k) for k in range(1, 7)]
    changed = store.apply(to_deltas([(1, SET, BID, CENTER, 1), *deep]), 0)
    assert changed == [1]
    assert store.overflow == 8 and store.overflow_grows == 2
    assert "overflow grown to 4" in caplog.text and "overflow grown to 8" in caplog.text
    assert store.depth(1, BookSide.BID, 100) == [(CENTER, 1)] + [(p, q) for _, _, _, p, q in deep]
    assert store.dropped == 0 and store.skipped == 0


def test_a_level_beyond_max_overflow_is_dropped_and_counted(caplog) -> None:
    store = BookStore(1, WINDOW, overflow=2, max_overflow=2)
    rows = [(0, SET, ASK, CENTER, 1), *[(0, SET, ASK, CENTER + 1000 * k, k) for k in range(1, 5)]]
    rows.append((0, SET, BID, CENTER - 1, 6))  # after the drops, still applied
    changed = store.apply(to_deltas(rows), 0)
    assert changed == [0]
    assert store.dropped == 2 and store.skipped == 0
    assert "dropped" in caplog.text and "max_overflow=2" in caplog.text
    assert store.depth(0, BookSide.ASK, 10) == [(CENTER, 1), (CENTER + 1000, 1), (CENTER + 2000, 2)]
    assert kernel_top(store, 0) == (CENTER - 1, 6, CENTER, 1)


# ---- BookStore: invalid deltas --------------------------------------------------------------


@pytest.mark.parametrize(
    "delta",
    [
        Delta(2, SET, BID, CENTER, 1),  # instrument out of range
        Delta(-1, CLEAR),
        Delta(0, 9, BID, CENTER, 1),  # unknown action
        Delta(0, SET, 2, CENTER, 1),  # unknown side
        Delta(0, SET, ASK, CENTER, -1),  # negative size
        Delta(0, INSERT, BID, CENTER, -1, 0),
        Delta(0, SET, BID, NO_PRICE, 1),  # beyond the tick range
        Delta(0, SET, BID, 1 << 62, 1),
        Delta(0, INSERT, BID, CENTER, 1, 1),  # a row below the last one held
        Delta(0, UPDATE, BID, CENTER, 1, 0),  # no row 0 yet
        Delta(0, DELETE, ASK, CENTER, 0, 0),
        Delta(0, DELETE, ASK, CENTER, 0, -1),
    ],
)
def test_invalid_deltas_are_skipped_and_change_nothing(delta) -> None:
    store = BookStore(2, WINDOW)
    d = to_deltas([delta, (1, SET, ASK, CENTER, 3)])
    changed = store.apply(d, 5)
    assert store.skipped == 1
    assert changed == [1]
    assert kernel_top(store, 0) == (NO_PRICE, 0, NO_PRICE, 0)
    assert d["ts_book"].tolist() == [5, 5]


# ---- BookStore: IB position-based depth -----------------------------------------------------


def ib(position: int, action: int, side: int, price: int = 0, size: int = 0, mm: int = 0):
    return Delta(0, action, side, price, size, position, mm)


def test_ib_insert_shifts_rows_down_update_replaces_delete_shifts_up() -> None:
    store = BookStore(1, WINDOW, max_rows=4)
    store.apply(
        to_deltas(
            [
                ib(0, INSERT, BID, CENTER, 5),
                ib(1, INSERT, BID, CENTER - 2, 7),
                ib(1, INSERT, BID, CENTER - 1, 3),  # between the two: row 1, old row 1 -> 2
                ib(0, INSERT, ASK, CENTER + 2, 4),
                ib(0, INSERT, ASK, CENTER + 1, 9),  # new best ask at row 0
            ]
        ),
        0,
    )
    assert store.rows_of(0, BookSide.BID) == [
        (CENTER, 5, 0),
        (CENTER - 1, 3, 0),
        (CENTER - 2, 7, 0),
    ]
    assert store.rows_of(0, BookSide.ASK) == [(CENTER + 1, 9, 0), (CENTER + 2, 4, 0)]
    assert kernel_top(store, 0) == (CENTER, 5, CENTER + 1, 9)
    changed = store.apply(to_deltas([ib(0, UPDATE, ASK, CENTER + 1, 2)]), 0)
    assert changed == [0]
    assert kernel_top(store, 0) == (CENTER, 5, CENTER + 1, 2)
    changed = store.apply(to_deltas([ib(0, DELETE, BID)]), 0)  # price and size are not needed
    assert changed == [0]
    assert store.rows_of(0, BookSide.BID) == [(CENTER - 1, 3, 0), (CENTER - 2, 7, 0)]
    assert store.depth(0, BookSide.BID, 10) == [(CENTER - 1, 3), (CENTER - 2, 7)]
    # An update may move a row to another price.
    store.apply(to_deltas([ib(1, UPDATE, BID, CENTER - 5, 1)]), 0)
    assert store.depth(0, BookSide.BID, 10) == [(CENTER - 1, 3), (CENTER - 5, 1)]
    assert store.skipped == 0


def test_ib_rows_beyond_max_rows_fall_off() -> None:
    store = BookStore(1, WINDOW, max_rows=3)
    store.apply(to_deltas([ib(k, INSERT, ASK, CENTER + k, k + 1) for k in range(3)]), 0)
    # Insert at the top: the last row (CENTER + 2) is pushed past row 3 and falls off.
    changed = store.apply(to_deltas([ib(0, INSERT, ASK, CENTER - 1, 8)]), 0)
    assert changed == [0]
    assert store.rows_of(0, BookSide.ASK) == [
        (CENTER - 1, 8, 0),
        (CENTER, 1, 0),
        (CENTER + 1, 2, 0),
    ]
    assert store.depth(0, BookSide.ASK, 10) == [(CENTER - 1, 8), (CENTER, 1), (CENTER + 1, 2)]
    # An insert just past the last row falls off at once; further down is an invalid row.
    changed = store.apply(to_deltas([ib(3, INSERT, ASK, CENTER + 5, 1)]), 0)
    assert changed == [] and store.skipped == 0
    store.apply(to_deltas([ib(4, INSERT, ASK, CENTER + 5, 1)]), 0)
    assert store.skipped == 1
    assert len(store.rows_of(0, BookSide.ASK)) == 3


def test_ib_l2_market_makers_at_one_price_sum_into_one_level() -> None:
    store = BookStore(1, WINDOW)
    store.apply(
        to_deltas(
            [
                ib(0, INSERT, BID, CENTER, 5, mm=11),
                ib(1, INSERT, BID, CENTER, 3, mm=12),
                ib(2, INSERT, BID, CENTER - 1, 4, mm=11),
            ]
        ),
        0,
    )
    assert kernel_top(store, 0) == (CENTER, 8, NO_PRICE, 0)
    assert store.depth(0, BookSide.BID, 5) == [(CENTER, 8), (CENTER - 1, 4)]
    assert store.rows_of(0, BookSide.BID)[1] == (CENTER, 3, 12)
    store.apply(to_deltas([ib(0, DELETE, BID)]), 0)  # market maker 11 leaves the price
    assert kernel_top(store, 0) == (CENTER, 3, NO_PRICE, 0)
    store.apply(to_deltas([ib(0, UPDATE, BID, CENTER, 0, mm=12)]), 0)  # a row of size 0
    assert kernel_top(store, 0) == (CENTER - 1, 4, NO_PRICE, 0)
    assert len(store.rows_of(0, BookSide.BID)) == 2


def test_ib_snapshot_clear_then_insert() -> None:
    store = BookStore(1, WINDOW)
    store.apply(to_deltas([ib(k, INSERT, BID, CENTER - k, 1) for k in range(5)]), 0)
    load = [Delta(0, CLEAR)] + [ib(k, INSERT, ASK, CENTER + 50 + k, 2) for k in range(3)]
    changed = store.apply(to_deltas(load), 0)
    assert changed == [0]
    assert store.rows_of(0, BookSide.BID) == []
    assert kernel_top(store, 0) == (NO_PRICE, 0, CENTER + 50, 2)
    assert store.depth(0, BookSide.ASK, 5) == [(CENTER + 50 + k, 2) for k in range(3)]


# ---- L2Book ---------------------------------------------------------------------------------


def test_l2book_float_prices_on_a_quarter_tick() -> None:
    book = L2Book(0.25)
    assert book.best_bid() is None and book.best_ask() is None
    assert book.depth("bid", 5) == []
    book.apply("bid", 100.25, 3)
    book.apply("bid", 100.0, 5)
    book.apply("bid", 99.5, 1)
    book.apply("ask", 100.75, 7)
    book.apply("ask", 100.5, 2)
    assert book.best_bid() == (100.25, 3.0)
    assert book.best_ask() == (100.5, 2.0)
    assert book.depth("bid", 5) == [(100.25, 3.0), (100.0, 5.0), (99.5, 1.0)]
    assert book.depth("bid", 2) == [(100.25, 3.0), (100.0, 5.0)]
    assert book.depth("ask", 5) == [(100.5, 2.0), (100.75, 7.0)]
    book.apply("bid", 100.25, 0)
    assert book.best_bid() == (100.0, 5.0)
    book.apply("ask", 100.5, 4)
    assert book.best_ask() == (100.5, 4.0)
    assert book.skipped == 0 and book.crossed == 0


def test_l2book_side_names_and_enum() -> None:
    book = L2Book(0.25)
    book.apply("b", 10.0, 1)
    book.apply("BUY", 10.25, 2)
    book.apply(BookSide.BID, 9.75, 3)
    book.apply("ask", 11.0, 4)
    book.apply("sell", 10.75, 5)
    book.apply(BookSide.ASK, 11.25, 6)
    book.apply(1, 11.5, 7)
    assert book.depth(BookSide.BID, 5) == [(10.25, 2.0), (10.0, 1.0), (9.75, 3.0)]
    assert book.depth("a", 5) == [(10.75, 5.0), (11.0, 4.0), (11.25, 6.0), (11.5, 7.0)]


def test_l2book_apply_batch() -> None:
    book = L2Book(0.25)
    book.apply_batch(
        np.array([0, 0, 1, 1, 0]),
        np.array([50.0, 49.75, 50.25, 50.5, 49.5]),
        np.array([10.0, 20.0, 30.0, 40.0, 50.0]),
    )
    assert book.best_bid() == (50.0, 10.0)
    assert book.best_ask() == (50.25, 30.0)
    assert book.depth("bid", 10) == [(50.0, 10.0), (49.75, 20.0), (49.5, 50.0)]
    # Deletes and updates in one batch, applied in order.
    book.apply_batch(
        np.array([0, 1, 1, 1]),
        np.array([50.0, 50.25, 50.0, 50.0]),
        np.array([0.0, 0.0, 5.0, 6.0]),
    )
    assert book.best_bid() == (49.75, 20.0)
    assert book.best_ask() == (50.0, 6.0)
    assert book.depth("ask", 10) == [(50.0, 6.0), (50.5, 40.0)]


def test_l2book_counts_crossed() -> None:
    book = L2Book(0.25)
    book.apply("bid", 10.0, 1)
    book.apply("ask", 10.5, 1)
    assert book.crossed == 0
    book.apply("bid", 10.75, 1)
    assert book.crossed == 1


def test_depth_of_an_unknown_instrument_raises() -> None:
    store = BookStore(0, WINDOW)
    store.warm_up()
    with pytest.raises(IndexError, match="instrument id 0"):
        store.depth(0, BookSide.BID, 5)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_depth_n_limits_levels(n) -> None:
    store = BookStore(1, WINDOW)
    store.apply(to_deltas([(0, SET, ASK, CENTER + k, k + 1) for k in range(3)]), 0)
    assert store.depth(0, BookSide.ASK, n) == [(CENTER + k, k + 1) for k in range(n)]


def test_l2book_prices_outside_the_window_are_kept() -> None:
    book = L2Book(0.25, lot_size=0.5, window=16, overflow=1)
    book.apply("ask", 101.0, 1.5)
    assert book.best_ask() == (101.0, 1.5)
    book.apply("ask", 101.0 + 8 * 0.25, 1.0)  # 8 ticks above the first price: outside
    book.apply("bid", 101.0 - 9 * 0.25, 1.0)  # 9 below: outside
    book.apply("bid", 101.0 - 90 * 0.25, 2.0)
    assert book.skipped == 0 and book.dropped == 0
    assert book.depth("ask", 5) == [(101.0, 1.5), (103.0, 1.0)]
    assert book.depth("bid", 5) == [(98.75, 1.0), (78.5, 2.0)]
    book.apply("ask", 101.0, 0)
    assert book.best_ask() == (103.0, 1.0)


def test_l2book_apply_batch_converts_dtypes_and_layouts() -> None:
    book = L2Book(1)
    table = np.array([[0, 10, 1], [1, 12, 2], [0, 9, 3], [1, 13, 4]], dtype=np.int32)
    book.apply_batch(table[:, 0], table[:, 1], table[:, 2])  # strided int32 columns
    book.apply_batch([0], [10.0], [0.0])  # lists
    assert book.depth("bid", 5) == [(9.0, 3.0)]
    assert book.depth("ask", 5) == [(12.0, 2.0), (13.0, 4.0)]


def test_l2book_skips_nan_and_unknown_sides() -> None:
    book = L2Book(0.5)
    book.apply_batch(
        np.array([0, 2, 1, 0]), np.array([1.0, 1.0, np.nan, 2.0]), np.array([1.0, 1, 1, np.nan])
    )
    assert book.skipped == 3
    assert book.best_bid() == (1.0, 1.0) and book.best_ask() is None


# ---- compiled once, then frozen ---------------------------------------------------------------

FROZEN = textwrap.dedent(
    """
    import numpy as np
    import hotpath.jit as jit
    from engine.book import BookStore, L2Book
    from engine.messages import BOOK_DELTA, BookSide, DeltaAction

    store = BookStore(3, 64, overflow=2)
    store.warm_up()
    book = L2Book(0.01)
    report = jit.freeze()
    before = jit.compiled_signatures()

    # A ring of deltas read as the book actor reads it: contiguous slices of the buffer.
    ring = np.zeros(64, dtype=BOOK_DELTA)
    ring["instrument_id"] = np.arange(64) % 3
    ring["side"] = np.arange(64) % 2
    ring["price"] = 1000 + (np.arange(64) % 7) * np.where(np.arange(64) % 2, 1, -1) * 100
    ring["size"] = np.arange(64) % 5
    ring["action"][::9] = DeltaAction.INSERT
    ring["action"][::13] = DeltaAction.CLEAR
    for start, stop in ((0, 0), (0, 1), (1, 40), (40, 64)):
        store.apply(ring[start:stop], np.int64(12345))  # the overflow grows on the way
    # The quote path: a slice of a scratch batch.
    quotes = np.zeros(30, dtype=BOOK_DELTA)
    quotes["action"][0::3] = DeltaAction.CLEAR
    quotes["side"][2::3] = BookSide.ASK
    quotes["price"][1::3], quotes["price"][2::3] = 990, 1010
    quotes["size"][1:] = 1
    store.apply(quotes[:9], 7)
    assert store.overflow > 2 and store.skipped == 0, (store.overflow, store.skipped)
    assert store.depth(1, BookSide.BID, 5) and store.depth(0, BookSide.ASK, 10_000) is not None
    store.size_at(0, BookSide.BID, 1000)

    book.apply("bid", 100.01, 2)
    book.apply(BookSide.ASK, 100.02, 3.5)
    book.apply_batch(np.array([0, 1]), np.array([99.99, 100.05]), np.array([1.0, 2.0]))
    book.apply_batch([0], [100.0], [1])
    assert book.best_bid() == (100.01, 2.0) and book.depth("ask", 5)
    assert jit.compiled_signatures() == before, "a kernel compiled a new signature"
    print("FROZEN_OK", report.format())
    """
)


def test_kernels_take_the_engines_argument_types_after_freeze() -> None:
    """``hotpath.jit.freeze`` is global: check it in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", FROZEN], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FROZEN_OK" in proc.stdout
