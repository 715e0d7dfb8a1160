"""The risk gate: every order intent passes here before the router, or is rejected with a reason.

There is no other way from a strategy to a venue: strategies write intents into the intent ring,
this actor drains it, and only intents that pass reach ``Router``. A rejection becomes an
``OrderEvent`` of kind ``REJECTED`` (for new orders) or ``CANCEL_REJECTED`` (for modifies) with
the check's stable code and a reason the strategy author can act on, delivered through the
order-event ring like any venue answer.

This is the first, plain-Python version of the checks; the Numba risk kernels replace the
inside of ``_check_new`` without changing the gate's contract.
"""

from __future__ import annotations

import logging
import math
from enum import Enum, IntEnum

from engine.clock import Clock
from engine.config import RiskConfig
from engine.instruments import InstrumentRegistry
from engine.messages import NO_PRICE, EventKind, IntentKind, OrderEvent, OrderIntent, OrderType
from engine.orders import Order, OrderState, OrderTracker
from engine.portfolio import Portfolio
from engine.ring import ObjectRing

log = logging.getLogger(__name__)


class TradingState(Enum):
    ACTIVE = "active"
    REDUCING = "reducing"  # only orders that reduce a position
    HALTED = "halted"  # nothing but cancels


class Verdict(IntEnum):
    PASS = 0
    TRADING_HALTED = 1
    REDUCING_ONLY = 2
    UNKNOWN_INSTRUMENT = 3
    BAD_QUANTITY = 4
    NOT_WHOLE_LOTS = 5
    MAX_ORDER_QTY = 6
    BAD_PRICE = 7
    OFF_TICK_GRID = 8
    MAX_ORDER_NOTIONAL = 9
    MAX_POSITION = 10
    MAX_OPEN_ORDERS = 11
    UNKNOWN_ORDER = 12
    NO_REFERENCE_PRICE = 13


REASONS: dict[Verdict, str] = {
    Verdict.PASS: "passed",
    Verdict.TRADING_HALTED: "trading is halted: only cancels are accepted",
    Verdict.REDUCING_ONLY: "trading is reducing: only orders that reduce a position are accepted",
    Verdict.UNKNOWN_INSTRUMENT: "instrument is not in the registry",
    Verdict.BAD_QUANTITY: "quantity must be a finite number > 0",
    Verdict.NOT_WHOLE_LOTS: "quantity is not a whole number of lots",
    Verdict.MAX_ORDER_QTY: "quantity exceeds risk.max_order_qty",
    Verdict.BAD_PRICE: "limit price must be a finite number > 0",
    Verdict.OFF_TICK_GRID: "limit price is not a multiple of the tick size",
    Verdict.MAX_ORDER_NOTIONAL: "order value exceeds risk.max_order_notional",
    Verdict.MAX_POSITION: "position with this order and open orders would pass risk.max_position",
    Verdict.MAX_OPEN_ORDERS: "too many open orders on this instrument (risk.max_open_orders)",
    Verdict.UNKNOWN_ORDER: "no open order with this client order id",
    Verdict.NO_REFERENCE_PRICE: "market order with no price in the book to value it against",
}


class RiskGate:
    """Drains the intent ring: checks, stamps ``ts_risk``, and hands passing intents on."""

    def __init__(
        self,
        registry: InstrumentRegistry,
        limits: RiskConfig,
        tracker: OrderTracker,
        portfolio: Portfolio,
        events: ObjectRing[OrderEvent],
        router,
        clock: Clock,
        mark,
    ) -> None:
        self._registry = registry
        self._limits = limits
        self._tracker = tracker
        self._portfolio = portfolio
        self._events = events
        self._router = router
        self._clock = clock
        self._mark = mark  # instrument id -> reference price in ticks, or None
        self.state = TradingState.ACTIVE
        self.rejects = [0] * len(Verdict)
        self.passed = 0

    def on_intent(self, it: OrderIntent) -> None:
        kind = it.kind
        if kind == IntentKind.NEW:
            self._new(it)
        elif kind == IntentKind.CANCEL:
            order = self._tracker.get(it.client_order_id)
            if order is None:
                self._reject(it, EventKind.CANCEL_REJECTED, Verdict.UNKNOWN_ORDER, "")
                return
            if order.state is not OrderState.INITIALIZED:
                order.state = OrderState.PENDING_CANCEL
            self._router.cancel(order)
        elif kind == IntentKind.MODIFY:
            self._modify(it)
        elif kind == IntentKind.CANCEL_ALL:
            only = it.instrument_id if it.instrument_id >= 0 else None
            for order in self._tracker.open_for(it.strategy_id, only):
                order.state = OrderState.PENDING_CANCEL
                self._router.cancel(order)

    def _new(self, it: OrderIntent) -> None:
        verdict, detail, lots, ticks = self._check(
            it.strategy_id, it.instrument_id, it.side, it.order_type, it.qty, it.price, None
        )
        if verdict:
            # The order record is finished when this event is applied, like a venue reject.
            self._reject(it, EventKind.REJECTED, verdict, detail)
            return
        it.qty_lots = lots
        it.price_ticks = ticks if it.order_type == OrderType.LIMIT else NO_PRICE
        it.ts_risk = self._clock.now()
        self.passed += 1
        order = self._tracker.get(it.client_order_id)
        if order is not None:
            order.qty_lots = lots
            order.price_ticks = it.price_ticks
            self._tracker.submitted(order)
        self._router.submit(it, order)

    def _modify(self, it: OrderIntent) -> None:
        """A modify is checked as the order it would become, replacing the working one."""
        order = self._tracker.get(it.client_order_id)
        if order is None:
            self._reject(it, EventKind.CANCEL_REJECTED, Verdict.UNKNOWN_ORDER, "")
            return
        it.instrument_id = order.instrument_id
        it.side = order.side
        inst = self._registry[order.instrument_id]
        qty = inst.from_lots(order.qty_lots) if math.isnan(it.qty) else it.qty
        if order.order_type == OrderType.LIMIT and math.isnan(it.price):
            price = inst.from_ticks(order.price_ticks)
        else:
            price = it.price
        verdict, detail, lots, ticks = self._check(
            order.strategy_id, order.instrument_id, order.side, order.order_type, qty, price, order
        )
        if verdict:
            self._reject(it, EventKind.CANCEL_REJECTED, verdict, f"modify refused; {detail}")
            return
        order.state = OrderState.PENDING_MODIFY
        self._router.modify(order, lots, ticks if order.order_type == OrderType.LIMIT else NO_PRICE)

    def _check(
        self,
        strategy_id: int,
        instrument_id: int,
        side: int,
        order_type: int,
        qty: float,
        price: float,
        replacing: Order | None,
    ) -> tuple[Verdict, str, int, int]:
        """The first failed check for an order (or for ``replacing`` becoming this order),
        with a detail for the reason; on a pass, the order's size in lots and price in ticks."""
        if not self._registry.known(instrument_id):
            return Verdict.UNKNOWN_INSTRUMENT, f"instrument id {instrument_id}", 0, 0
        inst = self._registry[instrument_id]
        limits = self._limits
        if self.state is TradingState.HALTED:
            return Verdict.TRADING_HALTED, "", 0, 0
        if not (math.isfinite(qty) and qty > 0):
            return Verdict.BAD_QUANTITY, f"qty={qty}", 0, 0
        if not inst.whole_lots(qty):
            return Verdict.NOT_WHOLE_LOTS, f"qty={qty}, lot size {inst.lot_size}", 0, 0
        if qty > limits.max_order_qty:
            return Verdict.MAX_ORDER_QTY, f"qty={qty} > {limits.max_order_qty}", 0, 0
        lots = inst.to_lots(qty)
        if order_type == OrderType.LIMIT:
            if not (math.isfinite(price) and price > 0):
                return Verdict.BAD_PRICE, f"price={price}", 0, 0
            if not inst.on_tick_grid(price):
                return Verdict.OFF_TICK_GRID, f"price={price}, tick size {inst.tick_size}", 0, 0
            ticks = inst.to_ticks(price)
        else:
            mark = self._mark(instrument_id)
            if mark is None:
                return Verdict.NO_REFERENCE_PRICE, "", 0, 0
            ticks = round(mark)
        # Working orders on the same side, without the one this order replaces.
        pending = self._tracker.open_lots(strategy_id, instrument_id, side)
        if replacing is not None:
            pending -= replacing.leaves_lots
            lots_new = lots - replacing.filled_lots  # what would still work after the modify
        else:
            lots_new = lots
        pos = self._portfolio.position(strategy_id, instrument_id).lots
        if self.state is TradingState.REDUCING:
            # Everything working on this side must fit inside the position it reduces.
            reduces = pos * side < 0 and pending + lots_new <= abs(pos)
            if not reduces:
                return Verdict.REDUCING_ONLY, f"position {inst.from_lots(pos)}", 0, 0
        notional = lots * ticks * inst.tick_value
        if notional > limits.max_order_notional:
            detail = f"{notional:.2f} > {limits.max_order_notional}"
            return Verdict.MAX_ORDER_NOTIONAL, detail, 0, 0
        worst = abs(pos + (pending + lots_new) * side)
        if inst.from_lots(worst) > limits.max_position:
            detail = f"{inst.from_lots(worst)} > {limits.max_position}"
            return Verdict.MAX_POSITION, detail, 0, 0
        if replacing is None and self._tracker.open_count(instrument_id) >= limits.max_open_orders:
            return Verdict.MAX_OPEN_ORDERS, f"limit {limits.max_open_orders}", 0, 0
        return Verdict.PASS, "", lots, ticks

    def _reject(self, it: OrderIntent, kind: EventKind, verdict: Verdict, detail: str) -> None:
        self.rejects[verdict] += 1
        ev = self._events.claim()
        ev.clear()
        ev.kind = kind
        ev.strategy_id = it.strategy_id
        ev.instrument_id = it.instrument_id
        ev.client_order_id = it.client_order_id
        ev.side = it.side
        ev.reason_code = int(verdict)
        ev.reason = f"{verdict.name}: {REASONS[verdict]}" + (f" ({detail})" if detail else "")
        ev.ts_event = ev.ts_recv = self._clock.now()

    def set_state(self, state: TradingState, reason: str) -> None:
        if state is not self.state:
            log.warning("trading state %s -> %s: %s", self.state.name, state.name, reason)
            self.state = state
