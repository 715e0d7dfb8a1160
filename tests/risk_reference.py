"""A plain-Python model of the risk kernels (hotpath.risk), written to be read, not to be fast.

Instruments, positions and buckets are small objects; a pre-trade check is a list of rules read
top to bottom, each returning the name of the check that failed. Where the kernels do floating
point arithmetic the model does the same operations in the same order, so the two agree exactly
and the property tests can compare state with ``==``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

BUY, SELL = 1, -1
MARKET, LIMIT, STOP, STOP_LIMIT = 0, 1, 2, 3
MARKET_ON_CLOSE, LIMIT_ON_CLOSE, TRAILING_STOP, TRAILING_STOP_LIMIT = 4, 5, 6, 7
ORDER_TYPES = range(8)
LIMIT_PRICED = (LIMIT, STOP_LIMIT, LIMIT_ON_CLOSE)  # checked and valued at their limit price
NEEDS_STOP = (STOP, STOP_LIMIT)
MAY_HAVE_STOP = (TRAILING_STOP, TRAILING_STOP_LIMIT)  # an initial stop, NaN for none
NEW, MODIFY = 0, 2
ACTIVE, REDUCING, HALTED = 0, 1, 2
NO_PRICE = -(2**63)
MAX_UNITS = 1e15
TOLERANCE = 1e-9
DAY_S = 86_400


def is_on(flag: float) -> bool:
    """Flags are numbers: on when > 0 (NaN is off)."""
    return flag > 0


def limit_is_set(limit: float) -> bool:
    """A limit of inf or NaN is off."""
    return limit < math.inf


def whole(units: float) -> tuple[bool, int]:
    """Is ``units`` a whole, non-zero number (to 1e-9 relative), and which."""
    nearest = round(units)
    return nearest != 0 and abs(units - nearest) <= TOLERANCE * (1.0 + abs(units)), nearest


# ---- limits ---------------------------------------------------------------------------------


@dataclass
class InstrumentLimits:
    tradable: float = 1.0
    blocked: float = 0.0
    allowed: float = 0.0
    tick_size: float = 0.01
    lot_size: float = 1.0
    multiplier: float = 1.0
    max_order_qty: float = math.inf
    max_order_notional: float = math.inf
    max_position: float = math.inf
    max_open_orders: float = math.inf
    collar_pct: float = math.inf
    collar_ticks: float = math.inf
    max_concentration: float = math.inf
    margin: float = 1.0
    venue: float = 0.0
    utc_offset_s: float = 0.0
    windows: list[tuple[float, float]] = field(default_factory=list)
    reduce_only: float = 0.0  # the concentration breaker's flag

    @property
    def tick_value(self) -> float:
        return self.tick_size * self.lot_size * self.multiplier

    def trades_at(self, now_ns: int) -> bool:
        if not self.windows:
            return True
        local = (now_ns // 1_000_000_000 + int(self.utc_offset_s)) % DAY_S
        for opens, closes in self.windows:
            if opens <= closes:
                if opens <= local < closes:
                    return True
            elif local >= opens or local < closes:  # overnight session
                return True
        return False


@dataclass
class StrategyLimits:
    """A strategy's own caps; the smaller of these and the instrument's apply."""

    max_order_qty: float = math.inf
    max_order_notional: float = math.inf
    max_position: float = math.inf


@dataclass
class AccountLimits:
    max_gross: float = math.inf
    max_leverage: float = math.inf
    max_daily_loss: float = math.inf
    allow_list: float = 0.0
    pdt_max_day_trades: float = math.inf
    pdt_min_equity: float = 25_000.0


# ---- state ----------------------------------------------------------------------------------


@dataclass
class Position:
    lots: float = 0.0
    avg: float = 0.0
    realised: float = 0.0
    fees: float = 0.0
    unreal: float = 0.0
    unreal_sod: float = 0.0
    working: dict[int, float] = field(default_factory=lambda: {BUY: 0.0, SELL: 0.0})
    reserved: dict[int, float] = field(default_factory=lambda: {BUY: 0.0, SELL: 0.0})


@dataclass
class InstrumentState:
    ref: float = 0.0
    mark: float = 0.0
    net: float = 0.0
    working: dict[int, float] = field(default_factory=lambda: {BUY: 0.0, SELL: 0.0})
    open_orders: float = 0.0
    exposure: float = 0.0
    opened_today: float = 0.0
    last_ref: float = 0.0  # the last mid: the collar's reference while there is none

    def worst_case(self) -> float:
        return max(abs(self.net + self.working[BUY]), abs(self.net - self.working[SELL]))


@dataclass
class DayPnl:
    realised: float = 0.0
    unreal: float = 0.0
    fees: float = 0.0

    def total(self) -> float:
        return self.realised + self.unreal - self.fees


@dataclass
class Account:
    trading_state: float = ACTIVE
    equity_sod: float = 0.0
    pnl: DayPnl = field(default_factory=DayPnl)
    gross: float = 0.0
    buying_power: float = math.inf
    reserved: float = 0.0
    day_trades: float = 0.0

    def equity(self) -> float:
        return self.equity_sod + self.pnl.total()


@dataclass
class Bucket:
    """Token bucket counted in nanoseconds of credit; one message costs ``interval``."""

    interval: int = 0
    capacity: int = 0
    credit: int = 0
    last: int = 0

    def refill(self, now: int) -> None:
        if now > self.last:
            self.credit = min(self.capacity, self.credit + (now - self.last))
            self.last = now

    def has_token(self) -> bool:
        return self.credit >= self.interval

    def take(self) -> None:
        self.credit -= self.interval


@dataclass
class Intent:
    strategy: int
    instrument: int
    side: int
    order_type: int
    qty: float
    price: float
    kind: int = NEW
    replaced_leaves: int = 0
    replaced_filled: int = 0
    stop_price: float = math.nan


# ---- the model ------------------------------------------------------------------------------


class RiskModel:
    """Limits and state for ``len(instruments)`` instruments and ``len(strategy_loss)``
    strategies; buckets are keyed ``"account"``, ``("strategy", s)`` and ``("venue", v)``."""

    def __init__(
        self,
        instruments: list[InstrumentLimits],
        strategy_max_loss: list[float],
        account_limits: AccountLimits,
        n_venues: int,
        strategy_limits: list[StrategyLimits] | None = None,
    ) -> None:
        self.instruments = instruments
        self.strategy_max_loss = strategy_max_loss
        self.strategy_limits = strategy_limits or [StrategyLimits() for _ in strategy_max_loss]
        self.limits = account_limits
        self.n_venues = n_venues
        self.books = [InstrumentState() for _ in instruments]
        self.positions = {
            (s, i): Position()
            for s in range(len(strategy_max_loss))
            for i in range(len(instruments))
        }
        self.strategy_pnl = [DayPnl() for _ in strategy_max_loss]
        self.account = Account()
        self.buckets: dict[object, Bucket] = {"account": Bucket()}
        for s in range(len(strategy_max_loss)):
            self.buckets[("strategy", s)] = Bucket()
        for v in range(n_venues):
            self.buckets[("venue", v)] = Bucket()

    # ---- pre-trade checks ------------------------------------------------------------------

    def check(self, it: Intent, now: int) -> tuple[str, int, int]:
        """(name of the first failed check or "PASS", lots, ticks); a pass updates the state."""
        return self.check_with_stop(it, now)[:3]

    def check_with_stop(self, it: Intent, now: int) -> tuple[str, int, int, int]:
        """``check`` and the stop price in ticks (NO_PRICE when the order has none)."""
        failed, order = self._first_failure(it, now)
        if failed:
            return failed, 0, NO_PRICE, NO_PRICE
        self._accept(it, order)
        return "PASS", order["lots"], order["ticks"], order["stop_ticks"]

    def _first_failure(self, it: Intent, now: int) -> tuple[str, dict]:
        order: dict = {}
        if not 0 <= it.instrument < len(self.instruments):
            return "UNKNOWN_INSTRUMENT", order
        if not 0 <= it.strategy < len(self.strategy_max_loss):
            return "UNKNOWN_STRATEGY", order
        well_formed = (
            it.side in (BUY, SELL)
            and it.order_type in ORDER_TYPES
            and it.kind in (NEW, MODIFY)
            and it.replaced_leaves >= 0
            and it.replaced_filled >= 0
            and (it.kind == MODIFY or it.replaced_leaves == it.replaced_filled == 0)
        )
        if not well_formed:
            return "BAD_INTENT", order
        if self.account.trading_state == HALTED:
            return "TRADING_HALTED", order
        inst = self.instruments[it.instrument]
        book = self.books[it.instrument]
        if not (is_on(inst.tradable) and 0 <= inst.venue < self.n_venues):
            return "NOT_TRADABLE", order
        if is_on(inst.blocked):
            return "SYMBOL_BLOCKED", order
        if is_on(self.limits.allow_list) and not is_on(inst.allowed):
            return "NOT_ALLOWED", order
        if not inst.trades_at(now):
            return "OUTSIDE_TRADING_HOURS", order

        lots_f = it.qty / inst.lot_size
        if not (it.qty > 0 and lots_f <= MAX_UNITS):
            return "BAD_QUANTITY", order
        ok, lots = whole(lots_f)
        if not ok:
            return "NOT_WHOLE_LOTS", order
        caps = self.strategy_limits[it.strategy]
        if it.qty > min(inst.max_order_qty, caps.max_order_qty):
            return "MAX_ORDER_QTY", order
        lots_after = lots - it.replaced_filled
        if lots_after <= 0:
            return "MODIFY_BELOW_FILLED", order

        stop_ticks = NO_PRICE
        has_stop = it.order_type in NEEDS_STOP or (
            it.order_type in MAY_HAVE_STOP and not math.isnan(it.stop_price)
        )
        if has_stop:
            stops_f = it.stop_price / inst.tick_size
            if not (it.stop_price > 0 and stops_f <= MAX_UNITS):
                return "BAD_STOP_PRICE", order
            ok, stop_ticks = whole(stops_f)
            if not ok:
                return "STOP_OFF_TICK_GRID", order

        if it.order_type in LIMIT_PRICED:
            ticks_f = it.price / inst.tick_size
            if not (it.price > 0 and ticks_f <= MAX_UNITS):
                return "BAD_PRICE", order
            ok, ticks = whole(ticks_f)
            if not ok:
                return "OFF_TICK_GRID", order
            price = float(ticks)
            if it.order_type == STOP_LIMIT:  # its limit goes live at its stop
                collar_ref = float(stop_ticks)
            else:
                collar_ref = book.ref if book.ref > 0 else book.last_ref
            if collar_ref > 0:
                distance = abs(price - collar_ref)
                if distance > inst.collar_ticks or distance > inst.collar_pct * collar_ref:
                    return "PRICE_COLLAR", order
            value_at = book.ref if book.ref > 0 else (book.mark if book.mark > 0 else price)
        else:
            if not book.ref > 0:
                return "NO_REFERENCE_PRICE", order
            ticks = NO_PRICE
            price = book.ref
            value_at = book.ref

        pos = self.positions[(it.strategy, it.instrument)]
        working_after = pos.working[it.side] - it.replaced_leaves + lots_after
        reduces = pos.lots * it.side < 0 and working_after <= abs(pos.lots)
        if self.account.trading_state == REDUCING and not reduces:
            return "REDUCING_ONLY", order
        notional = lots * price * inst.tick_value
        if notional > min(inst.max_order_notional, caps.max_order_notional):
            return "MAX_ORDER_NOTIONAL", order
        position = abs(pos.lots + working_after * it.side) * inst.lot_size
        if position > min(inst.max_position, caps.max_position):
            return "MAX_POSITION", order
        account_working = book.working[it.side] - it.replaced_leaves + lots_after
        if abs(book.net + account_working * it.side) * inst.lot_size > inst.max_position:
            return "MAX_POSITION", order
        if it.kind == NEW and book.open_orders >= inst.max_open_orders:
            return "MAX_OPEN_ORDERS", order

        added = float(max(lots_after - it.replaced_leaves, 0))
        before = book.worst_case()
        working = dict(book.working)
        working[it.side] += added
        after = max(abs(book.net + working[BUY]), abs(book.net - working[SELL]))
        increases = after > before
        exposure = after * value_at * inst.tick_value
        gross = self.account.gross - book.exposure + exposure
        pnl = self.account.pnl.total()
        equity = self.account.equity_sod + pnl
        if increases:
            if is_on(inst.reduce_only):
                return "CONCENTRATION_BREAKER", order
            if gross > self.limits.max_gross:
                return "MAX_GROSS_EXPOSURE", order
            lev = self.limits.max_leverage
            if limit_is_set(lev) and (equity <= 0 or gross > lev * equity):
                return "MAX_LEVERAGE", order
            conc = inst.max_concentration
            if limit_is_set(conc) and (equity <= 0 or exposure > conc * equity):
                return "MAX_CONCENTRATION", order
        if (
            not reduces
            and self.strategy_pnl[it.strategy].total() <= -self.strategy_max_loss[it.strategy]
        ):
            return "STRATEGY_DAILY_LOSS", order
        if increases and pnl <= -self.limits.max_daily_loss:
            return "ACCOUNT_DAILY_LOSS", order
        per_lot = price * inst.tick_value * inst.margin
        required = added * per_lot if increases else 0.0
        held = pos.reserved[it.side]
        if it.kind == MODIFY and held > 0 and pos.working[it.side] > 0:
            # The kept lots at the new price, less their share of what the side reserved.
            working_lots = pos.working[it.side]
            share = held * min(it.replaced_leaves, working_lots) / working_lots
            extra = min(lots_after, it.replaced_leaves) * per_lot - share
            if extra > TOLERANCE * (1 + share):  # not the float noise of an unmoved price
                required += extra
        reserved = self.account.reserved + required
        if required > 0 and reserved > self.account.buying_power:
            return "BUYING_POWER", order
        would_day_trade = book.net * it.side < 0 and book.opened_today > 0
        if (
            limit_is_set(self.limits.pdt_max_day_trades)
            and equity < self.limits.pdt_min_equity
            and would_day_trade
            and self.account.day_trades >= self.limits.pdt_max_day_trades
        ):
            return "PATTERN_DAY_TRADER", order

        rate_buckets = [
            ("STRATEGY_RATE", self.buckets[("strategy", it.strategy)]),
            ("ACCOUNT_RATE", self.buckets["account"]),
            ("VENUE_PACING", self.buckets[("venue", int(inst.venue))]),
        ]
        for _, bucket in rate_buckets:
            bucket.refill(now)
        for name, bucket in rate_buckets:
            if not bucket.has_token():
                return name, order
        order.update(
            lots=lots,
            ticks=ticks,
            stop_ticks=stop_ticks,
            price=price,
            value_at=value_at,
            added=added,
            required=required,
            reserved=reserved,
            working=working,
            exposure=exposure,
            gross=gross,
            buckets=[b for _, b in rate_buckets],
        )
        return "", order

    def _accept(self, it: Intent, order: dict) -> None:
        for bucket in order["buckets"]:
            bucket.take()
        pos = self.positions[(it.strategy, it.instrument)]
        book = self.books[it.instrument]
        pos.working[it.side] += order["added"]
        pos.reserved[it.side] += order["required"]
        self.account.reserved = order["reserved"]
        book.working = order["working"]
        if it.kind == NEW:
            book.open_orders += 1
        if book.mark != order["value_at"]:
            book.mark = order["value_at"]
            self._revalue_positions(it.instrument)
        book.exposure = order["exposure"]
        self.account.gross = order["gross"]

    # ---- state updates ---------------------------------------------------------------------

    def _revalue_positions(self, i: int) -> None:
        book = self.books[i]
        tick_value = self.instruments[i].tick_value
        for s in range(len(self.strategy_max_loss)):
            pos = self.positions[(s, i)]
            if pos.lots != 0 and book.mark > 0:
                unreal = (book.mark - pos.avg) * pos.lots * tick_value
            else:
                unreal = 0.0
            change = unreal - pos.unreal
            pos.unreal = unreal
            self.strategy_pnl[s].unreal += change
            self.account.pnl.unreal += change

    def _revalue_exposure(self, i: int) -> None:
        book = self.books[i]
        exposure = book.worst_case() * book.mark * self.instruments[i].tick_value
        self.account.gross = self.account.gross - book.exposure + exposure
        book.exposure = exposure

    def _take_off_working(self, s: int, i: int, side: int, lots: int, done: bool) -> None:
        pos = self.positions[(s, i)]
        book = self.books[i]
        working = pos.working[side]
        k = min(float(max(lots, 0)), working)
        if k > 0:
            held = pos.reserved[side]
            freed = held if k >= working else held * k / working
            pos.reserved[side] = held - freed
            self.account.reserved -= freed
            pos.working[side] = working - k
            book.working[side] -= k
        if done and book.open_orders > 0:
            book.open_orders -= 1

    def _valid(self, s: int, i: int, side: int) -> bool:
        return (
            0 <= s < len(self.strategy_max_loss)
            and 0 <= i < len(self.instruments)
            and side in (BUY, SELL)
        )

    def release(self, s: int, i: int, side: int, lots: int, done: bool) -> bool:
        if not self._valid(s, i, side):
            return False
        self._take_off_working(s, i, side, lots, done)
        self._revalue_exposure(i)
        return True

    def fill(
        self,
        s: int,
        i: int,
        side: int,
        lots: int,
        ticks: int,
        commission: float,
        release_lots: int,
        done: bool,
    ) -> bool:
        if not self._valid(s, i, side) or lots <= 0:
            return False
        self._take_off_working(s, i, side, release_lots, done)
        inst = self.instruments[i]
        tick_value = inst.tick_value
        pos = self.positions[(s, i)]
        signed = float(lots * side)
        old = pos.lots
        new = old + signed
        realised = 0.0
        if old == 0 or (old > 0) == (signed > 0):
            pos.avg = (pos.avg * abs(old) + ticks * lots) / abs(new)
        else:
            closed = min(float(lots), abs(old))
            realised = (ticks - pos.avg) * closed * (1.0 if old > 0 else -1.0) * tick_value
            if new == 0:
                pos.avg = 0.0
            elif (new > 0) != (old > 0):
                pos.avg = float(ticks)
        pos.lots = new
        pos.realised += realised
        pos.fees += commission
        for pnl in (self.strategy_pnl[s], self.account.pnl):
            pnl.realised += realised
            pnl.fees += commission

        book = self.books[i]
        closing = book.net != 0 and (book.net > 0) != (signed > 0)
        closed_account = min(float(lots), abs(book.net)) if closing else 0.0
        opened_account = lots - closed_account
        if closed_account > 0 and book.opened_today > 0:
            self.account.day_trades += 1
            book.opened_today -= min(book.opened_today, closed_account)
        book.opened_today += opened_account
        margin_per_lot = ticks * tick_value * inst.margin
        self.account.buying_power += (closed_account - opened_account) * margin_per_lot
        book.net = book.net + signed
        if not book.ref > 0:
            book.mark = float(ticks)
        self._revalue_positions(i)
        self._revalue_exposure(i)
        return True

    def mark(self, tops: list[tuple[int, int, int]]) -> None:
        """``(instrument, bid ticks, ask ticks)`` per instrument whose top changed."""
        for i, bid, ask in tops:
            if not 0 <= i < len(self.books):
                continue
            book = self.books[i]
            if bid == NO_PRICE or ask == NO_PRICE:
                book.ref = 0.0
                continue
            book.ref = book.mark = book.last_ref = (bid + ask) / 2
            self._revalue_positions(i)
            self._revalue_exposure(i)

    def daily_reset(self, equity_sod: float, day_trades: int) -> None:
        if not math.isfinite(equity_sod):
            equity_sod = self.account.equity()
        for pos in self.positions.values():
            pos.realised = 0.0
            pos.fees = 0.0
            pos.unreal_sod = pos.unreal
        self.strategy_pnl = [DayPnl() for _ in self.strategy_pnl]
        for book in self.books:
            book.opened_today = 0.0
        self.account.pnl = DayPnl()
        self.account.equity_sod = equity_sod
        self.account.day_trades = float(day_trades)

    def charge(self, key: object, now: int) -> bool:
        bucket = self.buckets[key]
        bucket.refill(now)
        had = bucket.has_token()
        bucket.take()
        return had
