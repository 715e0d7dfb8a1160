"""IBVenue against the gateway simulator: which scheduled windows hold new orders back.

New orders are held back just before a scheduled gateway restart (until it has happened),
never in IB's reset windows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from adapters.ib.reconnect import OutageSchedule, OutageWindow
from adapters.ib.venue import HELD_BACK
from engine.config import IBOutageConfig
from engine.messages import EventKind
from tests.ib_venue_support import IBHarness, until
from tests.test_ib_venue_faults import rest_px, settled, take_px

A, R = EventKind.ACCEPTED, EventKind.REJECTED


def window_around_now(
    before_s: float, after_s: float, restart: bool = True, name: str = "test restart"
) -> OutageWindow:
    """A daily window (in UTC) that began ``before_s`` ago and ends ``after_s`` from now."""
    start = datetime.now(UTC) - timedelta(seconds=before_s)
    return OutageWindow(start.time(), (before_s + after_s) / 60, "UTC", name, restart)


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
