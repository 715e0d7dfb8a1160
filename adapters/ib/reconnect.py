"""When to reconnect, and which outages are expected.

A gateway outage is routine: the daily Gateway restart (IBC ``AutoRestartTime``, the JVM is
gone for one to two minutes) and IB's own reset windows. ``Backoff`` retries forever with a
capped exponential delay and jitter (many clients restarting together must not reconnect in
lockstep). ``OutageSchedule`` knows the expected windows from config, so an outage inside one is
logged quietly and only an overrun alerts; ``guarding`` says when new orders are held back
because a scheduled restart is about to cut the socket (orders written in the last second before
a restart are lost).

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


@dataclass(frozen=True, slots=True)
class OutageWindow:
    """A daily window (``start`` local time, ``minutes`` long) in time zone ``tz``."""

    start: time
    minutes: float
    tz: str = "US/Eastern"
    name: str = "daily restart"

    @classmethod
    def parse(cls, text: str, minutes: float, tz: str, name: str = "daily restart"):
        """``"23:45"`` (24 h clock) into a window; ValueError naming the format otherwise."""
        try:
            hh, mm = text.split(":")
            return cls(time(int(hh), int(mm)), minutes, tz, name)
        except ValueError:
            raise ValueError(f"outage start {text!r}: expected HH:MM (24 h)") from None

    def around(self, now: datetime) -> tuple[datetime, datetime]:
        """The window occurrence that contains or most recently precedes ``now``."""
        local = now.astimezone(ZoneInfo(self.tz))
        start = datetime.combine(local.date(), self.start, tzinfo=local.tzinfo)
        if start > local:
            start -= timedelta(days=1)
        return start, start + timedelta(minutes=self.minutes)

    def contains(self, now: datetime) -> bool:
        start, end = self.around(now)
        return start <= now.astimezone(start.tzinfo) < end

    def next_start(self, now: datetime) -> datetime:
        start, _ = self.around(now)
        return start + timedelta(days=1)


class OutageSchedule:
    """The expected outages, and what an outage at a given time means."""

    def __init__(self, windows: list[OutageWindow], grace_s: float = 60.0, guard_s: float = 30.0):
        self.windows = windows
        self.grace_s = grace_s
        self.guard_s = guard_s

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

    def guarding(self, now: datetime) -> OutageWindow | None:
        """A window starting within ``guard_s`` of ``now``: hold new orders back."""
        for w in self.windows:
            if w.contains(now):
                return w
            if w.next_start(now) - now.astimezone(UTC) <= timedelta(seconds=self.guard_s):
                return w
        return None

    def guard_changes(self, now: datetime) -> datetime:
        """The first time after ``now`` at which ``guarding`` may answer differently: the end
        of a window occurrence, or the moment ``guard_s`` before one starts (at most a day
        ahead). Between the two its answer is constant, so a caller on the order
        path works it out once per change instead of per order (zoneinfo arithmetic costs tens
        of µs)."""
        guard = timedelta(seconds=self.guard_s)
        when = now.astimezone(UTC) + timedelta(days=1)
        for w in self.windows:
            _, end = w.around(now)
            following = w.next_start(now)
            # The current (or last) occurrence's end, the next one's guard start and its end
            # (``now`` may already be in the next one's guard).
            for t in (end, following - guard, following + timedelta(minutes=w.minutes)):
                t = t.astimezone(UTC)
                if now < t < when:
                    when = t
        return when
