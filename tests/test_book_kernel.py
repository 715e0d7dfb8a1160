"""Property tests: the ``hotpath.book`` kernels (through ``BookStore`` and ``L2Book``) give the
same books as the plain-Python reference in ``book_reference.py``.

Random streams mix both update forms (each instrument is fed either price levels or IB rows),
snapshots (``CLEAR`` then a load), invalid deltas, a market that drifts and jumps far outside
the window, and an overflow store that starts with two slots so it fills and grows. After
every batch: best bid/ask with sizes, depth for several n, sizes at prices, IB rows, the
instruments whose top changed, skipped and crossed counts.
"""

from __future__ import annotations

import numpy as np
import pytest
from book_reference import ASK, BID, CLEAR, DELETE, INSERT, SET, UPDATE, Delta, RefBooks, to_deltas
from hypothesis import given, settings
from hypothesis import strategies as st
from sortedcontainers import SortedDict

from engine.book import BookStore, L2Book
from engine.messages import BOOK_DELTA, NO_PRICE
from engine.ring import ArrayRing

N_INST = 4
WINDOW = 32
MAX_ROWS = 6
CENTER = 100_000
DEPTHS = (1, 2, 5, 10_000)

sides = st.sampled_from([BID, ASK])
sizes = st.one_of(st.just(0), st.integers(1, 30))


@st.composite
def prices(draw, side: int, mid: int) -> int:
    """Mostly a sane book (bids below the mid, asks above), sometimes anywhere, or far away."""
    kind = draw(st.sampled_from(["near", "near", "near", "deep", "wild", "far"]))
    if kind == "near":
        off = draw(st.integers(0, 8))
    elif kind == "deep":
        off = draw(st.integers(0, 3 * WINDOW))
    elif kind == "wild":
        return mid + draw(st.integers(-2 * WINDOW, 2 * WINDOW))
    else:
        return mid + draw(st.sampled_from([-1, 1])) * draw(st.integers(10 * WINDOW, 10**6))
    return mid - 1 - off if side == BID else mid + off


@st.composite
def delta(draw, forms: list[str], mid: int) -> Delta:
    i = draw(st.integers(0, N_INST - 1))
    kind = draw(st.sampled_from(["ok"] * 12 + ["clear", "invalid"]))
    if kind == "clear":
        return Delta(i, CLEAR, draw(st.integers(0, 3)))
    if kind == "invalid":
        return draw(
            st.sampled_from(
                [
                    Delta(N_INST, SET, BID, mid, 1),
                    Delta(-1, CLEAR),
                    Delta(i, 7, BID, mid, 1),
                    Delta(i, SET, 2, mid, 1),
                    Delta(i, SET, ASK, mid, -1),
                    Delta(i, SET, BID, NO_PRICE, 1),
                    Delta(i, INSERT, ASK, mid, -3),
                    Delta(i, UPDATE, BID, mid, 1, MAX_ROWS + 3),
                    Delta(i, DELETE, ASK, 0, 0, -1),
                ]
            )
        )
    side = draw(sides)
    price = draw(prices(side, mid))
    if forms[i] == "levels":
        return Delta(i, SET, side, price, draw(sizes))
    action = draw(st.sampled_from([INSERT, INSERT, UPDATE, DELETE]))
    # Positions up to two past the rows a side can hold: some are out of range (skipped).
    return Delta(
        i,
        action,
        side,
        price,
        draw(sizes),
        draw(st.integers(0, MAX_ROWS + 1)),
        draw(st.integers(0, 3)),
    )


@st.composite
def snapshot(draw, forms: list[str], mid: int) -> list[Delta]:
    """``CLEAR`` then a load: levels best first, or IB rows inserted top down."""
    i = draw(st.integers(0, N_INST - 1))
    n = draw(st.integers(0, 2 * MAX_ROWS))
    out = [Delta(i, CLEAR)]
    for k in range(n):
        side = k % 2
        price = mid - 1 - k // 2 if side == BID else mid + k // 2
        size = draw(st.integers(1, 30))
        if forms[i] == "levels":
            out.append(Delta(i, SET, side, price, size))
        else:
            out.append(Delta(i, INSERT, side, price, size, k // 2, draw(st.integers(0, 3))))
    return out


@st.composite
def streams(draw) -> tuple[list[str], list[list[Delta]]]:
    forms = draw(st.lists(st.sampled_from(["levels", "rows"]), min_size=N_INST, max_size=N_INST))
    mid = CENTER
    batches = []
    for _ in range(draw(st.integers(1, 8))):
        mid += draw(st.one_of(st.integers(-12, 12), st.sampled_from([-3 * WINDOW, 10**5])))
        batch = draw(st.lists(delta(forms, mid), max_size=30))
        if draw(st.booleans()):
            cut = draw(st.integers(0, len(batch)))
            batch[cut:cut] = draw(snapshot(forms, mid))
        batches.append(batch)
    return forms, batches


def assert_same_books(store: BookStore, ref: RefBooks) -> None:
    for i in range(N_INST):
        assert tuple(store.tops[i]) == ref.top(i), f"instrument {i}"
        for side in (BID, ASK):
            for n in DEPTHS:
                assert store.depth(i, side, n) == ref.depth(i, side, n), (i, side, n)
            assert store.rows_of(i, side) == ref.rows_of(i, side), (i, side)
            view = ref.view(i, side)
            for price in [*view.keys()[:3], *view.keys()[-3:]]:
                assert store.size_at(i, side, price) == view[price]
                assert store.size_at(i, side, price + 1) == view.get(price + 1, 0)


@settings(max_examples=200, deadline=None)
@given(stream=streams())
def test_kernel_matches_reference(stream) -> None:
    _, batches = stream
    store = BookStore(N_INST, WINDOW, overflow=2, max_overflow=1 << 16, max_rows=MAX_ROWS)
    ref = RefBooks(N_INST, MAX_ROWS)
    for now, batch in enumerate(batches, start=1):
        deltas = to_deltas(batch)
        skipped0, crossed0 = store.skipped, store.crossed
        changed = store.apply(deltas, now)
        skipped, ref_changed, crossed = ref.apply(batch)

        assert (deltas["ts_book"] == now).all()
        assert store.skipped - skipped0 == skipped
        assert len(changed) == len(set(changed))
        assert set(changed) == ref_changed
        assert store.crossed - crossed0 == crossed
        assert set(store.crossed_ids) == {i for i in ref_changed if ref.is_crossed(i)}
        assert_same_books(store, ref)
    assert store.dropped == 0


@settings(max_examples=150, deadline=None)
@given(stream=streams(), capacity_log2=st.integers(3, 7), offset=st.integers(0, 200))
def test_ring_span_kernel_matches_reference(stream, capacity_log2, offset) -> None:
    """``apply_span`` on the rows where a ring holds them (wrapping round its end) gives the
    reference's books, changed instruments and counts, stamps ``ts_book`` in the ring and
    reports the first row's ``ts_recv``."""
    _, batches = stream
    ring = ArrayRing("deltas", BOOK_DELTA, 1 << capacity_log2)
    ring.head = ring.tail = offset  # start anywhere: reads wrap round the buffer's end
    store = BookStore(N_INST, WINDOW, overflow=2, max_overflow=1 << 16, max_rows=MAX_ROWS)
    ref = RefBooks(N_INST, MAX_ROWS)
    for now, batch in enumerate(batches, start=1):
        for k in range(0, len(batch), ring.capacity):
            part = batch[k : k + ring.capacity]
            ring.write(to_deltas(part), 1000 + now)
            while len(ring):
                skipped0, crossed0 = store.skipped, store.crossed
                start, end = ring.read_span(ring.capacity)
                ids, ts_recv = store.apply_span(ring.buffer, start, end, now)
                assert ts_recv == 1000 + now
                assert (ring.buffer["ts_book"][start:end] == now).all()
                skipped, ref_changed, crossed = ref.apply(part[: end - start])
                part = part[end - start :]
                assert store.skipped - skipped0 == skipped
                assert len(ids) == len(set(ids))
                assert set(ids) == ref_changed
                assert store.crossed - crossed0 == crossed
                assert_same_books(store, ref)
    assert store.apply_span(ring.buffer, 3, 3, 0) == ([], 0)


def test_apply_span_refuses_a_buffer_that_is_not_book_deltas() -> None:
    store = BookStore(2, 16)
    with pytest.raises(TypeError, match="BOOK_DELTA"):
        store.apply_span(np.zeros(8, dtype=np.int64), 0, 4, 0)
    with pytest.raises(TypeError, match="BOOK_DELTA"):
        store.apply_span(np.zeros(8, dtype=BOOK_DELTA)[::2], 0, 4, 0)


@settings(max_examples=60, deadline=None)
@given(stream=streams(), cut=st.integers(1, 7))
def test_batching_does_not_change_the_books(stream, cut) -> None:
    """One call per socket read: how a stream is cut into batches changes nothing in the books."""
    _, batches = stream
    flat = [d for b in batches for d in b]
    whole = BookStore(N_INST, WINDOW, overflow=2, max_rows=MAX_ROWS)
    parts = BookStore(N_INST, WINDOW, overflow=2, max_rows=MAX_ROWS)
    whole.apply(to_deltas(flat), 0)
    for k in range(0, len(flat), cut):
        parts.apply(to_deltas(flat[k : k + cut]), 0)
    assert whole.tops == parts.tops
    assert whole.skipped == parts.skipped
    for i in range(N_INST):
        for side in (BID, ASK):
            assert whole.depth(i, side, 10_000) == parts.depth(i, side, 10_000)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([BID, ASK]),
            st.one_of(st.integers(-40, 40), st.integers(-5000, 5000)),
            st.integers(0, 20),
        ),
        max_size=60,
    ),
    st.integers(1, 20),
)
def test_l2book_matches_reference(updates, batch) -> None:
    """Float prices on a quarter tick; a 16-tick window so prices keep leaving it."""
    book = L2Book(0.25, lot_size=0.5, window=16, overflow=1)
    sides = (SortedDict(), SortedDict())
    for k in range(0, len(updates), batch):
        chunk = updates[k : k + batch]
        book.apply_batch(
            np.array([s for s, _, _ in chunk]),
            np.array([250.0 + t * 0.25 for _, t, _ in chunk]),
            np.array([q * 0.5 for _, _, q in chunk]),
        )
        for s, t, q in chunk:
            if q:
                sides[s][250.0 + t * 0.25] = q * 0.5
            else:
                sides[s].pop(250.0 + t * 0.25, None)
        bids = list(reversed(sides[BID].items()))
        asks = list(sides[ASK].items())
        assert book.depth("bid", 10_000) == bids
        assert book.depth("ask", 10_000) == asks
        assert book.depth("ask", 3) == asks[:3]
        assert book.best_bid() == (bids[0] if bids else None)
        assert book.best_ask() == (asks[0] if asks else None)
    assert book.skipped == 0 and book.dropped == 0
