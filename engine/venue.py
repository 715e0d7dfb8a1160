"""What the engine expects of a venue adapter, and what it gives one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.book import BookStore
from engine.clock import Clock
from engine.instruments import InstrumentRegistry
from engine.messages import OrderEvent, OrderIntent
from engine.orders import Order
from engine.ring import ObjectRing


@dataclass(slots=True)
class VenuePorts:
    """The engine side of a venue: where it writes order events and how it wakes the pump."""

    events: ObjectRing[OrderEvent]
    books: BookStore
    registry: InstrumentRegistry
    clock: Clock
    wake: Callable[[], None]


class Venue(Protocol):
    """An order venue. ``submit``/``cancel``/``modify`` copy what they keep: slots are reused.

    Answers (acknowledgements, fills, cancels, rejects) go into ``ports.events``; a venue that
    answers from a timer or a socket calls ``ports.wake()`` afterwards.
    """

    name: str

    def bind(self, ports: VenuePorts) -> None: ...

    def submit(self, intent: OrderIntent, order: Order | None) -> None: ...

    def cancel(self, order: Order) -> None: ...

    def modify(self, order: Order, qty_lots: int, price_ticks: int) -> None: ...

    def on_book(self, instrument_ids: list[int]) -> None: ...

    def on_trades(self, trades: np.ndarray) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
