"""Recovery from the journal, in-process: the demo pipeline trades with a journal, a second
engine is built from the same config and journal, and must come back to the same orders,
positions, P&L and risk state (the SIGKILL runs against the gateway simulator are in
``test_crash_recovery``)."""

from __future__ import annotations

import asyncio
import io
import logging
import tomllib
from pathlib import Path

import numpy as np
import pytest
import uvloop

from engine.app import build_app, run_app
from engine.clock import LiveClock
from engine.config import ConfigError, parse_config
from engine.journal import OrderRecord, StateRecord, read_journal
from engine.orders import OrderState
from engine.risk_gate import TradingState
from engine.runtime import LOST_WITH_PROCESS
from hotpath import risk as rk

ROOT = Path(__file__).resolve().parent.parent


def _config(journal: Path) -> dict:
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    data["metrics"]["enabled"] = False
    data["engine"]["log_level"] = "WARNING"
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
    assert len(report.lost) == len(first.tracker.open)
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


def test_a_halted_engine_comes_back_halted(tmp_path):
    journal = tmp_path / "orders.twj"
    data = _config(journal)
    first = _trade(data, 1.0, halt=True).engine
    assert first.trading_state is TradingState.HALTED
    states = [r for r in read_journal(journal).records if isinstance(r, StateRecord)]
    assert states and states[-1].state == "halted" and "kill_switch" in states[-1].reason

    second = build_app(parse_config(data, "recovery-test"), LiveClock())
    assert second.engine.trading_state is TradingState.HALTED
    assert second.recovery.trading_state == "halted"
    # A breaker may not lift it; the operator may.
    assert second.engine.set_trading_state("active", "breaker", source="daily_loss") is None
    assert second.engine.set_trading_state("active", "checked: resume", "operator") is not None
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
