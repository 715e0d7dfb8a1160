"""An in-process simulated venue: orders matched against the engine's live books.

It is the fill engine for the demo, for replay and (later) for SHADOW mode, so it behaves like a
venue rather than a stub:

* acknowledgements, fills and cancel answers arrive after configurable latencies
  (``ack_latency_us``, ``fill_latency_us``; 0 answers inside the same pump);
* market orders walk the opposite side of the book level by level (up to ``depth_levels``);
  what finds no liquidity keeps working and fills as the book refills; IOC cancels the rest and
  FOK fills all or nothing;
* limit orders take what crosses at once and rest; a resting order fills when the opposite best
  price reaches it (at the book's price: price improvement is kept) or when a trade prints at or
  through its price;
* partial fills carry cumulative and leaves quantities; every fill has a unique ``exec_id``;
* cancels and modifies of unknown or finished orders are answered with ``CANCEL_REJECTED``.

Liquidity taken is not removed from the market's book (the book belongs to the market, we are
not in it); fills at one level are capped at the size displayed there at that moment.
"""

from __future__ import annotations

import itertools
from collections import deque
from functools import partial

import numpy as np

from engine.config import SimVenueConfig
from engine.messages import (
    NO_PRICE,
    BookSide,
    EventKind,
    OrderEvent,
    OrderIntent,
    OrderType,
    Side,
    TimeInForce,
)
from engine.orders import Order
from engine.venue import VenuePorts


class _Outbox:
    """Answers waiting for one latency, earliest first, and whether a timer is armed for them."""

    __slots__ = ("armed", "items")

    def __init__(self) -> None:
        self.items: deque = deque()
        self.armed = False


class SimOrder:
    __slots__ = (
        "client_order_id",
        "cum_lots",
        "instrument_id",
        "order_type",
        "price_ticks",
        "qty_lots",
        "side",
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

    @property
    def leaves(self) -> int:
        return self.qty_lots - self.cum_lots

    def crosses(self, ticks: int) -> bool:
        """Would this order trade at ``ticks``?"""
        if self.order_type == OrderType.MARKET:
            return True
        return ticks <= self.price_ticks if self.side == Side.BUY else ticks >= self.price_ticks


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
        self.ports: VenuePorts | None = None
        self.received = 0
        self.fills = 0

    def bind(self, ports: VenuePorts) -> None:
        self.ports = ports

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    # ---- requests from the router -----------------------------------------------------------

    def submit(self, it: OrderIntent, order: Order | None) -> None:
        it.ts_sent = self.ports.clock.now()
        self.received += 1
        so = SimOrder(it, next(self._venue_ids))
        self._later(self._ack_ns, self._accept, so)

    def cancel(self, order: Order) -> None:
        self._later(self._ack_ns, self._cancel, order.client_order_id, order.strategy_id,
                    order.instrument_id, order.side)  # fmt: skip

    def modify(self, order: Order, qty_lots: int, price_ticks: int) -> None:
        self._later(self._ack_ns, self._modify, order.client_order_id, order.strategy_id,
                    order.instrument_id, order.side, qty_lots, price_ticks)  # fmt: skip

    # ---- market data ------------------------------------------------------------------------

    def on_book(self, instrument_ids: list[int]) -> None:
        if not self._resting:
            return
        books = self.ports.books
        for i in instrument_ids:
            working = self._resting.get(i)
            if not working:
                continue
            # Most updates cross nothing: compare the touch with the most aggressive working
            # prices before looking at any single order.
            ask = books.best_ask_ticks(i)
            bid = books.best_bid_ticks(i)
            for so in list(working.values()):
                best = ask if so.side == Side.BUY else bid
                if best != NO_PRICE and so.crosses(best):
                    self._match_book(so)

    def on_trades(self, trades: np.ndarray) -> None:
        """Resting limit orders fill against prints at or through their price."""
        if not self._resting:
            return
        columns = zip(
            trades["instrument_id"].tolist(), trades["price"].tolist(), trades["size"].tolist(),
            strict=True,
        )  # fmt: skip
        for i, price, size in columns:
            working = self._resting.get(i)
            if not working:
                continue
            for so in list(working.values()):
                if size <= 0:
                    break
                if so.order_type == OrderType.LIMIT and so.crosses(price):
                    take = min(so.leaves, size)
                    size -= take
                    self._fill(so, take, so.price_ticks)

    # ---- matching ---------------------------------------------------------------------------

    def _accept(self, so: SimOrder) -> None:
        self._emit(EventKind.ACCEPTED, so)
        self._orders[so.client_order_id] = so
        self._resting.setdefault(so.instrument_id, {})[so.client_order_id] = so
        if so.tif == TimeInForce.FOK and self._available(so) < so.leaves:
            self._finish(so, EventKind.CANCELLED, "FOK: not enough liquidity to fill in full")
            return
        self._match_book(so)
        if so.client_order_id in self._orders and so.tif in (TimeInForce.IOC, TimeInForce.FOK):
            # Sent on the fills' delay so it follows them.
            self._remove(so)
            self._later(self._fill_ns, self._emit, EventKind.CANCELLED, so,
                        "IOC: remainder cancelled")  # fmt: skip

    def _levels(self, so: SimOrder) -> list[tuple[int, int]]:
        side = BookSide.ASK if so.side == Side.BUY else BookSide.BID
        return self.ports.books.depth(so.instrument_id, side, self._depth)

    def _available(self, so: SimOrder) -> int:
        return sum(size for ticks, size in self._levels(so) if so.crosses(ticks))

    def _match_book(self, so: SimOrder) -> None:
        books = self.ports.books
        i = so.instrument_id
        best = books.best_ask_ticks(i) if so.side == Side.BUY else books.best_bid_ticks(i)
        if best == NO_PRICE or not so.crosses(best):
            return
        for ticks, size in self._levels(so):
            if not so.crosses(ticks) or so.client_order_id not in self._orders:
                break
            self._fill(so, min(size, so.leaves), ticks)

    def _fill(self, so: SimOrder, lots: int, ticks: int) -> None:
        if lots <= 0:
            return
        so.cum_lots += lots
        self.fills += 1
        exec_id = f"{self.name}-{next(self._exec_ids)}"
        commission = lots * self.config.commission_per_lot
        done = so.leaves == 0
        if done:
            self._remove(so)
        self._later(self._fill_ns, self._emit_fill, so, lots, ticks, so.cum_lots, exec_id,
                    commission)  # fmt: skip

    def _cancel(self, coid: int, strategy_id: int, instrument_id: int, side: int) -> None:
        so = self._orders.get(coid)
        if so is None:
            self._emit_unknown(coid, strategy_id, instrument_id, side, "cancel")
            return
        self._finish(so, EventKind.CANCELLED, "cancelled by request")

    def _modify(
        self, coid: int, strategy_id: int, instrument_id: int, side: int, qty: int, ticks: int
    ) -> None:
        so = self._orders.get(coid)
        if so is None:
            self._emit_unknown(coid, strategy_id, instrument_id, side, "modify")
            return
        if qty <= so.cum_lots:
            self._finish(so, EventKind.CANCELLED, "modified below the filled quantity")
            return
        so.qty_lots = qty
        so.price_ticks = ticks
        self._emit(EventKind.MODIFIED, so)
        self._match_book(so)

    def _finish(self, so: SimOrder, kind: EventKind, reason: str) -> None:
        self._remove(so)
        self._emit(kind, so, reason)

    def _remove(self, so: SimOrder) -> None:
        self._orders.pop(so.client_order_id, None)
        working = self._resting.get(so.instrument_id)
        if working is not None:
            working.pop(so.client_order_id, None)
            if not working:
                del self._resting[so.instrument_id]

    # ---- answers ----------------------------------------------------------------------------

    def _later(self, delay_ns: int, fn, *args) -> None:
        if delay_ns <= 0:
            fn(*args)
            return
        # One FIFO per delay, so answers with the same latency leave in the order they were
        # made, and one armed timer per queue rather than one per answer.
        box = self._outbox.get(delay_ns)
        if box is None:
            box = self._outbox[delay_ns] = _Outbox()
        clock = self.ports.clock
        box.items.append((clock.now() + delay_ns, fn, args))
        if not box.armed:
            box.armed = True
            clock.call_later(delay_ns, partial(self._deliver, box))

    def _deliver(self, box: _Outbox) -> None:
        box.armed = False
        clock = self.ports.clock
        items = box.items
        _, fn, args = items.popleft()  # the earliest answer: the one this timer is for
        fn(*args)
        now = clock.now()
        while items and items[0][0] <= now:
            _, fn, args = items.popleft()
            fn(*args)
        if items and not box.armed:
            box.armed = True
            clock.call_later(items[0][0] - now, partial(self._deliver, box))
        self.ports.wake()

    def _emit(self, kind: EventKind, so: SimOrder, reason: str = "") -> OrderEvent:
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
        ev.reason_code = 0
        ev.reason = reason
        ev.ts_event = ev.ts_recv = self.ports.clock.now()
        return ev

    def _emit_fill(
        self, so: SimOrder, lots: int, ticks: int, cum: int, exec_id: str, commission: float
    ) -> None:
        ev = self._emit(EventKind.FILL, so)
        ev.fill_lots = lots
        ev.fill_price_ticks = ticks
        ev.cum_lots = cum
        ev.leaves_lots = so.qty_lots - cum
        ev.exec_id = exec_id
        ev.commission = commission

    def _emit_unknown(self, coid: int, strategy_id: int, instrument_id: int, side: int, what: str):
        ev = self.ports.events.claim()
        ev.clear()
        ev.kind = EventKind.CANCEL_REJECTED
        ev.strategy_id = strategy_id
        ev.instrument_id = instrument_id
        ev.client_order_id = coid
        ev.side = side
        ev.reason = f"{what} refused: order {coid} is not working at {self.name}"
        ev.ts_event = ev.ts_recv = self.ports.clock.now()
