"""Starting from the journal: rebuild, reconcile with each venue, report; then trade.

Crash-only: a clean start and a start after a SIGKILL take this same path. ``recover`` runs
before any venue connects and before any strategy starts:

1. **Rebuild** from the journal's records, in file order: every order that passed the risk gate
   goes back into the tracker and its working lots back into the risk kernels' reservations;
   every order event (acknowledgements, rejects, cancels, fills, late commissions) is applied
   through the engine's own event path (``Engine.apply_event``) with the strategies and the
   journal muted, so the OMS, the risk kernels and the portfolio end exactly where they were.
   Cancels and modifies requested but not yet answered leave their orders PENDING_*; the last
   trading-state change is restored (an engine halted by its kill switch comes back HALTED;
   one halted by the daily loss breaker comes back halted by it, for the day roll to lift).
   Client order ids continue above every journaled one. The trading day's boundaries
   (``Engine.trading_day``) are replayed too, from the records' timestamps: at each one the
   journal crosses, and at the last one before now, the day rolls as it did (or would have)
   live, so fills of earlier days build positions and total P&L but not today's figures (the
   daily loss limit and breaker), and a daily loss halt of an earlier day is not restored.
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
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.breakers import DAILY_LOSS
from engine.journal import (
    CancelRecord,
    EventRecord,
    JournalContents,
    ModifyRecord,
    OrderRecord,
    Record,
    StateRecord,
)
from engine.messages import EventKind, OrderEvent
from engine.orders import Order, OrderExtras
from engine.runtime import PDT_WINDOW_DAYS
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
    day_started_ns: int = 0  # the trading day recovery ends in (0: the journal had no times)
    day_rolls: int = 0  # day boundaries replayed
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
        if self.day_rolls:
            start = datetime.fromtimestamp(self.day_started_ns / 1e9, UTC)
            lines.append(
                f"  trading day since {start:%Y-%m-%d %H:%M} UTC: {self.day_rolls} day rolls "
                "replayed; earlier fills count in positions and total P&L, not in today's"
            )
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
    modifies: dict[int, tuple[int, int, OrderExtras | None]] = {}
    fills: list[tuple[str, int, int, float, int]] = []
    late_fees: dict[str, float] = {}  # COMMISSION events, by exec id
    max_coid = 0
    last_state: StateRecord | None = None
    day = _DayReplay(engine, report)
    # The breakers watch trading, not its replay: a replayed loss must not trip one (a trip
    # cancels at venues that have not reconciled yet, and an earlier day's loss is not
    # today's). The journal's last trading state says whether one had tripped.
    breakers = engine.breakers
    watching = breakers.config
    breakers.config = replace(watching, enabled=False)
    try:
        for rec in contents.records:
            if day.crosses(_record_ts(rec)) and _daily_loss_halt(last_state):
                last_state = None  # the day roll lifts a daily loss halt: it is not restored
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
                    # A new stop or trail is the order's once its MODIFIED is replayed (or the
                    # venue's reconciliation confirms it), as live.
                    modifies[rec.client_order_id] = (rec.qty_lots, rec.price_ticks, rec.extras)
                    risk.restore_modify(order, rec.qty_lots, rec.price_ticks)
                    tracker.request_modify(order, rec.qty_lots, rec.extras)
            elif isinstance(rec, StateRecord):
                last_state = rec
    finally:
        breakers.config = watching
    if day.crosses(engine.clock.now()) and _daily_loss_halt(last_state):
        last_state = None
    tracker.ensure_ids_above(max_coid)
    report.next_client_order_id = max_coid + 1
    report.orders = len(orders)
    report.open_orders = len(tracker.open)
    if _daily_loss_halt(last_state):
        # Today's daily loss halt: the breaker's own, so the next day roll lifts it as it would
        # have without the restart (any other restored state waits for the operator).
        engine.set_trading_state(
            last_state.state, f"restored from the journal ({last_state.reason})", DAILY_LOSS
        )
        engine.breakers.loss_tripped = True
        report.trading_state = engine.trading_state.value
    elif last_state is not None:
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


def _record_ts(rec: Record) -> int:
    """The engine-clock time a record was written at (0: it carries none)."""
    if isinstance(rec, EventRecord):
        return rec.ts_recv
    return getattr(rec, "ts_ns", 0)


def _daily_loss_halt(state: StateRecord | None) -> bool:
    return (
        state is not None and state.state == "halted" and state.reason.startswith(f"{DAILY_LOSS}:")
    )


class _DayReplay:
    """The trading day's boundaries over the journal's times, rolled as the live engine rolls
    them (``Engine.replay_roll_day``)."""

    def __init__(self, engine: Engine, report: RecoveryReport) -> None:
        self._engine = engine
        self._day = engine.trading_day
        self._report = report
        self._next = 0  # the next boundary; 0 until a record gives a time

    def crosses(self, ts_ns: int) -> bool:
        """Roll the day at every boundary at or before ``ts_ns`` not rolled yet; True if any."""
        if ts_ns <= 0:
            return False
        if not self._next:
            self._next = self._day.next_start(ts_ns)
            return False
        if ts_ns < self._next:
            return False
        # Each roll moves a day of day trades down the pattern-day-trader window; past the
        # window's length further empty days change nothing but the day's start.
        for _ in range(PDT_WINDOW_DAYS):
            self._roll(self._next)
            self._next = self._day.next_start(self._next)
            if ts_ns < self._next:
                return True
        self._roll(self._day.start_of(ts_ns))
        self._next = self._day.next_start(ts_ns)
        return True

    def _roll(self, at_ns: int) -> None:
        self._engine.replay_roll_day(at_ns)
        self._report.day_rolls += 1
        self._report.day_started_ns = at_ns


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
