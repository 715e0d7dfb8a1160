"""The router: sends intents that passed the risk gate to the venue that lists the instrument.

Every routed order is stamped (``ts_routed`` here, ``ts_sent`` by the venue just before its
write) and the order path's stage latencies are recorded from those stamps.
"""

from __future__ import annotations

from engine.clock import Clock
from engine.instruments import InstrumentRegistry
from engine.messages import OrderIntent
from engine.metrics import LatencyRecorder
from engine.orders import Order
from engine.venue import Venue


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
        self._clock = clock
        self._strategy = latency["strategy"]
        self._risk = latency["risk"]
        self._route = latency["route"]
        self._tick_to_order = latency["tick_to_order"]
        self.orders = 0
        self.cancels = 0
        self.modifies = 0

    def submit(self, it: OrderIntent, order: Order | None) -> None:
        it.ts_routed = self._clock.now()
        self._by_instrument[it.instrument_id].submit(it, order)
        self.orders += 1
        if order is not None:
            order.ts_sent = it.ts_sent
        self._strategy.record(it.ts_created - it.ts_trigger)
        self._risk.record(it.ts_risk - it.ts_created)
        self._route.record(it.ts_sent - it.ts_risk)
        self._tick_to_order.record(it.ts_sent - it.ts_trigger)

    def cancel(self, order: Order) -> None:
        self.cancels += 1
        self._by_instrument[order.instrument_id].cancel(order)

    def modify(self, order: Order, qty_lots: int, price_ticks: int) -> None:
        self.modifies += 1
        self._by_instrument[order.instrument_id].modify(order, qty_lots, price_ticks)
