"""When to reconnect, and which outages are expected.

A gateway outage is routine: the daily Gateway restart (IBC ``AutoRestartTime``, the JVM is
gone for one to two minutes) and IB's own reset windows. ``Backoff`` retries forever with a
capped exponential delay and jitter (many clients restarting together must not reconnect in
lockstep). ``OutageSchedule`` knows the expected windows from config, so an outage inside one is
logged quietly and only an overrun alerts (``alert_at``: the window's end plus the grace; an
outage outside every window alerts after ``alert_after_s``). ``guarding`` says when new orders are
held back because a scheduled gateway restart is about to cut the socket (orders written in the
last second before a restart are lost). Only a window marked ``restart`` guards: in IB's own reset
windows the socket stays up and orders keep working (IB says 1100 if it cuts the link).

Pure: times are timezone-aware datetimes or epoch seconds passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


class Backoff:
    """Capped exponential backoff with jitter; never gives up."""

    def __init__(
        self,
        initial_s: float = 0.5,
        cap_s: float = 30.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        if initial_s <= 0 or cap_s < initial_s or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial <= cap, factor >= 1, 0 <= jitter < 1")
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempts = 0

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt."""
        base = min(self.cap_s, self.initial_s * self.factor**self.attempts)
        self.attempts += 1
        return base * (1.0 + self._rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        """A connection became ready: start again from ``initial_s``."""
        self.attempts = 0


#: Day names for ``OutageWindow.days``, Monday first (``datetime.weekday``).
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class OutageWindow:
    """A window starting at ``start`` local time in time zone ``tz``, ``minutes`` long: every
    day, or on the weekdays in ``days`` (0 = Monday; a window may run past midnight, e.g. IB's
    weekend maintenance, Friday 23:00 for 240 minutes). ``restart``: the gateway restarts at
    its start and the socket is cut (new orders are held back just before it)."""

    start: time
    minutes: float
    tz: str = "US/Eastern"
    name: str = "daily restart"
    restart: bool = False
    days: frozenset[int] = frozenset()

    @classmethod
    def parse(
        cls,
        text: str,
        minutes: float,
        tz: str,
        name: str = "daily restart",
        *,
        restart: bool = False,
        days: tuple[str, ...] | list[str] = (),
    ) -> OutageWindow:
        """``"23:45"`` (24 h clock) and day names (``"Fri"``) into a window; ValueError naming
        the format otherwise."""
        try:
            hh, mm = text.split(":")
            start = time(int(hh), int(mm))
        except ValueError:
            raise ValueError(f"outage start {text!r}: expected HH:MM (24 h)") from None
        return cls(start, minutes, tz, name, restart, parse_days(days))

    def around(self, now: datetime) -> tuple[datetime, datetime]:
        """The window occurrence that contains or most recently precedes ``now``."""
        local = now.astimezone(ZoneInfo(self.tz))
        start = datetime.combine(local.date(), self.start, tzinfo=local.tzinfo)
        if start > local:
            start -= _DAY
        if self.days:
            while start.weekday() not in self.days:
                start -= _DAY
        return start, start + timedelta(minutes=self.minutes)

    def contains(self, now: datetime) -> bool:
        start, end = self.around(now)
        return start <= now.astimezone(start.tzinfo) < end

    def next_start(self, now: datetime) -> datetime:
        """The start of the first occurrence after the one ``around`` gives."""
        start, _ = self.around(now)
        start += _DAY
        if self.days:
            while start.weekday() not in self.days:
                start += _DAY
        return start


def parse_days(names: tuple[str, ...] | list[str]) -> frozenset[int]:
    """Day names (``"Mon"`` .. ``"Sun"``, any case) as weekday numbers; ValueError otherwise."""
    lookup = {n.lower(): i for i, n in enumerate(DAY_NAMES)}
    days = set()
    for name in names:
        day = lookup.get(name.lower())
        if day is None:
            raise ValueError(f"day {name!r}: expected one of {', '.join(DAY_NAMES)}")
        days.add(day)
    return frozenset(days)


class OutageSchedule:
    """The expected outages, and what an outage at a given time means."""

    def __init__(
        self,
        windows: list[OutageWindow],
        grace_s: float = 60.0,
        guard_s: float = 30.0,
        alert_after_s: float = 60.0,
    ) -> None:
        self.windows = windows
        self.grace_s = grace_s
        self.guard_s = guard_s
        self.alert_after_s = alert_after_s

    def expected(self, now: datetime) -> OutageWindow | None:
        """The window ``now`` falls in, if any (an outage then is routine: log it quietly)."""
        return next((w for w in self.windows if w.contains(now)), None)

    def overrun(self, down_since: datetime, now: datetime) -> bool:
        """An outage that began at ``down_since`` has outlasted its window plus the grace."""
        window = self.expected(down_since)
        if window is None:
            return True
        _, end = window.around(down_since)
        return now > end + timedelta(seconds=self.grace_s)

    def alert_at(self, down_since: datetime) -> datetime:
        """When an outage that began at ``down_since`` and still lasts deserves an alert: the
        end of its expected window plus the grace, or ``alert_after_s`` after it began."""
        window = self.expected(down_since)
        if window is None:
            return down_since + timedelta(seconds=self.alert_after_s)
        _, end = window.around(down_since)
        return end.astimezone(UTC) + timedelta(seconds=self.grace_s)

    def guarding(
        self, now: datetime, connected_since: datetime | None = None
    ) -> tuple[OutageWindow, datetime] | None:
        """A scheduled gateway restart that new orders must be held back for, with the start of
        its occurrence: from ``guard_s`` before the start until the restart has cut the
        connection made at ``connected_since`` (a connection made after the start is past it;
        None: not known, held to the end of the window). IB's reset windows (not ``restart``)
        never hold orders: the socket stays up, and IB says 1100 if it loses the link."""
        guard = timedelta(seconds=self.guard_s)
        for w in self.windows:
            if not w.restart:
                continue
            start, end = w.around(now)
            if start <= now < end and (connected_since is None or connected_since < start):
                return w, start
            following = w.next_start(now)
            if following - now <= guard:
                return w, following
        return None

    def guard_changes(self, now: datetime) -> datetime:
        """The first time after ``now`` at which ``guarding`` may answer differently for the same
        connection: the end of a restart window's occurrence, or the moment ``guard_s`` before
        one starts (at most a day ahead). Between the two its answer is constant, so a caller
        on the order path works it out once per change (and per connection) instead of per
        order (zoneinfo arithmetic costs tens of µs)."""
        guard = timedelta(seconds=self.guard_s)
        when = now.astimezone(UTC) + timedelta(days=1)
        for w in self.windows:
            if not w.restart:
                continue
            _, end = w.around(now)
            following = w.next_start(now)
            # The current (or last) occurrence's end, the next one's guard start and its end
            # (``now`` may already be in the next one's guard).
            for t in (end, following - guard, following + timedelta(minutes=w.minutes)):
                t = t.astimezone(UTC)
                if now < t < when:
                    when = t
        return when
