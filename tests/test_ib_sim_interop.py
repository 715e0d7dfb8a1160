"""The gateway simulator against the official ibapi client (EClient + EReader, threaded).

Each scenario runs at a pre-protobuf server version (176, 200) and at the newest version the
pinned ibapi supports, over a real loopback socket.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from ibapi.contract import Contract
from ibapi.execution import ExecutionFilter
from ibapi.order import Order
from ibapi.order_cancel import OrderCancel
from ibapi.server_versions import MAX_CLIENT_VER

from tests.ib_sim_support import SimThread, connected, sim_config

VERSIONS = [176, 200, MAX_CLIENT_VER]


def aapl() -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = "AAPL", "STK", "SMART", "USD"
    return c


def limit(action: str, qty: int, price: float) -> Order:
    o = Order()
    o.action, o.orderType, o.totalQuantity, o.lmtPrice = action, "LMT", Decimal(qty), price
    o.tif = "DAY"
    return o


@pytest.fixture(params=VERSIONS, ids=lambda v: f"v{v}")
def sim(request: pytest.FixtureRequest):
    cfg = sim_config(
        gateway={"max_server_version": request.param}, market={"events_per_second": 200.0}
    )
    with SimThread(cfg) as s:
        yield s


def test_connect_handshake_and_farm_notices(sim: SimThread) -> None:
    with connected(sim) as app:
        assert app.serverVersion() == sim.server.config.gateway.max_server_version
        (accounts,) = app.wait("managedAccounts").args
        assert accounts.split(",")[0].startswith("DU")
        (next_id,) = app.wait("nextValidId").args
        assert next_id >= 1
        for code in (2104, 2106, 2158):
            app.wait("error", lambda rid, t, c, m, *a, code=code: c == code and rid == -1)
        app.reqCurrentTime()
        (now,) = app.wait("currentTime").args
        assert abs(now - sim.call(lambda: sim.server.core.now_ns) // 10**9) <= 2


def test_contract_details_and_unknown_contract(sim: SimThread) -> None:
    with connected(sim) as app:
        app.reqContractDetails(7, aapl())
        (rid, details) = app.wait("contractDetails").args
        assert rid == 7
        assert details.contract.symbol == "AAPL" and details.contract.conId > 0
        assert details.minTick > 0
        app.wait("contractDetailsEnd", lambda r: r == 7)
        bogus = aapl()
        bogus.symbol = "NOSUCHSYM"
        app.reqContractDetails(8, bogus)
        app.wait("error", lambda rid, t, code, *a: rid == 8 and code == 200)
        assert not app.all("contractDetailsEnd")[1:], "no contractDataEnd after error 200"


def test_market_data_and_depth_arrive(sim: SimThread) -> None:
    with connected(sim) as app:
        app.reqMktData(11, aapl(), "", False, False, [])
        app.wait("tickReqParams", lambda rid, *a: rid == 11)
        (_, _, bid, _) = app.wait("tickPrice", lambda rid, tt, *a: rid == 11 and tt == 1).args
        (_, _, ask, _) = app.wait("tickPrice", lambda rid, tt, *a: rid == 11 and tt == 2).args
        assert 0 < bid < ask
        app.wait("tickSize", lambda rid, tt, size: rid == 11 and tt == 0 and size > 0)
        app.reqMktDepth(12, aapl(), 5, False, [])
        rows = [app.wait("updateMktDepthL2", lambda rid, *a: rid == 12)]
        assert rows[0].args[3] == 0  # insert
        app.cancelMktData(11)
        app.cancelMktDepth(12, False)


def test_marketable_limit_fills_with_execution_and_commission(sim: SimThread) -> None:
    with connected(sim) as app:
        (oid,) = app.wait("nextValidId").args
        ask = book(sim).ask
        app.placeOrder(oid, aapl(), limit("BUY", 100, round(ask * 1.01, 2)))
        (rid, contract, execution) = app.wait("execDetails").args
        assert rid == -1 and execution.orderId == oid and contract.symbol == "AAPL"
        assert execution.side == "BOT" and execution.price <= round(ask * 1.01, 2)
        report = app.wait("commissionAndFeesReport").args[0]
        assert report.execId and report.commissionAndFees > 0
        app.wait("orderStatus", lambda i, status, filled, *a: i == oid and status == "Filled")
        fills = [a[2] for a in app.all("execDetails") if a[2].orderId == oid]
        assert sum(e.shares for e in fills) == Decimal(100)

        app.reqPositions()
        pos = app.wait("position", lambda acct, c, qty, cost: c.symbol == "AAPL")
        assert pos.args[2] == Decimal(100) and pos.args[3] > 0
        app.wait("positionEnd")
        app.reqAccountSummary(31, "All", "NetLiquidation,GrossPositionValue")
        gross = app.wait("accountSummary", lambda r, a, tag, *x: tag == "GrossPositionValue")
        assert float(gross.args[3]) > 0
        app.wait("accountSummaryEnd", lambda r: r == 31)
        app.reqExecutions(41, ExecutionFilter())
        got = app.wait("execDetails", lambda rid, c, e: rid == 41)
        assert got.args[2].execId == execution.execId
        app.wait("execDetailsEnd", lambda r: r == 41)


def test_resting_order_cancels_with_202(sim: SimThread) -> None:
    with connected(sim) as app:
        (oid,) = app.wait("nextValidId").args
        bid = book(sim).bid
        app.placeOrder(oid, aapl(), limit("BUY", 10, round(bid * 0.5, 2)))
        app.wait("openOrder", lambda i, c, o, st: i == oid)
        app.wait("orderStatus", lambda i, status, *a: i == oid and status == "Submitted")
        app.cancelOrder(oid, OrderCancel())
        app.wait("orderStatus", lambda i, status, *a: i == oid and status == "Cancelled")
        app.wait("error", lambda rid, t, code, *a: rid == oid and code == 202)


def _aapl_id(sim: SimThread) -> int:
    return sim.call(lambda: sim.server.core.market.resolve(aapl())[0].con_id)


def book(sim: SimThread):
    """AAPL's book in the simulator right now."""
    con = _aapl_id(sim)
    return sim.call(lambda: sim.server.core.market.book(con))
