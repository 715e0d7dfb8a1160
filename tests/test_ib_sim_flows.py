"""End-to-end flows through the wire: the official ibapi client against the gateway simulator.

Market data types and snapshots, depth, tick-by-tick, historical bars, order types, the
``[orders]`` options, the account stream, scripted faults, the control interface and the
``tickwire gateway-sim`` command. Most scenarios run at server version 176 (text protocol) and
at the newest version the pinned ibapi speaks (protobuf), over a real loopback socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from ibapi.const import UNSET_DECIMAL
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel
from ibapi.server_versions import MAX_CLIENT_VER
from ibapi.tag_value import TagValue

from tests.ib_sim_support import RecordingApp, SimThread, connected, sim_config

VERSIONS = [176, MAX_CLIENT_VER]
ACCOUNT = "DU1234567"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
def version(request: pytest.FixtureRequest) -> int:
    return request.param


@contextlib.contextmanager
def running(version: int, **sections: Any) -> Iterator[SimThread]:
    """A simulator offering up to ``version``, with a fast market and ``sections`` merged in."""
    gateway = {"max_server_version": version, **sections.pop("gateway", {})}
    market = {"events_per_second": 200.0, **sections.pop("market", {})}
    with SimThread(sim_config(gateway=gateway, market=market, **sections)) as sim:
        yield sim


# ---- contracts and orders -----------------------------------------------------------------------


def stock(symbol: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def es() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "ES", "FUT", "CME", "USD"
    return c


def eurusd() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "EUR", "CASH", "IDEALPRO", "USD"
    return c


def order(action: str, qty: float, kind: str = "MKT", **fields: Any) -> Order:
    o = Order()
    o.action, o.orderType, o.totalQuantity, o.tif = action, kind, Decimal(qty), "DAY"
    for key, value in fields.items():
        setattr(o, key, value)
    return o


def book(sim: SimThread, contract: Contract):
    """The simulator's book for ``contract`` right now (``market.BookView``)."""
    core = sim.server.core
    return sim.call(lambda: core.market.book(core.market.resolve(contract)[0].con_id))


def jump_clock(sim: SimThread, seconds: float) -> None:
    """Move the simulator's clock ``seconds`` ahead of the wall clock (the market catches up
    with at most its per-tick cap of steps, timers fire as their time comes)."""
    core = sim.server.core
    offset = int(seconds * 1e9)
    sim.call(lambda: setattr(core, "clock", lambda: time.time_ns() + offset))


def sync(app: RecordingApp) -> None:
    """Round-trip reqCurrentTime: everything sent before the answer has arrived."""
    mark = len(app.calls)
    app.reqCurrentTime()
    app.wait("currentTime", since=mark)


def count(app: RecordingApp, name: str, req_id: int) -> int:
    return len([a for a in app.all(name) if a[0] == req_id])


def ticks(app: RecordingApp, req_id: int, *names: str) -> list[tuple[Any, ...]]:
    return [a for name in names for a in app.all(name) if a[0] == req_id]


def codes(app: RecordingApp, req_id: int | None = None) -> list[int]:
    return [c for rid, c, _ in app.errors() if req_id is None or rid == req_id]


def statuses(app: RecordingApp, oid: int) -> list[str]:
    return [a[1] for a in app.all("orderStatus") if a[0] == oid]


def execs(app: RecordingApp, oid: int) -> list[Any]:
    """The fills (``Execution``) of order ``oid`` pushed with reqId -1."""
    return [e for rid, _, e in app.all("execDetails") if rid == -1 and e.orderId == oid]


def reports(app: RecordingApp) -> dict[str, Any]:
    """The commission reports so far, by execId."""
    return {r.execId: r for (r,) in app.all("commissionAndFeesReport")}


def wait_status(app: RecordingApp, oid: int, status: str, timeout: float = 5.0) -> Any:
    return app.wait("orderStatus", lambda i, st, *a: i == oid and st == status, timeout)


# ---- 1. market data types -----------------------------------------------------------------------


def test_delayed_only_symbol_by_market_data_type(version: int) -> None:
    with running(version, market={"delayed_only": ["MSFT"]}) as sim, connected(sim) as app:
        app.reqMarketDataType(1)
        app.reqMktData(21, stock("MSFT"), "", False, False, [])
        app.wait("error", lambda rid, t, code, *a: rid == 21 and code == 354)

        app.reqMarketDataType(3)
        app.reqMktData(22, stock("MSFT"), "", False, False, [])
        app.wait("error", lambda rid, t, code, *a: rid == 22 and code == 10167)
        app.wait("marketDataType", lambda rid, kind: rid == 22 and kind == 3)
        (_, _, bid, _) = app.wait("tickPrice", lambda rid, tt, *a: rid == 22 and tt == 66).args
        (_, _, ask, _) = app.wait("tickPrice", lambda rid, tt, *a: rid == 22 and tt == 67).args
        assert 0 < bid < ask
        app.wait("tickSize", lambda rid, tt, size: rid == 22 and tt == 69 and size > 0)
        app.wait("tickSize", lambda rid, tt, size: rid == 22 and tt == 70 and size > 0)
        n = len(ticks(app, 22, "tickPrice"))
        app.wait("tickPrice", lambda rid, *a: rid == 22 and len(ticks(app, 22, "tickPrice")) > n)

        app.reqMarketDataType(1)
        app.reqMktData(23, stock("AAPL"), "", False, False, [])
        app.wait("tickPrice", lambda rid, tt, *a: rid == 23 and tt == 1)
        app.wait("tickPrice", lambda rid, tt, *a: rid == 23 and tt == 2)
        app.cancelMktData(22)
        app.cancelMktData(23)
        sync(app)

        assert not ticks(app, 21, "tickPrice", "tickSize", "tickString", "tickReqParams")
        delayed = {a[1] for a in ticks(app, 22, "tickPrice", "tickSize")}
        assert delayed and delayed <= set(range(66, 77)), f"live tick types on delayed: {delayed}"
        live = {a[1] for a in ticks(app, 23, "tickPrice", "tickSize")}
        assert {1, 2} <= live and not live & set(range(66, 77))


# ---- 2. snapshots, generic ticks, ticker ids ----------------------------------------------------


def test_snapshot_then_end_and_nothing_after(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        app.reqMktData(32, stock("AAPL"), "", False, False, [])  # keeps AAPL's market moving
        app.wait("tickPrice", lambda rid, *a: rid == 32)
        app.reqMktData(31, stock("AAPL"), "", True, False, [])
        end = app.wait("tickSnapshotEnd", lambda rid: rid == 31)
        got = [c for c in app.calls[: app.calls.index(end)] if c.name == "tickPrice"]
        assert {1, 2} <= {c.args[1] for c in got if c.args[0] == 31}
        streamed = len(ticks(app, 32, "tickPrice"))
        before = len(ticks(app, 31, "tickPrice", "tickSize", "tickString", "tickGeneric"))
        app.wait(
            "tickPrice",
            lambda rid, *a: rid == 32 and len(ticks(app, 32, "tickPrice")) > streamed + 20,
        )
        after = len(ticks(app, 31, "tickPrice", "tickSize", "tickString", "tickGeneric"))
        assert after == before, "no ticks for a snapshot id after tickSnapshotEnd"
        app.cancelMktData(31)  # the snapshot is over: IB answers 300 for it
        app.wait("error", lambda rid, t, code, *a: rid == 31 and code == 300)


def test_generic_ticks_illegal_generic_and_duplicate_id(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        app.reqMktData(33, stock("AAPL"), "233,236", False, False, [])
        app.wait("tickGeneric", lambda rid, tt, v: rid == 33 and tt == 46 and v > 0)

        def rt_volume() -> list[str]:
            return [v for rid, tt, v in app.all("tickString") if rid == 33 and tt == 48]

        app.wait("tickString", lambda *a: len(rt_volume()) > 5)  # streams with the trades
        volumes = []
        for text in rt_volume()[1:]:  # the first describes the last print before subscribing
            price, size, stamp, volume, vwap, single = text.split(";")
            assert float(price) > 0 and float(size) > 0 and int(stamp) > 0
            assert float(vwap) > 0 and single in ("true", "false")
            volumes.append(float(volume))
        assert volumes == sorted(volumes) and volumes[-1] > volumes[0]

        app.reqMktData(34, stock("AAPL"), "233,4242", False, False, [])
        (_, _, code, text, _) = app.wait("error", lambda rid, t, code, *a: rid == 34).args
        assert code == 321 and "4242" in text
        assert not ticks(app, 34, "tickPrice", "tickReqParams")

        app.reqMktData(33, stock("MSFT"), "", False, False, [])
        app.wait("error", lambda rid, t, code, *a: rid == 33 and code == 322)
        sync(app)
        assert count(app, "tickReqParams", 33) == 1
        assert all(a[2] < 300 for a in ticks(app, 33, "tickPrice")), "AAPL (200), not MSFT (450)"


# ---- 3. depth -----------------------------------------------------------------------------------


def replay_depth(rows: list[tuple[Any, ...]]) -> dict[int, list[tuple[float, Decimal]]]:
    """Apply updateMktDepth(L2) rows (position, operation, side, price, size) as a client
    does, checking after every row that the book is sorted and uncrossed."""
    sides: dict[int, list[tuple[float, Decimal]]] = {0: [], 1: []}
    for i, (pos, op, side, price, size) in enumerate(rows):
        levels = sides[side]
        if op == 0:
            assert pos <= len(levels), f"row {i}: insert at {pos} beyond {len(levels)} levels"
            levels.insert(pos, (price, size))
        elif op == 1:
            assert pos < len(levels), f"row {i}: update at {pos} of {len(levels)} levels"
            levels[pos] = (price, size)
        else:
            assert op == 2 and pos < len(levels), f"row {i}: delete at {pos} of {len(levels)}"
            levels.pop(pos)
        asks = [p for p, _ in sides[0]]
        bids = [p for p, _ in sides[1]]
        assert asks == sorted(set(asks)) and bids == sorted(set(bids), reverse=True), f"row {i}"
        assert not (asks and bids and bids[0] >= asks[0]), f"row {i}: crossed {bids[0]}/{asks[0]}"
    return sides


def frozen_depth(sim: SimThread, app: RecordingApp, contract: Contract, rows: int):
    """Freeze the market (connectivity lost), drain the socket, return the server's top rows."""
    sim.fault("connectivity_lost", seconds=1.0)
    sync(app)  # answered after every row sent before the freeze
    b = book(sim, contract)
    return {0: b.asks[:rows], 1: b.bids[:rows]}


def test_depth_future_rows_replay_to_the_book(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        app.reqMktDepth(41, es(), 10, False, [])
        app.wait("updateMktDepth", lambda rid, *a: count(app, "updateMktDepth", 41) > 150)
        mark = len(app.calls)
        sim.fault("farm_blip", seconds=0.2)  # the market moves on while no rows are sent
        app.wait("error", lambda rid, t, code, *a: code == 2103, since=mark)
        app.wait("error", lambda rid, t, code, *a: code == 2104, since=mark)
        rows = count(app, "updateMktDepth", 41)
        app.wait("updateMktDepth", lambda rid, *a: count(app, "updateMktDepth", 41) > rows + 50)
        expected = frozen_depth(sim, app, es(), 10)
        assert not [a for a in app.all("updateMktDepthL2") if a[0] == 41], "a future is not L2"
        got = replay_depth([a[1:] for a in app.all("updateMktDepth") if a[0] == 41])
        assert got == expected
        assert len(got[0]) == len(got[1]) == 10


def test_smart_depth_l2_and_the_309_limit(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        app.reqMktDepth(42, stock("AAPL"), 5, True, [])
        first = app.wait("updateMktDepthL2", lambda rid, *a: rid == 42).args
        assert first[-1] is True and first[2]  # isSmartDepth, a market maker
        app.reqMktDepth(43, stock("MSFT"), 3, False, [])
        app.reqMktDepth(44, es(), 3, False, [])
        app.reqMktDepth(45, stock("SPY"), 3, False, [])
        app.wait("error", lambda rid, t, code, *a: rid == 45 and code == 309)
        app.wait("updateMktDepthL2", lambda rid, *a: count(app, "updateMktDepthL2", 42) > 200)
        expected = frozen_depth(sim, app, stock("AAPL"), 5)
        l2 = [a for a in app.all("updateMktDepthL2") if a[0] == 42]
        assert all(a[-1] is True for a in l2)
        makers = {a[2] for a in l2}
        assert len(makers) > 1 and all(makers)
        got = replay_depth([(a[1], a[3], a[4], a[5], a[6]) for a in l2])
        assert got == expected
        assert not [
            a for a in app.all("updateMktDepth") + app.all("updateMktDepthL2") if a[0] == 45
        ]
        app.cancelMktDepth(43, False)
        app.reqMktDepth(46, stock("SPY"), 3, False, [])  # a slot is free again
        app.wait("updateMktDepthL2", lambda rid, *a: rid == 46)


# ---- 4. tick-by-tick ----------------------------------------------------------------------------


def test_tick_by_tick_kinds(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        app.reqTickByTickData(51, stock("AAPL"), "BidAsk", 0, False)
        app.reqTickByTickData(52, stock("AAPL"), "MidPoint", 0, False)
        app.reqTickByTickData(53, stock("AAPL"), "Last", 0, False)
        app.reqTickByTickData(54, stock("AAPL"), "AllLast", 0, False)
        app.wait("tickByTickMidPoint", lambda rid, *a: count(app, "tickByTickMidPoint", 52) > 20)
        app.wait("tickByTickAllLast", lambda rid, tt, *a: rid == 53 and tt == 1)
        app.wait("tickByTickAllLast", lambda rid, tt, *a: rid == 54 and tt == 2)
        for rid in (52, 51, 53, 54):
            app.cancelTickByTickData(rid)
        sync(app)
        now = time.time()
        quotes = app.all("tickByTickBidAsk")
        for rid, t, bid, ask, bid_size, ask_size, _ in quotes:
            assert rid == 51 and 0 < bid < ask and bid_size > 0 and ask_size > 0
            assert abs(t - now) < 60
        mids = [mid for rid, _, mid in app.all("tickByTickMidPoint")]
        assert all(rid == 52 for rid, *_ in app.all("tickByTickMidPoint"))
        quoted = [(bid + ask) / 2 for _, _, bid, ask, *_ in quotes]
        # both streams saw the same quotes: the midpoints are a run of the quotes' midpoints
        starts = [i for i in range(len(quoted)) if quoted[i : i + len(mids)] == mids]
        assert starts, "every MidPoint tick is the midpoint of a BidAsk tick, in order"
        last = [a for a in app.all("tickByTickAllLast") if a[0] == 53]
        all_last = [a for a in app.all("tickByTickAllLast") if a[0] == 54]
        for rid, tt, _, price, size, _, exchange, _ in last + all_last:
            assert tt == (1 if rid == 53 else 2) and price > 0 and size > 0 and exchange
        lo, hi = min(b for _, _, b, *_ in quotes), max(a for _, _, _, a, *_ in quotes)
        assert all(lo <= a[3] <= hi for a in last), "trades print at the quotes"


# ---- 5. historical data -------------------------------------------------------------------------


def test_historical_bars_end_and_keep_up_to_date(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        app.reqHistoricalData(61, stock("AAPL"), "", "1800 S", "1 min", "TRADES", 1, 1, False, [])
        (_, start, end) = app.wait("historicalDataEnd", lambda rid, *a: rid == 61).args
        bars = [b for rid, b in app.all("historicalData") if rid == 61]
        assert len(bars) == 30 and start < end
        for b in bars:
            assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high and b.volume > 0
        assert [b.date for b in bars] == sorted(b.date for b in bars)

        app.reqHistoricalData(62, stock("MSFT"), "", "600 S", "1 min", "TRADES", 1, 2, True, [])
        app.wait("historicalDataEnd", lambda rid, *a: rid == 62)
        last = [b for rid, b in app.all("historicalData") if rid == 62][-1]
        assert int(last.date) % 60 == 0 and abs(int(last.date) - time.time()) < 120
        app.wait("historicalDataUpdate", lambda *a: count(app, "historicalDataUpdate", 62) > 3)
        updates = [b for rid, b in app.all("historicalDataUpdate") if rid == 62]
        for b in updates:
            assert b.low <= b.close <= b.high and b.volume > 0
        assert {b.date for b in updates} <= {last.date, str(int(last.date) + 60)}
        jump_clock(sim, max(0.0, int(last.date) + 60 - time.time() + 0.1))  # the next minute
        nxt = app.wait("historicalDataUpdate", lambda rid, b: b.date == str(int(last.date) + 60))
        new_bar = nxt.args[1]
        assert new_bar.barCount == 1 and new_bar.open == new_bar.close == new_bar.low
        app.cancelHistoricalData(62)

        app.reqHistoricalData(63, stock("AAPL"), "", "600 S", "7 mins", "TRADES", 1, 1, False, [])
        (_, _, code, text, _) = app.wait("error", lambda rid, *a: rid == 63).args
        assert code == 321 and "7 mins" in text

        app.reqHistoricalData(64, eurusd(), "", "3600 S", "5 mins", "MIDPOINT", 0, 2, True, [])
        app.wait("historicalDataEnd", lambda rid, *a: rid == 64)
        fx = [b for rid, b in app.all("historicalData") if rid == 64]
        assert len(fx) == 12 and all(0.5 < b.close < 2 for b in fx)
        assert all(b.date.isdigit() and int(b.date) % 300 == 0 for b in fx), "epoch seconds"
        # FX prints no trades: a MIDPOINT bar follows the quotes
        app.wait("historicalDataUpdate", lambda *a: count(app, "historicalDataUpdate", 64) > 3)
        for rid, b in app.all("historicalDataUpdate"):
            if rid == 64:
                assert b.low <= b.close <= b.high and 0.5 < b.close < 2 and b.volume < 0
        app.cancelHistoricalData(64)


# ---- 6. order types -----------------------------------------------------------------------------


def test_market_order_fills_at_once(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        qty = sum(size for _, size in book(sim, stock("AAPL")).asks[:5])  # several levels
        app.placeOrder(oid, stock("AAPL"), order("BUY", qty))
        wait_status(app, oid, "Filled")
        fills = execs(app, oid)
        assert len(fills) > 1 and sum(e.shares for e in fills) == qty
        assert all(e.side == "BOT" for e in fills)
        wanted = {e.execId for e in fills}
        app.wait("commissionAndFeesReport", lambda r: wanted <= set(reports(app)))
        reports_by_id = reports(app)
        fees = sum(reports_by_id[e.execId].commissionAndFees for e in fills)
        assert fees == pytest.approx(max(0.35, 0.0035 * float(qty)))
        # every orderStatus/openOrder tells the progress as of the execution before it
        cum, seen = Decimal(0), []
        for c in app.calls:
            if c.name == "execDetails" and c.args[2].orderId == oid:
                cum = c.args[2].cumQty
            elif c.name == "orderStatus" and c.args[0] == oid:
                _, status, filled, remaining = c.args[:4]
                assert filled == cum and remaining == qty - cum
                assert (status == "Filled") == (cum == qty), (status, cum)
                seen.append(status)
            elif c.name == "openOrder" and c.args[0] == oid:
                if c.args[2].filledQuantity != UNSET_DECIMAL:  # the text form has none
                    assert c.args[2].filledQuantity == cum
                assert (c.args[3].status == "Filled") == (cum == qty)
        assert seen[0] == "Submitted" and seen[-1] == "Filled"
        filled = [a for a in app.all("orderStatus") if a[0] == oid][-1]
        paid = sum(float(e.shares) * e.price for e in fills)
        assert filled[4] == pytest.approx(paid / float(qty), abs=0.01)


def sweep(app: RecordingApp, sim: SimThread, oid: int, action: str, through: float) -> None:
    """Our own IOC order taking every level up to ``through``: prints that fill or trigger
    our other orders (the simulator matches resting orders against every print)."""
    b = book(sim, stock("AAPL"))
    whole = sum(size for _, size in (b.asks if action == "BUY" else b.bids))
    app.placeOrder(oid, stock("AAPL"), order(action, whole * 2, "LMT", lmtPrice=through, tif="IOC"))
    wait_status(app, oid, "Cancelled")  # the part beyond ``through`` is cancelled


def test_buy_stop_above_market_waits_then_triggers(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        ask = book(sim, stock("AAPL")).ask
        far, near = round(ask + 5.0, 2), round(ask + 0.01, 2)
        app.placeOrder(oid, stock("AAPL"), order("BUY", 10, "STP", auxPrice=far))
        app.placeOrder(oid + 1, stock("AAPL"), order("BUY", 10, "STP", auxPrice=near))
        wait_status(app, oid, "PreSubmitted")
        wait_status(app, oid + 1, "PreSubmitted")
        sweep(app, sim, oid + 2, "BUY", round(near + 0.1, 2))  # prints through the near stop
        wait_status(app, oid + 1, "Filled")
        seen = statuses(app, oid + 1)
        assert seen[0] == "PreSubmitted" and "Submitted" in seen, seen
        assert sum(e.shares for e in execs(app, oid + 1)) == 10
        assert statuses(app, oid) == ["PreSubmitted"] and not execs(app, oid)
        app.cancelOrder(oid, OrderCancel())
        wait_status(app, oid, "Cancelled")
        app.wait("error", lambda rid, t, code, *a: rid == oid and code == 202)
        assert not execs(app, oid)


def test_ioc_below_market_and_fok_beyond_liquidity_cancel_unfilled(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        b = book(sim, stock("AAPL"))
        app.placeOrder(
            oid, stock("AAPL"), order("BUY", 100, "LMT", lmtPrice=round(b.bid - 1, 2), tif="IOC")
        )
        wait_status(app, oid, "Cancelled")
        whole_book = sum(size for _, size in b.asks)
        big = order(
            "BUY", float(whole_book * 10), "LMT", lmtPrice=round(b.ask + 0.05, 2), tif="FOK"
        )
        app.placeOrder(oid + 1, stock("AAPL"), big)
        wait_status(app, oid + 1, "Cancelled")
        app.placeOrder(
            oid + 2, stock("AAPL"), order("BUY", 1, "LMT", lmtPrice=round(b.ask + 1, 2), tif="FOK")
        )
        wait_status(app, oid + 2, "Filled")  # the same FOK path fills what the book holds
        assert not execs(app, oid) and not execs(app, oid + 1)
        for i in (oid, oid + 1):
            assert all(a[2] == 0 for a in app.all("orderStatus") if a[0] == i)
        assert sum(e.shares for e in execs(app, oid + 2)) == 1


def test_twap_fills_in_slices_over_the_horizon(version: int) -> None:
    with running(version, orders={"algo_horizon_s": 1.0}) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        twap = order("BUY", 200, algoStrategy="Twap")
        twap.algoParams = [TagValue("strategyType", "Marketable")]
        sent = time.monotonic()
        app.placeOrder(oid, stock("AAPL"), twap)
        wait_status(app, oid, "Filled", timeout=5)
        fills = [c for c in app.timed("execDetails") if c.args[2].orderId == oid]
        assert len(fills) >= 3
        assert sum(c.args[2].shares for c in fills) == 200
        assert fills[-1].at - sent >= 1.0, "the last slice is due at the end of the horizon"
        cum = [c.args[2].cumQty for c in fills]
        assert cum == sorted(cum) and cum[-1] == 200
        opened = app.wait("openOrder", lambda i, c, o, st: i == oid).args[2]
        assert opened.algoStrategy == "Twap"


def test_iceberg_limit_fills_in_display_slices(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        bid = book(sim, stock("AAPL")).bid
        app.placeOrder(oid, stock("AAPL"), order("BUY", 30, "LMT", lmtPrice=bid, displaySize=10))
        (_, _, placed, _) = app.wait("openOrder", lambda i, c, o, st: i == oid).args
        assert placed.displaySize == 10
        wait_status(app, oid, "Submitted")
        for k in range(1, 4):  # each sweep prints below the iceberg: a slice fills
            n = len(execs(app, oid))
            if sum(e.shares for e in execs(app, oid)) >= 30:
                break
            sweep(app, sim, oid + k, "SELL", round(bid - 0.1, 2))
            app.wait("execDetails", lambda *a, n=n: len(execs(app, oid)) > n)
        wait_status(app, oid, "Filled")
        fills = execs(app, oid)
        assert sum(e.shares for e in fills) == 30 and all(e.shares <= 10 for e in fills)
        assert all(e.price == bid for e in fills), "a resting limit fills at its own price"


def test_moc_rests_until_cancelled(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        app.placeOrder(oid, stock("AAPL"), order("BUY", 10, "MOC"))
        wait_status(app, oid, "Submitted")
        app.reqOpenOrders()
        app.wait("openOrderEnd")
        assert [a[2].orderType for a in app.all("openOrder") if a[0] == oid][-1] == "MOC"
        app.cancelOrder(oid, OrderCancel())
        wait_status(app, oid, "Cancelled")
        assert not execs(app, oid)


def test_modification_and_rejections(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        low = round(book(sim, stock("AAPL")).bid - 2, 2)
        app.placeOrder(oid, stock("AAPL"), order("BUY", 10, "LMT", lmtPrice=low))
        wait_status(app, oid, "Submitted")
        higher = round(low + 0.5, 2)
        app.placeOrder(oid, stock("AAPL"), order("BUY", 25, "LMT", lmtPrice=higher))
        app.wait(
            "openOrder",
            lambda i, c, o, st: i == oid and o.totalQuantity == 25 and o.lmtPrice == higher,
        )
        last = [a for a in app.all("orderStatus") if a[0] == oid][-1]
        assert last[1] == "Submitted" and last[3] == 25  # remaining

        app.placeOrder(oid + 1, stock("AAPL"), order("BUY", 0, "LMT", lmtPrice=low))
        app.placeOrder(oid + 2, stock("AAPL"), order("SELL", 10, "TRAIL"))
        app.placeOrder(oid + 3, stock("AAPL"), order("BUY", 10, "LMT", lmtPrice=low, tif="GTD"))
        for i in (oid + 1, oid + 2, oid + 3):
            wait_status(app, i, "Inactive")
            assert 201 in codes(app, i)
        texts = {rid: text for rid, code, text in app.errors() if code == 201}
        assert "quantity" in texts[oid + 1]
        assert "trailing" in texts[oid + 2]
        assert "goodTillDate" in texts[oid + 3]
        app.placeOrder(
            oid + 4,
            stock("AAPL"),
            order(
                "BUY",
                10,
                "LMT",
                lmtPrice=low,
                tif="GTD",
                goodTillDate="20991231 16:00:00 US/Eastern",
            ),
        )
        wait_status(app, oid + 4, "Submitted")
        app.reqGlobalCancel(OrderCancel())
        wait_status(app, oid, "Cancelled")
        wait_status(app, oid + 4, "Cancelled")


# ---- 7. order options ---------------------------------------------------------------------------


def test_duplicate_status_sends_every_order_status_twice(version: int) -> None:
    with running(version, orders={"duplicate_status": True}) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        low = round(book(sim, stock("AAPL")).bid - 2, 2)
        app.placeOrder(oid, stock("AAPL"), order("BUY", 10, "LMT", lmtPrice=low))
        app.placeOrder(oid + 1, stock("AAPL"), order("BUY", 10))
        wait_status(app, oid + 1, "Filled")
        app.cancelOrder(oid, OrderCancel())
        wait_status(app, oid, "Cancelled")
        sync(app)
        for i in (oid, oid + 1):
            seen = [a for a in app.all("orderStatus") if a[0] == i]
            assert len(seen) % 2 == 0 and len(seen) >= 2
            assert seen[0::2] == seen[1::2], "each status arrives twice in a row"
        assert statuses(app, oid)[-2:] == ["Cancelled", "Cancelled"]


def order_events(app: RecordingApp, oid: int) -> list[str]:
    """The names of ``oid``'s execDetails, openOrder and orderStatus callbacks, in order."""
    names = []
    for c in app.calls:
        if c.name == "execDetails" and c.args[2].orderId == oid:
            names.append("exec")
        elif c.name in ("openOrder", "orderStatus") and c.args[0] == oid:
            names.append(c.name)
    return names


def test_shuffled_events_still_all_arrive(version: int) -> None:
    plain: list[list[str]] = []
    for shuffle in (False, True):
        with (
            running(version, orders={"shuffle_events": shuffle}) as sim,
            connected(sim) as app,
        ):
            oid = app.wait("nextValidId").args[0]
            for k in range(4):
                app.placeOrder(oid + k, stock("AAPL"), order("BUY", 10))
            for k in range(4):
                wait_status(app, oid + k, "Filled")
                fills = execs(app, oid + k)
                assert sum(e.shares for e in fills) == 10
                wanted = {e.execId for e in fills}
                app.wait("commissionAndFeesReport", lambda r, w=wanted: w <= set(reports(app)))
            sync(app)
            events = [order_events(app, oid + k) for k in range(4)]
        if not shuffle:
            plain = events
            continue
        for got, unshuffled in zip(events, plain, strict=True):
            assert sorted(got) == sorted(unshuffled), "the same messages arrive"
        assert events != plain, "in another order"


def test_commission_report_is_delayed(version: int) -> None:
    with running(version, orders={"commission_delay_ms": 200}) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        sent = time.monotonic()
        app.placeOrder(oid, stock("AAPL"), order("BUY", 10))
        wait_status(app, oid, "Filled")
        fill = app.wait("execDetails", lambda rid, c, e: e.orderId == oid)
        exec_id = fill.args[2].execId
        report = app.wait("commissionAndFeesReport", lambda r: r.execId == exec_id, timeout=3)
        assert app.calls.index(report) > app.calls.index(fill)
        assert report.at - sent >= 0.2  # the fill happened after the order was sent
        assert report.at - fill.at >= 0.1  # less the fill's own trip, which is not delayed


# ---- 8. account ---------------------------------------------------------------------------------


def test_account_updates_portfolio_and_consistency(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        app.placeOrder(oid, stock("AAPL"), order("BUY", 100))
        wait_status(app, oid, "Filled")
        app.wait("commissionAndFeesReport")
        app.reqAccountUpdates(True, ACCOUNT)
        app.wait("accountDownloadEnd", lambda acct: acct == ACCOUNT)
        values = {k: float(v) for k, v, ccy, acct in app.all("updateAccountValue")}
        assert {"NetLiquidation", "TotalCashValue", "GrossPositionValue"} <= set(values)
        (row,) = [a for a in app.all("updatePortfolio")]
        contract, position, mark, value, avg_cost, _, _, acct = row
        assert contract.symbol == "AAPL" and position == 100 and acct == ACCOUNT
        assert value == pytest.approx(100 * mark, abs=0.01)
        assert app.all("updateAccountTime")
        fills = execs(app, oid)
        paid = sum(float(e.shares) * e.price for e in fills)
        fees = sum(r.commissionAndFees for (r,) in app.all("commissionAndFeesReport"))
        assert values["TotalCashValue"] == pytest.approx(1_000_000 - paid - fees, abs=0.01)
        assert values["NetLiquidation"] == pytest.approx(values["TotalCashValue"] + value, abs=0.02)
        assert avg_cost == pytest.approx(paid / 100, abs=0.01)

        mark = len(app.calls)
        app.placeOrder(oid + 1, stock("AAPL"), order("BUY", 50))
        wait_status(app, oid + 1, "Filled")
        streamed = app.wait("updatePortfolio", lambda c, pos, *a: pos == 150, since=mark)
        _, _, mark_price, value, *_ = streamed.args
        assert value == pytest.approx(150 * mark_price, abs=0.01)
        batch = app.calls[mark : app.calls.index(streamed)]
        values = {c.args[0]: float(c.args[1]) for c in batch if c.name == "updateAccountValue"}
        fills = execs(app, oid) + execs(app, oid + 1)
        paid = sum(float(e.shares) * e.price for e in fills)
        app.wait("commissionAndFeesReport", lambda r: len(reports(app)) >= len(fills))
        fees = sum(r.commissionAndFees for r in reports(app).values())
        assert values["TotalCashValue"] == pytest.approx(1_000_000 - paid - fees, abs=0.01)
        assert values["NetLiquidation"] == pytest.approx(values["TotalCashValue"] + value, abs=0.02)
        app.reqPositions()
        pos = app.wait("position", lambda acct, c, qty, cost: c.symbol == "AAPL").args
        assert pos[2] == 150
        app.wait("positionEnd")

        app.reqAccountUpdatesMulti(71, ACCOUNT, "", False)
        app.wait("accountUpdateMultiEnd", lambda rid: rid == 71)
        multi = {key: float(v) for rid, acct, model, key, v, ccy in app.all("accountUpdateMulti")}
        assert "NetLiquidation" in multi and multi["NetLiquidation"] > 0
        app.reqAccountUpdates(False, ACCOUNT)


def test_completed_orders_and_filtered_executions(version: int) -> None:
    with running(version) as sim, connected(sim) as app:
        oid = app.wait("nextValidId").args[0]
        low = round(book(sim, stock("AAPL")).bid - 2, 2)
        app.placeOrder(oid, stock("AAPL"), order("BUY", 20))
        app.placeOrder(oid + 1, stock("AAPL"), order("SELL", 5))
        app.placeOrder(oid + 2, stock("MSFT"), order("BUY", 7))
        app.placeOrder(oid + 3, stock("AAPL"), order("BUY", 10, "LMT", lmtPrice=low))
        for i in range(3):
            wait_status(app, oid + i, "Filled")
        wait_status(app, oid + 3, "Submitted")
        app.cancelOrder(oid + 3, OrderCancel())
        wait_status(app, oid + 3, "Cancelled")

        app.reqCompletedOrders(True)
        app.wait("completedOrdersEnd")
        done = {(c.symbol, o.action, st.status) for c, o, st in app.all("completedOrder")}
        assert ("AAPL", "BUY", "Filled") in done and ("AAPL", "BUY", "Cancelled") in done
        assert len(app.all("completedOrder")) == 4

        flt = ExecutionFilter()
        flt.symbol, flt.side = "AAPL", "BUY"
        app.reqExecutions(81, flt)
        app.wait("execDetailsEnd", lambda rid: rid == 81)
        got = [e for rid, c, e in app.all("execDetails") if rid == 81]
        assert got and {e.orderId for e in got} == {oid}
        assert all(c.symbol == "AAPL" for rid, c, e in app.all("execDetails") if rid == 81)
        flt = ExecutionFilter()
        flt.symbol = "MSFT"
        app.reqExecutions(82, flt)
        app.wait("execDetailsEnd", lambda rid: rid == 82)
        assert {e.orderId for rid, c, e in app.all("execDetails") if rid == 82} == {oid + 2}

        app.reqPositions()
        app.wait("positionEnd")
        held = {c.symbol: qty for acct, c, qty, cost in app.all("position")}
        assert held == {"AAPL": 15, "MSFT": 7}


# ---- 9. scripted faults and the control interface -----------------------------------------------


def test_scripted_farm_blip_without_a_test_call() -> None:
    faults = [{"at_s": 0.5, "action": "farm_blip", "seconds": 0.3}]
    with running(MAX_CLIENT_VER, faults=faults) as sim, connected(sim) as app:
        blip = app.wait("error", lambda rid, t, code, *a: code == 2103)
        app.wait("error", lambda rid, t, code, *a: code == 2104, since=app.calls.index(blip))


class Control:
    """A JSON-lines control connection."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rwb")

    def send(self, line: bytes) -> dict[str, Any]:
        self.file.write(line + b"\n")
        self.file.flush()
        reply = self.file.readline()
        assert reply, "the control connection was closed"
        return json.loads(reply)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_control_interface_commands_and_errors() -> None:
    with running(MAX_CLIENT_VER, gateway={"control_port": 0}) as sim, connected(sim) as app:
        assert sim.server.control_port
        ctl = Control(sim.server.control_port)
        try:
            status = ctl.send(b'{"action": "status"}')
            assert status["ok"] is True and status["clients"] == [1]
            assert ctl.send(b'{"action": "reject_orders", "count": 1}')["ok"] is True
            oid = app.wait("nextValidId").args[0]
            app.placeOrder(oid, stock("AAPL"), order("BUY", 1, "LMT", lmtPrice=1.0))
            app.placeOrder(oid + 1, stock("AAPL"), order("BUY", 1, "LMT", lmtPrice=1.0))
            wait_status(app, oid, "Inactive")
            wait_status(app, oid + 1, "Submitted")
            assert 201 in codes(app, oid)

            nope = ctl.send(b'{"action": "nope"}')
            assert nope["ok"] is False and "nope" in nope["error"]
            bad_ms = ctl.send(b'{"action": "latency", "ms": "x"}')
            assert bad_ms["ok"] is False and "ms" in bad_ms["error"]
            unknown = ctl.send(b'{"action": "latency", "msec": 5}')
            assert unknown["ok"] is False and "msec" in unknown["error"]
            garbage = ctl.send(b"this is not json")
            assert garbage["ok"] is False and "JSON" in garbage["error"]
            huge = ctl.send(b'{"action": "status", "pad": "' + b"x" * 200_000 + b'"}')
            assert huge["ok"] is False and "too long" in huge["error"]
            no_action = ctl.send(b'{"count": 1}')
            assert no_action["ok"] is False and "action" in no_action["error"]
            again = ctl.send(b'{"action": "status"}')  # the same connection still works
            assert again["ok"] is True and again["open_orders"] == 1
        finally:
            ctl.close()


# ---- 10. the command ----------------------------------------------------------------------------


def test_gateway_sim_command_serves_and_logs_client_events() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "engine.cli", "gateway-sim", "--port", "0"]
    cmd += ["--max-server-version", "200", "--duration", "3"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("gateway simulator on 127.0.0.1:"), first
        port = int(first.split(":")[1].split(",")[0])
        app = RecordingApp()
        app.start("127.0.0.1", port, 9)
        try:
            app.wait("nextValidId")
            assert app.serverVersion() == 200
        finally:
            app.stop()
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    event = re.compile(r"conn \d+ 127\.0\.0\.1:\d+(?: client 9)?: (\w+)(.*)$")
    events = [m.groups() for line in err.splitlines() if (m := event.search(line))]
    assert [kind for kind, _ in events] == ["connected", "handshake", "startApi", "disconnected"]
    assert events[1][1].startswith(" v100..") and "-> v200" in events[1][1]
    assert events[2][1] == " client id 9"
