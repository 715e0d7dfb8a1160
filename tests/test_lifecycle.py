"""The engine's lifecycle as strategies and operators meet it: stopping (open orders cancelled
through the risk gate, or logged when they are left working), a strategy whose start fails,
strategy timers, and actions on an instrument the registry does not know.

Everything runs through a real Engine with the simulated venue on a simulated clock, except
``run_app``'s stop (a live clock: the venue answers from the event loop) and the stop against
the IB Gateway simulator.
"""

from __future__ import annotations

import asyncio
import io
import logging
import tomllib
from pathlib import Path

import numpy as np
import pytest
from event_recorder import Recorder

from adapters.sim.venue import SimVenue
from engine.app import build_app, run_app, stop_engine
from engine.clock import Clock, LiveClock, SimClock
from engine.config import RiskConfig, SimVenueConfig, parse_config
from engine.instruments import AssetClass, InstrumentRegistry
from engine.journal import CancelRecord, read_journal
from engine.messages import BOOK_DELTA, BookSide, DeltaAction, EventKind
from engine.orders import OrderState
from engine.risk_gate import Verdict
from engine.runtime import Engine
from tests.ib_venue_support import IBHarness

ROOT = Path(__file__).resolve().parent.parent
START_NS = 1_700_000_000_000_000_000
MS = 1_000_000
A, C = EventKind.ACCEPTED, EventKind.CANCELLED


def make_engine(
    cancel_on_stop: bool = True, clock: Clock | None = None, **venue
) -> tuple[Engine, Clock, SimVenue]:
    registry = InstrumentRegistry()
    registry.add("AAPL", "SIM", AssetClass.STOCK, 0.01)
    registry.add("MSFT", "SIM", AssetClass.STOCK, 0.01)
    clock = clock or SimClock(START_NS)
    sim = SimVenue("SIM", SimVenueConfig(**venue))
    engine = Engine(
        registry, {"SIM": sim}, clock, risk=RiskConfig(equity=1e9), cancel_on_stop=cancel_on_stop
    )
    return engine, clock, sim


def book(engine: Engine, instrument_id: int = 0, bid: int = 9_999, ask: int = 10_001) -> None:
    d = np.zeros(2, dtype=BOOK_DELTA)
    d["instrument_id"] = instrument_id
    d["action"] = DeltaAction.SET
    d["side"] = [BookSide.BID, BookSide.ASK]
    d["price"] = [bid, ask]
    d["size"] = [100, 100]
    engine.deltas.write(d)
    engine.pump()


class Quoter(Recorder):
    """Keeps a bid resting one tick under the touch on every book (a market maker without an
    ``on_stop``, like the sample one)."""

    def on_book(self, book) -> None:
        if not self.open_orders(book.instrument):
            self.buy(book.instrument, 1, book.instrument.from_ticks(book.bid_ticks - 1))


# ---- stop ------------------------------------------------------------------------------------


def test_stop_cancels_every_open_order_through_the_gate_and_mutes_the_strategies():
    engine, clock, sim = make_engine(ack_latency_us=1_000)
    quoter = engine.add_strategy(Quoter, "q", None, ["AAPL", "MSFT"])
    engine.start()
    book(engine, 0)
    book(engine, 1)
    clock.advance_to(clock.now() + MS)
    coids = [o.client_order_id for o in engine.working_orders()]
    assert len(coids) == 2 and all(quoter.kinds(c) == [A] for c in coids)
    orders = engine.router.orders

    left = engine.stop()
    assert sorted(o.client_order_id for o in left) == sorted(coids)  # asked, not answered yet
    assert all(o.state is OrderState.PENDING_CANCEL for o in left)
    assert engine.router.cancels == 2  # one cancel per order, by id, through the router
    clock.advance_to(clock.now() + MS)  # the venue answers
    assert engine.working_orders() == [] and sim._orders == {}
    assert all(engine.tracker.finished[c].state is OrderState.CANCELLED for c in coids)
    # The stopped strategy hears nothing more: no book, no order event, no new quote.
    assert all(quoter.kinds(c) == [A] for c in coids)
    book(engine, 0, 9_990, 9_992)
    assert engine.router.orders == orders and engine.working_orders() == []


def test_stop_lets_on_stop_act_first_and_does_not_cancel_twice():
    class Tidy(Quoter):
        def on_stop(self) -> None:
            self.cancel_all()

    engine, _, sim = make_engine()
    engine.add_strategy(Tidy, "tidy", None, ["AAPL"])
    engine.start()
    book(engine)
    assert len(engine.working_orders()) == 1
    assert engine.stop() == []
    assert engine.router.cancels == 1 and sim._orders == {}


def test_stop_with_cancel_on_stop_off_leaves_the_orders_and_says_which(caplog):
    engine, _, sim = make_engine(cancel_on_stop=False)
    engine.add_strategy(Quoter, "q", None, ["AAPL"])
    engine.start()
    book(engine)
    (order,) = engine.working_orders()
    with caplog.at_level(logging.WARNING):
        left = engine.stop()
    assert left == [order] and order.state is OrderState.ACCEPTED
    assert engine.router.cancels == 0 and len(sim._orders) == 1
    warning = next(r for r in caplog.records if "cancel_on_stop off" in r.getMessage())
    assert warning.levelno == logging.WARNING
    assert f"{order.client_order_id} BUY 1 AAPL.SIM @ 99.98 ACCEPTED at SIM" in warning.getMessage()


def _resting_demo(journal: Path, **engine) -> dict:
    """The demo pipeline (synthetic feed, the sample strategies) with the market maker's quotes
    resting at the SIM venue, which answers 2 ms after a request."""
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    data["metrics"]["enabled"] = False
    data["engine"].update(log_level="WARNING", **engine)
    data["venues"]["SIM"].update(ack_latency_us=2_000, fill_latency_us=2_000)
    data["journal"] = {"path": str(journal), "fsync": "never"}
    return data


async def test_run_app_waits_for_the_cancels_before_the_venues_go(tmp_path, caplog):
    journal = tmp_path / "orders.twj"
    app = build_app(parse_config(_resting_demo(journal), "stop-test.toml"))
    sim = app.engine.venues["SIM"]
    working: list[int] = []
    stop = app.engine.stop

    def stop_and_look():
        working.extend(o.client_order_id for o in app.engine.working_orders())
        return stop()

    app.engine.stop = stop_and_look  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="engine.app"):
        await run_app(app, 0.5, io.StringIO())
    assert working, "the market maker must have quotes resting when the run stops"
    assert app.engine.working_orders() == [] and sim._orders == {}
    assert "every open order is cancelled" in caplog.text
    # Each cancel went through the journal like any other, and its answer came back before the
    # journal closed.
    records = read_journal(journal).records
    cancelled = {r.client_order_id for r in records if isinstance(r, CancelRecord)}
    assert set(working) <= cancelled
    assert all(app.engine.tracker.finished[c].state is not OrderState.ACCEPTED for c in working)


async def test_run_app_names_the_orders_its_cancels_did_not_close_in_time(tmp_path, caplog):
    data = _resting_demo(tmp_path / "orders.twj", stop_cancel_timeout_s=0.0)
    app = build_app(parse_config(data, "stop-test.toml"))
    with caplog.at_level(logging.ERROR, logger="engine.app"):
        await run_app(app, 0.5, io.StringIO())
    (error,) = [r for r in caplog.records if "still open at the venues" in r.getMessage()]
    assert (
        "stop_cancel_timeout_s" in error.getMessage()
        and "PENDING_CANCEL at SIM" in error.getMessage()
    )


async def test_a_second_signal_stops_the_wait_for_the_cancels(caplog):
    """``run_app`` sets ``hurry`` on a second SIGINT/SIGTERM: the wait ends at once, and what
    is still open is named."""
    clock = LiveClock(asyncio.get_running_loop())  # the venue answers from the event loop
    engine, _, _ = make_engine(clock=clock, ack_latency_us=1_000_000)
    engine.add_strategy(Quoter, "q", None, ["AAPL"])
    engine.start()
    book(engine)
    assert len(engine.working_orders()) == 1  # sent; its answer takes a second
    hurry = asyncio.Event()
    hurry.set()
    with caplog.at_level(logging.ERROR, logger="engine.app"):
        left = await stop_engine(engine, 60.0, hurry)
    assert len(left) == 1 and left[0].state is OrderState.PENDING_CANCEL  # not answered yet
    assert "1 orders still open" in caplog.text


async def test_stop_cancels_a_resting_order_at_ib():
    async with IBHarness() as h:
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 5, round(h.mid("AAPL") * 0.97, 2))
        await h.wait_kind(coid, A)
        assert h.sim_order(coid).status in ("Submitted", "PreSubmitted")
        left = await stop_engine(h.engine, 5.0)
        assert left == []
        assert h.sim_order(coid).status == "Cancelled"
        assert h.engine.tracker.finished[coid].state is OrderState.CANCELLED
        assert h.venue.connected  # answered before the venue disconnects


# ---- a strategy whose start fails ------------------------------------------------------------


class HalfBuilt(Recorder):
    """Sends an order and sets a timer in ``on_start``, then fails before it is set up; every
    later callback would fail on what ``on_start`` never made."""

    def on_start(self) -> None:
        self.buy("AAPL", 1, 99.90)
        self.set_timer("tick", 0.001)
        raise ValueError("fast must be below slow")

    def on_book(self, book) -> None:
        self.window.append(book.mid_ticks)  # never made

    def on_timer(self, name: str) -> None:
        self.window.append(name)

    def on_trading_state(self, change) -> None:
        self.window.append(change)

    def on_stop(self) -> None:
        self.window.clear()


def test_a_strategy_whose_on_start_raises_is_disabled_and_its_orders_cancelled(caplog):
    engine, clock, sim = make_engine()
    broken = engine.add_strategy(HalfBuilt, "broken", None, ["AAPL"])
    good = engine.add_strategy(Quoter, "good", None, ["AAPL"])
    with caplog.at_level(logging.ERROR):
        engine.start()
    assert broken.disabled == "on_start raised ValueError: fast must be below slow"
    disabled = [r for r in caplog.records if "is disabled" in r.getMessage()]
    assert len(disabled) == 1 and disabled[0].levelno == logging.ERROR
    assert "'broken'" in disabled[0].getMessage() and "1 open orders" in disabled[0].getMessage()
    # Its order was sent, then cancelled at the venue through the gate.
    (coid,) = [c for c, o in engine.tracker.finished.items() if o.strategy_id == broken.id]
    assert engine.tracker.finished[coid].state is OrderState.CANCELLED
    assert engine.router.cancels == 1

    # No callback reaches it: book, order events, timers, trading states, stop.
    caplog.clear()
    book(engine)
    clock.advance_to(clock.now() + 10 * MS)
    engine.set_trading_state("reducing", "test", "operator")
    engine.stop()
    assert broken.events == [] and engine.book_actor.callback_errors == 0
    assert "raised" not in caplog.text
    # The engine and the other strategy went on: its quote worked until the stop.
    assert [e.kind for e in good.events] == [A]
    assert engine.tracker.finished[good.events[0].client_order_id].state is OrderState.CANCELLED
    assert sim._orders == {}


# ---- timers ----------------------------------------------------------------------------------


class Ticker(Recorder):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.fired: list[tuple[str, int]] = []

    def on_timer(self, name: str) -> None:
        self.fired.append((name, self.now() - START_NS))


def test_a_timer_can_be_cancelled_and_setting_a_name_again_replaces_it():
    engine, clock, _ = make_engine()
    s = engine.add_strategy(Ticker, "t", None, ["AAPL"])
    engine.start()
    s.set_timer("a", 0.010)
    s.set_timer("b", 0.010)
    s.set_timer("b", 0.025)  # replaces the 10 ms one: one timer named b
    s.set_timer("once", 0.015, repeat=False)
    clock.advance_to(START_NS + 30 * MS)
    assert s.fired == [("a", 10 * MS), ("once", 15 * MS), ("a", 20 * MS), ("b", 25 * MS),
                       ("a", 30 * MS)]  # fmt: skip
    assert s.cancel_timer("a") is True
    assert s.cancel_timer("once") is False  # it fired: nothing left to cancel
    assert s.cancel_timer("never") is False
    clock.advance_to(START_NS + 60 * MS)
    assert [f for f in s.fired if f[1] > 30 * MS] == [("b", 50 * MS)]
    assert sorted(name for _, name in engine._timers) == ["b"]


@pytest.mark.parametrize("interval", [0, -1.0, float("nan"), float("inf")])
def test_a_timer_interval_must_be_a_finite_number_of_seconds_above_zero(interval):
    engine, clock, _ = make_engine()
    s = engine.add_strategy(Ticker, "t", None, ["AAPL"])
    engine.start()
    with pytest.raises(ValueError, match=r"timer 'spin': interval_s must be a finite number"):
        s.set_timer("spin", interval)
    assert engine._timers == {}
    # A simulated clock moves on (an interval of 0 used to fire forever at one instant).
    assert clock.advance_to(START_NS + MS) == 0


def test_an_interval_below_a_nanosecond_still_moves_the_clock():
    engine, clock, _ = make_engine()
    s = engine.add_strategy(Ticker, "t", None, ["AAPL"])
    engine.start()
    s.set_timer("fast", 1e-12)
    clock.advance_to(START_NS + 10)
    assert len(s.fired) == 10


# ---- an instrument the registry does not know ------------------------------------------------


def test_an_order_for_an_unknown_symbol_is_rejected_like_an_unknown_id(caplog):
    engine, _, _ = make_engine()
    s = engine.add_strategy(Recorder, "rec", None, ["AAPL"])
    engine.start()
    book(engine)
    with caplog.at_level(logging.ERROR):
        by_id = s.buy(99, 1, 1.0)
        by_name = s.buy("AAPLX", 1, 1.0)
        again = s.sell("AAPLX", 2, 1.0, transmit=True)  # with options: the extended path
        entry, take, stop = s.bracket("AAPLX.SIM", 1, 1, 1.0, 1.1, 0.9)
    engine.pump()
    unknown = int(Verdict.UNKNOWN_INSTRUMENT)
    for coid in (by_id, by_name, again, entry):
        (ev,) = s.of(coid)
        assert (ev.kind, ev.reason_code) == (EventKind.REJECTED, unknown), ev.reason
        assert ev.reason.startswith("UNKNOWN_INSTRUMENT:")
    for leg in (take, stop):  # refused with their parent
        assert s.kinds(leg) == [EventKind.REJECTED] and "was refused" in s.of(leg)[0].reason
    # Each unknown name is logged once, with what the registry holds.
    lines = [r.getMessage() for r in caplog.records if "UNKNOWN_INSTRUMENT" in r.getMessage()]
    assert len(lines) == 2 and "'AAPLX'" in lines[0] and "AAPL.SIM, MSFT.SIM" in lines[0]
    assert engine.router.orders == 0
