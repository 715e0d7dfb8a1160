"""The simulated venue (adapters/sim/venue.py) driven through a real Engine on a SimClock.

Books are built from BOOK_DELTA rows (SET, side 0 bid / 1 ask, price in ticks, size in lots);
orders go through a recording strategy, the risk gate and the router like any strategy's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest
from event_recorder import Ev, Recorder

from adapters.sim.venue import (
    CANCEL_FILLED,
    CANCEL_NOT_FOUND,
    MODIFY_NOT_WORKING,
    NOT_SIMULATED,
    PARENT_UNKNOWN,
    SimVenue,
)
from engine.clock import SimClock, TimerHandle
from engine.config import (
    BreakersConfig,
    RiskConfig,
    RouterConfig,
    RouterVenueConfig,
    ShadowVenueConfig,
    SimVenueConfig,
)
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import (
    NO_PRICE,
    TRADE,
    BookSide,
    EventKind,
    TimeInForce,
)
from engine.orders import Order, OrderState
from engine.risk_gate import Verdict
from engine.runtime import Engine
from tests.book_support import set_levels

START_NS = 1_000_000_000
TICK = 0.25  # ES tick size
BID, ASK = int(BookSide.BID), int(BookSide.ASK)

# ---- helpers --------------------------------------------------------------------------------


class Harness:
    """One engine, one SimVenue "SIM", one instrument ES (tick 0.25, lot 1, multiplier 50)."""

    def __init__(
        self,
        venue_config: SimVenueConfig | None = None,
        clock: SimClock | None = None,
        router: RouterConfig | None = None,
        venue: SimVenue | None = None,
        risk: RiskConfig | None = None,
    ) -> None:
        self.registry = InstrumentRegistry()
        self.es = self.registry.add("ES", "SIM", AssetClass.FUTURE, TICK, 1.0, 50.0)
        self.clock = clock or SimClock(START_NS)
        self.venue = venue or SimVenue("SIM", venue_config or SimVenueConfig())
        self.engine = Engine(
            self.registry, {"SIM": self.venue}, self.clock, risk=risk or RiskConfig(equity=1e9),
            router=router,
        )  # fmt: skip
        self.strat: Recorder = self.engine.add_strategy(Recorder, "rec", None, ["ES"])
        self.engine.start()

    # market data
    def book(self, *levels: tuple[int, int, int]) -> None:
        """SET deltas ``(side, ticks, lots)`` in one batch, then pump."""
        set_levels(self.engine, self.es.id, self.clock.now(), levels)

    def trade(self, ticks: int, lots: int, aggressor: int = 0) -> None:
        """A print; ``aggressor`` is the taker's side (1 buy, -1 sell), 0 unknown as IB's."""
        t = np.zeros(1, dtype=TRADE)
        t["instrument_id"] = self.es.id
        t["price"] = ticks
        t["size"] = lots
        t["aggressor"] = aggressor
        t["trade_id"] = 1
        t["ts_event"] = t["ts_recv"] = self.clock.now()
        self.engine.trades.write(t)
        self.engine.pump()

    # orders (prices given in ticks)
    def buy(self, qty: float, ticks: int | None = None, tif=TimeInForce.DAY) -> int:
        coid = self.strat.buy("ES", qty, None if ticks is None else ticks * TICK, tif)
        self.engine.pump()
        return coid

    def sell(self, qty: float, ticks: int | None = None, tif=TimeInForce.DAY) -> int:
        coid = self.strat.sell("ES", qty, None if ticks is None else ticks * TICK, tif)
        self.engine.pump()
        return coid

    def cancel(self, coid: int) -> None:
        self.strat.cancel(coid)
        self.engine.pump()

    def modify(self, coid: int, qty: float | None = None, ticks: int | None = None) -> None:
        self.strat.modify(coid, qty, None if ticks is None else ticks * TICK)
        self.engine.pump()

    # state
    def position(self):
        return self.engine.portfolio.position(self.strat.id, self.es.id)

    def order(self, coid: int) -> Order:
        tr = self.engine.tracker
        found = tr.get(coid) or tr.finished.get(coid)
        assert found is not None
        return found


def standard_book(h: Harness) -> None:
    """Bids 399x5, 398x5; asks 400x5, 401x3, 402x10."""
    h.book((BID, 399, 5), (BID, 398, 5), (ASK, 400, 5), (ASK, 401, 3), (ASK, 402, 10))


def assert_fill_sequence(fills: list[Ev], qty: int) -> None:
    """Cumulative and leaves quantities add up fill by fill."""
    cum = 0
    for f in fills:
        assert f.fill_lots > 0
        cum += f.fill_lots
        assert f.cum_lots == cum
        assert f.leaves_lots == qty - cum
    assert len({f.exec_id for f in fills}) == len(fills)
    assert all(f.exec_id for f in fills)


# ---- market orders --------------------------------------------------------------------------


def test_market_buy_walks_the_ask_levels() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(12)

    assert h.strat.kinds(coid) == [EventKind.ACCEPTED] + [EventKind.FILL] * 3
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(5, 400), (3, 401), (4, 402)]
    assert [(f.cum_lots, f.leaves_lots) for f in fills] == [(5, 7), (8, 4), (12, 0)]
    assert_fill_sequence(fills, 12)
    assert all(f.side == 1 and f.instrument_id == h.es.id for f in fills)
    assert h.venue.received == 1
    assert h.order(coid).state is OrderState.FILLED
    assert h.order(coid).filled_lots == 12

    pos = h.position()
    assert pos.lots == 12
    assert pos.avg_ticks == pytest.approx((5 * 400 + 3 * 401 + 4 * 402) / 12)


def test_market_sell_walks_the_bid_levels() -> None:
    h = Harness()
    standard_book(h)
    coid = h.sell(7)
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(5, 399), (2, 398)]
    assert_fill_sequence(fills, 7)
    assert all(f.side == -1 for f in fills)
    assert h.position().lots == -7


def test_market_order_exactly_the_top_level_fills_at_one_price() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(5)
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks, f.leaves_lots) for f in fills] == [(5, 400, 0)]


def test_exec_ids_unique_across_orders() -> None:
    h = Harness()
    standard_book(h)
    a = h.buy(12)
    b = h.sell(7)
    c = h.buy(3)
    ids = [f.exec_id for f in h.strat.fills()]
    assert len(h.strat.fills(a)) == 3 and len(h.strat.fills(b)) == 2 and h.strat.fills(c)
    assert len(ids) == len(set(ids)) == h.venue.fills


def test_market_order_larger_than_depth_keeps_working_until_the_book_refills() -> None:
    h = Harness()
    h.book((BID, 399, 5), (ASK, 400, 5), (ASK, 401, 5))
    coid = h.buy(15)

    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(5, 400), (5, 401)]
    assert fills[-1].leaves_lots == 5
    assert EventKind.CANCELLED not in h.strat.kinds(coid)
    assert h.order(coid).state is OrderState.PARTIALLY_FILLED
    assert h.order(coid).is_open

    # The ask side is emptied: still working, nothing to fill against.
    h.book((ASK, 400, 0), (ASK, 401, 0))
    assert len(h.strat.fills(coid)) == 2
    assert h.order(coid).is_open

    # The book refills: the rest fills at the new price.
    h.book((ASK, 403, 20))
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(5, 400), (5, 401), (5, 403)]
    assert_fill_sequence(fills, 15)
    assert h.order(coid).state is OrderState.FILLED
    assert h.position().lots == 15

    # Finished: a further book change does not fill it again.
    h.book((ASK, 402, 50))
    assert len(h.strat.fills(coid)) == 3
    assert h.position().lots == 15


def test_market_order_walks_at_most_depth_levels() -> None:
    h = Harness(SimVenueConfig(depth_levels=2))
    standard_book(h)
    coid = h.buy(12)
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(5, 400), (3, 401)]
    assert h.order(coid).is_open


# ---- limit orders ---------------------------------------------------------------------------


def test_limit_buy_below_the_ask_rests_then_fills_when_the_ask_comes_down() -> None:
    h = Harness()
    h.book((BID, 396, 5), (ASK, 401, 5))
    coid = h.buy(5, ticks=399)

    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    acc = h.strat.of(coid)[0]
    assert acc.price_ticks == 399 and acc.qty_lots == 5
    assert acc.leaves_lots == 5 and acc.cum_lots == 0
    assert h.order(coid).state is OrderState.ACCEPTED

    # An ask above the limit: no fill.
    h.book((ASK, 400, 5))
    assert h.strat.fills(coid) == []

    # An ask at the limit: fills what is displayed there, at that price.
    h.book((ASK, 399, 3))
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks, f.leaves_lots) for f in fills] == [(3, 399, 2)]
    assert h.order(coid).state is OrderState.PARTIALLY_FILLED

    # An ask below the limit: the rest fills at the book's (better) price.
    h.book((ASK, 398, 10))
    fills = h.strat.fills(coid)
    assert (fills[-1].fill_lots, fills[-1].fill_price_ticks) == (2, 398)
    assert_fill_sequence(fills, 5)
    assert h.order(coid).state is OrderState.FILLED
    assert h.position().lots == 5
    assert h.position().avg_ticks == pytest.approx((3 * 399 + 2 * 398) / 5)


def test_resting_limit_fills_at_book_price_with_improvement() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 401, 5))
    coid = h.buy(4, ticks=399)
    assert h.strat.fills(coid) == []
    h.book((ASK, 397, 10))
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(4, 397)]


def test_limit_sell_above_the_bid_rests_then_fills_on_a_bid_delta() -> None:
    h = Harness()
    h.book((BID, 398, 5), (ASK, 404, 5))
    coid = h.sell(6, ticks=401)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    h.book((BID, 402, 10))
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks, f.side) for f in fills] == [(6, 402, -1)]
    assert h.position().lots == -6


def test_marketable_limit_takes_what_crosses_and_rests_the_rest() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(10, ticks=401)
    fills = h.strat.fills(coid)
    # 400x5 and 401x3 cross; 402 does not.
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(5, 400), (3, 401)]
    assert fills[-1].leaves_lots == 2
    assert EventKind.CANCELLED not in h.strat.kinds(coid)
    assert h.order(coid).is_open


def test_resting_limit_fills_from_a_trade_at_or_through_its_price() -> None:
    h = Harness()
    h.book((BID, 396, 5), (ASK, 401, 5))
    coid = h.buy(5, ticks=399)

    h.trade(400, 10)  # above the buy limit: no fill
    assert h.strat.fills(coid) == []

    h.trade(399, 2)  # at the limit: fills the print's size, at the limit
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks, f.leaves_lots) for f in fills] == [(2, 399, 3)]

    h.trade(397, 10)  # through the limit: fills the rest at the limit price
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(2, 399), (3, 399)]
    assert_fill_sequence(fills, 5)
    assert h.order(coid).state is OrderState.FILLED
    assert h.position().lots == 5

    h.trade(390, 10)  # finished: nothing more
    assert len(h.strat.fills(coid)) == 2


def test_resting_sell_limit_fills_from_a_trade_at_or_above_its_price() -> None:
    h = Harness()
    h.book((BID, 396, 5), (ASK, 405, 5))
    coid = h.sell(3, ticks=402)
    h.trade(401, 10)
    assert h.strat.fills(coid) == []
    h.trade(403, 10)
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(3, 402)]
    assert h.position().lots == -3


# ---- IOC / FOK ------------------------------------------------------------------------------


def test_ioc_fills_what_it_can_then_cancels_the_remainder() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(20, ticks=401, tif=TimeInForce.IOC)
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [
        EventKind.ACCEPTED,
        EventKind.FILL,
        EventKind.FILL,
        EventKind.CANCELLED,
    ]
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(5, 400), (3, 401)]
    assert_fill_sequence(fills, 20)
    cancel = evs[-1]
    assert cancel.cum_lots == 8 and cancel.leaves_lots == 12
    assert h.order(coid).state is OrderState.CANCELLED
    assert h.position().lots == 8

    # Gone from the venue: a better ask later does not fill it.
    h.book((ASK, 399, 50))
    assert len(h.strat.fills(coid)) == 2


def test_ioc_market_order_larger_than_depth_is_cancelled_after_its_fills() -> None:
    h = Harness()
    h.book((BID, 399, 5), (ASK, 400, 5), (ASK, 401, 5))
    coid = h.buy(30, tif=TimeInForce.IOC)
    assert h.strat.kinds(coid) == [
        EventKind.ACCEPTED,
        EventKind.FILL,
        EventKind.FILL,
        EventKind.CANCELLED,
    ]
    assert h.strat.of(coid)[-1].leaves_lots == 20


def test_ioc_not_marketable_is_cancelled_without_fills() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(5, ticks=398, tif=TimeInForce.IOC)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.CANCELLED]
    assert h.position().lots == 0


def test_ioc_filled_in_full_is_not_cancelled() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(6, ticks=401, tif=TimeInForce.IOC)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.FILL, EventKind.FILL]
    assert h.order(coid).state is OrderState.FILLED


def test_ioc_cancel_follows_its_fills_with_fill_latency() -> None:
    h = Harness(SimVenueConfig(ack_latency_us=10, fill_latency_us=30))
    standard_book(h)
    coid = h.buy(20, ticks=401, tif=TimeInForce.IOC)
    h.clock.advance_to(START_NS + 1_000_000)
    assert h.strat.kinds(coid) == [
        EventKind.ACCEPTED,
        EventKind.FILL,
        EventKind.FILL,
        EventKind.CANCELLED,
    ]


def test_equal_ack_and_fill_latency_share_one_queue_in_order() -> None:
    """Answers made while answers of the same latency are delivered keep their order."""
    h = Harness(SimVenueConfig(ack_latency_us=20, fill_latency_us=20))
    standard_book(h)
    first = h.buy(7)  # accepted at +20 µs, then fills (made then) at +40 µs
    second = h.buy(2, ticks=398)  # rests
    h.clock.advance_to(START_NS + 30_000)
    assert h.strat.kinds(first) == [EventKind.ACCEPTED]
    h.cancel(second)
    h.clock.advance_to(START_NS + 1_000_000)
    assert h.strat.kinds(first) == [EventKind.ACCEPTED, EventKind.FILL, EventKind.FILL]
    assert h.strat.kinds(second) == [EventKind.ACCEPTED, EventKind.CANCELLED]
    assert h.position().lots == 7


def test_fok_with_insufficient_liquidity_is_cancelled_with_no_fills() -> None:
    h = Harness()
    standard_book(h)  # 18 lots offered in all
    coid = h.buy(20, tif=TimeInForce.FOK)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.CANCELLED]
    assert h.strat.fills() == []
    assert h.order(coid).state is OrderState.CANCELLED
    assert h.position().lots == 0


def test_fok_limit_counts_only_liquidity_within_its_price() -> None:
    h = Harness()
    standard_book(h)
    # 400x5 + 401x3 = 8 within the limit, 10 wanted: nothing fills.
    coid = h.buy(10, ticks=401, tif=TimeInForce.FOK)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.CANCELLED]
    assert h.position().lots == 0


def test_fok_with_enough_liquidity_fills_in_full() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(8, ticks=401, tif=TimeInForce.FOK)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.FILL, EventKind.FILL]
    assert_fill_sequence(h.strat.fills(coid), 8)
    assert h.order(coid).state is OrderState.FILLED
    assert h.position().lots == 8


# ---- cancel and modify ----------------------------------------------------------------------


def test_cancel_of_a_working_order() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(5, ticks=397)
    h.cancel(coid)
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [EventKind.ACCEPTED, EventKind.CANCELLED]
    assert evs[-1].leaves_lots == 5 and evs[-1].cum_lots == 0
    assert h.order(coid).state is OrderState.CANCELLED
    assert h.engine.router.cancels == 1

    # Gone from the venue: the ask coming down to its price does not fill it.
    h.book((BID, 390, 5), (ASK, 396, 50))
    h.trade(395, 50)
    assert h.strat.fills() == []
    assert h.position().lots == 0


def test_cancel_of_a_partly_filled_order_keeps_its_fills() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(10, ticks=400)
    h.cancel(coid)
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [EventKind.ACCEPTED, EventKind.FILL, EventKind.CANCELLED]
    assert (evs[-1].cum_lots, evs[-1].leaves_lots) == (5, 5)
    assert h.position().lots == 5


def test_cancel_of_an_unknown_order_is_rejected() -> None:
    h = Harness()
    standard_book(h)
    h.cancel(123456789)
    evs = h.strat.of(123456789)
    assert [e.kind for e in evs] == [EventKind.CANCEL_REJECTED]
    assert evs[0].reason_code == Verdict.UNKNOWN_ORDER


def test_cancel_of_a_filled_order_is_rejected() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(3)
    assert h.order(coid).state is OrderState.FILLED
    h.cancel(coid)
    assert h.strat.kinds(coid)[-1] == EventKind.CANCEL_REJECTED
    assert h.position().lots == 3


def test_venue_rejects_cancel_of_an_order_it_no_longer_works() -> None:
    # The venue filled the order; the fill report is still on its way when the cancel arrives:
    # the refusal follows it, as on one connection.
    h = Harness(SimVenueConfig(fill_latency_us=100))
    standard_book(h)
    coid = h.buy(3, ticks=400)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    h.cancel(coid)
    assert h.engine.router.cancels == 1
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    h.clock.advance_to(START_NS + 100_000)
    assert h.strat.kinds(coid) == [
        EventKind.ACCEPTED,
        EventKind.FILL,
        EventKind.CANCEL_REJECTED,
    ]
    assert "not working at SIM" in h.strat.of(coid)[-1].reason
    assert h.strat.of(coid)[-1].reason_code == CANCEL_FILLED  # IB's 10148
    assert h.order(coid).state is OrderState.FILLED
    assert h.position().lots == 3


def test_venue_cancel_and_modify_of_unknown_order_ids() -> None:
    h = Harness()
    ghost = Order(42, h.strat.id, h.es.id, 1, 1, TimeInForce.DAY, 5, 400)
    h.venue.cancel(ghost)
    h.venue.modify(ghost, 5, 401)
    h.engine.pump()
    evs = h.strat.of(42)
    assert [e.kind for e in evs] == [EventKind.CANCEL_REJECTED, EventKind.CANCEL_REJECTED]
    assert evs[0].reason.startswith("cancel refused")
    assert evs[1].reason.startswith("modify refused")


def test_modify_price_then_fills_when_marketable() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(4, ticks=396)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]

    h.modify(coid, ticks=397)  # still below the ask: rests at the new price
    mod = h.strat.of(coid)[-1]
    assert mod.kind == EventKind.MODIFIED and mod.price_ticks == 397
    assert h.order(coid).price_ticks == 397
    assert h.strat.fills(coid) == []

    h.modify(coid, ticks=400)  # marketable: fills at once
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [
        EventKind.ACCEPTED,
        EventKind.MODIFIED,
        EventKind.MODIFIED,
        EventKind.FILL,
    ]
    assert evs[2].price_ticks == 400
    assert (evs[-1].fill_lots, evs[-1].fill_price_ticks, evs[-1].leaves_lots) == (4, 400, 0)
    assert h.order(coid).state is OrderState.FILLED
    assert h.position().lots == 4


def test_modified_order_fills_at_its_new_price_from_book_and_trades() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    coid = h.buy(4, ticks=395)
    h.modify(coid, ticks=398)
    h.trade(397, 1)  # through the new price: fills at the new limit
    h.book((ASK, 396, 10))  # below the new price: fills at the book price
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.fill_price_ticks) for f in fills] == [(1, 398), (3, 396)]


def test_modify_quantity() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    coid = h.buy(4, ticks=395)
    h.modify(coid, qty=9)
    mod = h.strat.of(coid)[-1]
    assert mod.kind == EventKind.MODIFIED
    assert (mod.qty_lots, mod.leaves_lots, mod.price_ticks) == (9, 9, 395)
    assert h.order(coid).qty_lots == 9
    h.book((ASK, 395, 20))
    fills = h.strat.fills(coid)
    assert [(f.fill_lots, f.leaves_lots) for f in fills] == [(9, 0)]


# ---- latency --------------------------------------------------------------------------------


def test_latencies_hold_answers_until_the_clock_passes_them() -> None:
    ack_ns, fill_ns = 50_000, 20_000
    h = Harness(SimVenueConfig(ack_latency_us=50, fill_latency_us=20))
    standard_book(h)
    coid = h.buy(8)
    assert h.venue.received == 1
    assert h.strat.events == []
    assert h.order(coid).state is OrderState.SUBMITTED

    h.clock.advance_to(START_NS + ack_ns - 1)
    assert h.strat.events == []

    h.clock.advance_to(START_NS + ack_ns)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    assert h.strat.of(coid)[0].ts_recv == START_NS + ack_ns

    h.clock.advance_to(START_NS + ack_ns + fill_ns - 1)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    assert h.position().lots == 0

    h.clock.advance_to(START_NS + ack_ns + fill_ns)
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [EventKind.ACCEPTED, EventKind.FILL, EventKind.FILL]
    assert [(e.fill_lots, e.fill_price_ticks) for e in evs[1:]] == [(5, 400), (3, 401)]
    assert all(e.ts_recv == START_NS + ack_ns + fill_ns for e in evs[1:])
    assert_fill_sequence(evs[1:], 8)
    assert h.position().lots == 8
    assert h.order(coid).state is OrderState.FILLED


def test_a_stopped_venue_sends_no_answer_still_waiting_out_its_latency() -> None:
    # At shutdown the engine closes its journal after the venues stopped: an answer delivered
    # later would reach the OMS and the portfolio without being journaled.
    h = Harness(SimVenueConfig(ack_latency_us=50, fill_latency_us=20))
    standard_book(h)
    coid = h.buy(8)
    h.clock.advance_to(START_NS + 50_000)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]  # its fills are due 20 µs later
    asyncio.run(h.venue.stop())
    h.clock.advance_to(START_NS + 10_000_000)
    h.engine.pump()
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    assert h.position().lots == 0
    assert h.engine.fills == 0


class SlowAnswers(SimClock):
    """A SimClock on which answering takes time: each reading inside a timer callback is 30 µs
    later than the one before."""

    busy = False

    def call_later(self, delay_ns: int, callback: Callable[[], object]) -> TimerHandle:
        def slow() -> None:
            self.busy = True
            try:
                callback()
            finally:
                self.busy = False

        return super().call_later(delay_ns, slow)

    def now(self) -> int:
        if self.busy:
            self._now += 30_000
        return self._now


def test_answers_made_while_answering_slower_than_the_latency_go_out_once() -> None:
    # Accepting takes longer than the 20 µs fill latency: the fills it makes are due before the
    # delivery is over and go out with it; the timer armed for them then finds nothing to do.
    h = Harness(SimVenueConfig(ack_latency_us=20, fill_latency_us=20), SlowAnswers(START_NS))
    standard_book(h)
    coid = h.buy(7)
    h.clock.advance_to(START_NS + 10_000_000)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.FILL, EventKind.FILL]
    assert_fill_sequence(h.strat.fills(coid), 7)
    assert h.position().lots == 7


def test_latency_applies_to_cancels_and_keeps_order_of_answers() -> None:
    h = Harness(SimVenueConfig(ack_latency_us=10, fill_latency_us=10))
    standard_book(h)
    a = h.buy(2, ticks=397)
    b = h.buy(3, ticks=396)
    assert h.strat.events == []
    h.clock.advance_to(START_NS + 10_000)
    assert [(e.kind, e.client_order_id) for e in h.strat.events] == [
        (EventKind.ACCEPTED, a),
        (EventKind.ACCEPTED, b),
    ]
    h.cancel(b)
    assert h.strat.kinds(b) == [EventKind.ACCEPTED]
    assert h.order(b).state is OrderState.PENDING_CANCEL
    h.clock.advance_to(START_NS + 20_000)
    assert h.strat.kinds(b) == [EventKind.ACCEPTED, EventKind.CANCELLED]
    assert h.order(b).state is OrderState.CANCELLED
    assert h.strat.kinds(a) == [EventKind.ACCEPTED]


def test_resting_fill_with_latency_arrives_after_the_fill_latency() -> None:
    h = Harness(SimVenueConfig(ack_latency_us=5, fill_latency_us=40))
    h.book((BID, 390, 5), (ASK, 401, 5))
    coid = h.buy(2, ticks=399)
    h.clock.advance_to(START_NS + 5_000)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    h.clock.advance_to(START_NS + 100_000)
    h.book((ASK, 399, 5))
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    h.clock.advance_to(START_NS + 139_999)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    h.clock.advance_to(START_NS + 140_000)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED, EventKind.FILL]


def test_a_cancel_answered_while_a_fill_is_on_its_way_follows_the_fill() -> None:
    """Fill latency longer than the acknowledgement's: the CANCELLED (counting the fill's
    lots) leaves after that FILL, as on one connection."""
    h = Harness(SimVenueConfig(ack_latency_us=10, fill_latency_us=100))
    h.book((BID, 396, 5), (ASK, 401, 5))
    coid = h.buy(5, ticks=399)
    h.clock.advance_to(START_NS + 50_000)
    h.book((ASK, 399, 3))  # 3 lots fill at 50 µs: the FILL is due at 150 µs
    h.cancel(coid)  # reaches the venue at 60 µs
    h.clock.advance_to(START_NS + 149_999)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    h.clock.advance_to(START_NS + 150_000)
    evs = h.strat.of(coid)
    assert [(e.kind, e.cum_lots, e.ts_recv) for e in evs[1:]] == [
        (EventKind.FILL, 3, START_NS + 150_000),
        (EventKind.CANCELLED, 3, START_NS + 150_000),
    ]
    assert h.order(coid).state is OrderState.CANCELLED
    assert h.position().lots == 3


def test_a_modify_and_a_refused_cancel_follow_the_fills_on_their_way() -> None:
    h = Harness(SimVenueConfig(ack_latency_us=10, fill_latency_us=100))
    h.book((BID, 396, 5), (ASK, 401, 5))
    full = h.buy(2, ticks=399)
    part = h.buy(5, ticks=399)
    h.clock.advance_to(START_NS + 50_000)
    h.book((ASK, 399, 4))  # full fills 2, then part 2 of 5 (one price: time priority)
    h.modify(part, 4)  # reaches the venue at 60 µs
    h.cancel(full)  # reaches the venue at 60 µs: full is filled, its FILL still on its way
    h.clock.advance_to(START_NS + 1_000_000)
    assert [(e.kind, e.cum_lots) for e in h.strat.of(part)[1:]] == [
        (EventKind.FILL, 2),
        (EventKind.MODIFIED, 2),
    ]
    assert h.strat.of(part)[-1].qty_lots == 4
    assert h.strat.kinds(full)[1:] == [EventKind.FILL, EventKind.CANCEL_REJECTED]
    assert h.order(full).state is OrderState.FILLED


# ---- requests sent in reaction to a book batch ----------------------------------------------
#
# The venue matches a batch after the strategies have reacted to it, so matching never delays
# their orders; what they send meanwhile reaches the venue after that match, as at a real venue
# where the market moved first.


def test_a_cancel_sent_in_reaction_to_a_batch_follows_that_batchs_fill() -> None:
    h = Harness()
    h.book((BID, 396, 5), (ASK, 401, 5))
    coid = h.buy(5, ticks=399)
    h.strat.on_book_action = lambda s: s.cancel(coid)
    h.book((ASK, 399, 3))
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [EventKind.ACCEPTED, EventKind.FILL, EventKind.CANCELLED]
    assert (evs[1].fill_lots, evs[1].fill_price_ticks) == (3, 399)
    assert (evs[2].cum_lots, evs[2].leaves_lots) == (3, 2)
    assert h.position().lots == 3


def test_a_modify_sent_in_reaction_to_a_batch_follows_that_batchs_fill() -> None:
    h = Harness()
    h.book((BID, 396, 5), (ASK, 401, 5))
    coid = h.buy(5, ticks=399)
    h.strat.on_book_action = lambda s: s.modify(coid, price=398 * TICK)
    h.book((ASK, 399, 2))
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [EventKind.ACCEPTED, EventKind.FILL, EventKind.MODIFIED]
    assert (evs[1].fill_lots, evs[1].fill_price_ticks) == (2, 399)
    assert (evs[2].price_ticks, evs[2].cum_lots, evs[2].leaves_lots) == (398, 2, 3)
    assert h.order(coid).price_ticks == 398 and h.order(coid).reserved == 3


def test_an_order_sent_in_reaction_to_a_batch_takes_its_liquidity_once() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    resting = h.buy(1, ticks=391)  # a working order: the next batch has a match pending
    coids = []
    h.strat.on_book_action = lambda s: coids.append(s.buy("ES", 8, 400 * TICK))
    h.book((ASK, 400, 5))
    fills = h.strat.fills(coids[0])
    assert [(f.fill_lots, f.fill_price_ticks, f.leaves_lots) for f in fills] == [(5, 400, 3)]
    assert h.order(coids[0]).is_open
    assert h.strat.fills(resting) == []
    assert h.position().lots == 5


def test_with_latency_a_reaction_is_answered_after_the_batchs_fill_on_time() -> None:
    h = Harness(SimVenueConfig(ack_latency_us=20, fill_latency_us=20))
    h.book((BID, 396, 5), (ASK, 401, 5))
    coid = h.buy(5, ticks=399)
    h.clock.advance_to(START_NS + 20_000)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    h.clock.advance_to(START_NS + 100_000)
    h.strat.on_book_action = lambda s: s.cancel(coid)
    h.book((ASK, 399, 3))
    h.clock.advance_to(START_NS + 119_999)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    h.clock.advance_to(START_NS + 120_000)
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [EventKind.ACCEPTED, EventKind.FILL, EventKind.CANCELLED]
    assert all(e.ts_recv == START_NS + 120_000 for e in evs[1:])
    assert (evs[2].cum_lots, evs[2].leaves_lots) == (3, 2)
    assert h.order(coid).state is OrderState.CANCELLED and h.order(coid).reserved == 0


# ---- positions ------------------------------------------------------------------------------


def test_positions_and_commission_follow_the_fills() -> None:
    h = Harness(SimVenueConfig(commission_per_lot=0.5))
    standard_book(h)
    h.buy(12)  # 5@400 3@401 4@402
    h.sell(7)  # 5@399 2@398
    h.buy(1, ticks=402)  # 1@402: the first buy used up 400 and 401, and 4 of 402's 10
    fills = h.strat.fills()
    signed = sum(f.fill_lots * f.side for f in fills)
    assert signed == 12 - 7 + 1
    pos = h.position()
    assert pos.lots == signed
    assert pos.fills == len(fills) == 6
    assert pos.commission == pytest.approx(0.5 * sum(f.fill_lots for f in fills))
    assert all(f.commission == pytest.approx(0.5 * f.fill_lots) for f in fills)

    # Average cost of the 12 bought, then 7 sold against it, then 1 added.
    avg = (5 * 400 + 3 * 401 + 4 * 402) / 12
    realised = ((399 - avg) * 5 + (398 - avg) * 2) * h.es.tick_value
    avg = (avg * 5 + 402) / 6
    assert pos.realised == pytest.approx(realised)
    assert pos.avg_ticks == pytest.approx(avg)
    assert h.strat.position("ES") == pytest.approx(6.0)
    assert h.engine.fills == 6


# ---- liquidity used up, price-time priority ----------------------------------------------


def test_two_orders_share_what_a_level_shows() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    first = h.buy(4, ticks=400)
    second = h.buy(4, ticks=400)
    h.book((ASK, 400, 5))  # 5 shown: the earlier order takes 4, the later the 1 left
    assert [f.fill_lots for f in h.strat.fills(first)] == [4]
    assert [f.fill_lots for f in h.strat.fills(second)] == [1]
    assert h.position().lots == 5


def test_a_level_used_up_is_not_taken_again_until_the_market_changes_it() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    coid = h.buy(20, ticks=400)
    h.book((ASK, 400, 5))
    h.book((BID, 391, 5))  # other levels move: 400 still shows the 5 already taken
    h.book((BID, 392, 5))
    assert [f.fill_lots for f in h.strat.fills(coid)] == [5]
    h.book((ASK, 400, 7))  # the market updates the level: what it shows is fresh
    assert [f.fill_lots for f in h.strat.fills(coid)] == [5, 7]
    assert h.position().lots == 12


def test_a_level_that_empties_and_comes_back_is_fresh() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    coid = h.buy(20, ticks=400)
    h.book((ASK, 400, 5))
    h.book((ASK, 400, 0))
    h.book((ASK, 400, 5))  # the same size as before, but new orders
    assert [f.fill_lots for f in h.strat.fills(coid)] == [5, 5]


def test_a_market_order_on_a_thin_book_takes_what_is_shown_once() -> None:
    h = Harness()
    h.book((BID, 399, 5), (ASK, 400, 2))
    coid = h.buy(10)
    h.book((BID, 399, 6))  # the top changes, not the ask
    assert [f.fill_lots for f in h.strat.fills(coid)] == [2]
    assert h.order(coid).leaves_lots == 8


def test_fok_counts_only_liquidity_not_used_up() -> None:
    h = Harness()
    h.book((BID, 399, 5), (ASK, 400, 5))
    h.buy(3)
    coid = h.buy(3, tif=TimeInForce.FOK)  # 2 left at 400
    assert h.strat.fills(coid) == []
    assert h.strat.kinds(coid)[-1] is EventKind.CANCELLED


def test_a_print_fills_the_better_priced_order_first() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    low = h.buy(1, ticks=399)  # sent first, at a worse price
    high = h.buy(1, ticks=400)
    h.trade(399, 1)
    assert h.strat.fills(low) == []
    assert [(f.fill_lots, f.fill_price_ticks) for f in h.strat.fills(high)] == [(1, 400)]


def test_a_book_update_fills_the_better_priced_order_first() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    low = h.sell(2, ticks=402)  # sent first, at a worse price
    high = h.sell(2, ticks=401)
    h.book((BID, 403, 3))
    assert [f.fill_lots for f in h.strat.fills(high)] == [2]
    assert [f.fill_lots for f in h.strat.fills(low)] == [1]


def test_no_fill_events_carry_no_price() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(3, ticks=397)
    acc = h.strat.of(coid)[0]
    assert acc.fill_lots == 0 and acc.fill_price_ticks == NO_PRICE and acc.exec_id == ""


# ---- the end of the trading day -------------------------------------------------------------
#
# The engine's one day boundary (``[risk] daily_reset``, 17:00 New York by default) ends the
# simulated venue's DAY orders: the roll's timer fires ``Engine.roll_day``, which calls the
# venue's ``on_day_end``.


def day_harness(**kw) -> Harness:
    """A Harness whose breakers evaluate once a minute: the clock crosses whole days here, and
    at the default 100 ms their timer would fire 864,000 times a day."""
    risk = RiskConfig(equity=1e9, breakers=BreakersConfig(interval_ms=60_000))
    return Harness(risk=risk, **kw)


def day_end(h: Harness) -> int:
    """Move the clock to the next trading day's start, firing the engine's day roll."""
    roll = h.engine.next_roll_ns(h.clock.now())
    h.clock.advance_to(roll)
    return roll


def test_day_orders_expire_at_the_days_end_and_gtc_orders_keep_working() -> None:
    h = day_harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    day = h.buy(3, ticks=399)
    gtc = h.buy(3, ticks=398, tif=TimeInForce.GTC)
    h.book((ASK, 399, 1))  # the DAY order fills 1 of 3
    roll = day_end(h)

    ev = h.strat.of(day)[-1]
    assert (ev.kind, ev.cum_lots, ev.leaves_lots, ev.ts_recv) == (EventKind.EXPIRED, 1, 2, roll)
    assert "trading day ended" in ev.reason
    assert h.order(day).state is OrderState.EXPIRED and h.order(day).reserved == 0
    assert h.strat.kinds(gtc) == [EventKind.ACCEPTED]
    assert h.order(gtc).is_open

    # The next session trades through both prices: only the GTC order is still there.
    h.book((ASK, 397, 20))
    assert [f.fill_lots for f in h.strat.fills(day)] == [1]
    assert [(f.fill_lots, f.fill_price_ticks) for f in h.strat.fills(gtc)] == [(3, 397)]
    h.trade(390, 50)
    assert h.position().lots == 4
    assert h.engine.tracker.open == {}


def test_each_days_end_expires_the_day_orders_sent_that_day() -> None:
    h = day_harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    first = h.buy(1, ticks=391)
    day_end(h)
    second = h.buy(1, ticks=392)  # sent in the new session: works through it
    h.clock.advance_to(h.clock.now() + 3_600 * 10**9)
    assert h.strat.kinds(second) == [EventKind.ACCEPTED]
    day_end(h)
    assert h.strat.kinds(first) == [EventKind.ACCEPTED, EventKind.EXPIRED]
    assert h.strat.kinds(second) == [EventKind.ACCEPTED, EventKind.EXPIRED]


def test_an_expiry_follows_a_fill_still_on_its_way() -> None:
    h = day_harness(venue_config=SimVenueConfig(ack_latency_us=10, fill_latency_us=100))
    h.book((BID, 390, 5), (ASK, 410, 5))
    coid = h.buy(3, ticks=399)
    roll = h.engine.next_roll_ns(h.clock.now())
    h.clock.advance_to(roll - 50_000)
    h.book((ASK, 399, 2))  # 2 fill 50 µs before the roll: the FILL is due 50 µs after it
    h.clock.advance_to(roll)
    assert h.strat.kinds(coid) == [EventKind.ACCEPTED]
    h.clock.advance_to(roll + 50_000)
    evs = h.strat.of(coid)
    assert [(e.kind, e.cum_lots, e.leaves_lots) for e in evs[1:]] == [
        (EventKind.FILL, 2, 1),
        (EventKind.EXPIRED, 2, 1),
    ]
    assert h.order(coid).state is OrderState.EXPIRED
    assert h.position().lots == 2


def test_a_day_parent_expires_with_its_day_child_and_cancels_its_gtc_child() -> None:
    h = day_harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    parent = h.buy(2, ticks=399)
    day_child = h.strat.sell("ES", 2, 420 * TICK, parent=parent)
    gtc_child = h.strat.sell("ES", 2, 421 * TICK, TimeInForce.GTC, parent=parent)
    h.engine.pump()
    assert h.strat.kinds(day_child) == [EventKind.ACCEPTED]
    assert h.strat.kinds(gtc_child) == [EventKind.ACCEPTED]
    day_end(h)
    assert h.strat.kinds(parent) == [EventKind.ACCEPTED, EventKind.EXPIRED]
    assert h.strat.kinds(day_child) == [EventKind.ACCEPTED, EventKind.EXPIRED]
    assert h.strat.kinds(gtc_child) == [EventKind.ACCEPTED, EventKind.CANCELLED]
    assert f"parent order {parent} expired" in h.strat.of(gtc_child)[-1].reason
    assert h.engine.tracker.open == {}


def test_a_held_day_child_expires_and_its_gtc_parent_keeps_working() -> None:
    h = day_harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    parent = h.buy(2, ticks=399, tif=TimeInForce.GTC)
    child = h.strat.sell("ES", 2, 405 * TICK, parent=parent)
    h.engine.pump()
    day_end(h)
    assert h.strat.kinds(child) == [EventKind.ACCEPTED, EventKind.EXPIRED]
    assert h.strat.kinds(parent) == [EventKind.ACCEPTED]
    # The parent fills the next day; the expired child does not start working.
    h.book((ASK, 399, 5))
    h.book((BID, 406, 5))
    assert h.strat.kinds(parent) == [EventKind.ACCEPTED, EventKind.FILL]
    assert h.strat.kinds(child) == [EventKind.ACCEPTED, EventKind.EXPIRED]
    assert h.position().lots == 2


def test_a_shadowed_day_order_expires_at_the_shadow_venue() -> None:
    router = RouterConfig(
        venues={"SIM": RouterVenueConfig(mode="shadow")},
        shadow=ShadowVenueConfig(ack_latency_us=0, fill_latency_us=0),
    )
    h = day_harness(router=router)
    h.book((BID, 390, 5), (ASK, 410, 5))
    day = h.buy(2, ticks=399)
    gtc = h.buy(2, ticks=398, tif=TimeInForce.GTC)
    assert h.order(day).shadow and h.venue.received == 0
    day_end(h)
    assert h.strat.kinds(day) == [EventKind.ACCEPTED, EventKind.EXPIRED]
    h.book((ASK, 397, 10))
    assert h.strat.fills(day) == []
    assert [f.fill_lots for f in h.strat.fills(gtc)] == [2]
    assert h.engine.shadow_portfolio.position(h.strat.id, h.es.id).lots == 2


class FailingDayEnd(SimVenue):
    """A simulated venue whose day-end hook raises (a venue's bug)."""

    def on_day_end(self, ts: int) -> None:
        raise RuntimeError("broken hook")


def test_a_venue_whose_day_end_raises_is_logged_and_the_days_still_roll(caplog) -> None:
    h = day_harness(venue=FailingDayEnd("SIM"))
    h.book((BID, 390, 5), (ASK, 410, 5))
    with caplog.at_level("INFO", logger="engine.runtime"):
        day_end(h)
        day_end(h)
    raised = [r for r in caplog.records if "on_day_end raised" in r.getMessage()]
    rolled = [r for r in caplog.records if "trading day rolled" in r.getMessage()]
    assert len(raised) == 2 and len(rolled) == 2
    assert "venue SIM" in raised[0].getMessage() and raised[0].exc_info is not None


# ---- refusals carry codes --------------------------------------------------------------------
#
# Never the risk gate's verdict codes: a CANCEL_REJECTED with one is the gate's own refusal to
# the OMS and the gate, which then leave the request pending at the venue.


def test_an_order_the_venue_does_not_simulate_is_rejected_with_not_simulated() -> None:
    h = Harness()
    standard_book(h)
    coid = h.buy(1, ticks=399, tif=TimeInForce.OPG)
    (ev,) = h.strat.of(coid)
    assert (ev.kind, ev.reason_code) == (EventKind.REJECTED, NOT_SIMULATED)
    assert ev.reason == "time in force OPG is not supported by the simulated venue"
    assert h.engine.risk.passed == 1  # the gate let it through: the venue refused it


def test_a_child_whose_parent_ended_at_the_venue_is_rejected_with_parent_unknown() -> None:
    h = Harness(SimVenueConfig(ack_latency_us=10, fill_latency_us=10))
    standard_book(h)
    parent = h.buy(2, ticks=397)
    h.cancel(parent)  # still open for the engine (pending cancel) when the child is sent
    child = h.strat.sell("ES", 2, 410 * TICK, parent=parent)
    h.engine.pump()
    h.clock.advance_to(START_NS + 1_000_000)
    assert h.strat.kinds(parent) == [EventKind.ACCEPTED, EventKind.CANCELLED]
    (ev,) = h.strat.of(child)
    assert (ev.kind, ev.reason_code) == (EventKind.REJECTED, PARENT_UNKNOWN)
    assert f"parent order {parent} is not working at SIM" in ev.reason


def test_cancels_and_modifies_of_orders_not_working_carry_ibs_codes() -> None:
    h = Harness()
    standard_book(h)
    filled = h.buy(3)
    cancelled = h.buy(1, ticks=397)
    h.cancel(cancelled)
    for coid in (filled, cancelled):
        o = h.order(coid)
        h.venue.cancel(o)  # sent to the venue directly: the gate refuses these itself
        h.venue.modify(o, 5, 396)
    h.engine.pump()
    codes = [(e.client_order_id, e.kind, e.reason_code) for e in h.strat.events[-4:]]
    assert codes == [
        (filled, EventKind.CANCEL_REJECTED, CANCEL_FILLED),
        (filled, EventKind.CANCEL_REJECTED, MODIFY_NOT_WORKING),
        (cancelled, EventKind.CANCEL_REJECTED, CANCEL_NOT_FOUND),
        (cancelled, EventKind.CANCEL_REJECTED, MODIFY_NOT_WORKING),
    ]
    assert (CANCEL_FILLED, CANCEL_NOT_FOUND, MODIFY_NOT_WORKING) == (10148, 10147, 104)


def test_a_modify_up_refused_after_the_fill_that_completed_the_order_finishes_it() -> None:
    # The order filled at the venue while a modify to a larger size was on its way; the FILL
    # leaves it pending (the venue may work it at the new size), the refusal then ends it
    # FILLED and frees what the gate reserved. Were the refusal's code a verdict code, both
    # would take it for the gate's own and wait for an answer that never comes.
    h = Harness(SimVenueConfig(ack_latency_us=10, fill_latency_us=100))
    h.book((BID, 396, 5), (ASK, 401, 5))
    coid = h.buy(3, ticks=399)
    h.clock.advance_to(START_NS + 50_000)
    h.book((ASK, 399, 5))  # fills all 3 at 50 µs: the FILL is due at 150 µs
    h.modify(coid, qty=6)  # reaches the venue at 60 µs: the order is no longer working
    h.clock.advance_to(START_NS + 1_000_000)
    evs = h.strat.of(coid)
    assert [e.kind for e in evs] == [
        EventKind.ACCEPTED,
        EventKind.FILL,
        EventKind.CANCEL_REJECTED,
    ]
    assert evs[-1].reason_code == MODIFY_NOT_WORKING
    assert h.order(coid).state is OrderState.FILLED
    assert h.order(coid).reserved == 0 and h.engine.tracker.open == {}


# ---- a modify and time priority --------------------------------------------------------------


def test_a_modify_to_a_new_price_goes_behind_the_orders_already_there() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    moved = h.buy(1, ticks=399)  # sent first, at another price
    waiting = h.buy(1, ticks=400)
    h.modify(moved, ticks=400)
    h.trade(400, 1)
    assert [f.fill_lots for f in h.strat.fills(waiting)] == [1]
    assert h.strat.fills(moved) == []


def test_a_modify_to_a_larger_size_goes_behind_the_orders_at_its_price() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    grown = h.buy(1, ticks=400)
    waiting = h.buy(1, ticks=400)
    h.modify(grown, qty=2)
    h.book((ASK, 400, 1))
    assert [f.fill_lots for f in h.strat.fills(waiting)] == [1]
    assert h.strat.fills(grown) == []


def test_a_modify_to_a_smaller_size_keeps_its_place() -> None:
    h = Harness()
    h.book((BID, 390, 5), (ASK, 410, 5))
    shrunk = h.buy(3, ticks=400)
    waiting = h.buy(1, ticks=400)
    h.modify(shrunk, qty=2)
    h.trade(400, 2)
    assert [f.fill_lots for f in h.strat.fills(shrunk)] == [2]
    assert h.strat.fills(waiting) == []


# ---- a print fills one side ------------------------------------------------------------------
#
# Our resting buy at 401 and sell at 399 cross each other (the market's book, 396 / 404, is not
# ours): a print at 399..401 reaches both prices, but its taker either lifted the offers or hit
# the bids, never both.


def crossed_pair(h: Harness) -> tuple[int, int]:
    h.book((BID, 396, 5), (ASK, 404, 5))  # mid 400
    buy = h.buy(2, ticks=401)
    sell = h.sell(2, ticks=399)
    assert h.strat.fills() == []
    return buy, sell


@pytest.mark.parametrize(
    "price, aggressor, filled",
    [
        (400, 1, "sell"),  # a buyer took: it traded with the offers, ours among them
        (400, -1, "buy"),  # a seller took: the bids
        (401, 0, "sell"),  # unknown, above the mid: a buyer took (quote rule)
        (399, 0, "buy"),  # unknown, below the mid: a seller took
        (400, 0, "buy"),  # unknown, at the mid: the side of the order sent first
    ],
)
def test_a_print_fills_our_orders_on_one_side_only(price, aggressor, filled) -> None:
    h = Harness()
    buy, sell = crossed_pair(h)
    h.trade(price, 10, aggressor)
    fills = {"buy": h.strat.fills(buy), "sell": h.strat.fills(sell)}
    other = "sell" if filled == "buy" else "buy"
    assert [f.fill_lots for f in fills[filled]] == [2]
    assert fills[other] == []
    assert h.position().lots == (2 if filled == "buy" else -2)


def test_a_print_a_buyer_took_does_not_fill_our_bids() -> None:
    h = Harness()
    h.book((BID, 396, 5), (ASK, 404, 5))
    buy = h.buy(2, ticks=401)
    h.trade(401, 10, aggressor=1)
    assert h.strat.fills(buy) == []
    h.trade(401, 10, aggressor=-1)
    assert [(f.fill_lots, f.fill_price_ticks) for f in h.strat.fills(buy)] == [(2, 401)]


def test_a_print_of_unknown_side_at_the_mid_fills_the_side_sent_first() -> None:
    h = Harness()
    h.book((BID, 396, 5), (ASK, 404, 5))
    sell = h.sell(2, ticks=399)  # sent first this time
    buy = h.buy(2, ticks=401)
    h.trade(400, 10)
    assert [f.fill_lots for f in h.strat.fills(sell)] == [2]
    assert h.strat.fills(buy) == []
