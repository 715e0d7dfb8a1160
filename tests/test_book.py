"""Order books: the hotpath.book kernels through engine.book.BookStore, and engine.book.L2Book.

The kernel is compared with a plain reference book (sortedcontainers.SortedDict of price ticks
to size per side and instrument) that models the same window: it is placed around the first
price seen for an instrument, and deltas outside it are skipped.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sortedcontainers import SortedDict

from engine.book import BookStore, L2Book
from engine.messages import BOOK_DELTA, NO_PRICE, BookSide, DeltaAction

BID, ASK = int(BookSide.BID), int(BookSide.ASK)
SET, CLEAR = int(DeltaAction.SET), int(DeltaAction.CLEAR)
WINDOW = 64
N_INST = 3
CENTER = 10_000


# ---- reference ------------------------------------------------------------------------------


class RefBooks:
    def __init__(self, n: int, window: int) -> None:
        self.window = window
        self.sides = [(SortedDict(), SortedDict()) for _ in range(n)]  # (bids, asks)
        self.base: list[int | None] = [None] * n

    def apply(self, rows: list[tuple[int, int, int, int, int]]) -> tuple[int, set[int]]:
        """Rows ``(instrument, action, side, price, size)``; returns (skipped, touched ids)."""
        skipped = 0
        touched: set[int] = set()
        for i, action, side, price, size in rows:
            if action == CLEAR:
                self.sides[i][0].clear()
                self.sides[i][1].clear()
                touched.add(i)
                continue
            if action != SET:
                skipped += 1
                continue
            if self.base[i] is None:
                self.base[i] = price - self.window // 2
            if not 0 <= price - self.base[i] < self.window:
                skipped += 1
                continue
            touched.add(i)
            levels = self.sides[i][side]
            if size == 0:
                levels.pop(price, None)
            else:
                levels[price] = size
        return skipped, touched

    def best(self, i: int, side: int) -> tuple[int, int]:
        levels = self.sides[i][side]
        if not levels:
            return NO_PRICE, 0
        price = levels.keys()[-1] if side == BID else levels.keys()[0]
        return price, levels[price]

    def top(self, i: int) -> tuple[int, int, int, int]:
        return (*self.best(i, BID), *self.best(i, ASK))

    def depth(self, i: int, side: int, n: int) -> list[tuple[int, int]]:
        levels = self.sides[i][side]
        items = list(reversed(levels.items())) if side == BID else list(levels.items())
        return items[:n]


def to_deltas(rows: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    d = np.zeros(len(rows), dtype=BOOK_DELTA)
    for k, (i, action, side, price, size) in enumerate(rows):
        d[k]["instrument_id"] = i
        d[k]["action"] = action
        d[k]["side"] = side
        d[k]["price"] = price
        d[k]["size"] = size
    return d


def kernel_top(store: BookStore, i: int) -> tuple[int, int, int, int]:
    return (
        store.best_bid_ticks(i),
        store.best_bid_size(i),
        store.best_ask_ticks(i),
        store.best_ask_size(i),
    )


def assert_same_books(store: BookStore, ref: RefBooks, n_inst: int) -> None:
    for i in range(n_inst):
        assert kernel_top(store, i) == ref.top(i), f"instrument {i}"
        for side in (BID, ASK):
            for n in (1, 3, store.window):
                assert store.depth(i, side, n) == ref.depth(i, side, n), (i, side, n)


def crossed(top: tuple[int, int, int, int], strict: bool) -> bool:
    bid, _, ask, _ = top
    if bid == NO_PRICE or ask == NO_PRICE:
        return False
    return bid > ask if strict else bid >= ask


def apply_and_compare(store: BookStore, ref: RefBooks, rows, n_inst: int) -> np.ndarray:
    before = [ref.top(i) for i in range(n_inst)]
    skipped0, crossed0 = store.skipped, store.crossed
    changed = store.apply(to_deltas(rows), 123)
    skipped, touched = ref.apply(rows)
    after = [ref.top(i) for i in range(n_inst)]

    assert_same_books(store, ref, n_inst)
    assert store.skipped - skipped0 == skipped
    changed_set = set(changed)
    top_changed = {i for i in range(n_inst) if before[i] != after[i]}
    assert top_changed <= changed_set, (top_changed, changed_set)
    assert changed_set <= touched
    # Crossed: every instrument whose top changed into a crossed book must be counted; no
    # untouched or uncrossed instrument may be (a locked book, bid == ask, may go either way).
    n_crossed = store.crossed - crossed0
    must = sum(1 for i in top_changed if crossed(after[i], strict=True))
    may = sum(1 for i in touched if crossed(after[i], strict=False))
    assert must <= n_crossed <= may
    return changed


# ---- BookStore: worked examples -------------------------------------------------------------


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


def test_deltas_outside_the_window_are_skipped_and_change_nothing() -> None:
    store = BookStore(2, WINDOW)
    store.apply(to_deltas([(0, SET, BID, CENTER, 5), (0, SET, ASK, CENTER + 1, 5)]), 0)
    lo, hi = CENTER - WINDOW // 2, CENTER + WINDOW // 2 - 1  # the window's first and last tick
    snapshot = (
        kernel_top(store, 0),
        store.depth(0, BookSide.BID, WINDOW),
        store.depth(0, BookSide.ASK, WINDOW),
    )
    outside = [
        (0, SET, BID, lo - 1, 9),
        (0, SET, ASK, hi + 1, 9),
        (0, SET, BID, CENTER + 10_000, 9),
        (0, SET, ASK, CENTER - 10_000, 9),
        (0, SET, BID, hi + 1, 0),
    ]
    changed = store.apply(to_deltas(outside), 0)
    assert store.skipped == len(outside)
    assert changed == []
    after = (
        kernel_top(store, 0),
        store.depth(0, BookSide.BID, WINDOW),
        store.depth(0, BookSide.ASK, WINDOW),
    )
    assert after == snapshot
    # The window's edges are inside it.
    store.apply(to_deltas([(0, SET, BID, lo, 1), (0, SET, ASK, hi, 1)]), 0)
    assert store.skipped == len(outside)
    assert store.depth(0, BookSide.BID, WINDOW)[-1] == (lo, 1)
    assert store.depth(0, BookSide.ASK, WINDOW)[-1] == (hi, 1)


def test_position_based_actions_are_skipped() -> None:
    store = BookStore(1, WINDOW)
    rows = [(0, int(a), BID, CENTER, 5) for a in (DeltaAction.INSERT, DeltaAction.UPDATE)]
    rows.append((0, int(DeltaAction.DELETE), ASK, CENTER, 0))
    changed = store.apply(to_deltas(rows), 0)
    assert store.skipped == 3
    assert changed == []
    assert kernel_top(store, 0) == (NO_PRICE, 0, NO_PRICE, 0)


def test_crossed_books_are_counted() -> None:
    store = BookStore(3, WINDOW)
    store.apply(to_deltas([(0, SET, BID, CENTER, 5), (0, SET, ASK, CENTER + 1, 5)]), 0)
    assert store.crossed == 0
    store.apply(to_deltas([(0, SET, BID, CENTER + 3, 1)]), 0)  # bid above the ask
    assert store.crossed == 1
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
    assert store.crossed == 3
    # Uncrossing instrument 0 is not counted.
    store.apply(to_deltas([(0, SET, BID, CENTER + 3, 0)]), 0)
    assert store.crossed == 3
    assert kernel_top(store, 0) == (CENTER, 5, CENTER + 1, 5)


def test_ts_book_is_stamped() -> None:
    store = BookStore(1, WINDOW)
    d = to_deltas([(0, SET, BID, CENTER, 5), (0, SET, BID, CENTER + 10_000, 5)])
    store.apply(d, 777)
    assert d["ts_book"].tolist() == [777, 777]


# ---- BookStore: property tests against the reference -----------------------------------------

set_row = st.tuples(
    st.integers(0, N_INST - 1),
    st.just(SET),
    st.sampled_from([BID, ASK]),
    st.integers(-WINDOW // 2, WINDOW // 2 - 1),  # offset from CENTER: inside the window
    st.one_of(st.just(0), st.integers(1, 50)),
)
clear_row = st.tuples(
    st.integers(0, N_INST - 1), st.just(CLEAR), st.just(0), st.just(0), st.just(0)
)
batches_inside = st.lists(
    st.lists(
        st.one_of(set_row, set_row, set_row, set_row, set_row, set_row, clear_row), max_size=25
    ),
    min_size=1,
    max_size=12,
)


def placed_store() -> tuple[BookStore, RefBooks]:
    """Both books with every instrument's window placed around CENTER (size 0: no level)."""
    store = BookStore(N_INST, WINDOW)
    ref = RefBooks(N_INST, WINDOW)
    rows = [(i, SET, BID, CENTER, 0) for i in range(N_INST)]
    store.apply(to_deltas(rows), 0)
    ref.apply(rows)
    return store, ref


@settings(max_examples=150, deadline=None)
@given(batches=batches_inside)
def test_kernel_matches_reference_within_the_window(batches) -> None:
    store, ref = placed_store()
    for batch in batches:
        rows = [(i, a, s, CENTER + off if a == SET else 0, size) for i, a, s, off, size in batch]
        apply_and_compare(store, ref, rows, N_INST)
    assert store.skipped == 0


any_row = st.tuples(
    st.integers(0, N_INST - 1),
    st.sampled_from([SET] * 8 + [CLEAR, int(DeltaAction.UPDATE)]),
    st.sampled_from([BID, ASK]),
    st.integers(-WINDOW, WINDOW),  # up to half a window outside on either side
    st.one_of(st.just(0), st.integers(1, 50)),
)


@settings(max_examples=150, deadline=None)
@given(batches=st.lists(st.lists(any_row, max_size=25), min_size=1, max_size=12))
def test_kernel_matches_reference_with_skipped_deltas(batches) -> None:
    # No pre-placed window: it lands wherever each instrument's first SET is.
    store = BookStore(N_INST, WINDOW)
    ref = RefBooks(N_INST, WINDOW)
    for batch in batches:
        rows = [(i, a, s, CENTER + off, size) for i, a, s, off, size in batch]
        apply_and_compare(store, ref, rows, N_INST)


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


def test_l2book_lot_size_and_window() -> None:
    book = L2Book(0.25, lot_size=0.5, window=16)
    book.apply("ask", 101.0, 1.5)
    assert book.best_ask() == (101.0, 1.5)
    book.apply("ask", 101.0 + 8 * 0.25, 1.0)  # 8 ticks above the first price: outside
    book.apply("bid", 101.0 - 9 * 0.25, 1.0)  # 9 below: outside
    assert book.skipped == 2
    assert book.depth("ask", 5) == [(101.0, 1.5)]
    book.apply("bid", 101.0 - 8 * 0.25, 1.0)  # the window's first tick
    assert book.best_bid() == (99.0, 1.0)


def test_l2book_counts_crossed() -> None:
    book = L2Book(0.25)
    book.apply("bid", 10.0, 1)
    book.apply("ask", 10.5, 1)
    assert book.crossed == 0
    book.apply("bid", 10.75, 1)
    assert book.crossed == 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["bid", "ask"]), st.integers(-40, 40), st.integers(0, 20)),
        max_size=60,
    )
)
def test_l2book_matches_reference(updates) -> None:
    book = L2Book(0.25, window=256)  # prices span 80 ticks: in the window wherever it lands
    sides = {"bid": SortedDict(), "ask": SortedDict()}
    for side, k, size in updates:
        price = 250.0 + k * 0.25
        book.apply(side, price, size)
        if size:
            sides[side][price] = float(size)
        else:
            sides[side].pop(price, None)
    bids = list(reversed(sides["bid"].items()))
    asks = list(sides["ask"].items())
    assert book.depth("bid", 200) == bids
    assert book.depth("ask", 200) == asks
    assert book.best_bid() == (bids[0] if bids else None)
    assert book.best_ask() == (asks[0] if asks else None)
    assert book.skipped == 0


@pytest.mark.parametrize("n", [0, 1, 2])
def test_depth_n_limits_levels(n) -> None:
    store = BookStore(1, WINDOW)
    store.apply(to_deltas([(0, SET, ASK, CENTER + k, k + 1) for k in range(3)]), 0)
    assert store.depth(0, BookSide.ASK, n) == [(CENTER + k, k + 1) for k in range(n)]
