"""The account's net liquidation value as the risk checks' equity: IB reports NetLiquidation in
the account updates; with ``[risk] equity`` unset it becomes the start-of-day equity (less
today's P&L), so leverage and concentration limits can pass orders at all. Against the
gateway simulator over loopback (its account: 1,000,000 USD cash)."""

from __future__ import annotations

import logging
import math

from engine.config import RiskConfig
from engine.messages import EventKind
from hotpath import risk as rk
from tests.ib_venue_support import IBHarness, until


def _equity(h: IBHarness) -> float:
    return float(h.engine.risk.arrays.gst[rk.GS_EQUITY_SOD])


async def test_unset_equity_is_taken_from_the_accounts_net_liquidation_value(caplog) -> None:
    caplog.set_level(logging.INFO, "engine.runtime")
    risk = RiskConfig(max_leverage=2.0, max_concentration=1.0)  # equity not set
    assert math.isnan(risk.equity)
    async with IBHarness(risk=risk) as h:
        await until(lambda: _equity(h) > 0, 10, "equity from NetLiquidation")
        view = h.engine.portfolio.broker_account("IB")
        nlv = float(view.values[("NetLiquidation", "USD")])
        assert _equity(h) == nlv == 1_000_000.0
        assert "from venue IB's net liquidation value" in caplog.text
        # With equity, an order that adds exposure passes the leverage check (unset, every
        # such order was refused).
        await h.book_ready("AAPL")
        coid = h.strat.buy("AAPL", 10, round(h.mid("AAPL") * 0.98, 2))
        await h.wait_kind(coid, EventKind.ACCEPTED)


async def test_an_equity_the_operator_set_is_kept() -> None:
    async with IBHarness(risk=RiskConfig(equity=250_000.0)) as h:
        view = h.engine.portfolio.broker_account("IB")
        await until(lambda: ("NetLiquidation", "USD") in view.values, 10, "NetLiquidation")
        assert _equity(h) == 250_000.0
