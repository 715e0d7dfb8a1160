"""The whole pipeline, driven synchronously: feed -> book -> strategies -> risk -> router -> venue.

Acceptance checks of the foundation: steady-state memory, order events never dropped, order
commands ahead of market data, and an end-to-end run whose positions match the venue's fills.
"""

from __future__ import annotations

import gc
import logging
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from adapters.sim.venue import SimVenue
from engine.app import build_app
from engine.clock import SimClock
from engine.config import (
    RingsConfig,
    RiskConfig,
    SimVenueConfig,
    parse_config,
)
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import BOOK_DELTA, BookSide, DeltaAction, EventKind
from engine.risk_gate import TradingState, Verdict
from engine.runtime import Engine
from engine.strategy import Strategy

ROOT = Path(__file__).resolve().parent.parent


class Recorder(Strategy):
    """Records what it is told, copying fields out of the reused event slots."""

    def on_start(self) -> None:
        self.log: list[tuple] = []

    def on_book(self, book) -> None:
        self.log.append(("book", book.instrument.id))

    def on_order(self, event) -> None:
        self.log.append((EventKind(event.kind).name, event.client_order_id, event.reason_code))

    def on_fill(self, fill) -> None:
        self.log.append(("FILL", fill.client_order_id, fill.fill_lots, fill.fill_price_ticks))

    def on_timer(self, name: str) -> None:
        self.log.append(("timer", name, self.now()))


def make_engine(rings: RingsConfig | None = None, **venue_kw) -> tuple[Engine, SimClock]:
    registry = InstrumentRegistry()
    registry.add("AAPL", "SIM", AssetClass.STOCK, 0.01)
    registry.add("MSFT", "SIM", AssetClass.STOCK, 0.01)
    clock = SimClock(1_700_000_000_000_000_000)
    venue = SimVenue("SIM", SimVenueConfig(**venue_kw))
    engine = Engine(registry, {"SIM": venue}, clock, rings=rings, risk=RiskConfig(equity=1e9))
    return engine, clock


def deltas(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(instrument, side, ticks, lots) -> SET deltas."""
    d = np.zeros(len(rows), dtype=BOOK_DELTA)
    for k, (i, side, ticks, lots) in enumerate(rows):
        d[k]["instrument_id"] = i
        d[k]["side"] = side
        d[k]["price"] = ticks
        d[k]["size"] = lots
        d[k]["action"] = DeltaAction.SET
    return d


def demo_like_config(**overrides) -> dict:
    """The shipped demo config, with the venue answering at once (no event loop needed)."""
    import tomllib

    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    data["venues"]["SIM"]["ack_latency_us"] = 0
    data["venues"]["SIM"]["fill_latency_us"] = 0
    data["metrics"]["enabled"] = False
    for k, v in overrides.items():
        data[k] = v
    return data


def test_steady_state_memory_does_not_grow_with_message_count():
    config = parse_config(demo_like_config(), "demo-test.toml")
    app = build_app(config, SimClock(1_700_000_000_000_000_000))
    engine, feed = app.engine, app.feed
    engine.tracker._history = 256  # a short order history reaches its bound during warm-up
    engine.start()
    feed.publish_snapshot(engine)
    # Pre-generate the market data so the test measures the pipeline, not the generator.
    batches = [feed.generate(100, 0) for _ in range(1000)]

    def pump(k: int) -> None:
        for d, t in batches[k * 500 : (k + 1) * 500]:
            engine.deltas.write(d)
            engine.trades.write(t)
            engine.pump()

    # Trace from the start, so objects that merely replace older ones in reused slots and
    # bounded histories do not look like growth.
    tracemalloc.start()
    try:
        for _ in range(4):  # warm-up: ~400k updates, orders flowing, histories at their bounds
            pump(0)
            pump(1)
        orders_before = engine.router.orders
        gc.collect()
        mid = tracemalloc.get_traced_memory()[0]
        pump(0)  # ~50k messages
        pump(1)  # ~50k more
        gc.collect()
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    messages = sum(len(d) for d, _ in batches)
    assert messages >= 100_000
    assert engine.router.orders > orders_before, "strategies must be trading during the test"
    assert engine.fills > 0
    # Growth over 100k messages: well under one byte per message.
    assert end - mid < 32 * 1024, f"grew {end - mid} bytes over {messages} messages"


def test_full_order_event_ring_halts_trading_and_loses_nothing(caplog):
    engine, _ = make_engine(RingsConfig(order_events=8))
    s = engine.add_strategy(Recorder, "rec", None, ["AAPL"])
    engine.start()
    coids = [s.buy("AAPL", 1, 100.0 + k / 100) for k in range(20)]
    with caplog.at_level(logging.CRITICAL):
        # Route without pumping: the venue acknowledges 20 orders into an 8-slot ring.
        engine.flush_intents()
    assert engine.trading_state is TradingState.HALTED
    assert "order_events" in engine.halt_reason and "capacity 8" in engine.halt_reason
    assert "No message was dropped" in engine.halt_reason
    assert any(
        r.levelno == logging.CRITICAL and "order_events" in r.message for r in caplog.records
    )
    engine.pump()
    # The 9th acknowledgement overflowed the ring and halted trading, so the risk gate refused
    # the 11 orders behind it; all 20 answers arrive, once each, in order.
    answers = [(e[0], e[1]) for e in s.log if e[0] in ("ACCEPTED", "REJECTED")]
    assert answers == [("ACCEPTED", c) for c in coids[:9]] + [("REJECTED", c) for c in coids[9:]]
    assert engine.events.spilled == 12  # everything past the 8th slot went through overflow
    assert len(engine.events) == 0
    # New orders are refused while halted; cancels still go out.
    refused = s.buy("AAPL", 1, 99.0)
    s.cancel(coids[0])
    engine.pump()
    assert ("REJECTED", refused, int(Verdict.TRADING_HALTED)) in s.log
    assert ("CANCELLED", coids[0], 0) in s.log


def test_cancel_is_handled_before_a_burst_of_market_data():
    engine, _ = make_engine(RingsConfig(market_data=16384))
    s = engine.add_strategy(Recorder, "rec", None, ["AAPL"])
    engine.start()
    coid = s.buy("AAPL", 1, 100.0)
    engine.pump()
    assert ("ACCEPTED", coid, 0) in s.log
    venue = engine.venues["SIM"]
    seen_updates_at_cancel = []
    real_cancel = venue.cancel

    def spy(order):
        seen_updates_at_cancel.append(engine.book_actor.updates)
        real_cancel(order)

    venue.cancel = spy
    s.log.clear()
    burst = deltas([(0, k % 2, 10_000 + (k % 50) * (1 if k % 2 else -1), 5) for k in range(10_000)])
    assert engine.deltas.write(burst) == 10_000
    s.cancel(coid)  # queued after the burst
    engine.pump()
    assert seen_updates_at_cancel == [0], "the cancel reached the venue before any market data"
    assert s.log[0] == ("CANCELLED", coid, 0), "the strategy hears of it before any book update"
    assert engine.book_actor.updates == 10_000
    assert any(e[0] == "book" for e in s.log)


def test_end_to_end_positions_match_venue_fills():
    config = parse_config(demo_like_config(), "demo-test.toml")
    app = build_app(config, SimClock(1_700_000_000_000_000_000))
    engine, feed = app.engine, app.feed
    fills_by_key: dict[tuple[int, int], int] = {}
    real = engine._on_event

    def watch(ev):
        if ev.kind == EventKind.FILL:
            key = (ev.strategy_id, ev.instrument_id)
            fills_by_key[key] = fills_by_key.get(key, 0) + ev.fill_lots * ev.side
        real(ev)

    engine.scheduler._lanes[1].drain = lambda n: engine.events.drain(watch, n)
    engine.start()
    feed.publish_snapshot(engine)
    for _ in range(400):
        feed.publish(engine, 100)
    engine.stop()
    venue = engine.venues["SIM"]
    assert engine.router.orders > 10
    assert engine.fills > 10
    assert venue.received == engine.router.orders
    assert engine.tracker.illegal == 0
    for (sid, iid), lots in fills_by_key.items():
        assert engine.portfolio.position(sid, iid).lots == lots
    names = {s.name for s in engine.strategies}
    assert names == {"sma", "mm"}


def test_timers_run_on_the_simulated_clock():
    engine, clock = make_engine()
    s = engine.add_strategy(Recorder, "rec", None, ["AAPL"])
    engine.start()
    s.set_timer("tick", 0.5)
    t0 = clock.now()
    clock.advance_to(t0 + 1_600_000_000)
    fired = [e for e in s.log if e[0] == "timer"]
    assert [e[2] - t0 for e in fired] == [500_000_000, 1_000_000_000, 1_500_000_000]
    engine.stop()
    clock.advance_to(t0 + 5_000_000_000)
    assert len([e for e in s.log if e[0] == "timer"]) == 3


def test_fired_timers_leave_no_garbage_for_the_collector():
    """A timer is freed by reference counting once it has fired: a collector pass (a stall at a
    random moment in a session) has nothing of it to find."""
    engine, clock = make_engine()
    s = engine.add_strategy(Recorder, "rec", None, ["AAPL"])
    engine.start()
    t0 = clock.now()
    gc.collect()
    gc.disable()
    try:
        for k in range(50):
            s.set_timer(f"once{k}", 0.001 * (k + 1), repeat=False)
        s.set_timer("every", 0.01)
        clock.advance_to(t0 + 100_000_000)  # the repeating one is armed again: still reachable
        left = gc.collect()
    finally:
        gc.enable()
    assert len([e for e in s.log if e[0] == "timer"]) == 50 + 10
    assert left == 0, f"{left} objects were only reachable through reference cycles"
    # Only the armed repeating timer is kept: fired one-shots and past armings are not.
    assert [t.name for t in engine._timers.values()] == ["every"]
    clock.advance_to(t0 + 10_100_000_000)  # 1,000 more firings
    assert len(engine._timers) == 1
    engine.stop()
    assert not engine._timers
    fired = len(s.log)
    clock.advance_to(t0 + 20_000_000_000)
    assert len(s.log) == fired  # stopping cancelled it


def test_strategy_exception_does_not_stop_the_engine(caplog):
    class Broken(Recorder):
        def on_book(self, book):
            raise RuntimeError("boom")

    engine, _ = make_engine()
    broken = engine.add_strategy(Broken, "broken", None, ["AAPL"])
    good = engine.add_strategy(Recorder, "good", None, ["AAPL"])
    engine.start()
    engine.deltas.write(deltas([(0, BookSide.BID, 9_999, 5), (0, BookSide.ASK, 10_001, 5)]))
    with caplog.at_level(logging.ERROR):
        engine.pump()
    assert engine.book_actor.callback_errors == 1
    assert ("book", 0) in good.log
    assert "broken" in caplog.text and "on_book" in caplog.text
    assert broken.log == []


def test_buy_and_sell_fill_against_the_book_and_update_position():
    engine, _ = make_engine()
    s = engine.add_strategy(Recorder, "rec", None, ["AAPL"])
    engine.start()
    engine.deltas.write(
        deltas([(0, BookSide.BID, 9_999, 100), (0, BookSide.ASK, 10_001, 50), (0, 1, 10_002, 50)])
    )
    engine.pump()
    s.buy("AAPL", 70)
    engine.pump()
    assert s.position("AAPL") == 70
    fills = [e for e in s.log if e[0] == "FILL"]
    assert [(f[2], f[3]) for f in fills] == [(50, 10_001), (20, 10_002)]
    s.sell("AAPL", 70, 99.99)
    engine.pump()
    assert s.position("AAPL") == 0
    pnl = s.pnl()
    assert pnl.realised == pytest.approx((9_999 - (50 * 10_001 + 20 * 10_002) / 70) * 70 * 0.01)


async def test_start_up_objects_are_frozen_before_trading_starts() -> None:
    """``run_app`` freezes what start-up built before the strategies start, so no full
    collection walks it mid-session (the engine itself included)."""
    import io

    from engine.app import run_app

    data = demo_like_config()
    data["venues"]["SIM"]["ack_latency_us"] = 50
    app = build_app(parse_config(data, "demo-test.toml"))
    seen: list[tuple[int, bool]] = []
    start = app.engine.start

    def start_and_look() -> None:
        tracked = {id(o) for o in gc.get_objects()}  # frozen objects are not listed
        seen.append((gc.get_freeze_count(), id(app.engine) in tracked))
        start()

    app.engine.start = start_and_look  # type: ignore[method-assign]
    gc.unfreeze()
    try:
        report = await run_app(app, 0.2, io.StringIO())
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
    assert seen and seen[0][0] > 10_000 and not seen[0][1]
    assert report.orders > 0  # and it traded as before


def test_a_strategy_whose_on_fill_raises_is_named_and_keeps_its_fill(caplog):
    class Broken(Recorder):
        def on_fill(self, fill):
            raise RuntimeError("boom")

    engine, _ = make_engine()
    broken = engine.add_strategy(Broken, "broken", None, ["AAPL"])
    good = engine.add_strategy(Recorder, "good", None, ["AAPL"])
    engine.start()
    engine.deltas.write(deltas([(0, BookSide.BID, 9_999, 100), (0, BookSide.ASK, 10_001, 100)]))
    engine.pump()
    with caplog.at_level(logging.ERROR):
        coid = broken.buy("AAPL", 10)
        good.buy("AAPL", 5)
        engine.pump()
    assert broken.position("AAPL") == 10  # the fill is booked before the strategy is told
    assert good.position("AAPL") == 5
    assert ("FILL", coid + 1, 5, 10_001) in good.log
    assert engine.book_actor.callback_errors == 1
    assert f"strategy 'broken': on_fill raised on FILL of order {coid}" in caplog.text


def test_pnl_with_a_one_sided_book_marks_to_the_last_mid_the_book_had():
    """The mark while a side is empty is the book's last mid, whether or not anyone read P&L
    while the book had it."""
    engine, _ = make_engine()
    s = engine.add_strategy(Recorder, "rec", None, ["AAPL"])
    engine.start()
    engine.deltas.write(deltas([(0, BookSide.BID, 9_999, 100), (0, BookSide.ASK, 10_001, 100)]))
    engine.pump()
    s.buy("AAPL", 10)
    engine.pump()
    assert s.pnl().unrealised == pytest.approx(-0.1)  # bought at the ask, marked at the mid
    engine.deltas.write(
        deltas([
            (0, BookSide.BID, 9_999, 0), (0, BookSide.ASK, 10_001, 0),
            (0, BookSide.BID, 10_999, 100), (0, BookSide.ASK, 11_001, 100),
        ])
    )  # fmt: skip
    engine.pump()  # the market rallies to 110.00; nobody reads P&L
    engine.deltas.write(deltas([(0, BookSide.ASK, 11_001, 0)]))  # the ask side empties
    engine.pump()
    assert s.pnl().unrealised == pytest.approx((11_000 - 10_001) * 10 * 0.01)
    assert engine.portfolio.snapshot().unrealised == pytest.approx(99.9)
