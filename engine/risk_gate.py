"""The risk gate: every order intent passes here before the router, or is rejected with a reason.

There is no other way from a strategy to a venue: strategies write intents into the intent ring,
this actor drains it, and only intents that pass reach ``Router``. A rejection becomes an
``OrderEvent`` of kind ``REJECTED`` (for new orders) or ``CANCEL_REJECTED`` (for modifies and
cancels) with the check's stable code and a reason the strategy author can act on, delivered
through the order-event ring like any venue answer.

A strategy cancels and modifies only its own orders (``NOT_OWN_ORDER`` otherwise), and only
orders this gate passed (``UNKNOWN_ORDER`` for one it refused: it never reached a venue). A
modify of an order whose cancel is pending is refused (``CANCEL_PENDING``: the cancel wins), and
a second cancel of it is not sent again (the venue's answer to the first answers both). A modify
that gives a limit price to an order type that takes none (MARKET, STOP, MARKET_ON_CLOSE,
TRAILING_*) is refused as a new order would be (``BAD_ORDER_PARAMS``), and so is one that moves
the stop price of anything but STOP and STOP_LIMIT or the trail of anything but TRAILING_*, or
gives a trail amount and a percent together; a new stop price is held to a new order's rules.
None of these reach the router, the venue or the journal's requests; the refusal does not touch
the order (see ``engine.orders.refused_by_gate``).

The checks and the limit state (open orders and their exposure, positions and today's P&L,
token buckets) are the Numba kernels of ``hotpath.risk``; this class fills their arrays from the
config and the instrument registry, calls them once per intent with plain scalars, and keeps
their state in step with the venue's answers (``on_event``) and the book (``on_book``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from enum import Enum, IntEnum
from functools import partial

import numpy as np

from engine.clock import Clock
from engine.config import PortfolioConfig, RiskConfig
from engine.instruments import InstrumentRegistry
from engine.messages import (
    NO_PRICE,
    Algo,
    EventKind,
    IntentKind,
    OrderEvent,
    OrderIntent,
    OrderType,
    TimeInForce,
)
from engine.orders import Order, OrderExtras, OrderState, OrderTracker, refused_by_gate
from engine.ring import ObjectRing
from hotpath import limits as lim
from hotpath import risk as rk
from hotpath.jit import entry

log = logging.getLogger(__name__)


class TradingState(Enum):
    ACTIVE = "active"
    REDUCING = "reducing"  # only orders that reduce a position
    HALTED = "halted"  # nothing but cancels


_STATE_CODE = {
    TradingState.ACTIVE: rk.STATE_ACTIVE,
    TradingState.REDUCING: rk.STATE_REDUCING,
    TradingState.HALTED: rk.STATE_HALTED,
}

Verdict = IntEnum("Verdict", {name: code for code, name in enumerate(rk.VERDICT_NAMES)})
Verdict.__doc__ = "Stable verdict codes of the risk checks (``hotpath.risk``)."
REASONS: dict[Verdict, str] = {v: rk.VERDICT_REASONS[v] for v in Verdict}
# A reject's reason by verdict code, built once: a reject must not hold up the orders behind it.
_REASON_TEXT: tuple[str, ...] = tuple(f"{v.name}: {REASONS[v]}" for v in Verdict)

# Plain ints and module-level names on the order path (an enum member read costs ~80 ns in
# Python 3.11; the kernels take ints).
_NEW = int(IntentKind.NEW)
_CANCEL = int(IntentKind.CANCEL)
_MODIFY = int(IntentKind.MODIFY)
_CANCEL_ALL = int(IntentKind.CANCEL_ALL)
_LIMIT = int(OrderType.LIMIT)
_UNKNOWN_ORDER = int(Verdict.UNKNOWN_ORDER)
_BAD_ORDER_PARAMS = int(Verdict.BAD_ORDER_PARAMS)
_NOT_OWN_ORDER = int(Verdict.NOT_OWN_ORDER)
_CANCEL_PENDING = int(Verdict.CANCEL_PENDING)
_TRADING_HALTED = int(Verdict.TRADING_HALTED)
_NAN = math.nan
# ``order_type & _NOT_PLAIN_TYPE`` and ``tif & _NOT_PLAIN_TIF`` are non-zero for anything but
# MARKET/LIMIT and DAY/GTC/IOC/FOK (negative values included): one test on the plain path.
_NOT_PLAIN_TYPE = ~1
_NOT_PLAIN_TIF = ~3
_LIMIT_PRICED = frozenset(
    {int(OrderType.LIMIT), int(OrderType.STOP_LIMIT), int(OrderType.LIMIT_ON_CLOSE)}
)
_STOP_TYPES = frozenset(
    int(t)
    for t in (
        OrderType.STOP,
        OrderType.STOP_LIMIT,
        OrderType.TRAILING_STOP,
        OrderType.TRAILING_STOP_LIMIT,
    )
)
_TRAILING = frozenset({int(OrderType.TRAILING_STOP), int(OrderType.TRAILING_STOP_LIMIT)})
_FIXED_STOPS = frozenset({int(OrderType.STOP), int(OrderType.STOP_LIMIT)})
_ON_CLOSE = frozenset({int(OrderType.MARKET_ON_CLOSE), int(OrderType.LIMIT_ON_CLOSE)})
_TYPE_NAMES = {int(t): t.name for t in OrderType}
_TIF_NAMES = {int(t): t.name for t in TimeInForce}
_ALGOS = frozenset(int(a) for a in Algo if a is not Algo.NONE)
_TRAILING_STOP_LIMIT = int(OrderType.TRAILING_STOP_LIMIT)
_DAY = int(TimeInForce.DAY)
_GTD = int(TimeInForce.GTD)
_OPG = int(TimeInForce.OPG)
_FILL = EventKind.FILL
_REJECTED = EventKind.REJECTED
_ENDED = (EventKind.CANCELLED, EventKind.EXPIRED, EventKind.REJECTED)
_MODIFIED = EventKind.MODIFIED
_CANCEL_REJECTED = EventKind.CANCEL_REJECTED
_COMMISSION = EventKind.COMMISSION
_INITIALIZED = OrderState.INITIALIZED
_PENDING_CANCEL = OrderState.PENDING_CANCEL
_PENDING_MODIFY = OrderState.PENDING_MODIFY
_OCA_TYPES = (1, 2, 3)
_MAX_OCA_GROUP = 64


def _at_once(fn: Callable[[], object]) -> None:
    fn()


def _moved(
    extras: OrderExtras, stop: float, stop_ticks: int, amount: float, percent: float
) -> OrderExtras | None:
    """``extras`` with a modify's stop and trail (a trail amount replaces a percent and the
    other way round), or None if the modify changes neither. A new trail drops a trailing
    order's initial stop: sent again, it would put the stop back where it started."""
    if amount == amount or percent == percent:
        stop, stop_ticks = _NAN, NO_PRICE
        if amount == amount:
            percent = _NAN
        else:
            amount = _NAN
    else:
        amount, percent = extras.trail_amount, extras.trail_percent
    if (
        stop_ticks == extras.stop_ticks
        and _same(amount, extras.trail_amount)
        and _same(percent, extras.trail_percent)
    ):
        return None
    return extras._replace(
        stop_price=stop, stop_ticks=stop_ticks, trail_amount=amount, trail_percent=percent
    )


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)


def _percent_to_fraction(pct: float | None) -> float | None:
    return None if pct is None else pct / 100.0


def parse_hours(spec: str) -> tuple[int, int]:
    """``"09:30-16:00"`` -> seconds of the local day (open, close)."""
    try:
        opens, closes = spec.split("-")
        h1, m1 = (int(x) for x in opens.split(":"))
        h2, m2 = (int(x) for x in closes.split(":"))
    except ValueError:
        raise ValueError(f"trading hours {spec!r}: expected 'HH:MM-HH:MM'") from None
    return h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60


class RiskGate:
    """Drains the intent ring: checks, stamps ``ts_risk``, and hands passing intents on."""

    def __init__(
        self,
        registry: InstrumentRegistry,
        limits: RiskConfig,
        tracker: OrderTracker,
        events: ObjectRing[OrderEvent],
        router,
        clock: Clock,
        venues: list[str],
        max_strategies: int = 32,
        trading_hours: dict[int, tuple[int, list[tuple[int, int]]]] | None = None,
        portfolio: PortfolioConfig | None = None,
    ) -> None:
        self._registry = registry
        # Every limit is in the base currency: amounts in an instrument's currency convert at
        # [portfolio.fx] (``_fx_rates``), as the portfolio converts them.
        self._fx = self._fx_rates(portfolio or PortfolioConfig())
        self._converts = any(rate != 1.0 for rate in self._fx)
        self._limits = limits
        self._tracker = tracker
        self._open_order = tracker.open.get  # ``tracker.get`` without its Python frame
        self._events = events
        self._router = router
        self._clock = clock
        self.state = TradingState.ACTIVE
        # A TRADING_HALTED refusal's reason, saying why trading is halted (``set_state``).
        self._halted_text = _REASON_TEXT[_TRADING_HALTED]
        self.rejects = [0] * len(Verdict)
        self.passed = 0
        self.journal = None  # the order journal (``Engine.attach_journal``)
        self.venue_rejects = 0  # REJECTED answers from venues to orders this gate passed
        self.size_scale = 1.0
        """Factor new orders' quantities are scaled by (the rejection-rate breaker sets it):
        down to whole lots, and never below one lot."""
        self.arrays = self._build_arrays(venues, max_strategies, trading_hours or {})
        a = self.arrays
        self._now = clock.now
        self._lot_size = [inst.lot_size for inst in registry]
        self._tick_size = [inst.tick_size for inst in registry]
        # Entry points, not dispatchers (``hotpath.jit.entry``): every call passes this gate's
        # own arrays and plain ints and floats, and the dispatch would cost more than the checks.
        self._check_order = entry(rk.check_order)
        self._check_modify = entry(rk.check_modify)
        self._check_order_extended = entry(rk.check_order_extended)
        self._check_modify_extended = entry(rk.check_modify_extended)
        # The answers' path too (a cancel's release, a fill): the events' fields are ints and
        # floats the venues set, and int(side) is passed as the checks pass it.
        self._fill = entry(rk.apply_fill)
        self._release = entry(rk.release_order)
        self._mark = entry(rk.mark_to_market)  # ids and top: the BookStore's own arrays
        self._charge = entry(rk.charge_message)
        # Each instrument's venue pacing bucket: a cancel is a message to the venue too.
        self._venue_row = [lim.venue_bucket(a, int(v)) for v in a.ilim[:, rk.IL_VENUE]]
        self._check_args = tuple(a)
        self._unfinished: list[tuple[OrderEvent, tuple[str, float, float, float]]] = []
        self.after_dispatch: Callable[[Callable[[], object]], None] = _at_once
        """Runs a callable once the strategies are done with the market data being dispatched
        (the engine sets its book actor's); by default at once."""
        self._fill_args = (a.ilim, a.ist, a.sst, a.pst, a.gst)  # mark_to_market's too
        self._release_args = (a.ilim, a.ist, a.pst, a.gst)

    def _build_arrays(
        self,
        venues: list[str],
        max_strategies: int,
        hours: dict[int, tuple[int, list[tuple[int, int]]]],
    ) -> lim.RiskArrays:
        cfg = self._limits
        reg = self._registry
        now = self._clock.now()
        a = lim.new_risk_arrays(len(reg), max_strategies, len(venues))
        allow = set(cfg.allow_list)
        block = set(cfg.block_list)
        overrides = {}
        for key, override in cfg.instruments.items():
            matches = [inst for inst in reg if key in (inst.symbol, inst.key)]
            if not matches:
                raise ValueError(
                    f"risk.instruments.{key}: no instrument {key!r} in the registry; name a "
                    "symbol or SYMBOL.VENUE of [[instruments]]"
                )
            for inst in matches:
                overrides[inst.id] = override
        for inst in reg:
            row = a.ilim[inst.id]
            row[rk.IL_TRADABLE] = 1.0
            row[rk.IL_TICK_SIZE] = inst.tick_size
            row[rk.IL_LOT_SIZE] = inst.lot_size
            row[rk.IL_MULTIPLIER] = inst.multiplier * self._fx[inst.id]
            row[rk.IL_VENUE] = venues.index(inst.venue)
            row[rk.IL_MAX_ORDER_QTY] = cfg.max_order_qty
            row[rk.IL_MAX_ORDER_NOTIONAL] = cfg.max_order_notional
            row[rk.IL_MAX_POSITION] = cfg.max_position
            row[rk.IL_MAX_OPEN_ORDERS] = cfg.max_open_orders
            row[rk.IL_COLLAR_PCT] = cfg.price_collar_pct / 100.0
            row[rk.IL_COLLAR_TICKS] = cfg.price_collar_ticks
            row[rk.IL_MAX_CONCENTRATION] = cfg.max_concentration
            row[rk.IL_BLOCKED] = float(inst.symbol in block or inst.key in block)
            row[rk.IL_ALLOWED] = float(inst.symbol in allow or inst.key in allow)
            override = overrides.get(inst.id)
            if override is not None:
                for column, value in (
                    (rk.IL_MAX_ORDER_QTY, override.max_order_qty),
                    (rk.IL_MAX_ORDER_NOTIONAL, override.max_order_notional),
                    (rk.IL_MAX_POSITION, override.max_position),
                    (rk.IL_MAX_OPEN_ORDERS, override.max_open_orders),
                    (rk.IL_COLLAR_PCT, _percent_to_fraction(override.price_collar_pct)),
                    (rk.IL_COLLAR_TICKS, override.price_collar_ticks),
                    (rk.IL_MAX_CONCENTRATION, override.max_concentration),
                    (rk.IL_MARGIN, override.margin),
                ):
                    if value is not None:
                        row[column] = value
            if inst.id in hours:
                offset, windows = hours[inst.id]
                lim.set_trading_hours(a.ilim, inst.id, offset, windows)
        a.slim[:, rk.SL_MAX_DAILY_LOSS] = cfg.strategy_daily_loss_limit
        a.glim[rk.GL_MAX_GROSS] = cfg.max_gross_exposure
        a.glim[rk.GL_MAX_LEVERAGE] = cfg.max_leverage
        a.glim[rk.GL_MAX_DAILY_LOSS] = cfg.daily_loss_limit
        a.glim[rk.GL_ALLOW_LIST] = float(bool(allow))
        if cfg.pdt_max_day_trades is not None:
            a.glim[rk.GL_PDT_MAX_DAY_TRADES] = cfg.pdt_max_day_trades
        a.gst[rk.GS_BUYING_POWER] = cfg.buying_power
        rk.daily_reset(a.ist, a.sst, a.pst, a.gst, cfg.equity, 0.0)
        for row, rate, burst in (
            (rk.GLOBAL_BUCKET, cfg.order_rate_per_s, cfg.order_burst),
            *((lim.strategy_bucket(s), cfg.strategy_order_rate_per_s, cfg.strategy_order_burst)
              for s in range(max_strategies)),
            *((lim.venue_bucket(a, v), cfg.venue_msgs_per_s, cfg.venue_burst)
              for v in range(len(venues))),
        ):  # fmt: skip
            lim.set_bucket(a.buckets, row, rate, burst, now)
        lim.validate(a)
        if math.isnan(cfg.equity) and (
            cfg.max_leverage < math.inf or cfg.max_concentration < math.inf
        ):
            log.warning(
                "risk.equity is not set: until it is (or a broker venue reports the account's "
                "net liquidation value, as IB does after connecting), "
                "risk.max_leverage and risk.max_concentration refuse every order that adds "
                "exposure; set risk.equity to the account's start-of-day equity"
            )
        return a

    def _fx_rates(self, portfolio: PortfolioConfig) -> list[float]:
        """Base-currency units per unit of each instrument's currency, by instrument id.

        The kernels compare notional, exposure, P&L and buying power with limits and equity in
        the base currency; an instrument priced in another currency without a rate would be
        compared one to one (a EUR future's notional against a USD limit), so it is an error.
        """
        currencies = [inst.currency for inst in self._registry]
        base = portfolio.base_currency or (currencies[0] if currencies else "USD")
        table = {**portfolio.fx, base: 1.0}
        missing = sorted({c for c in currencies if c not in table})
        if missing:
            names = ", ".join(
                f"{inst.key} ({inst.currency})"
                for inst in self._registry
                if inst.currency in missing
            )
            raise ValueError(
                f"risk: {names} trade in {', '.join(missing)}, but [portfolio.fx] has no rate for "
                f"{', '.join(missing)}: the risk limits are in {base}; set portfolio.fx."
                f"{missing[0]} ({base} per {missing[0]})"
            )
        return [table[c] for c in currencies]

    def configure_strategy(self, strategy_id: int, name: str) -> None:
        """Apply ``[risk.strategies.NAME]`` to the strategy's row (the engine calls it when the
        strategy is added); a strategy with no table keeps ``[risk]``'s limits."""
        override = self._limits.strategies.get(name)
        if override is None:
            return
        row = self.arrays.slim[strategy_id]
        for column, value in (
            (rk.SL_MAX_DAILY_LOSS, override.daily_loss_limit),
            (rk.SL_MAX_ORDER_QTY, override.max_order_qty),
            (rk.SL_MAX_ORDER_NOTIONAL, override.max_order_notional),
            (rk.SL_MAX_POSITION, override.max_position),
        ):
            if value is not None:
                row[column] = value
        if override.order_rate_per_s is not None or override.order_burst is not None:
            cfg = self._limits
            rate = override.order_rate_per_s
            burst = override.order_burst
            lim.set_bucket(
                self.arrays.buckets, lim.strategy_bucket(strategy_id),
                cfg.strategy_order_rate_per_s if rate is None else rate,
                cfg.strategy_order_burst if burst is None else burst, self._clock.now(),
            )  # fmt: skip

    # ---- intents ---------------------------------------------------------------------------

    def on_intent(self, it: OrderIntent) -> None:
        kind = it.kind
        if kind == _NEW:
            self._new(it)
        elif kind == _MODIFY:
            self._modify(it)
        elif kind == _CANCEL:
            order = self._open_order(it.client_order_id)
            if self._not_changeable(it, order):
                return
            if not self.cancel_order(order):
                log.debug("cancel of order %d: a cancel is already pending", order.client_order_id)
        elif kind == _CANCEL_ALL:
            only = it.instrument_id if it.instrument_id >= 0 else None
            for order in self._tracker.open_for(it.strategy_id, only):
                self.cancel_order(order)

    def cancel_order(self, order: Order) -> bool:
        """Send a cancel of ``order`` to the venue holding it (through the router: journaled,
        to the shadow venue for a shadowed order), and mark it PENDING_CANCEL. Not for an order
        this gate refused (it never left) or one whose cancel is already pending (its answer is
        on its way): False, nothing sent. If the venue raises, the order keeps its state (a
        later cancel is sent) and the exception propagates.

        A cancel is never refused, but it counts against its venue's pacing bucket
        (``venue_msgs_per_s``): credit may go below zero and hold back the next orders, so
        orders and cancels together stay within the venue's message rate (IB: 50 a second)."""
        state = order.state
        if state is _INITIALIZED or state is _PENDING_CANCEL:
            return False
        self._tracker.request_cancel(order)
        try:
            self._router.cancel(order)
        except Exception:
            order.state = state
            raise
        i = order.instrument_id
        if 0 <= i < len(self._venue_row):
            self._charge(self.arrays.buckets, self._venue_row[i], self._now())
        return True

    def _not_changeable(self, it: OrderIntent, order: Order | None) -> bool:
        """Refuse (CANCEL_REJECTED) a cancel or modify of an order that is not the strategy's
        to change: unknown or finished, another strategy's, or refused by this gate. True if
        refused; the order is untouched and nothing is sent."""
        if order is None:
            self._reject(it, _CANCEL_REJECTED, _UNKNOWN_ORDER)
        elif order.strategy_id != it.strategy_id:
            log.error(
                "strategy %d asked to cancel or modify order %d of strategy %d: refused "
                "(NOT_OWN_ORDER), nothing sent",
                it.strategy_id, order.client_order_id, order.strategy_id,
            )  # fmt: skip
            self._reject(
                it, _CANCEL_REJECTED, _NOT_OWN_ORDER,
                detail=f"order {order.client_order_id} is strategy {order.strategy_id}'s",
            )  # fmt: skip
        elif order.state is _INITIALIZED:
            self._reject(
                it, _CANCEL_REJECTED, _UNKNOWN_ORDER,
                detail=f"the risk gate refused order {order.client_order_id}: it never left",
            )  # fmt: skip
        else:
            return False
        return True

    def _new(self, it: OrderIntent) -> None:
        # Intents from ``Strategy`` carry plain-int side and order type (see engine.strategy).
        if self.size_scale != 1.0:
            self._scale(it)
        if it.extended or it.order_type & _NOT_PLAIN_TYPE or it.tif & _NOT_PLAIN_TIF:
            self._new_extended(it)
            return
        verdict, lots, ticks = self._check_order(
            *self._check_args, it.strategy_id, it.instrument_id, it.side, it.order_type, it.qty,
            it.price, self._now(),
        )  # fmt: skip
        if verdict:
            # The order record is finished when this event is applied, like a venue reject.
            self._reject(it, _REJECTED, verdict, ("", it.qty, it.price, _NAN))
            return
        it.qty_lots = lots
        it.price_ticks = ticks
        it.ts_risk = self._now()
        self.passed += 1
        order = self._open_order(it.client_order_id)
        if order is not None:
            order.qty_lots = lots
            order.price_ticks = ticks
            order.reserved = lots
            self._tracker.submitted(order)
        self._router.submit(it, order)

    _dry_arrays: tuple[np.ndarray, ...] | None = None  # dry_check's scratch, made at first use

    def dry_check(self, it: OrderIntent) -> int:
        """The verdict ``on_intent`` would give plain NEW ``it`` now, from the same kernel on
        scratch copies of the limit state: nothing is written (no rate token, reservation or
        count) and nothing is sent on. For the engine's warm-up (``Engine.warm_order_path``)."""
        scratch = self._dry_arrays
        if scratch is None:
            scratch = self._dry_arrays = tuple(a.copy() for a in self._check_args)
        else:
            for dst, src in zip(scratch, self._check_args, strict=True):
                np.copyto(dst, src)
        verdict, _, _ = self._check_order(
            *scratch, it.strategy_id, it.instrument_id, it.side, it.order_type, it.qty, it.price,
            self._now(),
        )  # fmt: skip
        return verdict

    def _scale(self, it: OrderIntent) -> None:
        """The rejection-rate breaker is on: scale the quantity down to whole lots, never
        below one lot (an order the strategy sized at one lot stays one lot). A quantity that
        is not a whole number of lots, or not a number, is left for the kernel to refuse."""
        i = it.instrument_id
        if not 0 <= i < len(self._lot_size):
            return
        lot = self._lot_size[i]
        lots = it.qty / lot
        if not (0.0 < lots < rk.MAX_UNITS) or abs(lots - round(lots)) > rk.GRID_TOLERANCE * (
            1.0 + lots
        ):
            return
        it.qty = max(1, math.floor(round(lots) * self.size_scale)) * lot

    def _new_extended(self, it: OrderIntent) -> None:
        """A new order beyond MARKET/LIMIT with DAY..FOK, or with order-type extras: how the
        type, time in force and extras fit together is checked here (``BAD_ORDER_PARAMS``), the
        numbers in the kernel; the passing order keeps its extras for the venue."""
        stop = it.stop_price
        problem = self._params_problem(it)
        if problem is None and (
            it.parent_id or it.oca_group or it.oca_type or it.transmit is not True
        ):
            problem = self._link_problem(it)
        if problem is not None:
            self._reject(it, _REJECTED, _BAD_ORDER_PARAMS, (f"{problem}; ", it.qty, it.price, stop))
            return
        verdict, lots, ticks, stop_ticks = self._check_order_extended(
            *self._check_args, it.strategy_id, it.instrument_id, it.side, it.order_type, it.qty,
            it.price, stop, self._now(),
        )  # fmt: skip
        if verdict:
            self._reject(it, _REJECTED, verdict, ("", it.qty, it.price, stop))
            return
        it.qty_lots = lots
        it.price_ticks = ticks
        it.stop_ticks = stop_ticks
        it.ts_risk = self._now()
        self.passed += 1
        order = self._tracker.get(it.client_order_id)
        if order is not None:
            order.qty_lots = lots
            order.price_ticks = ticks
            order.reserved = lots
            order.extras = OrderExtras.of(it)
            order.parent_id = it.parent_id
            order.oca_group = it.oca_group
            order.oca_type = it.oca_type
            self._tracker.submitted(order)
        self._router.submit(it, order)

    def _params_problem(self, it: OrderIntent) -> str | None:
        """What is wrong with how the intent's type, time in force and extras fit together, or
        None. Numbers (prices on the grid, quantities in lots) are the kernel's to check."""
        t = it.order_type
        name = _TYPE_NAMES.get(t)
        if name is None:
            return None  # the kernel refuses an unknown type as BAD_INTENT
        tif = it.tif
        tif_name = _TIF_NAMES.get(tif)
        if tif_name is None:
            return f"time in force {tif!r} is not one of TimeInForce"
        if it.price == it.price and t not in _LIMIT_PRICED:
            return f"{name} takes no limit price"
        if it.stop_price == it.stop_price and t not in _STOP_TYPES:
            return f"{name} takes no stop price"
        amount = it.trail_amount
        percent = it.trail_percent
        if t in _TRAILING:
            if (amount == amount) == (percent == percent):
                return f"{name} needs exactly one of a trail amount and a trail percent"
            if amount == amount and not 0.0 < amount < math.inf:
                return f"trail amount must be a finite number > 0, not {amount:g}"
            if percent == percent and not 0.0 < percent < 100.0:
                return f"trail percent must be > 0 and < 100, not {percent:g}"
        elif amount == amount or percent == percent:
            return f"{name} takes no trail amount or percent"
        offset = it.limit_offset
        if t == _TRAILING_STOP_LIMIT:
            if not math.isfinite(offset):
                return f"{name} needs a finite limit offset"
        elif offset == offset:
            return f"{name} takes no limit offset"
        if t in _ON_CLOSE and tif != _DAY:
            return f"{name} must be DAY, not {tif_name}"
        if tif == _OPG and t > _LIMIT:
            return f"OPG is for MARKET and LIMIT orders, not {name}"
        good_till = it.good_till_ns
        if tif == _GTD:
            if not good_till:
                return "GTD needs a good-till time"
            if good_till <= self._now():
                return f"GTD good-till time {good_till} is not in the future"
        elif good_till:
            return f"a good-till time is for GTD orders, not {tif_name}"
        display = it.display_lots
        if display:
            if display < 0:
                return "display size must be a positive whole number of lots"
            i = it.instrument_id
            if 0 <= i < len(self._lot_size):
                shown = display * self._lot_size[i]
                if shown > it.qty * (1.0 + rk.GRID_TOLERANCE):
                    return f"display size {shown:g} exceeds the order quantity"
        algo = it.algo
        if algo:
            if algo not in _ALGOS:
                return f"algo {algo!r} is not one of Algo"
            if t > _LIMIT:
                return f"algos are for MARKET and LIMIT orders, not {name}"
            params = it.algo_params
            if params is not None and not (
                isinstance(params, tuple)
                and all(
                    isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) for x in p)
                    for p in params
                )
            ):
                return "algo parameters must be (name, value) pairs of strings"
        elif it.algo_params is not None:
            return "algo parameters need an algo"
        return None

    def _link_problem(self, it: OrderIntent) -> str | None:
        """What is wrong with the intent's parent, OCA group and transmit flag, or None.

        A parent must be an open order of the same strategy and instrument that this gate
        passed (an order sent just before in the same batch counts: the gate has passed it),
        on the other side (a child exits what its parent opens), for at least the child's
        quantity. A child's quantity counts against the limits like any working order's, from
        the moment it is sent, though it cannot fill before its parent has: conservative.
        """
        parent_id = it.parent_id
        if parent_id.__class__ is not int or parent_id < 0:
            return f"parent must be a client order id, not {parent_id!r}"
        if parent_id:
            if parent_id == it.client_order_id:
                return "an order cannot be its own parent"
            parent = self._tracker.get(parent_id)
            if parent is None:
                return f"parent order {parent_id} is not an open order"
            if parent.strategy_id != it.strategy_id:
                return f"parent order {parent_id} belongs to another strategy"
            if parent.instrument_id != it.instrument_id:
                return f"parent order {parent_id} is for another instrument"
            if parent.state is _INITIALIZED:
                return f"parent order {parent_id} was refused"
            if parent.side == it.side:
                return f"a child must be on the other side of its parent order {parent_id}"
            i = it.instrument_id
            if 0 <= i < len(self._lot_size):
                most = parent.qty_lots * self._lot_size[i]
                if it.qty > most * (1.0 + rk.GRID_TOLERANCE):
                    return f"child quantity {it.qty:g} exceeds its parent's {most:g}"
        group = it.oca_group
        if group.__class__ is not str:
            return f"OCA group must be a string, not {group!r}"
        if group:
            if len(group) > _MAX_OCA_GROUP:
                return f"OCA group name is {len(group)} characters, at most {_MAX_OCA_GROUP}"
            if not (group.isascii() and group.isprintable()):
                return f"OCA group name {group!r} must be printable ASCII"
            if it.oca_type.__class__ is not int or it.oca_type not in _OCA_TYPES:
                return f"OCA type must be 1, 2 or 3, not {it.oca_type!r}"
        elif it.oca_type:
            return "an OCA type needs an OCA group"
        if it.transmit is not True and it.transmit is not False:
            return f"transmit must be True or False, not {it.transmit!r}"
        return None

    def _modify(self, it: OrderIntent) -> None:
        """A modify is checked as the order it would become, replacing the working one."""
        order = self._open_order(it.client_order_id)
        if self._not_changeable(it, order):
            return
        i = order.instrument_id
        it.instrument_id = i
        it.side = order.side
        if order.state is _PENDING_CANCEL:
            self._reject(
                it, _CANCEL_REJECTED, _CANCEL_PENDING,
                detail=f"order {order.client_order_id} is being cancelled",
            )  # fmt: skip
            return
        qty = it.qty
        if qty != qty:  # NaN: keep the order's quantity
            qty = order.qty_lots * self._lot_size[i]
        price = it.price
        if order.order_type not in _LIMIT_PRICED:
            if price == price:  # the kernel would drop it and the venue answer MODIFIED
                name = _TYPE_NAMES[order.order_type]
                lead = f"modify refused; {name} takes no limit price; "
                self._reject(it, _CANCEL_REJECTED, _BAD_ORDER_PARAMS, (lead, qty, price, _NAN))
                return
        elif price != price:  # NaN: keep the limit price
            price = order.price_ticks * self._tick_size[i]
        extras = order.extras
        stop = _NAN if extras is None else extras.stop_price  # kept unless the modify moves it
        if it.extended:
            problem = self._trigger_problem(order.order_type, it)
            if problem is not None:
                lead = f"modify refused; {problem}; "
                self._reject(it, _CANCEL_REJECTED, _BAD_ORDER_PARAMS, (lead, qty, price, stop))
                return
            if it.stop_price == it.stop_price:
                stop = it.stop_price
        changed = None  # the order's new extras, when the modify moves its stop or trail
        if extras is None:
            verdict, lots, ticks = self._check_modify(
                *self._check_args, order.strategy_id, i, order.side, order.order_type, qty,
                price, self._now(), order.reserved, order.filled_lots,
            )  # fmt: skip
        else:
            verdict, lots, ticks, stop_ticks = self._check_modify_extended(
                *self._check_args, order.strategy_id, i, order.side, order.order_type, qty,
                price, stop, self._now(), order.reserved, order.filled_lots,
            )  # fmt: skip
            if not verdict and it.extended:
                changed = _moved(extras, stop, stop_ticks, it.trail_amount, it.trail_percent)
        if verdict:
            self._reject(it, _CANCEL_REJECTED, verdict, ("modify refused; ", qty, price, stop))
            return
        # Until the venue answers, the order holds the larger of its old and new size.
        reserved = lots - order.filled_lots
        if reserved > order.reserved:
            order.reserved = reserved
        self._tracker.request_modify(order, lots, changed)
        self._router.modify(order, lots, ticks, changed)

    @staticmethod
    def _trigger_problem(order_type: int, it: OrderIntent) -> str | None:
        """What is wrong with a modify's new stop price or trail for an order of
        ``order_type``, or None; held to a new order's rules (``_params_problem``), the stop
        price's number to the kernel's. Only STOP and STOP_LIMIT take a new stop price (a
        trailing order's stop follows the market: its trail is what moves)."""
        name = _TYPE_NAMES[order_type]
        if it.stop_price == it.stop_price and order_type not in _FIXED_STOPS:
            return f"{name} takes no new stop price"
        amount = it.trail_amount
        percent = it.trail_percent
        if amount == amount or percent == percent:
            if order_type not in _TRAILING:
                return f"{name} takes no trail amount or percent"
            if amount == amount and percent == percent:
                return f"{name} takes a trail amount or a trail percent, not both"
            if amount == amount and not 0.0 < amount < math.inf:
                return f"trail amount must be a finite number > 0, not {amount:g}"
            if percent == percent and not 0.0 < percent < 100.0:
                return f"trail percent must be > 0 and < 100, not {percent:g}"
        return None

    # ---- keeping the kernels' state in step -------------------------------------------------

    def on_event(self, ev: OrderEvent, order: Order | None) -> None:
        """Apply a venue answer to the limit state; ``order`` is the record before the event."""
        kind = ev.kind
        if kind == _FILL:
            if ev.fill_lots < 0:
                self._reverse_fill(ev)
                return
            working = order is not None and order.is_open and order.reserved > 0
            release = min(ev.fill_lots, order.reserved) if working else 0
            if working:
                # Done as the OMS will judge it: against a pending modify's larger size too.
                qty = order.qty_lots
                pending = order.pending_qty_lots
                done = order.filled_lots + ev.fill_lots >= (pending if pending > qty else qty)
                order.reserved -= release
            else:
                done = False
            commission = ev.commission
            if self._converts and commission:
                commission = self._in_base(ev.instrument_id, commission)
            self._fill(
                *self._fill_args, ev.strategy_id, ev.instrument_id, int(ev.side), ev.fill_lots,
                ev.fill_price_ticks, commission, release, done,
            )  # fmt: skip
        elif kind == _COMMISSION:
            commission = self._in_base(ev.instrument_id, ev.commission)
            self._add_fees(ev.strategy_id, ev.instrument_id, commission)
        elif order is None or not order.is_open or order.state is _INITIALIZED:
            return  # nothing reserved: unknown, finished, or refused by this gate
        elif kind in _ENDED:
            if kind is _REJECTED:
                self.venue_rejects += 1
            self._release_reserved(order, order.reserved, True)
        elif kind == _MODIFIED:
            qty = ev.qty_lots if ev.qty_lots > 0 else order.qty_lots
            self._release_reserved(
                order, order.reserved - (qty - ev.cum_lots), qty <= order.filled_lots
            )
        elif (
            kind == _CANCEL_REJECTED
            and (order.state is _PENDING_MODIFY or order.state is _PENDING_CANCEL)
            and not refused_by_gate(ev)  # the gate's own refusal: the venue's request is pending
        ):
            leaves = order.leaves_lots
            if leaves <= 0:  # the OMS finishes it FILLED: its fills covered it
                self._release_reserved(order, order.reserved, True)
            elif order.state is _PENDING_MODIFY:
                self._release_reserved(order, order.reserved - leaves, False)

    def _in_base(self, instrument_id: int, amount: float) -> float:
        """A fee in the instrument's currency, in the base currency (an unknown instrument's
        is left as it is: the kernels refuse its fill, ``_add_fees`` logs it)."""
        fx = self._fx
        return amount * fx[instrument_id] if 0 <= instrument_id < len(fx) else amount

    def _add_fees(self, strategy_id: int, instrument_id: int, commission: float) -> None:
        """A commission reported after its fill: today's fees of the strategy's position, the
        strategy and the account, as ``apply_fill`` counts a fill's own."""
        a = self.arrays
        if not (0 <= strategy_id < a.pst.shape[0] and 0 <= instrument_id < a.ist.shape[0]):
            log.error(
                "commission %r for strategy %d, instrument %d: no such strategy or instrument in "
                "the risk state; not counted against the loss limits",
                commission, strategy_id, instrument_id,
            )  # fmt: skip
            return
        a.pst[strategy_id, instrument_id, rk.PS_FEES] += commission
        a.sst[strategy_id, rk.SS_FEES] += commission
        a.gst[rk.GS_FEES] += commission

    def _reverse_fill(self, ev: OrderEvent) -> None:
        """A venue took back an earlier fill (IB's execution correction reverses it, then
        reports the corrected one as a new fill): the kernels book the opposite trade at its
        price, as ``Portfolio`` does. It takes nothing off the working order, and it is no day
        trade (the fill it undoes may have been one: that count stays)."""
        gst = self.arrays.gst
        day_trades = gst[rk.GS_DAY_TRADES]
        self._fill(
            *self._fill_args, ev.strategy_id, ev.instrument_id, -int(ev.side), -ev.fill_lots,
            ev.fill_price_ticks, self._in_base(ev.instrument_id, ev.commission), 0, False,
        )  # fmt: skip
        gst[rk.GS_DAY_TRADES] = day_trades

    def _release_reserved(self, order: Order, lots: int, done: bool) -> None:
        lots = max(lots, 0)
        order.reserved -= lots
        self._release(
            *self._release_args, order.strategy_id, order.instrument_id, int(order.side), lots,
            done,
        )  # fmt: skip

    def restore_working(self, order: Order) -> None:
        """Recovery: reserve a journaled order's lots as working, as passing the checks did,
        without checking it again (it was sent; limits apply to the orders still to come).
        Buying power is reserved at the order's limit price, or at the last mark for a market
        order (the kernel's rule when the order passed)."""
        if self._reserve(order, order.qty_lots, order.price_ticks):
            self.arrays.ist[order.instrument_id, rk.IS_OPEN_ORDERS] += 1.0
            order.reserved = order.qty_lots

    def restore_modify(self, order: Order, qty_lots: int, price_ticks: int) -> None:
        """Recovery: a journaled modify of ``order`` to ``qty_lots`` (the venue's answer
        replayed next, if any): until it is answered the order holds the larger of its old and
        new size, as passing the modify's checks reserved it live; the extra lots' buying power
        at the new price. Without this, an order modified up came back reserving its old size."""
        extra = qty_lots - order.filled_lots - order.reserved
        if extra > 0 and self._reserve(order, extra, price_ticks):
            order.reserved += extra

    def _reserve(self, order: Order, lots: int, price_ticks: int) -> bool:
        """Add ``lots`` of ``order`` to the kernels' working lots and buying power; False when
        there is nothing to reserve (no lots, or an order outside the risk state)."""
        a = self.arrays
        s, i, side = order.strategy_id, order.instrument_id, int(order.side)
        if not (0 <= s < a.pst.shape[0] and 0 <= i < a.ist.shape[0]) or lots <= 0:
            return False
        ilim, ist, pst, gst = a.ilim, a.ist, a.pst, a.gst
        buy = side == 1
        net = ist[i, rk.IS_NET_LOTS]
        before = max(abs(net + ist[i, rk.IS_OPEN_BUY]), abs(net - ist[i, rk.IS_OPEN_SELL]))
        ist[i, rk.IS_OPEN_BUY if buy else rk.IS_OPEN_SELL] += lots
        after = max(abs(net + ist[i, rk.IS_OPEN_BUY]), abs(net - ist[i, rk.IS_OPEN_SELL]))
        pst[s, i, rk.PS_OPEN_BUY if buy else rk.PS_OPEN_SELL] += lots
        px = price_ticks if price_ticks != NO_PRICE else ist[i, rk.IS_MARK_TICKS]
        tick_value = ilim[i, rk.IL_TICK_SIZE] * ilim[i, rk.IL_LOT_SIZE] * ilim[i, rk.IL_MULTIPLIER]
        if after > before and px > 0:
            required = lots * px * tick_value * ilim[i, rk.IL_MARGIN]
            pst[s, i, rk.PS_BP_BUY if buy else rk.PS_BP_SELL] += required
            gst[rk.GS_BP_RESERVED] += required
        rk._revalue_exposure(ilim, ist, gst, i)
        return True

    def on_book(self, ids: np.ndarray, top: np.ndarray, n: int) -> None:
        """New reference prices (the book's mid) for the instruments a batch changed."""
        self._mark(*self._fill_args, ids, top, n)

    def marker(self, ids: np.ndarray, top: np.ndarray) -> Callable[[int], None]:
        """``on_book`` bound to ``ids`` and ``top`` (int64, C-contiguous, ``ids`` 1-d and ``top``
        n x 4, the book store's own output arrays): ``marker(ids, top)(n)``, one call per batch."""
        if not (
            ids.dtype == np.int64 and top.dtype == np.int64 and ids.ndim == 1 and top.ndim == 2
            and top.shape[1] >= 4 and ids.flags.c_contiguous and top.flags.c_contiguous
        ):  # fmt: skip
            raise TypeError("marker takes the book store's int64 ids (n,) and top (n, 4) arrays")
        return partial(self._mark, *self._fill_args, ids, top)

    def _reject(
        self,
        it: OrderIntent,
        kind: EventKind,
        verdict: int,
        numbers: tuple[str, float, float, float] | None = None,
        detail: str = "",
    ) -> None:
        """Answer ``it`` with a refusal; ``numbers`` (lead-in, qty, price, stop price) go into
        the reason (a NaN price or stop price is left out), or else ``detail``."""
        self.rejects[verdict] += 1
        journal = self.journal
        if journal is not None and kind is _REJECTED:
            # Every order intent is journaled: a refused one as the order record (0 lots: it
            # never left) before its REJECTED event.
            order = self._tracker.get(it.client_order_id)
            if order is not None:
                journal.append_order(order, self._now())
        text = self._halted_text if verdict == _TRADING_HALTED else _REASON_TEXT[verdict]
        reason = f"{text} ({detail})" if detail else text
        ev = self._events.claim().about(kind, it, int(verdict), reason, self._now())
        if numbers is not None:
            # Formatting floats costs more than the rest of a refusal. Nothing reads an event
            # before the strategies are done with the market data being dispatched, so the
            # numbers are written in then, not in front of the orders still to come.
            unfinished = self._unfinished
            unfinished.append((ev, numbers))
            if len(unfinished) == 1:
                self.after_dispatch(self._finish_reasons)

    def _finish_reasons(self) -> None:
        unfinished, self._unfinished = self._unfinished, []
        for ev, (lead, qty, price, stop) in unfinished:
            detail = f"qty={qty:g}" if math.isnan(price) else f"qty={qty:g}, price={price:g}"
            if not math.isnan(stop):
                detail = f"{detail}, stop={stop:g}"
            ev.reason = f"{ev.reason} ({lead}{detail})"

    def set_state(self, state: TradingState, reason: str) -> None:
        """Write the state the kernels check (``Engine.set_trading_state`` logs, counts and
        announces the transition; call that instead)."""
        self.state = state
        self.arrays.gst[rk.GS_TRADING_STATE] = _STATE_CODE[state]
        if state is TradingState.HALTED:
            # Said in every refusal while it lasts: a strategy reads why (the kill switch,
            # the daily loss, a journal that cannot be written), not only that.
            self._halted_text = (
                f"TRADING_HALTED: trading is halted ({reason}): only cancels are accepted"
            )
