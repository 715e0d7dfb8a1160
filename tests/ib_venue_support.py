"""Test support: an engine trading through ``IBVenue`` against the gateway simulator.

The simulator runs on the test's own event loop and listens on a loopback port; the venue
connects to it through a real socket, exactly as it would to IB Gateway.
"""

from __future__ import annotations

import asyncio
from typing import Any

from event_recorder import Recorder

from adapters.ib.gateway_sim.server import GatewaySimServer
from adapters.ib.venue import IBVenue
from engine.clock import LiveClock
from engine.config import IBVenueConfig, RiskConfig, RouterConfig
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import EventKind
from engine.runtime import Engine
from tests.ib_sim_support import sim_config

SYMBOLS = ("AAPL", "MSFT")


async def until(pred, timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        assert loop.time() < deadline, f"{what} not reached within {timeout}s"
        await asyncio.sleep(0.005)


class IBHarness:
    """A simulator, an engine with one ``IBVenue`` named IB, and a recording strategy."""

    def __init__(
        self,
        symbols: tuple[str, ...] = SYMBOLS,
        sim: dict[str, Any] | None = None,
        risk: RiskConfig | None = None,
        router: RouterConfig | None = None,
        engine: dict[str, Any] | None = None,
        facts: dict[str, tuple[float, float, float, str]] | None = None,
        server: GatewaySimServer | None = None,
        classes: dict[str, AssetClass] | None = None,
        **venue: Any,
    ) -> None:
        self.symbols = symbols
        #: A simulator started by the caller, which outlives this harness (a process restart
        #: against the same broker); None: the harness starts and stops its own.
        self.shared = server
        #: Per symbol (tick size, lot size, multiplier, currency) in the engine's registry
        #: instead of the stocks' (0.01, 1, 1, USD).
        self.facts = facts or {}
        #: Per symbol the asset class, instead of STOCK (its IB contract keys go in the venue
        #: option ``contracts``).
        self.classes = classes or {}
        self.router = router
        self.sim_sections = sim or {}
        self.risk = risk or RiskConfig(equity=1e9)
        self.venue_options = venue
        self.engine_options = engine or {}  # more ``Engine`` keywords (``keep_warm_ms``...)
        self.server: GatewaySimServer | None = None
        self._mids: dict[str, float] = {}  # the last mid ``mid`` saw, by symbol

    async def __aenter__(self) -> IBHarness:
        if self.shared is not None:
            self.server = self.shared
        else:
            self.server = GatewaySimServer(sim_config(**self.sim_sections))
            await self.server.start()
        self.clock = LiveClock()
        self.clock.bind(asyncio.get_running_loop())
        self.registry = InstrumentRegistry()
        for s in self.symbols:
            self.registry.add(
                s,
                "IB",
                self.classes.get(s, AssetClass.STOCK),
                *self.facts.get(s, (0.01, 1.0, 1.0, "USD")),
            )
        options = {
            "port": self.server.port,
            "reconnect_initial_s": 0.05,
            "reconnect_max_s": 0.5,
            "reconcile_timeout_s": 3.0,
            **self.venue_options,
        }
        self.venue = IBVenue("IB", IBVenueConfig(**options))
        self.engine = Engine(
            self.registry, {"IB": self.venue}, self.clock, risk=self.risk, router=self.router,
            **self.engine_options,
        )  # fmt: skip
        self.strat: Recorder = self.engine.add_strategy(Recorder, "rec", None, list(self.symbols))
        self.prepare()
        self.engine.start()
        await self.venue.start()
        assert await self.venue.wait_ready(10), "the venue never became ready"
        return self

    def prepare(self) -> None:
        """Called with the engine built and its strategy added, before it starts."""

    async def __aexit__(self, *exc: object) -> None:
        self.engine.stop()
        await self.venue.stop()
        if self.server is not None and self.shared is None:
            await self.server.stop()

    # ---- helpers ----------------------------------------------------------------------------

    def core(self):
        assert self.server is not None
        return self.server.core

    def fault(self, action: str, **params: Any) -> None:
        self.core().fault(action, **params)
        self.server.flush()  # type: ignore[union-attr]

    def mid(self, symbol: str) -> float:
        """The book's mid, or while the book is empty (the venue empties it when IB's data
        stops: a disconnect, 1100) the last one seen: a price for an order a test sends then."""
        mid = self.strat.book(symbol).mid_ticks
        if mid is None:
            mid = self._mids.get(symbol)
        assert mid is not None, f"no book for {symbol} yet"
        self._mids[symbol] = mid
        return mid * 0.01

    async def book_ready(self, symbol: str = "AAPL") -> None:
        await until(lambda: self.strat.book(symbol).mid_ticks is not None, 5, f"{symbol} book")
        self.mid(symbol)  # noted, for an order priced while the book is emptied

    def kinds(self, coid: int) -> list[EventKind]:
        return self.strat.kinds(coid)

    async def wait_kind(self, coid: int, kind: EventKind, timeout: float = 5.0) -> None:
        await until(lambda: kind in self.kinds(coid), timeout, f"{kind.name} for {coid}")

    def sim_orders(self) -> list:
        """The simulator's orders, working and completed (what IB would show in TWS)."""
        core = self.core()
        return [*core.orders.values(), *core.completed]

    def sim_order(self, coid: int):
        """The simulator's record of our order ``coid`` (found by its orderRef)."""
        found = [o for o in self.sim_orders() if o.order.orderRef == str(coid)]
        assert found, f"the simulator has no order with orderRef {coid}"
        return found[-1]
