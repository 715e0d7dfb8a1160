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

# ``reason_code`` of refusals that are not the risk gate's (REJECTED, CANCEL_REJECTED): a venue's
# own and the router's. They carry 0, one of these (negative: each value one reason, whichever
# venue gives it) or IB's error code (100 and up), never a risk-gate verdict code (1 to 99):
# the OMS and the gate take a CANCEL_REJECTED carrying one for the gate's own refusal
# (``engine.orders.refused_by_gate``).

#: Refused by the venue itself, not the broker: disconnected, in IB's 1100, reconciling, or in
#: the guard window before a scheduled restart.
HELD_BACK = -1
#: In flight at a disconnect, and the broker did not know it after the reconnect.
UNKNOWN_AFTER_RECONNECT = -2
#: The broker's own client library refused to encode it (IB: ``IbEncodeError``).
NOT_ENCODABLE = -3
#: A child whose parent this venue does not know, or that ended without filling.
PARENT_UNKNOWN = -4
#: For an instrument the broker has not confirmed (IB: qualification failed, or the config
#: disagrees with IB's contract on tick size, multiplier or currency).
NOT_QUALIFIED = -5
#: A type, time in force or algo the simulated venue does not simulate (it may be fine at a
#: real venue; this one cannot fill it like one).
NOT_SIMULATED = -6
#: Open at a venue that kept no state across a restart (in-process simulated or shadow):
#: reported cancelled by recovery (``Engine.report_lost``).
LOST_WITH_PROCESS = -7
#: A new order (REJECTED) or modify (CANCEL_REJECTED) the router did not send because the
#: journal could not write it (not a verdict code: the OMS takes the modify's refusal as the
#: venue's, so the order goes back to where it was).
NOT_JOURNALED = -8


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
    #: A broker venue reports the account's net liquidation value here (value, currency,
    #: venue name): the risk checks' equity when ``[risk] equity`` is not set
    #: (``Engine.broker_equity``).
    equity: Callable[[float, str, str], None] | None = None


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
