"""Reconnect backoff and the expected-outage schedule."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.ib.reconnect import Backoff, OutageSchedule, OutageWindow
from engine.config import ConfigError, parse_config

NY = ZoneInfo("US/Eastern")


@given(st.integers(0, 10_000))
def test_backoff_grows_to_the_cap_with_bounded_jitter_and_never_stops(seed: int) -> None:
    b = Backoff(initial_s=0.5, cap_s=30, jitter=0.2, rng=random.Random(seed))
    delays = [b.next_delay() for _ in range(50)]
    for i, d in enumerate(delays):
        base = min(30, 0.5 * 2**i)
        assert base * 0.8 <= d <= base * 1.2
    b.reset()
    assert b.next_delay() <= 0.6


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(initial_s=0)


def test_window_across_midnight_in_its_time_zone() -> None:
    w = OutageWindow.parse("23:50", minutes=20, tz="US/Eastern")
    assert w.contains(datetime(2026, 3, 2, 23, 55, tzinfo=NY))
    assert w.contains(datetime(2026, 3, 3, 0, 5, tzinfo=NY))
    assert not w.contains(datetime(2026, 3, 3, 0, 15, tzinfo=NY))
    assert w.contains(datetime(2026, 3, 3, 4, 55, tzinfo=UTC))  # 23:55 EST
    with pytest.raises(ValueError, match="HH:MM"):
        OutageWindow.parse("11:50 PM", 5, "US/Eastern")


def test_outage_inside_the_window_is_routine_until_it_overruns() -> None:
    sched = OutageSchedule([OutageWindow.parse("23:45", 5, "US/Eastern")], grace_s=60)
    down = datetime(2026, 3, 2, 23, 46, tzinfo=NY)
    assert sched.expected(down) is not None
    assert not sched.overrun(down, down + timedelta(minutes=4))
    assert not sched.overrun(down, down + timedelta(minutes=4, seconds=50))
    assert sched.overrun(down, down + timedelta(minutes=6, seconds=30))
    surprise = datetime(2026, 3, 2, 14, 0, tzinfo=NY)
    assert sched.expected(surprise) is None and sched.overrun(surprise, surprise)


def test_guard_window_before_a_scheduled_restart() -> None:
    window = OutageWindow.parse("23:45", 5, "US/Eastern", restart=True)
    sched = OutageSchedule([window], guard_s=30)
    start = datetime(2026, 3, 2, 23, 45, tzinfo=NY)
    connected = datetime(2026, 3, 2, 9, 0, tzinfo=NY)
    assert sched.guarding(datetime(2026, 3, 2, 23, 44, 40, tzinfo=NY), connected) == (window, start)
    assert sched.guarding(datetime(2026, 3, 2, 23, 44, 0, tzinfo=NY), connected) is None
    # Inside the window, until the restart has cut the connection: a connection made before
    # the start is still held (the restart is late), one made after it is past the restart.
    assert sched.guarding(datetime(2026, 3, 2, 23, 47, tzinfo=NY), connected) == (window, start)
    after = datetime(2026, 3, 2, 23, 46, 30, tzinfo=NY)
    assert sched.guarding(datetime(2026, 3, 2, 23, 47, tzinfo=NY), after) is None
    assert sched.guarding(datetime(2026, 3, 2, 23, 50, tzinfo=NY), connected) is None


def test_a_reset_window_never_holds_orders() -> None:
    """IB's reset windows keep the socket up and orders working: no guard before or inside
    them, however long they are (IB says 1100 if it does cut the link)."""
    reset = OutageWindow.parse("23:30", 90, "US/Eastern", "NA reset window")
    sched = OutageSchedule([reset], guard_s=60)
    connected = datetime(2026, 3, 2, 9, 0, tzinfo=NY)
    for moment in (datetime(2026, 3, 2, 23, 29, 30), datetime(2026, 3, 3, 0, 0)):
        assert sched.guarding(moment.replace(tzinfo=NY), connected) is None
    assert sched.expected(datetime(2026, 3, 3, 0, 0, tzinfo=NY)) is reset  # still expected


def test_a_window_on_given_days_only() -> None:
    """IB's weekend maintenance: Friday 23:00 ET for four hours, past midnight into Saturday."""
    weekend = OutageWindow.parse("23:00", 240, "US/Eastern", "weekend", days=["Fri"])
    assert weekend.days == {4}
    assert weekend.contains(datetime(2026, 3, 6, 23, 30, tzinfo=NY))  # a Friday
    assert weekend.contains(datetime(2026, 3, 7, 2, 59, tzinfo=NY))  # Saturday, still on
    assert not weekend.contains(datetime(2026, 3, 7, 3, 0, tzinfo=NY))
    assert not weekend.contains(datetime(2026, 3, 5, 23, 30, tzinfo=NY))  # Thursday
    assert weekend.next_start(datetime(2026, 3, 9, 12, tzinfo=NY)) == datetime(
        2026, 3, 13, 23, 0, tzinfo=NY
    )
    with pytest.raises(ValueError, match="Mon, Tue"):
        OutageWindow.parse("23:00", 240, "US/Eastern", days=["Friday"])


def test_ib_outage_config_takes_days_and_restart_and_checks_them() -> None:
    def venue(**outage) -> dict:
        return {"venues": {"IB": {"kind": "ib", "outages": [outage]}}}

    cfg = parse_config(
        venue(start="23:00", minutes=240, days=["Fri"], name="weekend", restart=False)
    )
    (o,) = cfg.venues["IB"].outages
    assert o.days == ["Fri"] and not o.restart
    with pytest.raises(ConfigError) as err:
        parse_config(venue(start="23:00", minutes=240, days=["Fry"]))
    assert err.value.key == "venues.IB.outages[0].days" and "Mon" in err.value.message
    with pytest.raises(ConfigError) as err:
        parse_config(venue(start="23:00", minutes=240, tz="Eastern Time"))
    assert err.value.key == "venues.IB.outages[0].tz"


def test_an_outage_alerts_at_its_windows_end_plus_grace_or_after_alert_after_s() -> None:
    sched = OutageSchedule(
        [OutageWindow.parse("23:45", 5, "US/Eastern")], grace_s=120, alert_after_s=60
    )
    inside = datetime(2026, 3, 2, 23, 46, tzinfo=NY)
    assert sched.alert_at(inside) == datetime(2026, 3, 2, 23, 52, tzinfo=NY)
    surprise = datetime(2026, 3, 2, 14, 0, tzinfo=NY)
    assert sched.alert_at(surprise) == surprise + timedelta(seconds=60)


def test_guard_changes_at_the_guard_start_and_at_the_window_end() -> None:
    sched = OutageSchedule([OutageWindow.parse("23:45", 5, "US/Eastern", restart=True)], guard_s=30)
    before = datetime(2026, 3, 2, 12, 0, tzinfo=NY)
    assert sched.guard_changes(before) == datetime(2026, 3, 2, 23, 44, 30, tzinfo=NY)
    inside = datetime(2026, 3, 2, 23, 46, tzinfo=NY)
    assert sched.guard_changes(inside) == datetime(2026, 3, 2, 23, 50, tzinfo=NY)
    after = datetime(2026, 3, 2, 23, 50, tzinfo=NY)
    assert sched.guard_changes(after) == datetime(2026, 3, 3, 23, 44, 30, tzinfo=NY)


@settings(max_examples=300, deadline=None)
@given(
    start=st.times(),
    minutes=st.floats(1, 180),
    guard_s=st.floats(0, 3600),
    second_tz=st.sampled_from(["Europe/Zurich", "Asia/Hong_Kong", "US/Central"]),
    days=st.frozensets(st.integers(0, 6)),
    second_restart=st.booleans(),
    now_s=st.integers(1_767_225_600, 1_798_761_600),  # 2026: both DST changes
    connected_ago_s=st.floats(0, 3 * 86400),
    fractions=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=6),
)
def test_guarding_is_constant_until_guard_changes(
    start, minutes, guard_s, second_tz, days, second_restart, now_s, connected_ago_s, fractions
) -> None:
    """Whatever the windows, days, time zones and DST: for one connection, ``guarding``
    answers the same at every moment from ``now`` until ``guard_changes(now)`` (so the venue
    may work it out once per change and per connection)."""
    windows = [
        OutageWindow(start.replace(tzinfo=None), minutes, "US/Eastern", restart=True, days=days),
        OutageWindow(time(3, 15), 10.0, second_tz, "reset", restart=second_restart),
    ]
    sched = OutageSchedule(windows, guard_s=guard_s)
    now = datetime.fromtimestamp(now_s, UTC)
    connected = now - timedelta(seconds=connected_ago_s)
    until = sched.guard_changes(now)
    assert now < until <= now + timedelta(days=1)
    first = sched.guarding(now, connected)
    for f in fractions:
        moment = min(now + (until - now) * f, until - timedelta(microseconds=1))
        assert sched.guarding(moment, connected) == first, (moment, until)
