"""What the engine expects of a venue adapter, and what it gives one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from engine.book import BookStore
from engine.clock import Clock
from engine.instruments import InstrumentRegistry
from engine.messages import OrderEvent, OrderIntent
from engine.orders import Order, OrderExtras
from engine.portfolio import Portfolio
from engine.ring import ArrayRing, ObjectRing


def _at_once(fn: Callable[[], object]) -> None:
    fn()


@dataclass(slots=True)
class VenuePorts:
    """The engine side of a venue: where it writes order events and how it wakes the pump.

    ``after_dispatch(fn)`` runs ``fn`` once the strategies have reacted to the market data being
    dispatched (at once if none is): a simulated venue called in ``on_book`` matches there, so
    its matching never delays the orders the strategies send in reaction to the same batch.
    """

    events: ObjectRing[OrderEvent]
    books: BookStore
    registry: InstrumentRegistry
    clock: Clock
    wake: Callable[[], None]
    after_dispatch: Callable[[Callable[[], object]], None] = _at_once
    #: Market-data rings, for venues that are also a feed (IB): write rows, then ``wake()``.
    deltas: ArrayRing | None = None
    quotes: ArrayRing | None = None
    trades: ArrayRing | None = None
    #: Where a broker's own view (positions, account values) is kept beside the engine's.
    portfolio: Portfolio | None = None


class JournaledFill(NamedTuple):
    """A fill as the journal has it, handed to a venue's ``restore`` after a restart: enough
    to tell a repeat of it from news, and to reverse it should the venue correct it."""

    exec_id: str
    client_order_id: int
    lots: int
    price_ticks: int
    commission: float  # carried on the fill itself
    later_commission: float  # carried by COMMISSION events that followed it
    commission_known: bool  # either way


class Venue(Protocol):
    """An order venue. ``submit``/``cancel``/``modify`` copy what they keep: slots are reused.

    Answers (acknowledgements, fills, cancels, rejects) go into ``ports.events``; a venue that
    answers from a timer or a socket calls ``ports.wake()`` afterwards.
    """

    name: str

    def bind(self, ports: VenuePorts) -> None: ...

    def submit(self, intent: OrderIntent, order: Order | None) -> None: ...

    def cancel(self, order: Order) -> None: ...

    def modify(
        self, order: Order, qty_lots: int, price_ticks: int, extras: OrderExtras | None = None
    ) -> None:
        """Change the order's quantity and limit price, and with ``extras`` (the router passes
        them only when they change) its stop or trail; answer MODIFIED once it is applied."""

    def cancel_all(self) -> None:
        """Cancel every open order at this venue, the engine's and any other; each cancel is
        answered like any other. Only the kill switch calls it, and only with ``[risk]
        kill_switch_global_cancel`` on (the engine otherwise cancels its own orders one by
        one)."""

    def on_book(self, instrument_ids: list[int]) -> None:
        """The top of book of these instruments changed; called before the strategies hear of
        it. Whatever the strategies then send was sent in reaction to this book."""

    def on_trades(self, trades: np.ndarray) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
