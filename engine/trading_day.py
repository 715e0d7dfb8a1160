"""The trading day: when one ends and the next begins, from ``[risk] daily_reset`` (a local
wall-clock time) in ``[risk] daily_reset_tz``.

One boundary governs every "today" figure: the risk kernels' daily P&L, fees and day-trade
counts, the daily loss breaker, and the day P&L of the live and the shadow portfolio all roll
at it (``Engine.roll_day``), and recovery replays the same boundaries over the journal's
timestamps, so a restart on a new day does not count an earlier day's fills as today's. The
simulated venue's DAY orders expire at it too (``Engine.roll_day`` calls each venue's optional
``on_day_end``), so a shadowed DAY order does not fill in the next session. A real venue's DAY
orders end at its market's close, which differs per market (16:00 New York for US stocks, the
CME's 17:00 New York break for its futures...): set ``daily_reset`` to the close of the market
traded, or accept that simulated DAY orders live until the engine's boundary.

The boundary moves in UTC with daylight saving. A time the clocks skip (spring forward) happens
at the offset before the change, one hour later by the new clock; a time that happens twice
(fall back) is taken the first time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = 1_000_000_000


class TradingDay:
    """Day boundaries at ``reset`` ("HH:MM") local time in the IANA zone ``tz``."""

    __slots__ = ("_hour", "_minute", "_tz", "reset", "tz")

    def __init__(self, reset: str = "17:00", tz: str = "America/New_York") -> None:
        hour, _, minute = reset.partition(":")
        self._hour, self._minute = int(hour), int(minute)
        self._tz = ZoneInfo(tz)
        self.reset = reset
        self.tz = tz

    def _at(self, day: date) -> int:
        at = datetime(day.year, day.month, day.day, self._hour, self._minute, tzinfo=self._tz)
        return (at - _EPOCH) // timedelta(microseconds=1) * 1000

    def _local_date(self, ns: int) -> date:
        return datetime.fromtimestamp(ns // _NS, self._tz).date()

    def next_start(self, now_ns: int) -> int:
        """When the next trading day starts: the first boundary strictly after ``now_ns``
        (epoch ns)."""
        day = self._local_date(now_ns)
        while True:
            ns = self._at(day)
            if ns > now_ns:
                return ns
            day += timedelta(days=1)

    def start_of(self, now_ns: int) -> int:
        """When the trading day holding ``now_ns`` started: the last boundary at or before it."""
        day = self._local_date(now_ns)
        while True:
            ns = self._at(day)
            if ns <= now_ns:
                return ns
            day -= timedelta(days=1)

    def __repr__(self) -> str:
        return f"TradingDay({self.reset!r}, {self.tz!r})"
