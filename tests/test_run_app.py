"""``run_app`` as an operator meets it beside IB Gateway: a venue that refuses to trade ends
the run with the reason, a signal during start-up stops at once, and a metrics port that is
taken is a config error naming the key.

IB runs against the gateway simulator over loopback (embedded, as the demo runs it) or against
a listener that takes the connection and never answers (a gateway still logging in).
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import socket
import tomllib
from pathlib import Path

import aiohttp
import pytest

from engine.app import build_app, run_app
from engine.config import ConfigError, parse_config
from engine.strategy import Strategy

ROOT = Path(__file__).resolve().parent.parent


def _ib_demo(**venue) -> dict:
    """The IB demo config (embedded simulator, the sample strategies), metrics off."""
    data = tomllib.loads((ROOT / "config" / "demo_ib.toml").read_text())
    data["metrics"]["enabled"] = False
    data["venues"]["IB"]["simulator_config"] = ""
    data["venues"]["IB"].update(venue)
    return data


def _watch_start(app) -> list[int]:
    """Notes each ``engine.start`` (the strategies' start), with the book updates there had
    been by then, and lets it happen."""
    calls: list[int] = []
    start = app.engine.start

    def noted() -> None:
        calls.append(app.engine.book_actor.updates)
        start()

    app.engine.start = noted  # type: ignore[method-assign]
    return calls


async def test_a_live_gateway_under_paper_only_ends_the_run_with_the_reason(tmp_path, caplog):
    """paper_only refuses a gateway that manages a live account; the run must not go on
    looking healthy with no connection (the venue has stopped connecting for good): it
    stops before any strategy starts, and the report says why (``tickwire run`` exits 1)."""
    sim = tmp_path / "live_gateway.toml"
    sim.write_text('[gateway]\naccounts = ["U7654321"]\n')
    app = build_app(parse_config(_ib_demo(simulator_config=str(sim)), "live.toml"))
    started = _watch_start(app)
    with caplog.at_level(logging.DEBUG):
        report = await asyncio.wait_for(run_app(app, None, io.StringIO()), 60)
    assert started == []
    assert report.error.startswith("venue IB refused to trade: paper_only is on")
    assert "live account(s) U…21" in report.error
    assert f"stopped: {report.error}" in report.format()
    assert any(r.getMessage() == f"stopping: {report.error}" for r in caplog.records)
    assert app.engine.venues["IB"].simulator is None  # the venue was stopped too
    # The account id is a secret: masked wherever the refusal is told.
    assert not [r.getMessage() for r in caplog.records if "7654321" in r.getMessage()]
    assert "7654321" not in report.format()


async def test_a_login_with_several_accounts_and_none_chosen_ends_the_run(tmp_path, caplog):
    """An advisor's or a linked login manages several accounts. With none configured, trading
    the first one IB lists would be a guess: the run ends before any strategy starts, naming
    the accounts (masked) and the setting to give."""
    sim = tmp_path / "two_accounts.toml"
    sim.write_text('[gateway]\naccounts = ["DU1111111", "DU2222222"]\n')
    app = build_app(parse_config(_ib_demo(simulator_config=str(sim)), "two.toml"))
    started = _watch_start(app)
    with caplog.at_level(logging.DEBUG):
        report = await asyncio.wait_for(run_app(app, None, io.StringIO()), 60)
    assert started == []
    assert report.error == (
        "venue IB refused to trade: the gateway manages 2 accounts (DU…11, DU…22) and "
        "venues.IB.account is not set: set it to the one to trade (from the environment or a "
        "secrets file)"
    )
    assert app.engine.venues["IB"].refused
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "1111111" not in logged and "2222222" not in logged


async def test_a_paper_gateway_runs_with_no_error_and_metrics_show_the_venue_up():
    data = _ib_demo(embedded_simulator=True)
    data["metrics"].update(enabled=True, port=0)
    app = build_app(parse_config(data, "paper.toml"))
    started = _watch_start(app)
    run = asyncio.ensure_future(run_app(app, 3.0, io.StringIO()))
    venue = app.engine.venues["IB"]
    while not (started and venue.ready):
        assert not run.done(), run.result()
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{app.metrics.port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        text = await resp.text()
    assert 'tickwire_venue_connected{venue="IB"} 1.0' in text
    assert 'tickwire_venue_ready{venue="IB"} 1.0' in text
    report = await run
    assert report.error == ""
    assert "stopped:" not in report.format()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_while_the_gateway_is_still_logging_in_stops_at_once(sig, caplog):
    """The gateway takes the connection and answers nothing (IB Gateway still logging in):
    the venue's start would wait connect_timeout_s (here 60 s). The operator's signal stops
    the run then, without starting the strategies."""
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    data = _ib_demo(embedded_simulator=False, port=port, connect_timeout_s=60.0)
    app = build_app(parse_config(data, "hung.toml"))
    started = _watch_start(app)
    loop = asyncio.get_running_loop()
    loop.call_later(0.5, os.kill, os.getpid(), sig)
    try:
        with caplog.at_level(logging.WARNING, logger="engine.app"):
            report = await asyncio.wait_for(run_app(app, None, io.StringIO()), 20)
    finally:
        silent.close()
    assert started == [] and report.error == ""
    assert "stopping during start-up: the venues were still starting" in caplog.text
    assert app.engine.venues["IB"].conn is None or not app.engine.venues["IB"].connected


async def test_a_metrics_port_in_use_is_a_config_error_naming_the_key():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
        data["metrics"]["port"] = port
        app = build_app(parse_config(data, "run.toml"))
        with pytest.raises(ConfigError) as info:
            await run_app(app, 0.5, io.StringIO())
    msg = str(info.value)
    assert msg.startswith(f"run.toml: metrics.port: cannot serve /metrics on 127.0.0.1:{port}")
    assert "pick a free port" in msg
    app.engine.close_journal()


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_a_journal_path_that_cannot_be_opened_is_a_config_error_naming_the_key(tmp_path, where):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    path = tmp_path if where == "a directory" else blocker / "orders.twj"
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    data["journal"] = {"path": str(path)}
    with pytest.raises(ConfigError) as info:
        build_app(parse_config(data, "run.toml"))
    msg = str(info.value)
    assert msg.startswith(f"run.toml: journal.path: cannot open the journal {path}: ")
    assert msg.endswith("give a file path this process can create and write")


class CallOrder(Strategy):
    """Notes which of its callbacks ran, in order."""

    calls: list[str]

    def on_start(self) -> None:
        self.calls = [*getattr(self, "calls", []), "start"]

    def on_book(self, book) -> None:
        self.calls = [*getattr(self, "calls", []), "book"]


async def test_no_book_reaches_a_strategy_before_its_on_start(tmp_path):
    """IB streams market data while it reconciles (here slowly: a gateway still loading
    leaves reqExecutions unanswered once). Books update meanwhile, but a strategy hears of
    them only once the engine starts it, after reconciliation and recovery's checks, as it
    hears of its orders' events."""
    sim = tmp_path / "slow_gateway.toml"
    sim.write_text('[[faults]]\nat_s = 0\naction = "ignore_requests"\nrequest = "ReqExecutions"\n')
    data = _ib_demo(simulator_config=str(sim), reconcile_timeout_s=1.0)
    app = build_app(parse_config(data, "slow.toml"))
    probe = app.engine.add_strategy(CallOrder, "probe", None, ["AAPL"])
    started = _watch_start(app)
    await run_app(app, 1.0, io.StringIO())
    (updates_before_start,) = started
    assert updates_before_start > 0, "books updated while IB reconciled"
    assert probe.calls[0] == "start" and "book" in probe.calls


async def test_a_periodic_task_that_raises_is_logged_once_and_goes_on(caplog):
    """run_app's timers (status line, metrics fold, journal sync...) outlive a failure: one
    that raises is logged, then at most once a minute, and is called again."""
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    data["metrics"].update(enabled=False, fold_interval_ms=10)
    app = build_app(parse_config(data, "demo.toml"))
    calls = []

    def fold() -> None:
        calls.append(1)
        raise OSError("no space left on device")

    app.engine.latency.fold = fold  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="engine.app"):
        await asyncio.wait_for(run_app(app, 0.6, io.StringIO()), 30)
    assert len(calls) >= 5
    failed = [r for r in caplog.records if "periodic" in r.getMessage()]
    assert len(failed) == 1 and "no space left on device" in (failed[0].exc_text or "")
