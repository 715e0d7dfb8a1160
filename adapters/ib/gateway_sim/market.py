"""The simulated market: instruments, contract resolution, a random-walk L2 book per instrument.

Pure: no I/O except ``Replay.load``, no wall clock. Time comes in as integer nanoseconds.

The model, per instrument (``BookState``):

- A *fair* price follows a geometric random walk: each ``step`` multiplies it by
  ``1 + volatility * sqrt(dt) * N(0, 1)``, ``dt`` being the seconds since the previous step
  (``step_ns`` when the caller gives no time). ``volatility`` is relative, per sqrt(second).
- The book is ``depth_levels`` price levels per side on the instrument's price grid, contiguous
  from the touch, with the best bid ``spread_ticks`` price increments below the best ask, centred
  on the fair price. When the fair price moves, levels that fall outside the new window are
  deleted and the missing ones inserted with fresh random sizes, so a move of one increment is
  one delete and one insert per side, exactly as IB's depth feed reports it.
- Each step also changes the size of one random level (order flow: the size moves halfway to a
  fresh draw around the level size, so sizes wander but do not drift away, however long the
  run) and, with probability ``trade_probability``, prints a trade against the best bid or ask
  that consumes size there.
- Prices are integers in units of ``min_tick`` ("ticks"); sizes are integers in units of
  ``size_increment`` ("lots"). Events carry IB's float prices and ``Decimal`` sizes.

What a step returns is IB's own vocabulary, so the gateway can forward it without translation:
``DepthRow`` (an ``updateMktDepth`` row: side 0 ask / 1 bid, position, operation 0 insert /
1 update / 2 delete), ``Quote`` when the top of book changed and ``Trade`` for each print. The
rows of one step, applied in order to a client's book, reproduce ``Market.book`` exactly, and no
prefix of them leaves that book crossed (deletes come before inserts).

Simplifications, honestly:

- The book is not an order-by-order book and does not react to anything but ``take``: taking
  liquidity removes it until the next step refills the window around the unchanged fair price
  (no lasting market impact, no queue dynamics, no hidden liquidity).
- The simulator's own resting orders are not in the book (``matching`` keeps them aside).
- Sessions are a single daily segment (``"0930-1600"``, or ``"1700-1600"`` for an overnight
  session starting the day before) on the weekdays in ``trading_days``; holidays do not exist,
  and the market moves and trades at all hours.
- Historical bars are synthesised backwards from the current price by the same walk, seeded by
  the request, so the last bar closes at the current price; they are not a record of past steps.
- The option's price does not follow its underlying; each instrument walks on its own.
- FX (``CASH``) prints no trades, as IDEALPRO reports none.

A ``Replay`` stands in for the walk per instrument: a JSON-lines recording (format in
``Replay``'s docstring, written by ``record_line``) applied step by step to the same book.
"""

from __future__ import annotations

import functools
import json
import math
import random
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

import numpy as np
from ibapi.common import BarData
from ibapi.const import UNSET_DOUBLE
from ibapi.contract import Contract, ContractDetails

NS = 1_000_000_000
ZERO = Decimal(0)
NO_PRICE = -1.0
"""IB's price for an empty side of the book (``tickPrice`` sends -1 when there is no bid)."""

ASK, BID = 0, 1
"""``updateMktDepth`` side codes."""
INSERT, UPDATE, DELETE = 0, 1, 2
"""``updateMktDepth`` operation codes."""

#: The date ``default_universe`` and ``SimInstrument.details`` use when the caller gives none.
REFERENCE_DATE = date(2025, 6, 2)

#: How many recent prints each book keeps for ``matching`` to catch up on.
TRADE_MEMORY = 4096

#: How many of the walk's N(0, 1) draws a book makes at a time.
NORMALS_BATCH = 1024


# ---- events -----------------------------------------------------------------------------------
# NamedTuples, not frozen dataclasses: a step makes several of these and a frozen dataclass costs
# three times as much to build (object.__setattr__ per field).


class DepthRow(NamedTuple):
    """One ``updateMktDepth`` row. A delete carries the deleted level's price and size 0."""

    side: int
    position: int
    operation: int
    price: float
    size: Decimal


class Quote(NamedTuple):
    """The top of book after a change; an empty side is price -1.0, size 0 (IB's convention)."""

    bid: float
    bid_size: Decimal
    ask: float
    ask_size: Decimal


class Trade(NamedTuple):
    """One print: the last price and size."""

    price: float
    size: Decimal


MarketEvent = DepthRow | Quote | Trade


# ---- instruments ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimInstrument:
    """One tradable contract and the parameters of its simulated market.

    Plain fields so a TOML table maps onto it. Prices are floats in the contract's currency,
    sizes floats in contract units (``size_increment`` 0.0001 for fractional crypto).
    ``trading_hours``/``liquid_hours`` are one daily segment ``"HHMM-HHMM"`` in
    ``time_zone_id`` (a start after the end means the session opens the previous day) on the ISO
    weekdays listed in ``trading_days``; ``details()`` renders them in IB's dated format.
    ``price_increments`` is IB's market rule as ``(low_edge, increment)`` pairs (empty: one
    ``min_tick`` everywhere).
    """

    con_id: int
    symbol: str
    sec_type: str
    exchange: str = "SMART"
    primary_exchange: str = ""
    currency: str = "USD"
    local_symbol: str = ""
    trading_class: str = ""
    multiplier: str = ""
    min_tick: float = 0.01
    price_increments: tuple[tuple[float, float], ...] = ()
    last_trade_date: str = ""
    strike: float = 0.0
    right: str = ""
    long_name: str = ""
    stock_type: str = ""
    under_con_id: int = 0
    under_symbol: str = ""
    under_sec_type: str = ""
    price: float = 100.0
    volatility: float = 0.0001
    spread_ticks: int = 1
    depth_levels: int = 10
    level_size: float = 100.0
    trade_probability: float = 0.3
    size_increment: float = 1.0
    min_size: float = 1.0
    time_zone_id: str = "US/Eastern"
    trading_hours: str = "0400-2000"
    liquid_hours: str = "0930-1600"
    trading_days: str = "12345"
    order_types: str = ""
    valid_exchanges: str = ""
    market_rule_ids: str = ""
    agg_group: int = 1

    def contract(self) -> Contract:
        """A fresh, fully qualified ``Contract`` as IB returns it in contract details."""
        c = Contract()
        c.conId = self.con_id
        c.symbol = self.symbol
        c.secType = self.sec_type
        c.lastTradeDateOrContractMonth = self.last_trade_date
        c.lastTradeDate = self.last_trade_date
        c.strike = self.strike
        c.right = self.right
        c.multiplier = self.multiplier
        c.exchange = self.exchange
        c.primaryExchange = self.primary_exchange
        c.currency = self.currency
        c.localSymbol = self.local_symbol
        c.tradingClass = self.trading_class
        return c

    def details(self, now_ns: int | None = None) -> ContractDetails:
        """``ContractDetails`` filled the way IB fills them for this security type.

        Trading and liquid hours cover the seven days from the local date of ``now_ns``
        (``REFERENCE_DATE`` without it); pass the gateway's time so they are current.
        """
        d = ContractDetails()
        d.contract = self.contract()
        d.marketName = self.trading_class or self.symbol
        d.minTick = self.min_tick
        d.orderTypes = self.order_types
        d.validExchanges = self.valid_exchanges or self.exchange
        d.priceMagnifier = 1
        d.longName = self.long_name
        d.timeZoneId = self.time_zone_id
        day = REFERENCE_DATE if now_ns is None else _local(self, now_ns).date()
        d.tradingHours = render_hours(self, self.trading_hours, day)
        d.liquidHours = render_hours(self, self.liquid_hours, day)
        d.marketRuleIds = self.market_rule_ids
        d.aggGroup = self.agg_group
        d.minSize = _dec(self.min_size)
        d.sizeIncrement = _dec(self.size_increment)
        d.suggestedSizeIncrement = _dec(self.size_increment)
        if self.sec_type == "STK":
            d.stockType = self.stock_type or "COMMON"
        if self.sec_type in ("FUT", "OPT", "FOP"):
            d.contractMonth = self.last_trade_date[:6]
            d.realExpirationDate = self.last_trade_date
            d.underConId = self.under_con_id
            d.underSymbol = self.under_symbol
            d.underSecType = self.under_sec_type
        return d


def _dec(x: float) -> Decimal:
    return Decimal(repr(x)) if x != int(x) else Decimal(int(x))


class Grid:
    """Conversions between IB prices/sizes and the book's integer ticks/lots, for one instrument."""

    __slots__ = ("_inc_int", "_rules", "digits", "increment", "min_tick", "per_unit")

    def __init__(self, instrument: SimInstrument) -> None:
        self.min_tick = mt = instrument.min_tick
        if mt <= 0:
            raise ValueError(f"conId {instrument.con_id}: min_tick must be > 0, got {mt}")
        pu = round(1 / mt)
        self.per_unit = pu if abs(pu * mt - 1) < 1e-9 else 0
        self.digits = max(0, -Decimal(repr(mt)).normalize().as_tuple().exponent) + 1
        self.increment = _dec(instrument.size_increment)
        self._inc_int = int(self.increment) if self.increment == int(self.increment) else 0
        self._rules = tuple(
            (self.ticks_near(edge), max(1, self.ticks_near(inc)))
            for edge, inc in sorted(instrument.price_increments)
        )

    def price(self, ticks: float) -> float:
        """The IB price of a tick count (the nearest double to the decimal price)."""
        if self.per_unit:
            return ticks / self.per_unit
        return round(ticks * self.min_tick, self.digits)

    def ticks_near(self, price: float) -> int:
        """The tick count nearest to ``price``."""
        return round(price * self.per_unit) if self.per_unit else round(price / self.min_tick)

    def ticks(self, price: float) -> int | None:
        """The tick count of ``price``, or None when the price is off the ``min_tick`` grid."""
        x = price * self.per_unit if self.per_unit else price / self.min_tick
        k = round(x)
        return k if abs(x - k) <= 1e-9 * abs(x) + 1e-7 else None

    def increment_ticks(self, ticks: int) -> int:
        """The market rule's price increment, in ticks, that applies at ``ticks``."""
        inc = 1
        for edge, step in self._rules:
            if abs(ticks) >= edge:
                inc = step
        return inc

    def on_rule(self, ticks: int) -> bool:
        """Whether a price in ticks is a multiple of the market rule's increment there."""
        return ticks % self.increment_ticks(ticks) == 0

    def size(self, lots: int) -> Decimal:
        """The IB size (``Decimal``) of a lot count."""
        if self._inc_int:
            return Decimal(lots * self._inc_int)
        return Decimal(lots) * self.increment

    def lots(self, qty: Decimal | float | int) -> int | None:
        """The lot count of ``qty``, or None when it is not a whole number of size increments."""
        q = qty if isinstance(qty, Decimal) else Decimal(repr(qty))
        units = q / self.increment
        if units != units.to_integral_value():
            return None
        return int(units)


# ---- sessions ---------------------------------------------------------------------------------


_zones: dict[str, ZoneInfo] = {}


def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IB time zone id such as ``US/Eastern`` (cached)."""
    z = _zones.get(name)
    if z is None:
        z = _zones[name] = ZoneInfo(name)
    return z


def _local(instrument: SimInstrument, now_ns: int) -> datetime:
    return datetime.fromtimestamp(now_ns / NS, zone(instrument.time_zone_id))


@functools.cache
def _minutes(hhmm: str) -> int:
    if len(hhmm) != 4 or not hhmm.isdigit() or int(hhmm[:2]) > 24 or int(hhmm[2:]) > 59:
        raise ValueError(f"session time {hhmm!r} is not HHMM")
    return int(hhmm[:2]) * 60 + int(hhmm[2:])


def session(instrument: SimInstrument, spec: str, day: date) -> tuple[datetime, datetime] | None:
    """The session ``spec`` (``"HHMM-HHMM"``) that ends on ``day``, or None on a closed day."""
    if str(day.isoweekday()) not in instrument.trading_days:
        return None
    a, _, b = spec.partition("-")
    start, end = _minutes(a), _minutes(b)
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone(instrument.time_zone_id))
    open_day = midnight - timedelta(days=1) if start >= end else midnight
    return open_day + timedelta(minutes=start), midnight + timedelta(minutes=end)


def render_hours(instrument: SimInstrument, spec: str, first: date, days: int = 7) -> str:
    """IB's dated hours string: ``20250602:0930-20250602:1600;20250607:CLOSED;...``."""
    parts = []
    for k in range(days):
        day = first + timedelta(days=k)
        s = session(instrument, spec, day)
        if s is None:
            parts.append(f"{day:%Y%m%d}:CLOSED")
        else:
            parts.append(f"{s[0]:%Y%m%d:%H%M}-{s[1]:%Y%m%d:%H%M}")
    return ";".join(parts)


def session_end_after(instrument: SimInstrument, now_ns: int, liquid: bool = True) -> int:
    """The end (ns) of the first liquid (or trading) session that ends after ``now_ns``.

    This is when a DAY order placed at ``now_ns`` expires.
    """
    spec = instrument.liquid_hours if liquid else instrument.trading_hours
    day = _local(instrument, now_ns).date()
    for k in range(9):
        s = session(instrument, spec, day + timedelta(days=k))
        if s is not None:
            end_ns = int(s[1].timestamp()) * NS
            if end_ns > now_ns:
                return end_ns
    raise ValueError(f"conId {instrument.con_id}: no session in trading_days")


# ---- the book ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookView:
    """A snapshot of one instrument's market: levels best first, L1, last trade and day stats.

    Prices are -1.0 where there is none (an empty side, no trade yet).
    """

    bids: list[tuple[float, Decimal]]
    asks: list[tuple[float, Decimal]]
    last: float
    last_size: Decimal
    volume: Decimal
    open: float
    high: float
    low: float
    close: float
    trades: int
    vwap: float

    @property
    def bid(self) -> float:
        return self.bids[0][0] if self.bids else NO_PRICE

    @property
    def bid_size(self) -> Decimal:
        return self.bids[0][1] if self.bids else ZERO

    @property
    def ask(self) -> float:
        return self.asks[0][0] if self.asks else NO_PRICE

    @property
    def ask_size(self) -> Decimal:
        return self.asks[0][1] if self.asks else ZERO


class BookState:
    """The live state of one instrument's market, in ticks and lots. Read-only for callers.

    ``bid_px`` descending and ``ask_px`` ascending, with their sizes in ``bid_sz``/``ask_sz``.
    ``trades`` holds the last ``TRADE_MEMORY`` prints as ``(seq, price_ticks, lots)``;
    ``trade_seq`` is the sequence number of the latest one, so a consumer that remembers the
    number it saw can pick up exactly the prints since.
    """

    __slots__ = (
        "ask_px",
        "ask_sz",
        "bid_px",
        "bid_sz",
        "close_px",
        "depth",
        "fair",
        "grid",
        "high_px",
        "instrument",
        "last_ns",
        "last_px",
        "last_sz",
        "level",
        "level_lots",
        "low_px",
        "normals",
        "normals_rng",
        "notional",
        "open_px",
        "replay",
        "rng",
        "spread",
        "trade_count",
        "trade_prob",
        "trade_seq",
        "trades",
        "vol",
        "volume",
    )

    def __init__(self, instrument: SimInstrument, seed: int) -> None:
        self.instrument = instrument
        self.grid = g = Grid(instrument)
        self.rng = random.Random(f"{seed}/{instrument.con_id}")
        # The walk's N(0, 1) draws, made in batches (a draw each from ``random.gauss`` costs
        # more than the rest of the walk's step); ``normals.pop()`` takes the next one.
        self.normals_rng = np.random.default_rng(zlib.crc32(f"{seed}/{instrument.con_id}".encode()))
        self.normals: list[float] = []
        self.depth = max(1, instrument.depth_levels)
        start = g.ticks_near(instrument.price)
        self.level = g.increment_ticks(start)
        self.spread = max(1, instrument.spread_ticks)
        self.level_lots = max(1, int(_dec(instrument.level_size) / g.increment))
        self.trade_prob = instrument.trade_probability
        self.vol = instrument.volatility
        self.fair = float(start)
        self.bid_px: list[int] = []
        self.bid_sz: list[int] = []
        self.ask_px: list[int] = []
        self.ask_sz: list[int] = []
        tradeless = instrument.sec_type == "CASH"
        self.last_px = -1 if tradeless else start
        self.last_sz = 0
        self.volume = 0
        self.notional = 0
        self.trade_count = 0
        self.open_px = self.high_px = self.low_px = self.close_px = start
        self.trade_seq = 0
        self.trades: deque[tuple[int, int, int]] = deque(maxlen=TRADE_MEMORY)
        self.last_ns: int | None = None
        self.replay: Replay | None = None

    def refill_normals(self) -> float:
        """Refill ``normals`` with a batch of N(0, 1) draws and take the first one."""
        self.normals = self.normals_rng.standard_normal(NORMALS_BATCH).tolist()
        return self.normals.pop()

    def touch(self) -> tuple[int, int, int, int]:
        """``(bid_ticks, bid_lots, ask_ticks, ask_lots)``; -1 and 0 for an empty side."""
        bp, ap = self.bid_px, self.ask_px
        return (
            bp[0] if bp else -1,
            self.bid_sz[0] if bp else 0,
            ap[0] if ap else -1,
            self.ask_sz[0] if ap else 0,
        )

    def level_lots_at(self, is_bid: bool, ticks: int) -> int:
        """The size (lots) resting at ``ticks`` on one side, 0 if there is no such level."""
        px, sz = (self.bid_px, self.bid_sz) if is_bid else (self.ask_px, self.ask_sz)
        for i, p in enumerate(px):
            if p == ticks:
                return sz[i]
        return 0

    def available(self, is_buy: bool, limit: int | None) -> int:
        """Lots an aggressive order could take now, walking the book up to ``limit`` ticks."""
        px, sz = (self.ask_px, self.ask_sz) if is_buy else (self.bid_px, self.bid_sz)
        total = 0
        for i, p in enumerate(px):
            if limit is not None and (p > limit if is_buy else p < limit):
                break
            total += sz[i]
        return total

    def quote(self) -> Quote:
        """The current top of book as a ``Quote``."""
        g = self.grid
        bp, ap = self.bid_px, self.ask_px
        return Quote(
            g.price(bp[0]) if bp else NO_PRICE,
            g.size(self.bid_sz[0]) if bp else ZERO,
            g.price(ap[0]) if ap else NO_PRICE,
            g.size(self.ask_sz[0]) if ap else ZERO,
        )


class Market:
    """Every instrument's book, stepped on demand. Deterministic for a seed and call sequence.

    ``step_ns`` is the time a ``step`` without ``now_ns`` stands for (it scales the walk).
    """

    def __init__(
        self, instruments: Iterable[SimInstrument], seed: int = 0, *, step_ns: int = NS // 10
    ) -> None:
        self.seed = seed
        self.step_ns = step_ns
        self._step_scale = math.sqrt(step_ns / NS)  # the walk's sqrt(dt) for a step without time
        self._instruments: dict[int, SimInstrument] = {}
        self._books: dict[int, BookState] = {}
        for inst in instruments:
            if inst.con_id in self._instruments:
                raise ValueError(f"duplicate conId {inst.con_id} ({inst.symbol})")
            self._instruments[inst.con_id] = inst
            st = self._books[inst.con_id] = BookState(inst, seed)
            _reshape(st, [])

    # -- instruments ---------------------------------------------------------------------------

    @property
    def instruments(self) -> list[SimInstrument]:
        """All instruments, in the order given."""
        return list(self._instruments.values())

    def instrument(self, con_id: int) -> SimInstrument:
        """The instrument with this conId (KeyError naming it if there is none)."""
        try:
            return self._instruments[con_id]
        except KeyError:
            raise KeyError(f"no instrument with conId {con_id}") from None

    def state(self, con_id: int) -> BookState:
        """The live book state (ticks and lots) that ``matching`` reads; do not mutate it."""
        try:
            return self._books[con_id]
        except KeyError:
            raise KeyError(f"no instrument with conId {con_id}") from None

    def market_rule(self, rule_id: int) -> tuple[tuple[float, float], ...] | None:
        """IB's market rule ``rule_id`` as (low edge, increment) bands: the price increments of
        the instruments whose ``market_rule_ids`` name it (one ``min_tick`` without them)."""
        for inst in self._instruments.values():
            if str(rule_id) in inst.market_rule_ids.split(","):
                return tuple(sorted(inst.price_increments)) or ((0.0, inst.min_tick),)
        return None

    def resolve(self, contract: Contract) -> list[SimInstrument]:
        """The instruments a (possibly partial) contract describes, as IB resolves it.

        A non-zero conId decides alone (an unknown one matches nothing; an exchange the
        instrument does not trade on matches nothing). Otherwise symbol and every other field
        that is set must match; SMART matches instruments routed through SMART. Several
        results mean the description is ambiguous (IB then returns several contract details).
        """
        exchange = (contract.exchange or "").upper()
        if contract.conId:
            inst = self._instruments.get(contract.conId)
            if inst is None or (exchange and not _trades_on(inst, exchange)):
                return []
            return [inst]
        return [inst for inst in self._instruments.values() if _matches(inst, contract)]

    # -- the walk ------------------------------------------------------------------------------

    def step(self, con_id: int, now_ns: int | None = None) -> list[MarketEvent]:
        """Advance one instrument by one step; the events describe every change, in order.

        With ``now_ns`` the walk scales with the time since the previous step (and a replay
        applies every record due by then); without it a step stands for ``step_ns``.
        """
        st = self._books[con_id]
        if st.replay is not None:
            return _replay_step(st, now_ns)
        if now_ns is None:
            scale = self._step_scale
        else:
            dt = self.step_ns if st.last_ns is None else max(0, now_ns - st.last_ns)
            st.last_ns = now_ns
            scale = math.sqrt(dt / NS)
        bp, ap, bs, asz = st.bid_px, st.ask_px, st.bid_sz, st.ask_sz
        before = (bp[0] if bp else -1, bs[0] if bp else 0, ap[0] if ap else -1, asz[0] if ap else 0)
        if scale:
            normals = st.normals
            st.fair *= 1.0 + st.vol * scale * (normals.pop() if normals else st.refill_normals())
        out: list[MarketEvent] = []
        _reshape(st, out)
        r = st.rng
        # order flow: one level's size moves halfway to a fresh draw around the level size
        n_b = len(bp)
        n = n_b + len(ap)
        if n:
            i = int(r.random() * n)
            if i < n_b:
                side, pos, sizes, price = BID, i, bs, bp[i]
            else:
                pos = i - n_b
                side, sizes, price = ASK, asz, ap[pos]
            old = sizes[pos]
            fresh = int(st.level_lots * (0.5 + r.random()) * (1.0 + 0.1 * pos))
            new = max(1, (old + fresh) // 2)
            if new != old:
                sizes[pos] = new
                g = st.grid
                out.append(DepthRow(side, pos, UPDATE, g.price(price), g.size(new)))
        # a print against the touch
        if r.random() < st.trade_prob:
            buy = r.random() < 0.5
            px, sz = (ap, asz) if buy else (bp, bs)
            if px:
                q = min(sz[0], 1 + int(r.random() * st.level_lots * 0.3))
                _consume(st, ASK if buy else BID, q, out)
                _print(st, px[0], q, out)
                if not sz[0]:
                    _remove(st, ASK if buy else BID, 0, out)
        if before != (
            bp[0] if bp else -1,
            bs[0] if bp else 0,
            ap[0] if ap else -1,
            asz[0] if ap else 0,
        ):
            out.append(st.quote())
        return out

    # -- taking liquidity ----------------------------------------------------------------------

    def take_ticks(
        self,
        con_id: int,
        is_buy: bool,
        lots: int,
        limit: int | None = None,
        print_at: int | None = None,
    ) -> tuple[list[tuple[int, int]], list[MarketEvent]]:
        """Remove up to ``lots`` from the opposite side, best level first, up to ``limit``.

        Returns the fills ``[(price_ticks, lots)]`` and the events: depth rows for each level
        touched, a ``Trade`` per level (at ``print_at`` ticks when given: a resting order the
        book crossed trades at its own price) and a ``Quote`` if the top changed.
        """
        st = self._books[con_id]
        side = ASK if is_buy else BID
        px, sz = (st.ask_px, st.ask_sz) if is_buy else (st.bid_px, st.bid_sz)
        before = st.touch()
        fills: list[tuple[int, int]] = []
        out: list[MarketEvent] = []
        while lots > 0 and px:
            p = px[0]
            if limit is not None and (p > limit if is_buy else p < limit):
                break
            q = min(lots, sz[0])
            _consume(st, side, q, out)
            fills.append((p, q))
            lots -= q
            _print(st, p if print_at is None else print_at, q, out)
            if not sz[0]:
                _remove(st, side, 0, out)
        if st.touch() != before:
            out.append(st.quote())
        return fills, out

    def take(
        self, con_id: int, action: str, qty: Decimal, limit: float | None = None
    ) -> tuple[list[tuple[float, Decimal]], list[MarketEvent]]:
        """``take_ticks`` in IB units: ``action`` BUY takes asks, SELL takes bids.

        Returns ``[(price, qty)]`` per level taken and the market events it caused.
        """
        st = self._books[con_id]
        g = st.grid
        lots = g.lots(qty)
        if lots is None:
            raise ValueError(f"quantity {qty} is not a multiple of {g.increment}")
        lim = None if limit is None else g.ticks_near(limit)
        fills, out = self.take_ticks(con_id, action.upper() == "BUY", lots, lim)
        return [(g.price(p), g.size(q)) for p, q in fills], out

    def auction_price(self, con_id: int) -> int | None:
        """The auction price in ticks: the mid on the level grid (ties to the bid), else last."""
        st = self._books[con_id]
        b, _, a, _ = st.touch()
        if b < 0 or a < 0:
            ref = b if b >= 0 else a
            return ref if ref >= 0 else (st.last_px if st.last_px >= 0 else None)
        lv = st.level
        return ((b + a) // (2 * lv)) * lv

    # -- views ---------------------------------------------------------------------------------

    def book(self, con_id: int) -> BookView:
        """A snapshot of the book and the day's statistics."""
        st = self._books[con_id]
        g = st.grid
        price, size = g.price, g.size
        last = price(st.last_px) if st.last_px >= 0 else NO_PRICE
        return BookView(
            bids=[(price(p), size(s)) for p, s in zip(st.bid_px, st.bid_sz, strict=True)],
            asks=[(price(p), size(s)) for p, s in zip(st.ask_px, st.ask_sz, strict=True)],
            last=last,
            last_size=size(st.last_sz),
            volume=size(st.volume),
            open=price(st.open_px),
            high=price(st.high_px),
            low=price(st.low_px),
            close=price(st.close_px),
            trades=st.trade_count,
            vwap=price(st.notional / st.volume) if st.volume else last,
        )

    def snapshot_rows(self, con_id: int) -> list[DepthRow]:
        """The whole book as insert rows (bids then asks), for a new depth subscriber."""
        st = self._books[con_id]
        g = st.grid
        rows = [
            DepthRow(BID, i, INSERT, g.price(p), g.size(s))
            for i, (p, s) in enumerate(zip(st.bid_px, st.bid_sz, strict=True))
        ]
        rows += [
            DepthRow(ASK, i, INSERT, g.price(p), g.size(s))
            for i, (p, s) in enumerate(zip(st.ask_px, st.ask_sz, strict=True))
        ]
        return rows

    # -- replay --------------------------------------------------------------------------------

    def attach_replay(self, con_id: int, replay: Replay) -> list[MarketEvent]:
        """Drive ``con_id`` from ``replay`` instead of the walk, starting from an empty book.

        Returns the deletes that empty the current book (for clients already subscribed).
        """
        st = self._books[con_id]
        out: list[MarketEvent] = []
        for side, px in ((BID, st.bid_px), (ASK, st.ask_px)):
            while px:
                _remove(st, side, len(px) - 1, out)
        if out:
            out.append(st.quote())
        st.replay = replay
        return out

    # -- history -------------------------------------------------------------------------------

    def bars(
        self,
        con_id: int,
        end_ns: int,
        duration_s: int,
        bar_s: int,
        what_to_show: str,
        format_date: int = 1,
    ) -> list[BarData]:
        """Historical bars ending at ``end_ns``, the last one closing at the current price.

        ``what_to_show`` TRADES, MIDPOINT, BID or ASK; all four come from one synthetic path,
        so they agree with each other. Dates as IB sends them: ``"YYYYMMDD HH:MM:SS <zone>"``
        for intraday and ``"YYYYMMDD"`` for daily bars with ``format_date`` 1, epoch seconds
        with 2. An empty list means IB's "HMDS query returned no data" (TRADES for FX, or an
        unknown ``what_to_show``).
        """
        st = self._books[con_id]
        inst = st.instrument
        what = what_to_show.upper()
        if bar_s <= 0 or duration_s <= 0:
            raise ValueError("bar size and duration must be positive seconds")
        b, _, a, _ = st.touch()
        mid = (b + a) / 2 if b >= 0 and a >= 0 else float(max(b, a, st.last_px))
        anchors = {"MIDPOINT": mid, "BID": float(b), "ASK": float(a), "TRADES": float(st.last_px)}
        anchor = anchors.get(what, -1.0)
        if anchor <= 0:
            return []
        n = max(1, duration_s // bar_s)
        tz = zone(inst.time_zone_id)
        daily = bar_s >= 86_400
        end_s = (end_ns - 1) // NS  # the bar that contains the last instant before end_ns
        if daily:
            last_day = datetime.fromtimestamp(end_s, tz).date()
            step_days = bar_s // 86_400
            starts = [
                datetime.combine(last_day - timedelta(days=step_days * k), datetime.min.time(), tz)
                for k in range(n - 1, -1, -1)
            ]
            start_s = [int(s.timestamp()) for s in starts]
        else:
            last = end_s - end_s % bar_s
            start_s = [last - bar_s * k for k in range(n - 1, -1, -1)]
        rng = random.Random(f"{self.seed}/{con_id}/bars/{bar_s}/{start_s[-1]}")
        sigma = st.vol * math.sqrt(bar_s)
        # relative closes, walking back from 1.0 at the end
        rel = [1.0] * (n + 1)
        for k in range(n, 0, -1):
            rel[k - 1] = max(1e-6, rel[k] / (1.0 + sigma * rng.gauss(0.0, 1.0)))
        wicks = [(abs(rng.gauss(0.0, 0.5)), abs(rng.gauss(0.0, 0.5)), rng.random()) for _ in rel]
        g = st.grid
        lv = st.level
        trades = what == "TRADES"
        out: list[BarData] = []
        for k in range(n):
            o_t = anchor * rel[k]
            c_t = anchor * rel[k + 1]
            up, down, u = wicks[k + 1]
            hi = max(o_t, c_t) * (1.0 + sigma * up)
            lo = min(o_t, c_t) * (1.0 - sigma * down)
            o = round(o_t / lv) * lv
            c = anchor if k == n - 1 else round(c_t / lv) * lv
            h = max(o, c, math.ceil(hi / lv) * lv)
            lo_t = max(lv, min(o, c, math.floor(lo / lv) * lv))
            bar = BarData()
            if format_date == 2:
                bar.date = str(start_s[k])
            elif daily:
                bar.date = datetime.fromtimestamp(start_s[k], tz).strftime("%Y%m%d")
            else:
                stamp = datetime.fromtimestamp(start_s[k], tz).strftime("%Y%m%d %H:%M:%S")
                bar.date = f"{stamp} {inst.time_zone_id}"
            bar.open, bar.close = g.price(o), g.price(c)
            bar.high, bar.low = g.price(h), g.price(lo_t)
            if trades:
                lots = max(1, int(st.level_lots * st.trade_prob * bar_s * (1.0 + u)))
                bar.volume = g.size(lots)
                bar.wap = Decimal(repr(g.price(round((h + lo_t + c) / 3))))
                bar.barCount = max(1, int(lots / (0.15 * st.level_lots + 1)))
            else:
                bar.volume = Decimal(-1)
                bar.wap = Decimal(-1)
                bar.barCount = -1
            out.append(bar)
        return out


# ---- book mechanics (module functions: the hot path avoids attribute lookups on self) ---------


def _remove(st: BookState, side: int, pos: int, out: list[MarketEvent]) -> None:
    px, sz = (st.ask_px, st.ask_sz) if side == ASK else (st.bid_px, st.bid_sz)
    p = px.pop(pos)
    del sz[pos]
    out.append(DepthRow(side, pos, DELETE, st.grid.price(p), ZERO))


def _insert(st: BookState, side: int, pos: int, price: int, lots: int, out: list) -> None:
    px, sz = (st.ask_px, st.ask_sz) if side == ASK else (st.bid_px, st.bid_sz)
    px.insert(pos, price)
    sz.insert(pos, lots)
    g = st.grid
    out.append(DepthRow(side, pos, INSERT, g.price(price), g.size(lots)))


def _consume(st: BookState, side: int, lots: int, out: list[MarketEvent]) -> None:
    """Reduce the size at position 0; the caller drops the level if it reached zero."""
    px, sz = (st.ask_px, st.ask_sz) if side == ASK else (st.bid_px, st.bid_sz)
    sz[0] -= lots
    if sz[0]:
        g = st.grid
        out.append(DepthRow(side, 0, UPDATE, g.price(px[0]), g.size(sz[0])))


def _print(st: BookState, price: int, lots: int, out: list[MarketEvent]) -> None:
    st.last_px = price
    st.last_sz = lots
    st.volume += lots
    st.notional += price * lots
    st.trade_count += 1
    if price > st.high_px:
        st.high_px = price
    if price < st.low_px:
        st.low_px = price
    st.trade_seq += 1
    st.trades.append((st.trade_seq, price, lots))
    g = st.grid
    out.append(Trade(g.price(price), g.size(lots)))


def _new_size(st: BookState, pos: int) -> int:
    return max(1, int(st.level_lots * (0.5 + st.rng.random()) * (1.0 + 0.1 * pos)))


def _reshape(st: BookState, out: list[MarketEvent]) -> None:
    """Move both sides to the window around the fair price: deletes first, then inserts.

    In walk mode each side is a contiguous run of levels ``st.level`` ticks apart (prints and
    takes only ever remove its front), so only its two ends can need deletes or inserts.
    """
    lv, n, spread = st.level, st.depth, st.spread
    best_bid_lv = math.floor(st.fair / lv - spread / 2 + 0.5)
    if best_bid_lv <= n:  # keep every bid level above zero
        best_bid_lv = n + 1
        st.fair = (best_bid_lv + spread / 2) * lv
    tb = best_bid_lv * lv
    ta = tb + spread * lv
    bp, ap = st.bid_px, st.ask_px
    span = (n - 1) * lv
    if len(bp) == n and len(ap) == n and bp[0] == tb and ap[0] == ta:
        return
    while ap and ap[0] < ta:
        _remove(st, ASK, 0, out)
    while ap and ap[-1] > ta + span:
        _remove(st, ASK, len(ap) - 1, out)
    while bp and bp[0] > tb:
        _remove(st, BID, 0, out)
    while bp and bp[-1] < tb - span:
        _remove(st, BID, len(bp) - 1, out)
    for j in range((ap[0] - ta) // lv if ap else 0):
        _insert(st, ASK, j, ta + j * lv, _new_size(st, j), out)
    while len(ap) < n:
        _insert(st, ASK, len(ap), ap[-1] + lv if ap else ta, _new_size(st, len(ap)), out)
    for j in range((tb - bp[0]) // lv if bp else 0):
        _insert(st, BID, j, tb - j * lv, _new_size(st, j), out)
    while len(bp) < n:
        _insert(st, BID, len(bp), bp[-1] - lv if bp else tb, _new_size(st, len(bp)), out)


# ---- instrument matching ----------------------------------------------------------------------

_EXCHANGE_ALIASES = {"ISLAND": "NASDAQ"}


def _trades_on(inst: SimInstrument, exchange: str) -> bool:
    ex = _EXCHANGE_ALIASES.get(exchange, exchange)
    if ex == inst.exchange.upper():
        return True
    valid = {_EXCHANGE_ALIASES.get(e, e) for e in inst.valid_exchanges.upper().split(",")}
    return ex in valid


def _matches(inst: SimInstrument, c: Contract) -> bool:
    if (c.symbol or "").upper() != inst.symbol.upper() and not (not c.symbol and c.localSymbol):
        return False
    if c.secType and c.secType.upper() != inst.sec_type:
        return False
    if c.currency and c.currency.upper() != inst.currency:
        return False
    if c.exchange and not _trades_on(inst, c.exchange.upper()):
        return False
    if c.primaryExchange:
        pe = c.primaryExchange.upper()
        if _EXCHANGE_ALIASES.get(pe, pe) != _EXCHANGE_ALIASES.get(
            inst.primary_exchange, inst.primary_exchange
        ):
            return False
    expiry = c.lastTradeDateOrContractMonth or c.lastTradeDate
    if expiry:
        if len(expiry) == 6 and inst.last_trade_date[:6] != expiry:
            return False
        if len(expiry) == 8 and inst.last_trade_date != expiry:
            return False
    if c.strike not in (UNSET_DOUBLE, 0.0) and abs(c.strike - inst.strike) > 1e-9:
        return False
    if c.right and c.right.upper()[:1] != inst.right.upper()[:1]:
        return False
    if c.multiplier:
        try:
            if float(c.multiplier) != float(inst.multiplier or 1):
                return False
        except ValueError:
            return False
    if c.localSymbol and c.localSymbol != inst.local_symbol:
        return False
    return not (c.tradingClass and c.tradingClass != inst.trading_class)


# ---- replay -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One recorded step: its time, its depth rows and its prints."""

    ts_ns: int
    depth: tuple[DepthRow, ...] = ()
    trades: tuple[Trade, ...] = ()


@dataclass(slots=True)
class Replay:
    """A recorded stream of one instrument's steps, replayed in place of the random walk.

    The file format is JSON lines, one step per line (``record_line`` writes them)::

        {"con_id": 265598, "ts_ns": 1748871000000000000,
         "depth": [[side, position, operation, price, size], ...],
         "trades": [[price, size], ...]}

    ``side`` 0 ask / 1 bid, ``operation`` 0 insert / 1 update / 2 delete, exactly as
    ``DepthRow``; sizes are numbers or decimal strings; ``depth`` and ``trades`` may be omitted.
    Quotes are not recorded; they are derived from the book. On replay, rows are applied by
    *price* (insert/update set the level's size, delete removes it) and the depth rows emitted
    are recomputed from the simulator's book, so liquidity the simulator took in between cannot
    corrupt it; recorded positions are informational. A level inserted through the other side
    deletes the levels it crosses; levels past ``depth_levels`` are dropped.

    With ``step(con_id, now_ns)`` every step whose time (shifted so the first step lands on the
    first call) is due is applied; without a time, one step per call. ``loop`` restarts at the
    end; otherwise an exhausted replay leaves the book as it is.
    """

    steps: Sequence[ReplayStep]
    loop: bool = False
    _cursor: int = field(default=0, init=False)
    _offset: int | None = field(default=None, init=False)

    @staticmethod
    def parse_line(line: str) -> tuple[int, ReplayStep]:
        """One JSON line into ``(con_id, ReplayStep)``; ValueError naming what is wrong."""
        rec = json.loads(line)
        try:
            depth = tuple(
                DepthRow(int(s), int(p), int(o), float(px), Decimal(str(sz)))
                for s, p, o, px, sz in rec.get("depth", ())
            )
            trades = tuple(Trade(float(px), Decimal(str(sz))) for px, sz in rec.get("trades", ()))
            return int(rec["con_id"]), ReplayStep(int(rec["ts_ns"]), depth, trades)
        except (KeyError, TypeError, ValueError, ArithmeticError) as e:
            raise ValueError(f"bad replay record {line.strip()[:80]!r}: {e!r}") from None

    @classmethod
    def load(cls, path: str | Path, loop: bool = False) -> dict[int, Replay]:
        """Read a JSON-lines recording into one ``Replay`` per conId."""
        steps: dict[int, list[ReplayStep]] = {}
        with Path(path).open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    con_id, step = cls.parse_line(line)
                except ValueError as e:
                    raise ValueError(f"{path}:{n}: {e}") from None
                steps.setdefault(con_id, []).append(step)
        return {c: cls(s, loop) for c, s in steps.items()}

    def due(self, now_ns: int | None) -> Iterator[ReplayStep]:
        """The steps to apply now (one without a time; every step due by ``now_ns`` with one)."""
        steps = self.steps
        while steps:
            if self._cursor >= len(steps):
                if not self.loop:
                    return
                self._cursor = 0
                self._offset = None
            s = steps[self._cursor]
            if now_ns is None:
                self._cursor += 1
                yield s
                return
            if self._offset is None:
                self._offset = now_ns - s.ts_ns
            if s.ts_ns + self._offset > now_ns:
                return
            self._cursor += 1
            yield s


def record_line(con_id: int, ts_ns: int, events: Iterable[MarketEvent]) -> str:
    """One step's events as a ``Replay`` JSON line (quotes are left out: they are derived)."""
    depth: list[list[object]] = []
    trades: list[list[object]] = []
    for e in events:
        if type(e) is DepthRow:
            depth.append([e.side, e.position, e.operation, e.price, str(e.size)])
        elif type(e) is Trade:
            trades.append([e.price, str(e.size)])
    return json.dumps({"con_id": con_id, "ts_ns": ts_ns, "depth": depth, "trades": trades})


def _set_level(st: BookState, side: int, price: int, lots: int, out: list[MarketEvent]) -> None:
    """Set the size at ``price`` on ``side`` (0 deletes), keeping the book sorted and uncrossed."""
    is_bid = side == BID
    px, sz = (st.bid_px, st.bid_sz) if is_bid else (st.ask_px, st.ask_sz)
    i = 0
    while i < len(px) and (px[i] > price if is_bid else px[i] < price):
        i += 1
    found = i < len(px) and px[i] == price
    if lots <= 0:
        if found:
            _remove(st, side, i, out)
        return
    if found:
        if sz[i] != lots:
            sz[i] = lots
            g = st.grid
            out.append(DepthRow(side, i, UPDATE, g.price(price), g.size(lots)))
        return
    other, other_side = (st.ask_px, ASK) if is_bid else (st.bid_px, BID)
    while other and (other[0] <= price if is_bid else other[0] >= price):
        _remove(st, other_side, 0, out)
    _insert(st, side, i, price, lots, out)
    while len(px) > st.depth:
        _remove(st, side, len(px) - 1, out)


def _replay_step(st: BookState, now_ns: int | None) -> list[MarketEvent]:
    assert st.replay is not None
    g = st.grid
    before = st.touch()
    out: list[MarketEvent] = []
    for step in st.replay.due(now_ns):
        for row in step.depth:
            ticks = g.ticks(row.price)
            lots = g.lots(row.size)
            if ticks is None or lots is None:
                raise ValueError(
                    f"replay for conId {st.instrument.con_id}: {row} is off the price or size grid"
                )
            _set_level(st, row.side, ticks, 0 if row.operation == DELETE else lots, out)
        for t in step.trades:
            ticks, lots = g.ticks(t.price), g.lots(t.size)
            if ticks is None or lots is None:
                raise ValueError(
                    f"replay for conId {st.instrument.con_id}: {t} is off the price or size grid"
                )
            _print(st, ticks, lots, out)
    if st.touch() != before:
        out.append(st.quote())
    return out


# ---- the default universe ---------------------------------------------------------------------

_STK_ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,BENCHPX,CASHQTY,COND,CONDORDER,DARKONLY,"
    "DARKPOLL,DAY,DEACT,DEACTDIS,DEACTEOD,DIS,DUR,FOK,GAT,GTC,GTD,GTT,HID,IBKRATS,ICE,IMB,IOC,"
    "LIT,LMT,LOC,MIDPX,MIT,MKT,MOC,MTL,NGCOMB,NODARK,NONALGO,OCA,OPG,OPGREROUT,PEGBENCH,PEGMID,"
    "POSTATS,POSTONLY,PREOPGRTH,PRICECHK,REL,REL2MID,RELPCTOFS,RPI,RTH,SCALE,SCALEODD,SCALERST,"
    "SIZECHK,SNAPMID,SNAPMKT,SNAPREL,STP,STPLMT,SWEEP,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF"
)
_FUT_ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,BENCHPX,COND,CONDORDER,DAY,DEACT,"
    "DEACTDIS,DEACTEOD,FOK,GAT,GTC,GTD,GTT,HID,ICE,IOC,LIT,LMT,LTH,MIT,MKT,MTL,NGCOMB,NONALGO,"
    "OCA,PEGBENCH,SCALE,SCALERST,SNAPMID,SNAPMKT,SNAPREL,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,"
    "TRAILMIT,WHATIF"
)
_OPT_ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,COND,CONDORDER,DAY,DEACT,DEACTDIS,"
    "DEACTEOD,DIS,FOK,GAT,GTC,GTD,GTT,ICE,IOC,LIT,LMT,MIT,MKT,MTL,NGCOMB,NONALGO,OCA,OPENCLOSE,"
    "PEGMIDVOL,PEGMKTVOL,PEGPRMVOL,PEGSRFVOL,POSTONLY,PRICECHK,REL,RELPCTOFS,RELSTK,SCALE,"
    "SCALERST,SIZECHK,SNAPMID,SNAPMKT,SNAPREL,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,VOLAT,"
    "WHATIF"
)
_FX_ORDER_TYPES = (
    "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,CASHQTY,COND,CONDORDER,DAY,DEACT,"
    "DEACTDIS,DEACTEOD,FOK,GAT,GTC,GTD,GTT,IOC,LIT,LMT,MIT,MKT,NONALGO,OCA,REL,RELPCTOFS,SCALE,"
    "SCALERST,STP,STPLMT,TRAIL,TRAILLIT,TRAILLMT,TRAILMIT,WHATIF"
)
_CRYPTO_ORDER_TYPES = (
    "ADJUST,ALERT,ALLOC,AVGCOST,BASKET,CASHQTY,COND,CONDORDER,DAY,DEACT,DEACTDIS,DEACTEOD,GTC,"
    "IOC,LMT,MKT,NONALGO,STP,STPLMT,WHATIF"
)
_STK_EXCHANGES = (
    "SMART,AMEX,NYSE,CBOE,PHLX,ISE,CHX,ARCA,NASDAQ,DRCTEDGE,BEX,BATS,EDGEA,BYX,IEX,EDGX,FOXRIVER,"
    "PEARL,NYSENAT,LTSE,MEMX,IBEOS,OVERNIGHT,TPLUS0,PSX"
)
_OPT_EXCHANGES = (
    "SMART,AMEX,BATS,BOX,CBOE,CBOE2,EDGX,EMERALD,GEMINI,IBUSOPT,ISE,MERCURY,MIAX,NASDAQOM,"
    "NASDAQBX,PEARL,PHLX,PSE,SAPPHIRE"
)

_MONTH_CODES = "FGHJKMNQUVXZ"


def _rules(rule_id: int, exchanges: str) -> str:
    return ",".join([str(rule_id)] * len(exchanges.split(",")))


def _third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def _next_quarterly(today: date) -> date:
    y, m = today.year, today.month
    while True:
        if m % 3 == 0 and _third_friday(y, m) > today:
            return _third_friday(y, m)
        m += 1
        if m > 12:
            y, m = y + 1, 1


def _derived_con_id(key: str) -> int:
    """A stable nine-digit conId for a derivative that has no fixed one."""
    return 500_000_000 + zlib.crc32(key.encode()) % 300_000_000


def default_universe(today: date | None = None) -> list[SimInstrument]:
    """A realistic mixed universe: stocks, index futures, an option, FX and crypto.

    Stocks, FX and crypto carry their real IB conIds (AAPL 265598, MSFT 272093, SPY 756733,
    EUR.USD 12087792, BTC 479624278). The futures are the front quarterly ES and NQ contracts
    and the option an at-the-money AAPL call expiring the month after ``today``
    (``REFERENCE_DATE`` without it); their conIds are stable per expiry. Pass the session
    date so the derivatives are not already expired.
    """
    today = today or REFERENCE_DATE
    stocks = [
        SimInstrument(
            con_id=265598,
            symbol="AAPL",
            sec_type="STK",
            primary_exchange="NASDAQ",
            local_symbol="AAPL",
            trading_class="NMS",
            long_name="APPLE INC",
            stock_type="COMMON",
            price=200.0,
            volatility=0.00008,
            level_size=300,
            order_types=_STK_ORDER_TYPES,
            valid_exchanges=_STK_EXCHANGES,
            market_rule_ids=_rules(26, _STK_EXCHANGES),
        ),
        SimInstrument(
            con_id=272093,
            symbol="MSFT",
            sec_type="STK",
            primary_exchange="NASDAQ",
            local_symbol="MSFT",
            trading_class="NMS",
            long_name="MICROSOFT CORP",
            stock_type="COMMON",
            price=450.0,
            volatility=0.00007,
            level_size=200,
            order_types=_STK_ORDER_TYPES,
            valid_exchanges=_STK_EXCHANGES,
            market_rule_ids=_rules(26, _STK_EXCHANGES),
        ),
        SimInstrument(
            con_id=756733,
            symbol="SPY",
            sec_type="STK",
            primary_exchange="ARCA",
            local_symbol="SPY",
            trading_class="SPY",
            long_name="SPDR S&P 500 ETF TRUST",
            stock_type="ETF",
            price=590.0,
            volatility=0.00004,
            level_size=800,
            order_types=_STK_ORDER_TYPES,
            valid_exchanges=_STK_EXCHANGES,
            market_rule_ids=_rules(26, _STK_EXCHANGES),
        ),
    ]
    expiry = _next_quarterly(today)
    code = f"{_MONTH_CODES[expiry.month - 1]}{expiry.year % 10}"
    futures = [
        SimInstrument(
            con_id=_derived_con_id(f"{sym}{expiry:%Y%m%d}"),
            symbol=sym,
            sec_type="FUT",
            exchange="CME",
            local_symbol=f"{sym}{code}",
            trading_class=sym,
            multiplier=mult,
            min_tick=0.25,
            last_trade_date=f"{expiry:%Y%m%d}",
            long_name=name,
            under_con_id=under,
            under_symbol=sym,
            under_sec_type="IND",
            price=price,
            volatility=vol,
            level_size=size,
            time_zone_id="US/Central",
            trading_hours="1700-1600",
            liquid_hours="0830-1500",
            order_types=_FUT_ORDER_TYPES,
            valid_exchanges="CME,QBALGO",
            market_rule_ids="67,67",
            agg_group=2,
        )
        for sym, mult, name, under, price, vol, size in (
            ("ES", "50", "E-mini S&P 500", 11004968, 5900.0, 0.00004, 15),
            ("NQ", "20", "E-mini NASDAQ 100", 11004958, 21000.0, 0.00005, 5),
        )
    ]
    opt_expiry = _third_friday(
        today.year + (today.month == 12), today.month % 12 + 1
    )  # the monthly after this month's
    option = SimInstrument(
        con_id=_derived_con_id(f"AAPL{opt_expiry:%Y%m%d}C200"),
        symbol="AAPL",
        sec_type="OPT",
        local_symbol=f"AAPL  {opt_expiry:%y%m%d}C00200000",
        trading_class="AAPL",
        multiplier="100",
        min_tick=0.01,
        price_increments=((0.0, 0.01), (3.0, 0.05)),
        last_trade_date=f"{opt_expiry:%Y%m%d}",
        strike=200.0,
        right="C",
        long_name="APPLE INC",
        under_con_id=265598,
        under_symbol="AAPL",
        under_sec_type="STK",
        price=8.5,
        volatility=0.0004,
        spread_ticks=2,
        depth_levels=5,
        level_size=20,
        trade_probability=0.1,
        trading_hours="0930-1600",
        order_types=_OPT_ORDER_TYPES,
        valid_exchanges=_OPT_EXCHANGES,
        market_rule_ids=_rules(32, _OPT_EXCHANGES),
        agg_group=2,
    )
    fx = SimInstrument(
        con_id=12087792,
        symbol="EUR",
        sec_type="CASH",
        exchange="IDEALPRO",
        local_symbol="EUR.USD",
        trading_class="EUR.USD",
        min_tick=0.00005,
        long_name="European Monetary Union Euro",
        price=1.13,
        volatility=0.00002,
        level_size=1_000_000,
        trade_probability=0.0,
        trading_hours="1715-1700",
        liquid_hours="1715-1700",
        order_types=_FX_ORDER_TYPES,
        valid_exchanges="IDEALPRO",
        market_rule_ids="239",
        agg_group=4,
    )
    crypto = SimInstrument(
        con_id=479624278,
        symbol="BTC",
        sec_type="CRYPTO",
        exchange="PAXOS",
        local_symbol="BTC.USD",
        trading_class="BTC",
        min_tick=0.25,
        long_name="Bitcoin",
        price=105_000.0,
        volatility=0.00003,
        level_size=0.5,
        size_increment=0.0001,
        min_size=0.0001,
        trading_hours="0000-2400",
        liquid_hours="0000-2400",
        trading_days="1234567",
        order_types=_CRYPTO_ORDER_TYPES,
        valid_exchanges="PAXOS",
        market_rule_ids="4095",
        agg_group=4,
    )
    return [*stocks, *futures, option, fx, crypto]
