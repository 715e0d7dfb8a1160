"""Order records and the order state machine: what each venue answer does to an order.

One record per client order id, moved through ``OrderState`` by order events
(``engine.messages.EventKind``) and by the strategy's own cancel and modify requests. Open orders
are kept by id; finished ones go to a bounded history so a long session does not grow without
limit, and so answers that arrive after an order finished (a fill racing a cancel) still find it.

Transitions
-----------
Every (state, event) pair has exactly one entry in ``_TABLE`` below; this is the same table
(CXL_REJ: CANCEL_REJECTED, COMM: COMMISSION)::

    state            SUBMITTED ACCEPTED REJECTED CANCELLED EXPIRED MODIFIED FILL CXL_REJ COMM
    INITIALIZED      bad       bad      REJ      bad       bad     bad      bad  note    note
    SUBMITTED        dup       ACC      REJ      CXL       EXP     MOD      FILL note    note
    ACCEPTED         old       dup      REJ      CXL       EXP     MOD      FILL note    note
    PENDING_CANCEL   old       ack      REJ      CXL       EXP     MOD      FILL RES     note
    PENDING_MODIFY   old       ack      REJ      CXL       EXP     MOD      FILL RES     note
    PARTIALLY_FILLED old       old      REJ      CXL       EXP     MOD      FILL note    note
    FILLED           old       old      bad      bad       bad     bad      LATE note    note
    CANCELLED        old       old      bad      dup       bad     bad      LATE note    note
    REJECTED         old       old      dup      bad       bad     bad      LATE note    note
    EXPIRED          old       old      bad      bad       dup     bad      LATE note    note

    state            cancel request   modify request
    INITIALIZED      -                -
    SUBMITTED        PENDING_CANCEL   PENDING_MODIFY
    ACCEPTED         PENDING_CANCEL   PENDING_MODIFY
    PENDING_CANCEL   -                -
    PENDING_MODIFY   PENDING_CANCEL   PENDING_MODIFY
    PARTIALLY_FILLED PENDING_CANCEL   PENDING_MODIFY
    final states     -                -

(``-``: the state stays.) The entries:

* ``ACC``: to ACCEPTED. ``REJ`` / ``CXL`` / ``EXP``: the order finishes REJECTED / CANCELLED /
  EXPIRED with the event's reason. REJECTED after ACCEPTED or a partial fill is legal (IB's
  Inactive after Submitted).
* ``FILL``: the fill is counted (``filled_lots``); the order is FILLED when nothing is left,
  else PARTIALLY_FILLED, except that a pending cancel or modify stays pending (its answer is
  still to come). A fill implies the order was accepted. While a modify is pending, "nothing
  left" is measured against the larger of the order's quantity and the modify's
  (``pending_qty_lots``): the venue may already work the order at the new size, and IB reports
  the execution before the modify's status, so a fill that completes the old size must not end
  an order the venue is still working.
* ``MOD``: the order takes the event's quantity and price (and the stop or trail of a modify that
  moved them, ``pending_extras``) and goes back to working (ACCEPTED, or
  PARTIALLY_FILLED if anything filled; FILLED if the new quantity is all filled); a pending
  cancel stays pending. The same terms reported again on a working order are a duplicate.
* ``ack``: an acceptance that arrives after the strategy asked to cancel or modify: the order
  stays pending; it is news (APPLIED) the first time, a duplicate after.
* ``RES``: the venue refused the pending cancel or modify: the order goes back to where it was
  (PARTIALLY_FILLED if anything filled, else ACCEPTED if it was accepted, else SUBMITTED), or is
  FILLED if its fills already cover its quantity (they completed the old size while a modify to
  a larger one was pending, and the venue refused the modify because the order had filled).
  A venue answers each request, but the answer does not say which request it answers: after a
  modify and then a cancel, the first refusal ends the pending state. A refusal the risk gate
  issued itself (``refused_by_gate``: its ``reason_code`` is a verdict code) answers a request
  that never left, so it is a ``note`` even while another request is pending at the venue.
* ``note``: nothing changes, the event is passed on: a refused cancel or modify of an order that
  is not pending (the risk gate refused a modify, or the order finished first), a refusal from
  the risk gate, a commission. A commission whose exec id was already counted (reported again,
  or carried by its fill) is a duplicate.
* ``LATE``: a fill on a finished order is real (it raced the cancel, or the venue reported the
  end first): it is applied (outcome LATE_FILL, the position changes) and ``filled_lots`` grows.
  The order keeps its final state, unless the late fill leaves nothing unfilled: then it is
  FILLED (the cancel or expiry took nothing). A new fill on a FILLED order is an overfill, logged
  as a warning and applied; one that leaves no more filled than ordered is a venue's correction
  (a fill taken back with negative lots, then the corrected one), logged at info.
* ``dup``: the status the order already has, reported again (outcome DUPLICATE).
* ``old``: a status the order has already moved past (outcome STALE). IB sends openOrder,
  orderStatus and execDetails in no guaranteed order, so an ACCEPTED after a fill or after the
  order finished is expected, and changes nothing.
* ``bad``: a transition no venue history can produce (outcome ILLEGAL): a final state replaced
  by a different one, a modify of a finished order, any venue answer for an order the risk gate
  has not passed. Counted in ``illegal`` and ``illegal_by[(state, kind)]``, logged as a warning
  naming the order, its state and the event; the order is left unchanged.

Duplicates and order of arrival
-------------------------------
Fills are recognised by ``exec_id``: each order keeps the set of its exec ids (for as long as the
record lives), and a fill whose exec id is already there is a DUPLICATE. A fill with no exec id
falls back to the cumulative quantity: ``0 < cum_lots <= filled_lots`` is a duplicate (correct
only when such fills arrive in order; every venue we have sends exec ids). With exec ids, any
permutation of a venue's history, with any events repeated, ends in the same state with the same
filled quantity and the same fills applied (``tests/test_oms_states.py`` checks this property).
Commissions likewise: each order keeps the exec ids whose fee was counted (``fee_ids``: a fill
that carried a commission, or a COMMISSION event), so a COMMISSION reported twice, or after a
fill that already carried it, counts once.

Outcomes
--------
``OrderTracker.check(ev)`` classifies an event without changing anything (the risk kernels must
see the order as it was before the event) and ``commit(ev)`` applies it; ``apply(ev)`` does
both. The outcome is a plain int: APPLIED, LATE_FILL and UNKNOWN_ORDER events are passed on
(risk kernels, portfolio, strategy); DUPLICATE, STALE and ILLEGAL ones are counted and dropped
(``outcome >= DUPLICATE``). A fill for an order the tracker does not know (beyond the history, or
from before a restart that did not restore it) is still a fill: UNKNOWN_ORDER, passed on.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from enum import IntEnum
from typing import NamedTuple

from engine.messages import EventKind, OrderEvent, OrderIntent
from hotpath.risk import VERDICT_NAMES

log = logging.getLogger(__name__)


class OrderState(IntEnum):
    """An order's state; the values are stable and index ``_TABLE``'s rows. Final states are
    the highest values (``state >= FILLED``)."""

    INITIALIZED = 0  # created by the strategy, not yet through the risk gate
    SUBMITTED = 1  # passed the risk gate, on its way to the venue
    ACCEPTED = 2
    PENDING_CANCEL = 3
    PENDING_MODIFY = 4
    PARTIALLY_FILLED = 5
    FILLED = 6
    CANCELLED = 7
    REJECTED = 8
    EXPIRED = 9


FINAL = frozenset(
    {OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED}
)


class Outcome(IntEnum):
    """What an order event meant for its order (``OrderTracker.check``); the values are
    stable: ``outcome >= DUPLICATE`` means "drop it"."""

    APPLIED = 0  # news: pass it on
    LATE_FILL = 1  # a fill on a finished order: real, pass it on
    UNKNOWN_ORDER = 2  # no record of the order: pass it on (a fill is still a fill)
    DUPLICATE = 3  # reported before
    STALE = 4  # the order has moved past it
    ILLEGAL = 5  # no venue history produces it


# Plain ints and module-level names for the order path (an enum member read costs ~80 ns in
# Python 3.11; a dict lookup keyed by an IntEnum hashes as an int).
APPLIED = int(Outcome.APPLIED)
LATE_FILL = int(Outcome.LATE_FILL)
UNKNOWN_ORDER = int(Outcome.UNKNOWN_ORDER)
DUPLICATE = int(Outcome.DUPLICATE)
STALE = int(Outcome.STALE)
ILLEGAL = int(Outcome.ILLEGAL)

_INITIALIZED = OrderState.INITIALIZED
_SUBMITTED = OrderState.SUBMITTED
_ACCEPTED = OrderState.ACCEPTED
_PENDING_CANCEL = OrderState.PENDING_CANCEL
_PENDING_MODIFY = OrderState.PENDING_MODIFY
_PARTIALLY_FILLED = OrderState.PARTIALLY_FILLED
_FILLED = OrderState.FILLED
_CANCELLED = OrderState.CANCELLED
_REJECTED = OrderState.REJECTED
_EXPIRED = OrderState.EXPIRED
_EV_CANCEL_REJECTED = EventKind.CANCEL_REJECTED
_EV_COMMISSION = EventKind.COMMISSION
# The risk gate's verdict codes (``hotpath.risk``): a CANCEL_REJECTED with one of them is the
# gate's own answer. Venues use 0, their own negative codes, or IB's error codes (100 and up).
_GATE_CODES_END = len(VERDICT_NAMES)

# The table's entries (see the module docstring).
ACC, REJ, CXL, EXP, FILL, MOD, ACK, RES, NOTE, LATE, DUP, OLD, BAD = range(13)
ACTION_NAMES = ("ACC", "REJ", "CXL", "EXP", "FILL", "MOD", "ack", "RES", "note", "LATE", "dup",
                "old", "bad")  # fmt: skip

# state -> entries by EventKind: SUBMITTED ACCEPTED REJECTED CANCELLED EXPIRED MODIFIED FILL
# CANCEL_REJECTED COMMISSION. The one table of legal transitions.
_TABLE: dict[OrderState, tuple[int, ...]] = {
    _INITIALIZED:      (BAD, BAD, REJ, BAD, BAD, BAD, BAD,  NOTE, NOTE),
    _SUBMITTED:        (DUP, ACC, REJ, CXL, EXP, MOD, FILL, NOTE, NOTE),
    _ACCEPTED:         (OLD, DUP, REJ, CXL, EXP, MOD, FILL, NOTE, NOTE),
    _PENDING_CANCEL:   (OLD, ACK, REJ, CXL, EXP, MOD, FILL, RES,  NOTE),
    _PENDING_MODIFY:   (OLD, ACK, REJ, CXL, EXP, MOD, FILL, RES,  NOTE),
    _PARTIALLY_FILLED: (OLD, OLD, REJ, CXL, EXP, MOD, FILL, NOTE, NOTE),
    _FILLED:           (OLD, OLD, BAD, BAD, BAD, BAD, LATE, NOTE, NOTE),
    _CANCELLED:        (OLD, OLD, BAD, DUP, BAD, BAD, LATE, NOTE, NOTE),
    _REJECTED:         (OLD, OLD, DUP, BAD, BAD, BAD, LATE, NOTE, NOTE),
    _EXPIRED:          (OLD, OLD, BAD, BAD, DUP, BAD, LATE, NOTE, NOTE),
}  # fmt: skip
# The same rows as a tuple indexed by the state's int value: the order path's lookup.
_ROWS: tuple[tuple[int, ...], ...] = tuple(_TABLE[s] for s in OrderState)

# What the strategy's requests do (None: the state stays).
ON_CANCEL_REQUEST: dict[OrderState, OrderState | None] = {
    _INITIALIZED: None,  # not sent yet: the risk gate's answer is on its way
    _SUBMITTED: _PENDING_CANCEL,
    _ACCEPTED: _PENDING_CANCEL,
    _PENDING_CANCEL: None,
    _PENDING_MODIFY: _PENDING_CANCEL,
    _PARTIALLY_FILLED: _PENDING_CANCEL,
    _FILLED: None,
    _CANCELLED: None,
    _REJECTED: None,
    _EXPIRED: None,
}
ON_MODIFY_REQUEST: dict[OrderState, OrderState | None] = {
    _INITIALIZED: None,  # refused by the gate: the gate refuses the modify too, nothing is sent
    _SUBMITTED: _PENDING_MODIFY,
    _ACCEPTED: _PENDING_MODIFY,
    _PENDING_CANCEL: None,  # the cancel wins: the order is on its way out
    _PENDING_MODIFY: _PENDING_MODIFY,
    _PARTIALLY_FILLED: _PENDING_MODIFY,
    _FILLED: None,
    _CANCELLED: None,
    _REJECTED: None,
    _EXPIRED: None,
}
_OUTCOME_OF = {DUP: DUPLICATE, OLD: STALE, BAD: ILLEGAL}


def refused_by_gate(ev: OrderEvent) -> bool:
    """Is ``ev`` a CANCEL_REJECTED the risk gate issued itself (a cancel or modify it did not
    send on)? Then no request of the order's is answered by it."""
    return ev.kind == _EV_CANCEL_REJECTED and 0 < ev.reason_code < _GATE_CODES_END


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
    ``venue_order_id`` is the venue's id (IB: the order id, then the permId once known).
    ``accepted`` says the venue has acknowledged the order (an acceptance, a fill or a modify);
    ``exec_ids`` holds the exec ids of the fills applied (None until the first), ``fee_ids`` those
    whose commission has been counted (None until the first).
    ``pending_qty_lots`` is the quantity of the modify on its way to the venue (0: none), kept
    until the venue answers it or the order finishes: until then the order is not finished by
    fills that cover only its old quantity. ``pending_extras`` are the extras a modify that
    moves the stop or trail asked for (None: none pending); they become ``extras`` when the
    venue confirms a modify (MODIFIED), and are dropped when it refuses one or the order ends.
    ``parent_id`` (the parent's client order id, 0 none), ``oca_group`` ("" none) and ``oca_type``
    (0 without a group) are copied from those extras by the risk gate.
    """

    __slots__ = (
        "accepted",
        "client_order_id",
        "exec_ids",
        "extras",
        "fee_ids",
        "filled_lots",
        "instrument_id",
        "oca_group",
        "oca_type",
        "order_type",
        "parent_id",
        "pending_extras",
        "pending_qty_lots",
        "price_ticks",
        "qty_lots",
        "reason",
        "reserved",
        "shadow",
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
        self.accepted = False
        self.exec_ids: set[str] | None = None
        self.fee_ids: set[str] | None = None
        self.pending_qty_lots = 0
        self.pending_extras: OrderExtras | None = None
        self.venue_order_id = 0
        self.reason = ""
        self.ts_sent = 0
        self.extras: OrderExtras | None = None
        self.shadow = False  # routed to the venue's shadow (SHADOW/CANARY), not sent
        self.parent_id = 0
        self.oca_group = ""
        self.oca_type = 0

    @property
    def is_open(self) -> bool:
        return self.state < _FILLED

    @property
    def leaves_lots(self) -> int:
        return self.qty_lots - self.filled_lots

    def __repr__(self) -> str:
        return (
            f"Order(coid={self.client_order_id}, inst={self.instrument_id}, side={self.side}, "
            f"qty={self.qty_lots}, px={self.price_ticks}, filled={self.filled_lots}, "
            f"state={self.state.name})"
        )


_CANCEL_ROW = tuple(ON_CANCEL_REQUEST[s] for s in OrderState)
_MODIFY_ROW = tuple(ON_MODIFY_REQUEST[s] for s in OrderState)


def _kind_name(kind: int) -> str:
    try:
        return EventKind(kind).name
    except ValueError:
        return f"kind {kind!r}"


class OrderTracker:
    """Open orders by client order id, the last ``history`` finished ones, and the state
    machine that moves them (see the module docstring).

    Counters (plain ints, read by the engine's metrics): ``duplicates``, ``stale``, ``illegal``
    (with ``illegal_by[(state, kind)]``), ``unknown`` and ``late_fills``.
    """

    def __init__(self, history: int = 10_000, session_base: int | None = None) -> None:
        # Ids start from the session's start second so they do not repeat across restarts;
        # 2**24 orders per second of downtime before they could meet, and recovery makes it
        # exact with ``ensure_ids_above`` (the journal's highest id).
        base = int(time.time()) if session_base is None else session_base
        self._ids = itertools.count((base << 24) + 1)
        self.open: dict[int, Order] = {}
        # Open orders by (strategy, instrument): a strategy's questions about its orders cost
        # what its few orders cost, not a scan of all.
        self._by_key: dict[tuple[int, int], dict[int, Order]] = {}
        self.finished: OrderedDict[int, Order] = OrderedDict()
        self._history = history
        self.order: Order | None = None
        """The order the last ``check`` found (None if unknown)."""
        self._action = NOTE
        self.duplicates = 0
        self.stale = 0
        self.illegal = 0
        self.illegal_by: dict[tuple[OrderState, EventKind | int], int] = {}
        self.unknown = 0
        self.late_fills = 0

    # ---- ids --------------------------------------------------------------------------------

    def next_id(self) -> int:
        return next(self._ids)

    def ensure_ids_above(self, coid: int) -> None:
        """From now on ``next_id()`` returns ids > ``coid`` (recovery: above every journaled
        id); ids already above it are left as they are."""
        following = next(self._ids)
        self._ids = itertools.count(max(following, coid + 1))

    # ---- records ----------------------------------------------------------------------------

    def add(self, order: Order) -> None:
        coid = order.client_order_id
        self.open[coid] = order
        key = (order.strategy_id, order.instrument_id)
        group = self._by_key.get(key)
        if group is None:
            group = self._by_key[key] = {}
        group[coid] = order

    def restore(self, order: Order) -> None:
        """Put a recovered order back, in whatever state it has: an open one among the open
        orders, a final one in the history. Its id is reserved (``ensure_ids_above``)."""
        self.ensure_ids_above(order.client_order_id)
        if order.state >= _FILLED:
            self._remember(order)
        else:
            self.add(order)

    def submitted(self, order: Order) -> None:
        """The order passed the risk gate and is on its way to the venue."""
        order.state = _SUBMITTED

    def request_cancel(self, order: Order) -> bool:
        """The strategy asked to cancel ``order``: PENDING_CANCEL where the table says so;
        True if the state changed."""
        new = _CANCEL_ROW[order.state]  # None: the state stays
        if new is None or new is order.state:
            return False
        order.state = new
        return True

    def request_modify(
        self, order: Order, qty_lots: int = 0, extras: OrderExtras | None = None
    ) -> bool:
        """The strategy asked to modify ``order`` to ``qty_lots`` (0: not known, as a journal
        from before this was recorded): PENDING_MODIFY where the table says so, and the order
        remembers the largest quantity it may now be worked at, and the new ``extras`` of a
        modify that moves its stop or trail (None: it keeps them); True if the state changed."""
        new = _MODIFY_ROW[order.state]  # None: the state stays
        if new is None:
            return False
        if extras is not None:
            order.pending_extras = extras
        if qty_lots > order.pending_qty_lots:
            order.pending_qty_lots = qty_lots
        if new is order.state:
            return False
        order.state = new
        return True

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
        order.pending_qty_lots = 0
        order.pending_extras = None
        coid = order.client_order_id
        if self.open.pop(coid, None) is not None:
            group = self._by_key[(order.strategy_id, order.instrument_id)]
            del group[coid]
            if not group:
                del self._by_key[(order.strategy_id, order.instrument_id)]
            self._remember(order)

    def _remember(self, order: Order) -> None:
        self.finished[order.client_order_id] = order
        if len(self.finished) > self._history:
            self.finished.popitem(last=False)

    # ---- events -----------------------------------------------------------------------------

    def apply(self, ev: OrderEvent) -> int:
        """Classify ``ev`` and apply it if it is news; returns the outcome (``self.order`` is
        the order, None if unknown)."""
        outcome = self.check(ev)
        if outcome < DUPLICATE:
            self.commit(ev)
        return outcome

    def check(self, ev: OrderEvent) -> int:
        """What ``ev`` means for its order (an ``Outcome`` value), changing nothing but the
        counters of dropped events; ``self.order`` is set to the order (None if unknown) for
        ``commit``, which must follow for the same event when the outcome is < DUPLICATE."""
        coid = ev.client_order_id
        order = self.open.get(coid)
        if order is None:
            order = self.finished.get(coid)
            if order is None:
                self.order = None
                self.unknown += 1
                if ev.kind != _EV_CANCEL_REJECTED:  # a refused request for it is expected
                    log.warning(
                        "order event %s for unknown order %d passed on without an order record",
                        _kind_name(ev.kind), coid,
                    )  # fmt: skip
                return UNKNOWN_ORDER
        self.order = order
        try:
            action = _ROWS[order.state][ev.kind]
        except (IndexError, TypeError):
            action = BAD  # not an EventKind
        if action == RES and 0 < ev.reason_code < _GATE_CODES_END:
            action = NOTE  # the gate's refusal: the request pending at the venue stays pending
        self._action = action
        if action in (FILL, LATE):
            exec_id = ev.exec_id
            if exec_id:
                seen = order.exec_ids
                if seen is not None and exec_id in seen:
                    return self._drop(order, ev, DUPLICATE)
            elif 0 < ev.cum_lots <= order.filled_lots:
                return self._drop(order, ev, DUPLICATE)
            return APPLIED if action == FILL else LATE_FILL
        if action < LATE:
            if action == MOD:
                state = order.state
                if (
                    (state is _ACCEPTED or state is _PARTIALLY_FILLED)
                    and ev.qty_lots == order.qty_lots
                    and ev.price_ticks == order.price_ticks
                ):
                    return self._drop(order, ev, DUPLICATE)
            elif action == ACK and order.accepted:
                return self._drop(order, ev, DUPLICATE)
            elif action == NOTE and ev.kind == _EV_COMMISSION:
                exec_id = ev.exec_id
                seen = order.fee_ids
                if exec_id and seen is not None and exec_id in seen:
                    return self._drop(order, ev, DUPLICATE)
            return APPLIED
        return self._drop(order, ev, _OUTCOME_OF[action])

    def _drop(self, order: Order, ev: OrderEvent, outcome: int) -> int:
        if outcome == DUPLICATE:
            self.duplicates += 1
            log.debug("order %d: duplicate %r ignored", order.client_order_id, ev.kind)
        elif outcome == STALE:
            self.stale += 1
            log.debug(
                "order %d: stale %r in state %r ignored", order.client_order_id, ev.kind,
                order.state,
            )  # fmt: skip
        else:
            self.illegal += 1
            key = (order.state, ev.kind)
            self.illegal_by[key] = self.illegal_by.get(key, 0) + 1
            log.warning(
                "order %d: illegal transition %s in state %s ignored (venue order id %d)",
                order.client_order_id, _kind_name(ev.kind), order.state.name,
                ev.venue_order_id,
            )  # fmt: skip
        return outcome

    def commit(self, ev: OrderEvent) -> None:
        """Apply ``ev`` as the last ``check`` classified it."""
        order = self.order
        if order is None:
            return
        action = self._action
        if ev.venue_order_id:
            order.venue_order_id = ev.venue_order_id
        if action == FILL:
            self._count_fill(order, ev)
            order.accepted = True
            qty = order.qty_lots
            pending = order.pending_qty_lots  # a modify to a larger size may be working already
            if order.filled_lots >= (pending if pending > qty else qty):
                self.finish(order, _FILLED)
            elif order.state < _PENDING_CANCEL:  # a pending request stays pending
                order.state = _PARTIALLY_FILLED
        elif action == ACC:
            order.state = _ACCEPTED
            order.accepted = True
        elif action == CXL:
            self.finish(order, _CANCELLED, ev.reason)
        elif action == REJ:
            self.finish(order, _REJECTED, ev.reason)
        elif action == EXP:
            self.finish(order, _EXPIRED, ev.reason)
        elif action == MOD:
            if ev.qty_lots > 0:
                order.qty_lots = ev.qty_lots
            order.price_ticks = ev.price_ticks
            order.accepted = True
            order.pending_qty_lots = 0
            if order.pending_extras is not None:  # the venue confirmed the new stop or trail
                order.extras = order.pending_extras
                order.pending_extras = None
            if order.filled_lots >= order.qty_lots:
                self.finish(order, _FILLED)
            elif order.state is not _PENDING_CANCEL:
                order.state = _PARTIALLY_FILLED if order.filled_lots else _ACCEPTED
        elif action == ACK:
            order.accepted = True
        elif action == RES:
            order.pending_qty_lots = 0
            order.pending_extras = None
            if order.filled_lots >= order.qty_lots:
                self.finish(order, _FILLED)  # filled at its old size; the modify came too late
            else:
                order.state = (
                    _PARTIALLY_FILLED if order.filled_lots else _ACCEPTED if order.accepted
                    else _SUBMITTED
                )  # fmt: skip
        elif action == NOTE and ev.kind == _EV_COMMISSION and ev.exec_id:
            seen = order.fee_ids
            if seen is None:
                order.fee_ids = {ev.exec_id}
            else:
                seen.add(ev.exec_id)
        elif action == LATE:
            self._count_fill(order, ev)
            self.late_fills += 1
            if order.state is _FILLED and order.filled_lots > order.qty_lots:
                log.warning(
                    "order %d: fill %r of %d lots beyond the order's %d (now %d filled)",
                    order.client_order_id, ev.exec_id, ev.fill_lots, order.qty_lots,
                    order.filled_lots,
                )  # fmt: skip
            elif order.state is _FILLED:  # a venue's correction: a fill taken back, or redone
                log.info(
                    "order %d: fill %r of %d lots corrects the order's fills (now %d of %d)",
                    order.client_order_id, ev.exec_id, ev.fill_lots, order.filled_lots,
                    order.qty_lots,
                )  # fmt: skip
            else:
                log.info(
                    "order %d: fill %r of %d lots after the order was %s",
                    order.client_order_id, ev.exec_id, ev.fill_lots, order.state.name,
                )  # fmt: skip
                if order.filled_lots >= order.qty_lots:
                    order.state = _FILLED

    @staticmethod
    def _count_fill(order: Order, ev: OrderEvent) -> None:
        exec_id = ev.exec_id
        if exec_id:
            seen = order.exec_ids
            if seen is None:
                order.exec_ids = {exec_id}
            else:
                seen.add(exec_id)
            if ev.commission:  # its fee came with it: a COMMISSION for it later is a duplicate
                fees = order.fee_ids
                if fees is None:
                    order.fee_ids = {exec_id}
                else:
                    fees.add(exec_id)
        order.filled_lots += ev.fill_lots
