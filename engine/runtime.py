"""The engine: rings, actors and the pump, wired into one single-threaded pipeline.

    feed ─► [book_deltas / quotes / trades rings] ─► BookActor ─► strategies
        ─► [intents ring] ─► RiskGate ─► Router ─► venue ─► [order_events ring] ─► OMS ─► strategies

``Engine`` is synchronous: producers write into its rings and call ``pump()``. ``engine.app``
puts it on the uvloop loop (feeds, timers, signals, metrics endpoint); tests and the benchmarks
drive it directly.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry

from engine.book import BookStore, BookView
from engine.book_actor import BookActor
from engine.breakers import Breakers, TradingStateChange
from engine.clock import Clock, TimerHandle
from engine.config import MetricsConfig, PortfolioConfig, RingsConfig, RiskConfig, RouterConfig
from engine.instruments import InstrumentRegistry
from engine.journal import Journal
from engine.messages import (
    BOOK_DELTA,
    NO_PRICE,
    QUOTE,
    TRADE,
    EventKind,
    IntentKind,
    OrderEvent,
    OrderIntent,
    Side,
)
from engine.metrics import EngineCollector, LatencyRecorder, LoopMonitor
from engine.orders import DUPLICATE, Order, OrderState, OrderTracker
from engine.portfolio import Portfolio
from engine.ring import ArrayRing, ObjectRing, OverflowPolicy
from engine.risk_gate import RiskGate, TradingState, Verdict
from engine.router import Router, VenueMode
from engine.scheduler import Priority, Scheduler
from engine.strategy import Strategy, check_params
from engine.trading_day import TradingDay
from engine.venue import LOST_WITH_PROCESS, Venue, VenuePorts
from hotpath import risk as rk

log = logging.getLogger(__name__)

#: ``order_path``: from the strategy's order to the venue's write (risk gate, OMS record,
#: router, journal append, venue encode): ``route`` + ``risk``, recorded per order.
STAGES = (
    "feed_to_book", "strategy", "risk", "route", "order_path", "tick_to_order", "order_ack",
)  # fmt: skip
ORDER_BATCH = 64

_NEW = int(IntentKind.NEW)
_FILL = EventKind.FILL  # module-level: an enum member read costs ~80 ns in Python 3.11
_ACCEPTED = EventKind.ACCEPTED
_COMMISSION = EventKind.COMMISSION
_CANCELLED = EventKind.CANCELLED
_CANCEL = int(IntentKind.CANCEL)
_BUY = int(Side.BUY)
#: How often a journal that cannot be written is retried, and how often that is logged again.
JOURNAL_RETRY_NS = 1_000_000_000
JOURNAL_REMINDER_NS = 60_000_000_000
#: ``TradingStateChange.source`` of a halt because the journal cannot be written.
JOURNAL = "journal"
_OMS_DROP = DUPLICATE  # OrderTracker outcomes from here on are dropped
_PENDING_CANCEL = OrderState.PENDING_CANCEL
_INITIALIZED = OrderState.INITIALIZED
_WARNING = logging.WARNING
# How restrictive a state is: lifting one (to a lower rank) is for the operator, or for the
# breaker that set it.
_RANK = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
PDT_WINDOW_DAYS = 5  # FINRA's pattern-day-trader window: 5 business days


_HELP = {
    "messages_total": "Messages written to a ring.",
    "ring_dropped_total": "Market data lost to ring overflow.",
    "ring_conflated_total": "Market data folded into newer values by conflation.",
    "ring_overflow_total": "Order messages queued past a full ring (trading halts).",
    "ring_handler_errors_total": (
        "Order messages whose handler raised (logged with the traceback): the message was not "
        "processed."
    ),
    "strategy_callback_errors_total": "Strategy callbacks on market data that raised (logged).",
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
    "trading_state_changes_total": "Trading state transitions, by new state and source.",
    "breaker_trips_total": "Circuit breaker trips, by breaker.",
    "breaker_resets_total": "Circuit breaker resets, by breaker.",
    "kill_switch_total": "Kill switch activations.",
    "loop_stalls_total": "Times the event loop ran a timer later than [metrics] loop_stall_ms.",
    "loop_stall_seconds_total": "Lateness summed over those stalls.",
    "loop_stall_busy_seconds_total": "Of those, at least this long our code held the loop.",
    "loop_stall_off_cpu_seconds_total": (
        "Of those, at least this long the engine thread was not running (preempted)."
    ),
    "loop_stall_queued_seconds_total": (
        "Of the time not running, at least this long the thread waited runnable for its CPU "
        "behind other tasks (Linux run delay): pin the engine apart with cpu_affinity."
    ),
    "loop_stall_away_seconds_total": (
        "Of the time not running, at least this long neither running nor waiting for a CPU: "
        "blocked in a call, or the vCPU itself away (hypervisor steal, a late wake-up)."
    ),
    "trading_state": "1 for the current trading state.",
    "journal_writable": (
        "1 while the order journal takes writes, 0 while its file refuses them (disk full, I/O "
        "error, file size limit): trading is HALTED and records are held in memory."
    ),
    "journal_backlog_records": (
        "Journal records held in memory because the file refused them; written in order once "
        "it takes writes again."
    ),
    "strategy_pnl": "Strategy P&L: realised + unrealised - fees.",
    "router_fill_rate": "Share of routed orders with a fill, by venue and book (live/shadow).",
    "router_slippage_bp": "Mean slippage of fills vs the arrival mid in bp (+ = worse for us).",
}


def _drop(_: object) -> None:
    pass


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
        portfolio: PortfolioConfig | None = None,
        router: RouterConfig | None = None,
        keep_warm_ms: float = 0.0,
        cancel_on_stop: bool = True,
    ) -> None:
        rings = rings or RingsConfig()
        metrics = metrics or MetricsConfig()
        risk = risk or RiskConfig()
        self.name = name
        self.registry = registry
        self.clock = clock
        self.venues = venues
        self.latency = LatencyRecorder(STAGES, metrics.samples_per_stage)
        #: Watches the event loop's lateness when running live (``run_app`` sets it).
        self.loop_monitor: LoopMonitor | None = None

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
        equity = (risk or RiskConfig()).equity
        self.portfolio = Portfolio(registry, self.mark, portfolio, equity)
        #: Fills of orders the router shadowed (SHADOW / CANARY venues), kept apart.
        self.shadow_portfolio = Portfolio(registry, self.mark, portfolio, equity)
        self.router = Router(registry, venues, clock, self.latency, router, self.books)
        self.router.portfolio = self.portfolio
        self.router.shadow_portfolio = self.shadow_portfolio
        self.risk = RiskGate(
            registry, risk, self.tracker, self.events, self.router, clock,
            list(venues), max_strategies, trading_hours, portfolio,
        )  # fmt: skip
        self._on_intent = self.risk.on_intent
        self.strategies: list[Strategy] = []
        self.book_actor = BookActor(self, rings.md_batch)
        self.risk.after_dispatch = self.book_actor.after_dispatch
        self.router.after_dispatch = self.book_actor.after_dispatch
        ports = VenuePorts(
            self.events, self.books, registry, clock, self.pump, self.book_actor.after_dispatch,
            self.deltas, self.quotes, self.trades, self.portfolio, self.broker_equity,
        )  # fmt: skip
        self._equity_warned = False
        self._equity_taken = False  # ``broker_equity`` took the account's as the equity
        for venue in venues.values():
            venue.bind(ports)
        self.router.bind(ports)  # its shadow venues: same books, same order-event ring
        self.trigger_ts = 0  # ts_recv of the market data being dispatched, else 0
        self.fills = 0
        self.order_events = 0
        self.running = False
        #: ``stop`` cancels every order still open (``[engine] cancel_on_stop``).
        self.cancel_on_stop = cancel_on_stop
        # Armed strategy timers, by (strategy id, timer name): a name is one timer.
        self._timers: dict[tuple[int, str], _StrategyTimer] = {}

        # Trading state, circuit breakers and the trading day.
        self.state_source = ""  # who set the current trading state ("" at start)
        self.state_changes: dict[tuple[str, str], int] = {}  # (new state, source) -> count
        self.on_state_change: Callable[[TradingStateChange], None] | None = None
        #: The order journal (``attach_journal``): every order, request and event is appended
        #: to it before it is sent or before the OMS and the strategy see it (while its file
        #: refuses writes, see ``_journal_failed``).
        self.journal: Journal | None = None
        """Called with every trading-state transition before the strategies hear of it (the
        journal's hook)."""
        self._journal_timer: TimerHandle | None = None  # retries a journal that refuses writes
        self._journal_failed_at = 0  # engine-clock ns when it started refusing them
        self._journal_reminded_at = 0
        self.kill_switches = 0
        self.breakers = Breakers(risk.breakers, self)
        self._risk_config = risk
        #: The one trading day every daily figure rolls on (``[risk] daily_reset``).
        self.trading_day = TradingDay(risk.daily_reset, risk.daily_reset_tz)
        self._day_trades: deque[float] = deque(maxlen=PDT_WINDOW_DAYS - 1)  # earlier days'
        self._breaker_timer: TimerHandle | None = None
        self._roll_timer: TimerHandle | None = None
        #: ``keep_warm_ms`` > 0: every that many ms while idle, ``warm_order_path`` (a dry run).
        self.keep_warm_ms = keep_warm_ms
        self.warm_runs = 0  # dry runs made
        self.warm_skips = 0  # timer ticks skipped: work pending, or no order shape yet
        self._warm_timer: TimerHandle | None = None
        self._warm_intent = OrderIntent()  # private: the last plain order's shape, copied
        self._warm_ready = False
        # Private: the intent ring's code runs on it (claim, drain) with a handler that drops.
        self._warm_ring: ObjectRing[OrderIntent] = ObjectRing("warm", OrderIntent, 2)

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
        """Create a strategy for the books and trades of ``instruments``; it hears of them from
        ``start`` on (its ``on_start`` first), as of its orders."""
        if any(s.name == name for s in self.strategies):
            raise ValueError(f"strategy name {name!r} is already used")
        if len(self.strategies) >= self.risk.arrays.slim.shape[0]:
            raise ValueError(
                f"strategy {name!r}: the engine was built for {len(self.strategies)} strategies "
                "(raise max_strategies)"
            )
        check_params(params)
        strategy = cls(name, params, self, len(self.strategies))
        self.risk.configure_strategy(strategy.id, name)
        self.strategies.append(strategy)
        for ref in instruments:
            inst = self.registry.resolve(ref)
            strategy.instruments.append(inst)
            if self.running:
                self.book_actor.subscribe(strategy, inst.id)
        return strategy

    def set_timer(self, strategy: Strategy, name: str, interval_s: float, repeat: bool) -> None:
        """``strategy.on_timer(name)`` in ``interval_s`` seconds (and every ``interval_s`` with
        ``repeat``). A timer of the same name is replaced. An interval that is not a finite
        number of seconds > 0 is a ``ValueError``: a zero interval would fire forever at one
        instant (a simulated clock never moves past it)."""
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ValueError(
                f"strategy {strategy.name!r}: timer {name!r}: interval_s must be a finite number "
                f"of seconds > 0, got {interval_s!r}"
            )
        self.cancel_timer(strategy, name)
        timer = _StrategyTimer(self, strategy, name, max(round(interval_s * 1e9), 1), repeat)
        timer.handle = self.clock.call_later(timer.interval_ns, timer.fire)
        self._timers[strategy.id, name] = timer

    def cancel_timer(self, strategy: Strategy, name: str) -> bool:
        """Disarm ``strategy``'s timer ``name``; False if none was armed."""
        timer = self._timers.pop((strategy.id, name), None)
        if timer is None:
            return False
        timer.disarm()
        return True

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start strategies (``on_start``) and process what they sent."""
        self.running = True
        if self._risk_config.breakers.enabled:
            self._arm_breakers()
        self._arm_roll_day()
        if self.keep_warm_ms > 0:
            self._arm_keep_warm()
        if self.journal is not None and self.journal.error:
            self._arm_journal_retry()  # it failed before the loop could run timers
        for s in self.strategies:
            if s.disabled:
                continue
            for inst in s.instruments:  # again, after a stop
                self.book_actor.subscribe(s, inst.id)
            try:
                s.on_start()
            except Exception as e:
                log.exception("strategy %r: on_start raised", s.name)
                self.disable_strategy(s, f"on_start raised {type(e).__name__}: {e}")
            else:
                s.started = True
        self.pump()

    def stop(self) -> list[Order]:
        """Stop: strategies' ``on_stop``, their last requests let through, and from then on no
        strategy is called (no market data, order events or timers). Then every order still
        open at a venue is cancelled (``cancel_everything``) or, with ``cancel_on_stop`` off,
        logged as left working. Returns the orders still open: the venues answer their cancels
        later (``engine.app.stop_engine`` waits for them before the venues disconnect)."""
        if not self.running:
            return []
        for s in self.strategies:
            if s.disabled:
                continue
            s.started = False
            try:
                s.on_stop()
            except Exception:
                log.exception("strategy %r: on_stop raised", s.name)
        self.pump()
        self.running = False
        for s in self.strategies:
            self._unsubscribe(s)
        for timer in self._timers.values():
            timer.disarm()
        self._timers.clear()
        for t in (self._breaker_timer, self._roll_timer, self._warm_timer):
            if t is not None:
                t.cancel()
        self._breaker_timer = self._roll_timer = self._warm_timer = None
        working = self.working_orders()
        if working and self.cancel_on_stop:
            self.cancel_everything("stopping", level=logging.INFO)
            self.pump()
        elif working:
            log.warning(
                "stopping with [engine] cancel_on_stop off: %d orders left working at the "
                "venues: %s", len(working), describe_orders(self, working),
            )  # fmt: skip
        return self.working_orders()

    def working_orders(self) -> list[Order]:
        """The open orders a venue holds or is being sent (not those the gate refused)."""
        return [o for o in self.tracker.open.values() if o.state is not _INITIALIZED]

    def disable_strategy(self, strategy: Strategy, reason: str) -> int:
        """Take ``strategy`` out for ``reason`` (its ``on_start`` raised, say): from now on it
        gets no callbacks (market data, order events, timers, trading states, ``on_stop``),
        and its open orders are cancelled. Logged as an error; returns how many cancels went
        out. The engine and the other strategies go on."""
        strategy.disabled = reason
        self._unsubscribe(strategy)
        for key in [k for k in self._timers if k[0] == strategy.id]:
            self._timers.pop(key).disarm()
        n = self.cancel_everything(f"strategy {strategy.name!r} disabled", strategy.id)
        log.error(
            "strategy %r is disabled: %s; it gets no more callbacks, and its %d open orders "
            "are cancelled", strategy.name, reason, n,
        )  # fmt: skip
        return n

    def _unsubscribe(self, strategy: Strategy) -> None:
        """No more market data for ``strategy`` (it stopped, or was disabled)."""
        actor = self.book_actor
        for subs in (*actor.book_subs, *actor.trade_subs):
            if strategy in subs:
                subs.remove(strategy)

    # ---- trading state ---------------------------------------------------------------------

    @property
    def trading_state(self) -> TradingState:
        return self.risk.state

    def set_trading_state(
        self, state: TradingState | str, reason: str, source: str = "operator"
    ) -> TradingStateChange | None:
        """Move to ``state`` (ACTIVE, REDUCING, HALTED, or their names) for ``reason``.

        Returns the transition, or None when nothing changed: the state is already ``state``
        (no event), or ``source`` may not lift it (only the operator, or the breaker that set
        a state, may move to a less restrictive one; refused with a warning). A transition is
        logged (critical for the kill switch), counted (``trading_state_changes_total``), handed
        to ``on_state_change`` and then to every strategy's ``on_trading_state``.
        """
        if not isinstance(state, TradingState):
            try:
                state = TradingState(str(state).lower())
            except ValueError:
                names = ", ".join(s.name for s in TradingState)
                raise ValueError(f"trading state {state!r}: expected one of {names}") from None
        if not reason:
            raise ValueError("a trading state change needs a reason (it is logged and journaled)")
        old = self.risk.state
        if state is old:
            log.info("trading state is already %s (%s asked: %s)", state.name, source, reason)
            return None
        journal = self.journal
        if journal is not None and journal.error and state is not TradingState.HALTED:
            log.warning(
                "trading state %s not lifted to %s: %s (asked by %s: %s). Set it again once "
                "the journal logs that it takes writes again",
                old.name, state.name, journal.problem, source, reason,
            )  # fmt: skip
            return None
        if _RANK[state] < _RANK[old] and source not in ("operator", self.state_source):
            log.warning(
                "trading state %s (set by %s) not lifted to %s: %s may not lift it, only the "
                "operator (asked: %s)",
                old.name, self.state_source or "start-up", state.name, source, reason,
            )  # fmt: skip
            return None
        change = TradingStateChange(self.clock.now(), old, state, reason, source)
        self.risk.set_state(state, reason)
        self.state_source = source
        if state is TradingState.HALTED:
            self.halt_reason = reason
        key = (state.value, source)
        self.state_changes[key] = self.state_changes.get(key, 0) + 1
        level = logging.CRITICAL if source == "kill_switch" else logging.WARNING
        log.log(level, "trading state %s -> %s by %s: %s", old.name, state.name, source, reason)
        self.breakers.on_state_change(change)
        hook = self.on_state_change
        if hook is not None:
            try:
                hook(change)
            except Exception:
                log.exception("on_state_change hook raised for %s -> %s", old.name, state.name)
        for s in self.strategies:
            if s.disabled or not s.started:
                continue
            try:
                s.on_trading_state(change)
            except Exception:
                log.exception("strategy %r: on_trading_state raised", s.name)
        return change

    def halt(self, reason: str) -> None:
        """Stop all new orders (cancels still pass)."""
        self.halt_reason = reason
        self.set_trading_state(TradingState.HALTED, reason, source="engine")

    def cancel_everything(
        self, why: str = "cancel everything", strategy_id: int | None = None, level: int = _WARNING
    ) -> int:
        """Cancel every open order of this engine (of one strategy with ``strategy_id``), each
        at the venue it was routed to (a shadowed one at its shadow venue), through the router's
        cancel path (journaled, marked PENDING_CANCEL); returns how many cancels were sent. Logs
        how many went where (at ``level``).

        Never a venue-wide cancel: IB's global cancel (``Venue.cancel_all``) cancels every open
        order of the account, whichever client placed it (other engines, TWS), and would let a
        loss made in the shadow book cancel live orders. An order the gate refused never left,
        and one whose cancel is pending is not cancelled again. A cancel that raises is logged
        and the others still go: the caller halts next."""
        sent: dict[str, int] = {}
        pending = 0
        cancel_order = self.risk.cancel_order
        for order in list(self.tracker.open.values()):
            if strategy_id is not None and order.strategy_id != strategy_id:
                continue
            where = self.venue_of(order)
            try:
                if cancel_order(order):
                    sent[where] = sent.get(where, 0) + 1
                elif order.state is _PENDING_CANCEL:
                    pending += 1
            except Exception:
                log.exception(
                    "%s: the cancel of order %d at %s raised", why, order.client_order_id, where
                )
        n = sum(sent.values())
        done = ", ".join(f"{count} at {name}" for name, count in sorted(sent.items()))
        log.log(
            level, "%s: %d open orders of this engine cancelled, one by one (%s)%s", why, n,
            done or "none was open", f"; {pending} already being cancelled" if pending else "",
        )  # fmt: skip
        return n

    def kill_switch(self, reason: str) -> TradingStateChange | None:
        """Cancel this engine's open orders (``cancel_everything``), then HALT; the operator
        lifts it with ``set_trading_state(ACTIVE, reason)``. With ``[risk]
        kill_switch_global_cancel = true`` each venue that sends orders for real (LIVE or
        CANARY, never a SHADOW one) is also asked for a venue-wide cancel (IB: every open
        order of the account, whichever client placed it)."""
        self.kill_switches += 1
        n = self.cancel_everything("KILL SWITCH")
        wiped = []
        if self._risk_config.kill_switch_global_cancel:
            for name, venue in self.venues.items():
                if self.router.modes[name] is VenueMode.SHADOW:
                    continue  # nothing of ours is there: it would cancel only others' orders
                try:
                    venue.cancel_all()
                    wiped.append(name)
                except Exception:
                    log.exception("venue %r: cancel_all raised", name)
        log.critical(
            "KILL SWITCH: %s (%d open orders cancelled one by one%s)", reason, n,
            f"; global cancel at {', '.join(wiped)}" if wiped else "",
        )  # fmt: skip
        change = self.set_trading_state(TradingState.HALTED, reason, source="kill_switch")
        self.pump()
        return change

    def broker_equity(self, value: float, currency: str, venue: str) -> None:
        """The broker's net liquidation value of the account (IB: ``NetLiquidation`` from the
        account updates), which includes today's P&L. While the risk checks have no
        start-of-day equity (``[risk] equity`` not set, and none taken yet), it becomes theirs:
        ``value`` less today's P&L as the kernels count it, so leverage, concentration and the
        loss breaker measure against the account. Taken once: from then on the engine carries
        it (each day roll starts the day at the close's equity), and a ``[risk] equity`` the
        operator set is never replaced. A value in another currency than the base one is not
        converted (the account's base currency should be the engine's): warned once."""
        if (
            self._equity_taken
            or not math.isnan(self._risk_config.equity)
            or not (math.isfinite(value) and value > 0)
        ):
            return
        base = self.portfolio.base_currency
        if currency != base:
            if not self._equity_warned:
                self._equity_warned = True
                log.warning(
                    "venue %s reports the account's net liquidation value in %s, not the base "
                    "currency %s: not taken as the risk checks' equity; set [risk] equity, or "
                    "portfolio.base_currency = %r", venue, currency, base, currency,
                )  # fmt: skip
            return
        sod = value - self.breakers.day_pnl()
        self.risk.arrays.gst[rk.GS_EQUITY_SOD] = sod
        self._equity_taken = True
        log.info(
            "start-of-day equity %.2f %s for the risk checks, from venue %s's net liquidation "
            "value %.2f less today's P&L", sod, base, venue, value,
        )  # fmt: skip

    def roll_day(self) -> None:
        """Start a new trading day: the risk kernels' daily P&L and counts are reset (equity
        carries today's close), the live and shadow portfolios' day too, and the daily loss
        breaker re-arms and lifts its halt. Scheduled at each boundary of ``trading_day``
        (``[risk] daily_reset`` in ``daily_reset_tz``). First the venues end their day
        (``_end_venue_day``)."""
        now = self.clock.now()
        self._end_venue_day(now)
        self._new_day(now)
        log.info(
            "trading day rolled: start-of-day equity %.2f", self.risk.arrays.gst[rk.GS_EQUITY_SOD]
        )
        self.breakers.roll_day()
        self.pump()

    def _end_venue_day(self, at_ns: int) -> None:
        """Every venue, live or shadow, that defines ``on_day_end(ts)`` is told the trading day
        ended (the simulated venue expires its DAY orders there). It is optional: IB expires
        DAY orders itself, at each market's close, and reports them. A venue whose hook raises
        is logged and the roll goes on: the next day's roll must still be armed. Recovery's
        replayed rolls (``replay_roll_day``) do not call it: no venue works an order yet then
        (the simulated venue keeps none across a restart, IB reconciles its own)."""
        for venue in (*self.venues.values(), *self.router.shadow_venues.values()):
            end = getattr(venue, "on_day_end", None)
            if end is None:
                continue
            try:
                end(at_ns)
            except Exception:
                log.exception(
                    "venue %s: on_day_end raised at the day roll; orders it should have ended "
                    "at the day's end may still be working there", venue.name,
                )  # fmt: skip

    def replay_roll_day(self, at_ns: int) -> None:
        """Recovery: the day roll at the boundary ``at_ns`` that the journal's records cross,
        as ``roll_day`` made it (or would have, had the engine been running then): fills
        before it keep building positions and total P&L, not the new day's figures. Nothing
        is logged or pumped and the breakers are left alone: trading has not started."""
        self._new_day(at_ns)

    def _new_day(self, at_ns: int) -> None:
        a = self.risk.arrays
        today = float(a.gst[rk.GS_DAY_TRADES]) - sum(self._day_trades)
        self._day_trades.append(max(today, 0.0))
        rk.daily_reset(a.ist, a.sst, a.pst, a.gst, float("nan"), sum(self._day_trades))
        self.portfolio.roll_day(at_ns)
        self.shadow_portfolio.roll_day(at_ns)

    def _arm_breakers(self) -> None:
        interval_ns = round(self._risk_config.breakers.interval_ms * 1e6)

        def fire() -> None:
            if not self.running:
                return
            self.breakers.evaluate()
            self.pump()
            self._breaker_timer = self.clock.call_later(interval_ns, fire)

        self._breaker_timer = self.clock.call_later(interval_ns, fire)

    # ---- keeping the order path warm -------------------------------------------------------

    def warm_order_path(self) -> bool:
        """A dry run of the order path for the last plain order that passed the gate: the risk
        check on scratch copies of the limit state (``RiskGate.dry_check``), then the router's
        choice of venue and that venue's ``warm`` (IB: the placeOrder template encoded again into
        a scratch frame). Nothing is sent, journaled, counted or changed: no order id, position,
        risk counter or rate token, no pacer or socket write. Returns whether it ran.

        Orders are sparse on a paced venue (IB: ~45 msg/s at most), and between two of them
        the caches, branch predictors and the interpreter's specialised code for this path go
        cold: a cold order costs several times a warm one. Running it every ~1 ms while idle
        keeps it warm (``[engine] keep_warm``). Skipped, not delayed, while anything is pending:
        a ring holds work, the pump or a dispatch is running, or an intent is being flushed.
        """
        if not self.running or self._flushing or self.scheduler.pumping:
            self.warm_skips += 1
            return False
        for ring in (self.intents, self.events, self.deltas, self.quotes, self.trades):
            if ring.tail != ring.head:
                self.warm_skips += 1
                return False
        it = self._warm_intent
        last = self.intents.last()
        # A plain NEW the gate passed (it wrote qty_lots): copy its shape, never use the slot.
        if last is not None and last.kind == _NEW and last.qty_lots > 0 and not last.extended:
            it.kind = _NEW
            it.strategy_id = last.strategy_id
            it.instrument_id = last.instrument_id
            it.client_order_id = last.client_order_id
            it.side = last.side
            it.order_type = last.order_type
            it.tif = last.tif
            it.qty = last.qty
            it.price = last.price
            it.qty_lots = last.qty_lots
            it.price_ticks = last.price_ticks
            self._warm_ready = True
        if not self._warm_ready:
            self.warm_skips += 1
            return False
        # What a strategy's order goes through before the gate, on private objects: an Order
        # made and dropped, a ring claimed and drained (handler: a no-op), an empty flush.
        Order(
            it.client_order_id, it.strategy_id, it.instrument_id, it.side, it.order_type, it.tif,
            it.qty_lots, it.price_ticks,
        )  # fmt: skip
        ring = self._warm_ring
        ring.claim()
        ring.drain(_drop, ORDER_BATCH)
        self.flush_intents()
        self.tracker.get(it.client_order_id)
        if self.risk.dry_check(it) == 0:
            self.router.dry_route(it)
        self.warm_runs += 1
        return True

    def _arm_keep_warm(self) -> None:
        interval_ns = max(round(self.keep_warm_ms * 1e6), 1)

        def fire() -> None:
            if not self.running:
                return
            try:
                self.warm_order_path()
            except Exception:
                log.exception("keep_warm: the order path's dry run raised; warm-up stopped")
                return
            self._warm_timer = self.clock.call_later(interval_ns, fire)

        self._warm_timer = self.clock.call_later(interval_ns, fire)

    def next_roll_ns(self, now_ns: int) -> int:
        """When the next trading day starts after ``now_ns`` (``[risk] daily_reset``)."""
        return self.trading_day.next_start(now_ns)

    def _arm_roll_day(self) -> None:
        now = self.clock.now()

        def fire() -> None:
            if not self.running:
                return
            self.roll_day()
            self._arm_roll_day()

        self._roll_timer = self.clock.call_later(self.next_roll_ns(now) - now, fire)

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
        journal = self.journal
        if journal is not None:
            # Before the OMS, the portfolio and the strategy see it. If the file refuses it,
            # the journal holds it for later and the event is applied all the same: the venue
            # has acted, and an OMS that ignored it would be wrong about the orders.
            journal.append_event(ev)
        self.apply_event(ev, self.running)

    def apply_event(self, ev: OrderEvent, deliver: bool = True) -> None:
        """An order event through the OMS, the risk kernels and the portfolio, then (with
        ``deliver``) to its strategy. Recovery replays journaled events with ``deliver`` off;
        events that arrive before ``start`` (a venue reconciling) are not delivered either."""
        self.order_events += 1
        kind = ev.kind
        if kind == _COMMISSION and not math.isfinite(ev.commission):
            log.error(
                "commission %r for exec %r of order %d is not a finite number: ignored",
                ev.commission, ev.exec_id, ev.client_order_id,
            )  # fmt: skip
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
        if kind == _COMMISSION:
            # A commission reported after its fill (IB: commissionReport follows execDetails):
            # fees in the book the fill went to; the risk kernels have counted them above.
            book = self.shadow_portfolio if order is not None and order.shadow else self.portfolio
            book.position(ev.strategy_id, ev.instrument_id).commission += ev.commission
            self.breakers.after_fees()
            return  # fees, not an order's news: strategies read them in pnl()
        if kind == _FILL:
            self.fills += 1
            book = self.shadow_portfolio if order is not None and order.shadow else self.portfolio
            book.apply_fill(
                ev.strategy_id, ev.instrument_id, ev.side, ev.fill_lots, ev.fill_price_ticks,
                ev.commission,
            )  # fmt: skip
            self.breakers.after_fill(ev.instrument_id)
        elif kind == _ACCEPTED and order is not None and order.ts_sent:
            self.latency["order_ack"].record(ev.ts_recv - order.ts_sent)
        self.router.on_event(ev)  # shadow-vs-live stats (accepts, fills)
        if not deliver:
            return
        if not 0 <= ev.strategy_id < len(self.strategies):
            log.error("order event for unknown strategy id %d dropped", ev.strategy_id)
            return
        strategy = self.strategies[ev.strategy_id]
        if strategy.disabled:
            return
        # Caught here, not by the ring, so the log names the strategy and the order (the
        # event is already journaled and applied: only the strategy's own reaction is lost).
        try:
            if kind == _FILL:
                strategy.on_fill(ev)
            else:
                strategy.on_order(ev)
        except Exception:
            self.book_actor.callback_errors += 1
            log.exception(
                "strategy %r: %s raised on %s of order %d; the engine goes on",
                strategy.name, "on_fill" if kind == _FILL else "on_order", EventKind(kind).name,
                ev.client_order_id,
            )  # fmt: skip

    # ---- journal and recovery --------------------------------------------------------------

    def attach_journal(self, journal: Journal) -> None:
        """From now on every order that passes the gate, every cancel and modify request,
        every order event and every trading-state change is journaled (``engine.recovery``
        has already rebuilt the engine from what the journal held)."""
        self.journal = journal
        self.router.journal = journal
        self.risk.journal = journal
        journal.on_failure = self._journal_failed
        previous = self.on_state_change

        def journal_state(change: TradingStateChange) -> None:
            why = f"{change.source}: {change.reason}"
            journal.append_state(change.new.value, why, change.ts_ns)
            if previous is not None:
                previous(change)

        self.on_state_change = journal_state
        if journal.error:
            self._journal_failed(journal)

    def _journal_failed(self, journal: Journal) -> None:
        """The journal's file started refusing writes (``Journal.on_failure``): trading is
        HALTED, once, loudly; the journal holds what it cannot write and a timer retries it.
        Order events are still applied, new orders and modifies are refused (the router
        does not send what it cannot journal), cancels still go out."""
        self._journal_failed_at = self._journal_reminded_at = self.clock.now()
        log.critical(
            "%s. Trading is HALTED: new orders and modifies are refused, cancels still go out; "
            "order events are still applied (OMS, risk, portfolio, strategies) and held in "
            "memory, in order, until the journal takes writes again (retried every %g s). "
            "Trading stays HALTED after that until the operator sets it ACTIVE",
            journal.problem, JOURNAL_RETRY_NS / 1e9,
        )  # fmt: skip
        self.set_trading_state(
            TradingState.HALTED, f"the journal {journal.path} cannot be written ({journal.error})",
            JOURNAL,
        )  # fmt: skip
        self._arm_journal_retry()

    def _arm_journal_retry(self) -> None:
        if self._journal_timer is not None:
            return
        with contextlib.suppress(RuntimeError):  # no event loop yet: ``start`` arms it
            self._journal_timer = self.clock.call_later(JOURNAL_RETRY_NS, self._retry_journal)

    def _retry_journal(self) -> None:
        """Write what the journal holds; a reminder every ``JOURNAL_REMINDER_NS`` while its
        file still refuses it."""
        self._journal_timer = None
        journal = self.journal
        if journal is None:
            return
        held, nbytes = len(journal.backlog), journal.backlog_bytes
        now = self.clock.now()
        if journal.retry():
            log.warning(
                "journal %s takes writes again after %.0f s: the %d records held in memory "
                "(%d bytes) are written, in order. Trading stays %s until the operator sets it "
                "ACTIVE", journal.path, (now - self._journal_failed_at) / 1e9, held, nbytes,
                self.risk.state.name,
            )  # fmt: skip
            return
        if now - self._journal_reminded_at >= JOURNAL_REMINDER_NS:
            self._journal_reminded_at = now
            log.error(
                "%s (for %.0f s now): %d records (%d bytes) held in memory; trading %s",
                journal.problem, (now - self._journal_failed_at) / 1e9, held, nbytes,
                self.risk.state.name,
            )  # fmt: skip
        self._arm_journal_retry()

    def close_journal(self) -> None:
        """Stop journaling and close the file (at shutdown, after the venues stopped): what it
        holds is written if the file takes it now, else logged as lost."""
        journal, self.journal = self.journal, None
        self.router.journal = self.risk.journal = None
        if self._journal_timer is not None:
            self._journal_timer.cancel()
            self._journal_timer = None
        if journal is not None:
            journal.on_failure = None  # shutting down: nothing left to halt
            journal.close()

    def restore_trading_state(self, state: str, reason: str) -> str:
        """Recovery: come back in the journal's last trading state. Only the operator lifts
        a restored HALTED or REDUCING (the breaker that set it is not the one restoring it)."""
        self.set_trading_state(state, f"restored from the journal ({reason})", "recovery")
        return self.risk.state.value

    def venue_of(self, order: Order) -> str:
        """The name of the venue holding ``order`` (``NAME:shadow`` for a shadowed one)."""
        name = self.registry[order.instrument_id].venue
        return f"{name}:shadow" if order.shadow else name

    def venue_named(self, name: str) -> Venue | None:
        return self.venues.get(name) or self.router.shadow_venues.get(name.split(":")[0])

    def report_lost(self, order: Order, reason: str) -> None:
        """An open order whose venue kept no state across a restart: CANCELLED, with why."""
        ev = self.events.claim().about(
            _CANCELLED, order, LOST_WITH_PROCESS, f"lost in the restart: {reason}", self.clock.now()
        )
        ev.cum_lots = order.filled_lots
        ev.qty_lots = order.qty_lots
        ev.price_ticks = order.price_ticks

    # ---- reading ---------------------------------------------------------------------------

    def mark(self, instrument_id: int) -> float | None:
        """The mark for P&L in ticks: the book's mid, else (a side is empty) the risk checks'
        mark, which is the last mid the book had (before any, the last fill's price); None
        when there is none. The risk kernel keeps it on every book batch: the portfolios,
        which read marks only when asked for P&L, would otherwise keep whatever mid they last
        happened to read."""
        mid = self.book_views[instrument_id].mid_ticks
        if mid is not None:
            return mid
        last = float(self.risk.arrays.ist[instrument_id, rk.IS_MARK_TICKS])
        return last if last > 0.0 else None

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
                ("ring_handler_errors_total", label, ring.errors),
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
            ("strategy_callback_errors_total", {}, self.book_actor.callback_errors),
        ]
        rows += [("rejects_total", {"reason": v.name}, self.risk.rejects[v]) for v in Verdict if v]
        rows += [
            ("trading_state_changes_total", {"to": to, "source": source}, n)
            for (to, source), n in self.state_changes.items()
        ]
        rows += [("breaker_trips_total", {"breaker": b}, n) for b, n in self.breakers.trips.items()]
        rows += [
            ("breaker_resets_total", {"breaker": b}, n) for b, n in self.breakers.resets.items()
        ]
        rows.append(("kill_switch_total", {}, self.kill_switches))
        monitor = self.loop_monitor
        if monitor is not None:
            rows += [
                ("loop_stalls_total", {}, monitor.stalls),
                ("loop_stall_seconds_total", {}, monitor.stall_ns / 1e9),
                ("loop_stall_busy_seconds_total", {}, monitor.stall_busy_ns / 1e9),
                ("loop_stall_off_cpu_seconds_total", {}, monitor.stall_off_cpu_ns / 1e9),
            ]
            if monitor.splits_off_cpu:
                rows += [
                    ("loop_stall_queued_seconds_total", {}, monitor.stall_queued_ns / 1e9),
                    ("loop_stall_away_seconds_total", {}, monitor.stall_away_ns / 1e9),
                ]
        for name, labels, value in rows:
            yield name, _HELP[name], labels, value

    def gauges(self) -> Iterator[tuple[str, str, dict[str, str], float]]:
        for state in TradingState:
            active = float(self.risk.state is state)
            yield "trading_state", _HELP["trading_state"], {"state": state.value}, active
        for s in self.strategies:
            pnl = self.portfolio.total_pnl(s.id)
            yield "strategy_pnl", _HELP["strategy_pnl"], {"strategy": s.name}, pnl
        journal = self.journal
        if journal is not None:
            yield "journal_writable", _HELP["journal_writable"], {}, float(not journal.error)
            held = float(len(journal.backlog))
            yield "journal_backlog_records", _HELP["journal_backlog_records"], {}, held
        if self.router.any_shadow:
            for venue, row in self.router.comparison().items():
                for book in ("live", "shadow"):
                    labels = {"venue": venue, "book": book}
                    stats = row[book]
                    yield "router_fill_rate", _HELP["router_fill_rate"], labels, stats["fill_rate"]
                    slip = stats["slippage_bp_mean"]
                    yield "router_slippage_bp", _HELP["router_slippage_bp"], labels, slip

    def prometheus_registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            EngineCollector(
                self.latency, self.counters, self.gauges,
                loop_monitor=lambda: self.loop_monitor,
            )
        )  # fmt: skip
        return registry


def describe_orders(engine: Engine, orders: list[Order], most: int = 20) -> str:
    """Orders as an operator reads them in a log line: id, side, quantity, instrument, price,
    state and venue (the first ``most``)."""
    parts = []
    for o in orders[:most]:
        inst = engine.registry[o.instrument_id]
        side = "BUY" if o.side == _BUY else "SELL"
        price = "MKT" if o.price_ticks == NO_PRICE else f"{inst.from_ticks(o.price_ticks):g}"
        parts.append(
            f"{o.client_order_id} {side} {inst.from_lots(o.leaves_lots):g} {inst.key} @ {price} "
            f"{o.state.name} at {engine.venue_of(o)}"
        )
    if len(orders) > most:
        parts.append(f"and {len(orders) - most} more")
    return "; ".join(parts)


class _StrategyTimer:
    """A strategy's timer (``Engine.set_timer``), among the engine's armed timers until a
    one-shot fires, it is cancelled or replaced, or the engine stops (each cancels ``handle``,
    the current arming). An object, not a closure: a closure that re-arms itself refers to
    itself through its cell, so every timer would leave a reference cycle for the garbage
    collector, whose pass then stalls the loop at a random moment."""

    __slots__ = ("engine", "handle", "interval_ns", "name", "repeat", "strategy")

    def __init__(
        self, engine: Engine, strategy: Strategy, name: str, interval_ns: int, repeat: bool
    ) -> None:
        self.engine = engine
        self.strategy = strategy
        self.name = name
        self.interval_ns = interval_ns
        self.repeat = repeat
        self.handle: TimerHandle | None = None

    def disarm(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def fire(self) -> None:
        engine, strategy = self.engine, self.strategy
        if not engine.running:
            return
        if self.repeat:  # armed again first: on_timer may stop the engine, which cancels it
            self.handle = engine.clock.call_later(self.interval_ns, self.fire)
        else:
            key = (strategy.id, self.name)
            if engine._timers.get(key) is self:
                del engine._timers[key]
            self.handle = None  # it referred back to us: no cycle left behind
        engine.trigger_ts = 0
        try:
            strategy.on_timer(self.name)
        except Exception:
            log.exception("strategy %r: on_timer(%r) raised", strategy.name, self.name)
        engine.pump()
