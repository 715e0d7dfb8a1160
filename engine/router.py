"""The router: sends intents that passed the risk gate to the venue that lists the instrument.

Every routed order is stamped (``ts_routed`` here, ``ts_sent`` by the venue just before its
write) and the order path's stage latencies are recorded from those stamps, once the strategies
are done with the market data being dispatched: the orders still to come do not wait for it.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.clock import Clock
from engine.instruments import InstrumentRegistry
from engine.messages import OrderIntent
from engine.metrics import LatencyRecorder
from engine.orders import Order
from engine.venue import Venue


def _at_once(fn: Callable[[], object]) -> None:
    fn()


class Router:
    def __init__(
        self,
        registry: InstrumentRegistry,
        venues: dict[str, Venue],
        clock: Clock,
        latency: LatencyRecorder,
    ) -> None:
        missing = {i.venue for i in registry} - set(venues)
        if missing:
            raise ValueError(
                f"instruments list venues with no adapter: {', '.join(sorted(missing))}"
            )
        self._by_instrument: list[Venue] = [venues[i.venue] for i in registry]
        self._now = clock.now
        self._strategy = latency["strategy"]
        self._risk = latency["risk"]
        self._route = latency["route"]
        self._tick_to_order = latency["tick_to_order"]
        self._stamps: list[tuple[int, int, int, int]] = []  # routed, not yet recorded
        self.after_dispatch: Callable[[Callable[[], object]], None] = _at_once
        """Runs a callable once the strategies are done with the market data being dispatched
        (the engine sets its book actor's); by default at once."""
        self.orders = 0
        self.cancels = 0
        self.modifies = 0

    def submit(self, it: OrderIntent, order: Order | None) -> None:
        it.ts_routed = self._now()
        self._by_instrument[it.instrument_id].submit(it, order)
        self.orders += 1
        sent = it.ts_sent
        if order is not None:
            order.ts_sent = sent
        stamps = self._stamps
        stamps.append((it.ts_trigger, it.ts_created, it.ts_risk, sent))
        if len(stamps) == 1:
            self.after_dispatch(self._record)

    def _record(self) -> None:
        stamps, self._stamps = self._stamps, []
        for trigger, created, risk, sent in stamps:
            self._strategy.record(created - trigger)
            self._risk.record(risk - created)
            self._route.record(sent - risk)
            self._tick_to_order.record(sent - trigger)

    def cancel(self, order: Order) -> None:
        self.cancels += 1
        self._by_instrument[order.instrument_id].cancel(order)

    def modify(self, order: Order, qty_lots: int, price_ticks: int) -> None:
        self.modifies += 1
        self._by_instrument[order.instrument_id].modify(order, qty_lots, price_ticks)
