"""Historical bars: time parsing, request validation, keep-up-to-date bookkeeping, and end to
end against the gateway simulator over loopback (bars, updates, pacing, IB's errors)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from ibapi.common import BarData
from ibapi.contract import Contract
from ibapi.server_versions import MAX_CLIENT_VER

from adapters.ib.contracts import ContractSpec
from adapters.ib.history import Bar, HistoryClient, HistoryError, parse_bar_time, validate
from adapters.ib.pacing import HistoricalPacer
from tests.ib_sim_support import sim_config
from tests.test_ib_contracts import ib_session, versioned

NS = 1_000_000_000


def _ns(*a: int) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp()) * NS


# ---- parsing and validation -----------------------------------------------------------------


def test_parse_bar_time_in_every_ib_format() -> None:
    assert parse_bar_time("1748871000", "US/Eastern") == 1748871000 * NS
    assert parse_bar_time("20250602", "US/Eastern") == _ns(2025, 6, 2, 4)  # midnight New York
    assert parse_bar_time("20250602", ZoneInfo("Asia/Tokyo")) == _ns(2025, 6, 1, 15)
    assert parse_bar_time("20250602 09:30:00", "US/Eastern") == _ns(2025, 6, 2, 13, 30)
    assert parse_bar_time("20250602  09:30:00", "US/Eastern") == _ns(2025, 6, 2, 13, 30)
    assert parse_bar_time("20250602 09:30:00 US/Central", "US/Eastern") == _ns(2025, 6, 2, 14, 30)
    assert parse_bar_time("20250102 09:30:00 America/New_York", UTC) == _ns(2025, 1, 2, 14, 30)
    with pytest.raises(ValueError, match="cannot read IB bar time '2025-06-02'"):
        parse_bar_time("2025-06-02", UTC)
    with pytest.raises(ValueError, match="IB time zone 'Nowhere/Land'"):
        parse_bar_time("20250602 09:30:00 Nowhere/Land", UTC)


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("", "1 day", "1 min", "TRADES", False), "duration '1 day'"),
        (("", "0 D", "1 min", "TRADES", False), "'<integer> <unit>'"),
        (("", "1 D", "1 mins", "TRADES", False), r"bar_size '1 mins'.*1 secs, 5 secs"),
        (("", "1 D", "1 min", "LAST", False), "what_to_show 'LAST'"),
        (("2025-06-02", "1 D", "1 min", "TRADES", False), "end '2025-06-02'"),
        (("20250602-16:00:00", "1 D", "1 min", "TRADES", True), "keep_up_to_date needs end=''"),
        (("", "60 S", "1 secs", "TRADES", True), "5 secs or longer"),
    ],
)
def test_validate_refuses_what_ib_would(args, text) -> None:
    with pytest.raises(ValueError, match=text):
        validate(*args)


def test_validate_accepts_ib_forms() -> None:
    validate("", "3600 S", "1 min", "TRADES", True)
    validate("20250602-16:00:00", "2 W", "1 hour", "MIDPOINT", False)
    validate("20250602 16:00:00 US/Eastern", "1 Y", "1 day", "BID_ASK", False)


def _bar(date: str, close: float, volume: int = 10) -> BarData:
    b = BarData()
    b.date, b.open, b.high, b.low, b.close = date, close, close, close, close
    b.volume, b.wap, b.barCount = Decimal(volume), Decimal(repr(close)), 1
    return b


class Wire:
    """Stands in for the socket side: runs each request on a recording client object."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def reqHistoricalData(self, *args) -> None:
        self.calls.append(("req", *args))

    def cancelHistoricalData(self, req_id: int) -> None:
        self.calls.append(("cancel", req_id))

    def send(self, fn) -> None:
        fn(self)


def aapl() -> Contract:
    c = Contract()
    c.conId, c.symbol, c.secType, c.exchange, c.currency = 265598, "AAPL", "STK", "SMART", "USD"
    return c


async def test_keep_up_to_date_replaces_the_last_bar_or_appends() -> None:
    wire = Wire()
    hist = HistoryClient(wire.send)
    seen: list[tuple[Bar, bool]] = []
    fut = hist.request(
        aapl(), duration="120 S", bar_size="1 min", keep_up_to_date=True,
        on_update=lambda bar, new: seen.append((bar, new)),
    )  # fmt: skip
    (_, req_id, _, end, duration, bar_size, what, rth, fmt, keep, _) = wire.calls[0]
    assert (req_id, end, duration, bar_size, what, rth, fmt, keep) == (
        fut.req_id, "", "120 S", "1 min", "TRADES", 1, 2, True,
    )  # fmt: skip
    hist.on_historical_data(req_id, _bar("1748871000", 1.0))
    hist.on_historical_data(req_id, _bar("1748871060", 2.0))
    hist.on_historical_data_end(req_id, "", "")
    bars = await fut
    assert [b.ts_utc_ns for b in bars] == [1748871000 * NS, 1748871060 * NS]
    assert bars[1] == Bar(1748871060 * NS, 2.0, 2.0, 2.0, 2.0, 10.0, 2.0, 1)
    hist.on_historical_data_update(req_id, _bar("1748871060", 2.5, 12))
    hist.on_historical_data_update(req_id, _bar("1748871120", 3.0, 1))
    hist.on_historical_data_update(req_id, _bar("1748871000", 9.0))  # stale: ignored
    assert [(b.close, new) for b, new in seen] == [(2.5, False), (3.0, True)]
    assert [b.close for b in hist.bars(req_id)] == [1.0, 2.5, 3.0]
    hist.cancel(req_id)
    assert wire.calls[-1] == ("cancel", req_id) and hist.bars(req_id) == []


async def test_a_kept_up_to_date_subscription_survives_a_lost_connection() -> None:
    """``fail_all`` keeps it; ``resubscribe`` asks again under a new id, back to its last bar;
    the re-request's bars fill the gap without delivering a bar time twice."""
    wire = Wire()
    hist = HistoryClient(wire.send)
    seen: list[tuple[float, bool]] = []
    fut = hist.request(
        aapl(), duration="60 S", bar_size="5 secs", keep_up_to_date=True,
        on_update=lambda bar, new: seen.append((bar.close, new)),
    )  # fmt: skip
    t0 = (int(time.time()) // 5 - 3) * 5  # the last bar delivered: 15 s ago
    first = fut.req_id
    for k, close in enumerate((1.0, 2.0, 3.0)):
        hist.on_historical_data(first, _bar(str(t0 - 10 + 5 * k), close))
    hist.on_historical_data_end(first, "", "")
    assert [b.close for b in await fut] == [1.0, 2.0, 3.0]
    hist.on_historical_data_update(first, _bar(str(t0), 3.5))  # the last bar, still forming
    assert seen == [(3.5, False)]
    hist.fail_all("the connection to IB was lost")
    assert hist.bars(first)[-1].close == 3.5 and not fut.cancelled()
    hist.on_historical_data_update(first, _bar(str(t0), 9.9))  # the dead session's: ignored
    assert hist.resubscribe(down_only=True) == 1
    (_, again, _, end, duration, bar_size, what, _, _, keep, _) = wire.calls[-1]
    assert again != first and (end, bar_size, what, keep) == ("", "5 secs", "TRADES", True)
    secs = int(duration.split()[0])
    assert duration.endswith(" S") and 20 <= secs <= 30  # back to the last bar, not "60 S"
    # The re-request's initial bars: an older one (delivered already), the last one with its
    # final values, the two missed while down; then its updates.
    for k, close in enumerate((2.0, 3.75, 4.0, 5.0)):
        hist.on_historical_data(again, _bar(str(t0 - 5 + 5 * k), close))
    hist.on_historical_data_update(again, _bar(str(t0 + 15), 5.5))  # before its end: held
    assert seen == [(3.5, False)]
    hist.on_historical_data_end(again, "", "")
    assert seen[1:] == [(3.75, False), (4.0, True), (5.0, True), (5.5, True)]
    hist.on_historical_data_update(again, _bar(str(t0 + 15), 6.0))
    hist.on_historical_data_update(first, _bar(str(t0 + 20), 9.9))  # the old id: ignored
    assert seen[-1] == (6.0, False)
    assert [b.close for b in hist.bars(first)] == [1.0, 2.0, 3.75, 4.0, 5.0, 6.0]
    assert hist.update_counts() == {first: 3}
    # Asked again while IB still holds it (1102, a farm blip): the old one is cancelled first.
    hist.resubscribe([first], cancel_first=True)
    assert wire.calls[-2] == ("cancel", again)
    newest = wire.calls[-1][1]
    assert hist.resubscribe(down_only=True) == 0  # none is down
    # It ends with an error only on IB's word, said loudly; the user's id cancels it.
    hist.cancel(first)
    assert wire.calls[-1] == ("cancel", newest) and fut.done() and hist.bars(first) == []


async def test_a_paced_re_request_reaches_back_from_when_it_goes() -> None:
    wire = Wire()
    clock = [1000.0]
    hist = HistoryClient(wire.send, lambda: clock[0])
    fut = hist.request(aapl(), duration="60 S", bar_size="5 secs", keep_up_to_date=True)
    last = int(time.time()) // 5 * 5
    hist.on_historical_data(fut.req_id, _bar(str(last), 1.0))
    hist.on_historical_data_end(fut.req_id, "", "")
    await fut
    others = [hist.request(aapl(), duration=f"{120 + k} S") for k in range(4)]
    hist.resubscribe()  # the sixth for AAPL within 2 s: IB's pacing holds it
    assert hist.queued == 1
    clock[0] += 2.3
    await asyncio.sleep(2.3)
    assert hist.queued == 0
    duration = wire.calls[-1][4]
    assert int(duration.split()[0]) >= time.time() - last + 5 - 0.5  # as of now, not then
    for f in others:
        hist.cancel(f.req_id)


async def test_a_subscription_down_when_cancelled_sends_nothing_an_error_ends_it(caplog) -> None:
    caplog.set_level(logging.ERROR, "tickwire.ib.history")
    wire = Wire()
    hist = HistoryClient(wire.send)
    fut = hist.request(aapl(), duration="60 S", bar_size="5 secs", keep_up_to_date=True)
    hist.on_historical_data(fut.req_id, _bar(str(int(time.time()) // 5 * 5), 1.0))
    hist.on_historical_data_end(fut.req_id, "", "")
    await fut
    hist.resubscribe()
    assert hist.on_error(wire.calls[-1][1], 162, "Historical Market Data Service error message:")
    (ended,) = [r.getMessage() for r in caplog.records if "no more updates" in r.getMessage()]
    assert "IB error 162" in ended and f"first {fut.req_id}" in ended
    assert hist.bars(fut.req_id) == []
    fut = hist.request(aapl(), duration="90 S", bar_size="5 secs", keep_up_to_date=True)
    hist.on_historical_data_end(fut.req_id, "", "")
    await fut
    plain = hist.request(aapl(), duration="120 S", bar_size="5 secs")
    hist.fail_all("the connection to IB was lost")
    with pytest.raises(HistoryError, match="connection to IB was lost"):
        await plain  # still waiting for its bars: failed, as before
    n = len(wire.calls)
    hist.cancel(fut.req_id)
    assert len(wire.calls) == n and hist.resubscribe() == 0


async def test_daily_bars_need_the_exchange_zone_and_use_date_format_1() -> None:
    wire = Wire()
    hist = HistoryClient(wire.send)
    with pytest.raises(ValueError, match="time_zone"):
        hist.request(aapl(), duration="1 M", bar_size="1 day")
    fut = hist.request(aapl(), duration="1 M", bar_size="1 day", time_zone="US/Eastern")
    assert wire.calls[0][8] == 1  # formatDate 1: IB dates daily bars as YYYYMMDD
    hist.on_historical_data(fut.req_id, _bar("20250602", 1.0))
    hist.on_historical_data_end(fut.req_id, "", "")
    assert (await fut)[0].ts_utc_ns == _ns(2025, 6, 2, 4)


async def test_requests_wait_for_the_pacer_instead_of_earning_162() -> None:
    wire = Wire()
    clock = [1000.0]
    hist = HistoryClient(wire.send, lambda: clock[0])
    futs = [hist.request(aapl(), duration=f"{60 * (k + 1)} S") for k in range(8)]
    assert len(wire.calls) == 5 and hist.queued == 3  # IB: no 6 for one contract within 2 s
    same = hist.request(aapl(), duration="60 S")  # identical to the first: 15 s apart
    for f in futs[:5]:
        hist.on_historical_data_end(f.req_id, "", "")
    assert hist.queued == 4
    clock[0] += 2.3
    await asyncio.sleep(2.3)
    assert len(wire.calls) == 8 and hist.queued == 1
    hist.cancel(same.req_id)
    assert same.cancelled() and hist.queued == 0 and len(wire.calls) == 8


async def test_an_error_fails_the_request_with_its_meaning() -> None:
    wire = Wire()
    hist = HistoryClient(wire.send)
    fut = hist.request(aapl())
    assert hist.on_error(fut.req_id, 2174, "Warning: no explicit time zone")
    assert not fut.done()
    assert not hist.on_error(fut.req_id + 1, 200, "not ours")
    assert hist.on_error(fut.req_id, 162, "Historical Market Data Service error message:"
                         "Historical data request pacing violation")  # fmt: skip
    with pytest.raises(HistoryError, match=r"IB error 162 for STK AAPL.*another client id") as e:
        await fut
    assert e.value.code == 162
    fut = hist.request(aapl(), duration="2 D")
    hist.on_error(fut.req_id, 366, "No historical data query found for ticker id")
    with pytest.raises(HistoryError, match="finished or was cancelled"):
        await fut
    fut = hist.request(aapl(), duration="3 D")
    hist.fail_all("connection lost")
    with pytest.raises(HistoryError, match="connection lost"):
        await fut
    assert hist.pacer.open == 0


# ---- end to end against the simulator -------------------------------------------------------


async def _qualified(ib, spec: ContractSpec) -> Contract:
    return (await ib.contracts.request(spec)).contract


AAPL = ContractSpec("STK", "AAPL", "SMART", currency="USD")


@pytest.mark.parametrize("version", [176, MAX_CLIENT_VER], ids=lambda v: f"v{v}")
async def test_one_minute_bars_in_utc(version: int) -> None:
    async with ib_session(versioned(version)) as ib:
        contract = await _qualified(ib, AAPL)
        bars = await asyncio.wait_for(ib.history.request(contract, duration="3600 S"), 5)
        assert len(bars) == 60
        ts = [b.ts_utc_ns for b in bars]
        assert all(b - a == 60 * NS for a, b in itertools.pairwise(ts))
        assert ts[-1] <= time.time_ns() < ts[-1] + 120 * NS
        assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)
        assert all(b.volume > 0 and b.count > 0 for b in bars)
        daily = await asyncio.wait_for(
            ib.history.request(contract, duration="5 D", bar_size="1 day", time_zone="US/Eastern"),
            5,
        )
        for b in daily:
            local = datetime.fromtimestamp(b.ts_utc_ns / NS, ZoneInfo("US/Eastern"))
            assert (local.hour, local.minute) == (0, 0)
        assert ib.router.errors == [e for e in ib.router.errors if e[0] == -1]


async def test_keep_up_to_date_delivers_updates_until_cancelled() -> None:
    config = sim_config(market={"events_per_second": 200.0})
    async with ib_session(config) as ib:
        contract = await _qualified(ib, AAPL)
        updates: list[tuple[Bar, bool]] = []
        got = asyncio.Event()

        def on_update(bar: Bar, new: bool) -> None:
            updates.append((bar, new))
            if len(updates) >= 5:
                got.set()

        fut = ib.history.request(
            contract, duration="300 S", bar_size="5 secs", keep_up_to_date=True,
            on_update=on_update,
        )  # fmt: skip
        bars = await asyncio.wait_for(fut, 5)
        assert len(bars) == 60
        await asyncio.wait_for(got.wait(), 5)
        last = bars[-1].ts_utc_ns
        assert all(b.ts_utc_ns >= last and b.ts_utc_ns % (5 * NS) == 0 for b, _ in updates)
        kept = ib.history.bars(fut.req_id)
        assert kept[-1] == updates[-1][0] and len(kept) >= len(bars)
        ib.history.cancel(fut.req_id)
        await asyncio.sleep(0.1)  # what was already on the wire
        n = len(updates)
        await asyncio.sleep(0.3)
        assert len(updates) == n
        assert not any(code == 366 for _, code, _ in ib.router.errors)


async def test_eight_quick_requests_for_one_contract_are_paced_not_refused() -> None:
    async with ib_session(sim_config()) as ib:
        contract = await _qualified(ib, AAPL)
        futs = [ib.history.request(contract, duration=f"{600 + 60 * k} S") for k in range(8)]
        assert ib.history.queued == 3
        results = await asyncio.wait_for(asyncio.gather(*futs), 10)
        assert [len(r) for r in results] == [10 + k for k in range(8)]
        assert not [e for e in ib.router.errors if e[1] == 162]


async def test_without_pacing_the_simulator_answers_162() -> None:
    # The control for the test above: the same burst, pacer disabled, is refused.
    lax = HistoricalPacer(identical_s=0, same_contract=100, per_window=1000)
    async with ib_session(sim_config(), pacer=lax) as ib:
        contract = await _qualified(ib, AAPL)
        futs = [ib.history.request(contract, duration=f"{600 + 60 * k} S") for k in range(6)]
        done = await asyncio.wait_for(asyncio.gather(*futs, return_exceptions=True), 5)
        assert all(isinstance(r, list) for r in done[:5])
        assert isinstance(done[5], HistoryError) and done[5].code == 162
        assert "pacing violation" in str(done[5]) and "another client id" in str(done[5])


async def test_ib_errors_reach_the_request() -> None:
    async with ib_session(sim_config()) as ib:
        eur = await _qualified(ib, ContractSpec("CASH", "EUR", "IDEALPRO", currency="USD"))
        with pytest.raises(HistoryError, match=r"162.*no data.*MIDPOINT") as err:
            await asyncio.wait_for(ib.history.request(eur, duration="600 S"), 5)
        assert err.value.code == 162
        mid = await asyncio.wait_for(
            ib.history.request(eur, duration="600 S", what_to_show="MIDPOINT"), 5
        )
        assert len(mid) == 10 and all(b.volume == -1 for b in mid)
        unknown = Contract()
        unknown.symbol, unknown.secType, unknown.exchange, unknown.currency = (
            "ZZZZ", "STK", "SMART", "USD",
        )  # fmt: skip
        with pytest.raises(HistoryError, match=r"error 200.*qualify the contract first"):
            await asyncio.wait_for(ib.history.request(unknown), 5)
        assert ib.history.pacer.open == 0
