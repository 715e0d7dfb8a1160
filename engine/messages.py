"""Message layouts for the hot path: what travels over the rings between actors.

Two representations, chosen by measurement (CPython 3.11, numpy 2.4, 2-vCPU VM; the figures are
per message, write plus batched drain, from ``../shared/reference/ccxt-and-python-latency.md``
section 3.1 and re-measured for this module):

* Market data (book deltas, quotes, trades) are **numpy structured arrays**. They are produced a
  batch at a time (a socket read, a decoder kernel, the synthetic feed's vectorised step) and
  consumed a batch at a time by Numba kernels (the book update). A slice copy costs ~28 ns per
  48-byte row and a kernel reads the view with no conversion, whereas writing one row at a time
  from Python costs 250-470 ns: so market data never goes through Python per message.
* Order flow (intents, order events, fills) is **pooled ``__slots__`` objects**. It is produced
  one message at a time by Python code (a strategy's ``buy``, a venue's acknowledgement) and
  consumed by Python (risk gate, router, OMS, strategy callbacks). Setting six attributes on a
  reused slot and draining it costs ~160 ns; a structured-array row costs 360 ns to write and
  another ~100 ns per field to read back from Python.

Prices inside the hot path are integer ticks of the instrument's tick size and sizes are integer
lots of its lot size; floats exist only at the edges (a strategy's order intent, a venue's wire
format). Every message carries ``ts_event`` (venue time), ``ts_recv`` (when it reached us) and one
stamp per pipeline stage, all in nanoseconds of the engine clock (see ``engine.clock``).

Slots are reused: a consumer that keeps a message beyond its callback copies what it needs.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from hotpath import layouts

NO_PRICE = layouts.NO_PRICE
"""Tick value meaning "no price" (a market order, an empty side of the book)."""

_NAN = float("nan")


class Side(IntEnum):
    BUY = 1
    SELL = -1


class BookSide(IntEnum):
    BID = 0
    ASK = 1


class DeltaAction(IntEnum):
    """How a book delta changes the book.

    ``SET`` is the price-level form (set size at price, size 0 deletes: Binance/ccxt). ``INSERT``,
    ``UPDATE`` and ``DELETE`` are IB's position-based market depth (row ``position`` per side).
    ``CLEAR`` empties the instrument's book before a snapshot is loaded with ``SET``.
    """

    SET = 0
    INSERT = 1
    UPDATE = 2
    DELETE = 3
    CLEAR = 4


# The market-data layouts live in ``hotpath.layouts`` so kernels can be compiled against them
# with explicit signatures; they are re-exported here for everything above the hot path.
BOOK_DELTA = layouts.BOOK_DELTA
QUOTE = layouts.QUOTE
TRADE = layouts.TRADE


class OrderType(IntEnum):
    """Order types; the values are stable (they travel to the risk kernels and into journals).

    IB's names in brackets. *Limit-priced* types (LIMIT, STOP_LIMIT, LIMIT_ON_CLOSE) carry a limit
    price in ``OrderIntent.price`` and are valued at it by the risk checks; the others are valued
    at the reference price (the mid), like a market order, and carry no limit price.
    """

    MARKET = 0  # MKT
    LIMIT = 1  # LMT
    STOP = 2  # STP: a market order once ``stop_price`` trades
    STOP_LIMIT = 3  # STP LMT: a limit order at ``price`` once ``stop_price`` trades
    MARKET_ON_CLOSE = 4  # MOC (time in force DAY only)
    LIMIT_ON_CLOSE = 5  # LOC (time in force DAY only)
    TRAILING_STOP = 6  # TRAIL: ``trail_amount`` or ``trail_percent``, optional initial stop
    TRAILING_STOP_LIMIT = 7  # TRAIL LIMIT: as TRAIL, the limit ``limit_offset`` from the stop


class TimeInForce(IntEnum):
    """Times in force; the values are stable."""

    DAY = 0
    GTC = 1
    IOC = 2
    FOK = 3
    GTD = 4  # good till ``OrderIntent.good_till_ns``
    OPG = 5  # at the opening auction (MARKET or LIMIT only)


class Algo(IntEnum):
    """IB algos (``algoStrategy``), for MARKET and LIMIT orders; the values are stable."""

    NONE = 0
    VWAP = 1  # "Vwap"
    TWAP = 2  # "Twap"
    ADAPTIVE = 3  # "Adaptive"


class IntentKind(IntEnum):
    NEW = 0
    CANCEL = 1
    MODIFY = 2
    CANCEL_ALL = 3


class OrderIntent:
    """A strategy's request (new, cancel, modify, cancel-all) on its way to the risk gate.

    ``qty`` and ``price`` are what the strategy asked for, in instrument units and currency, so
    the risk gate can reject a NaN price or a fractional lot with the strategy's own numbers;
    it fills ``qty_lots`` and ``price_ticks`` when the intent passes. ``kind``, ``side``,
    ``order_type`` and ``tif`` hold the plain int values of their enums: they go to the risk
    kernels as they are (an ``IntEnum`` argument costs a Numba dispatcher ~10 µs instead of ~1).

    The order-type extras below are in use only when ``extended`` is True; a writer that sets any
    of them (or needs them reset when the slot is reused) sets ``extended``, and a plain MARKET or
    LIMIT intent leaves them at their defaults, so the gate's plain path never reads them.
    Prices are the strategy's, in currency; the gate fills ``stop_ticks`` when the intent passes.

    * ``stop_price`` (float, NaN = none): the trigger of STOP and STOP_LIMIT (required), the
      initial stop of TRAILING_STOP and TRAILING_STOP_LIMIT (optional); ``stop_ticks`` (int,
      ``NO_PRICE`` = none): the same in ticks, written by the gate.
    * ``trail_amount`` (float currency, NaN = none) or ``trail_percent`` (float percent, NaN =
      none): exactly one for TRAILING_STOP and TRAILING_STOP_LIMIT (IB's auxPrice /
      trailingPercent).
    * ``limit_offset`` (float currency, NaN = none): TRAILING_STOP_LIMIT's limit price offset from
      the stop (IB's lmtPriceOffset); required for that type, refused on any other.
    * ``display_lots`` (int lots, 0 = not an iceberg): the size shown (IB's displaySize); a
      negative value means the strategy's display size was not a whole number of lots.
    * ``good_till_ns`` (int, engine-clock ns since the epoch, 0 = none): required for GTD.
    * ``algo`` (int ``Algo``, 0 = none) and ``algo_params`` (tuple of (name, value) string pairs,
      or None): e.g. ``(("maxPctVol", "0.1"),)`` for VWAP, ``(("adaptivePriority", "Normal"),)``.
    * ``parent_id`` (int, the parent's client order id, 0 = none): a child order, working only
      once its parent has filled completely (IB's parentId).
    * ``oca_group`` (str, "" = none) and ``oca_type`` (int, 0 when no group; IB's ocaType: 1 a
      fill cancels the group's other orders, 2 reduces them by the filled quantity with overfill
      protection, 3 reduces them without).
    * ``transmit`` (bool, default True): False holds the order at the venue until an order of the
      same parent chain is sent with True, which transmits the chain (IB's transmit).
    """

    __slots__ = (
        "algo",
        "algo_params",
        "client_order_id",
        "display_lots",
        "extended",
        "good_till_ns",
        "instrument_id",
        "kind",
        "limit_offset",
        "oca_group",
        "oca_type",
        "order_type",
        "parent_id",
        "price",
        "price_ticks",
        "qty",
        "qty_lots",
        "side",
        "stop_price",
        "stop_ticks",
        "strategy_id",
        "tif",
        "trail_amount",
        "trail_percent",
        "transmit",
        "ts_created",
        "ts_risk",
        "ts_routed",
        "ts_sent",
        "ts_trigger",
    )

    def __init__(self) -> None:
        self.kind = int(IntentKind.NEW)
        self.strategy_id = 0
        self.instrument_id = 0
        self.client_order_id = 0
        self.side = int(Side.BUY)
        self.order_type = int(OrderType.LIMIT)
        self.tif = int(TimeInForce.DAY)
        self.qty = 0.0
        self.price = 0.0
        self.qty_lots = 0
        self.price_ticks = NO_PRICE
        self.ts_trigger = 0  # ts_recv of the market data the decision reacted to
        self.ts_created = 0
        self.ts_risk = 0
        self.ts_routed = 0
        self.ts_sent = 0
        self.reset_extras()

    def set_extras(
        self,
        stop_price: float,
        trail_amount: float,
        trail_percent: float,
        limit_offset: float,
        display_lots: int,
        good_till_ns: int,
        algo: int,
        algo_params: tuple[tuple[str, str], ...] | None,
        parent_id: int = 0,
        oca_group: str = "",
        oca_type: int = 0,
        transmit: bool = True,
    ) -> None:
        """Fill the order-type extras (``stop_ticks`` is the gate's) and set ``extended``."""
        self.extended = True
        self.stop_price = stop_price
        self.stop_ticks = NO_PRICE
        self.trail_amount = trail_amount
        self.trail_percent = trail_percent
        self.limit_offset = limit_offset
        self.display_lots = display_lots
        self.good_till_ns = good_till_ns
        self.algo = algo
        self.algo_params = algo_params
        self.parent_id = parent_id
        self.oca_group = oca_group
        self.oca_type = oca_type
        self.transmit = transmit

    def reset_extras(self) -> None:
        """Put the order-type extras back to "unused" and clear ``extended``."""
        self.extended = False
        self.stop_price = _NAN
        self.stop_ticks = NO_PRICE
        self.trail_amount = _NAN
        self.trail_percent = _NAN
        self.limit_offset = _NAN
        self.display_lots = 0
        self.good_till_ns = 0
        self.algo = 0
        self.algo_params = None
        self.parent_id = 0
        self.oca_group = ""
        self.oca_type = 0
        self.transmit = True


class EventKind(IntEnum):
    SUBMITTED = 0
    ACCEPTED = 1
    REJECTED = 2
    CANCELLED = 3
    EXPIRED = 4
    MODIFIED = 5
    FILL = 6
    CANCEL_REJECTED = 7
    COMMISSION = 8  # a commission reported after its fill (``exec_id``, ``commission``)


# An event slot is cleared before each reuse: module-level names, not enum member reads.
_ACCEPTED = EventKind.ACCEPTED
_BUY = int(Side.BUY)


class OrderEvent:
    """What happened to an order: acknowledgements, rejects, cancels and fills.

    Fills are order events of kind ``FILL`` (``fill_lots`` at ``fill_price_ticks``, with the
    venue's ``exec_id``) so that everything about one order travels in one ring, in the order the
    venue reported it.
    """

    __slots__ = (
        "client_order_id",
        "commission",
        "cum_lots",
        "exec_id",
        "fill_lots",
        "fill_price_ticks",
        "instrument_id",
        "kind",
        "leaves_lots",
        "price_ticks",
        "qty_lots",
        "reason",
        "reason_code",
        "side",
        "strategy_id",
        "ts_event",
        "ts_recv",
        "venue_order_id",
    )

    def __init__(self) -> None:
        self.kind = _ACCEPTED
        self.strategy_id = 0
        self.instrument_id = 0
        self.client_order_id = 0
        self.venue_order_id = 0
        self.side = _BUY
        self.fill_lots = 0
        self.fill_price_ticks = NO_PRICE
        self.cum_lots = 0
        self.leaves_lots = 0
        self.price_ticks = NO_PRICE  # the order's limit price (after a modify: the new one)
        self.qty_lots = 0  # the order's total quantity (after a modify: the new one)
        self.commission = 0.0
        self.exec_id = ""
        self.reason_code = 0
        self.reason = ""
        self.ts_event = 0
        self.ts_recv = 0

    def clear(self) -> None:
        """Reset every field: a reused slot must not carry the previous event's values."""
        self.__init__()

    def about(self, kind: int, src: Any, code: int, reason: str, ts: int) -> OrderEvent:
        """Clear this slot and make it a ``kind`` event naming ``src``'s order (anything with
        ``strategy_id``, ``instrument_id``, ``client_order_id`` and ``side``: an order, an
        intent, a venue's record of one), with ``code`` and ``reason``, stamped ``ts``."""
        self.__init__()
        self.kind = kind
        self.strategy_id = src.strategy_id
        self.instrument_id = src.instrument_id
        self.client_order_id = src.client_order_id
        self.side = src.side
        self.reason_code = code
        self.reason = reason
        self.ts_event = self.ts_recv = ts
        return self
