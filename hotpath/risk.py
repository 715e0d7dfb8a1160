"""Pre-trade risk checks and the limit state they keep, as Numba kernels over a few arrays.

The gate owns eight arrays (``hotpath.limits.new_risk_arrays`` makes them) and passes them to
every kernel in this order; the column indices below name their columns:

* limits, written by the gate from config, read by the kernels (float64; a limit that is ``inf``
  or NaN is off, a flag is on when > 0):
  ``ilim[instrument, IL_*]`` per instrument, ``slim[strategy, SL_*]`` per strategy and
  ``glim[GL_*]`` for the account;
* state, kept by the kernels (float64; lots and counts are whole numbers, exact below 2**53):
  ``ist[instrument, IS_*]`` account-wide per instrument, ``sst[strategy, SS_*]`` per strategy,
  ``pst[strategy, instrument, PS_*]`` per position and ``gst[GS_*]`` for the account. The gate
  writes only ``GS_TRADING_STATE`` and ``GS_BUYING_POWER`` (the broker's figure, when reported);
* ``buckets[row, B_*]`` (int64): token buckets in nanoseconds of credit, row ``GLOBAL_BUCKET`` for
  the account, ``1 + strategy`` per strategy, ``1 + n_strategies + venue`` per venue.

``check_order`` (one new order, scalars), ``check_modify`` (one modify) and ``check_batch``
(``INTENT`` rows) run the checks of ``CHECK_ORDER`` in that order and return the code of the first
that fails, or ``PASS`` with the quantity in lots and the limit price in ticks.
``check_order_extended`` and ``check_modify_extended`` take a stop price as well and return its
ticks too (the order types with a stop: STOP, STOP_LIMIT, TRAILING_*); ``check_order`` and
``check_modify`` check with no stop price. A pass updates
the state the next order is checked against (open orders and their exposure, reserved buying
power, tokens) before the next intent of the batch is looked at. ``apply_fill``,
``release_order``, ``mark_to_market``, ``daily_reset`` and ``charge_message`` keep the state in
step with the venue's answers, the book and the calendar.

Every compiled helper and layout constant the kernels read lives in this one file on purpose
(``NO_PRICE``, fixed for good, comes from ``hotpath.layouts``): Numba's on-disk cache is
invalidated by changes to the kernel's own source file only, so a column index or helper moved
to another module could leave stale machine code behind.

Rules the checks follow (``tests/risk_reference.py`` restates them as plain Python):

* An order *reduces* when its strategy's position is on the other side and everything the
  strategy has working on the order's side, with this order, fits inside it. REDUCING admits only
  such orders; the strategy's daily loss limit does not stop them.
* An order *increases* account exposure when the instrument's worst case (net position plus all
  open orders on one side, across strategies) grows. Only such orders are held to the
  concentration breaker (``IL_REDUCE_ONLY``), gross exposure, leverage, concentration, the
  account's daily loss and buying power.
* Order quantity, order value and position are held to the smaller of the instrument's limit
  (``IL_*``) and the strategy's (``SL_*``); the account's position (all strategies, with their
  open orders on the order's side) to the instrument's.
* Exposure is lots times the instrument's mark times the tick value; the mark is the reference
  price (mid) when the book has one, else the last mid or fill's price, else (never priced) the
  first passing order's limit price. Unrealised P&L uses the same mark. Equity is
  start-of-day equity plus today's account P&L.
* A modify is checked as the order it becomes (position and REDUCING use the new size in place of
  the old), and until the venue answers it holds the larger of the old and new size. The lots it
  keeps need buying power at the new price beyond their share of what the side's working orders
  reserved (a working order's reservation is its lots' share, as ``release_order`` frees it);
  what a price rise adds stays reserved until the order stops working.
* Limit-priced order types (LIMIT, STOP_LIMIT, LIMIT_ON_CLOSE) are checked and valued at their
  limit price; the others (MARKET, STOP, MARKET_ON_CLOSE, TRAILING_STOP, TRAILING_STOP_LIMIT,
  whose limit follows the stop) at the reference price, and need one. STOP and STOP_LIMIT need a
  stop price that is finite, > 0 and on the tick grid; TRAILING_* may carry one (their initial
  stop: NaN for none), held to the same rules; the other types' stop price is not read.
"""

from __future__ import annotations

import math

import numpy as np
from numba import from_dtype, types

from hotpath.jit import kernel
from hotpath.layouts import NO_PRICE

# ---- verdicts -------------------------------------------------------------------------------
# engine.risk_gate.Verdict's numbers and meanings; new codes are only ever appended.

PASS = 0
TRADING_HALTED = 1
REDUCING_ONLY = 2
UNKNOWN_INSTRUMENT = 3
BAD_QUANTITY = 4
NOT_WHOLE_LOTS = 5
MAX_ORDER_QTY = 6
BAD_PRICE = 7
OFF_TICK_GRID = 8
MAX_ORDER_NOTIONAL = 9
MAX_POSITION = 10
MAX_OPEN_ORDERS = 11
UNKNOWN_ORDER = 12  # issued by the gate (cancel or modify of an order it does not know)
NO_REFERENCE_PRICE = 13
UNKNOWN_STRATEGY = 14
BAD_INTENT = 15
NOT_TRADABLE = 16
SYMBOL_BLOCKED = 17
NOT_ALLOWED = 18
OUTSIDE_TRADING_HOURS = 19
MODIFY_BELOW_FILLED = 20
PRICE_COLLAR = 21
MAX_GROSS_EXPOSURE = 22
MAX_LEVERAGE = 23
MAX_CONCENTRATION = 24
STRATEGY_DAILY_LOSS = 25
ACCOUNT_DAILY_LOSS = 26
BUYING_POWER = 27
PATTERN_DAY_TRADER = 28
STRATEGY_RATE = 29
ACCOUNT_RATE = 30
VENUE_PACING = 31
BAD_STOP_PRICE = 32
STOP_OFF_TICK_GRID = 33
BAD_ORDER_PARAMS = 34  # issued by the gate (order type, time in force and extras do not fit)
CONCENTRATION_BREAKER = 35
NOT_OWN_ORDER = 36  # issued by the gate (cancel or modify of another strategy's order)
CANCEL_PENDING = 37  # issued by the gate (modify of an order whose cancel is pending)

VERDICT_NAMES: tuple[str, ...] = (
    "PASS",
    "TRADING_HALTED",
    "REDUCING_ONLY",
    "UNKNOWN_INSTRUMENT",
    "BAD_QUANTITY",
    "NOT_WHOLE_LOTS",
    "MAX_ORDER_QTY",
    "BAD_PRICE",
    "OFF_TICK_GRID",
    "MAX_ORDER_NOTIONAL",
    "MAX_POSITION",
    "MAX_OPEN_ORDERS",
    "UNKNOWN_ORDER",
    "NO_REFERENCE_PRICE",
    "UNKNOWN_STRATEGY",
    "BAD_INTENT",
    "NOT_TRADABLE",
    "SYMBOL_BLOCKED",
    "NOT_ALLOWED",
    "OUTSIDE_TRADING_HOURS",
    "MODIFY_BELOW_FILLED",
    "PRICE_COLLAR",
    "MAX_GROSS_EXPOSURE",
    "MAX_LEVERAGE",
    "MAX_CONCENTRATION",
    "STRATEGY_DAILY_LOSS",
    "ACCOUNT_DAILY_LOSS",
    "BUYING_POWER",
    "PATTERN_DAY_TRADER",
    "STRATEGY_RATE",
    "ACCOUNT_RATE",
    "VENUE_PACING",
    "BAD_STOP_PRICE",
    "STOP_OFF_TICK_GRID",
    "BAD_ORDER_PARAMS",
    "CONCENTRATION_BREAKER",
    "NOT_OWN_ORDER",
    "CANCEL_PENDING",
)

VERDICT_REASONS: tuple[str, ...] = (
    "passed",
    "trading is halted: only cancels are accepted",
    "trading is reducing: only orders that reduce a position are accepted",
    "instrument is not in the registry",
    "quantity must be a finite number > 0 (and below 1e15 lots)",
    "quantity is not a whole, non-zero number of lots",
    "quantity exceeds risk.max_order_qty",
    "limit price must be a finite number > 0 (and below 1e15 ticks)",
    "limit price is not a non-zero multiple of the tick size",
    "order value exceeds risk.max_order_notional",
    "position with this order and open orders would pass risk.max_position",
    "too many open orders on this instrument (risk.max_open_orders)",
    "no open order with this client order id",
    "market order with no price in the book to value it against",
    "strategy id is not registered with the risk gate",
    "malformed intent: side must be +1/-1, order type one of OrderType, kind NEW/MODIFY",
    "instrument is not enabled for trading (or has no venue pacing row)",
    "instrument is on the block list",
    "instrument is not on the allow list",
    "outside the instrument's trading hours",
    "modified quantity is not above the quantity already filled",
    "limit price is too far from the reference price, a stop-limit's from its stop price "
    "(fat-finger collar)",
    "account gross exposure would pass risk.max_gross_exposure",
    "account gross exposure would pass risk.max_leverage times equity",
    "instrument exposure would pass risk.max_concentration of equity",
    "strategy's daily loss limit is reached: only reducing orders are accepted",
    "account's daily loss limit is reached: only orders that do not add exposure are accepted",
    "not enough buying power for this order and the open ones",
    "would be a day trade beyond the pattern-day-trader limit",
    "strategy's order rate limit is exhausted",
    "account's order rate limit is exhausted",
    "venue message pacing limit is exhausted",
    "stop price must be a finite number > 0 (and below 1e15 ticks); STOP and STOP_LIMIT need one",
    "stop price is not a non-zero multiple of the tick size",
    "order type, time in force and order parameters do not fit together",
    "instrument's position passed risk.breakers.concentration_trip of equity: only orders that "
    "do not add exposure are accepted until it is below concentration_reset",
    "the order belongs to another strategy: a strategy cancels and modifies only its own orders",
    "a cancel of this order is pending: the modify is not sent (the cancel wins)",
)

VERDICTS: dict[str, int] = {name: code for code, name in enumerate(VERDICT_NAMES)}

CHECK_ORDER: tuple[int, ...] = (
    UNKNOWN_INSTRUMENT,
    UNKNOWN_STRATEGY,
    BAD_INTENT,
    TRADING_HALTED,
    NOT_TRADABLE,
    SYMBOL_BLOCKED,
    NOT_ALLOWED,
    OUTSIDE_TRADING_HOURS,
    BAD_QUANTITY,
    NOT_WHOLE_LOTS,
    MAX_ORDER_QTY,
    MODIFY_BELOW_FILLED,
    BAD_STOP_PRICE,  # STOP, STOP_LIMIT; TRAILING_* with an initial stop
    STOP_OFF_TICK_GRID,  # the same
    BAD_PRICE,  # limit-priced types
    OFF_TICK_GRID,  # limit-priced types
    NO_REFERENCE_PRICE,  # the other types
    PRICE_COLLAR,  # limit-priced types against the mid (else the last), STOP_LIMIT its stop
    REDUCING_ONLY,
    MAX_ORDER_NOTIONAL,
    MAX_POSITION,
    MAX_OPEN_ORDERS,  # new orders
    CONCENTRATION_BREAKER,
    MAX_GROSS_EXPOSURE,
    MAX_LEVERAGE,
    MAX_CONCENTRATION,
    STRATEGY_DAILY_LOSS,
    ACCOUNT_DAILY_LOSS,
    BUYING_POWER,
    PATTERN_DAY_TRADER,
    STRATEGY_RATE,
    ACCOUNT_RATE,
    VENUE_PACING,
)
"""The order the kernels run their checks in; the first that fails is the verdict."""

# ---- intents --------------------------------------------------------------------------------

SIDE_BUY = 1  # engine.messages.Side
SIDE_SELL = -1
MARKET = 0  # engine.messages.OrderType
LIMIT = 1
STOP = 2
STOP_LIMIT = 3
MARKET_ON_CLOSE = 4
LIMIT_ON_CLOSE = 5
TRAILING_STOP = 6
TRAILING_STOP_LIMIT = 7
KIND_NEW = 0  # engine.messages.IntentKind
KIND_MODIFY = 2

INTENT = np.dtype(
    [
        ("qty", "f8"),  # instrument units (the strategy's number)
        ("price", "f8"),  # currency; read for limit-priced types only
        ("stop_price", "f8"),  # currency; read for STOP, STOP_LIMIT, TRAILING_* (NaN: none)
        ("client_order_id", "i8"),  # not read by the kernel: lets the gate match rows to orders
        ("replaced_leaves", "i8"),  # modify: lots of the working order still open, else 0
        ("replaced_filled", "i8"),  # modify: lots of it already filled, else 0
        ("qty_lots", "i8"),  # out: lots on a pass, else 0
        ("price_ticks", "i8"),  # out: ticks on a pass of a limit-priced order, else NO_PRICE
        ("stop_ticks", "i8"),  # out: ticks of the stop price on a pass, else NO_PRICE
        ("strategy_id", "i4"),
        ("instrument_id", "i4"),
        ("verdict", "i4"),  # out
        ("side", "i1"),  # SIDE_BUY / SIDE_SELL
        ("order_type", "i1"),  # MARKET .. TRAILING_STOP_LIMIT
        ("kind", "i1"),  # KIND_NEW / KIND_MODIFY
    ],
    align=True,
)
"""One order intent of a batch for ``check_batch`` (88 bytes, fields naturally aligned)."""

# ---- trading states (gst[GS_TRADING_STATE]) -------------------------------------------------

STATE_ACTIVE = 0
STATE_REDUCING = 1
STATE_HALTED = 2

# ---- ilim[instrument, IL_*]: per-instrument limits and facts --------------------------------

IL_TRADABLE = 0  # flag: the instrument may be traded
IL_BLOCKED = 1  # flag: on the block list
IL_ALLOWED = 2  # flag: on the allow list (read when GL_ALLOW_LIST is on)
IL_TICK_SIZE = 3  # currency
IL_LOT_SIZE = 4  # instrument units
IL_MULTIPLIER = 5  # contract multiplier x FX rate to the base currency: amounts are in base
IL_MAX_ORDER_QTY = 6  # instrument units
IL_MAX_ORDER_NOTIONAL = 7  # currency
IL_MAX_POSITION = 8  # instrument units, absolute, with open orders: per strategy and account
IL_MAX_OPEN_ORDERS = 9  # orders working on the instrument, all strategies
IL_COLLAR_PCT = 10  # fraction of the reference price a limit price may be away from it
IL_COLLAR_TICKS = 11  # ticks a limit price may be away from the reference price
IL_MAX_CONCENTRATION = 12  # instrument's worst-case exposure as a fraction of equity
IL_MARGIN = 13  # buying power used per currency unit of notional (1.0 for cash)
IL_VENUE = 14  # venue index: its pacing bucket is row 1 + n_strategies + venue
IL_UTC_OFFSET_S = 15  # seconds to add to UTC for the instrument's local time (DST: gate updates)
IL_N_WINDOWS = 16  # trading windows in use; 0 trades around the clock
IL_WINDOWS = 17  # MAX_WINDOWS pairs (open, close) in local seconds of day; close < open wraps
MAX_WINDOWS = 4
IL_REDUCE_ONLY = IL_WINDOWS + 2 * MAX_WINDOWS  # flag: only orders that add no exposure (breaker)
N_IL = IL_REDUCE_ONLY + 1

# ---- slim[strategy, SL_*] -------------------------------------------------------------------

SL_MAX_DAILY_LOSS = 0  # currency, > 0
SL_MAX_ORDER_QTY = 1  # instrument units; the smaller of this and IL_MAX_ORDER_QTY applies
SL_MAX_ORDER_NOTIONAL = 2  # currency; the smaller of this and IL_MAX_ORDER_NOTIONAL applies
SL_MAX_POSITION = 3  # instrument units; the smaller of this and IL_MAX_POSITION applies
N_SL = 4

# ---- glim[GL_*] -----------------------------------------------------------------------------

GL_MAX_GROSS = 0  # currency
GL_MAX_LEVERAGE = 1  # gross exposure / equity
GL_MAX_DAILY_LOSS = 2  # currency, > 0
GL_ALLOW_LIST = 3  # flag: only instruments with IL_ALLOWED may trade
GL_PDT_MAX_DAY_TRADES = 4  # day trades allowed in the rolling window (FINRA: 3); inf = no rule
GL_PDT_MIN_EQUITY = 5  # equity at or above which the rule does not apply (FINRA: 25,000)
N_GL = 6

# ---- ist[instrument, IS_*]: account-wide state per instrument --------------------------------

IS_REF_TICKS = 0  # reference price (mid) from the book, 0 if none
IS_MARK_TICKS = 1  # price exposure and unrealised P&L are valued at, 0 before any
IS_NET_LOTS = 2  # net position, all strategies
IS_OPEN_BUY = 3  # lots working on the buy side, all strategies
IS_OPEN_SELL = 4
IS_OPEN_ORDERS = 5  # orders working
IS_EXPOSURE = 6  # worst-case |net + open one side| * mark * tick value (currency)
IS_OPENED_TODAY = 7  # lots opened today and not yet closed (pattern day trading)
IS_LAST_REF_TICKS = 8  # the last mid the book had, 0 if never: the collar's reference without one
N_IS = 9

# ---- sst[strategy, SS_*]: today's P&L per strategy ------------------------------------------

SS_REALISED = 0
SS_UNREAL = 1  # unrealised now minus unrealised at the start of the day
SS_FEES = 2
N_SS = 3

# ---- pst[strategy, instrument, PS_*]: positions ---------------------------------------------

PS_LOTS = 0  # net position
PS_AVG_TICKS = 1  # average cost
PS_REALISED = 2  # today
PS_FEES = 3  # today
PS_UNREAL = 4  # at the instrument's mark
PS_UNREAL_SOD = 5  # PS_UNREAL at the daily reset
PS_OPEN_BUY = 6  # lots working on the buy side
PS_OPEN_SELL = 7
PS_BP_BUY = 8  # buying power reserved by the buy orders working
PS_BP_SELL = 9
N_PS = 10

# ---- gst[GS_*]: account state ---------------------------------------------------------------

GS_TRADING_STATE = 0  # STATE_* (the gate writes it)
GS_EQUITY_SOD = 1  # equity at the daily reset
GS_REALISED = 2  # today
GS_UNREAL = 3  # today: unrealised now minus at the start of the day
GS_FEES = 4  # today
GS_GROSS = 5  # sum of IS_EXPOSURE
GS_BUYING_POWER = 6  # the broker's figure, less what fills used since (the gate writes it)
GS_BP_RESERVED = 7  # sum of PS_BP_*
GS_DAY_TRADES = 8  # day trades in the rolling window (pattern day trading)
N_GS = 9

# ---- buckets[row, B_*]: token buckets, in nanoseconds of credit (int64) ---------------------

B_INTERVAL_NS = 0  # credit one message costs (1e9 / rate); 0 disables the bucket
B_CAPACITY_NS = 1  # most credit held (burst * interval)
B_CREDIT_NS = 2
B_LAST_NS = 3  # when credit was last added
N_B = 4
GLOBAL_BUCKET = 0

MAX_UNITS = 1e15
"""Largest quantity in lots and price in ticks accepted: integers stay exact in float64."""
GRID_TOLERANCE = 1e-9
"""Relative slack for "a whole number of lots / ticks": float division is exact to ~1e-15."""

# ---- signatures -----------------------------------------------------------------------------

_F1 = types.float64[::1]
_F2 = types.float64[:, ::1]
_F3 = types.float64[:, :, ::1]
_I1 = types.int64[::1]
_I2 = types.int64[:, ::1]
_I64 = types.int64
_F64 = types.float64
_BOOL = types.boolean
_INTENTS = types.Array(from_dtype(INTENT), 1, "C")
_VERDICT = types.UniTuple(types.int64, 3)  # (verdict, lots, ticks)
_VERDICT_STOP = types.UniTuple(types.int64, 4)  # (verdict, lots, ticks, stop ticks)
_ARRAYS = (_F2, _F2, _F1, _F2, _F2, _F3, _F1, _I2)  # ilim slim glim ist sst pst gst buckets


def _kernel(signature):
    """``hotpath.jit.kernel`` without Numba's reference counting and with numpy's error model.

    The kernels allocate nothing, so they need no reference counting (NRT); with it, every call
    of ``_check`` paid ~18 atomic increments and decrements for its eight arrays, because Numba's
    pruning pass does not remove them across that many early returns (140 -> 60 ns per order in
    a batch of 64). A kernel that allocated would fail to compile, not misbehave. numpy's error
    model makes a division by zero (a lot size of 0 that ``validate`` did not see) an inf or NaN
    that fails a check, never an exception in the middle of a batch.
    """
    return kernel(signature, _nrt=False, error_model="numpy")


# ---- helpers compiled into the kernels ------------------------------------------------------


@_kernel(types.boolean(_F2, _I64, _I64))
def _in_trading_hours(ilim, i, now):  # pragma: no cover
    n_windows = int(ilim[i, IL_N_WINDOWS])
    if n_windows <= 0:
        return True
    t = (now // 1_000_000_000 + int(ilim[i, IL_UTC_OFFSET_S])) % 86_400
    for w in range(min(n_windows, MAX_WINDOWS)):
        opens = ilim[i, IL_WINDOWS + 2 * w]
        closes = ilim[i, IL_WINDOWS + 2 * w + 1]
        if opens <= closes:
            if opens <= t < closes:
                return True
        elif t >= opens or t < closes:
            return True
    return False


@_kernel(types.void(_I2, _I64, _I64))
def _refill(buckets, row, now):  # pragma: no cover
    elapsed = now - buckets[row, B_LAST_NS]
    if elapsed <= 0:
        return
    room = buckets[row, B_CAPACITY_NS] - buckets[row, B_CREDIT_NS]
    if elapsed >= room:
        buckets[row, B_CREDIT_NS] = buckets[row, B_CAPACITY_NS]
    else:
        buckets[row, B_CREDIT_NS] += elapsed
    buckets[row, B_LAST_NS] = now


@_kernel(types.void(_F2, _F2, _F2, _F3, _F1, _I64))
def _revalue_positions(ilim, ist, sst, pst, gst, i):  # pragma: no cover
    """Unrealised P&L of every strategy's position in ``i`` at the instrument's mark."""
    mark = ist[i, IS_MARK_TICKS]
    tick_value = ilim[i, IL_TICK_SIZE] * ilim[i, IL_LOT_SIZE] * ilim[i, IL_MULTIPLIER]
    for s in range(pst.shape[0]):
        lots = pst[s, i, PS_LOTS]
        unreal = 0.0
        if lots != 0.0 and mark > 0.0:
            unreal = (mark - pst[s, i, PS_AVG_TICKS]) * lots * tick_value
        change = unreal - pst[s, i, PS_UNREAL]
        pst[s, i, PS_UNREAL] = unreal
        sst[s, SS_UNREAL] += change
        gst[GS_UNREAL] += change


@_kernel(types.void(_F2, _F2, _F1, _I64))
def _revalue_exposure(ilim, ist, gst, i):  # pragma: no cover
    net = ist[i, IS_NET_LOTS]
    worst = max(abs(net + ist[i, IS_OPEN_BUY]), abs(net - ist[i, IS_OPEN_SELL]))
    tick_value = ilim[i, IL_TICK_SIZE] * ilim[i, IL_LOT_SIZE] * ilim[i, IL_MULTIPLIER]
    exposure = worst * ist[i, IS_MARK_TICKS] * tick_value
    gst[GS_GROSS] = gst[GS_GROSS] - ist[i, IS_EXPOSURE] + exposure
    ist[i, IS_EXPOSURE] = exposure


@_kernel(types.void(_F2, _F3, _F1, _I64, _I64, _I64, _I64, _BOOL))
def _release(ist, pst, gst, s, i, side, lots, done):  # pragma: no cover
    """Take ``lots`` off the strategy's working orders on ``side``, with their buying power."""
    open_col = PS_OPEN_BUY if side == SIDE_BUY else PS_OPEN_SELL
    bp_col = PS_BP_BUY if side == SIDE_BUY else PS_BP_SELL
    account_col = IS_OPEN_BUY if side == SIDE_BUY else IS_OPEN_SELL
    working = pst[s, i, open_col]
    k = min(float(max(lots, 0)), working)
    if k > 0.0:
        held = pst[s, i, bp_col]
        # Reservations leave in proportion to the lots, and all of it with the last lot.
        freed = held if k >= working else held * k / working
        pst[s, i, bp_col] = held - freed
        gst[GS_BP_RESERVED] -= freed
        pst[s, i, open_col] = working - k
        ist[i, account_col] -= k
    if done and ist[i, IS_OPEN_ORDERS] > 0.0:
        ist[i, IS_OPEN_ORDERS] -= 1.0


# ---- pre-trade checks -----------------------------------------------------------------------


@_kernel(_VERDICT_STOP(*_ARRAYS, _I64, _I64, _I64, _I64, _F64, _F64, _F64, _I64, _I64, _I64, _I64))
def _check(
    ilim, slim, glim, ist, sst, pst, gst, buckets,
    s, i, side, order_type, qty, price, stop_price, now, kind, replaced_leaves, replaced_filled,
):  # fmt: skip  # pragma: no cover
    """The checks of ``CHECK_ORDER``; on a pass, the state updates and
    (PASS, lots, ticks, stop ticks)."""
    if i < 0 or i >= ilim.shape[0]:
        return UNKNOWN_INSTRUMENT, 0, NO_PRICE, NO_PRICE
    n_strategies = slim.shape[0]
    if s < 0 or s >= n_strategies:
        return UNKNOWN_STRATEGY, 0, NO_PRICE, NO_PRICE
    if (
        (side != SIDE_BUY and side != SIDE_SELL)
        or order_type < MARKET
        or order_type > TRAILING_STOP_LIMIT
        or (kind != KIND_NEW and kind != KIND_MODIFY)
        or replaced_leaves < 0
        or replaced_filled < 0
        or (kind == KIND_NEW and (replaced_leaves != 0 or replaced_filled != 0))
    ):
        return BAD_INTENT, 0, NO_PRICE, NO_PRICE
    state = gst[GS_TRADING_STATE]
    if state == STATE_HALTED:
        return TRADING_HALTED, 0, NO_PRICE, NO_PRICE
    venue = ilim[i, IL_VENUE]
    if not (ilim[i, IL_TRADABLE] > 0.0 and 0.0 <= venue < buckets.shape[0] - 1 - n_strategies):
        return NOT_TRADABLE, 0, NO_PRICE, NO_PRICE
    if ilim[i, IL_BLOCKED] > 0.0:
        return SYMBOL_BLOCKED, 0, NO_PRICE, NO_PRICE
    if glim[GL_ALLOW_LIST] > 0.0 and not ilim[i, IL_ALLOWED] > 0.0:
        return NOT_ALLOWED, 0, NO_PRICE, NO_PRICE
    if not _in_trading_hours(ilim, i, now):
        return OUTSIDE_TRADING_HOURS, 0, NO_PRICE, NO_PRICE

    lot_size = ilim[i, IL_LOT_SIZE]
    lots_f = qty / lot_size
    if not (qty > 0.0 and lots_f <= MAX_UNITS):
        return BAD_QUANTITY, 0, NO_PRICE, NO_PRICE
    lots = round(lots_f)
    if lots == 0 or abs(lots_f - lots) > GRID_TOLERANCE * (1.0 + abs(lots_f)):
        return NOT_WHOLE_LOTS, 0, NO_PRICE, NO_PRICE
    if qty > ilim[i, IL_MAX_ORDER_QTY] or qty > slim[s, SL_MAX_ORDER_QTY]:
        return MAX_ORDER_QTY, 0, NO_PRICE, NO_PRICE
    lots_new = lots - replaced_filled  # what works after a modify (all of a new order)
    if lots_new <= 0:
        return MODIFY_BELOW_FILLED, 0, NO_PRICE, NO_PRICE

    tick_size = ilim[i, IL_TICK_SIZE]
    stop_ticks = NO_PRICE
    if order_type > LIMIT and (
        order_type in (STOP, STOP_LIMIT)
        or (order_type in (TRAILING_STOP, TRAILING_STOP_LIMIT) and not math.isnan(stop_price))
    ):
        stops_f = stop_price / tick_size
        if not (stop_price > 0.0 and stops_f <= MAX_UNITS):
            return BAD_STOP_PRICE, 0, NO_PRICE, NO_PRICE
        stop_ticks = round(stops_f)
        if stop_ticks == 0 or abs(stops_f - stop_ticks) > GRID_TOLERANCE * (1.0 + abs(stops_f)):
            return STOP_OFF_TICK_GRID, 0, NO_PRICE, NO_PRICE
    ref = ist[i, IS_REF_TICKS]
    if order_type in (LIMIT, STOP_LIMIT, LIMIT_ON_CLOSE):
        ticks_f = price / tick_size
        if not (price > 0.0 and ticks_f <= MAX_UNITS):
            return BAD_PRICE, 0, NO_PRICE, NO_PRICE
        ticks = round(ticks_f)
        if ticks == 0 or abs(ticks_f - ticks) > GRID_TOLERANCE * (1.0 + abs(ticks_f)):
            return OFF_TICK_GRID, 0, NO_PRICE, NO_PRICE
        px = float(ticks)
        # A book that lost a side (a one-sided market, or emptied: IB's data stopped) collars
        # against its last mid: without one, any price passed, a buy at 10x included. A
        # stop-limit's limit goes live at its stop, not at today's mid: a stop-loss 10% away
        # is no fat finger, a limit far from its own stop is.
        if order_type == STOP_LIMIT:
            collar_ref = float(stop_ticks)
        else:
            collar_ref = ref if ref > 0.0 else ist[i, IS_LAST_REF_TICKS]
        if collar_ref > 0.0:
            away = abs(px - collar_ref)
            if away > ilim[i, IL_COLLAR_TICKS] or away > ilim[i, IL_COLLAR_PCT] * collar_ref:
                return PRICE_COLLAR, 0, NO_PRICE, NO_PRICE
        if ref > 0.0:
            mark = ref
        else:
            # An order is no trade: its price marks only an instrument never priced, else a
            # limit far from the market would move everyone's unrealised P&L and equity.
            mark = ist[i, IS_MARK_TICKS]
            if not mark > 0.0:
                mark = px
    else:
        if not ref > 0.0:
            return NO_REFERENCE_PRICE, 0, NO_PRICE, NO_PRICE
        ticks = NO_PRICE
        px = ref
        mark = ref

    # The strategy's position with everything it has working on this side, as it would become.
    open_col = PS_OPEN_BUY if side == SIDE_BUY else PS_OPEN_SELL
    pos = pst[s, i, PS_LOTS]
    pending = pst[s, i, open_col] - replaced_leaves + lots_new
    reduces = pos * side < 0.0 and pending <= abs(pos)
    if state == STATE_REDUCING and not reduces:
        return REDUCING_ONLY, 0, NO_PRICE, NO_PRICE
    tick_value = tick_size * lot_size * ilim[i, IL_MULTIPLIER]
    notional = lots * px * tick_value
    if notional > ilim[i, IL_MAX_ORDER_NOTIONAL] or notional > slim[s, SL_MAX_ORDER_NOTIONAL]:
        return MAX_ORDER_NOTIONAL, 0, NO_PRICE, NO_PRICE
    position = abs(pos + pending * side) * lot_size
    if position > ilim[i, IL_MAX_POSITION] or position > slim[s, SL_MAX_POSITION]:
        return MAX_POSITION, 0, NO_PRICE, NO_PRICE
    # The instrument's limit holds for the account too: two strategies each within it could
    # together hold twice it. All strategies' orders on this side, this one as it would become.
    net = ist[i, IS_NET_LOTS]
    account_open = ist[i, IS_OPEN_BUY] if side == SIDE_BUY else ist[i, IS_OPEN_SELL]
    account_position = abs(net + (account_open - replaced_leaves + lots_new) * side) * lot_size
    if account_position > ilim[i, IL_MAX_POSITION]:
        return MAX_POSITION, 0, NO_PRICE, NO_PRICE
    if kind == KIND_NEW and ist[i, IS_OPEN_ORDERS] >= ilim[i, IL_MAX_OPEN_ORDERS]:
        return MAX_OPEN_ORDERS, 0, NO_PRICE, NO_PRICE

    # The account's worst case on this instrument; a modify holds the larger of old and new.
    added = float(max(lots_new - replaced_leaves, 0))
    open_buy = ist[i, IS_OPEN_BUY]
    open_sell = ist[i, IS_OPEN_SELL]
    before = max(abs(net + open_buy), abs(net - open_sell))
    if side == SIDE_BUY:
        open_buy += added
    else:
        open_sell += added
    after = max(abs(net + open_buy), abs(net - open_sell))
    increases = after > before
    exposure = after * mark * tick_value
    gross = gst[GS_GROSS] - ist[i, IS_EXPOSURE] + exposure
    pnl = gst[GS_REALISED] + gst[GS_UNREAL] - gst[GS_FEES]
    equity = gst[GS_EQUITY_SOD] + pnl
    if increases:
        if ilim[i, IL_REDUCE_ONLY] > 0.0:
            return CONCENTRATION_BREAKER, 0, NO_PRICE, NO_PRICE
        if gross > glim[GL_MAX_GROSS]:
            return MAX_GROSS_EXPOSURE, 0, NO_PRICE, NO_PRICE
        leverage = glim[GL_MAX_LEVERAGE]
        if leverage < math.inf and (equity <= 0.0 or gross > leverage * equity):
            return MAX_LEVERAGE, 0, NO_PRICE, NO_PRICE
        concentration = ilim[i, IL_MAX_CONCENTRATION]
        if concentration < math.inf and (equity <= 0.0 or exposure > concentration * equity):
            return MAX_CONCENTRATION, 0, NO_PRICE, NO_PRICE
    if not reduces:
        strategy_pnl = sst[s, SS_REALISED] + sst[s, SS_UNREAL] - sst[s, SS_FEES]
        if strategy_pnl <= -slim[s, SL_MAX_DAILY_LOSS]:
            return STRATEGY_DAILY_LOSS, 0, NO_PRICE, NO_PRICE
    if increases and pnl <= -glim[GL_MAX_DAILY_LOSS]:
        return ACCOUNT_DAILY_LOSS, 0, NO_PRICE, NO_PRICE
    per_lot = px * tick_value * ilim[i, IL_MARGIN]
    required = added * per_lot if increases else 0.0
    if kind == KIND_MODIFY:
        # The lots the modify keeps are held at its new price too: a buy moved from 80 to 100
        # needs a quarter more. Their reservation is their share of the side's (as released).
        held = pst[s, i, PS_BP_BUY if side == SIDE_BUY else PS_BP_SELL]
        working = pst[s, i, open_col]
        if held > 0.0 and working > 0.0:
            kept = float(min(lots_new, replaced_leaves))
            share = held * min(float(replaced_leaves), working) / working
            extra = kept * per_lot - share
            if extra > GRID_TOLERANCE * (1.0 + share):  # not the float noise of an unmoved price
                required += extra
    reserved = gst[GS_BP_RESERVED] + required
    if required > 0.0 and reserved > gst[GS_BUYING_POWER]:
        return BUYING_POWER, 0, NO_PRICE, NO_PRICE
    day_trades = glim[GL_PDT_MAX_DAY_TRADES]
    if (
        day_trades < math.inf
        and equity < glim[GL_PDT_MIN_EQUITY]
        and net * side < 0.0
        and ist[i, IS_OPENED_TODAY] > 0.0
        and gst[GS_DAY_TRADES] >= day_trades
    ):
        return PATTERN_DAY_TRADER, 0, NO_PRICE, NO_PRICE

    strategy_row = 1 + s
    venue_row = 1 + n_strategies + int(venue)
    _refill(buckets, strategy_row, now)
    _refill(buckets, GLOBAL_BUCKET, now)
    _refill(buckets, venue_row, now)
    if buckets[strategy_row, B_CREDIT_NS] < buckets[strategy_row, B_INTERVAL_NS]:
        return STRATEGY_RATE, 0, NO_PRICE, NO_PRICE
    if buckets[GLOBAL_BUCKET, B_CREDIT_NS] < buckets[GLOBAL_BUCKET, B_INTERVAL_NS]:
        return ACCOUNT_RATE, 0, NO_PRICE, NO_PRICE
    if buckets[venue_row, B_CREDIT_NS] < buckets[venue_row, B_INTERVAL_NS]:
        return VENUE_PACING, 0, NO_PRICE, NO_PRICE

    # Passed: what the next order is checked against.
    buckets[strategy_row, B_CREDIT_NS] -= buckets[strategy_row, B_INTERVAL_NS]
    buckets[GLOBAL_BUCKET, B_CREDIT_NS] -= buckets[GLOBAL_BUCKET, B_INTERVAL_NS]
    buckets[venue_row, B_CREDIT_NS] -= buckets[venue_row, B_INTERVAL_NS]
    pst[s, i, open_col] += added
    pst[s, i, PS_BP_BUY if side == SIDE_BUY else PS_BP_SELL] += required
    gst[GS_BP_RESERVED] = reserved
    ist[i, IS_OPEN_BUY] = open_buy
    ist[i, IS_OPEN_SELL] = open_sell
    if kind == KIND_NEW:
        ist[i, IS_OPEN_ORDERS] += 1.0
    if ist[i, IS_MARK_TICKS] != mark:
        ist[i, IS_MARK_TICKS] = mark
        _revalue_positions(ilim, ist, sst, pst, gst, i)
    ist[i, IS_EXPOSURE] = exposure
    gst[GS_GROSS] = gross
    return PASS, lots, ticks, stop_ticks


@_kernel(_VERDICT(*_ARRAYS, _I64, _I64, _I64, _I64, _F64, _F64, _I64))
def check_order(
    ilim, slim, glim, ist, sst, pst, gst, buckets,
    strategy_id, instrument_id, side, order_type, qty, price, now,
):  # fmt: skip  # pragma: no cover
    """Check one new order: ``(verdict, lots, ticks)``; ticks is NO_PRICE for market orders.

    Pass plain ``int`` and ``float`` values: an ``IntEnum`` member (``Side.BUY``) makes the
    frozen dispatcher search for a conversion on every call (~13 µs instead of ~1 µs).
    The order has no stop price (``check_order_extended`` takes one).
    """
    verdict, lots, ticks, _ = _check(
        ilim, slim, glim, ist, sst, pst, gst, buckets,
        strategy_id, instrument_id, side, order_type, qty, price, math.nan, now, KIND_NEW, 0, 0,
    )  # fmt: skip
    return verdict, lots, ticks


@_kernel(_VERDICT_STOP(*_ARRAYS, _I64, _I64, _I64, _I64, _F64, _F64, _F64, _I64))
def check_order_extended(
    ilim, slim, glim, ist, sst, pst, gst, buckets,
    strategy_id, instrument_id, side, order_type, qty, price, stop_price, now,
):  # fmt: skip  # pragma: no cover
    """Check one new order with a stop price (NaN: none):
    ``(verdict, lots, ticks, stop ticks)``; stop ticks is NO_PRICE when the type has none."""
    return _check(
        ilim, slim, glim, ist, sst, pst, gst, buckets,
        strategy_id, instrument_id, side, order_type, qty, price, stop_price, now, KIND_NEW, 0, 0,
    )  # fmt: skip


@_kernel(_VERDICT(*_ARRAYS, _I64, _I64, _I64, _I64, _F64, _F64, _I64, _I64, _I64))
def check_modify(
    ilim, slim, glim, ist, sst, pst, gst, buckets,
    strategy_id, instrument_id, side, order_type, qty, price, now,
    replaced_leaves, replaced_filled,
):  # fmt: skip  # pragma: no cover
    """Check a modify of a working order to total ``qty`` at ``price``: ``(verdict, lots, ticks)``.

    ``replaced_leaves`` and ``replaced_filled`` are the working order's open and filled lots;
    strategy, instrument, side and type are the working order's. No stop price (see
    ``check_modify_extended``).
    """
    verdict, lots, ticks, _ = _check(
        ilim, slim, glim, ist, sst, pst, gst, buckets,
        strategy_id, instrument_id, side, order_type, qty, price, math.nan, now,
        KIND_MODIFY, replaced_leaves, replaced_filled,
    )  # fmt: skip
    return verdict, lots, ticks


@_kernel(_VERDICT_STOP(*_ARRAYS, _I64, _I64, _I64, _I64, _F64, _F64, _F64, _I64, _I64, _I64))
def check_modify_extended(
    ilim, slim, glim, ist, sst, pst, gst, buckets,
    strategy_id, instrument_id, side, order_type, qty, price, stop_price, now,
    replaced_leaves, replaced_filled,
):  # fmt: skip  # pragma: no cover
    """``check_modify`` of an order with a stop price: ``(verdict, lots, ticks, stop ticks)``."""
    return _check(
        ilim, slim, glim, ist, sst, pst, gst, buckets,
        strategy_id, instrument_id, side, order_type, qty, price, stop_price, now,
        KIND_MODIFY, replaced_leaves, replaced_filled,
    )  # fmt: skip


@_kernel(types.int64(*_ARRAYS, _INTENTS, _I64, _I64))
def check_batch(ilim, slim, glim, ist, sst, pst, gst, buckets, intents, n, now):  # pragma: no cover
    """Check ``intents[:n]`` in order, writing ``verdict``, ``qty_lots``, ``price_ticks`` and
    ``stop_ticks`` into each row; returns how many passed."""
    passed = 0
    for k in range(min(n, intents.shape[0])):
        it = intents[k]
        verdict, lots, ticks, stop_ticks = _check(
            ilim, slim, glim, ist, sst, pst, gst, buckets,
            it.strategy_id, it.instrument_id, it.side, it.order_type, it.qty, it.price,
            it.stop_price, now, it.kind, it.replaced_leaves, it.replaced_filled,
        )  # fmt: skip
        it.verdict = verdict
        it.qty_lots = lots
        it.price_ticks = ticks
        it.stop_ticks = stop_ticks
        if verdict == PASS:
            passed += 1
    return passed


# ---- limit state updates --------------------------------------------------------------------


@_kernel(types.boolean(_F2, _F2, _F3, _F1, _I64, _I64, _I64, _I64, _BOOL))
def release_order(
    ilim, ist, pst, gst, strategy_id, instrument_id, side, lots, done
):  # pragma: no cover
    """An order stops working ``lots`` without a fill (cancel, reject, expiry, a modify down):
    its open lots and reserved buying power go, and the order count if ``done``.

    Returns False (and changes nothing) for an unknown strategy, instrument or side.
    """
    s = strategy_id
    i = instrument_id
    if not (0 <= s < pst.shape[0] and 0 <= i < ist.shape[0]) or (side != 1 and side != -1):
        return False
    _release(ist, pst, gst, s, i, side, lots, done)
    _revalue_exposure(ilim, ist, gst, i)
    return True


@_kernel(types.boolean(_F2, _F2, _F2, _F3, _F1, _I64, _I64, _I64, _I64, _I64, _F64, _I64, _BOOL))
def apply_fill(
    ilim, ist, sst, pst, gst,
    strategy_id, instrument_id, side, lots, ticks, commission, release_lots, order_done,
):  # fmt: skip  # pragma: no cover
    """A fill of ``lots`` at ``ticks``: position, average cost, today's realised P&L and fees,
    the account's net position, day trades and buying power, then the instrument's revaluation.

    ``release_lots`` is what the fill takes off the working order (``lots`` while the order is
    working, 0 for a fill reported after its cancel); ``order_done`` when it completes the order.
    Returns False (and changes nothing) for an unknown strategy, instrument, side or lots <= 0.
    """
    s = strategy_id
    i = instrument_id
    if not (0 <= s < pst.shape[0] and 0 <= i < ist.shape[0]) or (side != 1 and side != -1):
        return False
    if lots <= 0:
        return False
    _release(ist, pst, gst, s, i, side, release_lots, order_done)
    tick_value = ilim[i, IL_TICK_SIZE] * ilim[i, IL_LOT_SIZE] * ilim[i, IL_MULTIPLIER]

    # The strategy's position (the arithmetic of engine.portfolio.Position.apply_fill).
    old = pst[s, i, PS_LOTS]
    signed = float(lots * side)
    new = old + signed
    avg = pst[s, i, PS_AVG_TICKS]
    realised = 0.0
    if old == 0.0 or (old > 0.0) == (signed > 0.0):
        avg = (avg * abs(old) + ticks * lots) / abs(new)
    else:
        closed = min(float(lots), abs(old))
        direction = 1.0 if old > 0.0 else -1.0
        realised = (ticks - avg) * closed * direction * tick_value
        if new == 0.0:
            avg = 0.0
        elif (new > 0.0) != (old > 0.0):
            avg = float(ticks)  # flipped through zero: the rest opens at the fill price
    pst[s, i, PS_LOTS] = new
    pst[s, i, PS_AVG_TICKS] = avg
    pst[s, i, PS_REALISED] += realised
    pst[s, i, PS_FEES] += commission
    sst[s, SS_REALISED] += realised
    sst[s, SS_FEES] += commission
    gst[GS_REALISED] += realised
    gst[GS_FEES] += commission

    # The account: closing lots opened today is a day trade; opening uses buying power.
    net = ist[i, IS_NET_LOTS]
    closed_account = 0.0
    if net != 0.0 and (net > 0.0) != (signed > 0.0):
        closed_account = min(float(lots), abs(net))
    opened_account = lots - closed_account
    if closed_account > 0.0 and ist[i, IS_OPENED_TODAY] > 0.0:
        gst[GS_DAY_TRADES] += 1.0
        ist[i, IS_OPENED_TODAY] -= min(ist[i, IS_OPENED_TODAY], closed_account)
    ist[i, IS_OPENED_TODAY] += opened_account
    per_lot = ticks * tick_value * ilim[i, IL_MARGIN]
    gst[GS_BUYING_POWER] += (closed_account - opened_account) * per_lot
    ist[i, IS_NET_LOTS] = net + signed

    if not ist[i, IS_REF_TICKS] > 0.0:
        ist[i, IS_MARK_TICKS] = float(ticks)
    _revalue_positions(ilim, ist, sst, pst, gst, i)
    _revalue_exposure(ilim, ist, gst, i)
    return True


@_kernel(types.void(_F2, _F2, _F2, _F3, _F1, _I1, _I2, _I64))
def mark_to_market(ilim, ist, sst, pst, gst, ids, top, n):  # pragma: no cover
    """New reference prices from the book kernel's output (``hotpath.book.apply_deltas``:
    ``ids[:n]``, ``top[k] = (bid ticks, bid lots, ask ticks, ask lots)``, NO_PRICE if empty).

    The reference is the mid when both sides are there, else none; positions and exposure of
    each instrument with a reference are revalued at it.
    """
    for k in range(min(n, ids.shape[0], top.shape[0])):
        i = ids[k]
        if i < 0 or i >= ist.shape[0]:
            continue
        bid = top[k, 0]
        ask = top[k, 2]
        if bid == NO_PRICE or ask == NO_PRICE:
            ist[i, IS_REF_TICKS] = 0.0
            continue
        ref = (bid + ask) / 2
        ist[i, IS_REF_TICKS] = ref
        ist[i, IS_LAST_REF_TICKS] = ref
        ist[i, IS_MARK_TICKS] = ref
        _revalue_positions(ilim, ist, sst, pst, gst, i)
        _revalue_exposure(ilim, ist, gst, i)


@_kernel(types.void(_F2, _F2, _F3, _F1, _F64, _I64))
def daily_reset(ist, sst, pst, gst, equity_sod, day_trades):  # pragma: no cover
    """Start a trading day: today's P&L, fees and opened lots go to zero, unrealised P&L is
    measured from here, equity starts at ``equity_sod`` (NaN: carry today's close) and the
    day-trade count at ``day_trades`` (those of the window's earlier days, which the gate keeps).
    """
    if not math.isfinite(equity_sod):
        equity_sod = gst[GS_EQUITY_SOD] + (gst[GS_REALISED] + gst[GS_UNREAL] - gst[GS_FEES])
    for s in range(pst.shape[0]):
        for i in range(pst.shape[1]):
            pst[s, i, PS_REALISED] = 0.0
            pst[s, i, PS_FEES] = 0.0
            pst[s, i, PS_UNREAL_SOD] = pst[s, i, PS_UNREAL]
        sst[s, SS_REALISED] = 0.0
        sst[s, SS_UNREAL] = 0.0
        sst[s, SS_FEES] = 0.0
    for i in range(ist.shape[0]):
        ist[i, IS_OPENED_TODAY] = 0.0
    gst[GS_REALISED] = 0.0
    gst[GS_UNREAL] = 0.0
    gst[GS_FEES] = 0.0
    gst[GS_EQUITY_SOD] = equity_sod
    gst[GS_DAY_TRADES] = float(day_trades)


@_kernel(types.boolean(_I2, _I64, _I64))
def charge_message(buckets, row, now):  # pragma: no cover
    """Count a message the checks never see (a cancel) against a bucket, typically a venue's.

    Cancels are never refused: the credit may go below zero, which holds back the next orders
    until it has refilled. Returns False if credit was already short (the venue may complain).
    """
    if row < 0 or row >= buckets.shape[0]:
        return False
    _refill(buckets, row, now)
    had = buckets[row, B_CREDIT_NS] >= buckets[row, B_INTERVAL_NS]
    buckets[row, B_CREDIT_NS] -= buckets[row, B_INTERVAL_NS]
    return had
