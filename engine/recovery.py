"""Starting from the journal: rebuild, reconcile with each venue, report; then trade.

Crash-only: a clean start and a start after a SIGKILL take this same path. ``recover`` runs
before any venue connects and before any strategy starts:

1. **Rebuild** from the journal's records, in file order: every order that passed the risk gate
   goes back into the tracker and its working lots back into the risk kernels' reservations;
   every order event (acknowledgements, rejects, cancels, fills, late commissions) is applied
   through the engine's own event path (``Engine.apply_event``) with the strategies and the
   journal muted, so the OMS, the risk kernels and the portfolio end exactly where they were.
   Cancels and modifies requested but not yet answered leave their orders PENDING_*; the last
   trading-state change is restored (an engine halted by its kill switch comes back HALTED).
   Client order ids continue above every journaled one.
2. **Hand each venue what it needs to reconcile** (``Venue.restore``, IB: orders and fills):
   the venue's first reconciliation reports what happened while the engine was down (fills
   not journaled, cancels, rejects) as ordinary order events, which are journaled and applied
   before anything else; an order the journal says was sent but the venue never received
   (the process died between the journal write and the socket write) is reported rejected
   and never sent again. Venues that keep no state outside the process (the in-process
   simulated venues, the shadow venues) lost their orders with it: those are reported
   cancelled with that reason.
3. **Report** (``RecoveryReport``) every difference: the journal's torn tail, orders lost
   with a venue, and after the venues are ready (``check_positions``), each position that
   differs from the broker's own.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from engine.journal import (
    CancelRecord,
    EventRecord,
    JournalContents,
    ModifyRecord,
    OrderRecord,
    StateRecord,
)
from engine.messages import EventKind, OrderEvent
from engine.orders import Order
from engine.venue import JournaledFill

if TYPE_CHECKING:
    from engine.runtime import Engine

log = logging.getLogger(__name__)

_FILL = int(EventKind.FILL)
_COMMISSION = int(EventKind.COMMISSION)
_MODIFIED = int(EventKind.MODIFIED)
_CANCEL_REJECTED = int(EventKind.CANCEL_REJECTED)


@dataclass
class RecoveryReport:
    """What a start from the journal found and did."""

    journal: str
    records: int = 0
    torn_bytes: int = 0
    corrupt_at: int | None = None
    orders: int = 0
    open_orders: int = 0
    events: int = 0
    fills: int = 0
    next_client_order_id: int = 0
    trading_state: str = ""
    restored: dict[str, int] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        lines = [
            f"recovery from {self.journal}: {self.records} records, {self.orders} orders "
            f"({self.open_orders} open), {self.events} events, {self.fills} fills; next client "
            f"order id {self.next_client_order_id}"
        ]
        if self.restored:
            given = ", ".join(f"{v}: {n}" for v, n in sorted(self.restored.items()))
            lines.append(f"  orders handed to venues to reconcile: {given}")
        if self.trading_state:
            lines.append(f"  trading state restored: {self.trading_state}")
        if self.torn_bytes:
            lines.append(f"  torn last record skipped: {self.torn_bytes} bytes")
        if self.lost:
            lines.append(f"  orders lost with an in-process venue (reported cancelled): "
                         f"{len(self.lost)}")  # fmt: skip
        lines += [f"  DIFFERENCE: {d}" for d in self.differences]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def recover(engine: Engine, contents: JournalContents, path: str) -> RecoveryReport:
    """Rebuild ``engine`` from ``contents`` and hand its venues their part (see the module
    docstring). Call before the venues start and before ``engine.start``."""
    report = RecoveryReport(path, len(contents.records), contents.torn, contents.corrupt_at)
    report.warnings += contents.warnings
    tracker = engine.tracker
    risk = engine.risk
    ev = OrderEvent()
    orders: dict[int, Order] = {}
    modifies: dict[int, tuple[int, int]] = {}
    fills: list[tuple[str, int, int, float, int]] = []
    late_fees: dict[str, float] = {}  # COMMISSION events, by exec id
    max_coid = 0
    last_state: StateRecord | None = None
    for rec in contents.records:
        if isinstance(rec, OrderRecord):
            order = rec.to_order()
            coid = order.client_order_id
            max_coid = max(max_coid, coid)
            if coid in orders:
                report.warnings.append(f"order {coid} journaled twice: the second is ignored")
                continue
            orders[coid] = order
            tracker.add(order)
            # Passed the gate and was sent (0 lots: refused there, its REJECTED follows).
            if order.qty_lots > 0:
                tracker.submitted(order)
                risk.restore_working(order)
        elif isinstance(rec, EventRecord):
            rec.to_event(ev)
            report.events += 1
            kind = ev.kind
            if kind == _FILL:
                report.fills += 1
                fills.append(
                    (ev.exec_id, ev.client_order_id, ev.fill_lots, ev.commission,
                     ev.fill_price_ticks)
                )  # fmt: skip
            elif kind == _COMMISSION:
                late_fees[ev.exec_id] = late_fees.get(ev.exec_id, 0.0) + ev.commission
            elif kind in (_MODIFIED, _CANCEL_REJECTED):
                modifies.pop(ev.client_order_id, None)
            engine.apply_event(ev, deliver=False)
        elif isinstance(rec, CancelRecord):
            order = tracker.get(rec.client_order_id)
            if order is not None:
                tracker.request_cancel(order)
        elif isinstance(rec, ModifyRecord):
            order = tracker.get(rec.client_order_id)
            if order is not None:
                modifies[rec.client_order_id] = (rec.qty_lots, rec.price_ticks)
                tracker.request_modify(order)
        elif isinstance(rec, StateRecord):
            last_state = rec
    tracker.ensure_ids_above(max_coid)
    report.next_client_order_id = max_coid + 1
    report.orders = len(orders)
    report.open_orders = len(tracker.open)
    if last_state is not None:
        report.trading_state = engine.restore_trading_state(last_state.state, last_state.reason)

    # Each venue's part, with the commissions that came after their fill.
    venue_fills = [
        JournaledFill(x, c, n, ticks, fee, late_fees.get(x, 0.0), fee != 0 or x in late_fees)
        for x, c, n, fee, ticks in fills
    ]
    by_venue: dict[str, list[Order]] = {}
    for order in orders.values():
        by_venue.setdefault(engine.venue_of(order), []).append(order)
    for name, venue_orders in by_venue.items():
        venue = engine.venue_named(name)
        restore = getattr(venue, "restore", None)
        if restore is not None:
            report.restored[name] = restore(venue_orders, venue_fills, modifies)
            continue
        for order in venue_orders:
            if order.is_open:
                report.lost.append(order.client_order_id)
                engine.report_lost(order, f"venue {name} kept no state across the restart")
    for w in report.warnings:
        log.warning("journal %s: %s", path, w)
    if report.lost:
        report.differences.append(
            f"{len(report.lost)} open orders were at venues that kept no state across the "
            "restart (in-process simulated or shadow): reported cancelled"
        )
    log.info("%s", report.format())
    return report


def check_positions(engine: Engine, report: RecoveryReport | None) -> list[str]:
    """After the venues reconciled: each position that differs from the broker's own view
    (``Portfolio.broker``), as text; added to ``report``."""
    diffs: list[str] = []
    registry = engine.registry
    for venue, account in engine.portfolio.broker.items():
        if not account.updated_ns:
            continue  # the venue never reported positions (not connected)
        for inst in registry:
            if inst.venue != venue:
                continue
            ours = engine.portfolio.net_lots(inst.id) * inst.lot_size
            theirs = account.positions.get(inst.id, (0.0, 0.0))[0]
            if abs(ours - float(theirs)) > 1e-9 * max(1.0, abs(ours)):
                diffs.append(
                    f"{inst.key}: the journal and fills give {ours:g}, {venue} reports "
                    f"{float(theirs):g}"
                )
        for key, (qty, _) in account.other_positions.items():
            if qty:
                diffs.append(f"{venue} holds {qty:g} of {key}, which no instrument lists")
    for d in diffs:
        log.error("position difference after recovery: %s", d)
    if report is not None:
        report.differences += diffs
    return diffs


__all__ = ["RecoveryReport", "check_positions", "recover"]
