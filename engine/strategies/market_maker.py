"""A two-sided market maker: one bid and one ask around the mid, skewed against inventory.

The fair price is the mid minus ``skew_ticks`` per ``max_inventory`` of position; quotes sit
``half_spread_ticks`` either side of it. A quote is moved (modify) when its ideal price is
``requote_ticks`` or more away, and the side that would grow the position past
``max_inventory`` is not quoted. A book without a mid (a side empty: the venue's data stopped,
or the market is one-sided) pulls both quotes until a mid is back.

When the risk gate refuses an order for a rate limit (the strategy's or the account's order
rate, or the venue's pacing), the maker stops moving its working quotes for ``rate_backoff_ms``
rather than spend every book update on modifies the gate would refuse. It still places a quote
on a side that has none and cancels a side that may no longer be quoted; after the pause it
works its quotes out again from the book. A refused modify leaves the quote at its old price,
so it is moved again on the next book update.

When the engine's trading state leaves ACTIVE the maker pulls its quotes (cancels them: they
could no longer be moved, and stale quotes get picked off). While HALTED it quotes nothing;
while REDUCING it quotes only the side that reduces its position, at most the position's
size; back in ACTIVE it quotes both sides again. Positions and limits are compared in lots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.book import BookView
from engine.instruments import Instrument
from engine.messages import EventKind, OrderEvent
from engine.risk_gate import TradingState, Verdict
from engine.strategy import ParamError, Strategy

if TYPE_CHECKING:
    from engine.breakers import TradingStateChange

_GONE = (EventKind.REJECTED, EventKind.CANCELLED, EventKind.EXPIRED)  # no longer working
_REFUSED = (EventKind.REJECTED, EventKind.CANCEL_REJECTED)
_RATE_LIMITS = frozenset(
    int(v) for v in (Verdict.STRATEGY_RATE, Verdict.ACCOUNT_RATE, Verdict.VENUE_PACING)
)
_UNKNOWN = -(2**62)  # a quote's price when a modify of it was refused: move it next time


@dataclass(frozen=True, slots=True)
class MarketMakerParams:
    size: float = 10.0
    half_spread_ticks: int = 1
    skew_ticks: float = 2.0
    max_inventory: float = 200.0
    requote_ticks: int = 1
    rate_backoff_ms: float = 1.0

    def validate(self) -> None:
        if not (math.isfinite(self.size) and self.size > 0):
            raise ParamError("size", f"must be a quantity > 0, got {self.size}")
        if not (math.isfinite(self.max_inventory) and self.max_inventory >= self.size):
            raise ParamError(
                "max_inventory",
                f"must be at least size ({self.size:g}): the skew divides by it, and below size "
                f"no quote is allowed; got {self.max_inventory}",
            )
        if self.half_spread_ticks < 1:
            raise ParamError(
                "half_spread_ticks",
                f"must be >= 1 (0 can put bid and ask at one price), got {self.half_spread_ticks}",
            )
        if not (math.isfinite(self.skew_ticks) and self.skew_ticks >= 0):
            raise ParamError("skew_ticks", f"must be a number of ticks >= 0, got {self.skew_ticks}")
        if self.requote_ticks < 1:
            raise ParamError(
                "requote_ticks",
                f"must be >= 1 (0 moves the quotes on every book), got {self.requote_ticks}",
            )
        if not (math.isfinite(self.rate_backoff_ms) and self.rate_backoff_ms >= 0):
            raise ParamError("rate_backoff_ms", f"must be >= 0, got {self.rate_backoff_ms}")


class MarketMaker(Strategy):
    Params = MarketMakerParams

    def on_start(self) -> None:
        # instrument id -> [bid client order id or 0, ask client order id or 0]
        self._quotes: dict[int, list[int]] = {i.id: [0, 0] for i in self.instruments}
        self._prices: dict[int, list[int]] = {i.id: [0, 0] for i in self.instruments}
        # instrument id -> [mid, position] the quotes were last worked out from: the top of
        # book also changes when only its sizes do, and the same inputs give the same quotes.
        self._inputs: dict[int, list] = {i.id: [None, None] for i in self.instruments}
        self._backoff_ns = round(self.params.rate_backoff_ms * 1e6)
        self._paused_until = 0  # engine time before which working quotes are not moved
        self.rate_refusals = 0

    def on_book(self, book: BookView) -> None:
        mid = book.mid_ticks
        if mid is None:
            self._pull(book.instrument.id)
            return
        inst = book.instrument
        pos = self.position(inst)
        inputs = self._inputs[inst.id]
        if inputs[0] == mid and inputs[1] == pos:
            return
        inputs[0] = mid
        inputs[1] = pos
        p: MarketMakerParams = self.params
        state = self.trading_state
        if state is TradingState.HALTED:
            return  # the quotes were pulled when the halt began
        # Limits in lots: 3 x 0.1 is 0.30000000000000004, over a limit of 0.3 as a float.
        pos_lots = inst.to_lots(pos)
        size_lots = inst.to_lots(p.size)
        if state is TradingState.REDUCING:
            size_lots = min(size_lots, abs(pos_lots))
            bid_ok = pos_lots < 0
            ask_ok = pos_lots > 0
        else:
            most = inst.to_lots(p.max_inventory)
            bid_ok = pos_lots + size_lots <= most
            ask_ok = pos_lots - size_lots >= -most
        size = inst.from_lots(size_lots)
        fair = mid - p.skew_ticks * pos / p.max_inventory
        bid_ticks = math.floor(fair - p.half_spread_ticks)
        ask_ticks = math.ceil(fair + p.half_spread_ticks)
        quotes = self._quotes[inst.id]
        prices = self._prices[inst.id]
        move = True
        if self._paused_until:
            if self.now() < self._paused_until:
                move = False
                inputs[0] = None  # work the quotes out again after the pause
            else:
                self._paused_until = 0
        self._quote(inst, 0, bid_ticks, size, bid_ok, quotes, prices, move)
        self._quote(inst, 1, ask_ticks, size, ask_ok, quotes, prices, move)

    def _pull(self, instrument_id: int) -> None:
        """No mid (a side of the book is empty: the venue's data stopped, IB ended the stream,
        or the market is one-sided): quotes can no longer be priced, so cancel them; they come
        back on the first book with a mid."""
        quotes = self._quotes[instrument_id]
        for side in (0, 1):
            if quotes[side]:
                self.cancel(quotes[side])
                quotes[side] = 0
        self._inputs[instrument_id][0] = None

    def on_trading_state(self, change: TradingStateChange) -> None:
        if change.new is not TradingState.ACTIVE:
            # A quote left working could not be moved (HALTED) or may grow the position
            # (REDUCING): pull both; REDUCING quotes the reducing side again at a size it allows.
            for instrument_id in self._quotes:
                self._pull(instrument_id)
        for inputs in self._inputs.values():
            inputs[0] = None  # work the quotes out again on the next book

    def _quote(
        self, inst: Instrument, side: int, ticks: int, size: float, allowed: bool, quotes,
        prices, move: bool,
    ) -> None:  # fmt: skip
        coid = quotes[side]
        if not allowed:
            if coid:
                self.cancel(coid)
                quotes[side] = 0
            return
        if not coid:
            send = self.buy if side == 0 else self.sell
            quotes[side] = send(inst, size, inst.from_ticks(ticks))
            prices[side] = ticks
        elif move and abs(ticks - prices[side]) >= self.params.requote_ticks:
            self.modify(coid, price=inst.from_ticks(ticks))
            prices[side] = ticks

    def on_fill(self, fill: OrderEvent) -> None:
        if fill.leaves_lots == 0:
            self._forget(fill)

    def on_order(self, event: OrderEvent) -> None:
        kind = event.kind
        if kind in _REFUSED:
            self._refused(event)
        if kind in _GONE:
            self._forget(event)

    def _refused(self, event: OrderEvent) -> None:
        """A refused modify left the quote where it was: move it on the next book update."""
        if event.reason_code in _RATE_LIMITS:
            self.rate_refusals += 1
            self._paused_until = self.now() + self._backoff_ns
        quotes = self._quotes.get(event.instrument_id)
        if quotes is None:
            return
        for side in (0, 1):
            if quotes[side] == event.client_order_id:
                self._prices[event.instrument_id][side] = _UNKNOWN
                self._inputs[event.instrument_id][0] = None

    def _forget(self, event: OrderEvent) -> None:
        quotes = self._quotes.get(event.instrument_id)
        if quotes is None:
            return
        for side in (0, 1):
            if quotes[side] == event.client_order_id:
                quotes[side] = 0
                self._inputs[event.instrument_id][0] = None  # quote again on the next book
