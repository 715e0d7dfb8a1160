"""The engine: rings, actors and the pump, wired into one single-threaded pipeline.

    feed ─► [book_deltas / quotes / trades rings] ─► BookActor ─► strategies
        ─► [intents ring] ─► RiskGate ─► Router ─► venue ─► [order_events ring] ─► OMS ─► strategies

``Engine`` is synchronous: producers write into its rings and call ``pump()``. ``engine.app``
puts it on the uvloop loop (feeds, timers, signals, metrics endpoint); tests and the benchmarks
drive it directly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry

from engine.book import BookStore, BookView
from engine.book_actor import BookActor
from engine.clock import Clock, TimerHandle
from engine.config import MetricsConfig, RingsConfig, RiskConfig
from engine.instruments import InstrumentRegistry
from engine.messages import BOOK_DELTA, QUOTE, TRADE, EventKind, OrderEvent, OrderIntent
from engine.metrics import EngineCollector, LatencyRecorder
from engine.orders import DUPLICATE, OrderTracker
from engine.portfolio import Portfolio
from engine.ring import ArrayRing, ObjectRing, OverflowPolicy
from engine.risk_gate import RiskGate, TradingState, Verdict
from engine.router import Router
from engine.scheduler import Priority, Scheduler
from engine.strategy import Strategy
from engine.venue import Venue, VenuePorts

log = logging.getLogger(__name__)

STAGES = ("feed_to_book", "strategy", "risk", "route", "tick_to_order", "order_ack")
ORDER_BATCH = 64

_FILL = EventKind.FILL  # module-level: an enum member read costs ~80 ns in Python 3.11
_ACCEPTED = EventKind.ACCEPTED
_COMMISSION = EventKind.COMMISSION
_OMS_DROP = DUPLICATE  # OrderTracker outcomes from here on are dropped


_HELP = {
    "messages_total": "Messages written to a ring.",
    "ring_dropped_total": "Market data lost to ring overflow.",
    "ring_conflated_total": "Market data folded into newer values by conflation.",
    "ring_overflow_total": "Order messages queued past a full ring (trading halts).",
    "orders_total": "Orders sent to venues.",
    "cancels_total": "Cancels sent to venues.",
    "fills_total": "Fills received.",
    "order_events_total": "Order events processed.",
    "oms_duplicate_total": "Order events dropped as duplicates (same status, same exec id).",
    "oms_stale_total": "Order events dropped as stale (the order had moved past them).",
    "oms_illegal_total": "Order events dropped as illegal transitions (logged with the order).",
    "book_skipped_total": "Invalid book deltas refused (bad instrument, side, action or size).",
    "book_dropped_total": "Book levels lost because the overflow store reached its maximum.",
    "book_crossed_total": "Batches that left a book crossed.",
    "rejects_total": "Intents rejected by the risk gate, by check.",
    "trading_state": "1 for the current trading state.",
    "strategy_pnl": "Strategy P&L: realised + unrealised - fees.",
}


class Engine:
    """One trading engine instance: see the module docstring for the data flow."""

    def __init__(
        self,
        registry: InstrumentRegistry,
        venues: dict[str, Venue],
        clock: Clock,
        *,
        rings: RingsConfig | None = None,
        risk: RiskConfig | None = None,
        metrics: MetricsConfig | None = None,
        name: str = "tickwire",
        book_window: int = 4096,
        order_history: int = 10_000,
        max_strategies: int = 32,
        trading_hours: dict[int, tuple[int, list[tuple[int, int]]]] | None = None,
    ) -> None:
        rings = rings or RingsConfig()
        metrics = metrics or MetricsConfig()
        self.name = name
        self.registry = registry
        self.clock = clock
        self.venues = venues
        self.latency = LatencyRecorder(STAGES, metrics.samples_per_stage)

        md_policy = OverflowPolicy(rings.md_policy)
        # Conflating price-level deltas keeps the newest size per (instrument, side, price):
        # exactly the book the dropped deltas would have produced.
        self.deltas = ArrayRing(
            "book_deltas", BOOK_DELTA, rings.market_data, md_policy,
            conflate_key=("instrument_id", "side", "price"),
        )  # fmt: skip
        self.quotes = ArrayRing(
            "quotes", QUOTE, rings.quotes, OverflowPolicy.CONFLATE, conflate_key=("instrument_id",)
        )
        self.trades = ArrayRing("trades", TRADE, rings.trades, OverflowPolicy.DROP_OLDEST)
        self.intents: ObjectRing[OrderIntent] = ObjectRing(
            "intents", OrderIntent, rings.intents, on_full=self._order_ring_full
        )
        self.events: ObjectRing[OrderEvent] = ObjectRing(
            "order_events", OrderEvent, rings.order_events, on_full=self._order_ring_full
        )
        self.halt_reason = ""
        self._flushing = False
        self.scheduler = Scheduler()
        self.pump = self.scheduler.pump

        self.books = BookStore(len(registry), book_window)
        self.books.warm_up()
        self.book_views = [BookView(self.books, inst) for inst in registry]
        self.tracker = OrderTracker(order_history)
        self.portfolio = Portfolio(registry, self.mark)
        self.router = Router(registry, venues, clock, self.latency)
        self.risk = RiskGate(
            registry, risk or RiskConfig(), self.tracker, self.events, self.router, clock,
            list(venues), max_strategies, trading_hours,
        )  # fmt: skip
        self._on_intent = self.risk.on_intent
        self.strategies: list[Strategy] = []
        self.book_actor = BookActor(self, rings.md_batch)
        self.risk.after_dispatch = self.book_actor.after_dispatch
        self.router.after_dispatch = self.book_actor.after_dispatch
        ports = VenuePorts(
            self.events, self.books, registry, clock, self.pump, self.book_actor.after_dispatch,
            self.deltas, self.quotes, self.trades, self.portfolio,
        )  # fmt: skip
        for venue in venues.values():
            venue.bind(ports)
        self.trigger_ts = 0  # ts_recv of the market data being dispatched, else 0
        self.fills = 0
        self.order_events = 0
        self.running = False
        self._timers: list[TimerHandle] = []

        sched = self.scheduler
        sched.add_lane(self.intents, self._drain_intents, ORDER_BATCH, Priority.ORDER_COMMANDS)
        sched.add_lane(
            self.events, lambda n: self.events.drain(self._on_event, n),
            ORDER_BATCH, Priority.ORDER_EVENTS,
        )  # fmt: skip
        sched.add_lane(
            self.quotes, self.book_actor.drain_quotes, rings.md_batch, Priority.MARKET_DATA
        )
        sched.add_lane(
            self.deltas, self.book_actor.drain_deltas, rings.md_batch, Priority.MARKET_DATA
        )
        sched.add_lane(
            self.trades, self.book_actor.drain_trades, rings.md_batch, Priority.MARKET_DATA
        )

    def _drain_intents(self, max_n: int) -> None:
        self.intents.drain(self._on_intent, max_n)

    def flush_intents(self) -> None:
        """Send every pending intent through the risk gate now (a strategy action calls it)."""
        if self._flushing:
            return  # a venue answering inline made a strategy act: the outer loop drains it
        intents = self.intents
        on_intent = self._on_intent
        self._flushing = True
        try:
            while intents.tail != intents.head:
                intents.drain(on_intent, ORDER_BATCH)
        finally:
            self._flushing = False

    # ---- strategies ------------------------------------------------------------------------

    def add_strategy(
        self,
        cls: type[Strategy],
        name: str,
        params: Any = None,
        instruments: list[str] | tuple[str, ...] = (),
    ) -> Strategy:
        """Create a strategy and subscribe it to the books and trades of ``instruments``."""
        if any(s.name == name for s in self.strategies):
            raise ValueError(f"strategy name {name!r} is already used")
        if len(self.strategies) >= self.risk.arrays.slim.shape[0]:
            raise ValueError(
                f"strategy {name!r}: the engine was built for {len(self.strategies)} strategies "
                "(raise max_strategies)"
            )
        strategy = cls(name, params, self, len(self.strategies))
        self.strategies.append(strategy)
        for ref in instruments:
            inst = self.registry.resolve(ref)
            strategy.instruments.append(inst)
            self.book_actor.subscribe(strategy, inst.id)
        return strategy

    def set_timer(self, strategy: Strategy, name: str, interval_s: float, repeat: bool) -> None:
        interval_ns = round(interval_s * 1e9)

        def fire() -> None:
            if not self.running:
                return
            self.trigger_ts = 0
            try:
                strategy.on_timer(name)
            except Exception:
                log.exception("strategy %r: on_timer(%r) raised", strategy.name, name)
            if repeat:
                self._timers.append(self.clock.call_later(interval_ns, fire))
            self.pump()

        self._timers.append(self.clock.call_later(interval_ns, fire))
        if len(self._timers) > 1024:
            # Fired one-shot handles are not needed any more.
            self._timers = self._timers[-256:]

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start strategies (``on_start``) and process what they sent."""
        self.running = True
        for s in self.strategies:
            try:
                s.on_start()
            except Exception:
                log.exception("strategy %r: on_start raised", s.name)
        self.pump()

    def stop(self) -> None:
        """Stop strategies (``on_stop``), let their last requests through, cancel timers."""
        if not self.running:
            return
        for s in self.strategies:
            try:
                s.on_stop()
            except Exception:
                log.exception("strategy %r: on_stop raised", s.name)
        self.pump()
        self.running = False
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    # ---- trading state ---------------------------------------------------------------------

    @property
    def trading_state(self) -> TradingState:
        return self.risk.state

    def halt(self, reason: str) -> None:
        """Stop all new orders (cancels still pass)."""
        self.halt_reason = reason
        self.risk.set_state(TradingState.HALTED, reason)

    def _order_ring_full(self, ring: ObjectRing) -> None:
        reason = (
            f"ring {ring.name!r} is full (capacity {ring.capacity}): trading HALTED. No message "
            f"was dropped: the overflow is queued and delivered in order. The consumer is not "
            f"keeping up: look for a slow or stuck callback, or raise rings.{ring.name} in the "
            f"config."
        )
        log.critical(reason)
        self.halt(reason)

    # ---- order events (the OMS side) -------------------------------------------------------

    def _on_event(self, ev: OrderEvent) -> None:
        self.order_events += 1
        if ev.kind == _COMMISSION:
            # A commission reported after its fill: it changes fees, not the order.
            self.portfolio.position(ev.strategy_id, ev.instrument_id).commission += ev.commission
            return
        # The OMS classifies first: a duplicate, stale or illegal event reaches neither the
        # risk kernels nor the portfolio nor the strategy (the tracker counts it). The kernels
        # see the order as it was before the event, then the OMS applies it.
        tracker = self.tracker
        if tracker.check(ev) >= _OMS_DROP:
            return
        order = tracker.order
        self.risk.on_event(ev, order)
        tracker.commit(ev)
        kind = ev.kind
        if kind == _FILL:
            self.fills += 1
            self.portfolio.apply_fill(
                ev.strategy_id, ev.instrument_id, ev.side, ev.fill_lots, ev.fill_price_ticks,
                ev.commission,
            )  # fmt: skip
        elif kind == _ACCEPTED and order is not None and order.ts_sent:
            self.latency["order_ack"].record(ev.ts_recv - order.ts_sent)
        if not 0 <= ev.strategy_id < len(self.strategies):
            log.error("order event for unknown strategy id %d dropped", ev.strategy_id)
            return
        strategy = self.strategies[ev.strategy_id]
        if kind == _FILL:
            strategy.on_fill(ev)
        else:
            strategy.on_order(ev)

    # ---- reading ---------------------------------------------------------------------------

    def mark(self, instrument_id: int) -> float | None:
        """Mid price in ticks, the mark for P&L and the reference for market orders."""
        return self.book_views[instrument_id].mid_ticks

    def counters(self) -> Iterator[tuple[str, str, dict[str, str], float]]:
        """Prometheus counters, read from the actors' own integers."""
        rows: list[tuple[str, dict[str, str], float]] = []
        for ring in (self.deltas, self.quotes, self.trades):
            label = {"ring": ring.name}
            rows += [
                ("messages_total", label, ring.tail),
                ("ring_dropped_total", label, ring.dropped),
                ("ring_conflated_total", label, ring.conflated),
            ]
        for ring in (self.intents, self.events):
            label = {"ring": ring.name}
            rows += [
                ("messages_total", label, ring.tail + len(ring._spill)),
                ("ring_overflow_total", label, ring.spilled),
            ]
        rows += [
            ("orders_total", {}, self.router.orders),
            ("cancels_total", {}, self.router.cancels),
            ("fills_total", {}, self.fills),
            ("order_events_total", {}, self.order_events),
            ("oms_duplicate_total", {}, self.tracker.duplicates),
            ("oms_stale_total", {}, self.tracker.stale),
            ("oms_illegal_total", {}, self.tracker.illegal),
            ("book_skipped_total", {}, self.books.skipped),
            ("book_dropped_total", {}, self.books.dropped),
            ("book_crossed_total", {}, self.books.crossed),
        ]
        rows += [("rejects_total", {"reason": v.name}, self.risk.rejects[v]) for v in Verdict if v]
        for name, labels, value in rows:
            yield name, _HELP[name], labels, value

    def gauges(self) -> Iterator[tuple[str, str, dict[str, str], float]]:
        for state in TradingState:
            active = float(self.risk.state is state)
            yield "trading_state", _HELP["trading_state"], {"state": state.value}, active
        for s in self.strategies:
            pnl = self.portfolio.total_pnl(s.id)
            yield "strategy_pnl", _HELP["strategy_pnl"], {"strategy": s.name}, pnl

    def prometheus_registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(EngineCollector(self.latency, self.counters, self.gauges))
        return registry
