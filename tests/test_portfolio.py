"""Positions and P&L (engine/portfolio.py): average cost, realised and unrealised P&L, fees."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.instruments import AssetClass, InstrumentRegistry
from engine.portfolio import Portfolio, Position

BUY, SELL = 1, -1
TV = 12.5  # ES: 0.25 tick x 1 lot x 50


# ---- a plain reference: average-cost method, in exact fractions -----------------------------


class RefPosition:
    """Average cost: adding re-weights the cost, reducing realises against it, and the part of
    a fill that goes through zero opens a new position at the fill price."""

    def __init__(self) -> None:
        self.qty = 0  # signed lots
        self.avg = Fraction(0)  # ticks
        self.realised = Fraction(0)  # currency
        self.commission = Fraction(0)
        self.fills = 0
        self.scale = Fraction(0)  # sum of |traded value|, for float tolerances

    def fill(self, side: int, lots: int, price: int, tv: Fraction, commission=Fraction(0)):
        self.fills += 1
        self.commission += commission
        self.scale += abs(price * lots * tv)
        if self.qty == 0 or (self.qty > 0) == (side > 0):
            total = abs(self.qty) + lots
            self.avg = (self.avg * abs(self.qty) + price * lots) / total
            self.qty += side * lots
            return
        closing = min(lots, abs(self.qty))
        long = 1 if self.qty > 0 else -1
        self.realised += (price - self.avg) * closing * long * tv
        self.qty += side * lots
        opening = lots - closing
        if self.qty == 0:
            self.avg = Fraction(0)
        elif opening > 0:
            self.avg = Fraction(price)

    def unrealised(self, mark, tv: Fraction) -> Fraction:
        if self.qty == 0 or mark is None:
            return Fraction(0)
        return (Fraction(mark) - self.avg) * self.qty * tv


def approx(x: Fraction, scale: Fraction):
    return pytest.approx(float(x), rel=1e-9, abs=1e-9 * float(scale) + 1e-9)


# ---- Position: worked examples --------------------------------------------------------------


def test_new_position_is_flat() -> None:
    p = Position(3)
    assert (p.instrument_id, p.lots, p.avg_ticks, p.realised, p.commission, p.fills) == (
        3,
        0,
        0.0,
        0.0,
        0.0,
        0,
    )
    assert p.unrealised(100.0, TV) == 0.0


def test_adding_averages_the_cost() -> None:
    p = Position(0)
    p.apply_fill(BUY, 10, 400, TV)
    assert (p.lots, p.avg_ticks) == (10, 400.0)
    p.apply_fill(BUY, 30, 404, TV)
    assert p.lots == 40
    assert p.avg_ticks == pytest.approx(403.0)
    assert p.realised == 0.0
    assert p.fills == 2


def test_adding_to_a_short_averages_the_cost() -> None:
    p = Position(0)
    p.apply_fill(SELL, 10, 400, TV)
    p.apply_fill(SELL, 10, 410, TV)
    assert p.lots == -20
    assert p.avg_ticks == pytest.approx(405.0)
    assert p.realised == 0.0


def test_reducing_realises_against_the_average_and_keeps_it() -> None:
    p = Position(0)
    p.apply_fill(BUY, 10, 400, TV)
    p.apply_fill(BUY, 30, 404, TV)  # avg 403
    p.apply_fill(SELL, 15, 410, TV)
    assert p.lots == 25
    assert p.avg_ticks == pytest.approx(403.0)
    assert p.realised == pytest.approx(7 * 15 * TV)
    p.apply_fill(SELL, 5, 400, TV)  # a loss on 5
    assert p.lots == 20
    assert p.avg_ticks == pytest.approx(403.0)
    assert p.realised == pytest.approx((7 * 15 - 3 * 5) * TV)


def test_reducing_a_short() -> None:
    p = Position(0)
    p.apply_fill(SELL, 20, 405, TV)
    p.apply_fill(BUY, 5, 395, TV)  # short gains when bought back lower
    assert p.lots == -15
    assert p.avg_ticks == pytest.approx(405.0)
    assert p.realised == pytest.approx(10 * 5 * TV)
    p.apply_fill(BUY, 5, 415, TV)
    assert p.realised == pytest.approx((50 - 50) * TV)


def test_closing_realises_everything_and_resets_the_cost() -> None:
    p = Position(0)
    p.apply_fill(BUY, 10, 400, TV)
    p.apply_fill(SELL, 10, 396, TV)
    assert p.lots == 0
    assert p.avg_ticks == 0.0
    assert p.realised == pytest.approx(-4 * 10 * TV)
    assert p.unrealised(500.0, TV) == 0.0
    # Re-opening starts from the new price only.
    p.apply_fill(SELL, 2, 420, TV)
    assert (p.lots, p.avg_ticks) == (-2, 420.0)
    assert p.realised == pytest.approx(-40 * TV)


def test_flipping_long_to_short_through_zero() -> None:
    p = Position(0)
    p.apply_fill(BUY, 10, 400, TV)
    p.apply_fill(SELL, 25, 390, TV)
    assert p.lots == -15
    assert p.realised == pytest.approx(-10 * 10 * TV)  # only the 10 closed are realised
    assert p.avg_ticks == 390.0  # the 15 opened short at the fill price
    p.apply_fill(BUY, 15, 380, TV)
    assert p.lots == 0
    assert p.realised == pytest.approx((-100 + 10 * 15) * TV)


def test_flipping_short_to_long_through_zero() -> None:
    p = Position(0)
    p.apply_fill(SELL, 4, 400, TV)
    p.apply_fill(BUY, 10, 402, TV)
    assert p.lots == 6
    assert p.realised == pytest.approx(-2 * 4 * TV)
    assert p.avg_ticks == 402.0


def test_a_fill_taken_back_is_the_opposite_trade_at_its_price() -> None:
    """Negative lots reverse an earlier fill (a venue's execution correction): the total P&L
    is then what it would be had the fill never happened, from a flat or a short book too."""
    p = Position(0)
    p.apply_fill(BUY, 5, 400, TV)
    p.apply_fill(SELL, 5, 404, TV)  # flat, 20 ticks realised
    p.apply_fill(BUY, -5, 400, TV)  # the buy taken back: short 5 from the sell at 404
    assert (p.lots, p.avg_ticks) == (-5, 400.0)
    # At any mark the total equals the sell's alone: (404 - mark) x 5.
    for mark in (390.0, 404.0, 420.0):
        total = p.realised + p.unrealised(mark, TV)
        assert total == pytest.approx((404 - mark) * 5 * TV)
    q = Position(0)
    q.apply_fill(SELL, 3, 410, TV)
    q.apply_fill(BUY, -2, 400, TV)  # a buy of 2 reversed while short: 2 more short at 400
    assert (q.lots, q.avg_ticks) == (-5, pytest.approx((410 * 3 + 400 * 2) / 5))
    assert q.realised == 0.0


def test_unrealised_against_a_mark() -> None:
    p = Position(0)
    p.apply_fill(BUY, 10, 400, TV)
    assert p.unrealised(403.5, TV) == pytest.approx(3.5 * 10 * TV)
    assert p.unrealised(398.0, TV) == pytest.approx(-2 * 10 * TV)
    assert p.unrealised(None, TV) == 0.0
    s = Position(0)
    s.apply_fill(SELL, 4, 400, TV)
    assert s.unrealised(403.5, TV) == pytest.approx(-3.5 * 4 * TV)
    assert s.unrealised(390.0, TV) == pytest.approx(10 * 4 * TV)


def test_tick_value_scales_pnl() -> None:
    # BTC: tick 0.01 x lot 0.001 = 1e-5 currency per tick per lot.
    tv = 0.01 * 0.001
    p = Position(0)
    p.apply_fill(BUY, 1500, 6_000_000, tv)  # 1.5 BTC at 60,000.00
    p.apply_fill(SELL, 500, 6_100_000, tv)  # 0.5 BTC at 61,000.00
    assert p.realised == pytest.approx(0.5 * 1000.0)
    assert p.unrealised(6_050_000, tv) == pytest.approx(1.0 * 500.0)


# ---- Portfolio ------------------------------------------------------------------------------


def make_portfolio(marks: dict[int, float | None]):
    reg = InstrumentRegistry()
    reg.add("ES", "SIM", AssetClass.FUTURE, 0.25, 1.0, 50.0)
    reg.add("BTC", "SIM", AssetClass.CRYPTO, 0.01, 0.001, 1.0)
    return Portfolio(reg, lambda i: marks.get(i)), reg


def test_portfolio_accumulates_commission_and_pnl_per_strategy() -> None:
    marks: dict[int, float | None] = {0: 404.0, 1: None}
    pf, reg = make_portfolio(marks)
    es_tv, btc_tv = reg[0].tick_value, reg[1].tick_value
    assert es_tv == TV

    pf.apply_fill(0, 0, BUY, 10, 400, 1.5)
    pf.apply_fill(0, 0, SELL, 4, 402, 0.6)
    pf.apply_fill(0, 1, BUY, 1000, 6_000_000, 2.0)
    pf.apply_fill(1, 0, SELL, 3, 401, 0.25)

    p00 = pf.position(0, 0)
    assert p00.commission == pytest.approx(2.1)
    assert p00.lots == 6 and p00.fills == 2
    assert pf.position(0, 1).commission == pytest.approx(2.0)

    realised, unrealised, fees = pf.pnl(0)
    assert realised == pytest.approx(2 * 4 * es_tv)
    # ES marked at 404 (avg 400, 6 lots); BTC has no mark: no unrealised.
    assert unrealised == pytest.approx(4 * 6 * es_tv)
    assert fees == pytest.approx(4.1)
    assert pf.total_pnl(0) == pytest.approx(realised + unrealised - fees)

    r1, u1, f1 = pf.pnl(1)
    assert (r1, f1) == (0.0, pytest.approx(0.25))
    assert u1 == pytest.approx((401 - 404) * 3 * es_tv)

    r, u, f = pf.pnl()
    assert r == pytest.approx(realised + r1)
    assert u == pytest.approx(unrealised + u1)
    assert f == pytest.approx(fees + f1)

    assert pf.net_lots(0) == 6 - 3
    assert pf.net_lots(1) == 1000
    marks[1] = 6_010_000.0
    assert pf.pnl(0)[1] == pytest.approx(4 * 6 * es_tv + 10_000 * 1000 * btc_tv)


def test_portfolio_position_is_created_flat_and_kept() -> None:
    pf, _ = make_portfolio({})
    p = pf.position(2, 1)
    assert p.lots == 0 and p.instrument_id == 1
    assert pf.position(2, 1) is p
    assert pf.positions() == {(2, 1): p}
    assert pf.pnl(2) == (0.0, 0.0, 0.0)


# ---- property test against the reference ----------------------------------------------------

fills_strategy = st.lists(
    st.tuples(
        st.sampled_from([BUY, SELL]),
        st.integers(min_value=1, max_value=100),
        st.integers(min_value=1, max_value=20_000),
        st.integers(min_value=0, max_value=400),  # commission in cents
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    fills=fills_strategy,
    tv=st.sampled_from([12.5, 1.0, 1e-5, 0.5]),
    mark=st.one_of(st.none(), st.integers(min_value=1, max_value=20_000)),
)
def test_position_matches_average_cost_reference(fills, tv, mark) -> None:
    pos = Position(0)
    ref = RefPosition()
    ftv = Fraction(tv)
    for side, lots, price, cents in fills:
        pos.apply_fill(side, lots, price, tv)
        ref.fill(side, lots, price, ftv, Fraction(cents, 100))
        pos.commission += cents / 100
        assert pos.lots == ref.qty
        assert pos.avg_ticks == pytest.approx(float(ref.avg), rel=1e-12, abs=1e-9)
        assert pos.realised == approx(ref.realised, ref.scale)
        if ref.qty == 0:
            assert pos.avg_ticks == 0.0
    assert pos.fills == ref.fills == len(fills)
    assert pos.commission == pytest.approx(float(ref.commission))
    assert pos.unrealised(mark, tv) == approx(ref.unrealised(mark, ftv), ref.scale)


@settings(max_examples=100, deadline=None)
@given(
    fills=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=1),  # strategy
            st.integers(min_value=0, max_value=1),  # instrument
            st.sampled_from([BUY, SELL]),
            st.integers(min_value=1, max_value=50),
            st.integers(min_value=100, max_value=900),
            st.integers(min_value=0, max_value=100),
        ),
        max_size=40,
    ),
    marks=st.tuples(st.integers(100, 900), st.integers(100, 900)),
)
def test_portfolio_totals_match_reference(fills, marks) -> None:
    pf, reg = make_portfolio({0: float(marks[0]), 1: float(marks[1])})
    refs: dict[tuple[int, int], RefPosition] = {}
    for sid, iid, side, lots, price, cents in fills:
        pf.apply_fill(sid, iid, side, lots, price, cents / 100)
        ref = refs.setdefault((sid, iid), RefPosition())
        ref.fill(side, lots, price, Fraction(reg[iid].tick_value), Fraction(cents, 100))
    scale = sum((r.scale for r in refs.values()), Fraction(0))
    for sid in (0, 1, None):
        mine = [r_ for (s, i), r_ in refs.items() if sid is None or s == sid]
        realised = sum((r.realised for r in mine), Fraction(0))
        fees = sum((r.commission for r in mine), Fraction(0))
        unrealised = sum(
            (
                r.unrealised(marks[i], Fraction(reg[i].tick_value))
                for (s, i), r in refs.items()
                if sid is None or s == sid
            ),
            Fraction(0),
        )
        got = pf.pnl(sid)
        assert got[0] == approx(realised, scale)
        assert got[1] == approx(unrealised, scale)
        assert got[2] == approx(fees, scale)
        assert pf.total_pnl(sid) == approx(realised + unrealised - fees, scale)
    for iid in (0, 1):
        assert pf.net_lots(iid) == sum(r.qty for (s, i), r in refs.items() if i == iid)
