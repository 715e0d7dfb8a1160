"""Each asset class the engine names, traded through IBVenue against the gateway simulator:
what IB requires of its contracts and orders, and what comes back (fills, P&L)."""

from __future__ import annotations

import pytest
from ib_venue_support import IBHarness, until

from adapters.ib.venue import IB_ORDER_REJECTED
from engine.instruments import AssetClass
from engine.messages import EventKind, TimeInForce

pytestmark = pytest.mark.asyncio

BTC = {"BTC": (0.25, 0.0001, 1.0, "USD")}


def _btc(**venue) -> IBHarness:
    return IBHarness(symbols=("BTC",), facts=BTC, classes={"BTC": AssetClass.CRYPTO}, **venue)


async def _btc_mid(h: IBHarness) -> float:
    await until(lambda: h.strat.book("BTC").mid_ticks is not None, 5, "BTC book")
    return h.strat.book("BTC").mid_ticks * 0.25


def _rejection(h: IBHarness, coid: int):
    return next(e for e in h.strat.of(coid) if e.kind == EventKind.REJECTED)


async def test_crypto_market_orders_ib_would_reject_are_refused_with_what_to_do() -> None:
    # IB takes a crypto market buy only sized in cash (cashQty), and a crypto market order only
    # as IOC. tickwire sizes orders in coins: such orders are refused here, saying what works.
    async with _btc() as h:
        assert h.venue.qualified[h.registry.resolve("BTC").id].contract.secType == "CRYPTO"
        mid = await _btc_mid(h)
        buy = h.strat.buy("BTC", 0.001, tif=TimeInForce.IOC)
        sell_day = h.strat.sell("BTC", 0.001)
        await h.wait_kind(buy, EventKind.REJECTED)
        await h.wait_kind(sell_day, EventKind.REJECTED)
        ev = _rejection(h, buy)
        assert ev.reason_code == IB_ORDER_REJECTED
        assert "BTC.IB" in ev.reason and "cashQty" in ev.reason and "marketable limit" in ev.reason
        ev = _rejection(h, sell_day)
        assert ev.reason_code == IB_ORDER_REJECTED and "tif IOC" in ev.reason and "DAY" in ev.reason
        assert not [o for o in h.sim_orders() if o.order.orderRef in (str(buy), str(sell_day))]
        # What IB takes: a marketable limit buy in fractional coins, a market sell as IOC.
        limit = h.strat.buy("BTC", 0.0012, round(mid / 0.25 + 400) * 0.25, tif=TimeInForce.IOC)
        await until(lambda: sum(f.fill_lots for f in h.strat.fills(limit)) == 12, 5, "BTC fill")
        sell = h.strat.sell("BTC", 0.0012, tif=TimeInForce.IOC)
        await until(lambda: sum(f.fill_lots for f in h.strat.fills(sell)) == 12, 5, "BTC sell")
        assert h.sim_order(limit).order.totalQuantity == h.sim_order(sell).order.totalQuantity
        assert str(h.sim_order(sell).order.totalQuantity) == "0.0012"
        assert h.engine.portfolio.net_lots(h.registry.resolve("BTC").id) == 0
