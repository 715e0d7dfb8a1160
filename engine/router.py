"""The router: sends intents that passed the risk gate to the venue that lists the instrument,
or to that venue's shadow, by the venue's rollout mode.

Modes, per venue and capped by a global one (``[router]``, SHADOW < CANARY < LIVE):

* LIVE: every order goes to the real venue.
* SHADOW: every order goes to a simulated venue (``adapters.sim.venue.SimVenue``, named
  ``"<venue>:shadow"``) that fills it against the same live books; nothing is sent. The order
  passed the risk gate as usual, and its events reach the OMS and the strategy through the same
  order-event ring (they carry its client order id).
* CANARY: ``canary_pct`` percent of orders go live, the rest is shadowed. The choice is a fixed
  64-bit mix of the client order id (splitmix64's finaliser), so the same ids make the same
  choice in every run and after a restart: ``live = mix64(coid) % 10_000 < canary_pct * 100``.

An order remembers where it went (``Order.shadow``): its cancels and modifies follow it. Shadow
fills go to ``engine.shadow_portfolio``, live ones to ``engine.portfolio``. The risk kernels see
both: the gate's limits apply to the strategy's as-if-live book (what it would hold had every
order gone live), so a strategy that would break a limit live is stopped in SHADOW too, and
raising ``canary_pct`` never lets through what the limits were sized against.

For venues not LIVE the router keeps, per order, the arrival mid (the book's mid when it was
routed) and the routed / accepted / first-fill times, and per fill the slippage against that
mid, in preallocated lists (a window of ``stats_window`` orders and fills). ``comparison()``
turns them into the shadow-vs-live figures an operator reads before raising ``canary_pct``.

Every routed order is stamped (``ts_routed`` here, ``ts_sent`` by the venue just before its
write) and the order path's stage latencies are recorded from those stamps, once the strategies
are done with the market data being dispatched: the orders still to come do not wait for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.book import BookStore
from engine.clock import Clock
from engine.config import RouterConfig, SimVenueConfig
from engine.instruments import InstrumentRegistry
from engine.journal import Journal
from engine.messages import NO_PRICE, EventKind, OrderEvent, OrderIntent
from engine.metrics import LatencyRecorder
from engine.orders import Order, OrderExtras
from engine.venue import NOT_JOURNALED, Venue, VenuePorts

if TYPE_CHECKING:
    from engine.portfolio import Portfolio


class VenueMode(IntEnum):
    """How much of a venue's flow is real; ordered, so a cap is ``min``."""

    SHADOW = 0
    CANARY = 1
    LIVE = 2


# Plain ints on the order path: an enum member read costs ~80 ns in Python 3.11.
_SHADOW = int(VenueMode.SHADOW)
_LIVE = int(VenueMode.LIVE)
_FILL = int(EventKind.FILL)
_ACCEPTED = int(EventKind.ACCEPTED)
_CANCEL_REJECTED = EventKind.CANCEL_REJECTED
_REJECTED = EventKind.REJECTED
_NAN = math.nan
_M64 = (1 << 64) - 1
BOOKS = ("live", "shadow")


def mix64(x: int) -> int:
    """splitmix64's finaliser: a fixed bijection of 64-bit integers that spreads sequential ids
    evenly (the same on every machine and run, unlike ``hash``)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def canary_cut(canary_pct: float) -> int:
    """``canary_pct`` in units of 0.01 %: an order goes live when ``mix64(coid) % 10_000`` is
    below it."""
    return round(canary_pct * 100)


def goes_live(client_order_id: int, canary_pct: float) -> bool:
    """Whether a CANARY venue sends this order live (reproducible from the id alone)."""
    return mix64(client_order_id) % 10_000 < canary_cut(canary_pct)


def _at_once(fn: Callable[[], object]) -> None:
    fn()


def _make_shadow(name: str, config: RouterConfig) -> Venue:
    # Imported here, not at module import: the engine names no concrete adapter unless a venue
    # is actually shadowed (the simulated venue is the one adapter SHADOW needs).
    from adapters.sim.venue import SimVenue

    sc = config.shadow
    return SimVenue(
        f"{name}:shadow",
        SimVenueConfig(
            ack_latency_us=sc.ack_latency_us, fill_latency_us=sc.fill_latency_us,
            commission_per_lot=sc.commission_per_lot, depth_levels=sc.depth_levels,
        ),
    )  # fmt: skip


class ModeStats:
    """Per-order and per-fill records for the shadow-vs-live comparison, in preallocated lists
    used as rings (``window`` orders, ``window`` fills). ``group`` is ``venue index * 2 +
    shadow``."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.orders = 0  # recorded so far (the ring holds the last ``window``)
        self.fills = 0
        self._slot: dict[int, int] = {}  # client order id -> order slot
        self.coid = [0] * window
        self.group = [0] * window
        self.side = [0] * window
        self.qty = [0] * window
        self.mid = [_NAN] * window
        self.routed = [0] * window
        self.acked = [0] * window
        self.first_fill = [0] * window
        self.filled = [0] * window
        self.f_group = [0] * window
        self.f_bp = [_NAN] * window
        self.f_lots = [0] * window

    def order(self, coid: int, group: int, side: int, qty: int, mid: float, now: int) -> None:
        k = self.orders % self.window
        self.orders += 1
        old = self.coid[k]
        if old and self._slot.get(old) == k:
            del self._slot[old]
        self.coid[k] = coid
        self._slot[coid] = k
        self.group[k] = group
        self.side[k] = side
        self.qty[k] = qty
        self.mid[k] = mid
        self.routed[k] = now
        self.acked[k] = 0
        self.first_fill[k] = 0
        self.filled[k] = 0

    def on_event(self, ev: OrderEvent) -> None:
        k = self._slot.get(ev.client_order_id)
        if k is None:
            return
        kind = ev.kind
        if kind == _FILL:
            if not self.first_fill[k]:
                self.first_fill[k] = ev.ts_recv
            lots = ev.fill_lots
            self.filled[k] += lots
            mid = self.mid[k]
            j = self.fills % self.window
            self.fills += 1
            self.f_group[j] = self.group[k]
            # Positive = worse for us: bought above the arrival mid or sold below it.
            self.f_bp[j] = self.side[k] * (ev.fill_price_ticks - mid) / mid * 1e4 if mid else _NAN
            self.f_lots[j] = lots
        elif kind == _ACCEPTED and not self.acked[k]:
            self.acked[k] = ev.ts_recv

    def summary(self, group: int) -> dict[str, Any]:
        """Orders, fill rates, slippage (bp) and latencies (µs) of one venue's book."""
        n = min(self.orders, self.window)
        g = np.asarray(self.group[:n]) == group
        qty = np.asarray(self.qty[:n])[g]
        filled = np.asarray(self.filled[:n])[g]
        routed = np.asarray(self.routed[:n], dtype=np.int64)[g]
        acked = np.asarray(self.acked[:n], dtype=np.int64)[g]
        first = np.asarray(self.first_fill[:n], dtype=np.int64)[g]
        nf = min(self.fills, self.window)
        fg = np.asarray(self.f_group[:nf]) == group
        bp = np.asarray(self.f_bp[:nf])[fg]
        bp = bp[np.isfinite(bp)]
        orders = int(g.sum())
        ack_us = (acked[acked > 0] - routed[acked > 0]) / 1e3
        fill_us = (first[first > 0] - routed[first > 0]) / 1e3
        return {
            "orders": orders,
            "orders_filled": int((filled > 0).sum()),
            "fill_rate": float((filled > 0).mean()) if orders else _NAN,
            "lots_ordered": int(qty.sum()),
            "lots_filled": int(filled.sum()),
            "lot_fill_rate": float(filled.sum() / qty.sum()) if qty.sum() else _NAN,
            "fills": int(fg.sum()),
            "slippage_bp_mean": float(bp.mean()) if len(bp) else _NAN,
            "slippage_bp_p50": _pct(bp, 50),
            "slippage_bp_p90": _pct(bp, 90),
            "ack_us_p50": _pct(ack_us, 50),
            "ack_us_p99": _pct(ack_us, 99),
            "first_fill_us_p50": _pct(fill_us, 50),
            "first_fill_us_p99": _pct(fill_us, 99),
        }


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else _NAN


class Router:
    def __init__(
        self,
        registry: InstrumentRegistry,
        venues: dict[str, Venue],
        clock: Clock,
        latency: LatencyRecorder,
        config: RouterConfig | None = None,
        books: BookStore | None = None,
    ) -> None:
        missing = {i.venue for i in registry} - set(venues)
        if missing:
            raise ValueError(
                f"instruments list venues with no adapter: {', '.join(sorted(missing))}"
            )
        config = config or RouterConfig()
        unknown = sorted(set(config.venues) - set(venues))
        if unknown:
            raise ValueError(
                f"[router.venues.{unknown[0]}]: there is no venue {unknown[0]!r} "
                f"(venues: {', '.join(sorted(venues))}); fix the name or remove the section"
            )
        self.config = config
        self._registry = registry
        self._books = books
        cap = VenueMode[config.mode.upper()]
        #: Each venue's effective mode (its own, capped by the global one) and canary share.
        self.modes: dict[str, VenueMode] = {}
        self.canary_pct: dict[str, float] = {}
        #: The simulated venue standing in for each venue that is not LIVE, by venue name.
        self.shadow_venues: dict[str, Venue] = {}
        for name in venues:
            vc = config.venues.get(name)
            own = VenueMode[vc.mode.upper()] if vc is not None else VenueMode.LIVE
            mode = min(own, cap)
            self.modes[name] = mode
            self.canary_pct[name] = vc.canary_pct if vc is not None else 0.0
            if mode != VenueMode.LIVE:
                self.shadow_venues[name] = _make_shadow(name, config)
        #: Venues with a comparison (not LIVE), in order: their index makes the stats group.
        self.compared = [name for name, mode in self.modes.items() if mode != VenueMode.LIVE]
        self._live: list[Venue] = [venues[i.venue] for i in registry]
        self._shadow: list[Venue | None] = [self.shadow_venues.get(i.venue) for i in registry]
        self._mode: list[int] = [int(self.modes[i.venue]) for i in registry]
        self._cut: list[int] = [canary_cut(self.canary_pct[i.venue]) for i in registry]
        self._group: list[int] = [
            2 * self.compared.index(i.venue) if i.venue in self.compared else -1 for i in registry
        ]
        self.stats = ModeStats(config.stats_window)
        self.on_event = self.stats.on_event
        """Give every order event the OMS applied (the runtime does): accepts and fills of
        compared venues' orders are recorded."""
        self.portfolio: Portfolio | None = None
        self.shadow_portfolio: Portfolio | None = None
        self._ports: VenuePorts | None = None
        self._now = clock.now
        self._strategy = latency["strategy"]
        self._risk = latency["risk"]
        self._route = latency["route"]
        self._tick_to_order = latency["tick_to_order"]
        self._order_path = latency["order_path"]
        self._stamps: list[tuple[int, int, int, int]] = []  # routed, not yet recorded
        self.after_dispatch: Callable[[Callable[[], object]], None] = _at_once
        """Runs a callable once the strategies are done with the market data being dispatched
        (the engine sets its book actor's); by default at once."""
        self.orders = 0
        self.shadowed = 0  # of ``orders``, sent to a shadow venue
        #: The order journal (``Engine.attach_journal``): orders, cancels and modifies are
        #: appended before they are handed to a venue.
        self.journal: Journal | None = None
        self.cancels = 0
        self.modifies = 0

    def bind(self, ports: VenuePorts) -> None:
        """Bind the shadow venues to the engine's ports (the real venues' books and ring)."""
        self._ports = ports
        for venue in self.shadow_venues.values():
            venue.bind(ports)

    @property
    def any_shadow(self) -> bool:
        """Whether any venue is not LIVE (then the comparison has something to say)."""
        return bool(self.compared)

    def submit(self, it: OrderIntent, order: Order | None) -> None:
        it.ts_routed = now = self._now()
        i = it.instrument_id
        mode = self._mode[i]
        journal = self.journal
        if mode == _LIVE:
            # Journaled before it can reach the venue; not sent if the journal cannot write it.
            if journal is not None and order is not None and not journal.append_order(order, now):
                self._not_journaled(order, _REJECTED, "order")
                return
            self._live[i].submit(it, order)
        else:
            coid = it.client_order_id
            shadow = mode == _SHADOW or mix64(coid) % 10_000 >= self._cut[i]
            if order is not None:
                order.shadow = shadow
                if journal is not None and not journal.append_order(order, now, shadow=shadow):
                    self._not_journaled(order, _REJECTED, "order")
                    return
            top = self._books.tops[i] if self._books is not None else None
            mid = (
                (top[0] + top[2]) / 2
                if top is not None and top[0] != NO_PRICE and top[2] != NO_PRICE
                else _NAN
            )
            self.stats.order(coid, self._group[i] + shadow, it.side, it.qty_lots, mid, now)
            if shadow:
                self.shadowed += 1
                self._shadow[i].submit(it, order)
            else:
                self._live[i].submit(it, order)
        self.orders += 1
        sent = it.ts_sent
        if order is not None:
            order.ts_sent = sent
        stamps = self._stamps
        stamps.append((it.ts_trigger, it.ts_created, it.ts_risk, sent))
        if len(stamps) == 1:
            self.after_dispatch(self._record)

    def dry_route(self, it: OrderIntent) -> None:
        """Where ``submit`` would send ``it``, without sending it: that venue's ``warm(it)``
        (a dry run that sends and changes nothing), if it has one. Nothing is journaled,
        counted or stamped. For the engine's warm-up (``Engine.warm_order_path``)."""
        i = it.instrument_id
        if self._mode[i] == _LIVE:
            warm = getattr(self._live[i], "warm", None)
            if warm is not None:
                warm(it)

    def _record(self) -> None:
        stamps, self._stamps = self._stamps, []
        for trigger, created, risk, sent in stamps:
            self._strategy.record(created - trigger)
            self._risk.record(risk - created)
            self._route.record(sent - risk)
            self._tick_to_order.record(sent - trigger)
            self._order_path.record(sent - created)

    def _holder(self, order: Order, what: str) -> Venue | None:
        """The shadow venue working shadow order ``order``; None (after answering
        CANCEL_REJECTED) if its venue has no shadow any more (an order restored from a journal
        after its venue went LIVE): it must not reach the real venue, which never had it."""
        i = order.instrument_id
        venue = self._shadow[i]
        if venue is None and self._ports is not None:
            reason = (
                f"{what} refused: order {order.client_order_id} was shadowed and venue "
                f"{self._registry[i].venue} has no shadow now (it is LIVE); nothing was sent"
            )
            self._ports.events.claim().about(_CANCEL_REJECTED, order, 0, reason, self._now())
        return venue

    def _not_journaled(self, order: Order, kind: EventKind, what: str) -> None:
        """Answer an order or modify the journal could not write with ``kind`` (REJECTED or
        CANCEL_REJECTED), code ``NOT_JOURNALED``: it was not sent. The journal's failure has
        halted trading already; this is the request that met it."""
        journal = self.journal
        reason = (
            f"trading halted: the journal cannot be written "
            f"({journal.error if journal is not None else 'closed'}); the {what} was not sent"
        )
        self._ports.events.claim().about(kind, order, NOT_JOURNALED, reason, self._now())

    def cancel(self, order: Order) -> None:
        """Send a cancel, journaled first. If the journal cannot write it, the cancel still
        goes out (the journal holds the record for later): taking an order out of the market
        is worth more than a complete journal, and after a restart the venue's reconciliation
        shows the order cancelled anyway."""
        self.cancels += 1
        if self.journal is not None:
            self.journal.append_cancel(order.client_order_id, self._now())
        venue = self._holder(order, "cancel") if order.shadow else self._live[order.instrument_id]
        if venue is not None:
            venue.cancel(order)

    def modify(
        self, order: Order, qty_lots: int, price_ticks: int, extras: OrderExtras | None = None
    ) -> None:
        """Send a modify; ``extras`` are the order's new extras when it moves the stop or
        trail (None: the order keeps its own), journaled with it. A modify the journal cannot
        write is not sent: CANCEL_REJECTED (``NOT_JOURNALED``), and the order stays as it was."""
        journal = self.journal
        if journal is not None and not journal.append_modify(
            order.client_order_id, qty_lots, price_ticks, self._now(), extras
        ):
            self._not_journaled(order, _CANCEL_REJECTED, "modify")
            return
        self.modifies += 1
        venue = self._holder(order, "modify") if order.shadow else self._live[order.instrument_id]
        if venue is None:
            return
        if extras is None:
            venue.modify(order, qty_lots, price_ticks)
        else:
            venue.modify(order, qty_lots, price_ticks, extras)

    # ---- the shadow-vs-live comparison -------------------------------------------------------

    def comparison(self) -> dict[str, dict[str, Any]]:
        """Per venue not LIVE: its mode, ``canary_pct`` and, for each book (``live``,
        ``shadow``), orders, fill rates, slippage against the arrival mid in bp (positive =
        worse for us: mean, p50, p90), latencies from routing to the acknowledgement and to the
        first fill in µs (p50, p99), and the book's positions (instrument units, by symbol) and
        P&L (realised + unrealised at the mid - fees). Computed now, from the stats window."""
        out: dict[str, dict[str, Any]] = {}
        for v, name in enumerate(self.compared):
            row: dict[str, Any] = {
                "mode": self.modes[name].name.lower(),
                "canary_pct": self.canary_pct[name],
            }
            for shadow, book in enumerate(BOOKS):
                stats = self.stats.summary(2 * v + shadow)
                portfolio = self.shadow_portfolio if shadow else self.portfolio
                stats["positions"], stats["pnl"] = self._book_of(portfolio, name)
                row[book] = stats
            out[name] = row
        return out

    def _book_of(self, portfolio: Portfolio | None, venue: str) -> tuple[dict[str, float], float]:
        positions: dict[str, float] = {}
        pnl = 0.0
        if portfolio is None:
            return positions, _NAN
        reg = self._registry
        tops = self._books.tops if self._books is not None else None
        for (_, iid), pos in portfolio.positions().items():
            inst = reg[iid]
            if inst.venue != venue:
                continue
            positions[inst.symbol] = positions.get(inst.symbol, 0.0) + pos.lots * inst.lot_size
            mark = None
            if tops is not None and tops[iid][0] != NO_PRICE and tops[iid][2] != NO_PRICE:
                mark = (tops[iid][0] + tops[iid][2]) / 2
            pnl += pos.realised + pos.unrealised(mark, inst.tick_value) - pos.commission
        return positions, pnl

    def format_comparison(self, comparison: dict[str, dict[str, Any]] | None = None) -> str:
        """The comparison as a text table ("" when every venue is LIVE)."""
        comp = self.comparison() if comparison is None else comparison
        return format_comparison(comp)


def _num(x: float, fmt: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def format_comparison(comp: dict[str, dict[str, Any]]) -> str:
    """A ``Router.comparison()`` as a table: one line per venue and book."""
    if not comp:
        return ""
    head = (
        f"{'venue':<10} {'mode':<12} {'book':<6} {'orders':>7} {'filled':>7} {'lots':>7} "
        f"{'slip bp mean/p50/p90':>22} {'ack µs p50/p99':>16} {'fill µs p50/p99':>17} "
        f"{'P&L':>12}  positions"
    )
    lines = ["shadow vs live (slippage vs arrival mid, + = worse for us):", head]
    for name, row in comp.items():
        mode = row["mode"] + (f" {row['canary_pct']:g}%" if row["mode"] == "canary" else "")
        for book in BOOKS:
            s = row[book]
            slip = "/".join(
                _num(s[k], "+.2f")
                for k in ("slippage_bp_mean", "slippage_bp_p50", "slippage_bp_p90")
            )
            ack = f"{_num(s['ack_us_p50'], '.0f')}/{_num(s['ack_us_p99'], '.0f')}"
            fill = f"{_num(s['first_fill_us_p50'], '.0f')}/{_num(s['first_fill_us_p99'], '.0f')}"
            pos = " ".join(f"{k}={v:+g}" for k, v in sorted(s["positions"].items()) if v) or "flat"
            lines.append(
                f"{name:<10} {mode:<12} {book:<6} {s['orders']:>7,} "
                f"{_num(s['fill_rate'] * 100 if s['orders'] else _NAN, '6.1f'):>6}% "
                f"{_num(s['lot_fill_rate'] * 100 if s['lots_ordered'] else _NAN, '6.1f'):>6}% "
                f"{slip:>22} {ack:>16} {fill:>17} {_num(s['pnl'], '+,.2f'):>12}  {pos}"
            )
    return "\n".join(lines)
