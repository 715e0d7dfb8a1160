"""IB's order types, times in force, algos and icebergs through strategy -> risk gate -> router.

A recording venue keeps a copy of every intent it is sent (with the order's ``extras``), so each
test sees exactly what an adapter would be asked to send. Bad combinations must come back as
REJECTED order events from the gate, with the verdict's code and a reason naming the problem, and
never reach the venue; plain MARKET and LIMIT orders must look exactly as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from event_recorder import Recorder

from adapters.sim.venue import SimVenue
from engine.clock import SimClock
from engine.config import RingsConfig, RiskConfig
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import (
    NO_PRICE,
    Algo,
    BookSide,
    EventKind,
    OrderIntent,
    OrderType,
    TimeInForce,
)
from engine.orders import OrderExtras, OrderState
from engine.risk_gate import Verdict
from engine.runtime import Engine
from engine.venue import VenuePorts
from hotpath import risk as rk
from tests.book_support import set_levels

START_NS = 1_700_000_000 * 10**9
BID, ASK = int(BookSide.BID), int(BookSide.ASK)
NAN = math.nan


@dataclass(frozen=True)
class Sent:
    """A copy of one ``submit(intent, order)``."""

    client_order_id: int
    side: int
    order_type: int
    tif: int
    qty_lots: int
    price_ticks: int
    stop_price: float
    stop_ticks: int
    trail_amount: float
    trail_percent: float
    limit_offset: float
    display_lots: int
    good_till_ns: int
    algo: int
    algo_params: tuple | None
    extended: bool
    order_extras: OrderExtras | None


class RecordingVenue:
    """A venue that records what it is sent, acknowledges new orders and confirms modifies (at
    once, or on ``confirm()`` while ``hold_modifies`` is set).

    ``modified`` holds (client order id, lots, ticks, the order's extras, the modify's new
    extras or None) per modify."""

    name = "REC"

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.modified: list[tuple[int, int, int, OrderExtras | None, OrderExtras | None]] = []
        self.ports: VenuePorts | None = None
        self.hold_modifies = False
        self._held: list[tuple] = []

    def bind(self, ports: VenuePorts) -> None:
        self.ports = ports

    def submit(self, it: OrderIntent, order) -> None:
        it.ts_sent = self.ports.clock.now()
        self.sent.append(
            Sent(
                it.client_order_id, it.side, it.order_type, it.tif, it.qty_lots, it.price_ticks,
                it.stop_price, it.stop_ticks, it.trail_amount, it.trail_percent, it.limit_offset,
                it.display_lots, it.good_till_ns, it.algo, it.algo_params, it.extended,
                None if order is None else order.extras,
            )
        )  # fmt: skip
        ev = self.ports.events.claim().about(EventKind.ACCEPTED, it, 0, "", 0)
        ev.qty_lots = it.qty_lots
        ev.leaves_lots = it.qty_lots
        ev.price_ticks = it.price_ticks

    def cancel(self, order) -> None:
        pass

    def modify(self, order, qty_lots: int, price_ticks: int, extras=None) -> None:
        self.modified.append((order.client_order_id, qty_lots, price_ticks, order.extras, extras))
        if self.hold_modifies:
            self._held.append((order, qty_lots, price_ticks))
        else:
            self._confirm(order, qty_lots, price_ticks)

    def confirm(self) -> None:
        """Answer the modifies held so far with MODIFIED."""
        held, self._held = self._held, []
        for args in held:
            self._confirm(*args)

    def refuse(self) -> None:
        """Answer the modifies held so far with CANCEL_REJECTED, as a venue's refusal."""
        held, self._held = self._held, []
        for order, _, _ in held:
            self.ports.events.claim().about(
                EventKind.CANCEL_REJECTED, order, 0, "modify refused by the venue", 0
            )

    def _confirm(self, order, qty_lots: int, price_ticks: int) -> None:
        ev = self.ports.events.claim().about(EventKind.MODIFIED, order, 0, "", 0)
        ev.qty_lots = qty_lots
        ev.leaves_lots = qty_lots - order.filled_lots
        ev.cum_lots = order.filled_lots
        ev.price_ticks = price_ticks

    def on_book(self, instrument_ids) -> None:
        pass

    def on_trades(self, trades) -> None:
        pass

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class Harness:
    """AAPL (stock, tick 0.01, lot 1) and ES (future, tick 0.25, lot 1, x50) on one venue, with
    a book on each: AAPL 99.99 / 100.01 (mid 100.00), ES 99.75 / 100.00."""

    def __init__(self, venue=None, intents_ring: int = 4096) -> None:
        self.registry = InstrumentRegistry()
        venue = venue if venue is not None else RecordingVenue()
        self.aapl = self.registry.add("AAPL", venue.name, AssetClass.STOCK, 0.01, 1.0, 1.0)
        self.es = self.registry.add("ES", venue.name, AssetClass.FUTURE, 0.25, 1.0, 50.0)
        self.clock = SimClock(START_NS)
        self.venue = venue
        self.engine = Engine(
            self.registry, {venue.name: venue}, self.clock, risk=RiskConfig(equity=1e6),
            rings=RingsConfig(intents=intents_ring),
        )  # fmt: skip
        self.strat: Recorder = self.engine.add_strategy(Recorder, "rec", None, ["AAPL", "ES"])
        self.engine.start()
        self.book(self.aapl.id, (BID, 9_999, 500), (ASK, 10_001, 500))
        self.book(self.es.id, (BID, 399, 100), (ASK, 400, 100))

    def book(self, inst_id: int, *levels: tuple[int, int, int]) -> None:
        set_levels(self.engine, inst_id, self.clock.now(), levels)

    def buy(self, *args, **kw) -> int:
        coid = self.strat.buy(*args, **kw)
        self.engine.pump()
        return coid

    def sell(self, *args, **kw) -> int:
        coid = self.strat.sell(*args, **kw)
        self.engine.pump()
        return coid

    def order(self, coid: int):
        tr = self.engine.tracker
        return tr.get(coid) or tr.finished.get(coid)

    def open_orders(self, inst) -> float:
        return float(self.engine.risk.arrays.ist[inst.id, rk.IS_OPEN_ORDERS])


def same(a, b) -> bool:
    """Equal, with NaN equal to NaN."""
    nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
    return nan or a == b


# ---- the enums ------------------------------------------------------------------------------


def test_enum_values_are_stable():
    assert {t.name: int(t) for t in OrderType} == {
        "MARKET": 0, "LIMIT": 1, "STOP": 2, "STOP_LIMIT": 3, "MARKET_ON_CLOSE": 4,
        "LIMIT_ON_CLOSE": 5, "TRAILING_STOP": 6, "TRAILING_STOP_LIMIT": 7,
    }  # fmt: skip
    assert {t.name: int(t) for t in TimeInForce} == {
        "DAY": 0, "GTC": 1, "IOC": 2, "FOK": 3, "GTD": 4, "OPG": 5,
    }  # fmt: skip
    assert {a.name: int(a) for a in Algo} == {"NONE": 0, "VWAP": 1, "TWAP": 2, "ADAPTIVE": 3}
    # The kernel's copies of the order types.
    for t in OrderType:
        assert getattr(rk, t.name) == int(t)
    # New verdict codes are appended after the existing 0..31.
    assert (Verdict.BAD_STOP_PRICE, Verdict.STOP_OFF_TICK_GRID, Verdict.BAD_ORDER_PARAMS) == (
        32, 33, 34,
    )  # fmt: skip


def test_a_fresh_intent_has_every_extra_unused():
    it = OrderIntent()
    assert it.extended is False
    assert math.isnan(it.stop_price) and it.stop_ticks == NO_PRICE
    assert math.isnan(it.trail_amount) and math.isnan(it.trail_percent)
    assert math.isnan(it.limit_offset)
    assert (it.display_lots, it.good_till_ns, it.algo, it.algo_params) == (0, 0, 0, None)


# ---- each type, time in force, algo and iceberg reaches the venue ---------------------------

GOOD_TILL = START_NS + 3_600 * 10**9

# id, side, qty, price, keyword arguments, expected fields of what the venue is sent
GOOD_ORDERS = [
    ("MKT", 1, 3, None, {}, dict(order_type=0, qty_lots=3, price_ticks=NO_PRICE)),
    ("LMT", -1, 3, 100.02, {}, dict(order_type=1, qty_lots=3, price_ticks=10_002)),
    (
        "STP", 1, 2, None, {"order_type": OrderType.STOP, "stop": 100.5},
        dict(order_type=2, price_ticks=NO_PRICE, stop_price=100.5, stop_ticks=10_050),
    ),
    (
        "STP LMT", -1, 2, 99.4, {"order_type": OrderType.STOP_LIMIT, "stop": 99.5},
        dict(order_type=3, price_ticks=9_940, stop_price=99.5, stop_ticks=9_950),
    ),
    (
        "MOC", 1, 4, None, {"order_type": OrderType.MARKET_ON_CLOSE},
        dict(order_type=4, price_ticks=NO_PRICE, tif=0),
    ),
    (
        "LOC", -1, 4, 100.03, {"order_type": OrderType.LIMIT_ON_CLOSE},
        dict(order_type=5, price_ticks=10_003),
    ),
    (
        "TRAIL amount", -1, 5, None, {"order_type": OrderType.TRAILING_STOP, "trail": 0.5},
        dict(order_type=6, trail_amount=0.5, trail_percent=NAN, stop_ticks=NO_PRICE),
    ),
    (
        "TRAIL percent with initial stop", -1, 5, None,
        {"order_type": OrderType.TRAILING_STOP, "trail_percent": 1.5, "stop": 98.0},
        dict(order_type=6, trail_amount=NAN, trail_percent=1.5, stop_price=98.0,
             stop_ticks=9_800),
    ),
    (
        "TRAIL LIMIT", 1, 5, None,
        {"order_type": OrderType.TRAILING_STOP_LIMIT, "trail": 0.25, "limit_offset": 0.1},
        dict(order_type=7, trail_amount=0.25, limit_offset=0.1, price_ticks=NO_PRICE),
    ),
    ("GTC", 1, 1, 99.0, {"tif": TimeInForce.GTC}, dict(order_type=1, tif=1)),
    ("IOC", 1, 1, 99.0, {"tif": TimeInForce.IOC}, dict(tif=2)),
    ("FOK", 1, 1, 99.0, {"tif": TimeInForce.FOK}, dict(tif=3)),
    (
        "GTD", 1, 1, 99.0, {"tif": TimeInForce.GTD, "good_till": GOOD_TILL},
        dict(tif=4, good_till_ns=GOOD_TILL),
    ),
    (
        "GTD datetime", 1, 1, 99.0,
        {"tif": TimeInForce.GTD,
         "good_till": datetime.fromtimestamp(START_NS // 10**9 + 60, tz=UTC)},
        dict(tif=4, good_till_ns=START_NS + 60 * 10**9),
    ),
    ("OPG MKT", 1, 1, None, {"tif": TimeInForce.OPG}, dict(order_type=0, tif=5)),
    ("OPG LMT", 1, 1, 99.0, {"tif": TimeInForce.OPG}, dict(order_type=1, tif=5)),
    (
        "VWAP", 1, 10, 100.0, {"algo": Algo.VWAP, "algo_params": (("maxPctVol", "0.1"),)},
        dict(order_type=1, algo=1, algo_params=(("maxPctVol", "0.1"),)),
    ),
    ("TWAP", -1, 10, None, {"algo": Algo.TWAP}, dict(order_type=0, algo=2, algo_params=None)),
    (
        "Adaptive", 1, 10, None,
        {"algo": Algo.ADAPTIVE, "algo_params": {"adaptivePriority": "Normal"}},
        dict(algo=3, algo_params=(("adaptivePriority", "Normal"),)),
    ),
    ("iceberg", 1, 100, 99.0, {"display": 10}, dict(qty_lots=100, display_lots=10)),
    ("iceberg full", 1, 10, 99.0, {"display": 10.0}, dict(display_lots=10)),
]  # fmt: skip


@pytest.mark.parametrize(
    "side, qty, price, kw, expected", [g[1:] for g in GOOD_ORDERS], ids=[g[0] for g in GOOD_ORDERS]
)
def test_each_order_type_tif_algo_and_iceberg_reaches_the_venue(side, qty, price, kw, expected):
    h = Harness()
    tif = kw.pop("tif", TimeInForce.DAY)
    act = h.buy if side == 1 else h.sell
    coid = act("AAPL", qty, price, tif, **kw)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED], h.strat.of(coid)
    (sent,) = h.venue.sent
    assert sent.client_order_id == coid and sent.side == side
    for name, value in expected.items():
        assert same(getattr(sent, name), value), (name, getattr(sent, name), value)
    assert sent.extended is bool(kw)  # set by the strategy when it writes extras
    plain = not kw and tif in (TimeInForce.DAY, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK)
    order = h.order(coid)
    assert order.state is OrderState.ACCEPTED
    assert order.order_type == sent.order_type and order.tif == sent.tif
    if plain:
        assert sent.order_extras is None and order.extras is None
    else:
        # The order keeps the extras as they passed, for the venue to re-send on a modify.
        assert order.extras is sent.order_extras
        want = (
            sent.stop_price, sent.stop_ticks, sent.trail_amount, sent.trail_percent,
            sent.limit_offset, sent.display_lots, sent.good_till_ns, sent.algo, sent.algo_params,
        )  # fmt: skip
        assert all(same(x, y) for x, y in zip(order.extras[:9], want, strict=True)), order.extras
        # No parent, no OCA group, transmitted (tests/test_oca_brackets.py for those).
        assert order.extras[9:] == (0, "", 0, True)
    assert h.open_orders(h.aapl) == 1


def test_plain_market_and_limit_orders_are_unchanged():
    h = Harness()
    mkt = h.buy("AAPL", 2)
    lmt = h.sell(h.es, 1, 100.25)
    a, b = h.venue.sent
    assert (a.client_order_id, a.order_type, a.tif, a.qty_lots, a.price_ticks) == (
        mkt, 0, 0, 2, NO_PRICE,
    )  # fmt: skip
    assert (b.client_order_id, b.order_type, b.tif, b.qty_lots, b.price_ticks) == (
        lmt, 1, 0, 1, 401,
    )  # fmt: skip
    for s in (a, b):
        assert not s.extended and s.order_extras is None
        assert math.isnan(s.stop_price) and s.stop_ticks == NO_PRICE
        assert (s.display_lots, s.good_till_ns, s.algo, s.algo_params) == (0, 0, 0, None)
    assert h.engine.risk.passed == 2 and sum(h.engine.risk.rejects) == 0


def test_a_reused_intent_slot_never_carries_the_previous_orders_extras():
    h = Harness(intents_ring=2)  # every other intent reuses the same slot
    for _ in range(3):
        h.buy(
            "AAPL", 5, 99.0, TimeInForce.GTD, order_type=OrderType.STOP_LIMIT, stop=99.5,
            display=1, good_till=GOOD_TILL, algo_params=None,
        )  # fmt: skip
        h.buy("AAPL", 1, 99.0, TimeInForce.GTD, good_till=GOOD_TILL, algo=Algo.VWAP)
        h.buy("AAPL", 1, 99.0)
        h.sell("AAPL", 1)
    assert len(h.venue.sent) == 12 and sum(h.engine.risk.rejects) == 0
    for s in h.venue.sent[2::4] + h.venue.sent[3::4]:
        assert not s.extended and s.order_extras is None and s.tif == 0
        assert math.isnan(s.stop_price) and s.stop_ticks == NO_PRICE
        assert (s.display_lots, s.good_till_ns, s.algo, s.algo_params) == (0, 0, 0, None)
    for s in h.venue.sent[1::4]:  # the VWAP order after the stop limit: no stop, no display
        assert s.extended and s.order_type == 1 and s.algo == 1
        assert math.isnan(s.stop_price) and s.stop_ticks == NO_PRICE and s.display_lots == 0


def test_a_modify_keeps_the_orders_extras_and_checks_its_stop():
    h = Harness()
    coid = h.buy("AAPL", 4, 100.2, order_type=OrderType.STOP_LIMIT, stop=100.1)
    h.strat.modify(coid, 6, 100.3)
    h.engine.pump()
    h.strat.modify(coid, 8)  # the limit price stays
    h.engine.pump()
    assert [m[:3] for m in h.venue.modified] == [(coid, 6, 10_030), (coid, 8, 10_030)]
    extras = h.venue.modified[0][3]
    assert extras is h.order(coid).extras and (extras.stop_price, extras.stop_ticks) == (
        100.1, 10_010,
    )  # fmt: skip
    assert h.order(coid).qty_lots == 8


# ---- bad combinations are rejected by the gate ----------------------------------------------

STP, STP_LMT, TRAIL, TRAIL_LMT = (
    OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP, OrderType.TRAILING_STOP_LIMIT,
)  # fmt: skip
MOC, LOC = OrderType.MARKET_ON_CLOSE, OrderType.LIMIT_ON_CLOSE
P = Verdict.BAD_ORDER_PARAMS

# id, qty, price, tif, keyword arguments, verdict, words the reason must contain
BAD_ORDERS = [
    ("STP without stop", 1, None, 0, {"order_type": STP}, Verdict.BAD_STOP_PRICE, "stop price"),
    ("STP negative stop", 1, None, 0, {"order_type": STP, "stop": -1.0}, Verdict.BAD_STOP_PRICE,
     "stop=-1"),
    ("STP infinite stop", 1, None, 0, {"order_type": STP, "stop": math.inf},
     Verdict.BAD_STOP_PRICE, "finite"),
    ("STP off-grid stop", 1, None, 0, {"order_type": STP, "stop": 100.005},
     Verdict.STOP_OFF_TICK_GRID, "tick size"),
    ("STP with limit price", 1, 100.0, 0, {"order_type": STP, "stop": 100.5}, P,
     "STOP takes no limit price"),
    ("STP LMT without stop", 1, 100.0, 0, {"order_type": STP_LMT}, Verdict.BAD_STOP_PRICE,
     "stop price"),
    ("STP LMT without limit", 1, None, 0, {"order_type": STP_LMT, "stop": 100.5},
     Verdict.BAD_PRICE, "limit price"),
    ("TRAIL off-grid initial stop", 1, None, 0,
     {"order_type": TRAIL, "trail": 0.5, "stop": 100.001}, Verdict.STOP_OFF_TICK_GRID,
     "stop=100.001"),
    ("LMT with stop", 1, 100.0, 0, {"stop": 99.0}, P, "LIMIT takes no stop price"),
    ("MOC with stop", 1, None, 0, {"order_type": MOC, "stop": 99.0}, P,
     "MARKET_ON_CLOSE takes no stop price"),
    ("TRAIL without trail", 1, None, 0, {"order_type": TRAIL}, P,
     "exactly one of a trail amount and a trail percent"),
    ("TRAIL with both", 1, None, 0, {"order_type": TRAIL, "trail": 0.5, "trail_percent": 1.0},
     P, "exactly one"),
    ("TRAIL negative amount", 1, None, 0, {"order_type": TRAIL, "trail": -0.5}, P,
     "trail amount must be a finite number > 0"),
    ("TRAIL percent 100", 1, None, 0, {"order_type": TRAIL, "trail_percent": 100.0}, P,
     "trail percent must be > 0 and < 100"),
    ("LMT with trail", 1, 100.0, 0, {"trail": 0.5}, P, "LIMIT takes no trail"),
    ("TRAIL LIMIT without offset", 1, None, 0, {"order_type": TRAIL_LMT, "trail": 0.5}, P,
     "TRAILING_STOP_LIMIT needs a finite limit offset"),
    ("TRAIL LIMIT with limit price", 1, 100.0, 0,
     {"order_type": TRAIL_LMT, "trail": 0.5, "limit_offset": 0.1}, P,
     "TRAILING_STOP_LIMIT takes no limit price"),
    ("TRAIL with offset", 1, None, 0, {"order_type": TRAIL, "trail": 0.5, "limit_offset": 0.1},
     P, "TRAILING_STOP takes no limit offset"),
    ("MOC GTC", 1, None, 1, {"order_type": MOC}, P, "MARKET_ON_CLOSE must be DAY, not GTC"),
    ("LOC IOC", 1, 100.0, 2, {"order_type": LOC}, P, "LIMIT_ON_CLOSE must be DAY, not IOC"),
    ("LOC OPG", 1, 100.0, 5, {"order_type": LOC}, P, "must be DAY, not OPG"),
    ("OPG STP", 1, None, 5, {"order_type": STP, "stop": 100.5}, P,
     "OPG is for MARKET and LIMIT orders, not STOP"),
    ("GTD without time", 1, 100.0, 4, {}, P, "GTD needs a good-till time"),
    ("GTD in the past", 1, 100.0, 4, {"good_till": START_NS - 1}, P, "not in the future"),
    ("good_till without GTD", 1, 100.0, 1, {"good_till": GOOD_TILL}, P,
     "good-till time is for GTD orders, not GTC"),
    ("unknown tif", 1, 100.0, 9, {}, P, "time in force 9"),
    ("display zero", 10, 100.0, 0, {"display": 0}, P, "positive whole number of lots"),
    ("display negative", 10, 100.0, 0, {"display": -2}, P, "positive whole number of lots"),
    ("display fractional", 10, 100.0, 0, {"display": 2.5}, P, "positive whole number of lots"),
    ("display above qty", 10, 100.0, 0, {"display": 11}, P,
     "display size 11 exceeds the order quantity"),
    ("algo on STP", 1, None, 0, {"order_type": STP, "stop": 100.5, "algo": Algo.VWAP}, P,
     "algos are for MARKET and LIMIT orders, not STOP"),
    ("unknown algo", 1, 100.0, 0, {"algo": 7}, P, "algo 7 is not one of Algo"),
    ("params without algo", 1, 100.0, 0, {"algo_params": (("maxPctVol", "0.1"),)}, P,
     "algo parameters need an algo"),
    ("params not strings", 1, 100.0, 0, {"algo": Algo.VWAP, "algo_params": (("maxPctVol", 0.1),)},
     P, "(name, value) pairs of strings"),
    ("market with price", 1, 100.0, 0, {"order_type": OrderType.MARKET}, P,
     "MARKET takes no limit price"),
    ("unknown type", 1, None, 0, {"order_type": 8}, Verdict.BAD_INTENT, "malformed intent"),
]  # fmt: skip


@pytest.mark.parametrize(
    "qty, price, tif, kw, verdict, words",
    [b[1:] for b in BAD_ORDERS],
    ids=[b[0] for b in BAD_ORDERS],
)
def test_bad_combinations_are_rejected_by_the_gate_with_a_reason(qty, price, tif, kw, verdict,
                                                                  words):  # fmt: skip
    h = Harness()
    coid = h.buy("AAPL", qty, price, tif, **kw)
    (ev,) = h.strat.of(coid)
    assert ev.kind == EventKind.REJECTED
    assert ev.reason_code == int(verdict)
    assert ev.reason.startswith(f"{verdict.name}: "), ev.reason
    assert words in ev.reason, ev.reason
    assert h.venue.sent == []
    assert h.engine.risk.rejects[verdict] == 1 and h.engine.risk.passed == 0
    order = h.order(coid)
    assert order.state is OrderState.REJECTED and order.reason == ev.reason
    assert order.extras is None
    assert h.open_orders(h.aapl) == 0  # nothing stays reserved
    # The next plain order goes through as usual.
    ok = h.buy("AAPL", 1, 100.0)
    assert h.strat.kinds(ok) == [EventKind.ACCEPTED]


def test_a_bad_intent_written_without_the_extended_flag_is_still_checked():
    """The gate does not rely on the writer's flag for types and times in force."""
    h = Harness()
    for order_type, tif, verdict in (
        (int(MOC), int(TimeInForce.GTC), P),
        (int(STP), 0, Verdict.BAD_STOP_PRICE),
        (1, int(TimeInForce.GTD), P),
        (1, -1, P),
    ):
        it = h.engine.intents.claim()
        it.reset_extras()
        it.kind, it.strategy_id, it.instrument_id = 0, h.strat.id, h.aapl.id
        it.client_order_id = h.engine.tracker.next_id()
        it.side, it.order_type, it.tif, it.qty = 1, order_type, tif, 1.0
        it.price = 100.0 if order_type == 1 else NAN
        h.engine.flush_intents()
        h.engine.pump()
        (ev,) = h.strat.of(it.client_order_id)
        assert (ev.kind, ev.reason_code) == (EventKind.REJECTED, int(verdict)), ev.reason
    assert h.venue.sent == []


# ---- the simulated venue --------------------------------------------------------------------

UNSUPPORTED = [
    # STOP is simulated (tests/test_oca_brackets.py), STOP with GTD is not.
    ("STP GTD", None, 4, {"order_type": STP, "stop": 99.5, "good_till": GOOD_TILL},
     "time in force GTD"),
    ("STP LMT", 100.6, 0, {"order_type": STP_LMT, "stop": 100.5}, "order type STOP_LIMIT"),
    ("MOC", None, 0, {"order_type": MOC}, "order type MARKET_ON_CLOSE"),
    ("LOC", 100.0, 0, {"order_type": LOC}, "order type LIMIT_ON_CLOSE"),
    ("TRAIL", None, 0, {"order_type": TRAIL, "trail": 0.5}, "order type TRAILING_STOP"),
    ("TRAIL LIMIT", None, 0, {"order_type": TRAIL_LMT, "trail": 0.5, "limit_offset": 0.0},
     "order type TRAILING_STOP_LIMIT"),
    ("GTD", 100.0, 4, {"good_till": GOOD_TILL}, "time in force GTD"),
    ("OPG", 100.0, 5, {}, "time in force OPG"),
    ("VWAP", 100.0, 0, {"algo": Algo.VWAP}, "algo VWAP"),
    ("Adaptive", None, 0, {"algo": Algo.ADAPTIVE, "algo_params": (("adaptivePriority", "Urgent"),)},
     "algo ADAPTIVE"),
]  # fmt: skip


@pytest.mark.parametrize(
    "price, tif, kw, what", [u[1:] for u in UNSUPPORTED], ids=[u[0] for u in UNSUPPORTED]
)
def test_the_sim_venue_rejects_what_it_does_not_simulate(price, tif, kw, what):
    h = Harness(SimVenue("SIM"))
    coid = h.buy("AAPL", 2, price, tif, **kw)
    (ev,) = h.strat.of(coid)
    assert ev.kind == EventKind.REJECTED
    assert ev.reason == f"{what} is not supported by the simulated venue"
    assert h.engine.risk.passed == 1  # the gate let it through; the venue refused it
    assert h.order(coid).state is OrderState.REJECTED
    assert h.open_orders(h.aapl) == 0 and h.engine.risk.arrays.gst[rk.GS_BP_RESERVED] == 0.0
    assert h.engine.portfolio.position(h.strat.id, h.aapl.id).lots == 0


def test_the_sim_venue_matches_an_iceberg_like_any_limit_order():
    h = Harness(SimVenue("SIM"))
    coid = h.buy("AAPL", 10, 100.01, display=2)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.FILL]
    assert h.engine.portfolio.position(h.strat.id, h.aapl.id).lots == 10


def test_malformed_arguments_come_back_as_rejects_not_exceptions():
    h = Harness()
    bad = h.buy("AAPL", 1, 100.0, algo=Algo.VWAP, algo_params=5)
    frac = h.buy("AAPL", 1, 100.0, display=math.nan)
    for coid, words in ((bad, "(name, value) pairs"), (frac, "positive whole number of lots")):
        (ev,) = h.strat.of(coid)
        assert ev.reason_code == int(P) and words in ev.reason, ev.reason


def test_a_misspelt_option_raises_like_a_misspelt_keyword_argument():
    h = Harness()
    with pytest.raises(TypeError, match=r"buy\(\) got unexpected keyword arguments \['stpo'\]"):
        h.strat.buy("AAPL", 1, stpo=100.0)
    assert h.venue.sent == [] and not h.engine.tracker.open


def test_options_given_as_none_are_unset():
    h = Harness()
    coid = h.buy("AAPL", 1, 100.0, order_type=None, stop=None, algo=None, display=None)
    (sent,) = h.venue.sent
    assert sent.client_order_id == coid and sent.order_type == 1 and sent.price_ticks == 10_000
    assert math.isnan(sent.stop_price) and sent.display_lots == 0 and sent.algo == 0


# ---- a modify moves a stop's trigger or a trailing order's trail ----------------------------


def test_a_modify_moves_a_stops_trigger_once_the_venue_confirms():
    h = Harness()
    h.venue.hold_modifies = True
    coid = h.sell("AAPL", 4, order_type=OrderType.STOP, stop=99.5)
    before = h.order(coid).extras
    h.strat.modify(coid, stop_price=99.75)
    h.engine.pump()
    (m,) = h.venue.modified
    assert m[:3] == (coid, 4, NO_PRICE)
    new = m[4]
    assert (new.stop_price, new.stop_ticks) == (99.75, 9_975)
    assert new._replace(stop_price=99.5, stop_ticks=9_950) == before  # nothing else changes
    # Not the order's until the venue says it is applied.
    order = h.order(coid)
    assert order.extras is before and order.state is OrderState.PENDING_MODIFY
    h.venue.confirm()
    h.engine.pump()
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.MODIFIED]
    assert order.extras == new and order.state is OrderState.ACCEPTED
    # A later modify starts from the new stop: a quantity change re-sends it as it is.
    h.strat.modify(coid, 6)
    h.engine.pump()
    assert h.venue.modified[-1][3] == new and h.venue.modified[-1][4] is None


def test_a_refused_modify_leaves_the_stop_as_it_was():
    h = Harness()
    h.venue.hold_modifies = True
    coid = h.sell("AAPL", 4, order_type=OrderType.STOP_LIMIT, stop=99.5, price=99.4)
    before = h.order(coid).extras
    h.strat.modify(coid, stop_price=99.75)
    h.engine.pump()
    assert h.order(coid).pending_extras.stop_ticks == 9_975
    h.venue.refuse()
    h.engine.pump()
    assert h.strat.kinds(coid)[-1] == EventKind.CANCEL_REJECTED
    order = h.order(coid)
    assert order.extras is before and order.pending_extras is None
    assert order.state is OrderState.ACCEPTED


@pytest.mark.parametrize(
    "kw, amount, percent",
    [({"trail_percent": 1.5}, NAN, 1.5), ({"trail_amount": 0.25}, 0.25, NAN)],
    ids=["amount to percent", "new amount"],
)
def test_a_modify_moves_a_trailing_orders_trail(kw, amount, percent):
    h = Harness()
    coid = h.sell("AAPL", 2, order_type=OrderType.TRAILING_STOP, trail=0.5, stop=99.0)
    h.strat.modify(coid, **kw)
    h.engine.pump()
    new = h.venue.modified[-1][4]
    assert new is not None and h.order(coid).extras == new
    # The initial stop is not sent again: it would undo what the trail has moved since.
    assert math.isnan(new.stop_price) and new.stop_ticks == NO_PRICE
    assert new.trail_amount == amount or (math.isnan(amount) and math.isnan(new.trail_amount))
    assert new.trail_percent == percent or (math.isnan(percent) and math.isnan(new.trail_percent))


def test_a_modify_to_the_same_stop_changes_no_extras():
    h = Harness()
    coid = h.sell("AAPL", 4, order_type=OrderType.STOP, stop=99.5)
    h.strat.modify(coid, 5, stop_price=99.5)
    h.engine.pump()
    assert h.venue.modified[-1][1] == 5 and h.venue.modified[-1][4] is None


# name, order options, modify keywords, verdict, words the reason must contain
BAD_MODIFIES = [
    ("stop on LMT", {"price": 99.0}, {"stop_price": 98.0}, P, "LIMIT takes no new stop price"),
    ("stop on TRAIL", {"order_type": TRAIL, "trail": 0.5}, {"stop_price": 99.0}, P,
     "TRAILING_STOP takes no new stop price"),
    ("trail on STP", {"order_type": STP, "stop": 99.5}, {"trail_amount": 0.5}, P,
     "STOP takes no trail amount or percent"),
    ("trail on LMT", {"price": 99.0}, {"trail_percent": 1.0}, P,
     "LIMIT takes no trail amount or percent"),
    ("amount and percent", {"order_type": TRAIL, "trail": 0.5},
     {"trail_amount": 0.5, "trail_percent": 1.0}, P, "a trail amount or a trail percent, not both"),
    ("negative amount", {"order_type": TRAIL, "trail": 0.5}, {"trail_amount": -0.5}, P,
     "trail amount must be a finite number > 0, not -0.5"),
    ("infinite amount", {"order_type": TRAIL, "trail": 0.5}, {"trail_amount": math.inf}, P,
     "trail amount must be a finite number > 0"),
    ("percent 100", {"order_type": TRAIL, "trail_percent": 1.0}, {"trail_percent": 100.0}, P,
     "trail percent must be > 0 and < 100"),
    ("off-grid stop", {"order_type": STP, "stop": 99.5}, {"stop_price": 99.505},
     Verdict.STOP_OFF_TICK_GRID, "stop=99.505"),
    ("negative stop", {"order_type": STP_LMT, "stop": 99.5, "price": 99.4},
     {"stop_price": -1.0}, Verdict.BAD_STOP_PRICE, "stop=-1"),
    ("infinite stop", {"order_type": STP, "stop": 99.5}, {"stop_price": math.inf},
     Verdict.BAD_STOP_PRICE, "finite"),
]  # fmt: skip


@pytest.mark.parametrize(
    "order_kw, modify_kw, verdict, words",
    [b[1:] for b in BAD_MODIFIES],
    ids=[b[0] for b in BAD_MODIFIES],
)
def test_a_bad_stop_or_trail_modify_is_refused_and_changes_nothing(
    order_kw, modify_kw, verdict, words
):
    h = Harness()
    kw = dict(order_kw)
    coid = h.sell("AAPL", 2, kw.pop("price", None), **kw)
    order = h.order(coid)
    before = (order.extras, order.qty_lots, order.price_ticks, order.state)
    h.strat.modify(coid, **modify_kw)
    h.engine.pump()
    ev = h.strat.of(coid)[-1]
    assert ev.kind == EventKind.CANCEL_REJECTED
    assert ev.reason_code == int(verdict)
    assert ev.reason.startswith(f"{verdict.name}: ") and "modify refused" in ev.reason, ev.reason
    assert words in ev.reason, ev.reason
    assert h.venue.modified == []
    assert (order.extras, order.qty_lots, order.price_ticks, order.state) == before
    assert order.pending_extras is None


def test_a_modify_slot_does_not_carry_an_earlier_orders_stop():
    """Intent slots are reused: a plain modify after a stop order must not read its stop."""
    h = Harness(intents_ring=2)
    h.sell("AAPL", 1, order_type=OrderType.STOP, stop=99.5)
    coid = h.buy("AAPL", 1, 99.0)
    h.strat.modify(coid, 2)  # in the stop order's slot
    h.engine.pump()
    assert h.venue.modified[-1][:3] == (coid, 2, 9_900)


# ---- the simulated venue moves the trigger --------------------------------------------------


def _bid(h: Harness, old: int, new: int) -> None:
    """AAPL's best bid moves from ``old`` to ``new`` ticks."""
    h.book(h.aapl.id, (BID, old, 0), (BID, new, 500))


def test_the_sim_venue_triggers_a_moved_stop_at_its_new_level_not_its_old():
    h = Harness(SimVenue("SIM"))
    up = h.sell("AAPL", 3, order_type=OrderType.STOP, stop=99.5)
    down = h.sell("AAPL", 2, order_type=OrderType.STOP, stop=99.9)
    h.strat.modify(up, stop_price=99.9)
    h.strat.modify(down, stop_price=99.5)
    h.engine.pump()
    assert h.strat.kinds(up) == h.strat.kinds(down) == [EventKind.ACCEPTED, EventKind.MODIFIED]
    assert h.order(up).extras.stop_ticks == 9_990 and h.order(down).extras.stop_ticks == 9_950
    _bid(h, 9_999, 9_980)  # through 99.90 (the old stop of ``down``, the new one of ``up``)
    assert EventKind.FILL in h.strat.kinds(up)
    assert sum(f.fill_lots for f in h.strat.fills(up)) == 3
    assert EventKind.FILL not in h.strat.kinds(down)
    _bid(h, 9_980, 9_950)  # at 99.50: ``down``'s new stop
    assert sum(f.fill_lots for f in h.strat.fills(down)) == 2
    assert h.strat.fills(down)[0].fill_price_ticks == 9_950


def test_the_sim_venue_triggers_a_stop_moved_through_the_market_at_once():
    h = Harness(SimVenue("SIM"))
    coid = h.sell("AAPL", 3, order_type=OrderType.STOP, stop=99.5)
    h.strat.modify(coid, stop_price=100.0)  # the bid (99.99) is already at or below it
    h.engine.pump()
    assert h.strat.kinds(coid)[:2] == [EventKind.ACCEPTED, EventKind.MODIFIED]
    fills = h.strat.fills(coid)
    assert sum(f.fill_lots for f in fills) == 3 and fills[0].fill_price_ticks == 9_999
    assert h.order(coid).state is OrderState.FILLED
