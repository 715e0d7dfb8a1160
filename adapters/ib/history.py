"""Historical bars from IB, and bars kept up to date, paced so IB never answers error 162.

``HistoryClient`` is sans-I/O: ``request`` validates the request, asks ``HistoricalPacer``
when it may go and either sends it through the venue's ``send(fn)`` at once or queues it on a
timer; the venue's ``EWrapper`` feeds IB's answers into the ``on_*`` methods, which resolve the
request's future with a list of ``Bar`` (UTC nanosecond timestamps). With ``keep_up_to_date``
the subscription stays open after the initial bars: each ``historicalDataUpdate`` replaces the
last bar (same start time) or appends a new one, and calls the subscription's ``on_update``.

Intraday bars are always requested with ``formatDate=2`` (epoch seconds, UTC) so no time zone
guessing is involved; daily and longer bars come as ``YYYYMMDD``, the trading day in the
exchange's zone, so those requests need the contract's ``time_zone``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import NamedTuple

from ibapi.client import EClient
from ibapi.common import BarData
from ibapi.const import UNSET_DECIMAL
from ibapi.contract import Contract

from .contracts import ib_zone
from .pacing import HistoricalPacer, HistoricalRequest

log = logging.getLogger("tickwire.ib.history")

NS = 1_000_000_000

BAR_SIZES = frozenset(
    {
        "1 secs", "5 secs", "10 secs", "15 secs", "30 secs",
        "1 min", "2 mins", "3 mins", "5 mins", "10 mins", "15 mins", "20 mins", "30 mins",
        "1 hour", "2 hours", "3 hours", "4 hours", "8 hours",
        "1 day", "1 week", "1 month",
    }
)  # fmt: skip
"""IB's legal ``barSizeSetting`` values."""

DAILY_BAR_SIZES = frozenset({"1 day", "1 week", "1 month"})

WHAT_TO_SHOW = frozenset(
    {
        "TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST", "HISTORICAL_VOLATILITY",
        "OPTION_IMPLIED_VOLATILITY", "FEE_RATE", "SCHEDULE", "AGGTRADES",
    }
)  # fmt: skip

_DURATION = re.compile(r"^([1-9][0-9]*) ([SDWMY])$")
_END = re.compile(r"^\d{8}([ -])\d{2}:\d{2}:\d{2}( \S+)?$")

#: What IB's historical error codes mean for the user.
_HINTS = {
    200: "no security definition: qualify the contract first (adapters.ib.contracts)",
    321: "IB rejected the request as malformed",
    366: "IB has no such query open (it finished or was cancelled already)",
}


class Bar(NamedTuple):
    """One bar; ``volume``/``wap``/``count`` are -1 where IB has none (non-TRADES bars)."""

    ts_utc_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float
    count: int


class HistoryError(RuntimeError):
    """IB refused or failed a historical request; ``code`` is IB's error code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        super().__init__(message)


def parse_bar_time(text: str, tz: tzinfo | str) -> int:
    """A bar's date as UTC epoch nanoseconds.

    IB's forms: epoch seconds (``formatDate=2``); ``YYYYMMDD`` (daily bars: the day's
    midnight in ``tz``, the exchange's zone); ``YYYYMMDD HH:MM:SS`` (in ``tz``) and
    ``YYYYMMDD HH:MM:SS Zone/Name`` (in the zone named).
    """
    text = text.strip()
    if text.isdigit() and len(text) != 8:
        return int(text) * NS
    zone = ib_zone(tz) if isinstance(tz, str) else tz
    parts = text.split()
    try:
        if len(parts) == 1:
            local = datetime.strptime(parts[0], "%Y%m%d")
        elif len(parts) in (2, 3):
            local = datetime.strptime(f"{parts[0]} {parts[1]}", "%Y%m%d %H:%M:%S")
            if len(parts) == 3:
                zone = ib_zone(parts[2])
        else:
            raise ValueError("too many fields")
    except ValueError as e:
        raise ValueError(
            f"cannot read IB bar time {text!r} ({e}); expected epoch seconds, 'YYYYMMDD' or "
            "'YYYYMMDD HH:MM:SS [Zone]'"
        ) from None
    return int(local.replace(tzinfo=zone).timestamp()) * NS


def validate(
    end: str, duration: str, bar_size: str, what_to_show: str, keep_up_to_date: bool
) -> None:
    """``ValueError`` naming the argument IB would refuse (error 321) and its legal values."""
    if not _DURATION.match(duration):
        raise ValueError(
            f"duration {duration!r} is not IB's '<integer> <unit>', unit S (seconds), D (days), "
            "W (weeks), M (months) or Y (years), e.g. '1 D' or '3600 S'"
        )
    if bar_size not in BAR_SIZES:
        raise ValueError(
            f"bar_size {bar_size!r} is not one of IB's bar sizes: {', '.join(_ordered_sizes())}"
        )
    if what_to_show not in WHAT_TO_SHOW:
        raise ValueError(
            f"what_to_show {what_to_show!r} is not one of {', '.join(sorted(WHAT_TO_SHOW))}"
        )
    if end and not _END.match(end):
        raise ValueError(
            f"end {end!r} is not 'YYYYMMDD-HH:MM:SS' (UTC) or 'YYYYMMDD HH:MM:SS Zone/Name' "
            "(or '' for now)"
        )
    if keep_up_to_date:
        if end:
            raise ValueError("keep_up_to_date needs end='' (IB only keeps bars up to now)")
        if bar_size == "1 secs":
            raise ValueError("keep_up_to_date needs bars of 5 secs or longer")


def _ordered_sizes() -> list[str]:
    unit = {"secs": 1, "min": 60, "mins": 60, "hour": 3600, "hours": 3600, "day": 86_400,
            "week": 604_800, "month": 2_592_000}  # fmt: skip
    return sorted(BAR_SIZES, key=lambda s: int(s.split()[0]) * unit[s.split()[1]])


def _end_text(end: str | datetime) -> str:
    if isinstance(end, datetime):
        if end.tzinfo is None:
            raise ValueError("end must be a timezone-aware datetime (or an IB time string)")
        return f"{end.astimezone(UTC):%Y%m%d-%H:%M:%S}"
    return end.strip()


def _decimal(x: object) -> float:
    return -1.0 if x is None or x == UNSET_DECIMAL else float(x)  # type: ignore[arg-type]


class BarsFuture(asyncio.Future):  # type: ignore[type-arg]
    """The future of a historical request; ``req_id`` is what ``cancel`` takes."""

    req_id: int


@dataclass(slots=True, eq=False)
class _Req:
    req_id: int
    contract: Contract
    end: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: bool
    format_date: int
    keep_up_to_date: bool
    zone: tzinfo
    pacing: HistoricalRequest
    future: BarsFuture
    on_update: Callable[[Bar, bool], None] | None
    bars: list[Bar] = field(default_factory=list)
    #: "queued" (not sent yet), "open" (bars coming), "live" (keepUpToDate after its end)
    state: str = "queued"

    def describe(self) -> str:
        c = self.contract
        name = c.localSymbol or c.symbol
        return (
            f"{c.secType} {name} (conId {c.conId}) {self.bar_size} {self.what_to_show} bars "
            f"over {self.duration} to {self.end or 'now'} (reqId {self.req_id})"
        )


class HistoryClient:
    """Historical bar requests over one IB connection, paced, with their answers as futures.

    ``send(fn)`` calls ``fn(client)`` on the venue's ``EClient`` and writes (paces) the bytes;
    ``now()`` is the clock in seconds the pacing runs on (the event loop's by default).
    ``slack_s`` widens IB's pacing windows so network jitter never turns "just in time" into
    a violation.
    """

    def __init__(
        self,
        send: Callable[[Callable[[EClient], None]], None],
        now: Callable[[], float] | None = None,
        *,
        pacer: HistoricalPacer | None = None,
        slack_s: float = 0.25,
        first_req_id: int = 1_000_000_000,
    ) -> None:
        self._send = send
        self._now = now
        self.pacer = pacer or HistoricalPacer(
            identical_s=15.0 + slack_s, same_contract_s=2.0 + slack_s, window_s=600.0 + slack_s
        )
        self._next_id = first_req_id
        self._reqs: dict[int, _Req] = {}
        self._timer: asyncio.TimerHandle | None = None

    def _clock(self) -> float:
        return self._now() if self._now is not None else asyncio.get_running_loop().time()

    @property
    def queued(self) -> int:
        """Requests waiting for the pacer."""
        return sum(1 for r in self._reqs.values() if r.state == "queued")

    def request(
        self,
        contract: Contract,
        end: str | datetime = "",
        duration: str = "1 D",
        bar_size: str = "1 min",
        what_to_show: str = "TRADES",
        use_rth: bool = True,
        keep_up_to_date: bool = False,
        *,
        time_zone: str = "",
        on_update: Callable[[Bar, bool], None] | None = None,
    ) -> BarsFuture:
        """Ask for bars; the future resolves to them, oldest first, or fails (``HistoryError``).

        ``contract`` should be qualified (conId set). ``time_zone`` (IB's ``timeZoneId``,
        ``Qualified.time_zone``) is needed for daily and longer bars. With
        ``keep_up_to_date``, ``on_update(bar, new_bar)`` is called for every update after the
        future resolved; ``new_bar`` says the previous bar is complete.
        """
        end_text = _end_text(end)
        validate(end_text, duration, bar_size, what_to_show, keep_up_to_date)
        daily = bar_size in DAILY_BAR_SIZES
        if daily and not time_zone:
            raise ValueError(
                f"{bar_size} bars are dated in the exchange's time zone: pass time_zone "
                "(the contract's timeZoneId, Qualified.time_zone)"
            )
        zone = ib_zone(time_zone) if time_zone else UTC
        loop = asyncio.get_running_loop()
        fut = BarsFuture(loop=loop)
        req_id = fut.req_id = self._next_id
        self._next_id += 1
        key = contract.conId or (
            contract.symbol, contract.secType, contract.localSymbol, contract.currency,
            contract.lastTradeDateOrContractMonth, contract.strike, contract.right,
        )  # fmt: skip
        pacing = HistoricalRequest(
            key, contract.exchange, what_to_show, end_text, duration, bar_size
        )
        self._reqs[req_id] = _Req(
            req_id, contract, end_text, duration, bar_size, what_to_show, use_rth,
            1 if daily else 2, keep_up_to_date, zone, pacing, fut, on_update,
        )  # fmt: skip
        self._pump()
        return fut

    # -- pacing -------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Send every queued request the pacer allows now; wake up for the next one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._clock()
        wake: float | None = None
        for r in [r for r in self._reqs.values() if r.state == "queued"]:
            at = self.pacer.earliest(r.pacing, now)
            if at is None:  # too many open: ``finished`` pumps again
                continue
            if at <= now:
                self._transmit(r, now)
            else:
                wake = at if wake is None else min(wake, at)
        if wake is not None:
            self._timer = asyncio.get_running_loop().call_later(wake - now, self._pump)

    def _transmit(self, r: _Req, now: float) -> None:
        r.state = "open"
        self.pacer.sent_now(r.pacing, now)
        args = (
            r.req_id, r.contract, r.end, r.duration, r.bar_size, r.what_to_show,
            int(r.use_rth), r.format_date, r.keep_up_to_date, [],
        )  # fmt: skip
        self._send(lambda client: client.reqHistoricalData(*args))

    def _finish(self, r: _Req) -> None:
        """``r``'s query is over at IB (end, error or cancel): free its pacing slot."""
        if r.state == "open":
            self.pacer.finished()
            if any(q.state == "queued" for q in self._reqs.values()):
                self._pump()

    # -- IB's answers ---------------------------------------------------------------------------

    def _bar(self, r: _Req, bar: BarData) -> Bar:
        return Bar(
            parse_bar_time(bar.date, r.zone), bar.open, bar.high, bar.low, bar.close,
            _decimal(bar.volume), _decimal(bar.wap), int(bar.barCount),
        )  # fmt: skip

    def on_historical_data(self, req_id: int, bar: BarData) -> None:
        r = self._reqs.get(req_id)
        if r is not None and r.state == "open":
            r.bars.append(self._bar(r, bar))

    def on_historical_data_end(self, req_id: int, start: str, end: str) -> None:
        r = self._reqs.get(req_id)
        if r is None or r.state != "open":
            return
        self._finish(r)
        if r.keep_up_to_date:
            r.state = "live"
        else:
            del self._reqs[req_id]
        if not r.future.done():
            r.future.set_result(list(r.bars))

    def on_historical_data_update(self, req_id: int, bar: BarData) -> None:
        r = self._reqs.get(req_id)
        if r is None or not r.keep_up_to_date or r.state == "queued":
            return
        b = self._bar(r, bar)
        bars = r.bars
        new_bar = not bars or bars[-1].ts_utc_ns != b.ts_utc_ns
        if new_bar:
            if bars and b.ts_utc_ns < bars[-1].ts_utc_ns:
                return  # a stale update of an older bar; IB only ever updates the newest
            bars.append(b)
        else:
            bars[-1] = b
        if r.state == "live" and r.on_update is not None:
            r.on_update(b, new_bar)

    def bars(self, req_id: int) -> list[Bar]:
        """The bars of an open or kept-up-to-date request so far (a copy)."""
        r = self._reqs.get(req_id)
        return list(r.bars) if r is not None else []

    def on_error(self, req_id: int, code: int, msg: str) -> bool:
        """Fail request ``req_id`` with a clear error; False when it is not one of ours."""
        r = self._reqs.get(req_id)
        if r is None:
            return False
        if code == 165 or 2100 <= code < 2200:  # HMDS notices and warnings: not a failure
            log.info("IB notice %d for %s: %s", code, r.describe(), msg)
            return True
        del self._reqs[req_id]
        self._finish(r)
        error = HistoryError(code, self._explain(r, code, msg))
        if r.future.done():  # a kept-up-to-date subscription ended
            log.warning("%s", error)
        else:
            r.future.set_exception(error)
        return True

    @staticmethod
    def _explain(r: _Req, code: int, msg: str) -> str:
        head = f"IB error {code} for {r.describe()}: {msg}"
        if code == 162:
            low = msg.lower()
            if "pacing" in low:
                return (
                    f"{head} — IB's historical pacing (no identical request within 15 s, under "
                    "6 per contract in 2 s, 60 per 10 minutes) was exceeded although this client "
                    "paces itself: another client id is probably asking for the same data"
                )
            if "no data" in low:
                return (
                    f"{head} — nothing in that window: check end, duration and use_rth, and "
                    "what_to_show (FX has no TRADES; use MIDPOINT)"
                )
            return f"{head} — the historical data farm (HMDS) failed the query"
        hint = _HINTS.get(code)
        return f"{head} — {hint}" if hint else head

    def cancel(self, req_id: int) -> None:
        """Stop a request: drop it if still queued, else ``cancelHistoricalData``."""
        r = self._reqs.pop(req_id, None)
        if r is None:
            return
        if r.state != "queued":
            self._send(lambda client: client.cancelHistoricalData(req_id))
            self._finish(r)
        r.future.cancel()

    def fail_all(self, reason: str) -> None:
        """The connection went: fail every request and subscription (resubscribe later)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        reqs, self._reqs = list(self._reqs.values()), {}
        for r in reqs:
            self._finish(r)
            if not r.future.done():
                r.future.set_exception(HistoryError(0, f"{r.describe()}: {reason}"))


__all__ = [
    "BAR_SIZES",
    "WHAT_TO_SHOW",
    "Bar",
    "BarsFuture",
    "HistoryClient",
    "HistoryError",
    "parse_bar_time",
    "validate",
]
