"""Portfolio analytics (engine/portfolio.py): per-strategy and per-account P&L, currencies, the
trading day, equity and drawdown, exposure, leverage, concentration, VaR, and their config."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.app import build_app
from engine.config import ConfigError, PortfolioConfig, load_config, parse_config
from engine.instruments import AssetClass, InstrumentRegistry
from engine.portfolio import PnLFigures, Portfolio
from engine.trading_day import TradingDay

BUY, SELL = 1, -1
ES, AAPL, BTC = 0, 1, 2
ES_TV = 12.5  # 0.25 x 1 x 50 USD
AAPL_TV = 0.01  # 0.01 x 1 x 1 USD
BTC_TV = 1e-5  # 0.01 x 0.001 x 1 USDT
DEMO = Path(__file__).resolve().parents[1] / "config" / "demo.toml"


def registry() -> InstrumentRegistry:
    reg = InstrumentRegistry()
    reg.add("ES", "IB", AssetClass.FUTURE, 0.25, 1.0, 50.0)
    reg.add("AAPL", "IB", AssetClass.STOCK, 0.01)
    reg.add("BTC", "SIM", AssetClass.CRYPTO, 0.01, 0.001, 1.0, currency="USDT")
    return reg


def make(
    marks: dict[int, float | None] | None = None,
    start_equity: float = math.nan,
    **config: object,
) -> tuple[Portfolio, dict[int, float | None]]:
    marks = {} if marks is None else marks
    cfg = PortfolioConfig(**config)  # type: ignore[arg-type]
    return Portfolio(registry(), lambda i: marks.get(i), cfg, start_equity), marks


def ns(text: str) -> int:
    """Epoch ns of an ISO UTC time."""
    dt = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000


# ---- hand-worked P&L ------------------------------------------------------------------------


def test_average_cost_partial_close_and_flip_by_hand() -> None:
    pf, _ = make({ES: 19990.0})
    pf.apply_fill(0, ES, BUY, 4, 20000, 1.0)
    pf.apply_fill(0, ES, BUY, 2, 20006, 1.0)  # avg (4*20000 + 2*20006) / 6 = 20002
    assert pf.position(0, ES).avg_ticks == pytest.approx(20002.0)
    pf.apply_fill(0, ES, SELL, 3, 20010, 1.0)  # partial close: +8 ticks on 3
    pos = pf.position(0, ES)
    assert (pos.lots, pos.avg_ticks) == (3, pytest.approx(20002.0))
    assert pos.realised == pytest.approx(8 * 3 * ES_TV)  # 300
    pf.apply_fill(0, ES, SELL, 5, 19998, 1.0)  # closes 3 at -4 ticks, opens 2 short at 19998
    assert (pos.lots, pos.avg_ticks) == (-2, 19998.0)
    assert pos.realised == pytest.approx(300 - 4 * 3 * ES_TV)  # 150
    fig = pf.strategy_pnl(0)
    assert fig == PnLFigures(
        pytest.approx(150.0), pytest.approx((19990 - 19998) * -2 * ES_TV), pytest.approx(4.0)
    )
    assert fig.total == pytest.approx(150 + 200 - 4)
    assert pf.total_pnl() == pytest.approx(346.0)
    assert pf.strategy_positions(0) == {ES: -2}
    assert pf.account_positions("IB") == {ES: -2}
    # The account book nets the same fills: same figures for a single strategy.
    assert pf.account_pnl("IB") == fig
    assert pf.account_position("IB", ES).avg_ticks == 19998.0


def test_last_mark_is_kept_when_the_book_empties() -> None:
    pf, marks = make({ES: 20010.0})
    pf.apply_fill(0, ES, BUY, 1, 20000, 0.0)
    assert pf.total_pnl() == pytest.approx(10 * ES_TV)
    marks[ES] = None  # one side of the book is empty for a moment
    assert pf.total_pnl() == pytest.approx(10 * ES_TV)
    marks[ES] = float("nan")
    assert pf.total_pnl() == pytest.approx(10 * ES_TV)


def test_accounts_net_strategies_as_the_broker_does() -> None:
    pf, _ = make({ES: 20020.0, AAPL: 19000.0})
    pf.apply_fill(0, ES, BUY, 10, 20000, 2.0)
    pf.apply_fill(1, ES, SELL, 10, 20040, 2.0)  # crosses strategy 0: the account is flat
    pf.apply_fill(1, AAPL, BUY, 100, 18900, 0.5)
    assert pf.account_positions("IB") == {AAPL: 100}
    assert pf.strategy_positions(0) == {ES: 10}
    assert pf.strategy_positions(1) == {ES: -10, AAPL: 100}
    acct = pf.account_pnl("IB")
    # The account bought 10 at 20000 and sold them at 20040: realised, nothing open in ES.
    assert acct.realised == pytest.approx(40 * 10 * ES_TV)
    assert acct.unrealised == pytest.approx(100 * 100 * AAPL_TV)
    assert acct.fees == pytest.approx(4.5)
    # The strategies hold the same P&L as unrealised: the split differs, the total does not.
    s0, s1 = pf.strategy_pnl(0), pf.strategy_pnl(1)
    assert s0.realised == s1.realised == 0.0
    assert s0.unrealised == pytest.approx(20 * 10 * ES_TV)
    assert s1.unrealised == pytest.approx(20 * 10 * ES_TV + 100 * 100 * AAPL_TV)
    assert acct.total == pytest.approx(s0.total + s1.total)
    assert pf.account_pnl("NOWHERE") == PnLFigures()


# ---- currencies -----------------------------------------------------------------------------


def test_currencies_without_a_rate_stay_out_of_the_base_totals(caplog) -> None:
    with caplog.at_level("WARNING"):
        pf, _ = make({ES: 20010.0, BTC: 6_010_000.0})
    assert "USDT" in caplog.text and "[portfolio.fx]" in caplog.text
    assert pf.base_currency == "USD"
    assert pf.unconverted == ("USDT",)
    pf.apply_fill(0, ES, BUY, 1, 20000, 1.0)
    pf.apply_fill(0, BTC, BUY, 1000, 6_000_000, 0.5)  # 1 BTC at 60,000.00, marked 60,100.00
    by_ccy = pf.pnl_by_currency()
    assert by_ccy["USD"] == PnLFigures(0.0, pytest.approx(10 * ES_TV), 1.0)
    assert by_ccy["USDT"] == PnLFigures(0.0, pytest.approx(100.0), 0.5)
    # USDT is not added to USD one to one: it is left out and named.
    assert pf.total_pnl() == pytest.approx(10 * ES_TV - 1.0)
    snap = pf.snapshot()
    assert snap.unconverted == ("USDT",)
    assert snap.currencies == by_ccy
    assert pf.pnl_by_currency(venue="SIM") == {"USDT": by_ccy["USDT"]}
    assert pf.exposures() == {ES: pytest.approx(20010 * ES_TV)}


def test_fx_rates_convert_into_the_base_currency() -> None:
    pf, _ = make({ES: 20010.0, BTC: 6_010_000.0}, fx={"USDT": 0.998})
    assert pf.unconverted == ()
    pf.apply_fill(0, ES, BUY, 1, 20000, 1.0)
    pf.apply_fill(1, BTC, BUY, 1000, 6_000_000, 0.5)
    assert pf.total_pnl() == pytest.approx(125 - 1.0 + (100 - 0.5) * 0.998)
    assert pf.total_pnl(1) == pytest.approx((100 - 0.5) * 0.998)
    assert pf.account_pnl("SIM").total == pytest.approx((100 - 0.5) * 0.998)
    assert pf.exposures()[BTC] == pytest.approx(60_100 * 0.998)


def test_base_currency_rate_other_than_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"portfolio\.fx\.USD"):
        make(fx={"USD": 1.1})


# ---- the trading day ------------------------------------------------------------------------


def test_next_reset_follows_new_york_across_both_dst_changes() -> None:
    day = TradingDay()  # 17:00 America/New_York
    # Friday 8 March 2024, EST (UTC-5): 17:00 is 22:00 UTC.
    assert day.next_start(ns("2024-03-08T12:00:00")) == ns("2024-03-08T22:00:00")
    # Exactly at the reset: the next one, a day later.
    assert day.next_start(ns("2024-03-08T22:00:00")) == ns("2024-03-09T22:00:00")
    # Clocks spring forward on Sunday 10 March: 17:00 EDT is 21:00 UTC, 23 hours after.
    assert day.next_start(ns("2024-03-09T22:00:00")) == ns("2024-03-10T21:00:00")
    # And fall back on Sunday 3 November: 17:00 EST is 22:00 UTC, 25 hours after.
    assert day.next_start(ns("2024-11-02T21:00:00")) == ns("2024-11-03T22:00:00")
    # A UTC time already past local midnight (00:30 EDT on the 12th).
    assert day.next_start(ns("2024-03-12T04:30:00")) == ns("2024-03-12T21:00:00")


def test_the_day_holding_a_moment_started_at_the_last_reset_at_or_before_it() -> None:
    day = TradingDay()
    assert day.start_of(ns("2024-03-08T22:00:00")) == ns("2024-03-08T22:00:00")
    assert day.start_of(ns("2024-03-08T21:59:59")) == ns("2024-03-07T22:00:00")
    # 10:00 New York on Monday 11 March (EDT) belongs to the day that began Sunday 17:00 EDT.
    assert day.start_of(ns("2024-03-11T14:00:00")) == ns("2024-03-10T21:00:00")
    # 00:30 EDT on the 12th, past local midnight: still the day that began on the 11th.
    assert day.start_of(ns("2024-03-12T04:30:00")) == ns("2024-03-11T21:00:00")
    for t in ("2024-03-09T23:00:00", "2024-11-03T05:30:00", "2024-06-01T00:00:00"):
        start = day.start_of(ns(t))
        assert start <= ns(t) < day.next_start(start) == day.next_start(ns(t))


def test_reset_times_the_clock_skips_or_repeats() -> None:
    skipped = TradingDay("02:30")  # 10 March 2024 has no 02:30 in New York
    assert skipped.next_start(ns("2024-03-10T05:00:00")) == ns("2024-03-10T07:30:00")
    repeated = TradingDay("01:30")  # 3 November 2024 has two: take the first (EDT)
    assert repeated.next_start(ns("2024-11-03T04:00:00")) == ns("2024-11-03T05:30:00")
    tokyo = TradingDay("09:00", "Asia/Tokyo")
    assert tokyo.next_start(ns("2024-03-10T00:00:00")) == ns("2024-03-11T00:00:00")


def test_day_roll_across_dst_resets_day_pnl_not_total() -> None:
    pf, marks = make({ES: 20010.0}, start_equity=100_000.0)
    start = ns("2024-03-09T15:00:00")
    pf.apply_fill(0, ES, BUY, 2, 20000, 2.0)
    assert pf.day_pnl() == pytest.approx(10 * 2 * ES_TV - 2.0)  # 248, since start-up
    reset = TradingDay().next_start(start)
    assert reset == ns("2024-03-09T22:00:00")
    assert pf.roll_day(reset) == pytest.approx(248.0)  # the day that ended
    assert pf.day_started_ns == reset
    assert pf.day_marks[ES] == 20010.0
    assert pf.day_pnl() == 0.0
    assert pf.total_pnl() == pytest.approx(248.0)
    assert pf.day_start_equity == pytest.approx(100_248.0)

    # Next day: the mark drops 6 ticks, then one lot is sold at 20008.
    marks[ES] = 20004.0
    pf.apply_fill(0, ES, SELL, 1, 20008, 1.0)
    today = pf.day_figures()
    assert today.realised == pytest.approx(8 * ES_TV)  # 100
    assert today.unrealised == pytest.approx(4 * 1 * ES_TV - 10 * 2 * ES_TV)  # 50 - 250
    assert today.fees == pytest.approx(1.0)
    assert pf.day_pnl() == pytest.approx(100 - 200 - 1)
    assert pf.day_pnl(0) == pytest.approx(-101.0)
    assert pf.day_pnl(7) == 0.0
    assert pf.total_pnl() == pytest.approx(248 - 101)

    # The next reset falls after the spring-forward change: 21:00 UTC.
    second = TradingDay().next_start(reset)
    assert second == ns("2024-03-10T21:00:00")
    assert pf.roll_day(second) == pytest.approx(-101.0)
    assert pf.day_pnl() == 0.0
    assert pf.total_pnl() == pytest.approx(147.0)
    snap = pf.snapshot()
    assert snap.day_pnl == 0.0
    assert snap.day_start_equity == pytest.approx(100_147.0)


def test_commission_booked_after_the_fill_counts_today() -> None:
    pf, _ = make({ES: 20000.0})
    pf.apply_fill(0, ES, BUY, 1, 20000, 0.0)
    pf.roll_day(1)
    pf.position(0, ES).commission += 2.5  # how the runtime books a late commission report
    assert pf.day_pnl() == pytest.approx(-2.5)
    assert pf.day_figures().fees == pytest.approx(2.5)


# ---- equity, drawdown, exposure -------------------------------------------------------------


def test_drawdown_after_a_gain_then_a_loss() -> None:
    pf, marks = make({ES: 20000.0}, start_equity=1_000_000.0)
    pf.apply_fill(0, ES, BUY, 10, 20000, 0.0)
    marks[ES] = 20040.0  # +5,000
    up = pf.snapshot()
    assert (up.equity, up.peak, up.drawdown) == (1_005_000.0, 1_005_000.0, 0.0)
    marks[ES] = 19980.0  # -2,500
    down = pf.snapshot()
    assert down.equity == pytest.approx(997_500.0)
    assert down.peak == pytest.approx(1_005_000.0)
    assert down.drawdown == pytest.approx(7_500.0)
    assert down.drawdown_pct == pytest.approx(7_500 / 1_005_000)
    marks[ES] = 20020.0  # recovers part: the peak stays
    back = pf.snapshot()
    assert back.drawdown == pytest.approx(2_500.0)
    assert back.peak == pytest.approx(1_005_000.0)


def test_drawdown_without_start_equity_is_in_currency_only() -> None:
    pf, marks = make({ES: 20040.0})
    pf.apply_fill(0, ES, BUY, 10, 20000, 0.0)
    assert pf.equity() != pf.equity()  # NaN: unknown
    marks[ES] = 20000.0
    snap = pf.snapshot()
    assert snap.drawdown == pytest.approx(5_000.0)
    assert math.isnan(snap.drawdown_pct) and math.isnan(snap.leverage)


def test_leverage_and_concentration_by_hand() -> None:
    pf, _ = make({ES: 20000.0, AAPL: 19000.0}, start_equity=1_000_000.0)
    pf.apply_fill(0, ES, BUY, 4, 20000, 0.0)  # 4 x 5000.00 x 50 = 1,000,000
    pf.apply_fill(1, ES, SELL, 1, 20000, 0.0)  # net 3 ES: 750,000
    pf.apply_fill(1, AAPL, SELL, 1000, 19000, 0.0)  # -1000 x 190.00 = -190,000
    assert pf.exposures() == {ES: pytest.approx(750_000.0), AAPL: pytest.approx(-190_000.0)}
    snap = pf.snapshot()
    assert snap.gross == pytest.approx(940_000.0)
    assert snap.net == pytest.approx(560_000.0)
    assert snap.leverage == pytest.approx(0.94)
    assert snap.max_concentration == pytest.approx(0.75)
    assert snap.max_concentration_instrument == ES
    # The broker reports twice the equity: every ratio halves, P&L does not move.
    pf.rebase_equity(2_000_000.0)
    snap = pf.snapshot()
    assert snap.equity == pytest.approx(2_000_000.0)
    assert snap.leverage == pytest.approx(0.47)
    assert snap.max_concentration == pytest.approx(0.375)
    assert snap.drawdown == 0.0 and snap.total_pnl == 0.0
    pf.set_start_equity(500_000.0)
    assert pf.snapshot().leverage == pytest.approx(1.88)


def test_flat_portfolio_snapshot() -> None:
    pf, _ = make(start_equity=50_000.0)
    snap = pf.snapshot()
    assert (snap.gross, snap.net, snap.leverage, snap.max_concentration) == (0.0, 0.0, 0.0, 0.0)
    assert snap.max_concentration_instrument == -1
    assert (snap.var, snap.es) == (None, None)
    assert snap.strategies == {} and snap.accounts == {}
    assert snap.equity == snap.peak == 50_000.0


def test_snapshot_carries_per_strategy_and_per_account_figures() -> None:
    pf, _ = make({ES: 20010.0, BTC: 6_000_000.0}, start_equity=10_000.0, fx={"USDT": 1.0})
    pf.apply_fill(0, ES, BUY, 1, 20000, 1.0)
    pf.apply_fill(1, BTC, SELL, 100, 6_000_100, 0.1)
    snap = pf.snapshot()
    assert snap.strategies == {0: pf.strategy_pnl(0), 1: pf.strategy_pnl(1)}
    assert snap.accounts == {"IB": pf.account_pnl("IB"), "SIM": pf.account_pnl("SIM")}
    assert snap.strategy_day_pnl == {
        0: pytest.approx(124.0),
        1: pytest.approx(100 * 100 * BTC_TV - 0.1),
    }
    assert snap.total_pnl == pytest.approx(sum(f.total for f in snap.strategies.values()))
    assert snap.equity == pytest.approx(10_000 + snap.total_pnl)


# ---- VaR ------------------------------------------------------------------------------------


def var_portfolio(window: int, min_samples: int, equity: float):
    """One lot of an instrument worth 1 USD a tick, bought at 1,000,000 ticks: total P&L is
    the mark minus 1,000,000, so a test sets the P&L series through the mark."""
    reg = InstrumentRegistry()
    reg.add("X", "SIM", AssetClass.STOCK, 1.0)
    marks = {0: 1_000_000.0}
    cfg = PortfolioConfig(var_window=window, var_min_samples=min_samples, var_sample_s=60.0)
    pf = Portfolio(reg, lambda i: marks[i], cfg, equity)
    pf.apply_fill(0, 0, BUY, 1, 1_000_000, 0.0)
    return pf, marks


def test_var_equals_numpys_quantile_of_the_return_series() -> None:
    equity0 = 1_000_000.0
    pf, marks = var_portfolio(window=40, min_samples=10, equity=equity0)
    rng = np.random.default_rng(3)
    pnl = np.cumsum(rng.normal(0, 5_000, 70)).round()
    minute = 60_000_000_000
    for k, p in enumerate(pnl):
        marks[0] = 1_000_000.0 + p
        assert pf.sample(k * minute)
        assert not pf.sample(k * minute + minute // 2)  # inside the interval: not sampled
    # The last 41 samples give the last 40 returns.
    window = pnl[-41:]
    returns = np.diff(window) / (equity0 + window[:-1])
    np.testing.assert_allclose(pf.returns(), returns)
    equity = equity0 + pnl[-1]
    q = np.quantile(returns, 0.01)
    assert pf.var() == pytest.approx(-q * equity)
    assert pf.expected_shortfall() == pytest.approx(-returns[returns <= q].mean() * equity)
    q95 = np.quantile(returns, 0.05)
    assert pf.var(0.95) == pytest.approx(-q95 * equity)
    assert pf.expected_shortfall(0.95) >= pf.var(0.95)
    snap = pf.snapshot()
    assert (snap.var, snap.es) == (pytest.approx(pf.var()), pytest.approx(pf.expected_shortfall()))
    with pytest.raises(ValueError, match="confidence"):
        pf.var(1.0)


def test_var_is_none_before_min_samples() -> None:
    pf, marks = var_portfolio(window=50, min_samples=5, equity=1_000_000.0)
    minute = 60_000_000_000
    for k, p in enumerate([0.0, -100.0, 50.0, -300.0, 20.0]):
        marks[0] = 1_000_000.0 + p
        pf.sample(k * minute)
        assert pf.var() is None and pf.expected_shortfall() is None  # at most 4 returns
    marks[0] = 1_000_000.0 - 40.0
    pf.sample(5 * minute)
    returns = np.diff([0.0, -100.0, 50.0, -300.0, 20.0, -40.0])
    returns = returns / (1_000_000.0 + np.array([0.0, -100.0, 50.0, -300.0, 20.0]))
    assert pf.var() == pytest.approx(-np.quantile(returns, 0.01) * (1_000_000.0 - 40.0))


def test_var_is_none_while_equity_is_unknown() -> None:
    pf, marks = var_portfolio(window=10, min_samples=2, equity=math.nan)
    for k in range(5):
        marks[0] = 1_000_000.0 + k * 10
        pf.sample(k * 60_000_000_000)
    assert pf.var() is None
    pf.set_start_equity(100_000.0)
    assert pf.var() is not None


# ---- property test: an independent reference ------------------------------------------------


class CostPool:
    """The average-cost method written as a pool: the open quantity and what it cost in total.
    Closing k of q lots takes k/q of the cost out of the pool."""

    def __init__(self) -> None:
        self.qty = 0
        self.cost = Fraction(0)  # signed: sum of price x signed lots still open
        self.realised = Fraction(0)  # in ticks x lots; times tick value at the end

    def fill(self, signed: int, price: int) -> None:
        if self.qty == 0 or (self.qty > 0) == (signed > 0):
            self.qty += signed
            self.cost += price * signed
            return
        k = min(abs(signed), abs(self.qty))
        share = Fraction(k, abs(self.qty))
        taken_qty, taken_cost = self.qty * share, self.cost * share
        self.realised += price * taken_qty - taken_cost
        self.qty -= int(taken_qty)
        self.cost -= taken_cost
        rest = abs(signed) - k
        if rest:
            step = rest if signed > 0 else -rest
            self.qty += step
            self.cost += price * step

    def unrealised(self, mark: int) -> Fraction:
        return mark * self.qty - self.cost


FILLS = st.lists(
    st.tuples(
        st.integers(0, 2),  # strategy
        st.sampled_from([ES, AAPL, BTC]),
        st.sampled_from([BUY, SELL]),
        st.integers(1, 60),  # lots
        st.integers(1_000, 30_000),  # price ticks
        st.integers(0, 300),  # commission, cents
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    before=FILLS,
    after=FILLS,
    marks0=st.tuples(*[st.integers(1_000, 30_000)] * 3),
    marks1=st.tuples(*[st.integers(1_000, 30_000)] * 3),
)
def test_random_fills_match_a_cost_pool_reference(before, after, marks0, marks1) -> None:
    rate = Fraction(997, 1000)  # USDT in USD
    marks: dict[int, float | None] = {i: float(m) for i, m in enumerate(marks0)}
    pf, _ = make(marks, start_equity=1e9, fx={"USDT": float(rate)})
    reg = registry()
    tv = {i: Fraction(reg[i].tick_value) * (rate if i == BTC else 1) for i in (ES, AAPL, BTC)}
    pools: dict[tuple[int, int], CostPool] = {}
    accounts: dict[tuple[str, int], CostPool] = {}
    fees: dict[int, Fraction] = {}

    def run(fills) -> None:
        for sid, iid, side, lots, price, cents in fills:
            pf.apply_fill(sid, iid, side, lots, price, cents / 100)
            pools.setdefault((sid, iid), CostPool()).fill(side * lots, price)
            accounts.setdefault((reg[iid].venue, iid), CostPool()).fill(side * lots, price)
            fx = rate if iid == BTC else 1
            fees[sid] = fees.get(sid, Fraction(0)) + Fraction(cents, 100) * fx

    def ref_total(sid: int | None, m: tuple[int, ...]) -> Fraction:
        return sum(
            (
                (p.realised + p.unrealised(m[i])) * tv[i]
                for (s, i), p in pools.items()
                if sid is None or s == sid
            ),
            Fraction(0),
        ) - sum((f for s, f in fees.items() if sid is None or s == sid), Fraction(0))

    run(before)
    total_at_roll = {sid: ref_total(sid, marks0) for sid in (0, 1, 2, None)}
    pf.roll_day(1)
    marks.update({i: float(m) for i, m in enumerate(marks1)})
    run(after)

    scale = 1.0 + sum(lots * price for *_, lots, price, _ in before + after) * 12.5
    tol = {"rel": 1e-9, "abs": 1e-9 * scale}
    for (sid, iid), ref in pools.items():
        pos = pf.position(sid, iid)
        assert pos.lots == ref.qty
        assert pos.realised == pytest.approx(
            float(ref.realised * Fraction(reg[iid].tick_value)), **tol
        )
        if ref.qty:
            assert pos.avg_ticks == pytest.approx(float(ref.cost / ref.qty), rel=1e-12)
    for (venue, iid), ref in accounts.items():
        assert pf.account_position(venue, iid).lots == ref.qty
        assert pf.account_positions(venue).get(iid, 0) == ref.qty
    for sid in (0, 1, 2, None):
        assert pf.total_pnl(sid) == pytest.approx(float(ref_total(sid, marks1)), **tol)
        expect_day = ref_total(sid, marks1) - total_at_roll[sid]
        assert pf.day_pnl(sid) == pytest.approx(float(expect_day), **tol)
    # An account's total is the sum of the strategies' totals there, whatever the split.
    snap = pf.snapshot()
    for venue in ("IB", "SIM"):
        by_strategy = sum(
            pf.day_figures(s, venue).total for s in (0, 1, 2)
        )  # the day share, to exercise the venue filter
        assert pf.day_figures(venue=venue).total == pytest.approx(by_strategy, **tol)
        ref_acct = sum(
            (
                (p.realised + p.unrealised(marks1[i])) * tv[i]
                for (v, i), p in accounts.items()
                if v == venue
            ),
            Fraction(0),
        )
        strategies_there = sum(
            (
                (p.realised + p.unrealised(marks1[i])) * tv[i]
                for (s, i), p in pools.items()
                if reg[i].venue == venue
            ),
            Fraction(0),
        )
        assert float(ref_acct) == pytest.approx(float(strategies_there), **tol)
        got = snap.accounts.get(venue, PnLFigures())
        assert got.realised + got.unrealised == pytest.approx(float(ref_acct), **tol)
    # Exposure: net lots across strategies, valued at the mark.
    net = {i: sum(p.qty for (s, j), p in pools.items() if j == i) for i in (ES, AAPL, BTC)}
    values = {i: net[i] * marks1[i] * tv[i] for i in net}
    assert snap.gross == pytest.approx(float(sum(abs(v) for v in values.values())), **tol)
    assert snap.net == pytest.approx(float(sum(values.values())), **tol)


# ---- config ---------------------------------------------------------------------------------


def portfolio_error(**section: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config({"portfolio": section}, "pf.toml")
    return info.value


def test_portfolio_config_defaults_and_values() -> None:
    assert parse_config({}).portfolio == PortfolioConfig()
    cfg = parse_config(
        {
            "risk": {"daily_reset": "16:30", "daily_reset_tz": "Europe/London"},
            "portfolio": {
                "daily_reset": "16:30",
                "daily_reset_tz": "Europe/London",
                "fx": {"USDT": 1, "EUR": 1.08},
                "var_window": 500,
                "var_confidence": 0.95,
                "var_sample_s": 30,
                "var_min_samples": 50,
            },
        }
    ).portfolio
    assert cfg.daily_reset == "16:30" and cfg.daily_reset_tz == "Europe/London"
    assert cfg.fx == {"USDT": 1.0, "EUR": 1.08}
    assert (cfg.var_window, cfg.var_confidence, cfg.var_sample_s, cfg.var_min_samples) == (
        500,
        0.95,
        30.0,
        50,
    )


def test_portfolio_day_keys_are_an_alias_of_the_risk_ones() -> None:
    """One trading day, set in [risk]: [portfolio] reads the same (unless given, and then it
    must agree, see the errors below)."""
    cfg = parse_config({"risk": {"daily_reset": "16:30", "daily_reset_tz": "Europe/London"}})
    assert (cfg.portfolio.daily_reset, cfg.portfolio.daily_reset_tz) == ("16:30", "Europe/London")


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ({"daily_reset_tz": "Mars/Olympus_Mons"}, "portfolio.daily_reset_tz", "IANA"),
        ({"daily_reset_tz": "../etc/passwd"}, "portfolio.daily_reset_tz", "time zone"),
        ({"daily_reset": "25:00"}, "portfolio.daily_reset", "HH:MM"),
        ({"daily_reset": "5pm"}, "portfolio.daily_reset", "HH:MM"),
        ({"daily_reset": ""}, "portfolio.daily_reset", "HH:MM"),
        ({"var_confidence": 1.0}, "portfolio.var_confidence", "between 0 and 1"),
        ({"var_confidence": 0}, "portfolio.var_confidence", "between 0 and 1"),
        ({"var_window": 0}, "portfolio.var_window", "> 0"),
        ({"var_sample_s": -1}, "portfolio.var_sample_s", "> 0"),
        ({"var_window": 10, "var_min_samples": 20}, "portfolio.var_min_samples", "var_window"),
        ({"fx": {"USDT": -1.0}}, "portfolio.fx", "positive"),
        ({"fx": {"USD": 1.1}}, "portfolio.fx.USD", "base currency"),
        ({"fx": {"USDT": "one"}}, "portfolio.fx.USDT", "expected a number"),
        ({"daily_rest": "17:00"}, "portfolio.daily_rest", "daily_reset"),
        # One trading day: [portfolio]'s old keys must agree with [risk]'s, which set it.
        ({"daily_reset": "16:30"}, "portfolio.daily_reset", "set by risk.daily_reset"),
        ({"daily_reset_tz": "Asia/Tokyo"}, "portfolio.daily_reset_tz", "risk.daily_reset_tz"),
    ],
)
def test_portfolio_config_errors_name_the_key(section, key, words) -> None:
    err = portfolio_error(**section)
    assert err.file == "pf.toml"
    assert err.key == key
    assert words in err.message


def test_demo_engine_portfolio_gets_the_config_and_start_equity() -> None:
    config = load_config(DEMO)
    engine = build_app(config).engine
    pf = engine.portfolio
    assert pf.config is config.portfolio
    assert pf.config.fx == {"USDT": 1.0}
    assert pf.unconverted == ()
    assert pf.start_equity == config.risk.equity
    assert pf.snapshot().equity == config.risk.equity
