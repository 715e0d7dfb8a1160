"""A two-sided market maker: one bid and one ask around the mid, skewed against inventory.

The fair price is the mid minus ``skew_ticks`` per ``max_inventory`` of position; quotes sit
``half_spread_ticks`` either side of it. A quote is moved (modify) when its ideal price is
``requote_ticks`` or more away, and the side that would grow the position past
``max_inventory`` is not quoted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.book import BookView
from engine.instruments import Instrument
from engine.messages import EventKind, OrderEvent
from engine.strategy import Strategy

_GONE = (EventKind.REJECTED, EventKind.CANCELLED, EventKind.EXPIRED)  # no longer working


@dataclass(frozen=True, slots=True)
class MarketMakerParams:
    size: float = 10.0
    half_spread_ticks: int = 1
    skew_ticks: float = 2.0
    max_inventory: float = 200.0
    requote_ticks: int = 1


class MarketMaker(Strategy):
    Params = MarketMakerParams

    def on_start(self) -> None:
        # instrument id -> [bid client order id or 0, ask client order id or 0]
        self._quotes: dict[int, list[int]] = {i.id: [0, 0] for i in self.instruments}
        self._prices: dict[int, list[int]] = {i.id: [0, 0] for i in self.instruments}
        # instrument id -> [mid, position] the quotes were last worked out from: the top of
        # book also changes when only its sizes do, and the same inputs give the same quotes.
        self._inputs: dict[int, list] = {i.id: [None, None] for i in self.instruments}

    def on_book(self, book: BookView) -> None:
        mid = book.mid_ticks
        if mid is None:
            return
        inst = book.instrument
        pos = self.position(inst)
        inputs = self._inputs[inst.id]
        if inputs[0] == mid and inputs[1] == pos:
            return
        inputs[0] = mid
        inputs[1] = pos
        p: MarketMakerParams = self.params
        fair = mid - p.skew_ticks * pos / p.max_inventory
        bid_ticks = math.floor(fair - p.half_spread_ticks)
        ask_ticks = math.ceil(fair + p.half_spread_ticks)
        quotes = self._quotes[inst.id]
        prices = self._prices[inst.id]
        self._quote(inst, 0, bid_ticks, pos + p.size <= p.max_inventory, quotes, prices)
        self._quote(inst, 1, ask_ticks, pos - p.size >= -p.max_inventory, quotes, prices)

    def _quote(
        self, inst: Instrument, side: int, ticks: int, allowed: bool, quotes, prices
    ) -> None:
        coid = quotes[side]
        if not allowed:
            if coid:
                self.cancel(coid)
                quotes[side] = 0
            return
        if not coid:
            send = self.buy if side == 0 else self.sell
            quotes[side] = send(inst, self.params.size, inst.from_ticks(ticks))
            prices[side] = ticks
        elif abs(ticks - prices[side]) >= self.params.requote_ticks:
            self.modify(coid, price=inst.from_ticks(ticks))
            prices[side] = ticks

    def on_fill(self, fill: OrderEvent) -> None:
        if fill.leaves_lots == 0:
            self._forget(fill)

    def on_order(self, event: OrderEvent) -> None:
        if event.kind in _GONE:
            self._forget(event)

    def _forget(self, event: OrderEvent) -> None:
        quotes = self._quotes.get(event.instrument_id)
        if quotes is None:
            return
        for side in (0, 1):
            if quotes[side] == event.client_order_id:
                quotes[side] = 0
                self._inputs[event.instrument_id][0] = None  # quote again on the next book
