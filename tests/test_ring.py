"""Tests for engine.ring: ArrayRing (market data) and ObjectRing (order flow)."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.messages import BOOK_DELTA, QUOTE, TRADE, OrderEvent
from engine.ring import ArrayRing, ObjectRing, OverflowPolicy

KEY = ("instrument_id", "side", "price")


def seq_rows(start: int, n: int) -> np.ndarray:
    """``n`` book-delta rows carrying sequence numbers ``start..start+n-1`` in ``price``."""
    rows = np.zeros(n, dtype=BOOK_DELTA)
    rows["price"] = np.arange(start, start + n)
    return rows


def delta_rows(items: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Rows from ``(instrument_id, side, price, size)``; ``ts_event`` is the arrival index."""
    rows = np.zeros(len(items), dtype=BOOK_DELTA)
    for i, (inst, side, price, size) in enumerate(items):
        rows[i]["instrument_id"] = inst
        rows[i]["side"] = side
        rows[i]["price"] = price
        rows[i]["size"] = size
        rows[i]["ts_event"] = i
    return rows


def build_book(rows: np.ndarray) -> dict[tuple[int, int, int], int]:
    book: dict[tuple[int, int, int], int] = {}
    for r in rows:
        book[(int(r["instrument_id"]), int(r["side"]), int(r["price"]))] = int(r["size"])
    return book


def read_all(ring: ArrayRing, max_n: int = 1 << 30) -> np.ndarray:
    """Everything pending, copied out (several reads if the data wraps)."""
    parts = []
    while len(ring):
        view = ring.read(max_n)
        assert len(view) > 0, "read returned nothing although rows are pending"
        parts.append(view.copy())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=ring.buffer.dtype)


# ---------------------------------------------------------------------------------------------
# Capacity


@pytest.mark.parametrize("capacity", [-8, 0, 1, 3, 6, 12, 100, 1000])
def test_array_ring_capacity_must_be_power_of_two(capacity: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        ArrayRing("md", BOOK_DELTA, capacity)


@pytest.mark.parametrize("capacity", [-8, 0, 1, 3, 6, 12, 100, 1000])
def test_object_ring_capacity_must_be_power_of_two(capacity: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        ObjectRing("orders", OrderEvent, capacity)


@pytest.mark.parametrize("capacity", [2, 4, 64, 1024])
def test_power_of_two_capacities_are_accepted(capacity: int) -> None:
    ring = ArrayRing("md", BOOK_DELTA, capacity)
    assert ring.capacity == capacity
    assert len(ring.buffer) == capacity
    assert ring.free == capacity
    oring = ObjectRing("orders", OrderEvent, capacity)
    assert oring.capacity == capacity
    assert len(oring) == 0


def test_conflate_needs_key_fields() -> None:
    with pytest.raises(ValueError, match="CONFLATE"):
        ArrayRing("md", BOOK_DELTA, 8, OverflowPolicy.CONFLATE)


# ---------------------------------------------------------------------------------------------
# ArrayRing: write / read / claim / commit


def test_write_then_read_preserves_order() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8)
    assert ring.write(seq_rows(0, 5)) == 5
    assert len(ring) == 5
    assert ring.free == 3
    out = ring.read(100)
    assert out["price"].tolist() == [0, 1, 2, 3, 4]
    assert len(ring) == 0
    assert ring.free == 8


def test_write_across_wrap_point_then_read_in_two_contiguous_pieces() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8)
    ring.write(seq_rows(0, 5))
    ring.read(5)
    # tail is at slot 5: a batch of 6 wraps (3 at the end, 3 at the start).
    assert ring.write(seq_rows(5, 6)) == 6
    assert len(ring) == 6
    assert ring.buffer["price"][5:8].tolist() == [5, 6, 7]
    assert ring.buffer["price"][0:3].tolist() == [8, 9, 10]
    first = ring.read(100)
    # read never crosses the wrap point: it returns fewer rows.
    assert first["price"].tolist() == [5, 6, 7]
    assert len(ring) == 3
    second = ring.read(100)
    assert second["price"].tolist() == [8, 9, 10]
    assert len(ring) == 0
    assert len(ring.read(100)) == 0


def test_write_takes_strided_batches_and_copies_their_rows() -> None:
    """A batch that is a strided view (every other row of a decoder's output) is written row
    for row, at the wrap point too, and later changes to the source do not reach the ring."""
    ring = ArrayRing("md", BOOK_DELTA, 8)
    ring.write(seq_rows(0, 6))
    ring.read(6)
    source = seq_rows(100, 10)
    assert ring.write(source[::2]) == 5  # slots 6, 7, then 0, 1, 2
    source["price"] = -1
    assert read_all(ring)["price"].tolist() == [100, 102, 104, 106, 108]


@pytest.mark.parametrize("layout", [BOOK_DELTA, QUOTE, TRADE])
def test_kernel_copy_and_void_copy_write_the_same_rows(layout) -> None:
    """A batch of the ring's own dtype object goes through the layout's copy kernel; one of an
    equal dtype object through the void view. Both write every byte of every row, in order,
    across the wrap point."""
    rng = np.random.default_rng(3)
    fast = ArrayRing("md", layout, 16)
    slow = ArrayRing("md", layout, 16)
    equal = copy.deepcopy(layout)
    assert equal == layout and equal is not layout
    for n in (5, 9, 16, 3, 11):
        raw = rng.integers(0, 256, n * layout.itemsize, dtype=np.uint8)
        own = raw.view(layout)
        other = raw.copy().view(equal)
        assert own.dtype is fast.buffer.dtype and fast._copy is not None  # the kernel's path
        assert other.dtype is not slow.buffer.dtype  # the void view's
        assert fast.write(own) == slow.write(other) == n
        assert fast.buffer.tobytes() == slow.buffer.tobytes()
        got = read_all(fast)
        assert got.tobytes() == raw.tobytes()
        read_all(slow)
        # Stamped on the way in: the ring's rows carry ts_recv, the batch is left as it was.
        ts = int(rng.integers(1, 2**62))
        assert fast.write(own, ts) == slow.write(other, ts) == n
        assert fast.buffer.tobytes() == slow.buffer.tobytes()
        got = read_all(fast)
        assert (got["ts_recv"] == ts).all() and (own["ts_recv"] != ts).all()
        for name in layout.names:
            if name != "ts_recv":
                assert np.array_equal(got[name], own[name]), name
        read_all(slow)


def test_read_returns_contiguous_views_into_the_buffer() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8)
    ring.write(seq_rows(0, 4))
    view = ring.read(3)
    assert len(view) == 3
    assert np.shares_memory(view, ring.buffer)
    assert view.flags["C_CONTIGUOUS"]
    assert view.dtype == BOOK_DELTA
    assert ring.read(3)["price"].tolist() == [3]


def test_read_respects_max_n() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 16)
    ring.write(seq_rows(0, 10))
    assert ring.read(4)["price"].tolist() == [0, 1, 2, 3]
    assert ring.read(0).shape == (0,)
    assert ring.read(4)["price"].tolist() == [4, 5, 6, 7]
    assert ring.read(4)["price"].tolist() == [8, 9]


def test_many_wraps_keep_order() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8)
    got: list[int] = []
    seq = 0
    for k in [3, 5, 7, 1, 8, 2, 6, 4, 7, 7]:
        assert ring.write(seq_rows(seq, k)) == k
        seq += k
        got += read_all(ring)["price"].tolist()
    assert got == list(range(seq))
    assert ring.dropped == 0


def test_claim_commit_publishes_rows() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8)
    slots = ring.claim(3)
    assert len(slots) == 3
    assert np.shares_memory(slots, ring.buffer)
    slots["price"] = [10, 11, 12]
    # Nothing is visible before commit.
    assert len(ring) == 0
    ring.commit(3)
    assert len(ring) == 3
    assert ring.read(10)["price"].tolist() == [10, 11, 12]


def test_claim_partial_commit() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8)
    slots = ring.claim(4)
    slots["price"][:2] = [1, 2]
    ring.commit(2)
    assert len(ring) == 2
    slots = ring.claim(4)
    slots["price"][:1] = [3]
    ring.commit(1)
    assert ring.read(10)["price"].tolist() == [1, 2, 3]


def test_claim_is_limited_by_free_space_and_wrap_point() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8)
    ring.write(seq_rows(0, 6))
    # 2 free at the end of the buffer.
    assert len(ring.claim(5)) == 2
    ring.read(6)
    # Still only 2 contiguous slots before the wrap although 8 are free.
    view = ring.claim(5)
    assert len(view) == 2
    view["price"] = [6, 7]
    ring.commit(2)
    view = ring.claim(5)
    assert len(view) == 5
    view["price"] = [8, 9, 10, 11, 12]
    ring.commit(5)
    assert read_all(ring)["price"].tolist() == [6, 7, 8, 9, 10, 11, 12]


def test_claim_on_full_ring_is_empty() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 4)
    ring.write(seq_rows(0, 4))
    assert len(ring.claim(1)) == 0
    assert ring.free == 0


# ---------------------------------------------------------------------------------------------
# ArrayRing: overflow policies


def test_drop_newest_keeps_oldest_and_counts() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8, OverflowPolicy.DROP_NEWEST)
    assert ring.write(seq_rows(0, 6)) == 6
    assert ring.write(seq_rows(6, 5)) == 2
    assert ring.dropped == 3
    assert ring.free == 0
    assert ring.write(seq_rows(11, 4)) == 0
    assert ring.dropped == 7
    assert read_all(ring)["price"].tolist() == list(range(8))


def test_drop_newest_batch_bigger_than_ring() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 4, OverflowPolicy.DROP_NEWEST)
    assert ring.write(seq_rows(0, 10)) == 4
    assert ring.dropped == 6
    assert read_all(ring)["price"].tolist() == [0, 1, 2, 3]


def test_drop_oldest_keeps_newest_and_counts() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8, OverflowPolicy.DROP_OLDEST)
    ring.write(seq_rows(0, 6))
    assert ring.write(seq_rows(6, 5)) == 5
    assert ring.dropped == 3
    assert len(ring) == 8
    assert read_all(ring)["price"].tolist() == list(range(3, 11))


def test_drop_oldest_batch_bigger_than_ring() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8, OverflowPolicy.DROP_OLDEST)
    ring.write(seq_rows(0, 3))
    ring.read(1)  # two pending: 1, 2
    assert ring.write(seq_rows(3, 20)) == 8
    # The two pending rows and the first 12 of the batch are lost.
    assert ring.dropped == 2 + 20 - 8
    assert read_all(ring)["price"].tolist() == list(range(15, 23))


def test_drop_oldest_across_wrap() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8, OverflowPolicy.DROP_OLDEST)
    ring.write(seq_rows(0, 6))
    ring.read(4)  # pending 4, 5 at slots 4, 5
    ring.write(seq_rows(6, 6))  # pending 4..11, full
    assert ring.dropped == 0
    ring.write(seq_rows(12, 3))
    assert ring.dropped == 3
    assert read_all(ring)["price"].tolist() == list(range(7, 15))


def test_conflate_keeps_newest_per_key_in_arrival_order() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8, OverflowPolicy.CONFLATE, KEY)
    k0, k1, k2, k3, k4 = (1, 0, 100), (1, 1, 101), (2, 0, 100), (1, 0, 99), (2, 1, 105)
    first = delta_rows(
        [(*k0, 10), (*k1, 11), (*k0, 12), (*k2, 13), (*k1, 14), (*k0, 15), (*k3, 16), (*k2, 17)]
    )
    assert ring.write(first) == 8
    second = delta_rows([(*k4, 18), (*k0, 19)])
    assert ring.write(second) == 2
    # Last occurrences in the full ring: k1@4 (14), k0@5 (15), k3@6 (16), k2@7 (17).
    assert ring.conflated == 4
    assert ring.dropped == 0
    out = read_all(ring)
    assert out["size"].tolist() == [14, 15, 16, 17, 18, 19]
    assert [tuple(int(r[f]) for f in KEY) for r in out] == [k1, k0, k3, k2, k4, k0]


def test_conflate_with_wrapped_pending_rows() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 8, OverflowPolicy.CONFLATE, KEY)
    ring.write(delta_rows([(0, 0, 0, 0)] * 6))
    ring.read(6)
    # Pending rows now start at slot 6 and wrap.
    items = [(1, 0, 100 + (i % 3), i) for i in range(8)]
    ring.write(delta_rows(items))
    ring.write(delta_rows([(1, 1, 200, 99)]))
    assert ring.conflated == 5
    out = read_all(ring)
    assert out["size"].tolist() == [5, 6, 7, 99]
    assert out["price"].tolist() == [102, 100, 101, 200]


def test_conflate_falls_back_to_dropping_oldest_when_folding_is_not_enough() -> None:
    ring = ArrayRing("md", BOOK_DELTA, 4, OverflowPolicy.CONFLATE, KEY)
    ring.write(delta_rows([(1, 0, p, p) for p in range(4)]))  # 4 distinct keys
    assert ring.write(delta_rows([(1, 0, 10, 10), (1, 0, 11, 11)])) == 2
    assert ring.conflated == 0
    assert ring.dropped == 2
    assert read_all(ring)["price"].tolist() == [2, 3, 10, 11]


def test_conflated_book_equals_full_book() -> None:
    rng = np.random.default_rng(1234)
    ring = ArrayRing("md", BOOK_DELTA, 32, OverflowPolicy.CONFLATE, KEY)
    written: list[np.ndarray] = []
    delivered: list[np.ndarray] = []
    # 2 instruments x 2 sides x 5 prices = 20 keys < capacity, batches <= 8: nothing drops.
    for step in range(400):
        n = int(rng.integers(1, 9))
        batch = np.zeros(n, dtype=BOOK_DELTA)
        batch["instrument_id"] = rng.integers(0, 2, n)
        batch["side"] = rng.integers(0, 2, n)
        batch["price"] = rng.integers(100, 105, n)
        batch["size"] = rng.integers(0, 1000, n)
        assert ring.write(batch) == n
        written.append(batch)
        if step % 9 == 8:
            delivered.append(ring.read(int(rng.integers(1, 40))).copy())
    delivered.append(read_all(ring))
    all_rows = np.concatenate(written)
    out = np.concatenate(delivered)
    assert ring.dropped == 0
    assert ring.conflated > 0
    assert len(out) + ring.conflated == len(all_rows)
    assert build_book(out) == build_book(all_rows)


@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 2), st.integers(0, 50)),
            min_size=1,
            max_size=8,
        ),
        max_size=30,
    ),
    reads=st.lists(st.integers(0, 20), max_size=30),
)
def test_conflated_book_equals_full_book_property(
    batches: list[list[tuple[int, int, int, int]]], reads: list[int]
) -> None:
    # 12 keys, capacity 32, batches <= 8: conflation alone always makes room.
    ring = ArrayRing("md", BOOK_DELTA, 32, OverflowPolicy.CONFLATE, KEY)
    all_items: list[tuple[int, int, int, int]] = []
    out: list[np.ndarray] = []
    for i, batch in enumerate(batches):
        assert ring.write(delta_rows(batch)) == len(batch)
        all_items += batch
        if i < len(reads):
            out.append(ring.read(reads[i]).copy())
    out.append(read_all(ring))
    delivered = np.concatenate(out)
    assert ring.dropped == 0
    assert len(delivered) + ring.conflated == len(all_items)
    assert build_book(delivered) == build_book(delta_rows(all_items))


def test_sequence_numbers_only_grow_under_conflation() -> None:
    """The module promises head and tail only grow; the engine exports ``tail`` as the
    ``messages_total`` Prometheus counter, which must never go backwards."""
    ring = ArrayRing("md", BOOK_DELTA, 8, OverflowPolicy.CONFLATE, KEY)
    history = []
    for i in range(6):
        ring.write(delta_rows([(1, 0, 100, i), (1, 1, 101, i), (1, 0, 100, i + 1)]))
        history.append((ring.head, ring.tail))
    assert ring.conflated > 0
    heads = [h for h, _ in history]
    tails = [t for _, t in history]
    assert heads == sorted(heads), f"head went backwards: {heads}"
    assert tails == sorted(tails), f"tail went backwards: {tails}"


# ---------------------------------------------------------------------------------------------
# ArrayRing: model-based property test


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.sampled_from([2, 4, 8, 16]),
    policy=st.sampled_from([OverflowPolicy.DROP_NEWEST, OverflowPolicy.DROP_OLDEST]),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("write"), st.integers(0, 20)),
            st.tuples(st.just("read"), st.integers(0, 20)),
        ),
        max_size=60,
    ),
)
def test_array_ring_matches_list_model(
    capacity: int, policy: OverflowPolicy, ops: list[tuple[str, int]]
) -> None:
    ring = ArrayRing("md", BOOK_DELTA, capacity, policy)
    model: list[int] = []
    next_seq = 0
    head = 0  # the model's sequence number of the oldest pending row
    dropped = 0
    for op, k in ops:
        if op == "write":
            seqs = list(range(next_seq, next_seq + k))
            batch = seq_rows(next_seq, k)
            next_seq += k
            if policy is OverflowPolicy.DROP_NEWEST:
                accepted = seqs[: capacity - len(model)]
            else:
                accepted = seqs[-capacity:] if k > capacity else seqs
            dropped += len(model) + k - capacity if len(model) + k > capacity else 0
            model += accepted
            lose = max(0, len(model) - capacity)
            model = model[lose:]
            head += lose
            assert ring.write(batch) == len(accepted)
        else:
            expect_n = min(k, len(model), capacity - head % capacity)
            out = ring.read(k)
            assert out["price"].tolist() == model[:expect_n]
            model = model[expect_n:]
            head += expect_n
        assert len(ring) == len(model)
        assert ring.free == capacity - len(model)
        assert ring.dropped == dropped
    assert read_all(ring)["price"].tolist() == model


# ---------------------------------------------------------------------------------------------
# ObjectRing


def claim_seq(ring: ObjectRing[OrderEvent], start: int, n: int) -> None:
    for i in range(start, start + n):
        ring.claim().client_order_id = i


def drain_ids(ring: ObjectRing[OrderEvent], max_n: int = 1 << 30) -> list[int]:
    got: list[int] = []
    n = ring.drain(lambda ev: got.append(ev.client_order_id), max_n)
    assert n == len(got)
    return got


def drain_everything(ring: ObjectRing[OrderEvent], max_n: int = 1 << 30) -> list[int]:
    got: list[int] = []
    while len(ring):
        part = drain_ids(ring, max_n)
        assert part, "drain delivered nothing although messages are pending"
        got += part
    return got


def test_object_ring_claim_drain_order() -> None:
    ring: ObjectRing[OrderEvent] = ObjectRing("events", OrderEvent, 8)
    claim_seq(ring, 0, 5)
    assert len(ring) == 5
    assert drain_ids(ring) == [0, 1, 2, 3, 4]
    assert len(ring) == 0
    assert drain_ids(ring) == []


def test_object_ring_claim_returns_pooled_objects() -> None:
    ring: ObjectRing[OrderEvent] = ObjectRing("events", OrderEvent, 4)
    first = [ring.claim() for _ in range(4)]
    assert all(isinstance(o, OrderEvent) for o in first)
    assert len({id(o) for o in first}) == 4
    ring.drain(lambda ev: None, 4)
    # The same preallocated slots are reused.
    again = [ring.claim() for _ in range(4)]
    assert [id(o) for o in again] == [id(o) for o in first]


def test_object_ring_last_is_the_message_claimed_last_even_when_spilled() -> None:
    ring: ObjectRing[OrderEvent] = ObjectRing("events", OrderEvent, 4)
    assert ring.last() is None
    claimed = [ring.claim() for _ in range(3)]
    assert ring.last() is claimed[-1]
    ring.drain(lambda ev: None, 3)
    assert ring.last() is claimed[-1]  # handled, still in its slot
    more = [ring.claim() for _ in range(6)]  # wraps, then spills past the capacity
    assert ring.overflowed and ring.last() is more[-1]
    ring.drain(lambda ev: None, 4)  # the spill moves into the freed slots
    assert not ring.overflowed and ring.last() is more[-1]


def test_object_ring_drain_max_n() -> None:
    ring: ObjectRing[OrderEvent] = ObjectRing("events", OrderEvent, 8)
    claim_seq(ring, 0, 6)
    assert drain_ids(ring, 4) == [0, 1, 2, 3]
    assert len(ring) == 2
    assert drain_ids(ring, 0) == []
    assert drain_ids(ring, 10) == [4, 5]


def test_object_ring_wraps_many_times() -> None:
    ring: ObjectRing[OrderEvent] = ObjectRing("events", OrderEvent, 4)
    got: list[int] = []
    seq = 0
    for k in [3, 4, 1, 2, 4, 3, 4]:
        claim_seq(ring, seq, k)
        seq += k
        got += drain_ids(ring, 3)
        got += drain_ids(ring)
    assert got == list(range(seq))
    assert ring.spilled == 0


def test_object_ring_handler_error_still_delivers_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ring: ObjectRing[OrderEvent] = ObjectRing("events", OrderEvent, 8)
    claim_seq(ring, 0, 5)
    seen: list[int] = []

    def handler(ev: OrderEvent) -> None:
        seen.append(ev.client_order_id)
        if ev.client_order_id == 2:
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="engine.ring"):
        assert ring.drain(handler, 10) == 5
    assert seen == [0, 1, 2, 3, 4]
    assert ring.errors == 1
    assert len(ring) == 0
    assert any("events" in r.getMessage() and r.exc_info for r in caplog.records)


def test_object_ring_handler_error_on_a_single_message(caplog: pytest.LogCaptureFixture) -> None:
    ring: ObjectRing[OrderEvent] = ObjectRing("intents", OrderEvent, 8)
    claim_seq(ring, 0, 1)

    def handler(ev: OrderEvent) -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="engine.ring"):
        assert ring.drain(handler, 64) == 1
    assert ring.errors == 1
    assert len(ring) == 0
    assert any("intents" in r.getMessage() and r.exc_info for r in caplog.records)
    claim_seq(ring, 1, 1)
    assert drain_ids(ring) == [1]


def test_object_ring_overflow_calls_on_full_once_and_loses_nothing() -> None:
    calls: list[ObjectRing[OrderEvent]] = []
    ring: ObjectRing[OrderEvent] = ObjectRing("events", OrderEvent, 4, on_full=calls.append)
    claim_seq(ring, 0, 4)
    assert calls == []
    claim_seq(ring, 4, 7)
    assert calls == [ring]
    assert ring.overflowed
    assert ring.spilled == 7
    assert len(ring) == 11
    # Drain a little, claim more while still overflowing: still no second call.
    assert drain_ids(ring, 3) == [0, 1, 2]
    claim_seq(ring, 11, 3)
    assert len(calls) == 1
    assert len(ring) == 11
    rest = drain_everything(ring, 3)
    assert rest == list(range(3, 14))
    assert len(ring) == 0
    assert not ring.overflowed
    assert len(calls) == 1


def test_object_ring_overflow_drain_all_at_once() -> None:
    calls: list[object] = []
    ring: ObjectRing[OrderEvent] = ObjectRing("events", OrderEvent, 8, on_full=calls.append)
    claim_seq(ring, 0, 20)
    assert len(calls) == 1
    got = drain_everything(ring)
    assert got == list(range(20))
    assert ring.spilled == 12
    # After recovery the ring works normally again.
    claim_seq(ring, 100, 3)
    assert drain_ids(ring) == [100, 101, 102]


def test_object_ring_overflow_without_on_full() -> None:
    ring: ObjectRing[OrderEvent] = ObjectRing("events", OrderEvent, 2)
    claim_seq(ring, 0, 5)
    assert drain_everything(ring, 1) == [0, 1, 2, 3, 4]


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.sampled_from([4, 8]),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("claim"), st.integers(0, 12)),
            st.tuples(st.just("drain"), st.integers(0, 12)),
        ),
        max_size=60,
    ),
)
def test_object_ring_matches_list_model(capacity: int, ops: list[tuple[str, int]]) -> None:
    calls: list[object] = []
    ring: ObjectRing[OrderEvent] = ObjectRing("events", OrderEvent, capacity, on_full=calls.append)
    model: list[int] = []
    next_seq = 0
    episodes = 0  # overflow episodes: a claim on a full ring that is not already spilling
    spilling = False
    spilled = 0
    for op, k in ops:
        if op == "claim":
            for _ in range(k):
                if len(model) >= capacity:
                    spilled += 1
                    if not spilling:
                        spilling = True
                        episodes += 1
                model.append(next_seq)
                ring.claim().client_order_id = next_seq
                next_seq += 1
        else:
            expect_n = min(k, len(model), capacity)
            assert drain_ids(ring, k) == model[:expect_n]
            model = model[expect_n:]
            if len(model) <= capacity:
                spilling = False
        assert len(ring) == len(model)
        assert len(calls) == episodes
        assert ring.spilled == spilled
        assert ring.overflowed == spilling
    assert drain_everything(ring) == model
    assert ring.errors == 0
