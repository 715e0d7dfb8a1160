"""Historical bars from IB, and bars kept up to date, paced so IB never answers error 162.

``HistoryClient`` is sans-I/O: ``request`` validates the request, asks ``HistoricalPacer``
when it may go and either sends it through the venue's ``send(fn)`` at once or queues it on a
timer; the venue's ``EWrapper`` feeds IB's answers into the ``on_*`` methods, which resolve the
request's future with a list of ``Bar`` (UTC nanosecond timestamps). With ``keep_up_to_date``
the subscription stays open after the initial bars: each ``historicalDataUpdate`` replaces the
last bar (same start time) or appends a new one, and calls the subscription's ``on_update``.

A kept-up-to-date subscription outlives the connection: ``fail_all`` keeps it, and
``resubscribe`` (after a reconnect, 1101, or a historical farm blip its data did not survive)
asks IB for it again under a new request id, over a duration that reaches back to its last bar.
The user's id (``BarsFuture.req_id``) stays what ``bars`` and ``cancel`` take. The re-request's
initial bars fill the gap: bars older than the last one delivered are skipped, the last one is
updated if it changed (it may have been still forming), newer ones are delivered as new bars.

Intraday bars are always requested with ``formatDate=2`` (epoch seconds, UTC) so no time zone
guessing is involved; daily and longer bars come as ``YYYYMMDD``, the trading day in the
exchange's zone, so those requests need the contract's ``time_zone``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Callable, Collection
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
_UNIT_S = {"secs": 1, "min": 60, "mins": 60, "hour": 3600, "hours": 3600, "day": 86_400,
           "week": 604_800, "month": 2_592_000}  # fmt: skip
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
    return sorted(BAR_SIZES, key=_bar_seconds)


def _bar_seconds(bar_size: str) -> int:
    n, unit = bar_size.split()
    return int(n) * _UNIT_S[unit]


#: The longest duration IB serves in one request for bars of up to so many seconds (its table
#: of valid duration and bar size settings).
_MAX_BACK_S = ((4, 1800), (5, 3600), (15, 14_400), (30, 28_800), (60, 86_400),
               (120, 172_800), (1200, 604_800), (28_800, 2_592_000))  # fmt: skip


def _max_back_s(bar_s: int) -> int:
    return next((limit for size, limit in _MAX_BACK_S if bar_s <= size), 31_536_000)


def _reaching(seconds: float) -> str:
    """A duration reaching ``seconds`` back (IB takes up to 86,400 S; beyond that days)."""
    if seconds <= 86_400:
        return f"{math.ceil(seconds)} S"
    return f"{math.ceil(seconds / 86_400)} D"


def _pacing_key(contract: Contract) -> object:
    return contract.conId or (
        contract.symbol, contract.secType, contract.localSymbol, contract.currency,
        contract.lastTradeDateOrContractMonth, contract.strike, contract.right,
    )  # fmt: skip


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
    req_id: int  # the user's (``BarsFuture.req_id``)
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
    #: "queued" (not sent yet), "open" (bars coming), "live" (keepUpToDate after its end),
    #: "down" (keepUpToDate, its connection lost: waiting for ``resubscribe``)
    state: str = "queued"
    #: The request id IB knows it by: ``req_id`` until it is asked for again (``resubscribe``).
    wire_id: int = 0
    #: A re-request's initial bars, merged into ``bars`` at its end.
    refill: list[Bar] = field(default_factory=list)
    #: ``historicalDataUpdate`` messages taken (a check that the data flows).
    updates: int = 0

    def describe(self) -> str:
        c = self.contract
        name = c.localSymbol or c.symbol
        ids = f"reqId {self.wire_id}" + (
            f", first {self.req_id}" if self.wire_id != self.req_id else ""
        )
        return (
            f"{c.secType} {name} (conId {c.conId}) {self.bar_size} {self.what_to_show} bars "
            f"over {self.duration} to {self.end or 'now'} ({ids})"
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
        pacing = HistoricalRequest(
            _pacing_key(contract), contract.exchange, what_to_show, end_text, duration, bar_size
        )
        self._reqs[req_id] = _Req(
            req_id, contract, end_text, duration, bar_size, what_to_show, use_rth,
            1 if daily else 2, keep_up_to_date, zone, pacing, fut, on_update, wire_id=req_id,
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
        if r.future.done():  # asked for again: from its last bar to now, as now is
            self._reach_back(r)
        r.state = "open"
        self.pacer.sent_now(r.pacing, now)
        args = (
            r.wire_id, r.contract, r.end, r.duration, r.bar_size, r.what_to_show,
            int(r.use_rth), r.format_date, r.keep_up_to_date, [],
        )  # fmt: skip
        self._send(lambda client: client.reqHistoricalData(*args))

    def _reach_back(self, r: _Req, warn: bool = True) -> None:
        """A re-request's duration: just back to its last bar (less to send, and not the
        identical request IB, and so the pacer, would hold back for 15 s), as far as IB serves
        bars of its size in one request."""
        if r.bars:
            bar_s = _bar_seconds(r.bar_size)
            last = r.bars[-1].ts_utc_ns
            back_s = (time.time_ns() - last) / NS + bar_s
            if back_s > _max_back_s(bar_s):
                back_s = _max_back_s(bar_s)
                if warn:
                    log.warning(
                        "%s: down since its bar of %s UTC, longer than IB serves %s bars for "
                        "in one request (%d s): the bars before that are not filled in",
                        r.describe(), datetime.fromtimestamp(last / NS, UTC), r.bar_size,
                        back_s,
                    )  # fmt: skip
            r.duration = _reaching(back_s)
        r.pacing = HistoricalRequest(
            _pacing_key(r.contract), r.contract.exchange, r.what_to_show, r.end, r.duration,
            r.bar_size,
        )  # fmt: skip

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
            # A re-request's bars are held until its end, then merged (``_refilled``).
            (r.refill if r.future.done() else r.bars).append(self._bar(r, bar))

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
        else:
            self._refilled(r)

    def _refilled(self, r: _Req) -> None:
        """Merge a re-request's initial bars: what was missed while it was down is delivered,
        nothing already delivered is delivered again."""
        bars, fresh = r.bars, r.refill
        r.refill = []
        last = bars[-1].ts_utc_ns if bars else -1
        missed = 0
        for b in fresh:
            if b.ts_utc_ns < last:
                continue
            if b.ts_utc_ns == last:
                if b == bars[-1]:
                    continue
                bars[-1] = b
                new_bar = False
            else:
                bars.append(b)
                last = b.ts_utc_ns
                new_bar = True
                missed += 1
            if r.on_update is not None:
                r.on_update(b, new_bar)
        log.info("%s: kept up to date again (%d bars filled in)", r.describe(), missed)

    def on_historical_data_update(self, req_id: int, bar: BarData) -> None:
        r = self._reqs.get(req_id)
        if r is None or not r.keep_up_to_date or r.state in ("queued", "down"):
            return
        r.updates += 1
        b = self._bar(r, bar)
        resumed = r.state == "open" and r.future.done()  # before a re-request's end
        bars = r.refill if resumed else r.bars
        new_bar = not bars or bars[-1].ts_utc_ns != b.ts_utc_ns
        if new_bar:
            if bars and b.ts_utc_ns < bars[-1].ts_utc_ns:
                return  # a stale update of an older bar; IB only ever updates the newest
            bars.append(b)
        else:
            bars[-1] = b
        if r.state == "live" and r.on_update is not None:
            r.on_update(b, new_bar)

    def _find(self, req_id: int) -> _Req | None:
        """The request the user knows as ``req_id`` (asked for again under another id, IB's)."""
        r = self._reqs.get(req_id)
        if r is not None and r.req_id == req_id:
            return r
        return next((r for r in self._reqs.values() if r.req_id == req_id), None)

    def bars(self, req_id: int) -> list[Bar]:
        """The bars of an open or kept-up-to-date request so far (a copy)."""
        r = self._find(req_id)
        return list(r.bars) if r is not None else []

    def on_error(self, req_id: int, code: int, msg: str) -> bool:
        """Fail request ``req_id`` (IB's id) with a clear error; False when it is not ours."""
        r = self._reqs.get(req_id)
        if r is None:
            return False
        if code == 165 or 2100 <= code < 2200:  # HMDS notices and warnings: not a failure
            log.info("IB notice %d for %s: %s", code, r.describe(), msg)
            return True
        del self._reqs[req_id]
        self._finish(r)
        error = HistoryError(code, self._explain(r, code, msg))
        if r.future.done():  # a kept-up-to-date subscription ended: its updates stop here
            log.error("%s (no more updates: request the bars again)", error)
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
        """Stop a request (``BarsFuture.req_id``): drop it if still queued or its connection
        is down, else ``cancelHistoricalData``."""
        r = self._find(req_id)
        if r is None:
            return
        del self._reqs[r.wire_id]
        if r.state in ("open", "live"):
            wire_id = r.wire_id
            self._send(lambda client: client.cancelHistoricalData(wire_id))
            self._finish(r)
        r.future.cancel()

    def fail_all(self, reason: str) -> None:
        """The connection went: fail every request still waiting for its bars; keep the
        kept-up-to-date subscriptions that had theirs, for ``resubscribe``."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        reqs, self._reqs = list(self._reqs.values()), {}
        for r in reqs:
            self._finish(r)
            if r.keep_up_to_date and r.future.done():
                r.state = "down"
                r.refill = []
                self._reqs[r.wire_id] = r
                log.info("%s: %s; asked for again after the reconnect", r.describe(), reason)
            elif not r.future.done():
                r.future.set_exception(HistoryError(0, f"{r.describe()}: {reason}"))

    def update_counts(self) -> dict[int, int]:
        """Updates taken so far by each kept-up-to-date subscription streaming now, by the
        user's id: what a later call must exceed for its data to have flowed meanwhile."""
        return {r.req_id: r.updates for r in self._reqs.values() if r.state == "live"}

    def resubscribe(
        self,
        req_ids: Collection[int] | None = None,
        *,
        cancel_first: bool = False,
        down_only: bool = False,
    ) -> int:
        """Ask IB again for the kept-up-to-date subscriptions (those of ``req_ids``, users'
        ids; default all) under new request ids; returns how many. Each asks back to its last
        bar (``_reach_back``), so its initial bars fill what was missed. ``cancel_first``: IB
        may still hold the old one (1102, a farm blip), so it is cancelled first.
        ``down_only``: only those kept through a lost connection (``fail_all``), after the
        reconnect (one made since is already on the new session).
        """
        again = [
            r for r in self._reqs.values()
            if r.keep_up_to_date and r.future.done() and r.state != "queued"
            and (req_ids is None or r.req_id in req_ids)
            and (r.state == "down" or not down_only)
        ]  # fmt: skip
        for r in again:
            del self._reqs[r.wire_id]
            if cancel_first and r.state in ("open", "live"):
                self._send(lambda client, old=r.wire_id: client.cancelHistoricalData(old))
            self._finish(r)
            self._reach_back(r, warn=False)
            r.wire_id = self._next_id
            self._next_id += 1
            r.refill = []
            r.state = "queued"
            self._reqs[r.wire_id] = r
            log.info("%s: asked for again", r.describe())
        if again:
            self._pump()
        return len(again)


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
