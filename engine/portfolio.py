"""Positions, P&L, equity and risk figures per strategy, per account and in total.

A fill updates one ``Position`` per (strategy, instrument) and one per (account, instrument),
and nothing else: that is all the work on the hot path. Every figure an operator reads (P&L
per currency and in the base currency, today's P&L, equity, drawdown, exposure, leverage,
concentration, VaR) is computed on demand from the positions and the book's marks, most
conveniently all at once with ``Portfolio.snapshot()``.

Units. Positions are in lots and prices in ticks; one tick on one lot is worth
``Instrument.tick_value`` (tick size x lot size x multiplier) in the instrument's currency. A
position is worth ``lots x mark_ticks x tick_value``, the measure ``hotpath.risk`` uses for
exposure, and its unrealised P&L is ``(mark - average cost) x lots x tick_value``. Fees are in
the instrument's currency.

Currencies. Figures are kept per currency (``pnl_by_currency``). Base-currency figures convert
with ``[portfolio.fx]`` (units of the base currency per unit of the other); a currency without
a rate is left out of every base-currency figure and named in ``Portfolio.unconverted``, never
added one to one.

Accounts. An account is the venue an instrument trades on (``Instrument.venue``): one IB venue
is one IB account. The account book nets the strategies' fills as the broker does, so its
average cost and realised P&L are what the broker reports; when two strategies trade against
each other the split between realised and unrealised differs from the strategies' sum, the
total never does.

Marks. The mark is the book's mid; when the book has none (a side is empty), the engine's
mark is the last mid the book had (kept by the risk kernel on every book batch; before any,
the last fill's price, as the risk checks value it), so an empty book for a moment does not
swing equity. Without one, the last mark this portfolio read is used. A position that never
had a mark has no unrealised P&L and no exposure.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engine.config import PortfolioConfig
from engine.instruments import InstrumentRegistry

log = logging.getLogger(__name__)

_NO_PNL = (0.0, 0.0, 0.0)


@dataclass(slots=True)
class BrokerAccount:
    """What a broker (IB) reports about the account, kept beside the engine's own figures.

    ``positions`` are in the broker's units (shares, contracts) by engine instrument id;
    ``other_positions`` are contracts the registry does not list (``symbol secType conId``).
    Both are ``account``'s, the one the venue trades and the engine reconciles against. A login
    that manages several accounts reports them all: ``by_account`` keeps every account's, by
    (account, ``symbol secType conId``).
    ``values`` are the account values as reported: (key, currency) -> text.
    """

    venue: str
    account: str = ""
    positions: dict[int, tuple[float, float]] = field(default_factory=dict)  # qty, avg cost
    other_positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    by_account: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    values: dict[tuple[str, str], str] = field(default_factory=dict)
    updated_ns: int = 0

    def value(self, key: str, currency: str = "USD") -> float | None:
        """A numeric account value (``NetLiquidation``, ``BuyingPower``...), None if absent."""
        text = self.values.get((key, currency))
        try:
            return float(text) if text is not None else None
        except ValueError:
            return None


class Position:
    """Net position in lots, average cost in ticks, realised P&L and fees in currency."""

    __slots__ = ("avg_ticks", "commission", "fills", "instrument_id", "lots", "realised")

    def __init__(self, instrument_id: int) -> None:
        self.instrument_id = instrument_id
        self.lots = 0
        self.avg_ticks = 0.0
        self.realised = 0.0
        self.commission = 0.0
        self.fills = 0

    def apply_fill(self, side: int, lots: int, price_ticks: int, tick_value: float) -> None:
        """A fill of ``lots`` on ``side``. Negative ``lots`` take back an earlier fill (a venue's
        execution correction reverses it): booked as the opposite trade at its price, so the
        total P&L is as if it had never happened (the split between realised and unrealised
        too, unless other fills came between at other prices)."""
        if lots < 0:
            side, lots = -side, -lots
        signed = lots * side
        old = self.lots
        new = old + signed
        if old == 0 or (old > 0) == (signed > 0):
            # Opening or adding: weighted average cost.
            self.avg_ticks = (self.avg_ticks * abs(old) + price_ticks * lots) / abs(new)
        else:
            closed = min(abs(signed), abs(old))
            direction = 1 if old > 0 else -1
            self.realised += (price_ticks - self.avg_ticks) * closed * direction * tick_value
            if new == 0:
                self.avg_ticks = 0.0
            elif (new > 0) != (old > 0):
                # Flipped through zero: the remainder opens at the fill price.
                self.avg_ticks = float(price_ticks)
        self.lots = new
        self.fills += 1

    def unrealised(self, mark_ticks: float | None, tick_value: float) -> float:
        if self.lots == 0 or mark_ticks is None or mark_ticks != mark_ticks:
            return 0.0
        return (mark_ticks - self.avg_ticks) * self.lots * tick_value


@dataclass(frozen=True, slots=True)
class PnLFigures:
    """Realised, unrealised and fees in one currency; ``total`` nets them."""

    realised: float = 0.0
    unrealised: float = 0.0
    fees: float = 0.0

    @property
    def total(self) -> float:
        return self.realised + self.unrealised - self.fees


@dataclass(frozen=True, slots=True)
class PortfolioSnapshot:
    """Every portfolio figure at one moment, in the base currency unless a field says otherwise.

    ``equity`` is start equity plus total P&L (NaN while the start equity is unknown, and so
    are the figures divided by it). ``peak`` and ``drawdown`` are over the moments the
    portfolio was observed (snapshots, samples, day rolls). ``max_concentration_instrument`` is
    -1 when flat. ``var`` and ``es`` are None until enough samples (see ``Portfolio.var``).
    ``currencies`` is in each currency's own units; ``unconverted`` lists the currencies left
    out of the base-currency figures for want of an FX rate.
    """

    base_currency: str
    equity: float
    start_equity: float
    day_start_equity: float
    peak: float
    drawdown: float
    drawdown_pct: float
    day_pnl: float
    realised: float
    unrealised: float
    fees: float
    gross: float
    net: float
    leverage: float
    max_concentration: float
    max_concentration_instrument: int
    var: float | None
    es: float | None
    strategies: dict[int, PnLFigures]
    strategy_day_pnl: dict[int, float]
    accounts: dict[str, PnLFigures]
    currencies: dict[str, PnLFigures]
    unconverted: tuple[str, ...]

    @property
    def total_pnl(self) -> float:
        return self.realised + self.unrealised - self.fees


# One row per strategy position: strategy id, instrument id, realised, unrealised, fees.
_Row = tuple[int, int, float, float, float]


class Portfolio:
    """All positions, keyed by (strategy id, instrument id); ``mark`` gives a price in ticks.

    ``config`` is the ``[portfolio]`` section (defaults without one); ``start_equity`` the
    account equity P&L is added to (``risk.equity``, or the broker's NetLiquidation through
    ``rebase_equity``); NaN leaves equity and the figures relative to it unknown.
    """

    def __init__(
        self,
        registry: InstrumentRegistry,
        mark: Callable[[int], float | None],
        config: PortfolioConfig | None = None,
        start_equity: float = math.nan,
    ) -> None:
        config = config or PortfolioConfig()
        self.config = config
        self._registry = registry
        self._mark = mark
        self._positions: dict[tuple[int, int], Position] = {}
        self._accounts: dict[tuple[str, int], Position] = {}
        self._tick_value = [i.tick_value for i in registry]
        self._venue = [i.venue for i in registry]
        self._currency = [i.currency for i in registry]
        self._last_mark = [math.nan] * len(registry)
        #: The brokers' own view, by venue name (filled by venue adapters that have one).
        self.broker: dict[str, BrokerAccount] = {}

        self.base_currency = config.base_currency or (
            self._currency[0] if self._currency else "USD"
        )
        if config.fx.get(self.base_currency, 1.0) != 1.0:
            raise ValueError(
                f"portfolio.fx.{self.base_currency}: the base currency's rate is 1 by definition; "
                "remove it or set portfolio.base_currency"
            )
        self._fx_table = {**config.fx, self.base_currency: 1.0}
        self._fx = [self._fx_table.get(c, math.nan) for c in self._currency]
        self.unconverted = tuple(sorted({c for c in self._currency if c not in self._fx_table}))
        if self.unconverted:
            log.warning(
                "portfolio: no FX rate for %s: left out of the %s totals; set [portfolio.fx] "
                "(units of %s per unit) to include them",
                ", ".join(self.unconverted), self.base_currency, self.base_currency,
            )  # fmt: skip

        self.start_equity = float(start_equity)
        self._peak_pnl = 0.0

        #: When the current trading day began (0: at start-up, no roll yet).
        self.day_started_ns = 0
        #: Marks in ticks at the last day roll (NaN: none yet).
        self.day_marks: list[float] = list(self._last_mark)
        self._day_base: dict[tuple[int, int], tuple[float, float, float]] = {}
        self._day_base_pnl = 0.0

        self._sample_ns = round(config.var_sample_s * 1e9)
        self._var_ring = np.full(config.var_window + 1, math.nan)  # total P&L at each sample
        self._var_count = 0
        self._var_last_ns: int | None = None

    # ---- fills (hot path) ------------------------------------------------------------------

    def broker_account(self, venue: str) -> BrokerAccount:
        account = self.broker.get(venue)
        if account is None:
            account = self.broker[venue] = BrokerAccount(venue)
        return account

    def position(self, strategy_id: int, instrument_id: int) -> Position:
        key = (strategy_id, instrument_id)
        pos = self._positions.get(key)
        if pos is None:
            pos = self._positions[key] = Position(instrument_id)
        return pos

    def account_position(self, venue: str, instrument_id: int) -> Position:
        """The account's (venue's) position, netted across strategies as the broker nets it.

        Its ``commission`` stays 0: fees are booked to strategy positions (see ``account_pnl``).
        """
        key = (venue, instrument_id)
        pos = self._accounts.get(key)
        if pos is None:
            pos = self._accounts[key] = Position(instrument_id)
        return pos

    def apply_fill(
        self,
        strategy_id: int,
        instrument_id: int,
        side: int,
        lots: int,
        price_ticks: int,
        commission: float,
    ) -> Position:
        tick_value = self._tick_value[instrument_id]
        pos = self.position(strategy_id, instrument_id)
        pos.apply_fill(side, lots, price_ticks, tick_value)
        pos.commission += commission
        self.account_position(self._venue[instrument_id], instrument_id).apply_fill(
            side, lots, price_ticks, tick_value
        )
        return pos

    # ---- positions -------------------------------------------------------------------------

    def net_lots(self, instrument_id: int) -> int:
        """Position across all strategies."""
        return sum(p.lots for (_, i), p in self._positions.items() if i == instrument_id)

    def positions(self) -> dict[tuple[int, int], Position]:
        return self._positions

    def strategy_positions(self, strategy_id: int) -> dict[int, int]:
        """One strategy's non-zero positions: instrument id -> lots."""
        return {i: p.lots for (s, i), p in self._positions.items() if s == strategy_id and p.lots}

    def account_positions(self, venue: str) -> dict[int, int]:
        """One account's (venue's) non-zero positions: instrument id -> lots."""
        return {i: p.lots for (v, i), p in self._accounts.items() if v == venue and p.lots}

    # ---- P&L -------------------------------------------------------------------------------

    def _mark_of(self, instrument_id: int) -> float:
        """The book's mark in ticks, else the last one seen, else NaN."""
        m = self._mark(instrument_id)
        if m is None or not math.isfinite(m):
            return self._last_mark[instrument_id]
        self._last_mark[instrument_id] = m
        return m

    def _unrealised(self, pos: Position, instrument_id: int) -> float:
        m = self._mark_of(instrument_id)
        if pos.lots == 0 or m != m:
            return 0.0
        return (m - pos.avg_ticks) * pos.lots * self._tick_value[instrument_id]

    def _rows(self) -> list[_Row]:
        return [
            (sid, iid, p.realised, self._unrealised(p, iid), p.commission)
            for (sid, iid), p in self._positions.items()
        ]

    def _day_rows(self, rows: list[_Row]) -> list[_Row]:
        """Each row less its value at the last day roll: today's share."""
        base = self._day_base
        out = []
        for sid, iid, r, u, f in rows:
            r0, u0, f0 = base.get((sid, iid), _NO_PNL)
            out.append((sid, iid, r - r0, u - u0, f - f0))
        return out

    def _fold(
        self, rows: list[_Row], strategy_id: int | None = None, venue: str | None = None
    ) -> PnLFigures:
        """Rows of one strategy and/or account summed in the base currency."""
        realised = unrealised = fees = 0.0
        fx = self._fx
        for sid, iid, r, u, f in rows:
            if strategy_id is not None and sid != strategy_id:
                continue
            if venue is not None and self._venue[iid] != venue:
                continue
            rate = fx[iid]
            if rate != rate:
                continue
            realised += r * rate
            unrealised += u * rate
            fees += f * rate
        return PnLFigures(realised, unrealised, fees)

    def _by_currency(
        self, rows: list[_Row], strategy_id: int | None, venue: str | None
    ) -> dict[str, PnLFigures]:
        sums: dict[str, list[float]] = {}
        for sid, iid, r, u, f in rows:
            if strategy_id is not None and sid != strategy_id:
                continue
            if venue is not None and self._venue[iid] != venue:
                continue
            acc = sums.setdefault(self._currency[iid], [0.0, 0.0, 0.0])
            acc[0] += r
            acc[1] += u
            acc[2] += f
        return {c: PnLFigures(*v) for c, v in sorted(sums.items())}

    def pnl(self, strategy_id: int | None = None) -> tuple[float, float, float]:
        """(realised, unrealised, commission) in the base currency, one strategy or all."""
        fig = self._fold(self._rows(), strategy_id)
        return fig.realised, fig.unrealised, fig.fees

    def total_pnl(self, strategy_id: int | None = None) -> float:
        return self._fold(self._rows(), strategy_id).total

    def strategy_pnl(self, strategy_id: int) -> PnLFigures:
        """One strategy's P&L in the base currency."""
        return self._fold(self._rows(), strategy_id)

    def pnl_by_currency(
        self, strategy_id: int | None = None, venue: str | None = None
    ) -> dict[str, PnLFigures]:
        """P&L in each instrument currency's own units, optionally of one strategy / account."""
        return self._by_currency(self._rows(), strategy_id, venue)

    def _account_figures(self, rows: list[_Row]) -> dict[str, PnLFigures]:
        fees: dict[str, float] = {}
        for _, iid, _, _, f in rows:
            rate = self._fx[iid]
            if rate == rate:
                venue = self._venue[iid]
                fees[venue] = fees.get(venue, 0.0) + f * rate
        sums: dict[str, list[float]] = {}
        for (venue, iid), pos in self._accounts.items():
            rate = self._fx[iid]
            acc = sums.setdefault(venue, [0.0, 0.0])
            if rate == rate:
                acc[0] += pos.realised * rate
                acc[1] += self._unrealised(pos, iid) * rate
        return {v: PnLFigures(r, u, fees.get(v, 0.0)) for v, (r, u) in sorted(sums.items())}

    def account_pnl(self, venue: str) -> PnLFigures:
        """One account's P&L in the base currency, from the account's netted book (average
        cost as the broker computes it) and the fees of every strategy trading there."""
        return self._account_figures(self._rows()).get(venue, PnLFigures())

    # ---- the trading day -------------------------------------------------------------------

    def roll_day(self, now_ns: int) -> float:
        """Start a new trading day: keep each position's P&L, the equity and the marks as of
        now as the day's base. Returns the day that ended's P&L in the base currency.

        The engine calls it at each boundary of its one trading day
        (``engine.trading_day.TradingDay``, ``[risk] daily_reset``), for the shadow portfolio
        too, and recovery at each boundary the journal's fills cross."""
        rows = self._rows()
        ended = self._fold(self._day_rows(rows)).total
        self._day_base = {(sid, iid): (r, u, f) for sid, iid, r, u, f in rows}
        total = self._fold(rows).total
        self._day_base_pnl = total
        self._observe(total)
        self.day_marks = list(self._last_mark)
        self.day_started_ns = now_ns
        return ended

    def day_pnl(self, strategy_id: int | None = None) -> float:
        """Today's P&L in the base currency: realised today + (unrealised now - unrealised at
        the reset) - fees today, for one strategy or all."""
        return self._fold(self._day_rows(self._rows()), strategy_id).total

    def day_figures(self, strategy_id: int | None = None, venue: str | None = None) -> PnLFigures:
        """Today's realised, change in unrealised and fees, in the base currency."""
        return self._fold(self._day_rows(self._rows()), strategy_id, venue)

    @property
    def day_start_equity(self) -> float:
        """Equity at the last day roll (at start-up before the first one)."""
        return self.start_equity + self._day_base_pnl

    # ---- equity ----------------------------------------------------------------------------

    def set_start_equity(self, equity: float) -> None:
        """Set the equity P&L is added to (as of start-up: P&L since then stays on top)."""
        self.start_equity = float(equity)

    def rebase_equity(self, equity_now: float) -> None:
        """Make current equity ``equity_now`` (the broker's NetLiquidation, say). Peak, day
        start and the VaR series move with it, so a rebase is not a gain or a loss."""
        self.start_equity = float(equity_now) - self.total_pnl()

    def _observe(self, total_pnl: float) -> None:
        if total_pnl > self._peak_pnl:
            self._peak_pnl = total_pnl

    def equity(self) -> float:
        """Start equity + total P&L in the base currency (NaN while start equity is unknown)."""
        total = self.total_pnl()
        self._observe(total)
        return self.start_equity + total

    def exposures(self) -> dict[int, float]:
        """Signed position value per instrument, all strategies netted, in the base currency:
        lots x mark x tick value (instruments without a mark or an FX rate are left out)."""
        lots: dict[int, int] = {}
        for (_, iid), p in self._positions.items():
            if p.lots:
                lots[iid] = lots.get(iid, 0) + p.lots
        out: dict[int, float] = {}
        for iid, n in lots.items():
            m = self._mark_of(iid)
            rate = self._fx[iid]
            if n and m == m and rate == rate:
                out[iid] = n * m * self._tick_value[iid] * rate
        return out

    # ---- VaR -------------------------------------------------------------------------------

    def sample(self, now_ns: int) -> bool:
        """Record total P&L for the return series if ``var_sample_s`` has passed since the
        last sample (the first call always records). True when a sample was taken."""
        last = self._var_last_ns
        if last is not None and now_ns - last < self._sample_ns:
            return False
        total = self.total_pnl()
        self._observe(total)
        ring = self._var_ring
        ring[self._var_count % len(ring)] = total
        self._var_count += 1
        self._var_last_ns = now_ns
        return True

    def returns(self) -> np.ndarray:
        """The portfolio's returns between consecutive samples, oldest first (at most
        ``var_window``): change in equity over the equity at the earlier sample."""
        ring = self._var_ring
        n = min(self._var_count, len(ring))
        if n < 2:
            return np.empty(0)
        pnl = ring[(self._var_count - n + np.arange(n)) % len(ring)]
        returns = np.diff(pnl) / (self.start_equity + pnl[:-1])
        return returns[np.isfinite(returns)]

    def var(self, confidence: float | None = None) -> float | None:
        """Historical-simulation value at risk over one sample interval, in the base currency.

        The method: the empirical ``1 - confidence`` quantile of the portfolio's own returns
        over the last ``var_window`` sample intervals (``numpy.quantile``, linear
        interpolation), as a loss on current equity: ``-quantile x equity``. A negative figure
        means even the tail of the window was a gain.

        Its limits: the series is what the portfolio actually earned, so it reflects holdings
        as they were at each moment: a position opened a minute ago carries almost no weight,
        and one closed an hour ago still does. It knows only the market moves inside the
        window (250 one-minute returns by default) and assumes the next interval draws from
        them; over 250 returns the 99% quantile rests on the worst two or three. It is None
        until ``var_min_samples`` returns exist or while equity is unknown.
        """
        return self._var_es(self.equity(), confidence)[0]

    def expected_shortfall(self, confidence: float | None = None) -> float | None:
        """Expected shortfall (CVaR): the mean loss of the returns at or beyond the VaR
        quantile, on current equity; same series and limits as ``var``."""
        return self._var_es(self.equity(), confidence)[1]

    def _var_es(self, equity: float, confidence: float | None) -> tuple[float | None, float | None]:
        conf = self.config.var_confidence if confidence is None else confidence
        if not 0.0 < conf < 1.0:
            raise ValueError(f"VaR confidence must be between 0 and 1, exclusive, got {conf}")
        returns = self.returns()
        if len(returns) < self.config.var_min_samples or not math.isfinite(equity):
            return None, None
        q = float(np.quantile(returns, 1.0 - conf))
        tail = returns[returns <= q]
        return -q * equity, -float(tail.mean()) * equity

    # ---- all at once -----------------------------------------------------------------------

    def snapshot(self) -> PortfolioSnapshot:
        """Every figure at this moment (computed now, one pass over the positions)."""
        rows = self._rows()
        total = self._fold(rows)
        total_pnl = total.total
        self._observe(total_pnl)
        equity = self.start_equity + total_pnl
        peak = self.start_equity + self._peak_pnl
        drawdown = self._peak_pnl - total_pnl
        day_rows = self._day_rows(rows)
        strategies = sorted({sid for sid, *_ in rows})

        exposures = self.exposures()
        gross = sum(abs(v) for v in exposures.values())
        net = sum(exposures.values())
        top = max(exposures, key=lambda i: abs(exposures[i]), default=-1)
        top_value = abs(exposures[top]) if top >= 0 else 0.0
        var, es = self._var_es(equity, None)
        return PortfolioSnapshot(
            base_currency=self.base_currency,
            equity=equity,
            start_equity=self.start_equity,
            day_start_equity=self.day_start_equity,
            peak=peak,
            drawdown=drawdown,
            drawdown_pct=_ratio(drawdown, peak),
            day_pnl=self._fold(day_rows).total,
            realised=total.realised,
            unrealised=total.unrealised,
            fees=total.fees,
            gross=gross,
            net=net,
            leverage=_ratio(gross, equity),
            max_concentration=_ratio(top_value, equity),
            max_concentration_instrument=top,
            var=var,
            es=es,
            strategies={s: self._fold(rows, s) for s in strategies},
            strategy_day_pnl={s: self._fold(day_rows, s).total for s in strategies},
            accounts=self._account_figures(rows),
            currencies=self._by_currency(rows, None, None),
            unconverted=self.unconverted,
        )


def _ratio(amount: float, equity: float) -> float:
    """``amount / equity``; NaN when equity is unknown, inf when it is gone and amount is not."""
    if not math.isfinite(equity):
        return math.nan
    if equity <= 0.0:
        return 0.0 if amount == 0.0 else math.inf
    return amount / equity
