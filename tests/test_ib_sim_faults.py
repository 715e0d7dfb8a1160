"""Fault injection and IB's order/connection rules, seen by the official ibapi client."""

from __future__ import annotations

import socket
import time
from decimal import Decimal

import pytest
from ibapi.order_cancel import OrderCancel

from engine.config import ConfigError
from tests.ib_sim_support import SimThread, connected, sim_config
from tests.test_ib_sim_interop import aapl, limit


@pytest.fixture
def sim():
    with SimThread(sim_config(market={"events_per_second": 200.0})) as s:
        yield s


def _codes(app) -> list[int]:
    return [code for _, code, _ in app.errors()]


def test_drop_all_closes_every_client(sim: SimThread) -> None:
    with connected(sim, 1) as a, connected(sim, 2) as b:
        sim.fault("drop_all")
        a.wait("connectionClosed")
        b.wait("connectionClosed")
    with connected(sim, 1) as again:  # the gateway itself keeps running
        again.reqCurrentTime()
        again.wait("currentTime")


@pytest.mark.parametrize("data_lost", [False, True])
def test_connectivity_lost_then_restored(sim: SimThread, data_lost: bool) -> None:
    with connected(sim) as app:
        app.reqMktData(5, aapl(), "", False, False, [])
        app.wait("tickPrice", lambda rid, *a: rid == 5)
        sim.fault("connectivity_lost", seconds=0.3, data_lost=data_lost)
        app.wait("error", lambda rid, t, code, *a: code == 1100)
        (oid,) = app.wait("nextValidId").args
        app.placeOrder(oid, aapl(), limit("BUY", 1, 1.0))
        app.wait("error", lambda rid, t, code, *a: rid == oid and code == 201)
        restored = 1101 if data_lost else 1102
        app.wait("error", lambda rid, t, code, *a: code == restored, timeout=5)
        before = len(app.all("tickPrice"))
        time.sleep(0.3)
        after = len(app.all("tickPrice"))
        if data_lost:
            assert after == before, "1101: subscriptions are gone until the client resubscribes"
        else:
            assert after > before, "1102: data maintained"


def test_farm_blip_2103_then_2104_pauses_data(sim: SimThread) -> None:
    with connected(sim) as app:
        app.reqMktData(5, aapl(), "", False, False, [])
        app.wait("tickPrice", lambda rid, *a: rid == 5)
        sim.fault("farm_blip", seconds=0.4)
        app.wait("error", lambda rid, t, code, *a: code == 2103)
        time.sleep(0.1)
        paused = len(app.all("tickPrice"))
        time.sleep(0.15)
        assert len(app.all("tickPrice")) == paused
        n_ok = _codes(app).count(2104)
        app.wait("error", lambda rid, t, code, *a: code == 2104 and _codes(app).count(2104) > n_ok)
        time.sleep(0.2)
        assert len(app.all("tickPrice")) > paused


@pytest.mark.parametrize("rollback", [False, True])
def test_daily_restart_refuses_then_accepts(sim: SimThread, rollback: bool) -> None:
    with connected(sim) as app:
        (oid,) = app.wait("nextValidId").args
        for i in range(3):
            app.placeOrder(oid + i, aapl(), limit("BUY", 1, 1.0))
        app.wait("orderStatus", lambda i, *a: i == oid + 2)
        sim.fault("daily_restart", seconds=0.6, rollback_ids=rollback)
        app.wait("connectionClosed")
    time.sleep(0.1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", sim.port)):
        pass
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", sim.port)).close()
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "gateway never came back"
            time.sleep(0.05)
    with connected(sim) as app:
        (next_id,) = app.wait("nextValidId").args
        assert next_id == (1 if rollback else oid + 3)
        app.reqOpenOrders()  # working orders survive a gateway restart, as at IB
        app.wait("openOrderEnd")
        assert {a[0] for a in app.all("openOrder")} == {oid, oid + 1, oid + 2}


def test_daily_restart_accept_close_mode(sim: SimThread) -> None:
    sim.fault("daily_restart", seconds=0.5, refuse="accept_close")
    with socket.create_connection(("127.0.0.1", sim.port), timeout=2) as sock:
        try:
            sock.sendall(b"API\0\0\0\0\tv100..176")
            got = sock.recv(100)
        except ConnectionResetError:  # closed with our handshake unread: Linux sends a reset
            got = b""
        assert got == b"", "accepted then closed, like socat before the API is up"


def test_added_latency_delays_replies(sim: SimThread) -> None:
    with connected(sim) as app:
        sim.fault("latency", ms=150)
        start = time.monotonic()
        app.reqCurrentTime()
        app.wait("currentTime")
        assert time.monotonic() - start >= 0.15
        sim.fault("latency", ms=0)


def test_reject_next_orders(sim: SimThread) -> None:
    with connected(sim) as app:
        (oid,) = app.wait("nextValidId").args
        sim.fault("reject_orders", count=2)
        for i in range(3):
            app.placeOrder(oid + i, aapl(), limit("BUY", 1, 1.0))
        app.wait("orderStatus", lambda i, st, *a: i == oid + 2 and st == "Submitted")
        rejected = {rid for rid, code, _ in app.errors() if code == 201}
        assert rejected == {oid, oid + 1}
        assert app.wait("orderStatus", lambda i, st, *a: i == oid).args[1] == "Inactive"


def test_stop_and_resume_market_data_for_one_symbol(sim: SimThread) -> None:
    with connected(sim) as app:
        app.reqMktData(5, aapl(), "", False, False, [])
        app.wait("tickPrice", lambda rid, *a: rid == 5)
        sim.fault("stop_market_data", symbol="AAPL")
        time.sleep(0.05)
        stopped = len(app.all("tickPrice"))
        time.sleep(0.2)
        assert len(app.all("tickPrice")) == stopped
        sim.fault("resume_market_data", symbol="AAPL")
        time.sleep(0.2)
        assert len(app.all("tickPrice")) > stopped


def test_ignored_requests_go_unanswered_then_are_answered(sim: SimThread) -> None:
    with connected(sim) as app:
        sim.fault("ignore_requests", request="ReqOpenOrders", count=2)
        for _ in range(2):
            app.reqOpenOrders()
        app.reqCurrentTime()  # answered in order: the two before it were ignored
        app.wait("currentTime")
        assert not app.all("openOrderEnd")
        app.reqOpenOrders()
        app.wait("openOrderEnd")
    with pytest.raises(ConfigError, match=r"fault\.request: 'ReqOpenOrder' is not a request"):
        sim.fault("ignore_requests", request="ReqOpenOrder")


def test_silenced_subscriptions_stay_silent_until_subscribed_again(sim: SimThread) -> None:
    with connected(sim) as app:
        app.reqMktData(5, aapl(), "", False, False, [])
        app.wait("tickPrice", lambda rid, *a: rid == 5)
        sim.fault("silence_subscriptions", symbol="AAPL")
        time.sleep(0.05)
        silent = len(app.all("tickPrice"))
        time.sleep(0.2)
        assert len(app.all("tickPrice")) == silent
        app.cancelMktData(5)  # still known to the gateway: no error 300
        app.reqMktData(6, aapl(), "", False, False, [])
        mark = len(app.calls)
        app.wait("tickPrice", lambda rid, *a: rid == 6, since=mark)
        time.sleep(0.2)
        assert len([a for a in app.all("tickPrice") if a[0] == 6]) > 2  # streaming, not a snapshot
        assert 300 not in _codes(app)


def test_hmds_farm_blip_pauses_keep_up_to_date_bars_only(sim: SimThread) -> None:
    with connected(sim) as app:
        app.reqMktData(5, aapl(), "", False, False, [])
        app.reqHistoricalData(9, aapl(), "", "60 S", "5 secs", "MIDPOINT", 1, 2, True, [])
        app.wait("historicalDataUpdate", lambda rid, *a: rid == 9)
        sim.fault("farm_blip", seconds=0.4, farm="ushmds")
        app.wait("error", lambda rid, t, code, *a: code == 2105)
        time.sleep(0.05)
        bars, ticks = len(app.all("historicalDataUpdate")), len(app.all("tickPrice"))
        time.sleep(0.2)
        assert len(app.all("historicalDataUpdate")) == bars
        assert len(app.all("tickPrice")) > ticks  # the market data farm is fine
        app.wait("error", lambda rid, t, code, *a: code == 2106 and _codes(app).count(2106) > 1)
        time.sleep(0.2)
        assert len(app.all("historicalDataUpdate")) > bars


def test_depth_reset_sends_317_then_the_book_from_its_first_row(sim: SimThread) -> None:
    with connected(sim) as app:
        app.reqMktDepth(7, aapl(), 5, False, [])
        app.wait("updateMktDepthL2", lambda rid, *a: rid == 7)
        time.sleep(0.1)
        mark = len(app.calls)
        sim.fault("depth_reset", symbol="AAPL")
        app.wait("error", lambda rid, t, code, *a: rid == 7 and code == 317, since=mark)
        after = [c for c in app.calls[mark:] if c.name in ("error", "updateMktDepthL2")]
        assert after[0].name == "error"  # nothing of the old book after the reset
        rows = [c.args for c in after[1:11]]
        # (reqId, position, marketMaker, operation, side, ...): bids then asks, as inserts
        assert [(r[1], r[3], r[4]) for r in rows] == [(p, 0, 1) for p in range(5)] + [
            (p, 0, 0) for p in range(5)
        ]


def test_client_id_in_use_gets_326_and_is_closed(sim: SimThread) -> None:
    with connected(sim, 3):
        from tests.ib_sim_support import RecordingApp

        second = RecordingApp()
        second.start("127.0.0.1", sim.port, 3)
        second.wait("error", lambda rid, t, code, *a: code == 326)
        second.wait("connectionClosed")
        second.stop()


def test_orders_belong_to_their_client(sim: SimThread) -> None:
    with connected(sim, 1) as a, connected(sim, 2) as b:
        (oid,) = a.wait("nextValidId").args
        a.placeOrder(oid, aapl(), limit("BUY", 1, 1.0))
        a.wait("orderStatus", lambda i, st, *x: i == oid and st == "Submitted")
        b.cancelOrder(oid, OrderCancel())
        b.wait("error", lambda rid, t, code, *x: rid == oid and code == 10147)
        b.reqOpenOrders()
        b.wait("openOrderEnd")
        assert not b.all("openOrder")
        b.reqAllOpenOrders()
        b.wait("openOrder", lambda i, c, o, st: i == oid and o.clientId == 1)


def test_reused_id_103_modify_by_resend_and_off_tick_110(sim: SimThread) -> None:
    with connected(sim) as app:
        (oid,) = app.wait("nextValidId").args
        app.placeOrder(oid, aapl(), limit("BUY", 5, 1.0))
        app.wait("orderStatus", lambda i, st, *a: i == oid and st == "Submitted")
        app.placeOrder(oid, aapl(), limit("BUY", 7, 1.5))  # same id, live: a modification
        app.wait(
            "openOrder",
            lambda i, c, o, st: i == oid and o.totalQuantity == Decimal(7) and o.lmtPrice == 1.5,
        )
        app.cancelOrder(oid, OrderCancel())
        app.wait("orderStatus", lambda i, st, *a: i == oid and st == "Cancelled")
        app.placeOrder(oid, aapl(), limit("BUY", 5, 1.0))
        app.wait("error", lambda rid, t, code, *a: rid == oid and code == 103)
        app.placeOrder(oid + 1, aapl(), limit("BUY", 5, 1.0001))
        app.wait("error", lambda rid, t, code, *a: rid == oid + 1 and code == 110)


def test_pacing_error_100_then_disconnect(sim: SimThread) -> None:
    with connected(sim) as app:
        for _ in range(80):
            app.reqCurrentTime()
        app.wait("error", lambda rid, t, code, *a: code == 100)
        for _ in range(4):
            for _ in range(60):
                app.reqCurrentTime()
            time.sleep(1.0)
            if app.all("connectionClosed"):
                break
        app.wait("connectionClosed", timeout=3)


def test_historical_pacing_162(sim: SimThread) -> None:
    with connected(sim) as app:
        app.reqHistoricalData(9, aapl(), "", "600 S", "1 min", "TRADES", 1, 1, False, [])
        app.wait("historicalDataEnd", lambda rid, *a: rid == 9)
        assert len([b for b in app.all("historicalData") if b[0] == 9]) >= 5
        app.reqHistoricalData(10, aapl(), "", "600 S", "1 min", "TRADES", 1, 1, False, [])
        app.wait("error", lambda rid, t, code, *a: rid == 10 and code == 162)


def test_hang_keeps_the_socket_open_and_answers_nothing_until_it_ends(sim: SimThread) -> None:
    """A hung gateway API: the connection stays open, requests go unanswered and market data
    stops; when the hang ends the gateway reads what arrived meanwhile and answers it."""
    with connected(sim) as app:
        app.reqMktData(5, aapl(), "", False, False, [])
        app.wait("tickPrice", lambda rid, *a: rid == 5)
        sim.fault("hang", seconds=0.8)
        time.sleep(0.05)
        ticks = len(app.all("tickPrice"))
        app.reqCurrentTime()
        time.sleep(0.4)
        assert app.all("currentTime") == [] and len(app.all("tickPrice")) == ticks
        assert app.all("connectionClosed") == [] and app.isConnected()
        assert sim.call(lambda: sim.server.core.status()["hung"])
        app.wait("currentTime", timeout=3)
        app.wait("tickPrice", lambda rid, *a: len(app.all("tickPrice")) > ticks + 1)
    # A connection made while hung would wait; now it is served. Another client id: the first
    # one's close may not have reached the gateway yet (then its id is still in use: 326).
    with connected(sim, client_id=2) as again:
        again.reqCurrentTime()
        again.wait("currentTime")


def test_the_ten_minute_historical_count_is_for_small_bars_only(sim: SimThread) -> None:
    """As IB: 60 requests per 10 minutes is a rule for bars of 30 s or less."""
    sim.call(lambda: sim.server.core._hist_requests.extend(
        (sim.server.core.now_ns, (0, "", f"{k} D", "1 day", "TRADES", 1)) for k in range(60)
    ))  # fmt: skip
    with connected(sim) as app:
        app.reqHistoricalData(11, aapl(), "", "1 Y", "1 day", "TRADES", 1, 1, False, [])
        app.wait("historicalDataEnd", lambda rid, *a: rid == 11)
        sim.call(lambda: sim.server.core._hist_requests.extend(
            (sim.server.core.now_ns, (0, "", f"{k} S", "30 secs", "TRADES", 1))
            for k in range(60)
        ))  # fmt: skip
        app.reqHistoricalData(12, aapl(), "", "1800 S", "5 secs", "TRADES", 1, 1, False, [])
        app.wait("error", lambda rid, t, code, msg, *a: rid == 12 and "10 minutes" in msg)


def test_unreadable_replay_is_a_config_error_naming_the_key(tmp_path) -> None:
    from adapters.ib.gateway_sim.core import GatewayCore
    from engine.config import ConfigError

    bad = tmp_path / "rec.jsonl"
    bad.write_text('{"con_id": 1, "ts_ns": "soon"}\n')
    for path in (bad, tmp_path / "missing.jsonl"):
        with pytest.raises(ConfigError, match=r"market\.replay"):
            GatewayCore(sim_config(market={"replay": str(path)}))


def test_a_simulator_cpu_the_process_may_not_use_is_a_config_error() -> None:
    import os

    from engine.config import ConfigError

    absent = max(os.sched_getaffinity(0)) + 1
    with pytest.raises(ConfigError, match=r"gateway\.cpu_affinity: CPU\(s\) \d+ are not available"):
        sim_config(gateway={"cpu_affinity": [absent]})
    cpu = min(os.sched_getaffinity(0))
    assert sim_config(gateway={"cpu_affinity": [cpu]}).gateway.cpu_affinity == [cpu]


async def test_the_simulator_server_pins_itself_to_its_cpus() -> None:
    import os

    from adapters.ib.gateway_sim.server import serve_forever

    before = os.sched_getaffinity(0)
    cpu = min(before)
    try:
        await serve_forever(sim_config(gateway={"cpu_affinity": [cpu]}), duration_s=0.05)
        assert os.sched_getaffinity(0) == {cpu}
    finally:
        os.sched_setaffinity(0, before)
