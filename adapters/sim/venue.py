"""An in-process simulated venue: orders matched against the engine's live books.

It is the fill engine for the demo, for replay and (later) for SHADOW mode, so it behaves like a
venue rather than a stub:

* acknowledgements, fills and cancel answers arrive after configurable latencies
  (``ack_latency_us``, ``fill_latency_us``; 0 answers inside the same pump); an order's
  answers leave in the order they were made, as on one connection: a cancel or modify answered
  while a fill of the order is still on its way follows that fill;
* market orders walk the opposite side of the book level by level (up to ``depth_levels``);
  what finds no liquidity keeps working and fills as the book refills; IOC cancels the rest and
  FOK fills all or nothing;
* limit orders take what crosses at once and rest; a resting order fills when the opposite best
  price reaches it (at the book's price: price improvement is kept) or when a trade prints at or
  through its price. A print fills one side of ours only, as its taker either lifted the offers
  or hit the bids: the trade's ``aggressor`` BUY fills our sells at or below its price, SELL our
  buys at or above it. IB's prints carry no aggressor: such a print fills whichever side it
  crosses, and when it crosses both (our own buy and sell cross each other), the side the quote
  rule gives (above the mid a buyer took: our sells; below it our buys; at the mid, or with a
  side of the book empty, the side of the crossed order sent first);
* partial fills carry cumulative and leaves quantities; every fill has a unique ``exec_id``;
* cancels and modifies of unknown or finished orders are answered with ``CANCEL_REJECTED``,
  with IB's code for the same refusal (``CANCEL_NOT_FOUND`` 10147, ``CANCEL_FILLED`` 10148,
  ``MODIFY_NOT_WORKING`` 104); ``cancel_all`` cancels every working order (IB's global cancel);
* MARKET, LIMIT and STOP orders with DAY, GTC, IOC or FOK and no algo are simulated: anything else
  (stop limits, on-close, trailing, GTD, OPG, IB algos) is answered with ``REJECTED`` naming what
  is not supported (``NOT_SIMULATED``), after the acknowledgement latency. GTD being one of
  them, no order expires at a time of its own. An iceberg's display size changes nothing
  here (our orders are not in the market's book), so it is accepted and matched like any order.
  A STOP triggers when the touch reaches its stop (a buy stop when the best ask is at or above
  it, a sell stop when the best bid is at or below it) or a trade prints at or through it, and
  then works as a MARKET order. A modify may move an untriggered stop, which is then judged as a
  new one: it triggers at once if the touch is already at or through it;
* parent/child orders and OCA groups as IB expresses them (``OrderIntent.parent_id``,
  ``oca_group``, ``oca_type``, ``transmit``):

  - a child (``parent_id``) is acknowledged but held, not matchable, until its parent has filled
    completely; then it works at its full size. A parent that ends otherwise (cancelled,
    expired, an IOC remainder; also after a partial fill) cancels its held children, naming
    the parent: as IB and the gateway simulator do, the children never work for a partly filled
    parent, and the strategy owns what the parent did fill. A child whose parent is unknown here
    (refused, or finished without filling) is rejected (``PARENT_UNKNOWN``);
  - OCA groups (by name, as IB keys them per account): a fill of one member cancels the others
    (type 1) or reduces their quantity by the filled quantity (types 2 and 3 alike: there is no
    concurrent fill to block here), with a MODIFIED event, or CANCELLED once nothing is left.
    These answers leave on the fill latency, after the fill that caused them. A member cancelled
    by request leaves the group without touching the others;
  - ``transmit=False`` holds an order unacknowledged (no event at all, as IB reports nothing
    for an order TWS has not transmitted) until an order of its parent chain is sent with
    ``transmit=True``: then the held parent goes first, then its held children in the order
    they were sent, then the transmitting order. A held order that is cancelled is discarded
    (CANCELLED, "never transmitted"), and so are its held children. An order held with no chain
    to release it stays held until it is cancelled, as in TWS.

Liquidity taken is not removed from the market's book (the book belongs to the market, we are
not in it), but it is used up: what our orders took at a level is not available to them again
until the market updates that level's size (fresh data, an emptied level that comes back
included: what it shows then is available in full), so two orders, or one order over several
book updates, never take more than the level showed. Working orders are matched in price-time
priority: the best priced first (buys highest, sells lowest), then the earliest sent, against
the book and against prints alike. A modify that changes the price (or a stop's trigger) or
increases the size sends the order to the back of the queue, as at a venue; one that only
decreases the size keeps its place.

DAY orders expire at the end of the trading day: the engine's one day boundary (``[risk]
daily_reset``, ``engine.trading_day``) calls ``on_day_end``, which answers every working DAY
order EXPIRED, held children included (a GTC child held for an expiring DAY parent is cancelled,
naming it); GTC orders work on. It is the engine's boundary, not a market's close: a real venue
ends DAY orders at its own market's close, which differs per market (16:00 New York for US
stocks, 17:00 New York for CME's equity futures), so ``daily_reset`` should be the traded
market's close for a shadowed DAY order to end with the live one.

A book batch is matched after the strategies have reacted to it (``ports.after_dispatch``), so
matching never delays their orders; what they send in the meantime is held and reaches the
matching engine after that match, as it would at a real venue where the market moved first.
Answers keep the times they would have had: fills from that match leave ``fill_latency_us``
after the batch, held requests ``ack_latency_us`` after they were sent.
"""

from __future__ import annotations

import itertools
from collections import deque
from functools import partial

import numpy as np

from engine.clock import TimerHandle
from engine.config import SimVenueConfig
from engine.messages import (
    NO_PRICE,
    Algo,
    BookSide,
    EventKind,
    OrderEvent,
    OrderIntent,
    OrderType,
    Side,
    TimeInForce,
)
from engine.orders import Order, OrderExtras
from engine.venue import NOT_SIMULATED, PARENT_UNKNOWN, VenuePorts

# Module-level names for the matching loops: an enum member read costs ~80 ns in Python 3.11.
_BUY = int(Side.BUY)
_SELL = int(Side.SELL)
_MARKET = int(OrderType.MARKET)
_LIMIT = int(OrderType.LIMIT)
_STOP = int(OrderType.STOP)
_RECENT_FILLS = 4096  # filled orders remembered for children sent after their parent filled
_UNPRICED_FIRST = -(2**64)  # below any -side x ticks
_DAY = int(TimeInForce.DAY)
_IOC_FOK = (int(TimeInForce.IOC), int(TimeInForce.FOK))
_FOK = int(TimeInForce.FOK)
_BID = int(BookSide.BID)
_ASK = int(BookSide.ASK)
_ACCEPTED = EventKind.ACCEPTED
_CANCELLED = EventKind.CANCELLED
_MODIFIED = EventKind.MODIFIED
_FILL = EventKind.FILL
_CANCEL_REJECTED = EventKind.CANCEL_REJECTED
_REJECTED = EventKind.REJECTED
_EXPIRED = EventKind.EXPIRED
# Non-zero for anything but MARKET/LIMIT and DAY..FOK (negative values included).
_NOT_PLAIN_TYPE = ~1
_NOT_PLAIN_TIF = ~3

# ``reason_code`` of the venue's refusals: the shared negative codes (``engine.venue``:
# ``NOT_SIMULATED``, ``PARENT_UNKNOWN``) or, where IB refuses the same request, IB's code, so a
# strategy reads a shadowed order's refusals as it reads the live venue's.
#: A CANCEL_REJECTED cancel of an order not working here that it does not remember (IB's 10147,
#: "the order to cancel is not found"): cancelled, rejected, expired, or never seen.
CANCEL_NOT_FOUND = 10147
#: A CANCEL_REJECTED cancel of an order that filled completely (IB's 10148, "cannot be
#: cancelled in its current state").
CANCEL_FILLED = 10148
#: A CANCEL_REJECTED modify of an order not working here (IB's 104, which the gateway simulator
#: sends for any finished order).
MODIFY_NOT_WORKING = 104


class _Outbox:
    """Answers waiting for one latency, earliest first, and when the timer armed for them is
    due (None when none is armed)."""

    __slots__ = ("armed_for", "items", "timer")

    def __init__(self) -> None:
        self.items: deque = deque()
        self.armed_for: int | None = None
        self.timer: TimerHandle | None = None  # the armed timer (``stop`` cancels it)


class SimOrder:
    __slots__ = (
        "answer_due",
        "client_order_id",
        "cum_lots",
        "held",
        "instrument_id",
        "oca_group",
        "oca_type",
        "order_type",
        "parent_id",
        "price_ticks",
        "qty_lots",
        "side",
        "stop_ticks",
        "strategy_id",
        "tif",
        "venue_order_id",
    )

    def __init__(self, it: OrderIntent, venue_order_id: int) -> None:
        self.client_order_id = it.client_order_id
        self.strategy_id = it.strategy_id
        self.instrument_id = it.instrument_id
        self.side = it.side
        self.order_type = it.order_type
        self.tif = it.tif
        self.qty_lots = it.qty_lots
        self.price_ticks = it.price_ticks
        self.cum_lots = 0
        self.venue_order_id = venue_order_id
        self.held = False  # a child waiting for its parent to fill
        self.answer_due = 0  # when the last answer queued for it (a fill...) is delivered
        if it.extended:
            self.stop_ticks = it.stop_ticks
            self.parent_id = it.parent_id
            self.oca_group = it.oca_group
            self.oca_type = it.oca_type
        else:
            self.stop_ticks = NO_PRICE
            self.parent_id = 0
            self.oca_group = ""
            self.oca_type = 0

    @property
    def leaves(self) -> int:
        return self.qty_lots - self.cum_lots

    def snapshot(self) -> SimOrder:
        """A copy of what an answer reports (quantities, price), for an answer delivered
        later: the order may change meanwhile."""
        copy = object.__new__(SimOrder)
        for name in SimOrder.__slots__:
            setattr(copy, name, getattr(self, name))
        return copy

    def crosses(self, ticks: int) -> bool:
        """Would this order trade at ``ticks``? (An untriggered stop never does.)"""
        t = self.order_type
        if t == _MARKET:
            return True
        if t == _LIMIT:
            return ticks <= self.price_ticks if self.side == _BUY else ticks >= self.price_ticks
        return False

    def stop_hit(self, bid: int, ask: int) -> bool:
        """Does the touch trigger this (untriggered) stop? NO_PRICE sides do not."""
        if self.side == _BUY:
            return ask != NO_PRICE and ask >= self.stop_ticks
        return bid != NO_PRICE and bid <= self.stop_ticks


class SimVenue:
    """See the module docstring."""

    def __init__(self, name: str, config: SimVenueConfig | None = None) -> None:
        self.name = name
        self.config = config or SimVenueConfig()
        self._ack_ns = round(self.config.ack_latency_us * 1e3)
        self._fill_ns = round(self.config.fill_latency_us * 1e3)
        self._depth = self.config.depth_levels
        self._orders: dict[int, SimOrder] = {}  # working orders by client order id
        self._resting: dict[int, dict[int, SimOrder]] = {}  # instrument id -> working orders
        self._outbox: dict[int, _Outbox] = {}
        self._venue_ids = itertools.count(1)
        self._exec_ids = itertools.count(1)
        # A book batch waiting for its match: its instruments, when it was applied, and the
        # requests sent since (None when no match is pending).
        self._batch: list[int] = []
        self._batch_ns = 0
        self._held: list[tuple] | None = None
        self._untransmitted: dict[int, SimOrder] = {}  # transmit=False, by client order id
        self._children: dict[int, list[SimOrder]] = {}  # parent's client order id -> children
        self._oca: dict[str, list[SimOrder]] = {}  # OCA group -> its working members
        # Completely filled, oldest first (bounded): client order id -> when its last fill is
        # delivered.
        self._recent_fills: dict[int, int] = {}
        # instrument -> (book side, ticks) -> (the size the level showed, lots our orders took
        # from it): used up until the market shows another size there (or none).
        self._taken: dict[int, dict[tuple[int, int], tuple[int, int]]] = {}
        self._settle_cb = self._settle
        self.ports: VenuePorts | None = None
        self.received = 0
        self.fills = 0

    def bind(self, ports: VenuePorts) -> None:
        self.ports = ports

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """The venue closes: answers still waiting out their latency are never sent. They die
        with the venue, as everything an in-process venue holds does; after the engine closed
        its journal nothing may reach the OMS that the journal did not record (recovery
        reports the venue's open orders lost, and a fill after that would put the portfolio
        ahead of the journal)."""
        for box in self._outbox.values():
            if box.timer is not None:
                box.timer.cancel()
            box.timer = box.armed_for = None
            box.items.clear()

    # ---- requests from the router -----------------------------------------------------------

    def submit(self, it: OrderIntent, order: Order | None) -> None:
        now = self.ports.clock.now()
        it.ts_sent = now
        self.received += 1
        so = SimOrder(it, next(self._venue_ids))
        if (
            (it.order_type & _NOT_PLAIN_TYPE and it.order_type != _STOP)
            or it.tif & _NOT_PLAIN_TIF
            or (it.extended and it.algo)
        ):
            self._request(now, self._refuse, (so, _unsupported(it), NOT_SIMULATED))
            return
        if it.extended and (so.parent_id or so.oca_group or not it.transmit):
            self._request(now, self._place, (so, it.transmit))
            return
        self._request(now, self._accept, (so,))

    def cancel(self, order: Order) -> None:
        self._request(self.ports.clock.now(), self._cancel, (
            order.client_order_id, order.strategy_id, order.instrument_id, order.side,
        ))  # fmt: skip

    def modify(
        self, order: Order, qty_lots: int, price_ticks: int, extras: OrderExtras | None = None
    ) -> None:
        # Only STOP is simulated among the stop types: its trigger is all of extras that moves.
        stop_ticks = NO_PRICE if extras is None else extras.stop_ticks
        self._request(self.ports.clock.now(), self._modify, (
            order.client_order_id, order.strategy_id, order.instrument_id, order.side, qty_lots,
            price_ticks, stop_ticks,
        ))  # fmt: skip

    def cancel_all(self) -> None:
        """Cancel every working order of every strategy (a global cancel, as IB's
        ``reqGlobalCancel``): each is answered ``CANCELLED``."""
        self._request(self.ports.clock.now(), self._cancel_all, ())

    def on_day_end(self, ts: int) -> None:
        """The trading day ended (``Engine.roll_day``, at ``[risk] daily_reset``): every working
        DAY order is answered EXPIRED, what it filled kept, held children included; GTC orders
        keep working. Children held for a DAY parent that expired are then cancelled, naming it,
        as for any parent that ends without filling. Orders held with ``transmit=False`` are not
        at the venue yet and stay held: transmitted later, they work that day."""
        if self._held is not None:
            self._settle()  # the market moved before the close: that match comes first
        day = [so for so in self._orders.values() if so.tif == _DAY]
        for so in day:
            self._remove(so)
            self._answer(_EXPIRED, so, "DAY order: the trading day ended")
        if self._children:
            for so in day:
                self._orphan(so, ts, 0, "expired at the end of the trading day")

    def _request(self, sent_ns: int, fn, args: tuple) -> None:
        """A request reaches the matching engine ``ack_latency_us`` after it was sent, and never
        before the match of a book batch it may have been sent in reaction to."""
        held = self._held
        if held is not None:
            held.append((sent_ns, fn, args))
        else:
            self._send(sent_ns, self._ack_ns, fn, args)

    # ---- market data ------------------------------------------------------------------------

    def on_book(self, instrument_ids: list[int]) -> None:
        if self._held is not None:
            self._settle()  # a batch still pending (not dispatched through a BookActor)
        if self._taken:
            self._refresh_taken(instrument_ids)
        if not self._resting:
            return
        self._batch = instrument_ids
        self._batch_ns = self.ports.clock.now()
        self._held = []
        self.ports.after_dispatch(self._settle_cb)

    def _refresh_taken(self, instrument_ids: list[int]) -> None:
        """Levels the market has updated since our orders took from them are fresh again
        (a level that emptied and came back with the same size included: its top changed)."""
        size_at = self.ports.books.size_at
        taken = self._taken
        for i in instrument_ids:
            levels = taken.get(i)
            if levels is None:
                continue
            for key, (size, _) in list(levels.items()):
                if size_at(i, key[0], key[1]) != size:
                    del levels[key]
            if not levels:
                del taken[i]

    def _settle(self) -> None:
        """Match the pending book batch, then let the requests held meanwhile through."""
        held = self._held
        self._held = None
        at = self._batch_ns
        tops = self.ports.books.tops
        resting = self._resting
        try:
            for i in self._batch:
                working = resting.get(i)
                if not working:
                    continue
                # Most updates cross nothing: compare the touch with each working price before
                # walking any levels.
                top = tops[i]
                for so in _by_priority(working):
                    if so.order_type == _STOP:
                        if not so.stop_hit(top[0], top[2]):
                            continue
                        so.order_type = _MARKET  # triggered: a market order from now on
                    best = top[2] if so.side == _BUY else top[0]
                    if best != NO_PRICE and so.crosses(best):
                        self._match_book(so, at)
        finally:
            for sent_ns, fn, args in held:  # never lost, whatever the match did
                self._send(sent_ns, self._ack_ns, fn, args)

    def on_trades(self, trades: np.ndarray) -> None:
        """Resting limit orders fill against prints at or through their price, on one side
        only: a print is a taker hitting the bids or lifting the offers, so it fills our sells
        at or below its price when the buyer took (aggressor BUY), our buys at or above it when
        the seller did. Unknown (IB's prints carry none) it fills whichever side it crosses,
        and should it cross both (our own orders crossed), one side: ``_taker``."""
        if not self._resting:
            return
        now = self.ports.clock.now()
        columns = zip(
            trades["instrument_id"].tolist(), trades["price"].tolist(), trades["size"].tolist(),
            trades["aggressor"].tolist(), strict=True,
        )  # fmt: skip
        for i, price, size, taker in columns:
            working = self._resting.get(i)
            if not working:
                continue
            for so in _by_priority(working):
                if size <= 0:
                    break
                if so.client_order_id not in self._orders:
                    continue  # ended by an earlier fill of this loop (OCA)
                t = so.order_type
                if t == _LIMIT and so.crosses(price):
                    if so.side == taker:
                        continue  # the print's taker side: it traded against the other side
                    if not taker:
                        taker = self._taker(so, price, working)
                        if so.side == taker:
                            continue
                    take = min(so.leaves, size)
                    size -= take
                    self._fill(so, take, so.price_ticks, now)
                elif t == _STOP and (
                    price >= so.stop_ticks if so.side == _BUY else price <= so.stop_ticks
                ):
                    so.order_type = _MARKET
                    self._match_book(so, now)

    def _taker(self, so: SimOrder, price: int, working: dict[int, SimOrder]) -> int:
        """The side that took in a print of unknown aggressor, which ``so`` would fill: the
        other side's, unless a working limit order of the other side crosses the print too.
        Then one side only fills, decided as trade classification does (Lee and Ready's quote
        rule): a print above the mid was a buyer lifting the offers (it fills our sells), below
        it a seller hitting the bids (our buys); at the mid, or with a side of the book empty,
        the side of the order sent first among those the print crosses (the longest waiting)."""
        side = so.side
        crossed = False
        for other in working.values():
            if other.side != side and other.order_type == _LIMIT and other.crosses(price):
                crossed = True
                break
        if not crossed:
            return -side
        top = self.ports.books.tops[so.instrument_id]
        bid, ask = top[0], top[2]
        if bid != NO_PRICE and ask != NO_PRICE and 2 * price != bid + ask:
            return _BUY if 2 * price > bid + ask else _SELL
        first = next(o for o in working.values() if o.order_type == _LIMIT and o.crosses(price))
        return -first.side

    # ---- matching ---------------------------------------------------------------------------

    def _accept(self, so: SimOrder) -> None:
        self._admit(so)
        self._work(so, self.ports.clock.now())

    def _admit(self, so: SimOrder) -> None:
        """Acknowledge an order and make it working (cancellable, in its OCA group)."""
        self._emit(_ACCEPTED, so)
        self._orders[so.client_order_id] = so
        if so.oca_group:
            self._oca.setdefault(so.oca_group, []).append(so)

    def _work(self, so: SimOrder, now: int) -> None:
        """Put an accepted order in the market: match what crosses, rest the rest."""
        self._resting.setdefault(so.instrument_id, {})[so.client_order_id] = so
        if so.order_type == _STOP:
            top = self.ports.books.tops[so.instrument_id]
            if so.stop_hit(top[0], top[2]):
                so.order_type = _MARKET
        if so.tif == _FOK and self._available(so) < so.leaves:
            self._finish(so, _CANCELLED, "FOK: not enough liquidity to fill in full")
            return
        self._match_book(so, now)
        if so.client_order_id in self._orders and so.tif in _IOC_FOK:
            # Sent on the fills' delay so it follows them.
            self._remove(so)
            args = (_CANCELLED, so, "IOC: remainder cancelled")
            self._later(so, now, self._fill_ns, self._emit, args)
            if self._children:
                self._orphan(so, now, self._fill_ns, "was cancelled (IOC remainder)")

    # ---- parent/child, OCA, transmit ---------------------------------------------------------

    def _place(self, so: SimOrder, transmit: bool) -> None:
        """An order with a parent, an OCA group or ``transmit=False`` reaches the venue."""
        if not transmit:
            self._untransmitted[so.client_order_id] = so
            return
        held = self._untransmitted
        p = so.parent_id
        parent = None
        if held and p:
            # Transmitting a child transmits its held parent, then its held siblings; the
            # parent starts matching only once they are all attached (it could fill at once).
            parent = held.pop(p, None)
            if parent is not None:
                self._place_live(parent, False)
            for coid, sibling in list(held.items()):
                if sibling.parent_id == p:
                    del held[coid]
                    self._place_live(sibling)
        self._place_live(so)
        if parent is not None and not parent.held and parent.client_order_id in self._orders:
            self._work(parent, self.ports.clock.now())

    def _place_live(self, so: SimOrder, work: bool = True) -> None:
        p = so.parent_id
        if not p:
            if work:
                self._accept(so)
            else:
                self._admit(so)
            return
        parent = self._orders.get(p)
        if parent is None:
            if p in self._recent_fills:  # the parent has already filled: the child works now
                if work:
                    self._accept(so)
                else:
                    self._admit(so)
            else:
                reason = f"parent order {p} is not working at {self.name}"
                self._refuse(so, reason, PARENT_UNKNOWN)
            return
        # Held until the parent fills: acknowledged, in its OCA group, not matchable.
        so.held = True
        self._admit(so)
        self._children.setdefault(p, []).append(so)

    def _activate(self, parent: SimOrder, at: int) -> None:
        """The parent filled completely: its held children start working."""
        for child in self._children.pop(parent.client_order_id, ()):
            if child.held and child.client_order_id in self._orders:
                child.held = False
                self._work(child, at)

    def _orphan(self, parent: SimOrder, at: int, delay_ns: int, what: str) -> None:
        """The parent ended without filling completely: its held children are cancelled."""
        reason = f"parent order {parent.client_order_id} {what}"
        for child in self._children.pop(parent.client_order_id, ()):
            if child.client_order_id in self._orders:
                self._remove(child)
                self._later(child, at, delay_ns, self._emit, (_CANCELLED, child, reason))
                if self._children:
                    self._orphan(child, at, delay_ns, "was cancelled")

    def _oca_fill(self, so: SimOrder, lots: int, at: int) -> None:
        """``so`` filled ``lots``: cancel (type 1) or reduce (2, 3) the rest of its group."""
        group = self._oca.get(so.oca_group)
        if not group:
            return
        reason = f"OCA group {so.oca_group!r}: order {so.client_order_id} filled"
        delay = self._fill_ns
        for other in tuple(group):
            if other is so or other.client_order_id not in self._orders:
                continue
            if so.oca_type != 1:
                other.qty_lots = max(other.qty_lots - lots, other.cum_lots)
                if other.leaves > 0:
                    self._later(other, at, delay, self._emit, (_MODIFIED, other, reason))
                    continue
            self._remove(other)
            self._later(other, at, delay, self._emit, (_CANCELLED, other, reason))
            if self._children:
                self._orphan(other, at, delay, "was cancelled by its OCA group")

    def _leave_oca(self, so: SimOrder) -> None:
        group = self._oca.get(so.oca_group)
        if group is not None:
            if so in group:
                group.remove(so)
            if not group:
                del self._oca[so.oca_group]

    def _refuse(self, so: SimOrder, reason: str, code: int) -> None:
        self._emit(_REJECTED, so, reason, code)

    def _levels(self, so: SimOrder) -> list[tuple[int, int]]:
        side = _ASK if so.side == _BUY else _BID
        return self.ports.books.depth(so.instrument_id, side, self._depth)

    def _available(self, so: SimOrder) -> int:
        side = _ASK if so.side == _BUY else _BID
        return sum(
            self._left(so.instrument_id, side, ticks, size)
            for ticks, size in self._levels(so)
            if so.crosses(ticks)
        )

    def _left(self, instrument_id: int, side: int, ticks: int, size: int) -> int:
        """What a level showing ``size`` still offers our orders."""
        levels = self._taken.get(instrument_id)
        was = None if levels is None else levels.get((side, ticks))
        return size - was[1] if was is not None and was[0] == size else size

    def _match_book(self, so: SimOrder, at: int) -> None:
        """Fill what crosses the book now and is not used up; the fills leave
        ``fill_latency_us`` after ``at``."""
        i = so.instrument_id
        top = self.ports.books.tops[i]
        best = top[2] if so.side == _BUY else top[0]
        if best == NO_PRICE or not so.crosses(best):
            return
        side = _ASK if so.side == _BUY else _BID
        levels = self._taken.get(i)
        for ticks, size in self._levels(so):
            if not so.crosses(ticks) or so.client_order_id not in self._orders:
                break
            key = (side, ticks)
            was = None if levels is None else levels.get(key)
            used = was[1] if was is not None and was[0] == size else 0
            lots = min(size - used, so.leaves)
            if lots <= 0:
                continue
            if levels is None:
                levels = self._taken[i] = {}
            levels[key] = (size, used + lots)
            self._fill(so, lots, ticks, at)

    def _fill(self, so: SimOrder, lots: int, ticks: int, at: int) -> None:
        if lots <= 0:
            return
        so.cum_lots += lots
        self.fills += 1
        exec_id = f"{self.name}-{next(self._exec_ids)}"
        commission = lots * self.config.commission_per_lot
        done = so.leaves == 0
        if done:
            self._remove(so)
        args = (so, lots, ticks, so.cum_lots, exec_id, commission)
        self._later(so, at, self._fill_ns, self._emit_fill, args)
        if so.oca_group:
            self._oca_fill(so, lots, at)
        if done:
            recent = self._recent_fills
            recent[so.client_order_id] = so.answer_due
            if len(recent) > _RECENT_FILLS:
                del recent[next(iter(recent))]
            if self._children:
                self._activate(so, at)

    def _cancel(self, coid: int, strategy_id: int, instrument_id: int, side: int) -> None:
        so = self._orders.get(coid)
        if so is None:
            if coid in self._untransmitted:
                self._discard(coid)
                return
            self._emit_unknown(coid, strategy_id, instrument_id, side, "cancel")
            return
        self._finish(so, _CANCELLED, "cancelled by request")

    def _cancel_all(self) -> None:
        for so in list(self._orders.values()):
            self._finish(so, _CANCELLED, "cancelled by a global cancel")

    def _discard(self, coid: int) -> None:
        """Cancel an order held with ``transmit=False``, and its held children."""
        held = self._untransmitted
        so = held.pop(coid)
        self._emit(_CANCELLED, so, "discarded: the order was never transmitted")
        for other, child in list(held.items()):
            if child.parent_id == coid and other in held:
                self._discard(other)

    def _modify(
        self, coid: int, strategy_id: int, instrument_id: int, side: int, qty: int, ticks: int,
        stop_ticks: int,
    ) -> None:  # fmt: skip
        """Change a working order; ``stop_ticks`` (NO_PRICE: unchanged) moves a STOP's
        trigger, which is then judged as a new stop's is: it triggers at once if the touch is
        already at or through it. A stop that has triggered is a market order: nothing to move."""
        so = self._orders.get(coid)
        if so is None:
            so = self._untransmitted.get(coid)
            if so is not None:  # held: changed where it is held, still not transmitted
                so.qty_lots = qty
                so.price_ticks = ticks
                if stop_ticks != NO_PRICE:
                    so.stop_ticks = stop_ticks
                self._emit(_MODIFIED, so)
                return
            self._emit_unknown(coid, strategy_id, instrument_id, side, "modify")
            return
        if qty <= so.cum_lots:
            self._finish(so, _CANCELLED, "modified below the filled quantity")
            return
        # A new price (or stop) or a larger size goes to the back of the queue, as at a venue;
        # a smaller size keeps its place.
        requeue = (
            ticks != so.price_ticks
            or qty > so.qty_lots
            or (stop_ticks != NO_PRICE and stop_ticks != so.stop_ticks)
        )
        so.qty_lots = qty
        so.price_ticks = ticks
        if stop_ticks != NO_PRICE:
            so.stop_ticks = stop_ticks
        if requeue:
            working = self._resting.get(so.instrument_id)
            if working is not None and working.pop(coid, None) is not None:
                working[coid] = so  # last of those sent: the order time priority goes by
        self._answer(_MODIFIED, so)
        if not so.held:
            if so.order_type == _STOP:
                top = self.ports.books.tops[so.instrument_id]
                if not so.stop_hit(top[0], top[2]):
                    return
                so.order_type = _MARKET  # triggered: a market order from now on
            self._match_book(so, self.ports.clock.now())

    def _finish(self, so: SimOrder, kind: EventKind, reason: str) -> None:
        self._remove(so)
        self._answer(kind, so, reason)
        if self._children:
            self._orphan(so, self.ports.clock.now(), 0, f"ended: {reason}")

    def _remove(self, so: SimOrder) -> None:
        self._orders.pop(so.client_order_id, None)
        if so.oca_group:
            self._leave_oca(so)
        working = self._resting.get(so.instrument_id)
        if working is not None:
            working.pop(so.client_order_id, None)
            if not working:
                del self._resting[so.instrument_id]

    # ---- answers ----------------------------------------------------------------------------

    def _send(self, at: int, delay_ns: int, fn, args: tuple) -> None:
        """Call ``fn(*args)`` at ``at + delay_ns`` (at once if the delay is 0)."""
        if delay_ns <= 0:
            fn(*args)
            return
        # One FIFO per delay, so answers with the same latency leave in the order they were
        # made, and one armed timer per queue rather than one per answer.
        box = self._outbox.get(delay_ns)
        if box is None:
            box = self._outbox[delay_ns] = _Outbox()
        due = at + delay_ns
        box.items.append((due, fn, args))
        if box.armed_for is None:
            self._arm(box, due)

    def _later(self, so: SimOrder, at: int, delay_ns: int, fn, args: tuple) -> None:
        """``_send`` an answer about ``so``, noting when it is delivered (``_answer``)."""
        due = at + delay_ns
        if due > so.answer_due:
            so.answer_due = due
        self._send(at, delay_ns, fn, args)

    def _answer(self, kind: EventKind, so: SimOrder, reason: str = "") -> None:
        """An answer about ``so`` made now (cancelled, modified). Answers leave as on one
        connection: one made while a fill of the order is still on its way (a fill latency
        longer than the acknowledgement's) follows that fill, not overtakes it (a CANCELLED
        counting lots whose FILL had not arrived). It reports the order as it is now."""
        due = so.answer_due
        if due > self.ports.clock.now():
            self._behind(due, self._emit, (kind, so.snapshot(), reason))
        else:
            self._emit(kind, so, reason)

    def _behind(self, due: int, fn, args: tuple) -> None:
        """Deliver ``fn(*args)`` at ``due``, right after the answers already queued for then
        (those are on the fill latency's queue)."""
        box = self._outbox[self._fill_ns]
        items = box.items
        k = len(items)
        while k and items[k - 1][0] > due:
            k -= 1
        items.insert(k, (due, fn, args))
        first = items[0][0]
        if box.armed_for is None or first < box.armed_for:  # the fill before it went out early
            if box.timer is not None:
                box.timer.cancel()
            self._arm(box, first)

    def _arm(self, box: _Outbox, due: int) -> None:
        box.armed_for = due
        clock = self.ports.clock
        box.timer = clock.call_later(due - clock.now(), partial(self._deliver, box, due))

    def _deliver(self, box: _Outbox, due: int) -> None:
        """Answer what is due. What the timer was armed for is due even if the event loop, whose
        clock is coarser than ours, fired it a little early; it may also have gone out already,
        with an earlier timer, if answering took longer than the latency."""
        if box.armed_for == due:
            box.armed_for = box.timer = None
        clock = self.ports.clock
        items = box.items
        while items and items[0][0] <= max(clock.now(), due):
            _, fn, args = items.popleft()
            fn(*args)
        if items and box.armed_for is None:
            self._arm(box, items[0][0])
        self.ports.wake()

    def _emit(self, kind: EventKind, so: SimOrder, reason: str = "", code: int = 0) -> OrderEvent:
        ev = self.ports.events.claim()
        ev.kind = kind
        ev.strategy_id = so.strategy_id
        ev.instrument_id = so.instrument_id
        ev.client_order_id = so.client_order_id
        ev.venue_order_id = so.venue_order_id
        ev.side = so.side
        ev.fill_lots = 0
        ev.fill_price_ticks = NO_PRICE
        ev.cum_lots = so.cum_lots
        ev.leaves_lots = so.leaves
        ev.price_ticks = so.price_ticks
        ev.qty_lots = so.qty_lots
        ev.commission = 0.0
        ev.exec_id = ""
        ev.reason_code = code
        ev.reason = reason
        ev.ts_event = ev.ts_recv = self.ports.clock.now()
        return ev

    def _emit_fill(
        self, so: SimOrder, lots: int, ticks: int, cum: int, exec_id: str, commission: float
    ) -> None:
        ev = self._emit(_FILL, so)
        ev.fill_lots = lots
        ev.fill_price_ticks = ticks
        ev.cum_lots = cum
        ev.leaves_lots = so.qty_lots - cum
        ev.exec_id = exec_id
        ev.commission = commission

    def _emit_unknown(self, coid: int, strategy_id: int, instrument_id: int, side: int, what: str):
        due = self._recent_fills.get(coid, 0)  # its last fill may still be on its way
        args = (coid, strategy_id, instrument_id, side, what)
        if due > self.ports.clock.now():
            self._behind(due, self._emit_not_working, args)
        else:
            self._emit_not_working(*args)

    def _emit_not_working(
        self, coid: int, strategy_id: int, instrument_id: int, side: int, what: str
    ) -> None:
        ev = self.ports.events.claim()
        ev.clear()
        ev.kind = _CANCEL_REJECTED
        ev.strategy_id = strategy_id
        ev.instrument_id = instrument_id
        ev.client_order_id = coid
        ev.side = side
        if what == "modify":
            ev.reason_code = MODIFY_NOT_WORKING
        else:
            ev.reason_code = CANCEL_FILLED if coid in self._recent_fills else CANCEL_NOT_FOUND
        ev.reason = f"{what} refused: order {coid} is not working at {self.name}"
        ev.ts_event = ev.ts_recv = self.ports.clock.now()


def _priority(so: SimOrder) -> int:
    """Sort key: the best priced first (buys highest, sells lowest), unpriced first of all."""
    ticks = so.price_ticks
    return _UNPRICED_FIRST if ticks == NO_PRICE else -so.side * ticks


def _by_priority(working: dict[int, SimOrder]) -> list[SimOrder]:
    """Working orders in price-time priority (a stable sort keeps the order they were sent
    within a price; a market or a triggered stop, priced NO_PRICE, comes first)."""
    orders = list(working.values())
    if len(orders) > 1:
        orders.sort(key=_priority)
    return orders


def _unsupported(it: OrderIntent) -> str:
    """Why the simulated venue refuses an order it does not simulate."""
    if it.order_type & _NOT_PLAIN_TYPE and it.order_type != _STOP:
        try:
            what = f"order type {OrderType(it.order_type).name}"
        except ValueError:
            what = f"order type {it.order_type!r}"
    elif it.tif & _NOT_PLAIN_TIF:
        try:
            what = f"time in force {TimeInForce(it.tif).name}"
        except ValueError:
            what = f"time in force {it.tif!r}"
    else:
        try:
            what = f"algo {Algo(it.algo).name}"
        except ValueError:
            what = f"algo {it.algo!r}"
    return f"{what} is not supported by the simulated venue"
