"""Risk kernels (hotpath.risk) against the plain-Python model in tests/risk_reference.py.

The property tests drive both through random histories (batches and single orders, modifies,
fills, cancels, marks, daily resets, cancels charged to pacing) over random limits, and require
the same verdicts, lots and ticks, and the same state, after every step. The targeted tests make
each check fire on an order that passes otherwise, and make every pair of checks fire together
to show the earlier one in ``CHECK_ORDER`` wins.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from risk_reference import (
    BUY,
    LIMIT,
    LIMIT_ON_CLOSE,
    MARKET,
    MARKET_ON_CLOSE,
    MODIFY,
    NEW,
    NO_PRICE,
    SELL,
    STOP,
    STOP_LIMIT,
    TRAILING_STOP,
    TRAILING_STOP_LIMIT,
    AccountLimits,
    Bucket,
    DayPnl,
    InstrumentLimits,
    InstrumentState,
    Intent,
    Position,
    RiskModel,
    StrategyLimits,
)

import hotpath.risk as r
from engine.portfolio import Position as EnginePosition
from engine.risk_gate import Verdict
from hotpath.limits import (
    IB_MESSAGES_PER_S,
    IB_PACING,
    RiskArrays,
    new_risk_arrays,
    set_bucket,
    set_trading_hours,
    strategy_bucket,
    validate,
    venue_bucket,
)

ROOT = Path(__file__).resolve().parent.parent
DAY_NS = 86_400 * 10**9
NOW = 1_700_000_000 * 10**9  # 22:13:20 UTC
BASE_TICKS = 10_000

# ---- arrays <-> model -----------------------------------------------------------------------


def to_model(a: RiskArrays) -> RiskModel:
    """The model holding the same limits and state as the arrays (as Python floats and ints)."""
    n_strat = a.slim.shape[0]
    instruments = []
    for row in a.ilim.tolist():
        n_windows = int(row[r.IL_N_WINDOWS])
        windows = [
            (row[r.IL_WINDOWS + 2 * w], row[r.IL_WINDOWS + 2 * w + 1])
            for w in range(min(max(n_windows, 0), r.MAX_WINDOWS))
        ]
        instruments.append(
            InstrumentLimits(
                tradable=row[r.IL_TRADABLE],
                blocked=row[r.IL_BLOCKED],
                allowed=row[r.IL_ALLOWED],
                tick_size=row[r.IL_TICK_SIZE],
                lot_size=row[r.IL_LOT_SIZE],
                multiplier=row[r.IL_MULTIPLIER],
                max_order_qty=row[r.IL_MAX_ORDER_QTY],
                max_order_notional=row[r.IL_MAX_ORDER_NOTIONAL],
                max_position=row[r.IL_MAX_POSITION],
                max_open_orders=row[r.IL_MAX_OPEN_ORDERS],
                collar_pct=row[r.IL_COLLAR_PCT],
                collar_ticks=row[r.IL_COLLAR_TICKS],
                max_concentration=row[r.IL_MAX_CONCENTRATION],
                margin=row[r.IL_MARGIN],
                venue=row[r.IL_VENUE],
                utc_offset_s=row[r.IL_UTC_OFFSET_S],
                windows=windows,
                reduce_only=row[r.IL_REDUCE_ONLY],
            )
        )
    g = a.glim.tolist()
    account_limits = AccountLimits(
        max_gross=g[r.GL_MAX_GROSS],
        max_leverage=g[r.GL_MAX_LEVERAGE],
        max_daily_loss=g[r.GL_MAX_DAILY_LOSS],
        allow_list=g[r.GL_ALLOW_LIST],
        pdt_max_day_trades=g[r.GL_PDT_MAX_DAY_TRADES],
        pdt_min_equity=g[r.GL_PDT_MIN_EQUITY],
    )
    n_venues = a.buckets.shape[0] - 1 - n_strat
    strategy_limits = [
        StrategyLimits(
            max_order_qty=row[r.SL_MAX_ORDER_QTY],
            max_order_notional=row[r.SL_MAX_ORDER_NOTIONAL],
            max_position=row[r.SL_MAX_POSITION],
        )
        for row in a.slim.tolist()
    ]
    m = RiskModel(
        instruments, a.slim[:, r.SL_MAX_DAILY_LOSS].tolist(), account_limits, n_venues,
        strategy_limits,
    )  # fmt: skip
    for i, row in enumerate(a.ist.tolist()):
        m.books[i] = InstrumentState(
            ref=row[r.IS_REF_TICKS],
            mark=row[r.IS_MARK_TICKS],
            net=row[r.IS_NET_LOTS],
            working={BUY: row[r.IS_OPEN_BUY], SELL: row[r.IS_OPEN_SELL]},
            open_orders=row[r.IS_OPEN_ORDERS],
            exposure=row[r.IS_EXPOSURE],
            opened_today=row[r.IS_OPENED_TODAY],
            last_ref=row[r.IS_LAST_REF_TICKS],
        )
    for s, rows in enumerate(a.pst.tolist()):
        for i, p in enumerate(rows):
            m.positions[(s, i)] = Position(
                lots=p[r.PS_LOTS],
                avg=p[r.PS_AVG_TICKS],
                realised=p[r.PS_REALISED],
                fees=p[r.PS_FEES],
                unreal=p[r.PS_UNREAL],
                unreal_sod=p[r.PS_UNREAL_SOD],
                working={BUY: p[r.PS_OPEN_BUY], SELL: p[r.PS_OPEN_SELL]},
                reserved={BUY: p[r.PS_BP_BUY], SELL: p[r.PS_BP_SELL]},
            )
    m.strategy_pnl = [
        DayPnl(x[r.SS_REALISED], x[r.SS_UNREAL], x[r.SS_FEES]) for x in a.sst.tolist()
    ]
    gs = a.gst.tolist()
    acct = m.account
    acct.trading_state = gs[r.GS_TRADING_STATE]
    acct.equity_sod = gs[r.GS_EQUITY_SOD]
    acct.pnl = DayPnl(gs[r.GS_REALISED], gs[r.GS_UNREAL], gs[r.GS_FEES])
    acct.gross = gs[r.GS_GROSS]
    acct.buying_power = gs[r.GS_BUYING_POWER]
    acct.reserved = gs[r.GS_BP_RESERVED]
    acct.day_trades = gs[r.GS_DAY_TRADES]
    for key, row in zip(bucket_keys(n_strat, n_venues), a.buckets.tolist(), strict=True):
        m.buckets[key] = Bucket(*row)
    return m


def bucket_keys(n_strat: int, n_venues: int) -> list[object]:
    """The model's bucket keys in the kernels' row order."""
    return (
        ["account"]
        + [("strategy", s) for s in range(n_strat)]
        + [("venue", v) for v in range(n_venues)]
    )


def model_state(m: RiskModel, like: RiskArrays) -> dict[str, np.ndarray]:
    """The model's state laid out like the kernels' state arrays."""
    ist = np.zeros_like(like.ist)
    for i, b in enumerate(m.books):
        ist[i, r.IS_REF_TICKS] = b.ref
        ist[i, r.IS_MARK_TICKS] = b.mark
        ist[i, r.IS_NET_LOTS] = b.net
        ist[i, r.IS_OPEN_BUY] = b.working[BUY]
        ist[i, r.IS_OPEN_SELL] = b.working[SELL]
        ist[i, r.IS_OPEN_ORDERS] = b.open_orders
        ist[i, r.IS_EXPOSURE] = b.exposure
        ist[i, r.IS_OPENED_TODAY] = b.opened_today
        ist[i, r.IS_LAST_REF_TICKS] = b.last_ref
    pst = np.zeros_like(like.pst)
    for (s, i), p in m.positions.items():
        pst[s, i] = [
            p.lots, p.avg, p.realised, p.fees, p.unreal, p.unreal_sod,
            p.working[BUY], p.working[SELL], p.reserved[BUY], p.reserved[SELL],
        ]  # fmt: skip
    sst = np.array([[p.realised, p.unreal, p.fees] for p in m.strategy_pnl], dtype=np.float64)
    a = m.account
    gst = np.array(
        [
            a.trading_state, a.equity_sod, a.pnl.realised, a.pnl.unreal, a.pnl.fees, a.gross,
            a.buying_power, a.reserved, a.day_trades,
        ],
        dtype=np.float64,
    )  # fmt: skip
    keys = bucket_keys(len(m.strategy_pnl), m.n_venues)
    buckets = np.array(
        [[b.interval, b.capacity, b.credit, b.last] for b in (m.buckets[k] for k in keys)],
        dtype=np.int64,
    )
    return {"ist": ist, "sst": sst.reshape(like.sst.shape), "pst": pst, "gst": gst,
            "buckets": buckets}  # fmt: skip


def assert_same_state(a: RiskArrays, m: RiskModel) -> None:
    for name, expected in model_state(m, a).items():
        np.testing.assert_array_equal(getattr(a, name), expected, err_msg=name)


def kernel_check(a: RiskArrays, it: Intent, now: int, via: str) -> tuple[str, int, int, int]:
    """One intent through ``check_order``/``check_modify`` (via="single"; with a stop price, or
    via="extended": ``check_order_extended``/``check_modify_extended``) or ``check_batch``:
    (verdict name, lots, ticks, stop ticks)."""
    if via == "batch":
        rows = intents_array([it])
        passed = r.check_batch(*a, rows, 1, now)
        row = rows[0]
        assert passed == (row["verdict"] == r.PASS)
        return (
            r.VERDICT_NAMES[row["verdict"]], int(row["qty_lots"]), int(row["price_ticks"]),
            int(row["stop_ticks"]),
        )  # fmt: skip
    if via == "extended" or not math.isnan(it.stop_price):
        args = (it.strategy, it.instrument, it.side, it.order_type, it.qty, it.price,
                it.stop_price, now)  # fmt: skip
        if it.kind == MODIFY:
            v, lots, ticks, stop = r.check_modify_extended(
                *a, *args, it.replaced_leaves, it.replaced_filled
            )
        else:
            v, lots, ticks, stop = r.check_order_extended(*a, *args)
        return r.VERDICT_NAMES[v], lots, ticks, stop
    args = (it.strategy, it.instrument, it.side, it.order_type, it.qty, it.price, now)
    if it.kind == MODIFY:
        v, lots, ticks = r.check_modify(*a, *args, it.replaced_leaves, it.replaced_filled)
    else:
        v, lots, ticks = r.check_order(*a, *args)
    return r.VERDICT_NAMES[v], lots, ticks, NO_PRICE


def intents_array(intents: list[Intent]) -> np.ndarray:
    rows = np.zeros(len(intents), dtype=r.INTENT)
    for row, it in zip(rows, intents, strict=True):
        row["strategy_id"] = it.strategy
        row["instrument_id"] = it.instrument
        row["side"] = it.side
        row["order_type"] = it.order_type
        row["qty"] = it.qty
        row["price"] = it.price
        row["stop_price"] = it.stop_price
        row["kind"] = it.kind
        row["replaced_leaves"] = it.replaced_leaves
        row["replaced_filled"] = it.replaced_filled
    return rows


def check_both(a: RiskArrays, it: Intent, now: int, via: str = "single") -> str:
    """Check ``it`` in the kernel and the model from the same state; both must agree."""
    m = to_model(a)
    expected = m.check_with_stop(it, now)
    got = kernel_check(a, it, now, via)
    assert got == expected, (it, got, expected)
    assert_same_state(a, m)
    return got[0]


def mark(a: RiskArrays, tops: dict[int, tuple[int, int]]) -> None:
    """Reference prices from (bid ticks, ask ticks) per instrument, listed as the book kernel
    lists its changed tops."""
    ids = np.array(list(tops), dtype=np.int64)
    top = np.array([[b, 1, ask, 1] for b, ask in tops.values()], dtype=np.int64).reshape(-1, 4)
    r.mark_to_market(a.ilim, a.ist, a.sst, a.pst, a.gst, ids, top, len(ids))


def fill(a: RiskArrays, s, i, side, lots, ticks, commission=0.0, release=0, done=False) -> bool:
    return r.apply_fill(
        a.ilim, a.ist, a.sst, a.pst, a.gst, s, i, side, lots, ticks, commission, release, done
    )


# ---- the verdict table ----------------------------------------------------------------------


def test_verdicts_keep_the_gate_codes_and_every_code_has_a_name_and_reason():
    for v in Verdict:
        assert r.VERDICT_NAMES[v.value] == v.name
        assert getattr(r, v.name) == v.value
    assert len(r.VERDICT_NAMES) == len(r.VERDICT_REASONS) == len(set(r.VERDICT_NAMES))
    assert all(r.VERDICT_REASONS)
    assert [r.VERDICTS[n] for n in r.VERDICT_NAMES] == list(range(len(r.VERDICT_NAMES)))
    # Every check the kernel makes is in CHECK_ORDER exactly once; the gate issues UNKNOWN_ORDER,
    # BAD_ORDER_PARAMS, NOT_OWN_ORDER and CANCEL_PENDING.
    gate_only = (r.PASS, r.UNKNOWN_ORDER, r.BAD_ORDER_PARAMS, r.NOT_OWN_ORDER, r.CANCEL_PENDING)
    assert sorted(r.CHECK_ORDER) == [c for c in range(len(r.VERDICT_NAMES)) if c not in gate_only]


def test_intent_layout_is_aligned_and_compact():
    assert r.INTENT.isalignedstruct
    assert r.INTENT.itemsize == 88
    for name in r.INTENT.names:
        dt, offset = r.INTENT.fields[name][:2]
        assert offset % dt.alignment == 0, name


# ---- one check at a time, and the first failure wins ----------------------------------------


def base() -> tuple[RiskArrays, Intent]:
    """Two instruments on one venue, two strategies, equity 1e6, a mid of 100.00 on instrument 0:
    buying 10 at 100.00 on instrument 0 for strategy 0 passes."""
    a = new_risk_arrays(2, 2, 1)
    a.ilim[:, r.IL_TRADABLE] = 1.0
    a.ilim[:, r.IL_TICK_SIZE] = 0.01
    validate(a)
    mark(a, {0: (BASE_TICKS - 1, BASE_TICKS + 1), 1: (4_999, 5_001)})
    r.daily_reset(a.ist, a.sst, a.pst, a.gst, 1e6, 0)
    return a, Intent(strategy=0, instrument=0, side=BUY, order_type=LIMIT, qty=10.0, price=100.0)


def _empty_bucket(a: RiskArrays, row: int) -> None:
    a.buckets[row] = (10**9, 10**9, 0, NOW)


def _set(arr, index, value):
    arr[index] = value


# check -> (what it touches, how to make it fail). Two mutations touching the same thing are not
# combined: they would undo each other or make one of them impossible.
MUTATIONS = {
    r.UNKNOWN_INSTRUMENT: ({"instrument"}, lambda a, it: setattr(it, "instrument", 9)),
    r.UNKNOWN_STRATEGY: ({"strategy"}, lambda a, it: setattr(it, "strategy", 9)),
    r.BAD_INTENT: ({"side"}, lambda a, it: setattr(it, "side", 0)),
    r.TRADING_HALTED: (
        {"trading_state"},
        lambda a, it: _set(a.gst, r.GS_TRADING_STATE, r.STATE_HALTED),
    ),
    r.NOT_TRADABLE: ({"tradable"}, lambda a, it: _set(a.ilim, (0, r.IL_TRADABLE), 0.0)),
    r.SYMBOL_BLOCKED: ({"blocked"}, lambda a, it: _set(a.ilim, (0, r.IL_BLOCKED), 1.0)),
    r.NOT_ALLOWED: ({"allow_list"}, lambda a, it: _set(a.glim, r.GL_ALLOW_LIST, 1.0)),
    r.OUTSIDE_TRADING_HOURS: (
        {"hours"},
        lambda a, it: set_trading_hours(a.ilim, 0, 0, [(0, 3600)]),
    ),
    r.BAD_QUANTITY: ({"qty"}, lambda a, it: setattr(it, "qty", -10.0)),
    r.NOT_WHOLE_LOTS: ({"qty"}, lambda a, it: setattr(it, "qty", 10.5)),
    r.MAX_ORDER_QTY: ({"max_qty"}, lambda a, it: _set(a.ilim, (0, r.IL_MAX_ORDER_QTY), 5.0)),
    r.MODIFY_BELOW_FILLED: (
        {"kind"},
        lambda a, it: (setattr(it, "kind", MODIFY), setattr(it, "replaced_filled", 10)),
    ),
    r.BAD_STOP_PRICE: (
        {"order_type", "stop"},
        lambda a, it: (setattr(it, "order_type", STOP_LIMIT), setattr(it, "stop_price", -1.0)),
    ),
    r.STOP_OFF_TICK_GRID: (
        {"order_type", "stop"},
        lambda a, it: (setattr(it, "order_type", STOP_LIMIT), setattr(it, "stop_price", 99.005)),
    ),
    r.BAD_PRICE: ({"price", "order_type"}, lambda a, it: setattr(it, "price", math.nan)),
    r.OFF_TICK_GRID: ({"price", "order_type"}, lambda a, it: setattr(it, "price", 100.005)),
    r.NO_REFERENCE_PRICE: (
        {"order_type", "ref"},
        lambda a, it: (setattr(it, "order_type", MARKET), mark(a, {0: (NO_PRICE, NO_PRICE)})),
    ),
    r.PRICE_COLLAR: (
        {"order_type", "ref", "collar"},
        lambda a, it: (
            _set(a.ilim, (0, r.IL_COLLAR_TICKS), 50.0),
            mark(a, {0: (BASE_TICKS + 99, BASE_TICKS + 101)}),
        ),
    ),
    r.REDUCING_ONLY: (
        {"trading_state"},
        lambda a, it: _set(a.gst, r.GS_TRADING_STATE, r.STATE_REDUCING),
    ),
    r.MAX_ORDER_NOTIONAL: (
        {"notional"},
        lambda a, it: _set(a.ilim, (0, r.IL_MAX_ORDER_NOTIONAL), 500.0),
    ),
    r.MAX_POSITION: ({"max_position"}, lambda a, it: _set(a.ilim, (0, r.IL_MAX_POSITION), 5.0)),
    r.MAX_OPEN_ORDERS: (
        {"kind", "max_open"},
        lambda a, it: _set(a.ilim, (0, r.IL_MAX_OPEN_ORDERS), 0.0),
    ),
    r.CONCENTRATION_BREAKER: (
        {"reduce_only"},
        lambda a, it: _set(a.ilim, (0, r.IL_REDUCE_ONLY), 1.0),
    ),
    r.MAX_GROSS_EXPOSURE: ({"gross"}, lambda a, it: _set(a.glim, r.GL_MAX_GROSS, 500.0)),
    r.MAX_LEVERAGE: ({"leverage"}, lambda a, it: _set(a.glim, r.GL_MAX_LEVERAGE, 1e-4)),
    r.MAX_CONCENTRATION: (
        {"concentration"},
        lambda a, it: _set(a.ilim, (0, r.IL_MAX_CONCENTRATION), 1e-4),
    ),
    r.STRATEGY_DAILY_LOSS: (
        {"strategy_pnl"},
        lambda a, it: (
            _set(a.slim, (0, r.SL_MAX_DAILY_LOSS), 50.0),
            _set(a.sst, (0, r.SS_REALISED), -100.0),
        ),
    ),
    r.ACCOUNT_DAILY_LOSS: (
        {"account_pnl"},
        lambda a, it: (
            _set(a.glim, r.GL_MAX_DAILY_LOSS, 50.0),
            _set(a.gst, r.GS_REALISED, -100.0),
        ),
    ),
    r.BUYING_POWER: ({"buying_power"}, lambda a, it: _set(a.gst, r.GS_BUYING_POWER, 500.0)),
    r.PATTERN_DAY_TRADER: (
        {"pdt"},
        # Strategy 1 sold 2 lots today: the account is short, so buying closes a day trade.
        lambda a, it: (
            fill(a, 1, 0, SELL, 2, BASE_TICKS),
            _set(a.glim, r.GL_PDT_MAX_DAY_TRADES, 0.0),
            _set(a.glim, r.GL_PDT_MIN_EQUITY, 1e7),
        ),
    ),
    r.STRATEGY_RATE: ({"strategy_bucket"}, lambda a, it: _empty_bucket(a, strategy_bucket(0))),
    r.ACCOUNT_RATE: ({"account_bucket"}, lambda a, it: _empty_bucket(a, r.GLOBAL_BUCKET)),
    r.VENUE_PACING: ({"venue_bucket"}, lambda a, it: _empty_bucket(a, venue_bucket(a, 0))),
}


def test_every_check_has_a_targeted_mutation():
    assert sorted(MUTATIONS) == sorted(r.CHECK_ORDER)


@pytest.mark.parametrize("via", ["single", "batch"])
def test_the_base_order_passes(via):
    a, it = base()
    assert check_both(a, it, NOW, via) == "PASS"


@pytest.mark.parametrize("code", r.CHECK_ORDER, ids=lambda c: r.VERDICT_NAMES[c])
def test_each_check_fires_alone_and_wins_over_every_later_one(code):
    a, it = base()
    MUTATIONS[code][1](a, it)
    assert check_both(a, it, NOW, "single") == r.VERDICT_NAMES[code]
    touched = MUTATIONS[code][0]
    for later in r.CHECK_ORDER[r.CHECK_ORDER.index(code) + 1 :]:
        later_touches, later_mutate = MUTATIONS[later]
        if touched & later_touches:
            continue
        a, it = base()
        later_mutate(a, it)
        MUTATIONS[code][1](a, it)
        got = check_both(a, it, NOW, "batch")
        assert got == r.VERDICT_NAMES[code], f"with {r.VERDICT_NAMES[later]} also failing"


# ---- rules in detail ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "strategy_cap", "verdict"),
    [
        (r.SL_MAX_ORDER_QTY, 5.0, "MAX_ORDER_QTY"),
        (r.SL_MAX_ORDER_NOTIONAL, 500.0, "MAX_ORDER_NOTIONAL"),
        (r.SL_MAX_POSITION, 5.0, "MAX_POSITION"),
    ],
)
def test_the_smaller_of_the_strategy_and_instrument_limit_applies(column, strategy_cap, verdict):
    a, it = base()  # buys 10 at 100.00: value 1,000
    a.slim[1, column] = strategy_cap  # another strategy's cap changes nothing for strategy 0
    assert check_both(a, it, NOW) == "PASS"
    a, it = base()
    a.slim[0, column] = strategy_cap
    assert check_both(a, it, NOW) == verdict
    a.slim[0, column] = INF
    il = {
        r.SL_MAX_ORDER_QTY: r.IL_MAX_ORDER_QTY,
        r.SL_MAX_ORDER_NOTIONAL: r.IL_MAX_ORDER_NOTIONAL,
        r.SL_MAX_POSITION: r.IL_MAX_POSITION,
    }[column]
    a.ilim[0, il] = strategy_cap
    a.slim[0, column] = 1e9  # a larger strategy cap does not lift the instrument's
    assert check_both(a, it, NOW) == verdict


def test_the_concentration_breaker_admits_orders_that_add_no_exposure():
    a, it = base()
    fill(a, 0, 0, BUY, 20, BASE_TICKS)  # the account is long 20
    a.ilim[0, r.IL_REDUCE_ONLY] = 1.0
    assert check_both(a, it, NOW) == "CONCENTRATION_BREAKER"  # buying adds exposure
    it.side = SELL
    assert check_both(a, it, NOW) == "PASS"  # selling 10 of 20 reduces
    it.qty = 40.0  # selling 40 more would leave the account short 30: more than long 20
    assert check_both(a, it, NOW) == "CONCENTRATION_BREAKER"
    # Another strategy reducing the account's position passes too (the flag is the account's).
    it.strategy, it.qty = 1, 5.0
    assert check_both(a, it, NOW) == "PASS"
    a.ilim[0, r.IL_REDUCE_ONLY] = 0.0
    it.side = BUY
    assert check_both(a, it, NOW) == "PASS"


def test_lots_and_ticks_come_back_on_a_pass():
    a, it = base()
    a.ilim[0, r.IL_LOT_SIZE] = 100.0
    it.qty = 700.0
    it.price = 100.07
    assert kernel_check(a, it, NOW, "single") == ("PASS", 7, 10_007, NO_PRICE)
    it.order_type = MARKET
    assert kernel_check(a, it, NOW, "single") == ("PASS", 7, NO_PRICE, NO_PRICE)
    it.order_type, it.stop_price = STOP_LIMIT, 100.05
    assert kernel_check(a, it, NOW, "extended") == ("PASS", 7, 10_007, 10_005)
    it.order_type = STOP
    assert kernel_check(a, it, NOW, "batch") == ("PASS", 7, NO_PRICE, 10_005)


ALL_TYPES = [MARKET, LIMIT, STOP, STOP_LIMIT, MARKET_ON_CLOSE, LIMIT_ON_CLOSE, TRAILING_STOP,
             TRAILING_STOP_LIMIT]  # fmt: skip


@pytest.mark.parametrize("via", ["single", "extended", "batch"])
def test_each_order_type_is_priced_at_its_limit_or_the_reference(via):
    """Limit-priced types are valued at the limit, the others at the mid (and need one); STOP
    and STOP_LIMIT need a stop on the grid, TRAILING_* may carry one, the rest ignore it."""
    for order_type in ALL_TYPES:
        limit_priced = order_type in (LIMIT, STOP_LIMIT, LIMIT_ON_CLOSE)
        a, it = base()
        it.order_type, it.price, it.stop_price = order_type, 100.5, 100.25
        takes_stop = order_type in (STOP, STOP_LIMIT, TRAILING_STOP, TRAILING_STOP_LIMIT)
        if via == "single":  # check_order: no stop price at all
            it.stop_price = math.nan
        got = check_both(a, it, NOW, via)
        if order_type in (STOP, STOP_LIMIT) and via == "single":
            assert got == "BAD_STOP_PRICE", order_type
            continue
        assert got == "PASS", order_type
        # A mid of 100.00 and a limit of 100.50: the exposure shows which price was used.
        assert a.gst[r.GS_BP_RESERVED] == pytest.approx(1005.0 if limit_priced else 1000.0)
        a, it = base()  # (a stop price goes through check_order_extended, even via "single")
        it.order_type, it.price, it.stop_price = order_type, 100.5, 100.255
        expected = "STOP_OFF_TICK_GRID" if takes_stop else "PASS"
        assert check_both(a, it, NOW, via) == expected, order_type
        a, it = base()
        mark(a, {0: (NO_PRICE, NO_PRICE)})
        it.order_type, it.stop_price = order_type, math.nan if via == "single" else 100.25
        expected = "PASS" if limit_priced else "NO_REFERENCE_PRICE"
        if order_type in (STOP, STOP_LIMIT) and via == "single":
            expected = "BAD_STOP_PRICE"
        assert check_both(a, it, NOW, via) == expected, order_type
    a, it = base()
    it.order_type = 8
    assert check_both(a, it, NOW, via) == "BAD_INTENT"


def test_reducing_admits_only_orders_inside_the_position():
    a, it = base()
    fill(a, 0, 0, BUY, 10, BASE_TICKS)
    a.gst[r.GS_TRADING_STATE] = r.STATE_REDUCING
    sell = Intent(0, 0, SELL, LIMIT, 6.0, 100.0)
    assert check_both(a, sell, NOW) == "PASS"
    assert check_both(a, sell, NOW) == "REDUCING_ONLY"  # 6 + 6 working > 10 held
    sell.qty = 4.0
    assert check_both(a, sell, NOW) == "PASS"
    assert check_both(a, it, NOW) == "REDUCING_ONLY"


def test_trading_hours_windows_wrap_midnight_and_follow_the_utc_offset():
    a, it = base()
    set_trading_hours(a.ilim, 0, -5 * 3600, [(9 * 3600 + 1800, 16 * 3600)])  # New York, EST
    at = NOW - NOW % DAY_NS  # midnight UTC
    assert check_both(a, it, at + 14 * 3600 * 10**9) == "OUTSIDE_TRADING_HOURS"  # 09:00 local
    assert check_both(a, it, at + 14 * 3600 * 10**9 + 1800 * 10**9) == "PASS"  # 09:30 local
    assert check_both(a, it, at + 21 * 3600 * 10**9) == "OUTSIDE_TRADING_HOURS"  # 16:00 local
    a, it = base()
    set_trading_hours(a.ilim, 0, 0, [(18 * 3600, 17 * 3600)])  # futures: 18:00 to 17:00
    assert check_both(a, it, at + 23 * 3600 * 10**9) == "PASS"
    assert check_both(a, it, at + 3 * 3600 * 10**9) == "PASS"
    assert check_both(a, it, at + 17 * 3600 * 10**9 + 10**9) == "OUTSIDE_TRADING_HOURS"


def test_a_batch_sees_the_state_its_earlier_intents_left():
    a, _ = base()
    a.ilim[0, r.IL_MAX_OPEN_ORDERS] = 2
    a.ilim[0, r.IL_MAX_POSITION] = 25
    set_bucket(a.buckets, strategy_bucket(1), 10.0, 3, NOW)
    intents = [
        Intent(0, 0, BUY, LIMIT, 10.0, 100.0),
        Intent(0, 0, BUY, LIMIT, 10.0, 100.0),
        Intent(0, 0, BUY, LIMIT, 1.0, 100.0),  # third working order on the instrument
        Intent(1, 1, SELL, LIMIT, 1.0, 50.0),
        Intent(1, 1, SELL, LIMIT, 1.0, 50.0),
        Intent(1, 1, SELL, LIMIT, 1.0, 50.0),
        Intent(1, 1, SELL, LIMIT, 1.0, 50.0),  # fourth message within the strategy's burst
    ]
    m = to_model(a)
    expected = [m.check(it, NOW)[0] for it in intents]
    rows = intents_array(intents)
    assert r.check_batch(*a, rows, len(rows), NOW) == 5
    assert [r.VERDICT_NAMES[v] for v in rows["verdict"]] == expected
    assert expected == ["PASS", "PASS", "MAX_OPEN_ORDERS", "PASS", "PASS", "PASS", "STRATEGY_RATE"]
    assert_same_state(a, m)
    assert a.ist[0, r.IS_OPEN_BUY] == 20 and a.ist[0, r.IS_OPEN_ORDERS] == 2


def test_token_bucket_refills_by_elapsed_time_and_caps_at_the_burst():
    a, it = base()
    row = venue_bucket(a, 0)
    set_bucket(a.buckets, row, 50.0, 2, NOW)  # 20 ms per message
    assert a.buckets[row].tolist() == [20_000_000, 40_000_000, 40_000_000, NOW]
    assert [check_both(a, it, NOW) for _ in range(3)] == ["PASS", "PASS", "VENUE_PACING"]
    assert a.buckets[row, r.B_CREDIT_NS] == 0
    assert check_both(a, it, NOW + 19_999_999) == "VENUE_PACING"
    assert check_both(a, it, NOW + 20_000_000) == "PASS"
    assert check_both(a, it, NOW + 10 * 10**9) == "PASS"  # refilled to the burst, not beyond
    assert a.buckets[row, r.B_CREDIT_NS] == 20_000_000
    assert check_both(a, it, NOW) == "PASS"  # a clock going back adds no credit
    assert check_both(a, it, NOW) == "VENUE_PACING"


def test_the_ib_pacing_bucket_keeps_every_second_within_50_messages():
    a, _ = base()
    set_bucket(a.buckets, venue_bucket(a, 0), *IB_PACING, NOW)
    ms = 10**6
    sent = [
        t
        for t in range(0, 3000 * ms, ms)
        if r.check_order(*a, 0, 0, 1, 1, 1.0, 100.0, NOW + t)[0] == r.PASS
    ]
    busiest = max(sum(1 for u in sent if t <= u < t + 1000 * ms) for t in sent)
    assert busiest <= IB_MESSAGES_PER_S
    assert len(sent) >= 3 * IB_PACING[0]  # and it does not hold back more than it must


def test_cancels_are_charged_to_pacing_and_never_refused():
    a, it = base()
    row = venue_bucket(a, 0)
    set_bucket(a.buckets, row, 50.0, 1, NOW)
    m = to_model(a)
    got = [bool(r.charge_message(a.buckets, row, NOW)) for _ in range(3)]
    assert got == [m.charge(("venue", 0), NOW) for _ in range(3)] == [True, False, False]
    assert a.buckets[row, r.B_CREDIT_NS] == -40_000_000  # two messages of debt
    assert_same_state(a, m)
    assert check_both(a, it, NOW + 40_000_000) == "VENUE_PACING"
    assert check_both(a, it, NOW + 60_000_000) == "PASS"
    assert not r.charge_message(a.buckets, 99, NOW)


def test_fills_release_working_lots_and_reserved_buying_power():
    a, it = base()
    a.gst[r.GS_BUYING_POWER] = 10_000.0
    assert check_both(a, it, NOW) == "PASS"
    assert a.gst[r.GS_BP_RESERVED] == 1000.0
    m = to_model(a)
    assert fill(a, 0, 0, BUY, 4, BASE_TICKS, 1.0, release=4)
    assert m.fill(0, 0, BUY, 4, BASE_TICKS, 1.0, 4, False)
    assert_same_state(a, m)
    assert a.pst[0, 0, r.PS_OPEN_BUY] == 6 and a.gst[r.GS_BP_RESERVED] == 600.0
    assert a.gst[r.GS_BUYING_POWER] == 10_000.0 - 400.0
    assert r.release_order(a.ilim, a.ist, a.pst, a.gst, 0, 0, BUY, 6, True)
    assert m.release(0, 0, BUY, 6, True)
    assert_same_state(a, m)
    assert a.gst[r.GS_BP_RESERVED] == 0.0 and a.ist[0, r.IS_OPEN_ORDERS] == 0
    assert a.gst[r.GS_GROSS] == a.ist[0, r.IS_EXPOSURE] == 400.0  # 4 lots held at 100.00
    assert not r.release_order(a.ilim, a.ist, a.pst, a.gst, 0, 5, BUY, 6, True)
    assert not fill(a, 0, 0, 0, 1, BASE_TICKS)


def test_a_modify_holds_the_larger_size_until_the_venue_answers():
    a, it = base()
    a.ilim[0, r.IL_MAX_POSITION] = 12.0
    assert check_both(a, it, NOW) == "PASS"
    up = Intent(0, 0, BUY, LIMIT, 12.0, 100.0, MODIFY, replaced_leaves=10)
    assert check_both(a, up, NOW) == "PASS"  # checked as 12 working, not 10 + 12
    assert a.pst[0, 0, r.PS_OPEN_BUY] == 12 and a.ist[0, r.IS_OPEN_ORDERS] == 1
    down = Intent(0, 0, BUY, LIMIT, 5.0, 100.0, MODIFY, replaced_leaves=12)
    assert check_both(a, down, NOW) == "PASS"
    assert a.pst[0, 0, r.PS_OPEN_BUY] == 12  # until the venue confirms; then a release of 7
    partly = Intent(0, 0, BUY, LIMIT, 3.0, 100.0, MODIFY, replaced_leaves=8, replaced_filled=4)
    assert check_both(a, partly, NOW) == "MODIFY_BELOW_FILLED"


def test_a_modify_that_raises_the_price_needs_buying_power_at_the_new_price():
    """10 bought at 100.00 reserve 1000; moved to 100.50 they need 1005: a price rise was
    never checked against buying power (only added lots were)."""
    a, it = base()
    a.gst[r.GS_BUYING_POWER] = 1004.0
    assert check_both(a, it, NOW) == "PASS"
    assert a.gst[r.GS_BP_RESERVED] == 1000.0
    up = Intent(0, 0, BUY, LIMIT, 10.0, 100.5, MODIFY, replaced_leaves=10)
    assert check_both(a, up, NOW) == "BUYING_POWER"
    a.gst[r.GS_BUYING_POWER] = 1005.0
    assert check_both(a, up, NOW) == "PASS"
    assert a.gst[r.GS_BP_RESERVED] == pytest.approx(1005.0)
    # A lower price or a smaller size needs nothing more, and the same price nothing either.
    for price, qty in ((99.0, 10.0), (100.5, 4.0), (100.5, 10.0)):
        same = Intent(0, 0, BUY, LIMIT, qty, price, MODIFY, replaced_leaves=10)
        assert check_both(a, same, NOW) == "PASS"
        assert a.gst[r.GS_BP_RESERVED] == pytest.approx(1005.0)
    assert r.release_order(a.ilim, a.ist, a.pst, a.gst, 0, 0, BUY, 10, True)
    assert a.gst[r.GS_BP_RESERVED] == 0.0


def test_the_instruments_position_limit_holds_for_the_account_across_strategies():
    """Two strategies each within IL_MAX_POSITION (10) together passed it: 8 + 8 working buys
    made the account's worst case 16. The strategy's own limit still holds on its own."""
    a, _ = base()
    a.ilim[0, r.IL_MAX_POSITION] = 10.0
    assert check_both(a, Intent(0, 0, BUY, LIMIT, 8.0, 100.0), NOW) == "PASS"
    assert check_both(a, Intent(1, 0, BUY, LIMIT, 8.0, 100.0), NOW) == "MAX_POSITION"
    assert check_both(a, Intent(1, 0, BUY, LIMIT, 2.0, 100.0), NOW) == "PASS"
    # Sells of strategy 1 open a short of its own, within both limits.
    assert check_both(a, Intent(1, 0, SELL, LIMIT, 9.0, 100.0), NOW) == "PASS"
    # A modify is checked as the order it becomes: 8 -> 9 passes 10 with the other's 2.
    up = Intent(0, 0, BUY, LIMIT, 9.0, 100.0, MODIFY, replaced_leaves=8)
    assert check_both(a, up, NOW) == "MAX_POSITION"
    down = Intent(0, 0, BUY, LIMIT, 7.0, 100.0, MODIFY, replaced_leaves=8)
    assert check_both(a, down, NOW) == "PASS"


def test_the_collar_holds_against_the_last_mid_when_the_book_has_none():
    """A book that lost a side has no reference price; limits are collared against the last mid
    (before, any limit price passed). An instrument never priced has nothing to collar against."""
    a, _ = base()
    a.ilim[:, r.IL_COLLAR_PCT] = 0.05
    for top in ((NO_PRICE, BASE_TICKS + 1), (BASE_TICKS - 1, NO_PRICE), (NO_PRICE, NO_PRICE)):
        mark(a, {0: top})
        assert a.ist[0, r.IS_REF_TICKS] == 0 and a.ist[0, r.IS_LAST_REF_TICKS] == BASE_TICKS
        for price in (150.0, 50.0):
            far = Intent(0, 0, BUY, LIMIT, 1.0, price)
            assert check_both(a, far, NOW) == "PRICE_COLLAR"
        assert check_both(a, Intent(0, 0, SELL, LIMIT, 1.0, 104.0), NOW) == "PASS"
    fresh = new_risk_arrays(1, 1, 1)
    fresh.ilim[0, [r.IL_TRADABLE, r.IL_COLLAR_PCT]] = (1.0, 0.05)
    assert check_both(fresh, Intent(0, 0, BUY, LIMIT, 1.0, 50.0), NOW) == "PASS"


def test_a_stop_limits_limit_is_collared_against_its_stop():
    """Mid 100.00, a 5% collar: a sell stop at 90.00 with its limit at 89.50 passes (it was
    refused against the mid), one with its limit at 80.00 is refused against its stop."""
    a, _ = base()
    a.ilim[:, r.IL_COLLAR_PCT] = 0.05
    near = Intent(0, 0, SELL, STOP_LIMIT, 1.0, 89.5, stop_price=90.0)
    assert check_both(a, near, NOW) == "PASS"
    far = Intent(0, 0, SELL, STOP_LIMIT, 1.0, 80.0, stop_price=90.0)
    assert check_both(a, far, NOW, "extended") == "PRICE_COLLAR"
    assert check_both(a, Intent(0, 0, SELL, LIMIT, 1.0, 89.5), NOW) == "PRICE_COLLAR"


def test_an_order_price_does_not_move_the_mark_of_a_priced_instrument():
    """With the book emptied (data stopped), a resting limit far from the last mid is no trade:
    positions stay marked at the last mid, not at the limit (which made up a loss of 90%)."""
    a, _ = base()
    assert fill(a, 0, 0, BUY, 10, BASE_TICKS, 0.0)
    mark(a, {0: (NO_PRICE, NO_PRICE)})
    unreal = a.gst[r.GS_UNREAL]
    far = Intent(0, 0, BUY, LIMIT, 1.0, 10.0)
    assert check_both(a, far, NOW) == "PASS"
    assert a.ist[0, r.IS_MARK_TICKS] == BASE_TICKS and a.gst[r.GS_UNREAL] == unreal
    assert a.ist[0, r.IS_EXPOSURE] == pytest.approx(11 * 100.0)  # valued at the mark too
    fresh = new_risk_arrays(1, 1, 1)
    fresh.ilim[0, r.IL_TRADABLE] = 1.0
    first = Intent(0, 0, BUY, LIMIT, 2.0, 50.0)
    assert check_both(fresh, first, NOW) == "PASS"  # never priced: the order's price values it
    assert fresh.ist[0, r.IS_MARK_TICKS] == 50.0


@settings(deadline=None, max_examples=150)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([BUY, SELL]),
            st.integers(1, 30),
            st.integers(9_900, 10_100),
            st.sampled_from([0.0, 0.5]),
        ),
        max_size=30,
    ),
    st.sampled_from([(0.01, 1.0, 1.0), (0.25, 1.0, 50.0), (0.5, 100.0, 1.0)]),
)
def test_position_arithmetic_matches_engine_portfolio(fills, spec):
    tick, lot, mult = spec
    a = new_risk_arrays(1, 1, 1)
    a.ilim[0, [r.IL_TICK_SIZE, r.IL_LOT_SIZE, r.IL_MULTIPLIER]] = spec
    m = to_model(a)
    engine_pos = EnginePosition(0)
    for side, lots, ticks, fee in fills:
        fill(a, 0, 0, side, lots, ticks, fee)
        m.fill(0, 0, side, lots, ticks, fee, 0, False)
        engine_pos.apply_fill(side, lots, ticks, tick * lot * mult)
        assert a.pst[0, 0, r.PS_LOTS] == engine_pos.lots
        assert a.pst[0, 0, r.PS_AVG_TICKS] == engine_pos.avg_ticks
        assert a.pst[0, 0, r.PS_REALISED] == engine_pos.realised
        assert a.pst[0, 0, r.PS_UNREAL] == engine_pos.unrealised(float(ticks), tick * lot * mult)
    assert_same_state(a, m)


def test_pnl_marks_and_daily_reset():
    a, _ = base()
    fill(a, 0, 0, BUY, 10, BASE_TICKS, 2.0)
    fill(a, 1, 0, SELL, 4, BASE_TICKS + 10, 1.0)
    m = to_model(a)
    mark(a, {0: (BASE_TICKS - 21, BASE_TICKS - 19)})  # mid 99.80
    m.mark([(0, BASE_TICKS - 21, BASE_TICKS - 19)])
    assert_same_state(a, m)
    assert a.pst[0, 0, r.PS_UNREAL] == pytest.approx(-2.0)  # 10 * -0.20
    assert a.pst[1, 0, r.PS_UNREAL] == pytest.approx(1.2)  # -4 * -0.30
    assert a.gst[r.GS_UNREAL] == pytest.approx(-0.8)
    assert a.gst[r.GS_GROSS] == pytest.approx(6 * 99.8)
    assert a.gst[r.GS_DAY_TRADES] == 1  # strategy 1's sell closed lots bought today
    equity = a.gst[r.GS_EQUITY_SOD] + a.gst[r.GS_REALISED] + a.gst[r.GS_UNREAL] - a.gst[r.GS_FEES]
    r.daily_reset(a.ist, a.sst, a.pst, a.gst, math.nan, 2)
    m.daily_reset(math.nan, 2)
    assert_same_state(a, m)
    assert a.gst[r.GS_EQUITY_SOD] == equity and a.gst[r.GS_DAY_TRADES] == 2
    assert not a.sst.any() and a.gst[r.GS_UNREAL] == 0
    mark(a, {0: (BASE_TICKS - 11, BASE_TICKS - 9)})  # back up 0.10: today's P&L is +0.60
    assert a.gst[r.GS_UNREAL] == pytest.approx(0.6)
    for empty_side in ({0: (NO_PRICE, BASE_TICKS)}, {0: (BASE_TICKS, NO_PRICE)}):
        mark(a, empty_side)  # one side empty: no reference, the mark stays
        assert a.ist[0, r.IS_REF_TICKS] == 0 and a.ist[0, r.IS_MARK_TICKS] == BASE_TICKS - 10


# ---- random histories -----------------------------------------------------------------------

# (tick size, lot size, multiplier): 100 or 500 of currency per lot at BASE_TICKS, so one set of
# limits binds on every instrument.
SPECS = [(0.01, 1.0, 1.0), (0.25, 1.0, 0.2), (0.05, 10.0, 0.1), (0.1, 0.001, 100.0)]
INF = math.inf


def maybe(values):
    return st.sampled_from([INF, *values])


def mostly(usual, *rare):
    """One of ``usual`` (a value or a list) about 29 times in 30, else one of ``rare``.

    The rare values sit in the middle of the list: Hypothesis favours the ends of a range.
    """
    usual = usual if isinstance(usual, list) else [usual]
    half = usual * (15 * len(rare) // len(usual) + 1)
    return st.sampled_from(half + list(rare) + half)


@st.composite
def limits_and_history(draw):
    n_inst = draw(st.integers(1, 3))
    n_strat = draw(st.integers(1, 3))
    n_venues = draw(st.integers(1, 2))
    a = new_risk_arrays(n_inst, n_strat, n_venues)
    for i in range(n_inst):
        tick, lot, mult = draw(st.sampled_from(SPECS))
        per_lot = BASE_TICKS * tick * lot * mult
        row = a.ilim[i]
        row[r.IL_TICK_SIZE], row[r.IL_LOT_SIZE], row[r.IL_MULTIPLIER] = tick, lot, mult
        row[r.IL_TRADABLE] = draw(mostly(1.0, 0.0))
        row[r.IL_BLOCKED] = draw(mostly(0.0, 1.0))
        row[r.IL_ALLOWED] = draw(st.sampled_from([1.0, 1.0, 0.0]))
        row[r.IL_VENUE] = draw(mostly(list(range(n_venues)), n_venues))  # n_venues: no bucket
        row[r.IL_MAX_ORDER_QTY] = draw(maybe([8 * lot, 20 * lot]))
        row[r.IL_MAX_ORDER_NOTIONAL] = draw(maybe([5 * per_lot, 15 * per_lot]))
        row[r.IL_MAX_POSITION] = draw(maybe([10 * lot, 30 * lot]))
        row[r.IL_MAX_OPEN_ORDERS] = draw(maybe([0, 2, 5]))
        row[r.IL_COLLAR_PCT] = draw(maybe([0.005, 0.02]))
        row[r.IL_COLLAR_TICKS] = draw(maybe([50, 150]))
        row[r.IL_MAX_CONCENTRATION] = draw(maybe([0.05, 0.5]))
        row[r.IL_MARGIN] = draw(st.sampled_from([1.0, 0.25]))
        row[r.IL_REDUCE_ONLY] = draw(mostly(0.0, 1.0))
        if draw(mostly(False, True)):
            opens = draw(st.integers(0, 86_399))
            closes = (opens + draw(st.integers(1, 86_400))) % 86_400
            offset = draw(st.sampled_from([0, -18_000, 3600]))
            set_trading_hours(a.ilim, i, offset, [(opens, closes)])
    a.slim[:, r.SL_MAX_DAILY_LOSS] = [draw(maybe([1.0, 10.0])) for _ in range(n_strat)]
    # Strategy caps in lots of the smallest lot (0.001) up to the largest (10): on some
    # instruments they bind before the instrument's limits, on others after.
    a.slim[:, r.SL_MAX_ORDER_QTY] = [draw(maybe([0.008, 5.0, 80.0])) for _ in range(n_strat)]
    a.slim[:, r.SL_MAX_ORDER_NOTIONAL] = [draw(maybe([50.0, 5_000.0])) for _ in range(n_strat)]
    a.slim[:, r.SL_MAX_POSITION] = [draw(maybe([0.02, 12.0, 150.0])) for _ in range(n_strat)]
    a.glim[r.GL_MAX_GROSS] = draw(maybe([2_000.0, 10_000.0]))
    a.glim[r.GL_MAX_LEVERAGE] = draw(maybe([0.2, 2.0]))
    a.glim[r.GL_MAX_DAILY_LOSS] = draw(maybe([2.0, 20.0]))
    a.glim[r.GL_ALLOW_LIST] = draw(st.sampled_from([0.0, 0.0, 0.0, 1.0]))
    a.glim[r.GL_PDT_MAX_DAY_TRADES] = draw(maybe([0.0, 2.0]))
    a.gst[r.GS_EQUITY_SOD] = draw(st.sampled_from([0.0, 10_000.0, 100_000.0]))
    a.gst[r.GS_BUYING_POWER] = draw(maybe([300.0, 3_000.0]))
    now = NOW + draw(st.integers(0, DAY_NS))
    for row in range(a.buckets.shape[0]):
        if draw(st.booleans()):
            rate = draw(st.sampled_from([1.0, 20.0, 1000.0]))
            set_bucket(a.buckets, row, rate, draw(st.integers(1, 6)), now)
    first = ("mark", [(i, draw(st.integers(-20, 20)), 2) for i in range(n_inst)])
    ops = draw(st.lists(operation(n_inst, n_strat, n_venues), min_size=5, max_size=25))
    return a, now, [first, *ops] if draw(st.sampled_from([True] * 4 + [False])) else ops


def intent(n_inst: int, n_strat: int):
    """Mostly well-formed intents near the book; each field is sometimes malformed."""

    def build(
        strategy, instrument, side, order_type, lots, frac, off, kind, leaves, filled, odd,
        stop_off,
    ):  # fmt: skip
        spec_index = instrument if 0 <= instrument < n_inst else 0
        if kind != MODIFY and not odd:  # else a NEW intent carrying a modify's fields
            leaves = filled = 0
        return ("intent", strategy, instrument, side, order_type, lots + frac, off, kind,
                leaves, filled, spec_index, stop_off)  # fmt: skip

    return st.builds(
        build,
        mostly(list(range(n_strat)), -1, n_strat),
        mostly(list(range(n_inst)), -1, n_inst),
        mostly([BUY, SELL], 0, 2),
        mostly([LIMIT, LIMIT, MARKET, *ALL_TYPES], 8, -1),
        mostly([1, 2, 3, 5, 8, 13], 0, -1),
        mostly(0.0, 0.5, 1e-12, math.nan, math.inf, 1e16),
        mostly(list(range(-60, 61)), 0.3, -1e9, math.nan, math.inf),
        mostly([NEW, NEW, NEW, MODIFY], 1),
        st.integers(0, 10),
        st.integers(0, 6),
        mostly(False, True),
        # Stop prices near the book, none, or malformed (-BASE_TICKS: a stop of 0).
        mostly([*range(-60, 61, 5), math.nan], 0.3, -1e9, math.inf, -BASE_TICKS),
    )


def operation(n_inst: int, n_strat: int, n_venues: int):
    s = st.integers(0, n_strat - 1)
    i = st.integers(0, n_inst - 1)
    side = st.sampled_from([BUY, SELL])
    bid = st.integers(-200, 200)
    spread = st.sampled_from([1, 2, 3, 0, -1])  # 0: no bid, -1: no ask
    one = intent(n_inst, n_strat)
    return st.one_of(
        st.tuples(st.just("batch"), st.lists(one, min_size=2, max_size=12)),
        one,
        one,
        st.tuples(st.just("fill"), s, i, side, st.integers(0, 12), st.integers(-150, 150),
                  st.sampled_from([0.0, 1.25]), st.sampled_from([0, 1, 4, 20]), st.booleans()),
        st.tuples(st.just("release"), s, i, side, st.integers(-1, 12), st.booleans()),
        st.tuples(st.just("mark"), st.lists(st.tuples(i, bid, spread), max_size=3)),
        st.tuples(st.just("reset"), st.sampled_from([math.nan, 5_000.0, 1e6]),
                  st.integers(0, 3)),
        st.tuples(st.just("charge"), st.sampled_from(range(1 + n_strat + n_venues))),
        st.tuples(st.just("state"), st.sampled_from([r.STATE_ACTIVE, r.STATE_REDUCING,
                                                    r.STATE_ACTIVE, r.STATE_HALTED])),
        st.tuples(st.just("wait"), st.sampled_from([1, 10**6, 5 * 10**7, 10**9, -10**6])),
    )  # fmt: skip


def make_intent(a: RiskArrays, op) -> Intent:
    _, strategy, instrument, side, order_type, lots, off, kind, leaves, filled, k, stop_off = op
    tick, lot = a.ilim[k, r.IL_TICK_SIZE], a.ilim[k, r.IL_LOT_SIZE]
    price = (BASE_TICKS + off) * tick if isinstance(off, int) else off
    stop = (BASE_TICKS + stop_off) * tick if isinstance(stop_off, int) else stop_off
    return Intent(strategy, instrument, side, order_type, float(lots * lot), float(price), kind,
                  leaves, filled, float(stop))  # fmt: skip


def run_op(a: RiskArrays, now: int, op) -> int:
    """Apply one operation to the arrays and to a model built from them; compare; return now."""
    m = to_model(a)
    kind = op[0]
    if kind == "intent":
        it = make_intent(a, op)
        # check_order has no replaced fields: a NEW intent that carries them goes in a batch.
        plain_new = it.kind == NEW and it.replaced_leaves == it.replaced_filled == 0
        via = "single" if plain_new or it.kind == MODIFY else "batch"
        assert kernel_check(a, it, now, via) == m.check_with_stop(it, now), it
    elif kind == "batch":
        intents = [make_intent(a, x) for x in op[1]]
        rows = intents_array(intents)
        expected = [m.check_with_stop(it, now) for it in intents]
        passed = r.check_batch(*a, rows, len(rows), now)
        out = zip(rows["verdict"], rows["qty_lots"], rows["price_ticks"], rows["stop_ticks"],
                  strict=True)  # fmt: skip
        got = [(r.VERDICT_NAMES[v], int(lots), int(ticks), int(stop))
               for v, lots, ticks, stop in out]  # fmt: skip
        assert got == expected
        assert passed == sum(v == "PASS" for v, *_ in expected)
    elif kind == "fill":
        _, s, i, side, lots, off, fee, release, done = op
        ticks = BASE_TICKS + off
        assert fill(a, s, i, side, lots, ticks, fee, release, done) == m.fill(
            s, i, side, lots, ticks, fee, release, done
        )
    elif kind == "release":
        _, s, i, side, lots, done = op
        got = r.release_order(a.ilim, a.ist, a.pst, a.gst, s, i, side, lots, done)
        assert got == m.release(s, i, side, lots, done)
    elif kind == "mark":
        tops = {}
        for i, off, spread in op[1]:
            bid = BASE_TICKS + off
            tops[i] = (
                (bid, bid + spread) if spread > 0 else ((NO_PRICE, bid), (bid, NO_PRICE))[spread]
            )
        mark(a, tops)
        m.mark([(i, b, ask) for i, (b, ask) in tops.items()])
    elif kind == "reset":
        r.daily_reset(a.ist, a.sst, a.pst, a.gst, op[1], op[2])
        m.daily_reset(op[1], op[2])
    elif kind == "charge":
        keys = bucket_keys(a.slim.shape[0], a.buckets.shape[0] - 1 - a.slim.shape[0])
        assert r.charge_message(a.buckets, op[1], now) == m.charge(keys[op[1]], now)
    elif kind == "state":
        a.gst[r.GS_TRADING_STATE] = op[1]
        m.account.trading_state = op[1]
    elif kind == "wait":
        now += op[1]
    assert_same_state(a, m)
    return now


@settings(deadline=None, max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(limits_and_history())
def test_kernels_and_reference_agree_on_random_histories(case):
    a, now, ops = case
    validate_or_invalid_venue(a)
    for op in ops:
        now = run_op(a, now, op)


def validate_or_invalid_venue(a: RiskArrays) -> None:
    """The generated limits are valid but for venues without a bucket, which the kernel refuses
    as NOT_TRADABLE (``validate`` would stop the gate before that)."""
    n_venues = a.buckets.shape[0] - 1 - a.slim.shape[0]
    bad = a.ilim[:, r.IL_VENUE] >= n_venues
    tradable = a.ilim[:, r.IL_TRADABLE].copy()
    a.ilim[bad, r.IL_TRADABLE] = 0.0
    validate(a)
    a.ilim[:, r.IL_TRADABLE] = tradable


def test_a_zero_lot_or_tick_size_fails_a_check_instead_of_raising():
    a, it = base()
    a.ilim[0, r.IL_LOT_SIZE] = 0.0
    assert kernel_check(a, it, NOW, "single")[0] == "BAD_QUANTITY"
    a, it = base()
    a.ilim[0, r.IL_TICK_SIZE] = 0.0
    assert kernel_check(a, it, NOW, "batch")[0] == "BAD_PRICE"


def test_validate_names_what_is_wrong():
    a = new_risk_arrays(2, 1, 1)
    a.ilim[1, r.IL_TICK_SIZE] = 0.0
    with pytest.raises(ValueError, match="instrument 1: IL_TICK_SIZE must be > 0"):
        validate(a)
    a = new_risk_arrays(2, 1, 1)
    a.ilim[0, r.IL_TRADABLE] = 1.0
    a.ilim[0, r.IL_VENUE] = 1.0
    with pytest.raises(ValueError, match="IL_VENUE 1 has no pacing bucket"):
        validate(a)
    with pytest.raises(ValueError, match="at most 4"):
        set_trading_hours(a.ilim, 0, 0, [(0, 1)] * 5)
    with pytest.raises(ValueError, match="rate must be > 0"):
        set_bucket(a.buckets, 0, 0.0, 1, NOW)


# ---- no compilation after freeze ------------------------------------------------------------

FROZEN = textwrap.dedent(
    """
    import math
    import numpy as np
    import hotpath.jit as jit
    import hotpath.risk as r
    from hotpath.limits import new_risk_arrays, set_bucket, strategy_bucket, venue_bucket

    report = jit.freeze()
    before = jit.compiled_signatures()
    a = new_risk_arrays(3, 2, 1)
    a.ilim[:, r.IL_TRADABLE] = 1.0
    a.ilim[:, r.IL_TICK_SIZE] = 0.01
    set_bucket(a.buckets, venue_bucket(a, 0), 50.0, 100, 10**18)
    ids = np.zeros(3, dtype=np.int64)
    top = np.zeros((3, 4), dtype=np.int64)
    ids[:2] = (0, 1)
    top[:2] = ((9_999, 5, 10_001, 5), (4_999, 1, 5_001, 1))
    r.mark_to_market(a.ilim, a.ist, a.sst, a.pst, a.gst, ids, top, 2)
    r.daily_reset(a.ist, a.sst, a.pst, a.gst, 1e6, 0)
    r.daily_reset(a.ist, a.sst, a.pst, a.gst, math.nan, 0)
    now = 10**18 + 1
    assert r.check_order(*a, 0, 0, 1, 1, 10.0, 100.0, now) == (0, 10, 10_000)
    assert r.check_order(*a, 1, 1, -1, 0, 2.0, math.nan, now)[0] == 0
    assert r.check_modify(*a, 0, 0, 1, 1, 12.0, 100.01, now, 10, 0) == (0, 12, 10_001)
    assert r.check_order_extended(*a, 0, 0, 1, 3, 1.0, 100.0, 99.5, now) == (0, 1, 10_000, 9_950)
    assert r.check_order_extended(*a, 1, 1, -1, 6, 1.0, math.nan, math.nan, now)[0] == 0
    assert r.check_modify_extended(*a, 0, 0, 1, 3, 2.0, 100.0, 99.5, now, 1, 0)[0] == 0
    rows = np.zeros(64, dtype=r.INTENT)
    rows["side"] = 1
    rows["order_type"] = 1
    rows["qty"] = 1.0
    rows["price"] = 100.0
    assert r.check_batch(*a, rows, 64, now) == 64
    assert r.release_order(a.ilim, a.ist, a.pst, a.gst, 0, 0, 1, 5, True)
    assert r.apply_fill(a.ilim, a.ist, a.sst, a.pst, a.gst, 0, 0, 1, 5, 10_000, 0.5, 5, False)
    assert r.charge_message(a.buckets, strategy_bucket(0), now)
    assert jit.compiled_signatures() == before
    print("FROZEN_OK", report.format())
    """
)


def test_kernels_run_frozen_with_the_gates_argument_types():
    proc = subprocess.run(
        [sys.executable, "-c", FROZEN], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FROZEN_OK" in proc.stdout
