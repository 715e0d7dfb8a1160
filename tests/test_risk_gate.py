"""The risk gate (engine/risk_gate.py) through the engine: strategy actions -> intents -> gate.

A rejected intent must come back to the strategy as an order event with the check's code and a
reason that starts with the check's name, and must never reach the venue.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from event_recorder import Ev, Recorder
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.sim.venue import SimVenue
from engine.clock import SimClock
from engine.config import InstrumentRiskConfig, RingsConfig, RiskConfig, SimVenueConfig
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import (
    NO_PRICE,
    BookSide,
    EventKind,
    OrderEvent,
    OrderType,
)
from engine.orders import OrderState
from engine.risk_gate import REASONS, TradingState, Verdict
from engine.runtime import Engine
from engine.strategy import Strategy
from hotpath import risk as rk
from tests.book_support import set_levels

START_NS = 1_000_000_000
# Start-of-day equity: large enough that the default leverage (1.0) and concentration (0.2)
# limits never bind on these tests' orders.
EQUITY = 1e9
BID, ASK = int(BookSide.BID), int(BookSide.ASK)

# ---- helpers --------------------------------------------------------------------------------


class Harness:
    """Engine with ES (future, tick 0.25, lot 1, x50) and BTC (crypto, tick 0.01, lot 0.001)."""

    def __init__(
        self,
        risk: RiskConfig | None = None,
        venue_config: SimVenueConfig | None = None,
        rings: RingsConfig | None = None,
        venue_cls: type[SimVenue] = SimVenue,
    ) -> None:
        self.registry = InstrumentRegistry()
        self.es = self.registry.add("ES", "SIM", AssetClass.FUTURE, 0.25, 1.0, 50.0)
        self.btc = self.registry.add("BTC", "SIM", AssetClass.CRYPTO, 0.01, 0.001, 1.0)
        self.clock = SimClock(START_NS)
        self.venue = venue_cls("SIM", venue_config or SimVenueConfig())
        self.engine = Engine(
            self.registry,
            {"SIM": self.venue},
            self.clock,
            risk=risk or RiskConfig(equity=EQUITY),
            rings=rings,
        )
        self.strat: Recorder = self.engine.add_strategy(Recorder, "rec", None, ["ES", "BTC"])
        self.engine.start()

    def book(self, inst_id: int, *levels: tuple[int, int, int]) -> None:
        set_levels(self.engine, inst_id, self.clock.now(), levels)

    def es_book(self) -> None:
        """ES bid 99.75 (399 ticks) x 100, ask 100.00 (400 ticks) x 100."""
        self.book(self.es.id, (BID, 399, 100), (ASK, 400, 100))

    def buy(self, inst, qty, price=None, **kw) -> int:
        coid = self.strat.buy(inst, qty, price, **kw)
        self.engine.pump()
        return coid

    def sell(self, inst, qty, price=None, **kw) -> int:
        coid = self.strat.sell(inst, qty, price, **kw)
        self.engine.pump()
        return coid

    def cancel(self, coid: int) -> None:
        self.strat.cancel(coid)
        self.engine.pump()

    def modify(self, coid: int, qty=None, price=None) -> None:
        self.strat.modify(coid, qty, price)
        self.engine.pump()

    def lots(self, inst) -> int:
        return self.engine.portfolio.position(self.strat.id, inst.id).lots

    def advance(self, ns: int) -> None:
        self.clock.advance_to(self.clock.now() + ns)

    def order(self, coid: int):
        tr = self.engine.tracker
        return tr.get(coid) or tr.finished.get(coid)

    def total_rejects(self) -> int:
        return sum(self.engine.risk.rejects)


def assert_rejected(h: Harness, coid: int, verdict: Verdict, kind=EventKind.REJECTED) -> Ev:
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [kind], evs
    ev = evs[0]
    assert ev.reason_code == int(verdict)
    assert ev.reason.startswith(f"{verdict.name}:"), ev.reason
    assert ev.fill_lots == 0 and ev.cum_lots == 0
    if kind == EventKind.REJECTED:
        order = h.order(coid)
        assert order is not None and order.state is OrderState.REJECTED
        assert not order.is_open
        assert order.reason == ev.reason
    return ev


# ---- bad new orders -------------------------------------------------------------------------

ES, BTC = "ES", "BTC"
NAN, INF = math.nan, math.inf

BAD_NEW_ORDERS = [
    # id, instrument, side, qty, price, risk limits, verdict
    ("nan-price", ES, 1, 1, NAN, {}, Verdict.BAD_PRICE),
    ("negative-price", ES, 1, 1, -100.0, {}, Verdict.BAD_PRICE),
    ("zero-price", ES, -1, 1, 0.0, {}, Verdict.BAD_PRICE),
    ("inf-price", ES, 1, 1, INF, {}, Verdict.BAD_PRICE),
    ("zero-qty", ES, 1, 0, 100.0, {}, Verdict.BAD_QUANTITY),
    ("negative-qty", ES, 1, -3, 100.0, {}, Verdict.BAD_QUANTITY),
    ("negative-qty-sell", ES, -1, -3, 100.0, {}, Verdict.BAD_QUANTITY),
    ("nan-qty", ES, 1, NAN, 100.0, {}, Verdict.BAD_QUANTITY),
    ("inf-qty", ES, 1, INF, 100.0, {}, Verdict.BAD_QUANTITY),
    ("fractional-whole-lot", ES, 1, 1.5, 100.0, {}, Verdict.NOT_WHOLE_LOTS),
    ("almost-whole-lot", ES, -1, 0.999, 100.0, {}, Verdict.NOT_WHOLE_LOTS),
    ("crypto-half-lot", BTC, 1, 0.0015, 60000.0, {}, Verdict.NOT_WHOLE_LOTS),
    ("crypto-off-lot", BTC, -1, 1.0001, 60000.0, {}, Verdict.NOT_WHOLE_LOTS),
    ("unknown-instrument", 99, 1, 1, 100.0, {}, Verdict.UNKNOWN_INSTRUMENT),
    ("unknown-instrument-2", 2, -1, 1, 100.0, {}, Verdict.UNKNOWN_INSTRUMENT),
    ("negative-instrument-id", -1, 1, 1, 100.0, {}, Verdict.UNKNOWN_INSTRUMENT),
    ("off-tick", ES, 1, 1, 100.1, {}, Verdict.OFF_TICK_GRID),
    ("off-tick-half", ES, -1, 1, 100.125, {}, Verdict.OFF_TICK_GRID),
    ("crypto-off-tick", BTC, 1, 0.001, 100.005, {}, Verdict.OFF_TICK_GRID),
    ("max-order-qty", ES, 1, 11, 100.0, {"max_order_qty": 10}, Verdict.MAX_ORDER_QTY),
    ("max-order-qty-sell", ES, -1, 11, 100.0, {"max_order_qty": 10}, Verdict.MAX_ORDER_QTY),
    # 21 lots x 100.00 x multiplier 50 = 105,000
    ("notional", ES, 1, 21, 100.0, {"max_order_notional": 100_000}, Verdict.MAX_ORDER_NOTIONAL),
    ("notional-sell", ES, -1, 21, 100.0, {"max_order_notional": 1e5}, Verdict.MAX_ORDER_NOTIONAL),
    # 0.5 BTC x 60,000 = 30,000
    (
        "crypto-notional",
        BTC,
        1,
        0.5,
        60000.0,
        {"max_order_notional": 29_999},
        Verdict.MAX_ORDER_NOTIONAL,
    ),
    ("max-position", ES, 1, 11, 100.0, {"max_position": 10}, Verdict.MAX_POSITION),
    ("max-position-short", ES, -1, 11, 100.0, {"max_position": 10}, Verdict.MAX_POSITION),
]


@pytest.mark.parametrize(
    ("inst", "side", "qty", "price", "limits", "verdict"),
    [c[1:] for c in BAD_NEW_ORDERS],
    ids=[c[0] for c in BAD_NEW_ORDERS],
)
def test_bad_new_order_is_rejected_and_never_reaches_the_venue(
    inst, side, qty, price, limits, verdict
) -> None:
    verdict = Verdict(verdict)
    h = Harness(RiskConfig(equity=EQUITY, **limits))
    h.es_book()
    send = h.buy if side == 1 else h.sell
    coid = send(inst, qty, price)

    assert_rejected(h, coid, verdict)
    assert h.venue.received == 0
    assert h.engine.router.orders == 0
    assert h.engine.risk.rejects[verdict] == 1
    assert h.total_rejects() == 1
    assert h.engine.risk.passed == 0
    assert h.engine.tracker.open == {}


@pytest.mark.parametrize(
    ("inst", "side", "qty", "price", "limits"),
    [
        (ES, 1, 10, 100.0, {"max_order_qty": 10}),
        (ES, 1, 20, 100.0, {"max_order_notional": 100_000}),
        (ES, -1, 10, 100.0, {"max_position": 10}),
        (ES, 1, 2, 100.25, {}),
        (BTC, 1, 0.003, 60000.01, {}),
        (BTC, -1, 1.234, 59999.99, {}),
    ],
)
def test_orders_at_the_limits_pass(inst, side, qty, price, limits) -> None:
    h = Harness(RiskConfig(equity=EQUITY, **limits))
    send = h.buy if side == 1 else h.sell
    coid = send(inst, qty, price)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    assert h.venue.received == 1
    assert h.total_rejects() == 0
    order = h.order(coid)
    i = h.registry.get(inst)
    assert order.qty_lots == round(qty / i.lot_size)
    assert order.price_ticks == round(price / i.tick_size)


def test_off_tick_price_on_a_large_tick_count_is_rejected() -> None:
    # BTC at 60,000 with a 0.01 tick is 6,000,000 ticks: a half-tick price must still be refused
    # (it would otherwise be silently rounded to a price the strategy did not ask for).
    h = Harness()
    coid = h.buy(BTC, 0.001, 60000.005)
    assert_rejected(h, coid, Verdict.OFF_TICK_GRID)
    assert h.venue.received == 0


def test_market_order_without_a_book_has_no_reference_price() -> None:
    h = Harness()
    coid = h.buy(ES, 1)
    assert_rejected(h, coid, Verdict.NO_REFERENCE_PRICE)
    assert h.venue.received == 0


def test_market_order_notional_is_valued_at_the_mid() -> None:
    h = Harness(RiskConfig(equity=EQUITY, max_order_notional=100_000))
    h.es_book()  # mid 399.5 ticks = 99.875: 20 lots x 99.875 x 50 = 99,875
    ok = h.buy(ES, 20)
    assert EventKind.REJECTED not in h.strat.kinds(ok)
    h.es_book()
    bad = h.buy(ES, 21)  # 104,868.75
    assert_rejected(h, bad, Verdict.MAX_ORDER_NOTIONAL)
    assert h.venue.received == 1


# ---- position and open-order limits ---------------------------------------------------------


def test_max_position_counts_the_position_from_fills() -> None:
    h = Harness(RiskConfig(equity=EQUITY, max_position=10))
    h.es_book()
    h.buy(ES, 8)
    assert h.lots(h.es) == 8
    bad = h.buy(ES, 3, 99.0)
    assert_rejected(h, bad, Verdict.MAX_POSITION)
    ok = h.buy(ES, 2, 99.0)
    assert h.strat.kinds(ok) == [EventKind.ACCEPTED]
    # Selling back is fine, selling through to -10 too, but not beyond.
    assert h.strat.kinds(h.sell(ES, 18, 101.0)) == [EventKind.ACCEPTED]
    bad_short = h.sell(ES, 1, 101.0)
    assert_rejected(h, bad_short, Verdict.MAX_POSITION)
    assert h.venue.received == 3


def test_a_fill_taken_back_is_undone_in_the_kernels_without_a_day_trade() -> None:
    """A venue's reversal of a fill (negative lots: IB's execution correction) is the opposite
    trade at its price in the risk kernels as in the portfolio: the position and P&L come back,
    a working order keeps its reservation, and no day trade is counted."""
    h = Harness()
    h.es_book()
    taken = h.buy(ES, 3)  # a market buy: fills at the ask
    (fill,) = h.strat.fills(taken)
    h.buy(ES, 2, 99.0)  # works, its 2 lots reserved
    a = h.engine.risk.arrays
    s, i = h.strat.id, h.es.id
    before = a.ist[i, rk.IS_OPEN_BUY], a.pst[s, i, rk.PS_OPEN_BUY], a.gst[rk.GS_DAY_TRADES]
    ev = OrderEvent()
    ev.kind, ev.strategy_id, ev.instrument_id, ev.side = EventKind.FILL, s, i, 1
    ev.client_order_id, ev.exec_id = taken, fill.exec_id + "/bust"
    ev.fill_lots, ev.fill_price_ticks, ev.commission = -3, fill.fill_price_ticks, -fill.commission
    h.engine.apply_event(ev)
    assert a.pst[s, i, rk.PS_LOTS] == 0 and a.ist[i, rk.IS_NET_LOTS] == 0
    assert a.pst[s, i, rk.PS_REALISED] == 0.0 and a.pst[s, i, rk.PS_FEES] == 0.0
    assert (
        a.ist[i, rk.IS_OPEN_BUY],
        a.pst[s, i, rk.PS_OPEN_BUY],
        a.gst[rk.GS_DAY_TRADES],
    ) == before
    assert h.lots(h.es) == 0
    order = h.order(taken)
    assert order.state is OrderState.FILLED and order.filled_lots == 0


def test_max_position_counts_open_orders_on_the_same_side() -> None:
    h = Harness(RiskConfig(equity=EQUITY, max_position=10))
    h.es_book()
    first = h.buy(ES, 6, 99.0)  # rests below the ask
    assert h.strat.kinds(first) == [EventKind.ACCEPTED]
    second = h.buy(ES, 5, 98.0)  # 6 open + 5 = 11
    assert_rejected(h, second, Verdict.MAX_POSITION)
    # Open sell orders do not offset open buys.
    assert h.strat.kinds(h.sell(ES, 6, 101.0)) == [EventKind.ACCEPTED]
    again = h.buy(ES, 5, 98.0)
    assert_rejected(h, again, Verdict.MAX_POSITION)
    exact = h.buy(ES, 4, 98.0)  # 6 + 4 = 10
    assert h.strat.kinds(exact) == [EventKind.ACCEPTED]
    assert h.venue.received == 3
    # Cancelling the first buy frees its share of the limit.
    h.cancel(first)
    assert h.strat.kinds(h.buy(ES, 6, 98.0)) == [EventKind.ACCEPTED]


def test_max_position_counts_open_orders_sent_in_the_same_callback() -> None:
    h = Harness(RiskConfig(equity=EQUITY, max_position=10))
    coids = []

    def act(s: Strategy) -> None:
        coids.append(s.buy(ES, 6, 99.0))
        coids.append(s.buy(ES, 6, 98.0))

    h.strat.on_book_action = act
    h.es_book()
    assert h.strat.kinds(coids[0]) == [EventKind.ACCEPTED]
    assert_rejected(h, coids[1], Verdict.MAX_POSITION)


def test_too_many_open_orders() -> None:
    h = Harness(RiskConfig(equity=EQUITY, max_open_orders=3))
    h.es_book()
    working = [h.buy(ES, 1, p) for p in (99.0, 98.75, 98.5)]
    assert all(h.strat.kinds(c) == [EventKind.ACCEPTED] for c in working)
    bad = h.sell(ES, 1, 101.0)
    assert_rejected(h, bad, Verdict.MAX_OPEN_ORDERS)
    assert h.venue.received == 3
    # The limit is per instrument.
    other = h.buy(BTC, 0.001, 60000.0)
    assert h.strat.kinds(other) == [EventKind.ACCEPTED]
    # A cancel frees a slot.
    h.cancel(working[0])
    ok = h.sell(ES, 1, 101.0)
    assert h.strat.kinds(ok) == [EventKind.ACCEPTED]
    assert h.engine.risk.rejects[Verdict.MAX_OPEN_ORDERS] == 1


def test_open_order_limit_with_orders_sent_in_one_callback() -> None:
    # A two-sided quote from one on_book (the MarketMaker pattern) with room for one open order:
    # the first order must pass and only the second be refused. Intents still queued behind
    # the one being checked are not open orders yet.
    h = Harness(RiskConfig(equity=EQUITY, max_open_orders=1))
    coids = []

    def act(s: Strategy) -> None:
        coids.append(s.buy(ES, 1, 99.0))
        coids.append(s.sell(ES, 1, 101.0))

    h.strat.on_book_action = act
    h.es_book()
    assert h.strat.kinds(coids[0]) == [EventKind.ACCEPTED]
    assert_rejected(h, coids[1], Verdict.MAX_OPEN_ORDERS)
    assert h.venue.received == 1


# ---- trading states -------------------------------------------------------------------------


def test_halted_rejects_new_orders_but_cancels_reach_the_venue() -> None:
    h = Harness()
    h.es_book()
    working = h.buy(ES, 2, 99.0)
    assert h.venue.received == 1

    h.engine.halt("test")
    assert h.engine.trading_state is TradingState.HALTED
    assert h.engine.halt_reason == "test"

    for coid in (h.buy(ES, 1, 99.0), h.sell(ES, 1, 101.0), h.buy(ES, 1), h.sell(BTC, 0.001)):
        assert_rejected(h, coid, Verdict.TRADING_HALTED)
    assert h.engine.risk.rejects[Verdict.TRADING_HALTED] == 4
    assert h.venue.received == 1
    assert h.engine.router.orders == 1

    h.cancel(working)
    assert h.engine.router.cancels == 1
    assert h.strat.kinds(working) == [EventKind.ACCEPTED, EventKind.CANCELLED]
    assert h.order(working).state is OrderState.CANCELLED


def test_halted_rejects_modifies() -> None:
    h = Harness()
    working = h.buy(ES, 2, 99.0)
    h.engine.halt("test")
    h.modify(working, price=99.25)
    ev = h.strat.of(working)[-1]
    assert ev.kind == EventKind.CANCEL_REJECTED
    assert ev.reason_code == Verdict.TRADING_HALTED
    assert ev.reason.startswith("TRADING_HALTED:")
    assert h.engine.router.modifies == 0
    assert h.order(working).price_ticks == 396


def test_halted_cancel_all_reaches_the_venue() -> None:
    h = Harness()
    a = h.buy(ES, 1, 99.0)
    b = h.sell(BTC, 0.002, 60000.0)
    h.engine.halt("test")
    h.strat.cancel_all()
    h.engine.pump()
    assert h.engine.router.cancels == 2
    assert h.strat.kinds(a)[-1] == EventKind.CANCELLED
    assert h.strat.kinds(b)[-1] == EventKind.CANCELLED
    assert h.engine.tracker.open == {}


def test_reducing_allows_only_orders_that_reduce_the_position() -> None:
    h = Harness()
    h.es_book()
    h.buy(ES, 5)
    assert h.lots(h.es) == 5
    h.engine.risk.set_state(TradingState.REDUCING, "test")
    assert h.engine.trading_state is TradingState.REDUCING

    assert_rejected(h, h.buy(ES, 1, 99.0), Verdict.REDUCING_ONLY)  # adds
    assert_rejected(h, h.sell(ES, 6, 101.0), Verdict.REDUCING_ONLY)  # flips to short
    assert_rejected(h, h.buy(BTC, 0.001, 60000.0), Verdict.REDUCING_ONLY)  # flat instrument
    assert h.venue.received == 1

    ok = h.sell(ES, 3)  # reduces: market sell fills at the bid
    assert EventKind.FILL in h.strat.kinds(ok)
    assert h.lots(h.es) == 2
    ok2 = h.sell(ES, 2, 99.75)
    assert EventKind.FILL in h.strat.kinds(ok2)
    assert h.lots(h.es) == 0
    assert_rejected(h, h.sell(ES, 1, 101.0), Verdict.REDUCING_ONLY)
    assert_rejected(h, h.buy(ES, 1, 99.0), Verdict.REDUCING_ONLY)
    assert h.engine.risk.rejects[Verdict.REDUCING_ONLY] == 5

    h.engine.risk.set_state(TradingState.ACTIVE, "test")
    assert h.strat.kinds(h.buy(ES, 1, 99.0)) == [EventKind.ACCEPTED]


def test_reducing_allows_buys_that_reduce_a_short() -> None:
    h = Harness()
    h.es_book()
    h.sell(ES, 4)
    h.engine.risk.set_state(TradingState.REDUCING, "test")
    assert_rejected(h, h.sell(ES, 1, 101.0), Verdict.REDUCING_ONLY)
    assert_rejected(h, h.buy(ES, 5, 99.0), Verdict.REDUCING_ONLY)
    assert h.strat.kinds(h.buy(ES, 4, 99.0)) == [EventKind.ACCEPTED]


def test_reducing_counts_open_reducing_orders() -> None:
    # Long 5 with a resting sell for 5 already covering it: a second sell for 5 would take the
    # position to -5 if both fill, so it does not reduce anything.
    h = Harness()
    h.es_book()
    h.buy(ES, 5)
    h.engine.risk.set_state(TradingState.REDUCING, "test")
    first = h.sell(ES, 5, 101.0)
    assert h.strat.kinds(first) == [EventKind.ACCEPTED]
    second = h.sell(ES, 5, 101.0)
    assert_rejected(h, second, Verdict.REDUCING_ONLY)
    assert h.venue.received == 2


# ---- counters -------------------------------------------------------------------------------


def test_reject_counters_by_verdict() -> None:
    h = Harness(RiskConfig(equity=EQUITY, max_order_qty=10))
    h.buy(ES, 0, 100.0)
    h.buy(ES, NAN, 100.0)
    h.buy(ES, 1, NAN)
    h.buy(ES, 11, 100.0)
    h.buy(ES, 1, 100.1)
    h.buy(ES, 1, 100.1)
    h.buy(ES, 1, 100.1)
    h.buy(ES, 2, 100.0)  # passes
    r = h.engine.risk.rejects
    assert r[Verdict.BAD_QUANTITY] == 2
    assert r[Verdict.BAD_PRICE] == 1
    assert r[Verdict.MAX_ORDER_QTY] == 1
    assert r[Verdict.OFF_TICK_GRID] == 3
    assert r[Verdict.PASS] == 0
    assert sum(r) == 7
    assert h.engine.risk.passed == 1
    assert h.venue.received == 1
    rows = {
        labels["reason"]: value
        for name, _, labels, value in h.engine.counters()
        if name == "rejects_total"
    }
    assert rows["OFF_TICK_GRID"] == 3 and rows["BAD_QUANTITY"] == 2 and rows["MAX_POSITION"] == 0


# ---- modify and cancel ----------------------------------------------------------------------


def test_modify_with_an_off_tick_price_is_cancel_rejected() -> None:
    h = Harness()
    h.es_book()
    coid = h.buy(ES, 2, 99.0)
    h.modify(coid, price=99.1)
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [EventKind.ACCEPTED, EventKind.CANCEL_REJECTED]
    assert evs[-1].reason_code == Verdict.OFF_TICK_GRID
    assert evs[-1].reason.startswith("OFF_TICK_GRID:")
    assert h.engine.router.modifies == 0
    assert h.engine.risk.rejects[Verdict.OFF_TICK_GRID] == 1
    order = h.order(coid)
    assert order.is_open and order.state is OrderState.ACCEPTED
    assert order.price_ticks == 396 and order.qty_lots == 2
    # Still working at its old price at the venue.
    h.book(h.es.id, (ASK, 396, 10))
    assert h.strat.kinds(coid)[-1] == EventKind.FILL


@pytest.mark.parametrize(
    ("qty", "price", "verdict"),
    [
        (None, -1.0, Verdict.BAD_PRICE),
        (None, 0.0, Verdict.BAD_PRICE),
        (None, INF, Verdict.BAD_PRICE),
        (0, None, Verdict.BAD_QUANTITY),
        (-2, None, Verdict.BAD_QUANTITY),
        (INF, None, Verdict.BAD_QUANTITY),
        (2.5, None, Verdict.NOT_WHOLE_LOTS),
    ],
)
def test_bad_modify_is_cancel_rejected(qty, price, verdict) -> None:
    h = Harness()
    coid = h.buy(ES, 2, 99.0)
    h.modify(coid, qty=qty, price=price)
    ev = h.strat.of(coid)[-1]
    assert ev.kind == EventKind.CANCEL_REJECTED
    assert ev.reason_code == verdict
    assert ev.reason.startswith(f"{verdict.name}:")
    assert h.engine.router.modifies == 0
    assert h.order(coid).is_open


def test_modify_and_cancel_of_unknown_orders() -> None:
    h = Harness()
    h.modify(777, price=100.0)
    h.cancel(778)
    for coid in (777, 778):
        ev = assert_rejected(h, coid, Verdict.UNKNOWN_ORDER, kind=EventKind.CANCEL_REJECTED)
        assert ev.reason_code == Verdict.UNKNOWN_ORDER
    assert h.engine.router.modifies == 0 and h.engine.router.cancels == 0


def test_modify_cannot_raise_quantity_past_max_order_qty() -> None:
    # The gate is the only way to the venue: a modify must not carry an order past the limits a
    # new order of that size would be refused for.
    h = Harness(RiskConfig(equity=EQUITY, max_order_qty=10))
    coid = h.buy(ES, 5, 99.0)
    h.modify(coid, qty=1000)
    ev = h.strat.of(coid)[-1]
    assert ev.kind == EventKind.CANCEL_REJECTED
    assert ev.reason_code == Verdict.MAX_ORDER_QTY
    assert h.engine.router.modifies == 0
    assert h.order(coid).qty_lots == 5


def test_valid_modify_passes_the_gate() -> None:
    h = Harness(RiskConfig(equity=EQUITY, max_order_qty=10))
    coid = h.buy(ES, 5, 99.0)
    h.modify(coid, qty=7, price=99.5)
    ev = h.strat.of(coid)[-1]
    assert ev.kind == EventKind.MODIFIED
    assert (ev.qty_lots, ev.price_ticks) == (7, 398)
    assert h.engine.router.modifies == 1


def test_reject_reason_names_the_check_and_the_strategys_numbers() -> None:
    h = Harness()
    h.es_book()
    coid = h.buy(ES, 2, 100.1)
    ev = assert_rejected(h, coid, Verdict.OFF_TICK_GRID)
    assert ev.reason == f"OFF_TICK_GRID: {REASONS[Verdict.OFF_TICK_GRID]} (qty=2, price=100.1)"
    market = h.sell(ES, 1.5)
    ev = assert_rejected(h, market, Verdict.NOT_WHOLE_LOTS)
    assert ev.reason.endswith("(qty=1.5)")


def test_reject_reasons_of_intents_sent_during_a_book_update_are_complete() -> None:
    h = Harness()
    working = h.buy(ES, 2, 99.0)
    coids = []

    def act(s: Strategy) -> None:
        coids.append(s.buy(ES, 1, 100.1))
        s.modify(working, price=99.1)
        coids.append(s.buy(ES, 1, 99.0))

    h.strat.on_book_action = act
    h.es_book()
    ev = assert_rejected(h, coids[0], Verdict.OFF_TICK_GRID)
    assert ev.reason.endswith("(qty=1, price=100.1)")
    refused = h.strat.of(working)[-1]
    assert refused.kind == EventKind.CANCEL_REJECTED
    assert refused.reason.startswith("OFF_TICK_GRID:")
    assert refused.reason.endswith("(modify refused; qty=2, price=99.1)")
    assert h.strat.kinds(coids[1]) == [EventKind.ACCEPTED]


# ---- whose order, and in what state ----------------------------------------------------------

X = EventKind.CANCEL_REJECTED
MS = 1_000_000
SLOW = SimVenueConfig(ack_latency_us=1000)  # answers 1 ms after a request: requests stay pending


class Counting(SimVenue):
    """A simulated venue that also records the cancels and modifies it is sent."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.requests: list[tuple] = []

    def cancel(self, order) -> None:
        self.requests.append(("cancel", order.client_order_id))
        super().cancel(order)

    def modify(self, order, qty_lots: int, price_ticks: int) -> None:
        self.requests.append(("modify", order.client_order_id, qty_lots, price_ticks))
        super().modify(order, qty_lots, price_ticks)


def test_a_strategy_cannot_cancel_or_modify_another_strategys_order(caplog) -> None:
    h = Harness(venue_cls=Counting)
    other: Recorder = h.engine.add_strategy(Recorder, "other", None, ["ES"])
    h.es_book()
    coid = h.buy(ES, 2, 99.0)
    with caplog.at_level(logging.ERROR, logger="engine.risk_gate"):
        other.cancel(coid)
        other.modify(coid, qty=500)
        other.modify(coid, price=98.0)
        h.engine.pump()
    refusals = other.of(coid)
    assert [e.kind for e in refusals] == [X, X, X]
    for ev in refusals:
        assert ev.reason_code == Verdict.NOT_OWN_ORDER
        assert ev.reason.startswith("NOT_OWN_ORDER:")
        assert f"order {coid} is strategy 0's" in ev.reason
    assert h.engine.risk.rejects[Verdict.NOT_OWN_ORDER] == 3
    assert sum(f"order {coid} of strategy 0" in r.getMessage() for r in caplog.records) == 3
    # The owner heard nothing, the order is untouched, nothing went to the venue.
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    order = h.order(coid)
    assert (order.state, order.qty_lots, order.price_ticks) == (OrderState.ACCEPTED, 2, 396)
    assert h.venue.requests == []
    assert (h.engine.router.cancels, h.engine.router.modifies) == (0, 0)
    assert h.venue._orders[coid].qty_lots == 2
    # Its owner still can.
    h.cancel(coid)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.CANCELLED]


def test_a_refusal_by_the_gate_leaves_a_request_pending_at_the_venue_pending() -> None:
    h = Harness(venue_config=SLOW, venue_cls=Counting)
    other: Recorder = h.engine.add_strategy(Recorder, "other", None, ["ES"])
    h.es_book()
    coid = h.buy(ES, 2, 99.0)
    h.advance(MS)
    h.modify(coid, qty=4)
    order = h.order(coid)
    assert order.state is OrderState.PENDING_MODIFY
    h.modify(coid, price=99.1)  # off the tick grid: the gate refuses it
    other.cancel(coid)  # not its order
    h.engine.pump()
    assert [e.reason_code for e in h.strat.of(coid)[1:]] == [Verdict.OFF_TICK_GRID]
    assert [e.reason_code for e in other.of(coid)] == [Verdict.NOT_OWN_ORDER]
    # Neither refusal answered the modify the venue has: it is still pending, and its answer
    # is applied when it comes.
    assert order.state is OrderState.PENDING_MODIFY
    h.advance(MS)
    assert h.strat.kinds(coid)[-1] == EventKind.MODIFIED
    assert (order.state, order.qty_lots) == (OrderState.ACCEPTED, 4)
    assert h.venue.requests == [("modify", coid, 4, 396)]


TAKES_NO_PRICE = [
    ("MARKET", {}),
    ("STOP", {"order_type": OrderType.STOP, "stop": 101.0}),
    ("MARKET_ON_CLOSE", {"order_type": OrderType.MARKET_ON_CLOSE}),
    ("TRAILING_STOP", {"order_type": OrderType.TRAILING_STOP, "trail": 1.0}),
    (
        "TRAILING_STOP_LIMIT",
        {"order_type": OrderType.TRAILING_STOP_LIMIT, "trail": 1.0, "limit_offset": 0.25},
    ),
]


@pytest.mark.parametrize(("name", "kw"), TAKES_NO_PRICE, ids=[c[0] for c in TAKES_NO_PRICE])
def test_modify_that_gives_a_price_to_a_type_that_takes_none_is_refused(name, kw) -> None:
    h = Harness(venue_config=SLOW, venue_cls=Counting)
    h.es_book()
    coid = h.buy(ES, 2, None, **kw)
    order = h.order(coid)
    assert order.state is OrderState.SUBMITTED  # working: the venue has not answered yet
    h.modify(coid, price=99.0)
    ev = h.strat.of(coid)[-1]
    assert (ev.kind, ev.reason_code) == (X, Verdict.BAD_ORDER_PARAMS)
    assert ev.reason.startswith("BAD_ORDER_PARAMS:")
    assert f"modify refused; {name} takes no limit price; qty=2, price=99)" in ev.reason
    assert h.venue.requests == [] and h.engine.router.modifies == 0
    assert (order.state, order.qty_lots, order.price_ticks) == (OrderState.SUBMITTED, 2, NO_PRICE)
    # A new quantity alone is a modify these types take.
    h.modify(coid, qty=3)
    assert h.venue.requests == [("modify", coid, 3, NO_PRICE)]


def test_a_working_market_order_given_a_price_keeps_working_at_market() -> None:
    h = Harness(venue_config=SimVenueConfig(depth_levels=1))
    h.book(h.es.id, (BID, 399, 100), (ASK, 400, 3))
    coid = h.buy(ES, 10)  # 3 fill, 7 keep working
    h.modify(coid, price=50.0)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.FILL, X]
    assert h.engine.router.modifies == 0
    h.book(h.es.id, (ASK, 400, 0), (ASK, 410, 100))
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(3, 400), (7, 410)]
    assert h.order(coid).state is OrderState.FILLED


def test_a_second_cancel_of_an_order_whose_cancel_is_pending_is_not_sent_again() -> None:
    h = Harness(venue_config=SLOW, venue_cls=Counting)
    h.es_book()
    coid = h.buy(ES, 2, 99.0)
    h.advance(MS)
    h.cancel(coid)
    h.cancel(coid)
    h.strat.cancel_all()
    h.engine.pump()
    assert h.order(coid).state is OrderState.PENDING_CANCEL
    assert h.venue.requests == [("cancel", coid)] and h.engine.router.cancels == 1
    h.advance(MS)
    # The venue's answer to the cancel answers all three requests.
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.CANCELLED]


def test_a_modify_of_an_order_whose_cancel_is_pending_is_refused_and_the_cancel_wins() -> None:
    h = Harness(venue_config=SLOW, venue_cls=Counting)
    h.es_book()
    coid = h.buy(ES, 2, 99.0)
    h.advance(MS)
    h.cancel(coid)
    h.modify(coid, qty=5)
    ev = h.strat.of(coid)[-1]
    assert (ev.kind, ev.reason_code) == (X, Verdict.CANCEL_PENDING)
    assert ev.reason.startswith("CANCEL_PENDING:")
    assert f"order {coid} is being cancelled" in ev.reason
    order = h.order(coid)
    assert (order.state, order.qty_lots) == (OrderState.PENDING_CANCEL, 2)
    assert h.venue.requests == [("cancel", coid)] and h.engine.router.modifies == 0
    h.advance(MS)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, X, EventKind.CANCELLED]
    ist = h.engine.risk.arrays.ist[h.es.id]
    assert (ist[rk.IS_OPEN_BUY], ist[rk.IS_OPEN_ORDERS]) == (0, 0)


def test_a_modify_or_cancel_of_an_order_the_gate_refused_never_reaches_the_venue() -> None:
    h = Harness(RiskConfig(equity=EQUITY, max_order_qty=100), venue_cls=Counting)
    refused = []

    def act(s: Strategy) -> None:
        coid = s.buy(ES, 1000, 99.0)  # refused: above max_order_qty
        s.modify(coid, qty=10)  # before its REJECTED is applied
        s.cancel(coid)
        refused.append(coid)

    h.strat.on_book_action = act
    h.es_book()
    [coid] = refused
    evs = h.strat.of(coid)
    assert [(e.kind, e.reason_code) for e in evs] == [
        (EventKind.REJECTED, Verdict.MAX_ORDER_QTY),
        (X, Verdict.UNKNOWN_ORDER),
        (X, Verdict.UNKNOWN_ORDER),
    ]
    assert all(f"the risk gate refused order {coid}: it never left" in e.reason for e in evs[1:])
    assert h.venue.received == 0 and h.venue.requests == []
    assert (h.engine.router.modifies, h.engine.router.cancels) == (0, 0)
    assert h.order(coid).state is OrderState.REJECTED
    ist = h.engine.risk.arrays.ist[h.es.id]
    assert (ist[rk.IS_OPEN_BUY], ist[rk.IS_OPEN_ORDERS]) == (0, 0)


# ---- the reject event itself ----------------------------------------------------------------


def test_reject_event_carries_no_stale_fill_fields() -> None:
    # Event slots are reused: a reject written into a slot that last held a fill must not
    # inherit that fill's exec id, price or commission. A 2-slot ring reuses slots at once;
    # the default ring does the same after 4096 events.
    h = Harness(
        venue_config=SimVenueConfig(commission_per_lot=1.25), rings=RingsConfig(order_events=2)
    )
    h.es_book()
    h.buy(ES, 3)
    h.buy(ES, 2)
    assert [e.kind for e in h.strat.events].count(EventKind.FILL) == 2
    assert h.engine.trading_state is TradingState.ACTIVE
    bad = [h.buy(ES, -1, 100.0), h.buy(ES, -1, 100.0)]
    for coid in bad:
        ev = assert_rejected(h, coid, Verdict.BAD_QUANTITY)
        assert ev.exec_id == ""
        assert ev.fill_price_ticks == NO_PRICE
        assert ev.commission == 0.0


# ---- stage latencies ------------------------------------------------------------------------


def test_stage_latencies_of_orders_sent_during_a_book_update_are_recorded_after_it() -> None:
    h = Harness()
    tick_to_order = h.engine.latency["tick_to_order"]
    seen_during: list[int] = []

    def act(s: Strategy) -> None:
        s.buy(ES, 1, 99.0)
        s.sell(ES, 1, 101.0)
        seen_during.append(tick_to_order.count)

    h.strat.on_book_action = act
    h.es_book()
    assert seen_during == [0]  # nothing recorded in front of the orders still to come
    assert tick_to_order.count == 2
    assert h.engine.latency["risk"].count == 2
    h.strat.on_book_action = None
    h.buy(ES, 1, 98.0)  # outside a book update: recorded at once
    assert tick_to_order.count == 3


@settings(max_examples=60, deadline=None)
@given(
    tops=st.lists(
        st.tuples(
            st.integers(0, 1),
            st.one_of(st.just(NO_PRICE), st.integers(1, 400_000)),
            st.integers(0, 50),
            st.one_of(st.just(NO_PRICE), st.integers(1, 400_000)),
            st.integers(0, 50),
        ),
        max_size=2,
    ),
    n=st.integers(0, 2),
)
def test_bound_marker_marks_as_on_book(tops, n) -> None:
    """``marker(ids, top)(n)`` (the book actor's one call per batch) leaves the risk state
    exactly as ``on_book(ids, top, n)`` does, whatever the tops (empty sides included)."""
    gates = [Harness().engine.risk for _ in range(2)]
    ids = np.zeros(2, dtype=np.int64)
    top = np.zeros((2, 4), dtype=np.int64)
    for k, (i, bid, bq, ask, aq) in enumerate(tops):
        ids[k] = i
        top[k] = (bid, bq, ask, aq)
    gates[0].on_book(ids, top, n)
    gates[1].marker(ids, top)(n)
    for a, b in zip(gates[0].arrays, gates[1].arrays, strict=True):
        assert np.array_equal(a, b, equal_nan=True)


def test_marker_refuses_arrays_the_kernel_cannot_take() -> None:
    gate = Harness().engine.risk
    with pytest.raises(TypeError, match="int64"):
        gate.marker(np.zeros(2, dtype=np.int32), np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(TypeError, match="int64"):
        gate.marker(np.zeros(2, dtype=np.int64), np.zeros((4, 2), dtype=np.int64).T)


def test_a_modify_that_raises_a_buys_price_is_held_to_buying_power() -> None:
    """An ES buy at 80.00 reserves 4000 of 4500; moved to 99.75 it needs 4987.50: refused, the
    order keeps working at 80.00 and 4000 stay reserved."""
    h = Harness(RiskConfig(equity=EQUITY, buying_power=4500.0))
    h.es_book()
    coid = h.buy(ES, 1, 80.0)
    a = h.engine.risk.arrays
    assert a.gst[rk.GS_BP_RESERVED] == 4000.0
    h.modify(coid, price=99.75)
    ev = h.strat.of(coid)[-1]
    assert ev.kind == EventKind.CANCEL_REJECTED and ev.reason_code == Verdict.BUYING_POWER
    assert "modify refused" in ev.reason
    assert h.order(coid).price_ticks == 320 and a.gst[rk.GS_BP_RESERVED] == 4000.0
    h.modify(coid, price=89.75)  # 4487.50: fits
    assert h.strat.kinds(coid)[-1] == EventKind.MODIFIED
    assert a.gst[rk.GS_BP_RESERVED] == 4487.5
    h.cancel(coid)
    assert a.gst[rk.GS_BP_RESERVED] == 0.0


def test_a_resting_limit_does_not_mark_positions_while_the_book_is_empty() -> None:
    """Long 2 ES bought at 100.00; the book empties (the data stopped); a buy limit at 10.00
    rests. Positions stay marked at the last mid (99.875): the limit's price made up a loss of
    9000 against the daily loss limit."""
    h = Harness(RiskConfig(equity=EQUITY, daily_loss_limit=5000.0))
    h.es_book()
    h.buy(ES, 2)  # fills at the ask, 100.00
    assert h.lots(h.es) == 2
    h.book(h.es.id, (BID, 399, 0), (ASK, 400, 0))
    a = h.engine.risk.arrays
    unreal = a.gst[rk.GS_UNREAL]
    assert unreal == -12.5
    resting = h.buy(ES, 1, 10.0)
    assert h.strat.kinds(resting) == [EventKind.ACCEPTED]
    assert a.ist[h.es.id, rk.IS_MARK_TICKS] == 399.5 and a.gst[rk.GS_UNREAL] == unreal
    more = h.buy(ES, 1, 9.0)
    assert h.strat.kinds(more) == [EventKind.ACCEPTED]  # not ACCOUNT_DAILY_LOSS


def test_the_collar_holds_when_the_book_loses_a_side_or_empties() -> None:
    """A 5% collar: with the bid gone (a one-sided book) a buy at 150.00 passed and filled,
    and with the book empty (IB's data stopped) any limit price passed. Now both are collared
    against the last mid (99.875) and never reach the venue."""
    h = Harness(RiskConfig(equity=EQUITY, price_collar_pct=5.0))
    h.es_book()
    h.book(h.es.id, (BID, 399, 0))  # the ask alone is left
    assert_rejected(h, h.buy(ES, 1, 150.0), Verdict.PRICE_COLLAR)
    assert_rejected(h, h.sell(ES, 1, 10.0), Verdict.PRICE_COLLAR)
    h.book(h.es.id, (ASK, 400, 0))  # empty
    assert_rejected(h, h.buy(ES, 1, 1000.0), Verdict.PRICE_COLLAR)
    assert h.venue.received == 0
    near = h.buy(ES, 1, 99.0)
    assert h.strat.kinds(near) == [EventKind.ACCEPTED]


def test_max_position_holds_for_the_account_across_strategies() -> None:
    """[risk] max_position = 10: two strategies each working 8 ES buys made the account's
    worst case 16 lots; the second is now refused, and fills cannot take the account past 10."""
    h = Harness(RiskConfig(equity=EQUITY, max_position=10))
    other: Recorder = h.engine.add_strategy(Recorder, "rec2", None, [ES])
    h.es_book()
    first = h.buy(ES, 8, 99.0)
    assert h.strat.kinds(first) == [EventKind.ACCEPTED]
    second = other.buy(ES, 8, 99.0)
    h.engine.pump()
    (ev,) = other.of(second)
    assert ev.kind == EventKind.REJECTED and ev.reason_code == Verdict.MAX_POSITION
    third = other.buy(ES, 2)  # at market: 8 working + 2 = 10
    h.engine.pump()
    assert other.kinds(third)[-1] == EventKind.FILL
    assert h.venue.received == 2


def test_cancels_count_against_the_venues_pacing() -> None:
    """venue_msgs_per_s = 10 with a burst of 2: an order and its cancel are two messages to the
    venue, so the next order waits for the bucket (VENUE_PACING) instead of going out as a third
    message in the same instant; a cancel itself is never refused. Before, cancels were free."""
    h = Harness(RiskConfig(equity=EQUITY, venue_msgs_per_s=10.0, venue_burst=2))
    h.es_book()
    first = h.buy(ES, 1, 99.0)
    h.cancel(first)
    assert h.strat.kinds(first) == [EventKind.ACCEPTED, EventKind.CANCELLED]
    assert_rejected(h, h.buy(ES, 1, 99.0), Verdict.VENUE_PACING)
    h.advance(100_000_000)  # one message's credit back
    again = h.buy(ES, 1, 99.0)
    assert h.strat.kinds(again) == [EventKind.ACCEPTED]
    h.cancel(again)  # on credit: sent all the same
    assert h.strat.kinds(again)[-1] == EventKind.CANCELLED


def test_a_stop_limits_limit_is_collared_against_its_stop_not_the_mid() -> None:
    """A 5% collar, mid 99.875: a protective sell stop at 90.00, limit 89.50, was refused as a
    fat finger (its limit is 10% from the mid), leaving the position without its stop-loss.
    Its limit goes live at its stop: it is collared there, and a limit far from it still is."""
    h = Harness(RiskConfig(equity=EQUITY, price_collar_pct=5.0))
    h.es_book()
    h.buy(ES, 2)
    stop = h.sell(ES, 2, 89.5, order_type=OrderType.STOP_LIMIT, stop=90.0)
    assert h.venue.received == 2  # passed the gate (the simulated venue has no stop-limits)
    assert h.strat.of(stop)[-1].reason_code != Verdict.PRICE_COLLAR
    far = h.sell(ES, 2, 80.0, order_type=OrderType.STOP_LIMIT, stop=99.0)
    assert_rejected(h, far, Verdict.PRICE_COLLAR)
    assert h.venue.received == 2


def test_an_instruments_margin_sets_the_buying_power_its_orders_use() -> None:
    """buying_power = 2,000 and ES's margin 0.1: one ES lot at 99.00 (4,950 of notional) uses
    495, so four pass and a fifth does not. Nothing set the kernels' margin, so a future used its
    whole notional: the first lot was refused, and buying_power was unusable with futures."""
    risk = RiskConfig(
        equity=EQUITY, buying_power=2_000.0, instruments={ES: InstrumentRiskConfig(margin=0.1)}
    )
    h = Harness(risk)
    h.es_book()
    for _ in range(4):
        assert h.strat.kinds(h.buy(ES, 1, 99.0)) == [EventKind.ACCEPTED]
    assert h.engine.risk.arrays.gst[rk.GS_BP_RESERVED] == pytest.approx(4 * 495.0)
    assert_rejected(h, h.buy(ES, 1, 99.0), Verdict.BUYING_POWER)
