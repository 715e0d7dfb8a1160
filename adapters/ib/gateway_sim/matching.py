"""Matching IB orders against the simulated market (``market.Market``).

Pure: no I/O, no wall clock; every entry point takes the time as integer nanoseconds and returns
the events it caused, in order. The gateway core turns them into openOrder / orderStatus /
execDetails / commission messages:

- ``Fill``: one execution (quantity, price, liquidity, cumulative quantity, average price and
  the commission charged for it);
- ``StatusChange``: the order's status string changed (or was restated after a modification);
  a partial fill does not change the status, so the core reports it from the ``Fill``;
- ``Rejected``: a rejected order (status ``Inactive``) or a rejected modification / cancel
  (the order is left as it was);
- ``BookUpdate``: market events caused by an order taking liquidity, for the core to publish
  exactly like those of ``Market.step``.

The order life cycle, as named ``Phase``s: a child waits for its parent to fill (``HELD``,
status PreSubmitted, why_held "child"); a stop or trailing stop waits for its trigger
(``TRIGGER``, PreSubmitted); OPG, MOC and LOC orders wait for ``auction`` (``AUCTION``,
Submitted); Vwap, Twap and Adaptive orders are worked by ``on_time`` (``ALGO``, Submitted);
everything else is ``WORKING`` (Submitted) until it is ``DONE`` (Filled, Cancelled, Inactive).

How orders fill:

- A marketable order (MKT, a LMT through the opposite touch, a triggered stop) walks the book
  with ``Market.take_ticks``: one fill per level, at the level's price, liquidity 2 (removed).
  What the book cannot fill rests (MKT and LMT), or is cancelled (IOC); FOK fills only if the
  book holds the whole quantity within the limit.
- A resting limit fills, liquidity 1 (added) and always at its own price, from the prints after
  it rested: a print through its price fills it first; a print at its price first works off the
  queue ahead of it (the book's size at that price when it rested, shrinking with that level),
  then fills it. It also fills when the opposite touch moves through its price, taking that
  book liquidity. An iceberg (``displaySize``) shows and fills at most its display quantity per
  ``on_market`` call, and each new slice joins the back of the queue.
- Stops trigger on IB's ``triggerMethod`` (0 default: last price, bid/ask for FX, double
  bid/ask for options; 1 double bid/ask; 2 last; 3 double last; 4 bid/ask; 7 last or bid/ask;
  8 midpoint), using prints after the stop was placed and the touch at each ``on_market``.
  A trailing stop ratchets its stop (written back to ``order.trailStopPrice``) toward the market
  only. Triggered: STP and TRAIL become market orders, STP LMT a limit at ``lmtPrice``,
  TRAIL LIMIT a limit at stop -/+ ``lmtPriceOffset``.
- Algos fill in slices every ``algo_slice_ns`` (default a tenth of the window) between
  ``startTime`` and ``endTime`` (default: now to now + ``algo_horizon_ns``; Adaptive Urgent a
  quarter of it, Patient three times), the cumulative fill tracking elapsed time (capped at
  ``maxPctVol`` of the market volume since the start for Vwap). A slice takes the book
  (Vwap, Twap "Marketable", Adaptive Urgent), or fills passively without touching the book at
  the same-side touch (Vwap ``noTakeLiq``, Twap "Matching Same Side", Adaptive Patient), the
  midpoint (Twap "Matching Midpoint", Adaptive Normal) or the last price ("Matching Last"),
  bounded by the size shown there. Never beyond the order's limit price. At ``endTime`` the
  remainder is cancelled unless ``allowPastEndTime`` (Adaptive always continues).
- DAY, OPG, MOC/LOC and algo orders expire at the instrument's next liquid-session close after
  they were placed; GTD at ``goodTillDate``; GTC never.
- ``auction`` fills every OPG (open) or MOC/LOC (close) order in full at
  ``Market.auction_price`` (liquidity 4, FIX's "auction"); a limit the price does not reach
  is cancelled.
- OCA groups (``ocaGroup``): a fill cancels the others (``ocaType`` 1) or reduces them by the
  filled quantity (2, 3). The children of one parent form an implicit reducing group, and are
  activated once the parent is completely filled; cancelling a parent cancels its children.

Simplifications versus a real exchange: resting orders are not in the book the market data
shows, so they never move it and two of our orders never trade with each other directly (but a
print caused by one can fill another, as any print would); queue position is estimated, not
tracked order by order; triggers, trailing stops and resting orders are evaluated only when
``on_market`` runs, against the prints and touch since the previous call; passive algo slices
and auctions have unlimited hidden liquidity; trading hours, ``outsideRth``, ``goodAfterTime``,
``allOrNone``, ``minQty``, hidden orders and short-sale rules are ignored; an order changes
neither its type nor its side on modification (105).
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import IntEnum

from ibapi.const import UNSET_DECIMAL, UNSET_DOUBLE, UNSET_INTEGER
from ibapi.contract import Contract
from ibapi.order import Order

from .market import (
    NS,
    BookState,
    Grid,
    Market,
    MarketEvent,
    SimInstrument,
    session_end_after,
    zone,
)

ZERO = Decimal(0)

LIQ_ADDED, LIQ_REMOVED, LIQ_AUCTION = 1, 2, 4
"""``Execution.lastLiquidity`` values (FIX tag 851): added, removed, auction."""


class Phase(IntEnum):
    """Where an order is in its life cycle (see the module docstring)."""

    NEW = 0
    HELD = 1
    TRIGGER = 2
    WORKING = 3
    AUCTION = 4
    ALGO = 5
    DONE = 6


# ---- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an order cannot be accepted: an IB error code and its reason text."""

    code: int
    reason: str


@dataclass(slots=True)
class _Algo:
    style: str
    start: int
    end: int
    slice: int
    next: int
    past_end: bool
    pct: float
    vol0: int | None = None


@dataclass(slots=True, eq=False)
class SimOrder:
    """One order as the engine tracks it. The engine owns ``order`` once it is submitted.

    ``filled``/``remaining`` are IB ``Decimal`` quantities; ``commission`` is the total charged so
    far. Fields after ``updated_ns`` are the engine's working state.
    """

    order_id: int
    client_id: int
    perm_id: int
    instrument: SimInstrument
    contract: Contract
    order: Order
    account: str = ""
    status: str = "PendingSubmit"
    filled: Decimal = ZERO
    remaining: Decimal = ZERO
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    parent_id: int = 0
    why_held: str = ""
    commission: float = 0.0
    phase: Phase = Phase.NEW
    submitted_ns: int = 0
    updated_ns: int = 0
    _kind: str = field(default="", init=False, repr=False)
    _tif: str = field(default="DAY", init=False, repr=False)
    _buy: bool = field(default=True, init=False, repr=False)
    _lots: int = field(default=0, init=False, repr=False)
    _filled_lots: int = field(default=0, init=False, repr=False)
    _notional: float = field(default=0.0, init=False, repr=False)
    _value: float = field(default=0.0, init=False, repr=False)
    _lmt: int | None = field(default=None, init=False, repr=False)
    _limit: int | None = field(default=None, init=False, repr=False)
    _stop0: int | None = field(default=None, init=False, repr=False)
    _stop: int = field(default=0, init=False, repr=False)
    _trail: int = field(default=0, init=False, repr=False)
    _trail_pct: float = field(default=0.0, init=False, repr=False)
    _offset: int = field(default=0, init=False, repr=False)
    _method: int = field(default=0, init=False, repr=False)
    _need: int = field(default=1, init=False, repr=False)
    _hits: int = field(default=0, init=False, repr=False)
    _queue: int = field(default=0, init=False, repr=False)
    _display: int = field(default=0, init=False, repr=False)
    _shown: int = field(default=0, init=False, repr=False)
    _since: int = field(default=0, init=False, repr=False)
    _expire: int = field(default=0, init=False, repr=False)
    _algo: _Algo | None = field(default=None, init=False, repr=False)
    _oca: tuple[str, ...] = field(default=(), init=False, repr=False)
    _ver: int = field(default=0, init=False, repr=False)
    _checked: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.account = self.account or self.order.account
        self.parent_id = self.parent_id or _int(self.order.parentId)
        qty = self.order.totalQuantity
        if qty is not None and qty != UNSET_DECIMAL:
            self.remaining = Decimal(qty)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of ``order``: ``qty`` at ``price``; cumulative and average after it."""

    order: SimOrder
    exec_id: str
    qty: Decimal
    price: float
    time_ns: int
    liquidity: int
    cum_qty: Decimal
    avg_price: float
    commission: float


@dataclass(frozen=True, slots=True)
class StatusChange:
    """``order``'s status is now ``status`` (``reason`` says why when it is not obvious)."""

    order: SimOrder
    status: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    """An order, a modification or a cancel refused with IB error ``code``."""

    order: SimOrder
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """Market events ``order`` caused on ``con_id`` by taking liquidity; publish them."""

    order: SimOrder
    con_id: int
    events: tuple[MarketEvent, ...]


MatchEvent = Fill | StatusChange | Rejected | BookUpdate


# ---- commissions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommissionModel:
    """IB-like commissions (USD-denominated rates, charged in the contract's currency).

    Stocks: tiered per share by the month's share volume so far (``stock_tiers`` are
    ``(up_to_shares, rate)``), at least ``stock_min`` per order, at most ``stock_max_pct`` of
    the execution's value. Options per contract with a per-order minimum; futures per contract
    plus exchange fees; FX and crypto in basis points of value with a per-order minimum.
    """

    stock_tiers: tuple[tuple[float, float], ...] = (
        (300_000, 0.0035),
        (3_000_000, 0.002),
        (20_000_000, 0.0015),
        (100_000_000, 0.001),
        (math.inf, 0.0005),
    )
    stock_min: float = 0.35
    stock_max_pct: float = 0.01
    option_per_contract: float = 0.65
    option_min: float = 1.0
    future_per_contract: float = 0.85
    future_fees_per_contract: float = 1.40
    fx_bps: float = 0.2
    fx_min: float = 2.0
    crypto_bps: float = 18.0
    crypto_min: float = 1.75

    def fee(
        self, sec_type: str, cum_qty: float, cum_value: float, paid: float, month_qty: float = 0.0
    ) -> float:
        """The commission due for an execution, given the order's executions so far.

        ``cum_qty`` and ``cum_value`` include this execution; ``paid`` is what the order was
        charged before it. The order's total (rate, then per-order minimum, then maximum) less
        ``paid`` is due, so splitting an order into fills never costs more than one fill.
        ``month_qty`` is the month's stock volume before this execution (it picks the tier).
        """
        cap = math.inf
        if sec_type == "STK":
            rate = self.stock_tiers[-1][1]
            for up_to, r in self.stock_tiers:
                if month_qty < up_to:
                    rate = r
                    break
            base, floor, cap = cum_qty * rate, self.stock_min, self.stock_max_pct * cum_value
        elif sec_type in ("OPT", "FOP"):
            base, floor = cum_qty * self.option_per_contract, self.option_min
        elif sec_type == "FUT":
            per = self.future_per_contract + self.future_fees_per_contract
            base, floor = cum_qty * per, 0.0
        elif sec_type == "CASH":
            base, floor = cum_value * self.fx_bps / 1e4, self.fx_min
        elif sec_type == "CRYPTO":
            base, floor = cum_value * self.crypto_bps / 1e4, self.crypto_min
        else:
            return 0.0
        return round(max(0.0, min(max(base, floor), cap) - paid), 6)


# ---- order vocabulary -------------------------------------------------------------------------

_KINDS = {
    "MKT": "MKT",
    "LMT": "LMT",
    "STP": "STP",
    "STP LMT": "STP LMT",
    "STPLMT": "STP LMT",
    "TRAIL": "TRAIL",
    "TRAIL LIMIT": "TRAIL LIMIT",
    "TRAILLMT": "TRAIL LIMIT",
    "MOC": "MOC",
    "LOC": "LOC",
}
#: The token each order type has in IB's ``ContractDetails.orderTypes`` list.
_TOKENS = {
    "MKT": "MKT",
    "LMT": "LMT",
    "STP": "STP",
    "STP LMT": "STPLMT",
    "TRAIL": "TRAIL",
    "TRAIL LIMIT": "TRAILLMT",
    "MOC": "MOC",
    "LOC": "LOC",
}
_RESTING = frozenset({"DAY", "GTC", "GTD"})
_TIFS = {
    "MKT": _RESTING | {"IOC", "FOK", "OPG"},
    "LMT": _RESTING | {"IOC", "FOK", "OPG"},
    "STP": _RESTING,
    "STP LMT": _RESTING,
    "TRAIL": _RESTING,
    "TRAIL LIMIT": _RESTING,
    "MOC": frozenset({"DAY"}),
    "LOC": frozenset({"DAY"}),
}
_STOPS = frozenset({"STP", "STP LMT", "TRAIL", "TRAIL LIMIT"})
_FIXED_STOPS = frozenset({"STP", "STP LMT"})
_TRAILS = frozenset({"TRAIL", "TRAIL LIMIT"})
_WITH_LIMIT = frozenset({"LMT", "STP LMT", "LOC"})

_ALGOS = {"vwap": "Vwap", "twap": "Twap", "adaptive": "Adaptive"}
_ALGO_PARAMS = {
    "Vwap": frozenset(
        {"maxPctVol", "startTime", "endTime", "allowPastEndTime", "noTakeLiq", "speedUp"}
        | {"monetaryValue"}
    ),
    "Twap": frozenset({"strategyType", "startTime", "endTime", "allowPastEndTime"})
    | {"monetaryValue"},
    "Adaptive": frozenset({"adaptivePriority"}),
}
_TWAP_STYLES = {
    "Marketable": "take",
    "Matching Midpoint": "mid",
    "Matching Same Side": "same",
    "Matching Last": "last",
}
_ADAPTIVE = {"Urgent": ("take", 0.25), "Normal": ("mid", 1.0), "Patient": ("same", 3.0)}
_BOOLS = {"0": False, "1": True, "false": False, "true": True}

# trigger observation kinds
_LAST, _BIDASK, _MID, _EITHER = 0, 1, 2, 3
_METHODS = {1: (_BIDASK, 2), 2: (_LAST, 1), 3: (_LAST, 2), 4: (_BIDASK, 1), 7: (_EITHER, 1)}
_METHODS[8] = (_MID, 1)

_TICK_REASON = "The price does not conform to the minimum price variation for this contract."


def _set(x: float | None) -> bool:
    return x is not None and x != UNSET_DOUBLE and not math.isnan(x)


def _int(x: int | None) -> int:
    """An integer order field, 0 when unset (decoded orders carry IB's UNSET_INTEGER)."""
    return 0 if x is None or x == UNSET_INTEGER else int(x)


def _qty(x: Decimal | float | int | None) -> Decimal | None:
    if x is None or x == UNSET_DECIMAL:
        return None
    return x if isinstance(x, Decimal) else Decimal(repr(x))


_TIME = re.compile(
    r"^(?:(?P<date>\d{8})(?P<sep>[ -]))?"
    r"(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\s+(?P<tz>\S+))?$"
)


def parse_ib_time(text: str, now_ns: int, default_zone: str) -> int:
    """An IB order time as ns: ``YYYYMMDD HH:MM:SS [zone]``, ``YYYYMMDD-HH:MM:SS`` (UTC),
    or ``HH:MM:SS [zone]`` (on ``now_ns``'s date there). ValueError if it is none of them."""
    m = _TIME.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an IB time (YYYYMMDD HH:MM:SS zone)")
    if m["sep"] == "-":
        if m["tz"]:
            raise ValueError(f"{text!r}: the YYYYMMDD-HH:MM:SS form is UTC and takes no zone")
        tz = UTC
    else:
        try:
            tz = zone(m["tz"] or default_zone)
        except (KeyError, ValueError):
            raise ValueError(f"{text!r}: unknown time zone {m['tz']!r}") from None
    if m["date"]:
        d = m["date"]
        day = datetime(int(d[:4]), int(d[4:6]), int(d[6:]), tzinfo=tz)
    else:
        local = datetime.fromtimestamp(now_ns / NS, tz)
        day = datetime(local.year, local.month, local.day, tzinfo=tz)
    t = day + timedelta(hours=int(m["h"]), minutes=int(m["m"]), seconds=int(m["s"]))
    return int(t.timestamp()) * NS


def _r(code: int, reason: str) -> Rejection:
    return Rejection(code, reason)


# ---- the engine -------------------------------------------------------------------------------


class MatchingEngine:
    """IB order semantics against a ``Market``. Every method returns the events it caused.

    ``time_zone`` is the gateway's: order times written without a zone are in it.
    """

    def __init__(
        self,
        market: Market,
        commission: CommissionModel | None = None,
        *,
        algo_horizon_ns: int = 60 * NS,
        algo_slice_ns: int = 0,
        time_zone: str = "US/Eastern",
        exec_id_prefix: str = "0000e0d5",
        exec_id_start: int = 0x6582A1B2,
    ) -> None:
        self.market = market
        self.commission = commission or CommissionModel()
        self.algo_horizon_ns = algo_horizon_ns
        self.algo_slice_ns = algo_slice_ns
        self.time_zone = time_zone
        self._exec_prefix = exec_id_prefix
        self._exec_seq = exec_id_start
        self._live: dict[SimOrder, None] = {}
        self._by_con: dict[int, list[SimOrder]] = {}
        self._ids: dict[tuple[int, int], SimOrder] = {}
        self._children: dict[SimOrder, list[SimOrder]] = {}
        self._oca: dict[str, list[SimOrder]] = {}
        self._seen: dict[int, int] = {}
        self._timers: list[tuple[int, int, int, SimOrder]] = []
        self._timer_seq = itertools.count()
        self._month: tuple[int, int] = (0, 0)
        self._month_shares = 0.0
        self._touch: dict[int, tuple[int, int, int, int]] = {}
        self._tokens: dict[str, frozenset[str] | None] = {}
        self._day_end: dict[int, tuple[int, int]] = {}

    # -- queries -------------------------------------------------------------------------------

    def open_orders(self) -> list[SimOrder]:
        """Every order not yet done, in submission order."""
        return list(self._live)

    # -- validation ----------------------------------------------------------------------------

    def validate(self, sim: SimOrder) -> Rejection | None:
        """Why IB would reject this order (code 201, or 110 for an off-tick price), else None."""
        rej = self.check(sim.contract, sim.order, sim.instrument)
        sim._checked = rej is None
        return rej

    def check(self, contract: Contract, order: Order, inst: SimInstrument) -> Rejection | None:
        """``validate`` for a bare order on an instrument (used for modifications too)."""
        g = self.market.state(inst.con_id).grid
        what = f"{inst.symbol} {inst.sec_type}"
        action = (order.action or "").upper()
        if action not in ("BUY", "SELL"):
            return _r(201, f"Order rejected - reason: invalid action {order.action!r} (BUY, SELL)")
        qty = _qty(order.totalQuantity)
        if qty is None or qty <= 0:
            return _r(201, "Order rejected - reason: the order quantity must be greater than 0")
        if g.lots(qty) is None:
            return _r(
                201,
                f"Order rejected - reason: the quantity {qty} is not a multiple of the size "
                f"increment {g.increment} for {what}",
            )
        if qty < Decimal(repr(inst.min_size)):
            return _r(
                201,
                f"Order rejected - reason: the quantity {qty} is below the minimum size "
                f"{inst.min_size} for {what}",
            )
        kind = _KINDS.get((order.orderType or "").upper().strip())
        if kind is None:
            return _r(201, f"Order rejected - reason: unknown order type {order.orderType!r}")
        tokens = self._tokens.get(inst.order_types, ())
        if tokens == ():
            tokens = self._tokens[inst.order_types] = (
                frozenset(inst.order_types.split(",")) if inst.order_types else None
            )
        if tokens is not None and _TOKENS[kind] not in tokens:
            return _r(
                201,
                f"Order rejected - reason: the order type {kind} is not supported for {what} "
                f"on {inst.exchange}",
            )
        tif = (order.tif or "DAY").upper()
        if tif not in _TIFS[kind] or (tokens is not None and tif != "DAY" and tif not in tokens):
            return _r(
                201,
                f"Order rejected - reason: the time in force {tif} is invalid for {kind} "
                f"orders on {what}",
            )
        if kind == "MKT" and inst.sec_type == "CRYPTO":
            # IB's crypto rules (PAXOS/ZEROHASH): a market order is IOC only, and a market buy
            # is sized in cash (cashQty), never in coins.
            if tif != "IOC":
                return _r(
                    201,
                    f"Order rejected - reason: crypto market orders support only the time in "
                    f"force IOC, not {tif}, for {what}",
                )
            if action == "BUY" and not (_set(order.cashQty) and order.cashQty > 0):
                return _r(
                    201,
                    "Order rejected - reason: a crypto market BUY order must be sized by cash "
                    f"quantity (cashQty), not by totalQuantity, for {what}",
                )
        rej = self._check_prices(order, kind, g)
        if rej is not None:
            return rej
        if tif == "GTD":
            if not order.goodTillDate:
                return _r(201, "Order rejected - reason: a GTD order needs goodTillDate")
            try:
                parse_ib_time(order.goodTillDate, 0, self.time_zone)
            except ValueError as e:
                return _r(201, f"Order rejected - reason: goodTillDate {e}")
        display = _int(order.displaySize)
        if display > 0:
            if kind not in ("LMT", "STP LMT", "TRAIL LIMIT"):
                return _r(201, "Order rejected - reason: an iceberg (displaySize) needs a limit")
            if (tokens is not None and "ICE" not in tokens) or g.lots(display) is None:
                return _r(201, f"Order rejected - reason: invalid displaySize for {what}")
        if order.algoStrategy:
            return self._check_algo(order, kind, tif, inst, tokens)
        return None

    def _check_prices(self, order: Order, kind: str, g: Grid) -> Rejection | None:
        ok = _on_grid
        if kind in _WITH_LIMIT:
            if not _set(order.lmtPrice):
                return _r(201, f"Order rejected - reason: a {kind} order needs a limit price")
            if not ok(g, order.lmtPrice):
                return _r(110, _TICK_REASON)
        if kind in ("STP", "STP LMT"):
            if not _set(order.auxPrice):
                return _r(201, f"Order rejected - reason: a {kind} order needs a stop (auxPrice)")
            if not ok(g, order.auxPrice):
                return _r(110, _TICK_REASON)
        if kind in _TRAILS:
            amount = _set(order.auxPrice) and order.auxPrice > 0
            pct = _set(order.trailingPercent) and order.trailingPercent > 0
            if amount == pct:
                return _r(
                    201,
                    "Order rejected - reason: a trailing order needs either a trailing amount "
                    "(auxPrice) or a trailingPercent",
                )
            if amount and not ok(g, order.auxPrice, rule=False):
                return _r(110, _TICK_REASON)
            if pct and order.trailingPercent >= 100:
                return _r(201, "Order rejected - reason: trailingPercent must be below 100")
            if _set(order.trailStopPrice) and not ok(g, order.trailStopPrice, rule=False):
                return _r(110, _TICK_REASON)
        if kind == "TRAIL LIMIT":
            if _set(order.lmtPriceOffset):
                if not ok(g, order.lmtPriceOffset, rule=False):
                    return _r(110, _TICK_REASON)
            elif not (_set(order.lmtPrice) and _set(order.trailStopPrice)):
                return _r(
                    201,
                    "Order rejected - reason: a TRAIL LIMIT order needs lmtPriceOffset "
                    "(or lmtPrice with trailStopPrice)",
                )
            elif not ok(g, order.lmtPrice):
                return _r(110, _TICK_REASON)
        return None

    def _check_algo(
        self,
        order: Order,
        kind: str,
        tif: str,
        inst: SimInstrument,
        tokens: frozenset[str] | None,
    ) -> Rejection | None:
        name = _ALGOS.get(order.algoStrategy.lower())
        if name is None:
            return _r(
                201,
                f"Order rejected - reason: algo strategy {order.algoStrategy!r} is not "
                "supported (Vwap, Twap, Adaptive)",
            )
        if (tokens is not None and "ALGO" not in tokens) or (
            name != "Adaptive" and inst.sec_type != "STK"
        ):
            return _r(201, f"Order rejected - reason: {name} is not available for {inst.symbol}")
        if kind not in ("MKT", "LMT") or tif not in ("DAY", "GTC"):
            return _r(201, f"Order rejected - reason: {name} needs a MKT or LMT order, DAY or GTC")
        known = _ALGO_PARAMS[name]
        times: dict[str, tuple[bool, int]] = {}
        for tv in order.algoParams or ():
            tag, value = tv.tag, str(tv.value)
            bad = f"Order rejected - reason: invalid {name} parameter {tag}={value!r}"
            if tag not in known:
                return _r(
                    201,
                    f"Order rejected - reason: unknown {name} parameter {tag!r} "
                    f"(known: {', '.join(sorted(known))})",
                )
            if tag in ("startTime", "endTime"):
                if value:
                    try:
                        dated = value.strip()[:8].isdigit()
                        times[tag] = (dated, parse_ib_time(value, 0, self.time_zone))
                    except ValueError:
                        return _r(201, bad)
            elif tag in ("allowPastEndTime", "noTakeLiq", "speedUp"):
                if value.lower() not in _BOOLS:
                    return _r(201, bad)
            elif tag == "maxPctVol":
                try:
                    pct = float(value)
                except ValueError:
                    return _r(201, bad)
                if not 0.01 <= pct <= 0.5:
                    return _r(201, f"{bad}: maxPctVol must be within 0.01..0.5")
            elif tag == "monetaryValue":
                try:
                    if value and float(value) < 0:
                        return _r(201, bad)
                except ValueError:
                    return _r(201, bad)
            elif tag == "strategyType":
                if value not in _TWAP_STYLES:
                    return _r(201, f"{bad}: one of {', '.join(_TWAP_STYLES)}")
            elif tag == "adaptivePriority" and value not in _ADAPTIVE:
                return _r(201, f"{bad}: one of Patient, Normal, Urgent")
        # a time of day and a dated time only compare once placed (submit checks that)
        start, end = times.get("startTime"), times.get("endTime")
        if start and end and start[0] == end[0] and end[1] <= start[1]:
            return _r(201, f"Order rejected - reason: {name} endTime is not after startTime")
        return None

    # -- submission ----------------------------------------------------------------------------

    def submit(self, sim: SimOrder, now_ns: int) -> list[MatchEvent]:
        """Accept a new order: validate it (unless ``validate`` passed), then place it.

        A marketable order fills at once; the events say what happened.
        """
        out: list[MatchEvent] = []
        if self._admit(sim, now_ns, out):
            self._activate(sim, now_ns, out, True)
        return out

    def submit_chain(self, sims: list[SimOrder], now_ns: int) -> list[MatchEvent]:
        """Orders transmitted together (IB's ``transmit`` chain: a parent, then its children).

        Every order is admitted before any works, and the children are placed before their
        parent, so a parent that fills at once finds its children attached, as at IB.
        """
        out: list[MatchEvent] = []
        admitted: list[SimOrder] = []
        refused: set[int] = set()
        for sim in sims:
            if sim.parent_id in refused:
                sim.status, sim.phase = "Inactive", Phase.DONE
                reason = f"Order rejected - reason: parent order {sim.parent_id} was rejected"
                out.append(Rejected(sim, 201, reason))
                refused.add(sim.order_id)
            elif self._admit(sim, now_ns, out):
                admitted.append(sim)
            else:
                refused.add(sim.order_id)
        ids = {sim.order_id for sim in admitted}
        children = [sim for sim in admitted if sim.parent_id in ids]
        for sim in [*children, *(sim for sim in admitted if sim.parent_id not in ids)]:
            if sim.phase is Phase.NEW:
                self._activate(sim, now_ns, out, True)
        return out

    def _admit(self, sim: SimOrder, now_ns: int, out: list[MatchEvent]) -> bool:
        """Validate and register a new order; False (with a ``Rejected``) if it is refused."""
        rej = None if sim._checked else self.check(sim.contract, sim.order, sim.instrument)
        if rej is None and sim.phase is not Phase.NEW:
            rej = _r(103, f"Duplicate order id {sim.order_id}")
        if rej is None:
            self._derive(sim, now_ns)
            if sim._expire and sim._expire <= now_ns:
                rej = _r(
                    201,
                    f"Order rejected - reason: goodTillDate {sim.order.goodTillDate} has passed",
                )
            elif sim._algo is not None and sim._algo.end <= sim._algo.start:
                rej = _r(201, "Order rejected - reason: the algo's endTime is not after its start")
        if rej is not None:
            if sim.phase is Phase.NEW:
                sim.status = "Inactive"
                sim.phase = Phase.DONE
            out.append(Rejected(sim, rej.code, rej.reason))
            return False
        sim.submitted_ns = sim.updated_ns = now_ns
        self._ids[(sim.client_id, sim.order_id)] = sim
        return True

    def _derive(self, o: SimOrder, anchor_ns: int) -> None:
        """Everything the engine needs from ``o.order``, in ticks and lots (order is valid)."""
        order, inst = o.order, o.instrument
        g = self.market.state(inst.con_id).grid
        o._kind = kind = _KINDS[order.orderType.upper().strip()]
        o._tif = tif = (order.tif or "DAY").upper()
        o._buy = order.action.upper() == "BUY"
        o._lots = g.lots(_qty(order.totalQuantity)) or 0
        o._lmt = g.ticks(order.lmtPrice) if kind in _WITH_LIMIT else None
        o._stop0 = None
        o._trail = 0
        o._trail_pct = 0.0
        o._offset = 0
        if kind in ("STP", "STP LMT"):
            o._stop0 = g.ticks(order.auxPrice)
        if kind in _TRAILS:
            if _set(order.auxPrice) and order.auxPrice > 0:
                o._trail = g.ticks(order.auxPrice) or 0
            else:
                o._trail_pct = order.trailingPercent
            if _set(order.trailStopPrice):
                o._stop0 = g.ticks(order.trailStopPrice)
        if kind == "TRAIL LIMIT":
            if _set(order.lmtPriceOffset):
                o._offset = g.ticks(order.lmtPriceOffset) or 0
            else:
                stop, lmt = g.ticks(order.trailStopPrice) or 0, g.ticks(order.lmtPrice) or 0
                o._offset = abs(stop - lmt)
        display = _int(order.displaySize)
        o._display = (g.lots(display) or 0) if display > 0 else 0
        method = order.triggerMethod
        if method not in _METHODS:
            method = 4 if inst.sec_type == "CASH" else 1 if inst.sec_type == "OPT" else 2
        o._method, o._need = _METHODS[method]
        if tif == "GTC" or tif in ("IOC", "FOK"):
            o._expire = 0
        elif tif == "GTD":
            o._expire = parse_ib_time(order.goodTillDate, anchor_ns, self.time_zone)
        else:
            o._expire = self._session_end(inst, anchor_ns)
        o._algo = self._plan_algo(o, anchor_ns) if order.algoStrategy else None
        oca = []
        if order.ocaGroup:
            oca.append(f"oca:{order.account}:{order.ocaGroup}:{order.ocaType}")
        if o.parent_id:
            oca.append(f"bracket:{o.client_id}:{o.parent_id}:3")
        o._oca = tuple(oca)

    def _session_end(self, inst: SimInstrument, now: int) -> int:
        """``session_end_after``, remembered: it is the same for every time until that end."""
        since, end = self._day_end.get(inst.con_id, (0, 0))
        if not since <= now < end:
            since, end = now, session_end_after(inst, now)
            self._day_end[inst.con_id] = (since, end)
        return end

    def _plan_algo(self, o: SimOrder, anchor_ns: int) -> _Algo:
        order = o.order
        name = _ALGOS[order.algoStrategy.lower()]
        params = {tv.tag: str(tv.value) for tv in order.algoParams or ()}
        horizon = self.algo_horizon_ns
        if name == "Adaptive":
            style, scale = _ADAPTIVE[params.get("adaptivePriority") or "Normal"]
            start, end, past_end, pct = anchor_ns, anchor_ns + int(horizon * scale), True, 0.0
        else:
            tz = self.time_zone
            start = anchor_ns
            if params.get("startTime"):
                start = max(anchor_ns, parse_ib_time(params["startTime"], anchor_ns, tz))
            end = start + horizon
            if params.get("endTime"):
                end = parse_ib_time(params["endTime"], anchor_ns, tz)
            past_end = _BOOLS.get(params.get("allowPastEndTime", "0").lower(), False)
            if name == "Vwap":
                no_take = _BOOLS.get(params.get("noTakeLiq", "0").lower(), False)
                style = "same" if no_take else "take"
                pct = float(params["maxPctVol"]) if params.get("maxPctVol") else 0.0
            else:
                style, pct = _TWAP_STYLES[params.get("strategyType") or "Marketable"], 0.0
        step = self.algo_slice_ns or max(1_000_000, (end - start) // 10)
        return _Algo(style, start, end, step, start, past_end, pct)

    def _activate(self, o: SimOrder, now: int, out: list[MatchEvent], check_parent: bool) -> None:
        if check_parent and o.parent_id:
            parent = self._ids.get((o.client_id, o.parent_id))
            if parent is not None and parent is not o and parent.status != "Filled":
                if parent.phase is Phase.DONE:
                    o.status, o.phase = "Inactive", Phase.DONE
                    out.append(
                        Rejected(
                            o,
                            201,
                            f"Order rejected - reason: parent order "
                            f"{o.parent_id} is {parent.status}",
                        )
                    )
                    return
                o.phase, o.status, o.why_held = Phase.HELD, "PreSubmitted", "child"
                self._live[o] = None
                self._children.setdefault(parent, []).append(o)
                self._join_oca(o)
                self._schedule(o)
                out.append(StatusChange(o, "PreSubmitted", "waiting for the parent to fill"))
                return
        st = self.market.state(o.instrument.con_id)
        o.why_held = ""
        o._since = st.trade_seq
        if o not in self._live:
            self._live[o] = None
            self._join_oca(o)
        self._by_con.setdefault(o.instrument.con_id, []).append(o)
        kind = o._kind
        if o._tif == "OPG" or kind in ("MOC", "LOC"):
            o.phase, o.status = Phase.AUCTION, "Submitted"
            o._limit = o._lmt
            out.append(StatusChange(o, "Submitted"))
        elif o._algo is not None:
            o.phase, o.status = Phase.ALGO, "Submitted"
            o._limit = o._lmt
            out.append(StatusChange(o, "Submitted"))
        elif kind in _STOPS:
            o.phase, o.status = Phase.TRIGGER, "PreSubmitted"
            out.append(StatusChange(o, "PreSubmitted", "waiting for the stop to trigger"))
            self._arm(o, st)
            if self._observe_now(o, st):
                self._trigger(o, now, out)
        else:
            o.phase, o.status = Phase.WORKING, "Submitted"
            o._limit = self._working_limit(o)
            out.append(StatusChange(o, "Submitted"))
            self._execute(o, now, out)
        if o.phase is not Phase.DONE:
            self._schedule(o)

    def _join_oca(self, o: SimOrder) -> None:
        for key in o._oca:
            self._oca.setdefault(key, []).append(o)

    # -- modification and cancels --------------------------------------------------------------

    def modify(self, sim: SimOrder, new_order: Order, now_ns: int) -> list[MatchEvent]:
        """Change a live order's quantity, prices, TIF or display size (IB's placeOrder on a
        live id). A refused change leaves the order as it was (``Rejected``: 104 done order,
        105 different side, type or algo, 201/110 invalid, 201 quantity below the filled)."""
        o = sim
        if o.phase is Phase.DONE:
            return [Rejected(o, 104, f"Cannot modify an order that is {o.status}")]
        rej = self.check(o.contract, new_order, o.instrument)
        old = o.order
        if rej is None:
            same_side = (new_order.action or "").upper() == old.action.upper()
            same_kind = _KINDS.get((new_order.orderType or "").upper().strip()) == o._kind
            same_algo = (new_order.algoStrategy or "").lower() == (old.algoStrategy or "").lower()
            new_tif = (new_order.tif or "DAY").upper()
            same_tif = new_tif == o._tif or (new_tif in _RESTING and o._tif in _RESTING)
            if not (same_side and same_kind and same_algo and same_tif):
                rej = _r(
                    105,
                    "Order being modified does not match original order (side, type, "
                    "algo or time in force changed)",
                )
        g = self.market.state(o.instrument.con_id).grid
        if rej is None:
            new_lots = g.lots(_qty(new_order.totalQuantity)) or 0
            if new_lots < o._filled_lots:
                rej = _r(
                    201,
                    f"Order rejected - reason: the new quantity {new_order.totalQuantity} "
                    f"is below the filled quantity {o.filled}",
                )
        if rej is not None:
            return [Rejected(o, rej.code, rej.reason)]
        out: list[MatchEvent] = []
        prev_limit, prev_lots, prev_stop = o._limit, o._lots, o._stop
        prev_trail = (o._trail, o._trail_pct, o._offset)
        prev_algo, prev_oca = o._algo, o._oca
        if (
            o._kind in _TRAILS
            and _set(new_order.trailStopPrice)
            and g.ticks(new_order.trailStopPrice) == prev_stop
        ):
            new_order.trailStopPrice = UNSET_DOUBLE  # the client echoed our stop back
        o.order = new_order
        self._derive(o, o.submitted_ns)
        o._oca = prev_oca  # group membership is fixed at placement
        o.updated_ns = now_ns
        o.remaining = g.size(o._lots - o._filled_lots)
        if prev_algo is not None and o._algo is not None:
            o._algo.next, o._algo.vol0 = prev_algo.next, prev_algo.vol0
        st = self.market.state(o.instrument.con_id)
        if o._lots == o._filled_lots:
            self._done(o, "Filled", "quantity reduced to the filled quantity", now_ns, out)
            return out
        out.append(StatusChange(o, o.status, "modified"))
        if o.phase is Phase.TRIGGER:
            trail_changed = (o._trail, o._trail_pct, o._offset) != prev_trail
            if o._kind in _TRAILS and o._stop0 is None and not trail_changed:
                o._stop = prev_stop
            else:
                self._arm(o, st)
            if o._stop != prev_stop:
                o._hits = 0
            if self._observe_now(o, st):
                self._trigger(o, now_ns, out)
        elif o.phase is Phase.WORKING:
            o._limit = self._working_limit(o)
            if o._display:
                o._shown = min(o._display, o._lots - o._filled_lots)
            if self._marketable(o, st):
                self._execute(o, now_ns, out)
            elif o._limit != prev_limit or o._lots > prev_lots:
                self._rest_state(o, st)
        elif o.phase in (Phase.AUCTION, Phase.ALGO):
            o._limit = o._lmt
        if o.phase is not Phase.DONE:
            self._schedule(o)
        return out

    def cancel(self, sim: SimOrder, now_ns: int) -> list[MatchEvent]:
        """Cancel a live order (and its held children); 10148 if it is already done."""
        if sim.phase is Phase.DONE or sim.phase is Phase.NEW:
            reason = (
                f"OrderId {sim.order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {sim.status}."
            )
            return [Rejected(sim, 10148, reason)]
        out: list[MatchEvent] = []
        self._done(sim, "Cancelled", "", now_ns, out)
        return out

    def cancel_all(self, now_ns: int, client_id: int | None = None) -> list[MatchEvent]:
        """Cancel every live order (IB's reqGlobalCancel), or only ``client_id``'s."""
        out: list[MatchEvent] = []
        for o in list(self._live):
            if o.phase is not Phase.DONE and (client_id is None or o.client_id == client_id):
                self._done(o, "Cancelled", "global cancel", now_ns, out)
        return out

    # -- the market moved ----------------------------------------------------------------------

    def on_market(self, con_id: int, now_ns: int) -> list[MatchEvent]:
        """Match ``con_id``'s orders against the prints and the touch since the last call.

        Call it after ``Market.step`` (once after several steps is fine: prints are kept).
        """
        orders = self._by_con.get(con_id)
        st = self.market.state(con_id)
        seen = self._seen.get(con_id, 0)
        self._seen[con_id] = st.trade_seq
        touch = st.touch()
        moved = self._touch.get(con_id) != touch
        self._touch[con_id] = touch
        if not orders or (st.trade_seq == seen and not moved):
            return []  # no print and the same touch: nothing can fill or trigger
        trades: list[tuple[int, int, int]] = []
        lo, hi = 1 << 62, -1
        if st.trade_seq > seen:  # sequence numbers are contiguous: the newest n are the new ones
            n = min(st.trade_seq - seen, len(st.trades))
            trades = list(itertools.islice(reversed(st.trades), n))[::-1]
            prices = [t[1] for t in trades]
            lo, hi = min(prices), max(prices)
        bid, _, ask, _ = touch
        alloc = [t[2] for t in trades]
        out: list[MatchEvent] = []
        working, trigger = Phase.WORKING, Phase.TRIGGER
        for o in tuple(orders):
            ph = o.phase
            if ph is working:
                lim = o._limit
                # cheap skip: no print reached the price, the touch does not cross it, and no
                # queue estimate to maintain
                if lim is not None and not o._queue and not o._display:
                    if o._buy and lo > lim and not 0 <= ask <= lim:
                        continue
                    if not o._buy and hi < lim and bid < lim:
                        continue
                self._match_resting(o, trades, alloc, st, now_ns, out)
            elif ph is trigger:
                simple = o._need == 1 and o._method == _LAST and o._kind in _FIXED_STOPS
                if simple and ((hi < o._stop) if o._buy else (lo > o._stop)):
                    continue  # no print reached the stop
                self._observe(o, trades, st, now_ns, out)
        return out

    def on_time(self, now_ns: int) -> list[MatchEvent]:
        """Expire DAY/GTD orders and work algo slices that are due by ``now_ns``."""
        out: list[MatchEvent] = []
        timers = self._timers
        while timers and timers[0][0] <= now_ns:
            _, _, ver, o = heapq.heappop(timers)
            if ver != o._ver or o.phase is Phase.DONE:
                continue
            if o._expire and now_ns >= o._expire:
                what = "GTD" if o._tif == "GTD" else "DAY"
                self._done(o, "Cancelled", f"{what} order expired", now_ns, out)
                continue
            if o.phase is Phase.ALGO:
                self._slice(o, now_ns, out)
            if o.phase is not Phase.DONE:
                self._schedule(o)
        return out

    def auction(self, con_id: int, kind: str, now_ns: int) -> list[MatchEvent]:
        """Run the ``"open"`` (OPG orders) or ``"close"`` (MOC, LOC) auction for ``con_id``."""
        if kind not in ("open", "close"):
            raise ValueError(f"auction kind must be 'open' or 'close', not {kind!r}")
        out: list[MatchEvent] = []
        price = self.market.auction_price(con_id)
        for o in tuple(self._by_con.get(con_id, ())):
            if o.phase is not Phase.AUCTION or (o._tif == "OPG") != (kind == "open"):
                continue
            lim = o._limit
            if price is None:
                self._done(o, "Cancelled", f"no {kind} auction price", now_ns, out)
            elif lim is None or (price <= lim if o._buy else price >= lim):
                self._fill(o, o._lots - o._filled_lots, price, LIQ_AUCTION, now_ns, out)
            else:
                g = self.market.state(con_id).grid
                self._done(
                    o,
                    "Cancelled",
                    f"the {kind} auction price {g.price(price)} is beyond the limit",
                    now_ns,
                    out,
                )
        return out

    # -- internals: execution ------------------------------------------------------------------

    def _working_limit(self, o: SimOrder) -> int | None:
        if o._kind == "TRAIL LIMIT":
            return o._stop + o._offset if o._buy else o._stop - o._offset
        if o._kind in ("MKT", "STP", "TRAIL"):
            return None
        return o._lmt

    def _marketable(self, o: SimOrder, st: BookState) -> bool:
        lim = o._limit
        if o._buy:
            return bool(st.ask_px) and (lim is None or st.ask_px[0] <= lim)
        return bool(st.bid_px) and (lim is None or st.bid_px[0] >= lim)

    def _execute(self, o: SimOrder, now: int, out: list[MatchEvent]) -> None:
        """Take what the book offers now; rest, or cancel the remainder for IOC/FOK."""
        con = o.instrument.con_id
        st = self.market.state(con)
        want = o._lots - o._filled_lots
        if o._tif == "FOK" and st.available(o._buy, o._limit) < want:
            self._done(o, "Cancelled", "FOK order could not be filled in full", now, out)
            return
        fills, events = self.market.take_ticks(con, o._buy, want, o._limit)
        if events:
            out.append(BookUpdate(o, con, tuple(events)))
        for price, lots in fills:
            # an iceberg sends its display size at a time: each slice is its own execution
            step = o._display or lots
            while lots > 0 and o.phase is not Phase.DONE:
                n = min(step, lots)
                self._fill(o, n, price, LIQ_REMOVED, now, out)
                lots -= n
        if o.phase is Phase.DONE:
            return
        if o._tif in ("IOC", "FOK"):
            self._done(o, "Cancelled", "IOC order's unfilled remainder cancelled", now, out)
            return
        self._rest_state(o, st)

    def _rest_state(self, o: SimOrder, st: BookState) -> None:
        """Join the back of the queue at the order's price."""
        o._since = st.trade_seq
        o._queue = st.level_lots_at(o._buy, o._limit) if o._limit is not None else 0
        if o._display:
            o._shown = min(o._display, o._lots - o._filled_lots)

    def _match_resting(
        self,
        o: SimOrder,
        trades: list[tuple[int, int, int]],
        alloc: list[int],
        st: BookState,
        now: int,
        out: list[MatchEvent],
    ) -> None:
        lim = o._limit
        if lim is None:  # a market order the book could not fill yet
            if self._marketable(o, st):
                self._execute(o, now, out)
            return
        buy = o._buy
        left = o._lots - o._filled_lots
        cap = min(left, o._shown) if o._display else left
        got = 0
        since = o._since
        for i, (seq, px, _) in enumerate(trades):
            if got >= cap:
                break
            if seq <= since or not alloc[i]:
                continue
            avail = alloc[i]
            if px == lim:
                used = min(o._queue, avail)
                o._queue -= used
                avail -= used
            elif (px > lim) if buy else (px < lim):
                continue
            q = min(avail, cap - got)
            if q > 0:
                alloc[i] -= q
                got += q
        if got:
            self._fill(o, got, lim, LIQ_ADDED, now, out)
        if o.phase is Phase.DONE:
            return
        if got < cap and self._marketable(o, st):
            fills, events = self.market.take_ticks(
                o.instrument.con_id, buy, cap - got, lim, print_at=lim
            )
            if events:
                out.append(BookUpdate(o, o.instrument.con_id, tuple(events)))
            crossed = sum(q for _, q in fills)
            o._since = st.trade_seq
            if crossed:
                got += crossed
                self._fill(o, crossed, lim, LIQ_ADDED, now, out)
        if o.phase is Phase.DONE:
            return
        side = st.bid_px if buy else st.ask_px
        visible = side and (side[-1] <= lim <= side[0] if buy else side[0] <= lim <= side[-1])
        if o._queue and visible:
            # after the prints, which already shrank the level: inside the visible book the
            # level's size bounds the queue ahead of us, as orders ahead cancel
            o._queue = min(o._queue, st.level_lots_at(buy, lim))
        if o._display and got:
            o._shown -= got
            if o._shown <= 0:
                self._rest_state(o, st)

    def _fill(
        self, o: SimOrder, lots: int, price_ticks: float, liquidity: int, now: int, out: list
    ) -> None:
        inst = o.instrument
        g = self.market.state(inst.con_id).grid
        o._filled_lots += lots
        o._notional += price_ticks * lots
        o.filled = g.size(o._filled_lots)
        o.remaining = g.size(o._lots - o._filled_lots)
        price = g.price(price_ticks)
        o.last_fill_price = price
        o.avg_fill_price = g.price(o._notional / o._filled_lots)
        o.updated_ns = now
        qty = g.size(lots)
        fee = self._fee(o, float(qty), price, now)
        o.commission += fee
        self._exec_seq += 1
        exec_id = f"{self._exec_prefix}.{self._exec_seq & 0xFFFFFFFF:08x}.01.01"
        out.append(Fill(o, exec_id, qty, price, now, liquidity, o.filled, o.avg_fill_price, fee))
        for key in o._oca:
            self._oca_fill(o, key, lots, now, out)
        if o._filled_lots >= o._lots:
            self._done(o, "Filled", "", now, out)

    def _fee(self, o: SimOrder, qty: float, price: float, now: int) -> float:
        inst = o.instrument
        month = time.gmtime(now // NS)[:2]
        if month != self._month:
            self._month, self._month_shares = month, 0.0
        o._value += qty * price * (float(inst.multiplier) if inst.multiplier else 1.0)
        fee = self.commission.fee(
            inst.sec_type, float(o.filled), o._value, o.commission, self._month_shares
        )
        if inst.sec_type == "STK":
            self._month_shares += qty
        return fee

    def _oca_fill(self, o: SimOrder, key: str, lots: int, now: int, out: list) -> None:
        group = self._oca.get(key)
        if not group:
            return
        reduce = key.endswith((":2", ":3"))
        for other in tuple(group):
            if other is o or other.phase is Phase.DONE:
                continue
            if not reduce:
                self._done(other, "Cancelled", f"OCA group: order {o.order_id} filled", now, out)
                continue
            other._lots -= lots
            g = self.market.state(other.instrument.con_id).grid
            if other._lots <= other._filled_lots:
                other._lots = max(other._lots, other._filled_lots)
                self._done(other, "Cancelled", f"OCA group: order {o.order_id} filled", now, out)
            else:
                other.order.totalQuantity = g.size(other._lots)
                other.remaining = g.size(other._lots - other._filled_lots)
                out.append(StatusChange(other, other.status, f"OCA reduced by order {o.order_id}"))

    def _done(self, o: SimOrder, status: str, reason: str, now: int, out: list) -> None:
        o.status, o.phase, o.updated_ns = status, Phase.DONE, now
        self._live.pop(o, None)
        orders = self._by_con.get(o.instrument.con_id)
        if orders and o in orders:
            orders.remove(o)
        for key in o._oca:
            group = self._oca.get(key)
            if group and o in group:
                group.remove(o)
                if not group:
                    del self._oca[key]
        out.append(StatusChange(o, status, reason))
        for child in self._children.pop(o, ()):
            if child.phase is not Phase.HELD:
                continue
            if status == "Filled":
                self._activate(child, now, out, False)
            else:
                self._done(child, "Cancelled", f"parent order {o.order_id} {status}", now, out)

    def _schedule(self, o: SimOrder) -> None:
        due = o._expire
        if o.phase is Phase.ALGO and o._algo is not None:
            due = min(due, o._algo.next) if due else o._algo.next
        if due:
            o._ver += 1
            heapq.heappush(self._timers, (due, next(self._timer_seq), o._ver, o))

    # -- internals: stops ----------------------------------------------------------------------

    def _touch_ref(self, o: SimOrder, st: BookState) -> float | None:
        """The touch price a stop watches: the midpoint, or the ask (buy) / bid (sell)."""
        b, _, a, _ = st.touch()
        if o._method == _MID or o._method == _LAST:
            return (b + a) / 2 if b >= 0 and a >= 0 else None
        ref = a if o._buy else b
        return float(ref) if ref >= 0 else None

    def _reference(self, o: SimOrder, st: BookState) -> float | None:
        if o._method in (_LAST, _EITHER) and st.last_px >= 0:
            return float(st.last_px)
        return self._touch_ref(o, st)

    def _arm(self, o: SimOrder, st: BookState) -> None:
        """Set the live stop: the declared one, or a trailing stop from the current market."""
        o._hits = 0
        if o._stop0 is not None:
            o._stop = o._stop0
        elif o._kind in _TRAILS:
            ref = self._reference(o, st)
            if ref is None:
                ref = float(st.last_px if st.last_px >= 0 else st.close_px)
            amount = o._trail or ref * o._trail_pct / 100
            o._stop = math.ceil(ref + amount - 1e-9) if o._buy else math.floor(ref - amount + 1e-9)
        if o._kind in _TRAILS:
            o.order.trailStopPrice = st.grid.price(o._stop)

    def _observe_price(self, o: SimOrder, ref: float, grid_price: Callable[[float], float]) -> bool:
        if o._kind in _TRAILS:
            amount = o._trail or ref * o._trail_pct / 100
            if o._buy:
                cand = math.ceil(ref + amount - 1e-9)
                if cand < o._stop:
                    o._stop = cand
                    o.order.trailStopPrice = grid_price(cand)
            else:
                cand = math.floor(ref - amount + 1e-9)
                if cand > o._stop:
                    o._stop = cand
                    o.order.trailStopPrice = grid_price(cand)
        hit = ref >= o._stop if o._buy else ref <= o._stop
        o._hits = o._hits + 1 if hit else 0
        return o._hits >= o._need

    def _observe_now(self, o: SimOrder, st: BookState) -> bool:
        """One observation of the current market (at placement or modification)."""
        price = st.grid.price
        m = o._method
        last = st.last_px
        if m in (_LAST, _EITHER) and last >= 0 and self._observe_price(o, float(last), price):
            return True
        if m == _LAST:
            return False
        ref = self._touch_ref(o, st)
        return ref is not None and self._observe_price(o, ref, price)

    def _observe(
        self,
        o: SimOrder,
        trades: list[tuple[int, int, int]],
        st: BookState,
        now: int,
        out: list[MatchEvent],
    ) -> None:
        price = st.grid.price
        m = o._method
        if m in (_LAST, _EITHER):
            since = o._since
            for seq, px, _ in trades:
                if seq > since and self._observe_price(o, float(px), price):
                    self._trigger(o, now, out)
                    return
        if m != _LAST:
            ref = self._touch_ref(o, st)
            if ref is not None and self._observe_price(o, ref, price):
                self._trigger(o, now, out)

    def _trigger(self, o: SimOrder, now: int, out: list[MatchEvent]) -> None:
        o.phase, o.status = Phase.WORKING, "Submitted"
        o._limit = self._working_limit(o)
        out.append(StatusChange(o, "Submitted", "stop triggered"))
        self._execute(o, now, out)

    # -- internals: algos ----------------------------------------------------------------------

    def _slice(self, o: SimOrder, now: int, out: list[MatchEvent]) -> None:
        a = o._algo
        assert a is not None
        if now < a.next:
            return
        st = self.market.state(o.instrument.con_id)
        if a.vol0 is None:
            a.vol0 = st.volume
        total = o._lots
        target = total if now >= a.end else total * (now - a.start) // (a.end - a.start)
        if a.pct:
            target = min(target, int(a.pct * (st.volume - a.vol0)))
        due = target - o._filled_lots
        a.next += ((now - a.next) // a.slice + 1) * a.slice  # stay on the grid from the start
        if due > 0:
            self._algo_fill(o, a, due, st, now, out)
        if o.phase is not Phase.DONE and now >= a.end and not a.past_end:
            self._done(o, "Cancelled", "algo endTime reached", now, out)

    def _algo_fill(
        self, o: SimOrder, a: _Algo, due: int, st: BookState, now: int, out: list[MatchEvent]
    ) -> None:
        buy, lim = o._buy, o._limit
        if a.style == "take":
            con = o.instrument.con_id
            fills, events = self.market.take_ticks(con, buy, due, lim)
            if events:
                out.append(BookUpdate(o, con, tuple(events)))
            for price, lots in fills:
                if o.phase is Phase.DONE:
                    break
                self._fill(o, lots, price, LIQ_REMOVED, now, out)
            return
        b, bs, ask, asz = st.touch()
        if a.style == "same":
            px, avail = (float(b), bs) if buy else (float(ask), asz)
        elif a.style == "mid":
            if b < 0 or ask < 0:
                return
            px, avail = (b + ask) / 2, min(bs, asz)
        else:
            px, avail = float(st.last_px), st.last_sz or (asz if buy else bs)
        if px < 0 or (lim is not None and (px > lim if buy else px < lim)):
            return
        q = min(due, avail)
        if q > 0:
            self._fill(o, q, px, LIQ_ADDED, now, out)


def _on_grid(g: Grid, price: float, rule: bool = True) -> bool:
    """Whether ``price`` is on the tick grid (and, with ``rule``, on the market rule's)."""
    ticks = g.ticks(price)
    if ticks is None:
        return False
    return not rule or g.on_rule(ticks)
