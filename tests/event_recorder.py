"""A strategy that records every order event as an immutable copy (the engine reuses slots).

Shared by the venue and risk-gate tests.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from engine.book import BookView
from engine.messages import EventKind, OrderEvent
from engine.strategy import Strategy


@dataclass(frozen=True)
class Ev:
    """A copy of one OrderEvent."""

    kind: EventKind
    client_order_id: int
    venue_order_id: int
    instrument_id: int
    side: int
    fill_lots: int
    fill_price_ticks: int
    cum_lots: int
    leaves_lots: int
    price_ticks: int
    qty_lots: int
    commission: float
    exec_id: str
    reason_code: int
    reason: str
    ts_recv: int


_FIELDS = [f.name for f in fields(Ev)]


def snap(ev: OrderEvent) -> Ev:
    values = {name: getattr(ev, name) for name in _FIELDS}
    values["kind"] = EventKind(ev.kind)
    values["side"] = int(ev.side)
    return Ev(**values)


class Recorder(Strategy):
    """Records every order event and fill in arrival order; ``on_book_action`` (a callable
    taking the strategy) runs once inside the next ``on_book``."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.events: list[Ev] = []
        self.on_book_action = None

    def on_order(self, event: OrderEvent) -> None:
        assert event.kind != EventKind.FILL
        self.events.append(snap(event))

    def on_fill(self, fill: OrderEvent) -> None:
        assert fill.kind == EventKind.FILL
        self.events.append(snap(fill))

    def on_book(self, book: BookView) -> None:
        action, self.on_book_action = self.on_book_action, None
        if action is not None:
            action(self)

    def of(self, coid: int) -> list[Ev]:
        return [e for e in self.events if e.client_order_id == coid]

    def kinds(self, coid: int) -> list[EventKind]:
        return [e.kind for e in self.of(coid)]

    def fills(self, coid: int | None = None) -> list[Ev]:
        return [
            e
            for e in self.events
            if e.kind == EventKind.FILL and (coid is None or e.client_order_id == coid)
        ]
