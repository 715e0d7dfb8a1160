"""Recovery from the journal, in-process: the demo pipeline trades with a journal, a second
engine is built from the same config and journal, and must come back to the same orders,
positions, P&L and risk state (the SIGKILL runs against the gateway simulator are in
``test_crash_recovery``)."""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import uvloop

from engine.app import build_app, run_app
from engine.clock import LiveClock, SimClock
from engine.config import ConfigError, parse_config
from engine.journal import ModifyRecord, OrderRecord, StateRecord, read_journal
from engine.messages import BOOK_DELTA, BookSide, DeltaAction, EventKind, OrderType
from engine.orders import OrderState
from engine.risk_gate import TradingState, Verdict
from engine.runtime import LOST_WITH_PROCESS
from hotpath import risk as rk

ROOT = Path(__file__).resolve().parent.parent


def _config(journal: Path) -> dict:
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    data["metrics"]["enabled"] = False
    data["engine"]["log_level"] = "WARNING"
    # Stopped with its quotes working, as a killed engine would leave them: the restart finds
    # orders lost with the in-process venue.
    data["engine"]["cancel_on_stop"] = False
    data["journal"] = {"path": str(journal), "fsync": "batch"}
    return data


def _trade(data: dict, seconds: float, halt: bool = False):
    async def main():
        app = build_app(parse_config(data, "recovery-test"), LiveClock())

        async def halt_later():
            await asyncio.sleep(seconds / 2)
            app.engine.kill_switch("test: operator pulled the plug")

        task = asyncio.get_running_loop().create_task(halt_later()) if halt else None
        await run_app(app, seconds, io.StringIO())
        if task is not None:
            await task
        return app

    return uvloop.run(main())


def _positions(portfolio) -> dict:
    return {
        key: (p.lots, round(p.avg_ticks, 6), round(p.realised, 6), round(p.commission, 6))
        for key, p in portfolio.positions().items()
        if p.lots or p.fills
    }


def test_a_restart_rebuilds_orders_positions_pnl_and_risk_state(tmp_path):
    journal = tmp_path / "orders.twj"
    data = _config(journal)
    first = _trade(data, 1.5).engine
    assert first.router.orders > 20 and first.fills > 10, "the demo must trade for this test"
    coids = [r.client_order_id for r in read_journal(journal).records if isinstance(r, OrderRecord)]

    second = build_app(parse_config(data, "recovery-test"), LiveClock())
    engine, report = second.engine, second.recovery
    assert report is not None and report.orders == len(coids)
    assert _positions(engine.portfolio) == _positions(first.portfolio)
    realised, _, fees = engine.portfolio.pnl()  # unrealised waits for the first book
    assert (realised, fees) == pytest.approx(first.portfolio.pnl()[::2], abs=1e-6)

    # Finished orders come back as they ended; orders open at the in-process simulated venue
    # died with it and are reported cancelled, with that reason.
    before = {**first.tracker.finished, **first.tracker.open}
    for coid, old in before.items():
        new = engine.tracker.get(coid) or engine.tracker.finished.get(coid)
        assert new is not None, f"order {coid} not rebuilt"
        assert new.filled_lots == old.filled_lots
        if old.is_open:
            assert new.state is OrderState.CANCELLED and "lost in the restart" in new.reason
        else:
            assert new.state is old.state
    assert first.tracker.open and len(report.lost) == len(first.tracker.open)
    lost_events = [
        r
        for r in read_journal(journal).records
        if getattr(r, "reason_code", 0) == LOST_WITH_PROCESS
    ]
    assert len(lost_events) == len(first.tracker.open), "the lost orders' cancels are journaled"

    # The risk kernels hold the same positions and P&L, and nothing working.
    a, b = first.risk.arrays, engine.risk.arrays
    for col in (rk.PS_LOTS, rk.PS_REALISED, rk.PS_FEES):
        np.testing.assert_allclose(b.pst[:, :, col], a.pst[:, :, col], atol=1e-6)
    np.testing.assert_allclose(b.ist[:, rk.IS_NET_LOTS], a.ist[:, rk.IS_NET_LOTS])
    assert not b.ist[:, rk.IS_OPEN_BUY].any() and not b.ist[:, rk.IS_OPEN_SELL].any()

    # Client order ids continue above every journaled one.
    assert engine.tracker.next_id() > max(coids)
    engine.close_journal()


def test_a_halted_engine_comes_back_halted(tmp_path, caplog):
    journal = tmp_path / "orders.twj"
    data = _config(journal)
    first = _trade(data, 1.0, halt=True).engine
    assert first.trading_state is TradingState.HALTED
    states = [r for r in read_journal(journal).records if isinstance(r, StateRecord)]
    assert states and states[-1].state == "halted" and "kill_switch" in states[-1].reason

    told: list[tuple[str, str]] = []  # (strategy, what it heard), in order

    def noting(name: str, what: str, fn):
        def noted(*args):
            told.append((name, what))
            return fn(*args)

        return noted

    with caplog.at_level(logging.ERROR):
        second = build_app(parse_config(data, "recovery-test"), SimClock(time.time_ns()))
        for s in second.engine.strategies:
            s.on_start = noting(s.name, "start", s.on_start)
            s.on_trading_state = noting(s.name, "state", s.on_trading_state)
        assert second.engine.trading_state is TradingState.HALTED
        assert second.recovery.trading_state == "halted"
        # The state restored before the start is not told as a change (the market maker
        # sample raised in on_trading_state before its on_start): on_start reads it.
        second.engine.start()
        assert sorted(told) == [("mm", "start"), ("sma", "start")]
        # A breaker may not lift it; the operator may, and the strategies hear of that.
        assert second.engine.set_trading_state("active", "breaker", source="daily_loss") is None
        assert second.engine.set_trading_state("active", "checked: resume", "operator") is not None
        assert sorted(told[2:]) == [("mm", "state"), ("sma", "state")]
        second.engine.stop()
    assert not [r for r in caplog.records if "raised" in r.getMessage()], caplog.text
    assert not any(s.disabled for s in second.engine.strategies)
    second.engine.close_journal()


def test_a_torn_last_record_is_skipped_with_a_warning(tmp_path, caplog):
    journal = tmp_path / "orders.twj"
    data = _config(journal)
    first = _trade(data, 0.8).engine
    size = journal.stat().st_size
    with journal.open("r+b") as f:
        f.truncate(size - 3)  # the process died in the middle of its last write
    with caplog.at_level(logging.WARNING):
        second = build_app(parse_config(data, "recovery-test"), LiveClock())
    assert second.recovery.torn_bytes > 0
    assert "torn" in caplog.text
    assert second.recovery.orders >= first.router.orders - 1
    second.engine.close_journal()


def test_a_journal_damaged_in_the_middle_stops_the_start(tmp_path):
    journal = tmp_path / "orders.twj"
    data = _config(journal)
    _trade(data, 0.8)
    raw = bytearray(journal.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    journal.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match=r"journal\.path"):
        build_app(parse_config(data, "recovery-test"), LiveClock())


# ---- the trading day across a restart --------------------------------------------------------

# Tuesday 14 November 2023, 15:00 in New York (EST, UTC-5): the day rolls at 17:00 (22:00 UTC).
DAY1_1500 = int(datetime(2023, 11, 14, 20, 0, tzinfo=UTC).timestamp()) * 10**9
HOUR = 3600 * 10**9
DAY2_1000 = DAY1_1500 + 19 * HOUR  # Wednesday 10:00 New York: after the roll
DAY1_1600 = DAY1_1500 + HOUR  # the same trading day


def _day_config(journal: Path, **risk) -> dict:
    """The demo's instruments and limits, one recording strategy on AAPL, no feed; the SIM
    venue answers at once and charges nothing."""
    data = _config(journal)
    data.pop("feed")
    data["journal"]["fsync"] = "never"
    data["venues"]["SIM"].update(ack_latency_us=0, fill_latency_us=0, commission_per_lot=0)
    data["strategies"] = [
        {"name": "rec", "class": "event_recorder:Recorder", "instruments": ["AAPL"]}
    ]
    data["risk"].update(risk)
    return data


def _book(engine, bid: int, ask: int) -> None:
    """AAPL's top at ``bid``/``ask`` ticks, the previous top removed."""
    old_bid, _, old_ask, _ = engine.books.tops[0]
    rows = [(BookSide.BID, bid, 1000), (BookSide.ASK, ask, 1000)]
    if old_bid > 0:
        rows = [(BookSide.BID, old_bid, 0), (BookSide.ASK, old_ask, 0), *rows]
    d = np.zeros(len(rows), dtype=BOOK_DELTA)
    d["instrument_id"] = 0
    d["action"] = DeltaAction.SET
    d["side"] = [side for side, _, _ in rows]
    d["price"] = [price for _, price, _ in rows]
    d["size"] = [size for _, _, size in rows]
    engine.deltas.write(d)
    engine.pump()


def _start(data: dict, now_ns: int):
    app = build_app(parse_config(data, "day-test.toml"), SimClock(now_ns))
    app.engine.start()
    return app


def _lose_two(data: dict) -> Path:
    """Day 1, 15:00 New York: buy 100 AAPL at 190.01, the market drops a tick, sell 100 at
    189.99: realised -2.00. Returns the journal, closed."""
    app = _start(data, DAY1_1500)
    e, s = app.engine, app.engine.strategies[0]
    _book(e, 19_000, 19_001)
    s.buy("AAPL", 100)
    e.pump()
    _book(e, 18_999, 19_000)
    s.sell("AAPL", 100)
    e.pump()
    assert e.portfolio.pnl()[0] == pytest.approx(-2.0)
    e.stop()
    e.close_journal()
    return Path(data["journal"]["path"])


def _first_order(app):
    """The restarted engine's first order (a limit buy of 1 AAPL below the touch): the gate's
    answer to it."""
    e, s = app.engine, app.engine.strategies[0]
    _book(e, 19_000, 19_001)
    coid = s.buy("AAPL", 1, 189.90)
    e.pump()
    return s.of(coid)[0]


def test_a_restart_on_a_new_trading_day_does_not_count_yesterdays_pnl_as_todays(tmp_path):
    data = _day_config(tmp_path / "orders.twj", daily_loss_limit=1.0)
    journal = _lose_two(data)
    same_day = tmp_path / "same-day.twj"
    shutil.copy(journal, same_day)

    # Next morning: yesterday's fills make the position (flat) and the total P&L, not today's.
    app = _start(data, DAY2_1000)
    e, report = app.engine, app.recovery
    gst = e.risk.arrays.gst
    assert (gst[rk.GS_REALISED], gst[rk.GS_UNREAL], gst[rk.GS_FEES]) == (0.0, 0.0, 0.0)
    assert gst[rk.GS_EQUITY_SOD] == pytest.approx(data["risk"]["equity"] - 2.0)  # carried
    assert e.portfolio.day_pnl() == 0.0 and e.shadow_portfolio.day_pnl() == 0.0
    assert e.portfolio.pnl()[0] == pytest.approx(-2.0)  # lifetime realised is kept
    assert e.portfolio.position(0, 0).lots == 0 and e.portfolio.position(0, 0).fills == 2
    roll = DAY1_1500 + 2 * HOUR  # 17:00 New York on day 1
    assert (report.day_rolls, report.day_started_ns) == (1, roll)
    assert e.portfolio.day_started_ns == roll
    assert "trading day since 2023-11-14 22:00 UTC" in report.format()
    assert _first_order(app).kind == EventKind.ACCEPTED
    e.close_journal()

    # The same trading day: today's loss still counts, and the daily loss limit holds.
    data["journal"]["path"] = str(same_day)
    app = _start(data, DAY1_1600)
    gst = app.engine.risk.arrays.gst
    assert gst[rk.GS_REALISED] == pytest.approx(-2.0)
    assert app.engine.portfolio.day_pnl() == pytest.approx(-2.0)
    assert app.recovery.day_rolls == 0
    ev = _first_order(app)
    assert (ev.kind, ev.reason_code) == (EventKind.REJECTED, int(Verdict.ACCOUNT_DAILY_LOSS))
    app.engine.close_journal()


def test_day_trades_of_days_before_a_restart_leave_the_window_as_the_days_roll(tmp_path):
    """Pattern day trading counts day trades over five days: a restart replays the rolls
    between the journal's fills, so days that left the window no longer count."""
    data = _day_config(tmp_path / "orders.twj", pdt_max_day_trades=3)
    journal = _lose_two(data)  # a round trip in one day: one day trade
    for later, counted in ((DAY2_1000, 1.0), (DAY1_1500 + 5 * 24 * HOUR, 0.0)):
        copy = tmp_path / f"at-{later}.twj"
        shutil.copy(journal, copy)
        data["journal"]["path"] = str(copy)
        app = build_app(parse_config(data, "day-test.toml"), SimClock(later))
        assert app.engine.risk.arrays.gst[rk.GS_DAY_TRADES] == counted
        app.engine.close_journal()


def test_a_daily_loss_halt_of_an_earlier_day_is_not_restored(tmp_path):
    # The breaker trips at a day loss of 1.50 (0.000015 % of the demo's 10,000,000).
    data = _day_config(tmp_path / "orders.twj", breakers={"daily_loss_pct": 1.5e-5})
    journal = _lose_two(data)
    states = [r for r in read_journal(journal).records if isinstance(r, StateRecord)]
    assert [s.state for s in states] == ["halted"] and states[0].reason.startswith("daily_loss:")
    same_day = tmp_path / "same-day.twj"
    shutil.copy(journal, same_day)

    # Next day: the roll the engine slept through would have lifted it; it starts ACTIVE.
    app = _start(data, DAY2_1000)
    assert app.engine.trading_state is TradingState.ACTIVE
    assert app.recovery.trading_state == ""
    assert _first_order(app).kind == EventKind.ACCEPTED
    app.engine.close_journal()

    # Later the same day it comes back HALTED, as before; and the day roll lifts it, as it
    # would have without the restart.
    data["journal"]["path"] = str(same_day)
    app = _start(data, DAY1_1600)
    assert app.engine.trading_state is TradingState.HALTED
    assert app.recovery.trading_state == "halted"
    assert _first_order(app).kind == EventKind.REJECTED
    app.clock.advance_to(DAY1_1500 + 2 * HOUR)  # 17:00 New York
    assert app.engine.trading_state is TradingState.ACTIVE
    assert _first_order(app).kind == EventKind.ACCEPTED
    app.engine.close_journal()


def test_a_stop_moved_by_a_modify_comes_back_moved_after_a_restart(tmp_path):
    data = _day_config(tmp_path / "orders.twj")
    app = _start(data, DAY1_1500)
    e, s = app.engine, app.engine.strategies[0]
    _book(e, 19_000, 19_001)
    coid = s.sell("AAPL", 10, None, order_type=OrderType.STOP, stop=189.0)
    s.modify(coid, stop_price=189.5)
    e.pump()
    assert s.kinds(coid) == [EventKind.ACCEPTED, EventKind.MODIFIED]
    assert e.tracker.get(coid).extras.stop_ticks == 18_950
    e.stop()
    e.close_journal()
    (modify,) = [r for r in read_journal(data["journal"]["path"]).records
                 if isinstance(r, ModifyRecord)]  # fmt: skip
    assert (modify.extras.stop_price, modify.extras.stop_ticks) == (189.5, 18_950)

    app = _start(data, DAY1_1600)
    tracker = app.engine.tracker
    order = tracker.get(coid) or tracker.finished[coid]  # lost with the in-process venue
    assert (order.extras.stop_price, order.extras.stop_ticks) == (189.5, 18_950)
    assert order.pending_extras is None
    app.engine.close_journal()
