"""IBVenue against the gateway simulator: a hung gateway, how outages are alerted, and which
scheduled windows hold new orders back.

A gateway whose API hangs keeps its socket open and answers nothing; the heartbeat notices and
the venue reconnects. A drop inside an expected window is INFO at both ends and an ERROR only
if it overruns; outside every window it is a WARNING, an ERROR once after ``alert_after_s``,
and a WARNING with the total at the return. New orders are held back just before a scheduled
gateway restart (until it has happened), never in IB's reset windows.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from adapters.ib.reconnect import OutageSchedule, OutageWindow
from adapters.ib.venue import HELD_BACK
from engine.config import IBOutageConfig
from engine.messages import EventKind
from tests.ib_venue_support import IBHarness, until
from tests.test_ib_venue_faults import names, record_requests, rest_px, settled, take_px

A, F, R = EventKind.ACCEPTED, EventKind.FILL, EventKind.REJECTED
LOG = "tickwire.ib"


def said(caplog, *words: str, level: int | None = None) -> list[logging.LogRecord]:
    """The venue's log records that contain every one of ``words`` (at ``level``)."""
    return [
        r
        for r in caplog.records
        if r.name == LOG
        and all(w in r.getMessage() for w in words)
        and (level is None or r.levelno == level)
    ]


def window_around_now(
    before_s: float, after_s: float, restart: bool = True, name: str = "test restart"
) -> OutageWindow:
    """A daily window (in UTC) that began ``before_s`` ago and ends ``after_s`` from now."""
    start = datetime.now(UTC) - timedelta(seconds=before_s)
    return OutageWindow(start.time(), (before_s + after_s) / 60, "UTC", name, restart)


# ---- a hung gateway ------------------------------------------------------------------------


async def test_a_hung_gateway_is_noticed_and_the_venue_reconnects(caplog) -> None:
    """The gateway's API hangs (socket open, nothing answered, no market data): before, the
    venue stayed ``ready`` forever and orders went into nothing. Now the heartbeat's
    reqCurrentTime goes unanswered, the connection is closed with an ERROR saying so, new
    orders are held back, and the normal reconnect brings the venue back once the gateway is."""
    caplog.set_level(logging.INFO, LOG)
    async with IBHarness(heartbeat_s=0.3, heartbeat_timeout_s=0.3, connect_timeout_s=0.5) as h:
        v = h.venue
        await settled(h)
        h.fault("hang", seconds=2.5)
        await until(lambda: not v.connected, 2.5, "the hang noticed")
        (closed,) = said(caplog, "answered nothing")
        assert closed.levelno == logging.ERROR
        assert f"IB Gateway at 127.0.0.1:{h.server.port} answered nothing for" in (
            closed.getMessage()
        )
        assert "the API is hung; reconnecting" in closed.getMessage()
        held = h.strat.buy("AAPL", 1, take_px(h))
        h.engine.pump()
        (ev,) = h.strat.of(held)
        assert ev.kind == R and ev.reason_code == HELD_BACK
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected after the hang")
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 1, take_px(h))
        await h.wait_kind(coid, F)


async def test_market_data_is_liveness_enough_and_a_quiet_gateway_is_only_asked(caplog) -> None:
    """While market data flows the heartbeat asks nothing (no extra requests under load); when
    it stops, the gateway is asked the time and its answers keep the connection."""
    caplog.set_level(logging.INFO, LOG)
    async with IBHarness(heartbeat_s=0.2, heartbeat_timeout_s=0.3) as h:
        v = h.venue
        reqs = record_requests(h)
        await settled(h)
        mark = len(reqs)
        rows = v._md_rows_seen
        await asyncio.sleep(1.0)  # five heartbeat intervals
        assert v._md_rows_seen > rows + 20  # market data flowed all along
        assert names(reqs, mark)["ReqCurrentTime"] == 0
        for s in h.symbols:
            h.fault("stop_market_data", symbol=s)
        await until(lambda: names(reqs, mark)["ReqCurrentTime"] >= 3, 5, "three questions")
        assert v.connected and v.ready and v.reconnects == 0
        assert not said(caplog, "answered nothing")


async def test_heartbeat_0_turns_it_off() -> None:
    async with IBHarness(heartbeat_s=0.0) as h:
        v = h.venue
        reqs = record_requests(h)
        await settled(h)
        for s in h.symbols:
            h.fault("stop_market_data", symbol=s)
        h.fault("hang", seconds=1.0)
        await until(lambda: not h.core().status()["hung"], 3, "the hang over")
        assert v.connected and v.reconnects == 0 and names(reqs)["ReqCurrentTime"] == 0


# ---- outage alerting ----------------------------------------------------------------------


async def test_an_unexpected_outage_warns_then_errors_once_then_reports_the_total(caplog) -> None:
    """Outside every expected window: WARNING at the drop, one ERROR once it has lasted
    ``alert_after_s`` (however many retries fail), WARNING with the total at the return. Before,
    it never went above WARNING however long it lasted."""
    caplog.set_level(logging.DEBUG, LOG)
    async with IBHarness(alert_after_s=0.5) as h:
        v = h.venue
        await settled(h)
        h.fault("daily_restart", seconds=1.5)
        await until(lambda: not v.connected, 5, "the drop seen")
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        (drop,) = said(caplog, "connection lost")
        assert drop.levelno == logging.WARNING
        errors = [r for r in caplog.records if r.name == LOG and r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        alert = errors[0].getMessage()
        assert "unreachable for" in alert and "still reconnecting" in alert
        assert "connection refused" in alert  # the last error, so the alert says why
        # The retries' failure was said once (then DEBUG), not at every attempt.
        refused = [r for r in said(caplog, "connection refused at") if r.levelno < logging.ERROR]
        warned = [r for r in refused if r.levelno == logging.WARNING]
        assert refused[0] is warned[0] and len(warned) < len(refused)
        assert {r.levelno for r in refused} == {logging.WARNING, logging.DEBUG}
        (back,) = said(caplog, "reconnected after")
        assert back.levelno == logging.WARNING and "an outage of" in back.getMessage()
        assert drop.created <= errors[0].created - 0.5 < back.created


async def test_a_drop_inside_the_expected_window_is_quiet(caplog) -> None:
    """Inside an expected window the drop and the return are INFO (before, both were WARNING
    every day) and nothing goes above INFO while the outage stays within the window."""
    caplog.set_level(logging.INFO, LOG)
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        v.outages = OutageSchedule(
            [window_around_now(60, 60)], grace_s=60, guard_s=30, alert_after_s=0.2
        )
        mark = len(caplog.records)
        h.fault("daily_restart", seconds=0.8)
        await until(lambda: not v.connected, 5, "the drop seen")
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        records = [r for r in caplog.records[mark:] if r.name == LOG]
        loud = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
        assert loud == []
        (drop,) = said(caplog, "connection lost in the expected test restart", level=logging.INFO)
        (back,) = said(caplog, "reconnected after the expected test restart", level=logging.INFO)
        assert drop.created < back.created


async def test_an_expected_window_that_overruns_errors_once(caplog) -> None:
    caplog.set_level(logging.INFO, LOG)
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        v.outages = OutageSchedule([window_around_now(60, 0.3)], grace_s=0.3, alert_after_s=60)
        h.fault("daily_restart", seconds=1.6)
        await until(lambda: not v.connected, 5, "the drop seen")
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        assert said(caplog, "connection lost in the expected test restart", level=logging.INFO)
        errors = [r for r in caplog.records if r.name == LOG and r.levelno >= logging.ERROR]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "the expected test restart has overrun" in errors[0].getMessage()
        (back,) = said(caplog, "reconnected after an outage of")
        assert back.levelno == logging.WARNING


# ---- which windows hold new orders ----------------------------------------------------------


async def test_orders_trade_normally_in_an_ib_reset_window() -> None:
    """IB's reset windows keep the socket up and native orders working: connected, ready and
    not in 1100, a new order goes (before, it was held for the whole 90 minutes, "within 60 s
    of" the window, 30 minutes into it)."""
    started = datetime.now(UTC).astimezone(ZoneInfo("US/Eastern")) - timedelta(minutes=30)
    reset = IBOutageConfig(start=started.strftime("%H:%M"), minutes=90, name="NA reset window")
    async with IBHarness(outages=[reset]) as h:
        await settled(h)
        assert h.venue.outages.expected(datetime.now(UTC)) is not None  # inside it
        coid = h.strat.buy("AAPL", 1, rest_px(h))
        await h.wait_kind(coid, A)
        assert h.kinds(coid) == [A]


async def test_a_restart_window_holds_orders_until_the_restart_has_happened() -> None:
    """Held from ``guard_s`` before a scheduled restart, and inside its window while the
    restart has not cut the connection yet (it may be late); once the venue has reconnected
    after the restart, orders go again though the window is not over."""
    async with IBHarness() as h:
        v = h.venue
        await settled(h)
        window = window_around_now(0.5, 120)  # began half a second ago, after the connect
        v.outages = OutageSchedule([window], guard_s=60)
        v._connected_at = datetime.now(UTC) - timedelta(seconds=10)  # made before it began
        v._guard_until = 0.0  # the schedule was swapped under it: work the answer out again
        held = h.strat.buy("AAPL", 1, take_px(h))
        h.engine.pump()
        (ev,) = h.strat.of(held)
        assert ev.kind == R and ev.reason_code == HELD_BACK
        assert f"the expected test restart is due at {window.start:%H:%M} UTC" in ev.reason
        assert "has not cut this connection yet" in ev.reason
        h.fault("daily_restart", seconds=0.5)  # the restart comes
        await until(lambda: not v.connected, 5, "the restart seen")
        await until(lambda: v.ready and v.reconnects == 1, 10, "reconnected")
        assert v.outages.expected(datetime.now(UTC)) is window  # still inside the window
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 1, rest_px(h))
        await h.wait_kind(coid, A)
