"""Circuit breakers, trading states and the kill switch (engine/breakers.py, engine/runtime.py),
and risk limits per strategy and per instrument from config.

Everything runs through a real Engine with the simulated venue on a simulated clock: the
breakers' timer fires as the clock advances, fills come from the venue matching the test's books.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

import numpy as np
import pytest
from event_recorder import Recorder

from adapters.sim.venue import SimVenue
from engine.breakers import TradingStateChange
from engine.clock import SimClock
from engine.config import (
    BreakersConfig,
    ConfigError,
    InstrumentRiskConfig,
    RiskConfig,
    RouterConfig,
    RouterVenueConfig,
    ShadowVenueConfig,
    SimVenueConfig,
    StrategyRiskConfig,
    parse_config,
)
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import BOOK_DELTA, BookSide, DeltaAction, EventKind, OrderIntent, OrderType
from engine.orders import OrderState
from engine.risk_gate import TradingState, Verdict
from engine.runtime import Engine
from hotpath import risk as rk

# 2024-03-05 12:00 UTC = 07:00 in New York (EST): the day rolls at 17:00 EST = 22:00 UTC.
START_NS = int(datetime(2024, 3, 5, 12, 0, tzinfo=UTC).timestamp()) * 10**9
MS = 1_000_000
MINUTE = 60 * 10**9
EQUITY = 1_000_000.0
BID, ASK = int(BookSide.BID), int(BookSide.ASK)
HALTED, REDUCING, ACTIVE = TradingState.HALTED, TradingState.REDUCING, TradingState.ACTIVE


class StateRecorder(Recorder):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.changes: list[TradingStateChange] = []

    def on_trading_state(self, change: TradingStateChange) -> None:
        self.changes.append(change)


class RealVenue(SimVenue):
    """The real venue (its router mode permitting): a simulated one that also records every
    cancel, modify and venue-wide cancel the engine asks of it."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.calls: list[tuple] = []

    def cancel(self, order) -> None:
        self.calls.append(("cancel", order.client_order_id))
        super().cancel(order)

    def modify(self, order, qty_lots: int, price_ticks: int) -> None:
        self.calls.append(("modify", order.client_order_id))
        super().modify(order, qty_lots, price_ticks)

    def cancel_all(self) -> None:
        self.calls.append(("cancel_all",))
        super().cancel_all()


class Harness:
    """Engine with ES (future, tick 0.25, lot 1, x50: 5,000 a lot at 100.00) and BTC (crypto)."""

    def __init__(
        self,
        risk: RiskConfig | None = None,
        router: RouterConfig | None = None,
        venue: SimVenueConfig | None = None,
    ) -> None:
        self.registry = InstrumentRegistry()
        self.es = self.registry.add("ES", "SIM", AssetClass.FUTURE, 0.25, 1.0, 50.0)
        self.btc = self.registry.add("BTC", "SIM", AssetClass.CRYPTO, 0.01, 0.001, 1.0)
        self.clock = SimClock(START_NS)
        self.venue = RealVenue("SIM", venue or SimVenueConfig())
        self.engine = Engine(
            self.registry, {"SIM": self.venue}, self.clock, risk=risk or RiskConfig(equity=EQUITY),
            router=router,
        )  # fmt: skip
        self.strat: StateRecorder = self.engine.add_strategy(StateRecorder, "rec", None, ["ES"])
        self.engine.start()

    def book(self, bid_ticks: int, ask_ticks: int, inst_id: int | None = None) -> None:
        d = np.zeros(2, dtype=BOOK_DELTA)
        d["instrument_id"] = self.es.id if inst_id is None else inst_id
        d["action"] = DeltaAction.SET
        d["side"] = [BID, ASK]
        d["price"] = [bid_ticks, ask_ticks]
        d["size"] = [500, 500]
        d["ts_recv"] = self.clock.now()
        self.engine.deltas.write(d)
        self.engine.pump()

    def move_book(self, bid_ticks: int, ask_ticks: int) -> None:
        """A new top: the old levels go (size 0), so nothing stale is left to match against."""
        old_bid, _, old_ask, _ = self.engine.books.tops[self.es.id]
        d = np.zeros(4, dtype=BOOK_DELTA)
        d["instrument_id"] = self.es.id
        d["action"] = DeltaAction.SET
        d["side"] = [BID, ASK, BID, ASK]
        d["price"] = [old_bid, old_ask, bid_ticks, ask_ticks]
        d["size"] = [0, 0, 500, 500]
        d["ts_recv"] = self.clock.now()
        self.engine.deltas.write(d)
        self.engine.pump()

    def buy(self, qty, price=None, **kw) -> int:
        coid = self.strat.buy("ES", qty, price, **kw)
        self.engine.pump()
        return coid

    def sell(self, qty, price=None, **kw) -> int:
        coid = self.strat.sell("ES", qty, price, **kw)
        self.engine.pump()
        return coid

    def advance(self, ns: int) -> None:
        self.clock.advance_to(self.clock.now() + ns)

    def lots(self) -> int:
        return self.engine.portfolio.position(self.strat.id, self.es.id).lots

    def last_kind(self, coid: int) -> EventKind:
        return self.strat.kinds(coid)[-1]

    def rejected_with(self, coid: int, verdict: Verdict) -> bool:
        evs = self.strat.of(coid)
        return (
            [e.kind for e in evs] == [EventKind.REJECTED]
            and evs[0].reason_code == int(verdict)
            and evs[0].reason.startswith(f"{verdict.name}:")
        )

    def counter(self, name: str, **labels: str) -> float:
        for n, _, lab, value in self.engine.counters():
            if n == name and lab == labels:
                return value
        return 0.0

    def foreign_order(self, coid: int = 777) -> int:
        """An order another client of the real venue placed (another engine, a manual TWS
        order): the venue works it, the engine never sent it."""
        it = OrderIntent()
        it.client_order_id = coid
        it.instrument_id = self.es.id
        it.qty_lots = 1
        it.price_ticks = 100  # a buy far below every book these tests make: it never fills
        self.venue.submit(it, None)
        self.engine.pump()
        assert coid in self.venue._orders
        return coid

    def shadow(self) -> SimVenue:
        return self.engine.router.shadow_venues["SIM"]

    def commission(self, coid: int, exec_id: str, amount: float) -> None:
        """IB's commissionReport after its execution, as the IB venue emits it."""
        ev = self.engine.events.claim()
        ev.clear()
        ev.kind = EventKind.COMMISSION
        ev.strategy_id = self.strat.id
        ev.instrument_id = self.es.id
        ev.client_order_id = coid
        ev.exec_id = exec_id
        ev.commission = amount
        self.engine.pump()

    def fees(self) -> tuple[float, float, float]:
        """Today's fees in the risk kernels: the position's, the strategy's, the account's."""
        a = self.engine.risk.arrays
        s, i = self.strat.id, self.es.id
        return float(a.pst[s, i, rk.PS_FEES]), float(a.sst[s, rk.SS_FEES]), float(a.gst[rk.GS_FEES])


def shadowed(mode: str = "shadow", canary_pct: float = 0.0) -> RouterConfig:
    """SIM in ``mode``; its shadow venue answers at once."""
    return RouterConfig(
        venues={"SIM": RouterVenueConfig(mode=mode, canary_pct=canary_pct)},
        shadow=ShadowVenueConfig(ack_latency_us=0, fill_latency_us=0),
    )


# ---- daily loss -----------------------------------------------------------------------------


def lose_five_percent(h: Harness) -> int:
    """Long 20 ES bought at 100.00 with a resting sell at 110.00; the mid falls 200 ticks:
    -200 x 20 x 12.50 = -50,000, 5% of 1,000,000. Returns the resting order's id."""
    h.book(399, 400)
    h.buy(20)
    assert h.lots() == 20
    resting = h.sell(1, 110.0)
    assert h.last_kind(resting) == EventKind.ACCEPTED
    h.move_book(199, 201)
    return resting


def test_daily_loss_halts_cancels_everything_and_refuses_new_orders(caplog):
    h = Harness()
    resting = lose_five_percent(h)
    assert h.engine.trading_state is ACTIVE  # marks alone wait for the breakers' timer
    assert h.engine.breakers.day_pnl() == pytest.approx(-50_000.0)
    with caplog.at_level(logging.WARNING):
        h.advance(100 * MS)
    assert h.engine.trading_state is HALTED
    assert h.engine.state_source == "daily_loss"
    assert h.engine.breakers.loss_tripped
    # The resting order was cancelled at the venue and the strategy was told.
    assert h.venue._orders == {}
    assert h.last_kind(resting) == EventKind.CANCELLED
    assert h.engine.tracker.open == {}
    (change,) = h.strat.changes
    assert (change.old, change.new, change.source) == (ACTIVE, HALTED, "daily_loss")
    assert "daily loss" in change.reason and "5%" in change.reason
    assert h.counter("breaker_trips_total", breaker="daily_loss") == 1
    assert h.counter("trading_state_changes_total", to="halted", source="daily_loss") == 1
    assert any("daily loss breaker" in r.message for r in caplog.records)
    # New orders are refused and never reach the venue; cancels would still pass.
    received = h.venue.received
    coid = h.buy(1, 50.0)
    assert h.rejected_with(coid, Verdict.TRADING_HALTED)
    assert h.venue.received == received


def test_a_loss_in_shadow_cancels_at_the_shadow_venue_and_nothing_reaches_the_real_one(caplog):
    # IB's venue-wide cancel would cancel every order of the account: a loss made only in the
    # shadow book must not touch the real venue, nor another client's orders there.
    h = Harness(router=shadowed())
    foreign = h.foreign_order()
    h.book(399, 400)
    h.buy(20)  # filled in the shadow book only
    assert h.engine.shadow_portfolio.position(h.strat.id, h.es.id).lots == 20 and h.lots() == 0
    resting = h.sell(1, 110.0)
    assert h.engine.tracker.get(resting).shadow
    h.move_book(199, 201)  # -50,000: 5% of equity
    with caplog.at_level(logging.WARNING):
        h.advance(100 * MS)
    assert h.engine.trading_state is HALTED and h.engine.breakers.loss_tripped
    assert h.last_kind(resting) == EventKind.CANCELLED
    assert h.shadow()._orders == {} and h.engine.tracker.open == {}
    assert h.venue.calls == []
    assert list(h.venue._orders) == [foreign]
    assert any(
        "daily loss breaker: 1 open orders of this engine cancelled, one by one (1 at SIM:shadow)"
        in r.getMessage()
        for r in caplog.records
    )


def test_an_operator_reset_lifts_the_loss_halt_and_the_breaker_stays_quiet_for_the_day():
    h = Harness()
    lose_five_percent(h)
    h.advance(100 * MS)
    assert h.engine.trading_state is HALTED
    h.engine.breakers.reset("risk manager approved", source="operator")
    assert h.engine.trading_state is ACTIVE
    assert h.strat.changes[-1].source == "operator"
    assert not h.engine.breakers.loss_tripped
    h.advance(500 * MS)  # the loss is still there: the breaker does not trip again today
    assert h.engine.trading_state is ACTIVE
    coid = h.buy(1, 50.0)
    assert h.last_kind(coid) == EventKind.ACCEPTED
    # Once the loss recovers above the threshold the breaker re-arms, and trips on a new loss.
    h.move_book(299, 301)
    h.advance(100 * MS)
    h.move_book(199, 201)
    h.advance(100 * MS)
    assert h.engine.trading_state is HALTED
    assert h.engine.breakers.trips["daily_loss"] == 2


def test_roll_day_resets_the_loss_halt_and_the_days_pnl():
    h = Harness()
    lose_five_percent(h)
    h.advance(100 * MS)
    assert h.engine.trading_state is HALTED
    h.engine.roll_day()
    assert h.engine.trading_state is ACTIVE
    change = h.strat.changes[-1]
    assert (change.new, change.source) == (ACTIVE, "daily_loss")
    assert "new trading day" in change.reason
    gst = h.engine.risk.arrays.gst
    assert gst[rk.GS_EQUITY_SOD] == pytest.approx(950_000.0)  # equity carries the close
    assert h.engine.breakers.day_pnl() == 0.0
    h.advance(100 * MS)
    assert h.engine.trading_state is ACTIVE
    assert h.last_kind(h.buy(1, 50.0)) == EventKind.ACCEPTED


def test_roll_day_starts_the_shadow_books_day_too():
    """Shadowed fills have their own portfolio: it rolls on the same trading day."""
    shadow = ShadowVenueConfig(ack_latency_us=0, fill_latency_us=0)
    h = Harness(router=RouterConfig(mode="shadow", shadow=shadow))
    h.book(399, 400)
    h.buy(2)
    h.move_book(389, 391)  # bought at the ask (400), mid now 390: -10 x 2 x 12.50 = -250
    book = h.engine.shadow_portfolio
    assert h.engine.portfolio.positions() == {} and book.net_lots(h.es.id) == 2
    assert book.day_pnl() == pytest.approx(-250.0)
    h.engine.roll_day()
    assert book.day_started_ns == h.clock.now()
    assert book.day_pnl() == 0.0
    assert book.total_pnl() == pytest.approx(-250.0)


def test_roll_day_does_not_lift_a_halt_the_operator_set():
    h = Harness()
    lose_five_percent(h)
    h.advance(100 * MS)
    h.engine.set_trading_state(ACTIVE, "looked at it")
    h.engine.set_trading_state(HALTED, "end of my shift")
    h.engine.roll_day()
    assert h.engine.trading_state is HALTED
    assert h.engine.state_source == "operator"


def test_the_day_rolls_at_the_configured_time_and_zone():
    risk = RiskConfig(equity=EQUITY, breakers=BreakersConfig(interval_ms=3_600_000.0))
    h = Harness(risk)
    roll = int(datetime(2024, 3, 5, 22, 0, tzinfo=UTC).timestamp()) * 10**9  # 17:00 EST
    assert h.engine.next_roll_ns(START_NS) == roll
    # Across the DST change (10 March 2024) 17:00 New York is 21:00 UTC.
    after_dst = int(datetime(2024, 3, 11, 21, 0, tzinfo=UTC).timestamp()) * 10**9
    assert (
        h.engine.next_roll_ns(int(datetime(2024, 3, 11, 12, 0, tzinfo=UTC).timestamp()) * 10**9)
        == after_dst
    )
    lose_five_percent(h)
    h.engine.breakers.evaluate()
    assert h.engine.trading_state is HALTED
    h.clock.advance_to(roll - 1)
    assert h.engine.trading_state is HALTED
    h.clock.advance_to(roll)
    assert h.engine.trading_state is ACTIVE
    assert h.engine.next_roll_ns(roll) == roll + 86_400 * 10**9


# ---- rejection rate ---------------------------------------------------------------------------


def test_two_rejects_out_of_three_do_not_trip_the_rejection_rate_breaker():
    h = Harness()
    h.book(399, 400)
    h.buy(1, 99.0)
    h.buy(1, 99.1)  # off the tick grid
    h.buy(1, 99.1)
    h.advance(100 * MS)
    assert h.engine.risk.size_scale == 1.0
    assert h.engine.breakers.trips["reject_rate"] == 0


def test_a_high_rejection_rate_halves_order_sizes_for_30_minutes():
    h = Harness()
    h.book(399, 400)
    for _ in range(15):
        h.buy(1, 90.0)
    for _ in range(5):  # 5 of 20 = 25% > 20%
        h.buy(1, 90.1)
    h.advance(100 * MS)
    assert h.engine.risk.size_scale == 0.5
    assert h.engine.breakers.trips["reject_rate"] == 1
    # Sizes are halved down to whole lots, never below one lot.
    for qty, lots in ((10, 5), (3, 1), (1, 1)):
        coid = h.buy(qty, 90.0)
        assert h.engine.tracker.get(coid).qty_lots == lots
        assert h.venue._orders[coid].qty_lots == lots
    h.advance(30 * MINUTE - 200 * MS)
    assert h.engine.risk.size_scale == 0.5
    h.advance(200 * MS)
    assert h.engine.risk.size_scale == 1.0
    assert h.engine.breakers.resets["reject_rate"] == 1
    coid = h.buy(10, 90.0)
    assert h.engine.tracker.get(coid).qty_lots == 10


def test_venue_rejects_count_toward_the_rejection_rate():
    h = Harness()
    h.book(399, 400)
    for _ in range(20):  # the gate passes STOP LIMIT orders; the simulated venue refuses them
        h.buy(1, 101.0, order_type=OrderType.STOP_LIMIT, stop=101.0)
    assert h.engine.risk.venue_rejects == 20
    assert sum(h.engine.risk.rejects) == 0
    h.advance(100 * MS)
    assert h.engine.risk.size_scale == 0.5


# ---- concentration --------------------------------------------------------------------------


def test_concentration_above_30_percent_blocks_adding_until_below_25():
    h = Harness(RiskConfig(equity=EQUITY, max_concentration=1.0))
    h.book(399, 400)
    h.buy(61)  # 61 x 99.875 x 50 = 304,619: 30.5% of equity
    assert h.lots() == 61
    assert h.engine.breakers.reduce_only(h.es.id)  # checked after the fill, not on a timer
    received = h.venue.received
    coid = h.buy(1, 99.0)
    assert h.rejected_with(coid, Verdict.CONCENTRATION_BREAKER)
    assert h.venue.received == received
    assert h.counter("rejects_total", reason="CONCENTRATION_BREAKER") == 1
    h.sell(5)  # reducing passes: 56 lots, 28% (still above the reset level)
    assert h.lots() == 56
    assert h.engine.breakers.reduce_only(h.es.id)
    assert h.rejected_with(h.buy(1, 99.0), Verdict.CONCENTRATION_BREAKER)
    h.sell(7)  # 49 lots: 24.5%
    assert h.lots() == 49
    assert not h.engine.breakers.reduce_only(h.es.id)
    assert h.last_kind(h.buy(1, 99.0)) == EventKind.ACCEPTED
    assert h.engine.breakers.trips["concentration"] == 1
    assert h.engine.breakers.resets["concentration"] == 1


def test_concentration_also_trips_on_the_timer_when_the_price_moves():
    h = Harness(RiskConfig(equity=EQUITY, max_concentration=1.0))
    h.book(399, 400)
    h.buy(50)  # 25%
    assert not h.engine.breakers.reduce_only(h.es.id)
    h.move_book(519, 521)  # +120 ticks: 50 x 130 x 50 = 325,000 of equity 1,075,000: 30.2%
    h.advance(100 * MS)
    assert h.engine.breakers.reduce_only(h.es.id)


# ---- kill switch and operator transitions ---------------------------------------------------


def test_kill_switch_cancels_everything_at_the_venue_and_halts(caplog):
    h = Harness()
    h.book(399, 400)
    coids = [h.buy(1, 99.0), h.buy(2, 98.75), h.sell(1, 101.0)]
    assert len(h.venue._orders) == 3
    with caplog.at_level(logging.WARNING):
        change = h.engine.kill_switch("runaway strategy")
    assert h.venue._orders == {}
    for coid in coids:
        assert h.last_kind(coid) == EventKind.CANCELLED
    assert h.engine.tracker.open == {}
    assert h.engine.trading_state is HALTED
    assert change is not None and change.source == "kill_switch"
    assert h.strat.changes == [change]
    assert h.counter("kill_switch_total") == 1
    assert h.counter("trading_state_changes_total", to="halted", source="kill_switch") == 1
    assert any(r.levelno == logging.CRITICAL and "KILL SWITCH" in r.message for r in caplog.records)
    assert h.rejected_with(h.buy(1, 99.0), Verdict.TRADING_HALTED)
    # A breaker may not lift it; the operator may.
    assert h.engine.set_trading_state(ACTIVE, "new day", source="daily_loss") is None
    assert h.engine.trading_state is HALTED
    assert h.engine.set_trading_state("active", "checked the strategy") is not None
    assert h.last_kind(h.buy(1, 99.0)) == EventKind.ACCEPTED


def test_kill_switch_cancels_each_own_order_where_it_went_and_leaves_other_clients_orders(
    caplog,
):
    h = Harness(router=shadowed("canary", 50.0))
    foreign = h.foreign_order()
    h.book(399, 400)
    coids = [h.buy(1, 99.0) for _ in range(20)]
    live = {c for c in coids if not h.engine.tracker.get(c).shadow}
    assert 0 < len(live) < 20
    with caplog.at_level(logging.WARNING):
        h.engine.kill_switch("drill")
    # One cancel per live order at the real venue, the shadowed ones at the shadow venue; no
    # venue-wide cancel, so the other client's order still works.
    assert sorted(h.venue.calls) == sorted(("cancel", c) for c in live)
    assert list(h.venue._orders) == [foreign] and h.shadow()._orders == {}
    assert all(h.last_kind(c) == EventKind.CANCELLED for c in coids)
    assert h.engine.trading_state is HALTED
    n = len(live)
    assert any(
        f"KILL SWITCH: 20 open orders of this engine cancelled, one by one ({n} at SIM, "
        f"{20 - n} at SIM:shadow)" in r.getMessage()
        for r in caplog.records
    )


@pytest.mark.parametrize("mode", ["live", "canary", "shadow"])
def test_kill_switch_global_cancel_is_opt_in_and_never_at_a_shadow_venue(mode, caplog):
    risk = RiskConfig(equity=EQUITY, kill_switch_global_cancel=True)
    h = Harness(risk, router=shadowed(mode, 50.0))
    foreign = h.foreign_order()
    h.book(399, 400)
    coids = [h.buy(1, 99.0) for _ in range(4)]
    with caplog.at_level(logging.CRITICAL):
        h.engine.kill_switch("drill")
    assert all(h.last_kind(c) == EventKind.CANCELLED for c in coids)
    if mode == "shadow":  # nothing of ours is at the real venue: it hears nothing
        assert h.venue.calls == [] and foreign in h.venue._orders
    else:
        assert h.venue.calls[-1] == ("cancel_all",) and h.venue._orders == {}
        assert any("global cancel at SIM" in r.getMessage() for r in caplog.records)


def test_kill_switch_halts_and_cancels_the_rest_when_one_cancel_raises(caplog):
    h = Harness()
    h.book(399, 400)
    coids = [h.buy(1, 99.0) for _ in range(3)]
    cancel = h.venue.cancel

    def broken(order) -> None:  # the venue's adapter fails on one order
        if order.client_order_id == coids[1]:
            raise RuntimeError("socket gone")
        cancel(order)

    h.venue.cancel = broken
    with caplog.at_level(logging.ERROR):
        h.engine.kill_switch("drill")
    assert h.engine.trading_state is HALTED
    cancelled, working = EventKind.CANCELLED, EventKind.ACCEPTED
    assert [h.last_kind(c) for c in coids] == [cancelled, working, cancelled]
    assert any(f"the cancel of order {coids[1]} at SIM raised" in r.message for r in caplog.records)
    # Nothing was sent for it: it is not taken for pending, and the next try sends its cancel.
    assert h.engine.tracker.get(coids[1]).state is OrderState.ACCEPTED
    h.venue.cancel = cancel
    assert h.engine.cancel_everything("retry") == 1
    h.engine.pump()
    assert h.last_kind(coids[1]) == cancelled


def test_kill_switch_marks_orders_pending_cancel_until_the_venue_answers():
    h = Harness()
    h.venue._ack_ns = 50_000  # answers after 50 µs
    h.book(399, 400)
    coid = h.buy(1, 99.0)
    h.advance(50_000)
    assert h.engine.tracker.get(coid).state is OrderState.ACCEPTED
    h.engine.kill_switch("drill")
    assert h.engine.tracker.get(coid).state is OrderState.PENDING_CANCEL
    h.advance(50_000)
    assert h.last_kind(coid) == EventKind.CANCELLED


def test_operator_transitions_are_events_with_reasons_and_same_state_is_none():
    h = Harness()
    seen: list[tuple[str, TradingStateChange]] = []
    h.engine.on_state_change = lambda c: seen.append(("hook", c, len(h.strat.changes)))
    h.book(399, 400)
    h.buy(3)
    change = h.engine.set_trading_state(REDUCING, "close out before the news")
    assert (change.old, change.new, change.reason, change.source) == (
        ACTIVE, REDUCING, "close out before the news", "operator",
    )  # fmt: skip
    assert change.ts_ns == h.clock.now()
    # The hook hears of it before the strategies (the journal writes it first).
    assert seen == [("hook", change, 0)] and h.strat.changes == [change]
    assert h.rejected_with(h.buy(1, 99.0), Verdict.REDUCING_ONLY)
    assert h.last_kind(h.sell(2, 101.0)) == EventKind.ACCEPTED
    # Same state: no event, no count.
    assert h.engine.set_trading_state(REDUCING, "again") is None
    assert len(h.strat.changes) == 1 and len(seen) == 1
    assert h.counter("trading_state_changes_total", to="reducing", source="operator") == 1
    h.engine.set_trading_state("HALTED", "lunch")
    h.engine.set_trading_state(ACTIVE, "back")
    assert [c.new for c in h.strat.changes] == [REDUCING, HALTED, ACTIVE]
    with pytest.raises(ValueError, match="expected one of ACTIVE, REDUCING, HALTED"):
        h.engine.set_trading_state("paused", "typo")
    with pytest.raises(ValueError, match="needs a reason"):
        h.engine.set_trading_state(HALTED, "")
    assert h.engine.trading_state is ACTIVE


def test_a_hook_or_strategy_that_raises_does_not_stop_the_transition(caplog):
    h = Harness()

    def broken(change: TradingStateChange) -> None:
        raise RuntimeError("journal down")

    h.engine.on_state_change = broken
    with caplog.at_level(logging.ERROR):
        h.engine.set_trading_state(HALTED, "drill")
    assert h.engine.trading_state is HALTED
    assert len(h.strat.changes) == 1
    assert any("on_state_change hook raised" in r.message for r in caplog.records)


# ---- limits per strategy and per instrument -------------------------------------------------

NEW_CHECKS = [
    # id, strategy limits, instrument limits, qty, verdict
    ("strategy-max-order-qty", {"max_order_qty": 5}, {}, 6, Verdict.MAX_ORDER_QTY),
    # 3 lots x 99.00 x 50 = 14,850
    ("strategy-notional", {"max_order_notional": 14_000}, {}, 3, Verdict.MAX_ORDER_NOTIONAL),
    ("strategy-max-position", {"max_position": 4}, {}, 5, Verdict.MAX_POSITION),
    ("instrument-max-order-qty", {}, {"max_order_qty": 2}, 3, Verdict.MAX_ORDER_QTY),
    ("instrument-max-position", {}, {"max_position": 2}, 3, Verdict.MAX_POSITION),
    ("instrument-concentration", {}, {"max_concentration": 0.01}, 3, Verdict.MAX_CONCENTRATION),
    ("instrument-open-orders", {}, {"max_open_orders": 1}, 1, Verdict.MAX_OPEN_ORDERS),
]


@pytest.mark.parametrize(
    ("strategy", "instrument", "qty", "verdict"),
    [c[1:] for c in NEW_CHECKS],
    ids=[c[0] for c in NEW_CHECKS],
)
def test_per_strategy_and_per_instrument_limits_reject_and_send_nothing(
    strategy, instrument, qty, verdict
):
    risk = RiskConfig(
        equity=EQUITY,
        strategies={"rec": StrategyRiskConfig(**strategy)},
        instruments={"ES": InstrumentRiskConfig(**instrument)},
    )
    h = Harness(risk)
    h.book(399, 400)
    if verdict is Verdict.MAX_OPEN_ORDERS:
        h.buy(1, 98.0)
    received = h.venue.received
    coid = h.buy(qty, 99.0)
    assert h.rejected_with(coid, verdict)
    assert h.venue.received == received
    assert h.engine.risk.rejects[verdict] == 1
    assert h.counter("rejects_total", reason=verdict.name) == 1
    # Another strategy, or another instrument, is not held to these limits.
    other = h.engine.add_strategy(StateRecorder, "other", None, ["ES"])
    coid = other.buy("ES", qty, 99.0)
    h.engine.pump()
    if instrument:  # the instrument's limits hold every strategy
        return
    assert other.kinds(coid) == [EventKind.ACCEPTED]


def test_strategy_rate_limit_from_config():
    risk = RiskConfig(
        equity=EQUITY,
        strategies={"rec": StrategyRiskConfig(order_rate_per_s=1.0, order_burst=2)},
    )
    h = Harness(risk)
    h.book(399, 400)
    assert h.last_kind(h.buy(1, 99.0)) == EventKind.ACCEPTED
    assert h.last_kind(h.buy(1, 99.0)) == EventKind.ACCEPTED
    assert h.rejected_with(h.buy(1, 99.0), Verdict.STRATEGY_RATE)


def test_an_override_for_an_instrument_not_in_the_registry_is_an_error():
    with pytest.raises(ValueError, match=r"risk.instruments.NQ: no instrument 'NQ'"):
        Harness(RiskConfig(equity=EQUITY, instruments={"NQ": InstrumentRiskConfig()}))


def test_the_seed_defaults():
    cfg = RiskConfig()
    assert cfg.max_concentration == 0.2
    assert cfg.max_leverage == 1.0
    b = cfg.breakers
    assert (b.daily_loss_pct, b.reject_rate, b.size_scale, b.scale_minutes) == (5.0, 0.2, 0.5, 30)
    assert (b.concentration_trip, b.concentration_reset) == (0.30, 0.25)
    assert (cfg.daily_reset, cfg.daily_reset_tz) == ("17:00", "America/New_York")
    assert math.isinf(cfg.max_position)


def config(**risk) -> dict:
    return {
        "instruments": [{"symbol": "ES", "venue": "SIM", "tick_size": 0.25}],
        "venues": {"SIM": {"kind": "sim"}},
        "strategies": [
            {
                "name": "maker",
                "class": "engine.strategies.market_maker:MarketMaker",
                "instruments": ["ES"],
            }
        ],
        "risk": risk,
    }


def test_kill_switch_global_cancel_is_off_unless_set_to_true():
    assert RiskConfig().kill_switch_global_cancel is False
    assert parse_config(config(), "t.toml").risk.kill_switch_global_cancel is False
    cfg = parse_config(config(kill_switch_global_cancel=True), "t.toml")
    assert cfg.risk.kill_switch_global_cancel is True
    with pytest.raises(ConfigError) as e:
        parse_config(config(kill_switch_global_cancel="yes"), "t.toml")
    assert e.value.key == "risk.kill_switch_global_cancel"
    assert "expected true or false" in e.value.message


def test_config_reads_strategy_instrument_and_breaker_tables():
    cfg = parse_config(
        config(
            strategies={"maker": {"max_position": 10, "daily_loss_limit": 500}},
            instruments={"ES": {"max_order_qty": 3, "price_collar_pct": 2.0}},
            breakers={"daily_loss_pct": 3.0, "reject_window_s": 30},
            daily_reset="16:30",
        ),
        "t.toml",
    )
    assert cfg.risk.strategies["maker"] == StrategyRiskConfig(max_position=10, daily_loss_limit=500)
    assert cfg.risk.instruments["ES"].max_order_qty == 3
    assert cfg.risk.breakers.daily_loss_pct == 3.0
    assert cfg.risk.daily_reset == "16:30"


@pytest.mark.parametrize(
    ("risk", "key", "message"),
    [
        (
            {"strategies": {"makr": {"max_position": 1}}},
            "risk.strategies.makr",
            "did you mean 'maker'",
        ),
        ({"instruments": {"NQ": {"max_position": 1}}}, "risk.instruments.NQ", "not in"),
        ({"strategies": {"maker": {"max_pos": 1}}}, "risk.strategies.maker.max_pos", "unknown key"),
        ({"instruments": {"ES": {"collar": 1}}}, "risk.instruments.ES.collar", "unknown key"),
        ({"breakers": {"reject_rate": 1.5}}, "risk.breakers.reject_rate", "between 0 and 1"),
        (
            {"breakers": {"concentration_reset": 0.4}},
            "risk.breakers.concentration_reset",
            "below concentration_trip",
        ),
        ({"daily_reset": "5pm"}, "risk.daily_reset", "HH:MM"),
        ({"daily_reset": ""}, "risk.daily_reset", 'a local time "HH:MM", got'),
        ({"daily_reset_tz": "Mars/Olympus"}, "risk.daily_reset_tz", "unknown time zone"),
    ],
)
def test_config_errors_name_the_key(risk, key, message):
    with pytest.raises(ConfigError) as e:
        parse_config(config(**risk), "t.toml")
    assert e.value.key == key
    assert message in e.value.message


# ---- commissions reported after their fills (IB) --------------------------------------------


def test_a_commission_reported_after_its_fill_is_a_fee_everywhere_once():
    h = Harness()
    h.book(399, 400)
    coid = h.buy(2)
    [fill] = h.strat.fills(coid)
    assert fill.commission == 0.0 and h.fees() == (0.0, 0.0, 0.0)
    pnl_before = h.engine.breakers.day_pnl()
    n_events = len(h.strat.events)
    h.commission(coid, fill.exec_id, 30.0)
    assert h.fees() == (30.0, 30.0, 30.0)
    assert h.engine.breakers.day_pnl() == pytest.approx(pnl_before - 30.0)
    assert h.engine.portfolio.position(h.strat.id, h.es.id).commission == 30.0
    h.commission(coid, fill.exec_id, 30.0)  # reported again
    assert h.fees() == (30.0, 30.0, 30.0)
    assert h.engine.portfolio.position(h.strat.id, h.es.id).commission == 30.0
    assert h.counter("oms_duplicate_total") == 1
    assert len(h.strat.events) == n_events  # fees are not order news


def test_a_commission_its_fill_carried_is_not_counted_again():
    h = Harness(venue=SimVenueConfig(commission_per_lot=1.25))
    h.book(399, 400)
    coid = h.buy(2)
    [fill] = h.strat.fills(coid)
    assert fill.commission == 2.5 and h.fees() == (2.5, 2.5, 2.5)
    h.commission(coid, fill.exec_id, 2.5)
    assert h.fees() == (2.5, 2.5, 2.5)
    assert h.engine.portfolio.position(h.strat.id, h.es.id).commission == 2.5


def test_late_commissions_count_against_the_account_daily_loss_limit():
    h = Harness(RiskConfig(equity=EQUITY, daily_loss_limit=1_000.0))
    h.book(399, 400)
    coid = h.buy(1)
    h.commission(coid, h.strat.fills(coid)[0].exec_id, 1_500.0)
    assert h.rejected_with(h.buy(1), Verdict.ACCOUNT_DAILY_LOSS)
    assert h.last_kind(h.sell(1)) == EventKind.FILL  # reducing still passes


def test_late_commissions_trip_the_daily_loss_breaker_at_once():
    h = Harness()
    h.book(399, 400)
    coid = h.buy(1)
    resting = h.sell(1, 110.0)
    h.commission(coid, h.strat.fills(coid)[0].exec_id, 50_000.0)  # 5% of equity in fees
    assert h.engine.trading_state is HALTED and h.engine.state_source == "daily_loss"
    assert h.last_kind(resting) == EventKind.CANCELLED


def test_a_shadow_orders_commission_is_booked_in_the_shadow_portfolio():
    h = Harness(router=shadowed())
    h.book(399, 400)
    coid = h.buy(2)
    assert h.engine.tracker.finished[coid].shadow
    h.commission(coid, h.strat.fills(coid)[0].exec_id, 30.0)
    assert h.engine.shadow_portfolio.position(h.strat.id, h.es.id).commission == 30.0
    assert h.engine.portfolio.position(h.strat.id, h.es.id).commission == 0.0
    assert h.fees() == (30.0, 30.0, 30.0)  # the risk limits see the as-if-live book
