"""IB market data into engine rows: ``hotpath.ibmd.translate`` (through ``MarketDataTranslator``)
against a plain-Python reference, and real gateway-simulator frames through the whole receive
path (``HotDecoder`` -> translator -> ``BookStore``).

Random batches mix every row kind, bound and unbound request ids, kinds that do not match their
subscription, NaN / infinite / -1 / 0 / unset / out-of-range numbers, three instruments with
different tick and lot sizes, and outputs small enough that batches overflow them.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ibapi.const import UNSET_DECIMAL

from adapters.ib.decode import HotDecoder
from adapters.ib.gateway_sim.responses import ResponseEncoder
from adapters.ib.marketdata import MarketDataTranslator, Subscription
from engine.book import BookStore
from engine.messages import BOOK_DELTA, NO_PRICE, QUOTE, BookSide, DeltaAction
from hotpath import ibmd, ibwire
from hotpath.ibwire import HOT_ROW, UNSET_DOUBLE, UNSET_SIZE

ROOT = Path(__file__).resolve().parent.parent
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TICKS = (0.01, 0.25, 5.0)
LOTS = (1.0, 0.001, 100.0)
N_INST = len(TICKS)
MAX_REQ = 12
# req id -> (instrument, kind); 9 and 11 stay unbound, 12 and up are outside the table.
BINDINGS = {
    0: (0, Subscription.L1),
    1: (1, Subscription.L1),
    2: (2, Subscription.L1),
    3: (0, Subscription.DEPTH),
    4: (1, Subscription.DEPTH),
    5: (2, Subscription.DEPTH),
    6: (0, Subscription.TICK_BY_TICK),
    7: (1, Subscription.TICK_BY_TICK),
    8: (2, Subscription.TICK_BY_TICK),
    10: (0, Subscription.L1),
}
LIMIT = 1 << 62

# -- the reference ------------------------------------------------------------------------------


def units(x: float, inv: float) -> int | None:
    """``round(x * inv)`` if that is an integer strictly inside +-2**62, else None."""
    v = x * inv
    if not math.isfinite(v):
        return None
    n = round(v)
    return n if -LIMIT < n < LIMIT else None


def l1_price_ok(p: float, inv: float) -> bool:
    return p in (-1.0, 0.0) or units(p, inv) is not None


def l1_size_ok(q: float, inv: float) -> bool:
    return q == UNSET_SIZE or (q >= 0 and units(q, inv) is not None)


def ticks(p: float, inv: float) -> int:
    return NO_PRICE if p in (-1.0, 0.0) else units(p, inv)


def mm_hash(name: bytes) -> int:
    name = name.split(b"\0")[0]
    if not name:
        return 0
    h = 2166136261
    for c in name:
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF
    return h & 0x7FFFFFFF


L1_COLUMNS = {
    (ibwire.KIND_TICK_PRICE, 1): 0,
    (ibwire.KIND_TICK_PRICE, 66): 0,
    (ibwire.KIND_TICK_PRICE, 2): 1,
    (ibwire.KIND_TICK_PRICE, 67): 1,
    (ibwire.KIND_TICK_SIZE, 0): 2,
    (ibwire.KIND_TICK_SIZE, 69): 2,
    (ibwire.KIND_TICK_SIZE, 3): 3,
    (ibwire.KIND_TICK_SIZE, 70): 3,
}


class Reference:
    """What ``MarketDataTranslator.translate`` should produce, one row at a time in Python."""

    def __init__(self, bindings: dict[int, tuple[int, int]]) -> None:
        self.bindings = dict(bindings)
        self.l1 = [[0.0, 0.0, 0.0, 0.0] for _ in range(N_INST)]
        self.l1_ts = [0] * N_INST
        self.skipped = 0

    def batch(self, rows: list[dict], ts: int) -> tuple[list, list, list]:
        deltas: list[tuple] = []
        trades: list[tuple] = []
        touched: list[int] = []
        for r in rows:
            out = self.row(r, ts, touched)
            if out is None:
                self.skipped += 1
            elif out[0] == "delta":
                deltas.append(out[1])
            elif out[0] == "trade":
                trades.append(out[1])
        if deltas:
            last = deltas[-1]
            deltas[-1] = (*last[:-1], last[-1] | 1)
        quotes = [self.quote(i, ts) for i in touched]
        return deltas, quotes, trades

    def quote(self, i: int, ts: int) -> tuple:
        bid, ask, bq, aq = self.l1[i]
        tick_inv, lot_inv = 1 / TICKS[i], 1 / LOTS[i]
        return (
            ticks(bid, tick_inv),
            ticks(ask, tick_inv),
            round(bq * lot_inv),
            round(aq * lot_inv),
            self.l1_ts[i],
            ts,
            i,
        )

    def row(self, r: dict, ts: int, touched: list[int]) -> tuple | str | None:
        """``("delta", ...)``, ``("trade", ...)``, ``"ok"`` (state or nothing) or None (skip)."""
        if r["req_id"] not in self.bindings:
            return None
        i, sub = self.bindings[r["req_id"]]
        tick_inv, lot_inv = 1 / TICKS[i], 1 / LOTS[i]
        kind = r["kind"]
        if kind in (ibwire.KIND_MKT_DEPTH, ibwire.KIND_MKT_DEPTH_L2):
            op, side, pos = r["operation"], r["side"], r["position"]
            p = units(r["price"], tick_inv)
            q = units(r["size"], lot_inv) if r["size"] >= 0 else None
            if sub != Subscription.DEPTH or op not in (0, 1, 2) or side not in (0, 1):
                return None
            if not 0 <= pos <= 32767 or (op != 2 and (p is None or q is None)):
                return None
            l2 = kind == ibwire.KIND_MKT_DEPTH_L2
            flags = 2 if l2 and r["is_smart_depth"] else 0
            book_side = int(BookSide.ASK) if side == 0 else int(BookSide.BID)
            return "delta", (
                NO_PRICE if p is None else p,
                0 if q is None else q,
                ts,
                ts,
                i,
                book_side,
                op + 1,
                pos,
                mm_hash(r["market_maker"]) if l2 else 0,
                flags,
            )
        if kind == ibwire.KIND_TBT_LAST:
            p = units(r["price"], tick_inv)
            size = r["size"]
            q = units(size, lot_inv) if size >= 0 and size != UNSET_SIZE else None
            if sub != Subscription.TICK_BY_TICK or p is None or q is None:
                return None
            return "trade", (p, q, 0, r["time"] * 10**9, ts, i, 0)
        if kind in (ibwire.KIND_TICK_PRICE, ibwire.KIND_TICK_SIZE):
            if sub != Subscription.L1:
                return None
            col = L1_COLUMNS.get((kind, r["tick_type"]))
            if col is None:
                return "ok"
            if col < 2:
                x = r["price"]
                if not l1_price_ok(x, tick_inv):
                    return None
            else:
                x = r["size"]
                if not l1_size_ok(x, lot_inv):
                    return None
                if x == UNSET_SIZE:
                    return "ok"
            self.l1[i][col] = x
            self.l1_ts[i] = ts
            if i not in touched:
                touched.append(i)
            return "ok"
        if kind == ibwire.KIND_TBT_BID_ASK:
            bp, ap, bq, aq = r["bid_price"], r["ask_price"], r["bid_size"], r["ask_size"]
            ok = l1_price_ok(bp, tick_inv) and l1_price_ok(ap, tick_inv)
            ok = ok and l1_size_ok(bq, lot_inv) and l1_size_ok(aq, lot_inv)
            if sub != Subscription.TICK_BY_TICK or not ok:
                return None
            self.l1[i][0] = bp
            self.l1[i][1] = ap
            if bq != UNSET_SIZE:
                self.l1[i][2] = bq
            if aq != UNSET_SIZE:
                self.l1[i][3] = aq
            self.l1_ts[i] = r["time"] * 10**9
            if i not in touched:
                touched.append(i)
            return "ok"
        if kind == ibwire.KIND_TBT_MID_POINT and sub == Subscription.TICK_BY_TICK:
            return "ok"
        return None


# -- rows ---------------------------------------------------------------------------------------

ODD = [math.nan, math.inf, -math.inf, UNSET_DOUBLE, 1e300, -1e300]
sane_prices = st.one_of(
    st.integers(-2_000, 200_000).map(lambda k: k * 0.01),
    st.integers(-100, 4_000).map(lambda k: k * 0.25),
    st.floats(-1e6, 1e6),
)
prices = st.one_of(sane_prices, sane_prices, sane_prices, st.sampled_from([*ODD, -1.0, 0.0]))
sane_sizes = st.one_of(
    st.integers(0, 10**6).map(float),
    st.integers(0, 10**5).map(lambda k: k * 0.001),
    st.floats(0, 1e7),
)
sizes = st.one_of(sane_sizes, sane_sizes, sane_sizes, st.sampled_from([*ODD, UNSET_SIZE, -1.0]))
TICK_TYPES = {
    ibwire.KIND_TICK_PRICE: [1, 2, 66, 67, 1, 2, 4, 6, 9, 68],
    ibwire.KIND_TICK_SIZE: [0, 3, 69, 70, 0, 3, 5, 8, 71],
}
SUBSCRIPTION_OF = {
    ibwire.KIND_TICK_PRICE: Subscription.L1,
    ibwire.KIND_TICK_SIZE: Subscription.L1,
    ibwire.KIND_MKT_DEPTH: Subscription.DEPTH,
    ibwire.KIND_MKT_DEPTH_L2: Subscription.DEPTH,
    ibwire.KIND_TBT_LAST: Subscription.TICK_BY_TICK,
    ibwire.KIND_TBT_BID_ASK: Subscription.TICK_BY_TICK,
    ibwire.KIND_TBT_MID_POINT: Subscription.TICK_BY_TICK,
}
ANY_REQ_ID = st.sampled_from([*range(MAX_REQ + 2), -1, 2**31 - 1])


@st.composite
def hot_rows(draw) -> dict:
    """Mostly rows a subscription would get, sometimes anything (wrong ids, kinds, numbers)."""
    kind = draw(st.sampled_from([*range(1, 8), 0, 9] if draw(st.booleans()) else range(1, 8)))
    fitting = [r for r, (_, sub) in BINDINGS.items() if sub == SUBSCRIPTION_OF.get(kind)]
    fits = fitting and draw(st.integers(0, 5)) > 0
    return {
        "kind": kind,
        "req_id": draw(st.sampled_from(fitting) if fits else ANY_REQ_ID),
        "tick_type": draw(st.sampled_from(TICK_TYPES.get(kind, [1, 2, 3, 4]))),
        "price": draw(prices),
        "size": draw(sizes),
        "bid_price": draw(prices),
        "ask_price": draw(prices),
        "bid_size": draw(sizes),
        "ask_size": draw(sizes),
        "mid_point": draw(prices),
        "time": draw(st.integers(0, 2_000_000_000)),
        "position": draw(
            st.sampled_from([0, 1, 2, 3, 0, 1, 2, 3, 40, -1, 32767, 32768, 2**31 - 1])
        ),
        "operation": draw(st.sampled_from([0, 1, 2, 0, 1, 2, 0, 1, 2, -1, 3])),
        "side": draw(st.sampled_from([0, 1, 0, 1, 0, 1, -1, 2])),
        "is_smart_depth": draw(st.booleans()),
        "market_maker": draw(st.sampled_from([b"", b"ISLAND", b"ARCA", b"NSDQ\0X", b"M" * 16])),
    }


def to_rows(rows: list[dict]) -> np.ndarray:
    out = np.zeros(len(rows), dtype=HOT_ROW)
    for k, r in enumerate(rows):
        for name, value in r.items():
            out[k][name] = value
    return out


def delta_tuples(d: np.ndarray) -> list[tuple]:
    names = (
        "price", "size", "ts_event", "ts_recv", "instrument_id", "side", "action",
        "position", "mm_id", "flags",
    )  # fmt: skip
    return [tuple(int(x) for x in row) for row in d[list(names)].tolist()]


def quote_tuples(q: np.ndarray) -> list[tuple]:
    names = (
        "bid_price", "ask_price", "bid_size", "ask_size", "ts_event", "ts_recv",
        "instrument_id",
    )  # fmt: skip
    return [tuple(int(x) for x in row) for row in q[list(names)].tolist()]


def trade_tuples(t: np.ndarray) -> list[tuple]:
    names = ("price", "size", "trade_id", "ts_event", "ts_recv", "instrument_id", "aggressor")
    return [tuple(int(x) for x in row) for row in t[list(names)].tolist()]


def new_translator(capacity: int = 4096) -> MarketDataTranslator:
    tr = MarketDataTranslator(N_INST, TICKS, LOTS, max_req_ids=MAX_REQ, capacity=capacity)
    for req, (i, kind) in BINDINGS.items():
        tr.bind(req, i, kind)
    return tr


# -- properties ---------------------------------------------------------------------------------


@PROPS
@given(
    batches=st.lists(st.lists(hot_rows(), max_size=40), min_size=1, max_size=4),
    capacity=st.sampled_from([1, 2, 5, 4096]),
)
def test_translator_matches_the_reference(batches, capacity):
    tr = new_translator(capacity)
    ref = Reference({r: (i, int(k)) for r, (i, k) in BINDINGS.items()})
    for n, batch in enumerate(batches):
        ts = 1_700_000_000_000_000_000 + n
        grows = tr.grows
        deltas, quotes, trades = tr.translate(to_rows(batch), ts)
        want_d, want_q, want_t = ref.batch(batch, ts)
        assert delta_tuples(deltas) == want_d
        assert trade_tuples(trades) == want_t
        assert tr.skipped == ref.skipped
        assert (deltas["ts_book"] == 0).all() and (quotes["flags"] == 0).all()
        got_q = quote_tuples(quotes)
        if tr.grows == grows:
            assert got_q == want_q
        else:  # a resumed batch may quote an instrument once per kernel call: the last counts
            assert {q[6]: q for q in got_q} == {q[6]: q for q in want_q}
        np.testing.assert_array_equal(tr.l1, np.array(ref.l1))


@PROPS
@given(
    rows=st.lists(hot_rows(), max_size=60),
    caps=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
)
def test_kernel_stops_where_an_output_is_full_and_resumes(rows, caps):
    """Calling again from ``end`` after each stop gives the deltas and trades of one big call."""
    tr = new_translator()
    big_d, _, big_t = (x.copy() for x in tr.translate(to_rows(rows), 5))
    skipped_once = tr.skipped
    l1_once = tr.l1.copy()
    tr = new_translator()
    hot = to_rows(rows)
    raw = hot.view(np.uint8).reshape(len(hot), HOT_ROW.itemsize)
    deltas = np.zeros(caps[0], dtype=BOOK_DELTA)
    quotes = np.zeros(caps[1], dtype=QUOTE)
    trades = np.zeros(caps[2], dtype=ibmd.TRADE_KERNEL)
    got_d: list[tuple] = []
    got_t: list[tuple] = []
    skipped = 0
    start = 0
    for _ in range(len(rows) + 1):
        nd, nq, nt, more, end = ibmd.translate(
            hot, raw, start, tr.req_inst, tr.req_kind, tr.tick_inv, tr.lot_inv, tr.l1,
            tr._l1_ts, tr._l1_dirty, tr._dirty_ids, deltas, quotes, trades, 5,
        )  # fmt: skip
        assert nd <= caps[0] and nq <= caps[1] and nt <= caps[2]
        assert not tr._l1_dirty.any()
        got_d += delta_tuples(deltas[:nd])
        got_t += [tuple(int(x) for x in r) for r in trades[:nt].tolist()]
        skipped += more
        assert start < end <= len(rows) or start == end == len(rows)
        if end == len(rows):
            break
        assert nd == caps[0] or nq == caps[1] or nt == caps[2]
        start = end
    assert skipped == skipped_once
    np.testing.assert_array_equal(tr.l1, l1_once)
    # Only the call that finishes marks a delta as last.
    want_d = delta_tuples(big_d)
    if want_d and got_d:
        got_d[-1] = (*got_d[-1][:-1], got_d[-1][-1] | 1)
    assert got_d == want_d
    assert got_t == [tuple(int(x) for x in r) for r in big_t.view(ibmd.TRADE_KERNEL).tolist()]


def test_unbind_and_rebind_route_rows():
    tr = new_translator()
    row = {"kind": ibwire.KIND_TICK_PRICE, "req_id": 0, "tick_type": 1, "price": 15.0}
    tr.unbind(0)
    tr.unbind(10**6)  # outside the table: nothing to do
    assert [len(x) for x in tr.translate(to_rows([row]), 1)] == [0, 0, 0]
    assert tr.skipped == 1
    tr.bind(0, 2, Subscription.L1)
    _, quotes, _ = tr.translate(to_rows([row]), 2)
    assert quote_tuples(quotes) == [(3, NO_PRICE, 0, 0, 2, 2, 2)]
    with pytest.raises(ValueError, match="max_req_ids"):
        tr.bind(MAX_REQ, 0, Subscription.L1)
    with pytest.raises(ValueError, match="instrument id 3"):
        tr.bind(0, 3, Subscription.L1)


def test_rows_that_are_not_contiguous_are_copied_and_other_dtypes_refused():
    tr = new_translator()
    rows = to_rows(
        [
            {"kind": ibwire.KIND_TICK_PRICE, "req_id": 1, "tick_type": 2, "price": 2.5},
            {"kind": ibwire.KIND_TICK_PRICE, "req_id": 1, "tick_type": 1, "price": 1.0},
        ]
    )
    _, quotes, _ = tr.translate(rows[::2], 9)
    assert quote_tuples(quotes) == [(NO_PRICE, 10, 0, 0, 9, 9, 1)]
    with pytest.raises(TypeError, match="HOT_ROW"):
        tr.translate(np.zeros(1, dtype=BOOK_DELTA), 9)
    with pytest.raises(TypeError, match="1-d"):
        tr.translate(rows.reshape(2, 1), 9)
    with pytest.raises(TypeError, match="own bytes"):  # raw that is not these rows' bytes
        tr.translate(rows, 9, np.zeros((1, rows.dtype.itemsize), dtype=np.uint8))


def test_clear_depth_is_one_clear_delta():
    d = new_translator().clear_depth(2, 77)
    assert d.dtype == BOOK_DELTA and len(d) == 1
    assert int(d[0]["action"]) == DeltaAction.CLEAR and int(d[0]["instrument_id"]) == 2
    assert (int(d[0]["ts_recv"]), int(d[0]["ts_event"]), int(d[0]["flags"])) == (77, 77, 1)


def test_clear_depth_forgets_the_l1_top_so_a_new_streams_quote_has_no_old_side():
    """A stream asked for again (reconnect, farm check, depth refused) starts with one side:
    before, its first quote carried the other side of the old stream (ask 2.0 below) as a real
    price; now the cleared instrument's quote has no ask until IB sends one."""
    tr = new_translator()
    old = [
        {"kind": ibwire.KIND_TICK_PRICE, "req_id": 0, "tick_type": 1, "price": 1.0},
        {"kind": ibwire.KIND_TICK_PRICE, "req_id": 0, "tick_type": 2, "price": 2.0},
        {"kind": ibwire.KIND_TICK_SIZE, "req_id": 0, "tick_type": 3, "size": 7.0},
        {"kind": ibwire.KIND_TICK_PRICE, "req_id": 1, "tick_type": 2, "price": 3.0},
    ]
    tr.translate(to_rows(old), 1)
    tr.clear_depth(0, 2)
    new = [
        {"kind": ibwire.KIND_TICK_PRICE, "req_id": 0, "tick_type": 1, "price": 1.5},
        {"kind": ibwire.KIND_TICK_PRICE, "req_id": 1, "tick_type": 1, "price": 2.5},
    ]
    _, quotes, _ = tr.translate(to_rows(new), 3)
    assert quote_tuples(quotes) == [
        (150, NO_PRICE, 0, 0, 3, 3, 0),
        (10, 12, 0, 0, 3, 3, 1),  # not cleared: its ask stays
    ]


# -- real frames through the whole receive path -------------------------------------------------

# Two instruments, depth on both (text/protobuf updateMktDepth on one, updateMktDepthL2 on the
# other), L1 and tick-by-tick on the first.
FRAME_TICKS = (0.25, 0.01)
FRAME_LOTS = (1.0, 100.0)
DEPTH_REQ = {0: 21, 1: 22}
MAKERS = ("ISLAND", "ARCA", "")


@st.composite
def depth_ops(draw) -> list[tuple]:
    """Valid IB depth operations (the rows each side holds are tracked while drawing)."""
    held = {(i, s): 0 for i in (0, 1) for s in (0, 1)}
    ops = []
    for _ in range(draw(st.integers(1, 60))):
        i = draw(st.integers(0, 1))
        side = draw(st.integers(0, 1))
        n = held[i, side]
        op = draw(st.sampled_from([0, 0, 1, 2])) if n else 0
        pos = draw(st.integers(0, n if op == 0 else n - 1))
        held[i, side] = n + 1 if op == 0 else n - 1 if op == 2 else n
        k = draw(st.integers(-20, 20))
        price = round(100.0 + k * FRAME_TICKS[i], 2)
        size = Decimal(draw(st.integers(1, 50))) * Decimal(str(FRAME_LOTS[i]))
        ops.append((i, pos, op, side, price, size, draw(st.sampled_from(MAKERS))))
    return ops


@pytest.mark.parametrize(("version", "protobuf"), [(176, False), (225, True)])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=depth_ops(), cut=st.integers(1, 25))
def test_gateway_depth_frames_build_the_book_they_describe(version, protobuf, ops, cut):
    enc = ResponseEncoder(version, protobuf)
    frames = []
    for i, pos, op, side, price, size, maker in ops:
        if i == 0:
            frames.append(enc.update_mkt_depth(DEPTH_REQ[i], pos, op, side, price, size))
        else:
            frames.append(
                enc.update_mkt_depth_l2(DEPTH_REQ[i], pos, maker, op, side, price, size, True)
            )
    tr = MarketDataTranslator(2, FRAME_TICKS, FRAME_LOTS, max_req_ids=64, capacity=8)
    given_raw = MarketDataTranslator(2, FRAME_TICKS, FRAME_LOTS, max_req_ids=64, capacity=8)
    for i, req in DEPTH_REQ.items():
        tr.bind(req, i, Subscription.DEPTH)
        given_raw.bind(req, i, Subscription.DEPTH)
    store = BookStore(2, window=64, overflow=4, max_rows=64)
    hot = HotDecoder(version)
    for a in range(0, len(frames), cut):  # one socket read per ``cut`` messages
        batch = hot.feed(b"".join(frames[a : a + cut]))
        assert not batch.cold and not batch.malformed
        # The venue's way (the decoder's bytes of the rows) and the checked way agree.
        same = [x.copy() for x in given_raw.translate(batch.rows, 1000 + a, batch.raw)]
        deltas, quotes, trades = tr.translate(batch.rows, 1000 + a)
        for ours, theirs in zip(same, (deltas, quotes, trades), strict=True):
            assert ours.tobytes() == theirs.tobytes()
        assert len(quotes) == len(trades) == 0
        assert deltas["flags"][-1] & 1 and not (deltas["flags"][:-1] & 1).any()
        smart = (deltas["flags"] & 2) != 0  # updateMktDepthL2's isSmartDepth
        assert (smart == (deltas["instrument_id"] == 1)).all()
        store.apply(deltas, 0)
    assert tr.skipped == 0 and store.skipped == 0

    # IB's rows as a dict of lists per side, replayed from the same operations.
    want: dict[tuple[int, int], list[tuple[int, int, int]]] = {
        (i, s): [] for i in (0, 1) for s in (0, 1)
    }
    for i, pos, op, side, price, size, maker in ops:
        row = (
            round(price / FRAME_TICKS[i]),
            int(size / Decimal(str(FRAME_LOTS[i]))),
            mm_hash(maker.encode()) if i == 1 else 0,
        )
        rows = want[i, 1 - side]  # IB side 0 is the ask (BookSide 1)
        if op == 0:
            rows.insert(pos, row)
        elif op == 1:
            rows[pos] = row
        else:
            del rows[pos]
    for (i, s), rows in want.items():
        assert store.rows_of(i, BookSide(s)) == rows
        levels: dict[int, int] = {}
        for px, lots, _ in rows:
            levels[px] = levels.get(px, 0) + lots
        best_first = sorted(levels.items(), reverse=s == BookSide.BID)
        assert store.depth(i, BookSide(s), 1000) == [lv for lv in best_first if lv[1] > 0]


@pytest.mark.parametrize(("version", "protobuf"), [(176, False), (225, True)])
def test_gateway_l1_and_tick_by_tick_frames_become_quotes_and_trades(version, protobuf):
    enc = ResponseEncoder(version, protobuf)
    stream = b"".join(
        [
            enc.tick_price(31, 1, 100.25, Decimal(300), 0),  # bid and bid size (tick 0)
            enc.tick_price(31, 2, 100.5, Decimal(200), 0),  # ask and ask size (tick 3)
            enc.tick_price(31, 4, 100.5, Decimal(5), 0),  # last: ignored
            enc.tick_size(31, 0, Decimal(400)),
            enc.tick_size(31, 8, Decimal(9999)),  # volume: ignored
            enc.tick_price(31, 2, -1.0, UNSET_DECIMAL, 0),  # ask gone, size unchanged
            enc.tick_by_tick_bid_ask(32, 1_700_000_001, 10.01, 10.02, Decimal(700), 800, 0),
            enc.tick_by_tick_all_last(32, 2, 1_700_000_002, 10.02, Decimal(300), 0, "ARCA", ""),
            enc.tick_by_tick_mid_point(32, 1_700_000_003, 10.015),  # ignored
            enc.tick_size(33, 0, Decimal(1)),  # unbound request id
        ]
    )
    batch = HotDecoder(version).feed(stream)
    assert not batch.cold and not batch.malformed
    tr = MarketDataTranslator(2, FRAME_TICKS, FRAME_LOTS, max_req_ids=64)
    tr.bind(31, 0, Subscription.L1)
    tr.bind(32, 1, Subscription.TICK_BY_TICK)
    deltas, quotes, trades = tr.translate(batch.rows, 55)
    assert len(deltas) == 0 and tr.skipped == 1
    assert quote_tuples(quotes) == [
        (401, NO_PRICE, 400, 200, 55, 55, 0),
        (1001, 1002, 7, 8, 1_700_000_001_000_000_000, 55, 1),
    ]
    assert trade_tuples(trades) == [(1002, 3, 0, 1_700_000_002_000_000_000, 55, 1, 0)]


# -- no compilation after start-up --------------------------------------------------------------

FROZEN = textwrap.dedent(
    """
    import numpy as np
    import hotpath.jit as jit
    from adapters.ib.marketdata import MarketDataTranslator, Subscription
    from hotpath.ibwire import HOT_ROW, KIND_MKT_DEPTH_L2, KIND_TBT_LAST

    tr = MarketDataTranslator(2, [0.01, 0.5], [1.0, 1.0], max_req_ids=8, capacity=1)
    tr.bind(1, 0, Subscription.DEPTH)
    tr.bind(2, 1, Subscription.TICK_BY_TICK)
    jit.freeze()
    before = jit.compiled_signatures()
    rows = np.zeros(4, dtype=HOT_ROW)
    rows["kind"] = [KIND_MKT_DEPTH_L2, KIND_MKT_DEPTH_L2, KIND_TBT_LAST, KIND_TBT_LAST]
    rows["req_id"] = [1, 1, 2, 2]
    rows["price"] = 1.0
    rows["size"] = 1.0
    deltas, quotes, trades = tr.translate(rows, 1)  # outputs grow: resumed calls use slices
    assert (len(deltas), len(trades)) == (2, 2) and tr.grows > 0, (len(deltas), len(trades))
    assert jit.compiled_signatures() == before, "a kernel compiled a new signature"
    print("FROZEN_OK")
    """
)


def test_translate_after_freeze_compiles_nothing():
    proc = subprocess.run(
        [sys.executable, "-c", FROZEN], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FROZEN_OK" in proc.stdout
