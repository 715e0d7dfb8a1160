"""Risk limits in the base currency: an instrument priced in another currency is converted at
``[portfolio.fx]`` before the risk gate and the breakers compare it with limits and equity.

Before, a EUR future's notional, exposure, P&L and fees were compared one to one with limits
set in USD: a JPY loss of 1,000,000 (about 6,700 USD) tripped a 10,000 USD daily loss limit, and a
EUR order worth 104,500 USD passed a 100,000 USD notional limit.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from event_recorder import Recorder

from adapters.sim.venue import SimVenue
from engine.clock import SimClock
from engine.config import ConfigError, PortfolioConfig, RiskConfig, SimVenueConfig, parse_config
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import BOOK_DELTA, BookSide, DeltaAction, EventKind
from engine.risk_gate import Verdict
from engine.runtime import Engine
from hotpath import risk as rk

FX = {"EUR": 1.10, "JPY": 0.0067}  # USD per unit


class Harness:
    """ES (USD), FDXM (EUR, tick 1, x5) and NIY (JPY, tick 5, x500), base currency USD."""

    def __init__(self, risk: RiskConfig, commission_per_lot: float = 0.0) -> None:
        reg = InstrumentRegistry()
        self.es = reg.add("ES", "SIM", AssetClass.FUTURE, 0.25, 1.0, 50.0)
        self.fdxm = reg.add("FDXM", "SIM", AssetClass.FUTURE, 1.0, 1.0, 5.0, currency="EUR")
        self.niy = reg.add("NIY", "SIM", AssetClass.FUTURE, 5.0, 1.0, 500.0, currency="JPY")
        self.clock = SimClock(1_000_000_000)
        venue = SimVenue("SIM", SimVenueConfig(commission_per_lot=commission_per_lot))
        self.engine = Engine(
            reg, {"SIM": venue}, self.clock, risk=risk,
            portfolio=PortfolioConfig(base_currency="USD", fx=FX),
        )  # fmt: skip
        self.strat: Recorder = self.engine.add_strategy(
            Recorder, "rec", None, ["ES", "FDXM", "NIY"]
        )
        self.engine.start()
        self.gst = self.engine.risk.arrays.gst

    def book(self, inst, bid: int, ask: int, size: int = 100) -> None:
        d = np.zeros(2, dtype=BOOK_DELTA)
        d["instrument_id"] = inst.id
        d["action"] = DeltaAction.SET
        d["side"] = [int(BookSide.BID), int(BookSide.ASK)]
        d["price"] = [bid, ask]
        d["size"] = [size, size]
        d["ts_recv"] = self.clock.now()
        self.engine.deltas.write(d)
        self.engine.pump()

    def buy(self, symbol: str, qty: float, price: float | None = None):
        coid = self.strat.buy(symbol, qty, price)
        self.engine.pump()
        return self.strat.of(coid)[-1]


def test_order_notional_in_euros_is_held_to_a_dollar_limit() -> None:
    h = Harness(RiskConfig(equity=1e9, max_order_notional=100_000.0))
    h.book(h.fdxm, 18_990, 19_010)
    ev = h.buy("FDXM", 1, 19_000.0)  # 95,000 EUR = 104,500 USD
    assert ev.kind == EventKind.REJECTED and ev.reason_code == Verdict.MAX_ORDER_NOTIONAL
    assert h.buy("FDXM", 1, 18_180.0).kind == EventKind.ACCEPTED  # 90,900 EUR = 99,990 USD


def test_a_yen_loss_counts_in_dollars_against_the_daily_loss_limit() -> None:
    """Long one NIY bought at 39,000; the market falls 400 ticks (1,000,000 JPY, 6,700 USD):
    within a 10,000 USD account loss limit, so a new buy still passes."""
    h = Harness(RiskConfig(equity=1e9, daily_loss_limit=10_000.0), commission_per_lot=1_000.0)
    h.book(h.niy, 7_799, 7_800)
    assert h.buy("NIY", 1).kind == EventKind.FILL  # at the ask, 39,000
    assert h.gst[rk.GS_FEES] == pytest.approx(6.7)  # 1,000 JPY
    h.book(h.niy, 7_799, 7_800, size=0)
    h.book(h.niy, 7_399, 7_401)  # mid 7,400 ticks: 400 ticks x 5 x 500 JPY lower
    assert h.gst[rk.GS_UNREAL] == pytest.approx(-1_000_000 * 0.0067)
    assert h.buy("NIY", 1, 36_900.0).kind == EventKind.ACCEPTED


def test_an_instrument_without_a_rate_is_an_error_naming_the_key() -> None:
    reg = InstrumentRegistry()
    reg.add("ES", "SIM", AssetClass.FUTURE, 0.25, 1.0, 50.0)
    reg.add("FDXM", "SIM", AssetClass.FUTURE, 1.0, 1.0, 5.0, currency="EUR")
    venue = SimVenue("SIM", SimVenueConfig())
    with pytest.raises(ValueError, match=r"FDXM\.SIM \(EUR\).*portfolio\.fx\.EUR"):
        Engine(reg, {"SIM": venue}, SimClock(0), risk=RiskConfig(equity=1e9))
    toml = """
[[instruments]]
symbol = "ES"
venue = "SIM"
tick_size = 0.25
[[instruments]]
symbol = "FDXM"
venue = "SIM"
tick_size = 1.0
currency = "EUR"
[venues.SIM]
kind = "sim"
"""
    with pytest.raises(ConfigError, match=r"portfolio\.fx\.EUR.*FDXM trades in EUR"):
        parse_config(tomllib.loads(toml), "my.toml")
    ok = parse_config(tomllib.loads(toml + "[portfolio.fx]\nEUR = 1.1\n"), "my.toml")
    assert ok.portfolio.fx == {"EUR": 1.1}
