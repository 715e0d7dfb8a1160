"""The sample SMA crossover (engine/strategies/sma.py) on a real Engine and SimVenue.

fast=2, slow=3 samples of the mid: three rising mids make it long ``target``, falling ones
short; the venue answers at once.
"""

from __future__ import annotations

import numpy as np

from adapters.sim.venue import SimVenue
from engine.clock import SimClock
from engine.config import RiskConfig
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import BOOK_DELTA, BookSide, DeltaAction
from engine.runtime import Engine
from engine.strategies.sma import SmaCrossover, SmaParams

BID, ASK = int(BookSide.BID), int(BookSide.ASK)


class Harness:
    def __init__(self, lot_size: float = 1.0, target: float = 10.0) -> None:
        registry = InstrumentRegistry()
        registry.add("BTC", "SIM", AssetClass.CRYPTO, 0.01, lot_size, 1.0, currency="USD")
        self.clock = SimClock(1_000_000_000)
        self.venue = SimVenue("SIM")
        self.engine = Engine(registry, {"SIM": self.venue}, self.clock, risk=RiskConfig(equity=1e9))
        params = SmaParams(fast=2, slow=3, target=target)
        self.sma: SmaCrossover = self.engine.add_strategy(SmaCrossover, "sma", params, ["BTC"])
        self.engine.start()
        self._last: tuple[int, int] | None = None

    def mid(self, ticks: int) -> None:
        """Move the book to bid ``ticks - 1`` / ask ``ticks + 1`` (one batch)."""
        rows = [(BID, ticks - 1, 1000), (ASK, ticks + 1, 1000)]
        if self._last is not None:
            rows = [(BID, self._last[0], 0), (ASK, self._last[1], 0), *rows]
        self._last = (ticks - 1, ticks + 1)
        d = np.zeros(len(rows), dtype=BOOK_DELTA)
        d["instrument_id"] = 0
        d["action"] = DeltaAction.SET
        d["side"] = [r[0] for r in rows]
        d["price"] = [r[1] for r in rows]
        d["size"] = [r[2] for r in rows]
        self.engine.deltas.write(d)
        self.engine.pump()

    def rejects(self) -> int:
        return sum(self.engine.risk.rejects)


def test_with_fractional_lots_the_target_is_held_without_dust_orders() -> None:
    h = Harness(lot_size=0.1, target=0.3)
    for k in range(8):
        h.mid(10_000 + 10 * k)
    assert h.sma.live_position("BTC") == 3 * 0.1  # 0.30000000000000004, three whole lots
    for k in range(8):
        h.mid(10_070 - 10 * k)
    assert h.engine.portfolio.position(h.sma.id, 0).lots == -3
    assert h.venue.received == 2  # long, then the flip: no order for the float's residue
    assert h.rejects() == 0


def test_halted_it_sends_nothing_and_reducing_it_only_closes() -> None:
    h = Harness()
    for k in range(4):
        h.mid(10_000 + 10 * k)
    assert h.sma.position("BTC") == 10
    h.engine.set_trading_state("halted", "operator says stop")
    for k in range(6):  # the signal turns short
        h.mid(10_030 - 10 * k)
    assert h.venue.received == 1
    h.engine.set_trading_state("reducing", "operator says reduce")
    h.mid(9_970)
    h.mid(9_960)
    assert h.sma.position("BTC") == 0  # closed, not flipped: a flip would be refused
    assert h.venue.received == 2
    assert h.rejects() == 0
    h.engine.set_trading_state("active", "operator says go")
    h.mid(9_950)
    assert h.sma.position("BTC") == -10
