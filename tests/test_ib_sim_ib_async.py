"""The gateway simulator against ib_async, a second client we did not write.

ib_async re-implements the TWS protocol itself and negotiates at most server version 178, in
text with ASCII ids; its ``connectAsync`` runs a six-request start-up sync that must complete
without any request timing out.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from ib_async import IB, LimitOrder, Stock

from adapters.ib.gateway_sim.server import GatewaySimServer
from tests.ib_sim_support import sim_config


@pytest.fixture
async def gateway():
    server = GatewaySimServer(sim_config(market={"events_per_second": 200.0}))
    await server.start()
    yield server
    await server.stop()


async def test_ib_async_syncs_trades_and_gets_fills(gateway, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ib_async")
    ib = IB()
    await ib.connectAsync("127.0.0.1", gateway.port, clientId=9, timeout=5)
    try:
        assert ib.client.serverVersion() == 178
        assert ib.managedAccounts() == ["DU1234567"]
        timeouts = [r.getMessage() for r in caplog.records if "timed out" in r.getMessage()]
        assert not timeouts, timeouts

        (aapl,) = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
        assert aapl.conId > 0
        ticker = ib.reqMktData(aapl)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if ticker.bid > 0 and ticker.ask > 0:
                break
        assert 0 < ticker.bid < ticker.ask

        trade = ib.placeOrder(aapl, LimitOrder("BUY", 10, round(ticker.ask * 1.01, 2)))
        for _ in range(200):
            await asyncio.sleep(0.02)
            reported = all(f.commissionReport.execId for f in trade.fills)
            if trade.isDone() and trade.fills and reported:
                break
        assert trade.orderStatus.status == "Filled"
        assert sum(f.execution.shares for f in trade.fills) == 10
        assert all(f.commissionReport.commission > 0 for f in trade.fills)

        positions = await ib.reqPositionsAsync()
        assert [(p.contract.conId, p.position) for p in positions] == [(aapl.conId, 10)]
        summary = {v.tag: v.value for v in await ib.accountSummaryAsync()}
        assert float(summary["GrossPositionValue"]) > 0

        resting = ib.placeOrder(aapl, LimitOrder("BUY", 5, round(ticker.bid * 0.5, 2)))
        await asyncio.sleep(0.1)
        ib.cancelOrder(resting.order)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if resting.isDone():
                break
        assert resting.orderStatus.status == "Cancelled"
    finally:
        ib.disconnect()
