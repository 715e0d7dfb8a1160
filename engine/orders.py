"""Order records and their states, as the engine knows them.

This is the thin first version of the OMS: one record per client order id, moved through its
states by order events. Open orders are kept by id; finished ones go to a bounded history so a
long session does not grow without limit.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from enum import Enum
from typing import NamedTuple

from engine.messages import EventKind, OrderEvent, OrderIntent

log = logging.getLogger(__name__)


class OrderState(Enum):
    INITIALIZED = "initialized"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    PENDING_CANCEL = "pending_cancel"
    PENDING_MODIFY = "pending_modify"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"


FINAL = frozenset(
    {OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED}
)

# Module-level names for the order path: an enum member read costs ~80 ns in Python 3.11.
_INITIALIZED = OrderState.INITIALIZED
_SUBMITTED = OrderState.SUBMITTED


class OrderExtras(NamedTuple):
    """What an order beyond MARKET/LIMIT with DAY..FOK carries, for the venue to send and re-send
    on a modify: ``OrderIntent``'s extras as they passed the risk gate (same names, units and
    "unused" values: NaN for prices, 0 for ints, None for ``algo_params``)."""

    stop_price: float  # currency
    stop_ticks: int  # ticks, NO_PRICE if none
    trail_amount: float  # currency
    trail_percent: float  # percent
    limit_offset: float  # currency
    display_lots: int  # lots, 0 = not an iceberg
    good_till_ns: int  # engine-clock ns, 0 = none
    algo: int  # engine.messages.Algo
    algo_params: tuple[tuple[str, str], ...] | None
    parent_id: int = 0  # the parent's client order id, 0 = none
    oca_group: str = ""  # "" = none
    oca_type: int = 0  # IB's ocaType (1..3), 0 without a group
    transmit: bool = True

    @classmethod
    def of(cls, it: OrderIntent) -> OrderExtras:
        return cls(
            it.stop_price, it.stop_ticks, it.trail_amount, it.trail_percent, it.limit_offset,
            it.display_lots, it.good_till_ns, it.algo, it.algo_params, it.parent_id,
            it.oca_group, it.oca_type, it.transmit,
        )  # fmt: skip


class Order:
    """One order's current state (engine side).

    ``side``, ``order_type`` and ``tif`` hold the plain int values of ``Side``, ``OrderType`` and
    ``TimeInForce``: they go to the risk kernels as they are. ``extras`` is None for a plain order
    (no order-type extras in its intent), else the ``OrderExtras`` the risk gate passed.
    ``parent_id`` (the parent's client order id, 0 none), ``oca_group`` ("" none) and ``oca_type``
    (0 without a group) are copied from those extras by the risk gate.
    """

    __slots__ = (
        "client_order_id",
        "extras",
        "filled_lots",
        "instrument_id",
        "oca_group",
        "oca_type",
        "order_type",
        "parent_id",
        "price_ticks",
        "qty_lots",
        "reason",
        "reserved",
        "side",
        "state",
        "strategy_id",
        "tif",
        "ts_sent",
        "venue_order_id",
    )

    def __init__(
        self,
        client_order_id: int,
        strategy_id: int,
        instrument_id: int,
        side: int,
        order_type: int,
        tif: int,
        qty_lots: int,
        price_ticks: int,
    ) -> None:
        self.client_order_id = client_order_id
        self.strategy_id = strategy_id
        self.instrument_id = instrument_id
        self.side = side
        self.order_type = order_type
        self.tif = tif
        self.qty_lots = qty_lots
        self.price_ticks = price_ticks
        self.filled_lots = 0
        self.reserved = 0  # lots the risk kernels count as working for this order
        self.state = _INITIALIZED
        self.venue_order_id = 0
        self.reason = ""
        self.ts_sent = 0
        self.extras: OrderExtras | None = None
        self.parent_id = 0
        self.oca_group = ""
        self.oca_type = 0

    @property
    def is_open(self) -> bool:
        return self.state not in FINAL

    @property
    def leaves_lots(self) -> int:
        return self.qty_lots - self.filled_lots

    def __repr__(self) -> str:
        return (
            f"Order(coid={self.client_order_id}, inst={self.instrument_id}, side={self.side}, "
            f"qty={self.qty_lots}, px={self.price_ticks}, filled={self.filled_lots}, "
            f"state={self.state.value})"
        )


class OrderTracker:
    """Open orders by client order id, and the last ``history`` finished ones."""

    def __init__(self, history: int = 10_000, session_base: int | None = None) -> None:
        # Ids start from the session's start second so they do not repeat across restarts
        # (the journal will make this exact); 2**24 orders per session before they could meet.
        base = int(time.time()) if session_base is None else session_base
        self._ids = itertools.count((base << 24) + 1)
        self.open: dict[int, Order] = {}
        # Open orders by (strategy, instrument): a strategy's questions about its orders cost
        # what its few orders cost, not a scan of all.
        self._by_key: dict[tuple[int, int], dict[int, Order]] = {}
        self.finished: OrderedDict[int, Order] = OrderedDict()
        self._history = history
        self.illegal = 0

    def next_id(self) -> int:
        return next(self._ids)

    def add(self, order: Order) -> None:
        coid = order.client_order_id
        self.open[coid] = order
        key = (order.strategy_id, order.instrument_id)
        group = self._by_key.get(key)
        if group is None:
            group = self._by_key[key] = {}
        group[coid] = order

    def submitted(self, order: Order) -> None:
        """The order passed the risk gate and is on its way to the venue."""
        order.state = _SUBMITTED

    def get(self, client_order_id: int) -> Order | None:
        return self.open.get(client_order_id)

    def open_for(self, strategy_id: int, instrument_id: int | None = None) -> list[Order]:
        if instrument_id is not None:
            return list(self._by_key.get((strategy_id, instrument_id), {}).values())
        return [o for o in self.open.values() if o.strategy_id == strategy_id]

    def open_lots(self, strategy_id: int, instrument_id: int, side: int) -> int:
        """Unfilled quantity of a strategy's open orders on one side."""
        group = self._by_key.get((strategy_id, instrument_id))
        if not group:
            return 0
        return sum(o.qty_lots - o.filled_lots for o in group.values() if o.side == side)

    def finish(self, order: Order, state: OrderState, reason: str = "") -> None:
        order.state = state
        order.reason = reason
        coid = order.client_order_id
        if self.open.pop(coid, None) is not None:
            group = self._by_key[(order.strategy_id, order.instrument_id)]
            del group[coid]
            if not group:
                del self._by_key[(order.strategy_id, order.instrument_id)]
            self.finished[coid] = order
            if len(self.finished) > self._history:
                self.finished.popitem(last=False)

    def apply(self, ev: OrderEvent) -> Order | None:
        """Move the order named by ``ev`` to its new state; None if the order is unknown.

        A fill for an already-finished order or a status that goes backwards is counted in
        ``illegal`` and logged, not applied.
        """
        order = self.open.get(ev.client_order_id)
        if order is None:
            late = self.finished.get(ev.client_order_id)
            if late is not None:
                if ev.kind == EventKind.FILL:
                    # A fill may be reported after the cancel it raced: the fill is real.
                    late.filled_lots += ev.fill_lots
                elif ev.kind != EventKind.CANCEL_REJECTED:
                    # A cancel or modify refused because the order had just finished is the
                    # normal end of that race; anything else on a finished order is not.
                    self.illegal += 1
                    log.warning(
                        "order event %s for finished order %d (%s) ignored",
                        EventKind(ev.kind).name, ev.client_order_id, late.state.value,
                    )  # fmt: skip
                return late
            self.illegal += 1
            log.warning(
                "order event %s for unknown or finished order %d ignored",
                EventKind(ev.kind).name,
                ev.client_order_id,
            )
            return None
        kind = ev.kind
        if ev.venue_order_id:
            order.venue_order_id = ev.venue_order_id
        if kind == EventKind.FILL:
            order.filled_lots += ev.fill_lots
            if order.filled_lots >= order.qty_lots:
                self.finish(order, OrderState.FILLED)
            else:
                order.state = OrderState.PARTIALLY_FILLED
        elif kind == EventKind.ACCEPTED:
            if order.state in (OrderState.INITIALIZED, OrderState.SUBMITTED):
                order.state = OrderState.ACCEPTED
        elif kind == EventKind.CANCELLED:
            self.finish(order, OrderState.CANCELLED, ev.reason)
        elif kind == EventKind.REJECTED:
            self.finish(order, OrderState.REJECTED, ev.reason)
        elif kind == EventKind.EXPIRED:
            self.finish(order, OrderState.EXPIRED, ev.reason)
        elif kind == EventKind.MODIFIED:
            order.price_ticks = ev.price_ticks
            order.qty_lots = ev.qty_lots
            order.state = OrderState.PARTIALLY_FILLED if order.filled_lots else OrderState.ACCEPTED
        elif kind == EventKind.CANCEL_REJECTED and order.state in (
            OrderState.PENDING_CANCEL,
            OrderState.PENDING_MODIFY,
        ):
            order.state = OrderState.PARTIALLY_FILLED if order.filled_lots else OrderState.ACCEPTED
        return order
