"""Outbound pacing for the TWS API: stay under IB's limits instead of hearing about them.

IB Gateway accepts about 50 messages per second from a client; beyond that it answers error
100 and, if the excess persists, disconnects. ``MessagePacer`` is a token bucket with three
queues drained in priority order: cancels first (getting out of risk must never wait behind
anything), then new orders and modifications, then data requests. Nothing is dropped: a frame
waits until it may go. A bucket of ``burst`` tokens filled at ``rate`` a second sends at most
``burst + rate`` messages in any rolling second, so the two together must stay within 50
(default 45 + 5). After an error 100 the rate is halved for a minute from the latest one.

Historical data has its own rules (IB's "historical data limitations"): at most 50 requests
open at once, and for bars of 30 s or less ("pacing violations for small bars") no identical
request within 15 s, no more than 6 requests for the same contract, exchange and tick type
within 2 s, at most 60 requests per 10 minutes; BID_ASK requests count twice. IB has lifted the
small-bar rules for bars of 1 min and more; the 10-minute count would hold a 61st daily-bar
request back for up to 10 minutes, so it applies to small bars only. The two short rules cost at
most seconds and IB still keeps a "soft limit" on large requests, so they apply to every
request. Tick data (``reqHistoricalTicks``, no bar size) is counted as small bars: IB names no
exception for it. ``HistoricalPacer`` answers *when* a request may be sent, so the adapter queues
it rather than earning an error 162.

Pure: time comes in as float seconds (the loop's clock).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

CANCEL, ORDER, DATA = 0, 1, 2
"""Priorities, drained in this order."""


#: IB Gateway's limit on the messages a client sends in any second.
IB_MSGS_PER_S = 50


class MessagePacer:
    """A token bucket with priority queues for outgoing frames."""

    __slots__ = (
        "_last", "_queues", "_slow_until", "_tokens", "base_rate", "burst", "rate", "sent",
    )  # fmt: skip

    def __init__(self, rate: float = 45.0, burst: float = 5.0) -> None:
        if not 0 < rate <= IB_MSGS_PER_S:
            raise ValueError(f"pacing rate must be in (0, 50] messages/s (IB's limit), got {rate}")
        if burst < 1 or rate + burst > IB_MSGS_PER_S:
            raise ValueError(
                f"pacing rate {rate:g} + burst {burst:g} must be at most {IB_MSGS_PER_S} (IB's "
                "limit: a full burst on top of a second's rate goes out within one second), "
                "with a burst of at least 1"
            )
        self.rate = rate
        #: The configured rate; ``rate`` is below it for a while after ``slow_down``.
        self.base_rate = rate
        self.burst = burst
        self._tokens = burst
        self._last: float | None = None
        self._slow_until = 0.0  # while slowed down: when the base rate comes back
        self._queues: tuple[deque[bytes], deque[bytes], deque[bytes]] = (deque(), deque(), deque())
        self.sent = 0

    def submit(self, priority: int, frame: bytes) -> None:
        """Queue ``frame`` (one complete message) at ``priority`` (CANCEL, ORDER or DATA)."""
        self._queues[priority].append(frame)

    def send_now(self, now: float) -> bool:
        """Spend a token on a frame that goes out at once, not queued: True when nothing is
        waiting (so no priority is passed over) and a token is free; False: ``submit`` it."""
        q0, q1, q2 = self._queues
        if q0 or q1 or q2:
            return False
        self._refill(now)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        self.sent += 1
        return True

    @property
    def pending(self) -> int:
        q0, q1, q2 = self._queues
        return len(q0) + len(q1) + len(q2)

    def slow_down(self, now: float, for_s: float = 60.0, floor: float = 5.0) -> float:
        """IB said 100 (too many messages): halve the rate (not below ``floor``) until
        ``for_s`` after this call. Each call restarts that time, so a later 100 is not undone
        by the restore an earlier one would have made. Returns the new rate."""
        self._refill(now)  # the time up to now was paced at the old rate
        self.rate = max(self.rate / 2, min(floor, self.base_rate))
        self._slow_until = now + for_s
        return self.rate

    def _refill(self, now: float) -> None:
        if self._slow_until and now >= self._slow_until:
            self._restore()
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def _restore(self) -> None:
        """The slow minute is over: tokens up to its end accrue at the slow rate, then the
        base rate is back."""
        until = self._slow_until
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (until - self._last) * self.rate)
            self._last = until
        self.rate = self.base_rate
        self._slow_until = 0.0

    def drain(self, now: float) -> bytes:
        """The frames that may go now, highest priority first, concatenated."""
        self._refill(now)
        out = bytearray()
        for q in self._queues:
            while q and self._tokens >= 1.0:
                out += q.popleft()
                self._tokens -= 1.0
                self.sent += 1
        return bytes(out)

    def next_due(self, now: float) -> float | None:
        """When the next queued frame may go (None when nothing is queued)."""
        if not self.pending:
            return None
        self._refill(now)
        if self._tokens >= 1.0:
            return now
        return now + (1.0 - self._tokens) / self.rate


@dataclass(frozen=True, slots=True)
class HistoricalRequest:
    """What IB's historical pacing looks at."""

    contract_key: Hashable  # conId or the contract's identity
    exchange: str
    what_to_show: str
    end_date_time: str
    duration: str
    bar_size: str

    @property
    def weight(self) -> int:
        return 2 if self.what_to_show == "BID_ASK" else 1

    @property
    def small(self) -> bool:
        """Bars of 30 s or less, or no bar size (tick data): the 10-minute count applies."""
        return _small_bars(self.bar_size)


class HistoricalPacer:
    """When a historical request may go out without a pacing violation (error 162)."""

    def __init__(
        self,
        identical_s: float = 15.0,
        same_contract: int = 6,
        same_contract_s: float = 2.0,
        per_window: int = 60,
        window_s: float = 600.0,
        max_open: int = 50,
    ) -> None:
        self.identical_s = identical_s
        self.same_contract = same_contract
        self.same_contract_s = same_contract_s
        self.per_window = per_window
        self.window_s = window_s
        self.max_open = max_open
        self._sent: deque[tuple[float, HistoricalRequest]] = deque()
        self.open = 0

    def earliest(self, req: HistoricalRequest, now: float) -> float | None:
        """The earliest time ``req`` may be sent (``now`` if at once; None while too many open)."""
        sent = self._sent
        while sent and sent[0][0] <= now - self.window_s:
            sent.popleft()
        if self.open >= self.max_open:
            return None
        t = now
        for at, prev in sent:
            if prev == req:
                t = max(t, at + self.identical_s)
        allowed = self.same_contract - 1  # "6 or more within 2 s" is the violation
        recent = [
            at
            for at, p in sent
            if _same_series(p, req) and at > now - self.same_contract_s
            for _ in range(p.weight)
        ]
        if len(recent) + req.weight > allowed:
            # the oldest of them must leave the window first
            k = len(recent) + req.weight - allowed
            t = max(t, recent[k - 1] + self.same_contract_s)
        if not req.small:
            return t
        used = sum(p.weight for _, p in sent if p.small)
        if used + req.weight > self.per_window:
            excess = used + req.weight - self.per_window
            acc = 0
            for at, p in sent:
                if not p.small:
                    continue
                acc += p.weight
                if acc >= excess:
                    t = max(t, at + self.window_s)
                    break
        return t

    def sent_now(self, req: HistoricalRequest, now: float) -> None:
        """Record that ``req`` went out at ``now`` (it stays open until ``finished``)."""
        self._sent.append((now, req))
        self.open += 1

    def finished(self) -> None:
        """A historical request completed (its end message or an error arrived)."""
        self.open = max(0, self.open - 1)


def _same_series(a: HistoricalRequest, b: HistoricalRequest) -> bool:
    return (a.contract_key, a.exchange, a.what_to_show) == (
        b.contract_key,
        b.exchange,
        b.what_to_show,
    )


def _small_bars(bar_size: str) -> bool:
    """``"30 secs"`` and shorter, or anything that is not a bar size of seconds or more."""
    count, _, unit = bar_size.strip().partition(" ")
    if not count.isdigit() or not unit:
        return True  # tick data, or a size IB would refuse anyway: counted
    if unit.startswith("sec"):
        return int(count) <= 30
    return not unit.startswith(("min", "hour", "day", "week", "month"))
