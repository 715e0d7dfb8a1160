"""Pre-trade risk kernels per order, from Python, against the plain-Python checks they replace.

Every order passes (all checks run and the state is updated): the limits are set but far from
binding, and the buckets hold more credit than the benchmark spends. Targets: one order through
``check_order`` including dispatch <= 2 µs; a batch of 64 through ``check_batch`` <= 100 ns per
order. Anchor measured in the same run: the plain-Python model in tests/risk_reference.py (the
same 30 checks and state updates).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import hotpath.risk as r
from hotpath.limits import RiskArrays, new_risk_arrays, set_bucket, validate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from risk_reference import LIMIT, Intent
from test_risk_kernel import to_model

BATCH = 64
NOW = 1_700_000_000 * 10**9
N_INSTRUMENTS = 8
N_STRATEGIES = 4


def _arrays() -> RiskArrays:
    """Eight instruments (tick 0.01) on one venue, four strategies, every limit on and far off."""
    a = new_risk_arrays(N_INSTRUMENTS, N_STRATEGIES, 1)
    ilim = a.ilim
    ilim[:, r.IL_TRADABLE] = 1.0
    ilim[:, r.IL_ALLOWED] = 1.0
    ilim[:, r.IL_TICK_SIZE] = 0.01
    ilim[:, r.IL_MAX_ORDER_QTY] = 1e6
    ilim[:, r.IL_MAX_ORDER_NOTIONAL] = 1e9
    ilim[:, r.IL_MAX_POSITION] = 1e13
    ilim[:, r.IL_MAX_OPEN_ORDERS] = 1e12
    ilim[:, r.IL_COLLAR_PCT] = 0.05
    ilim[:, r.IL_COLLAR_TICKS] = 1000
    ilim[:, r.IL_MAX_CONCENTRATION] = 1e12
    ilim[:, r.IL_N_WINDOWS] = 1
    ilim[:, r.IL_WINDOWS + 1] = 86_400  # one window: the whole day
    a.slim[:, r.SL_MAX_DAILY_LOSS] = 1e6
    a.glim[:] = (1e18, 1e12, 1e6, 1.0, 3.0, 25_000.0)
    a.gst[r.GS_BUYING_POWER] = 1e18
    for row in range(a.buckets.shape[0]):
        set_bucket(a.buckets, row, 1e9, 10**17, NOW)  # 1 ns per message: refill and take run
    validate(a)
    ids = np.arange(N_INSTRUMENTS, dtype=np.int64)
    top = np.tile(np.array([9_999, 5, 10_001, 5], dtype=np.int64), (N_INSTRUMENTS, 1))
    r.mark_to_market(a.ilim, a.ist, a.sst, a.pst, a.gst, ids, top, N_INSTRUMENTS)
    r.daily_reset(a.ist, a.sst, a.pst, a.gst, 1e6, 0)
    return a


def _per_order_ns(benchmark, per_round: int) -> None:
    benchmark.extra_info["messages_per_round"] = per_round
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["ns_per_order"] = benchmark.stats.stats.median * 1e9 / per_round


def test_risk_check_order_single(benchmark):
    """One new limit order through check_order, dispatch from Python included (<= 2 µs)."""
    a = _arrays()
    check = r.check_order
    now = NOW + 1

    def go():
        return check(*a, 1, 3, 1, 1, 10.0, 100.02, now)

    assert go() == (r.PASS, 10, 10_002)
    benchmark.extra_info["target_ns"] = 2000
    benchmark(go)
    _per_order_ns(benchmark, 1)


def test_risk_check_batch_64(benchmark):
    """64 intents (mixed strategies, instruments, sides, types) through check_batch (<= 100 ns
    per order)."""
    a = _arrays()
    rows = np.zeros(BATCH, dtype=r.INTENT)
    k = np.arange(BATCH)
    rows["strategy_id"] = k % N_STRATEGIES
    rows["instrument_id"] = k % N_INSTRUMENTS
    rows["side"] = np.where(k % 2, r.SIDE_SELL, r.SIDE_BUY)
    rows["order_type"] = np.where(k % 8 == 7, r.MARKET, r.LIMIT)
    rows["qty"] = 1.0 + k % 5
    rows["price"] = (9_990 + k % 21) * 0.01
    batch = r.check_batch
    now = NOW + 1

    def go():
        return batch(*a, rows, BATCH, now)

    assert go() == BATCH
    benchmark.extra_info["target_ns"] = 100
    benchmark(go)
    _per_order_ns(benchmark, BATCH)


def test_anchor_reference_model_check(benchmark):
    """Anchor: the plain-Python model of the same 30 checks and state updates, one order."""
    model = to_model(_arrays())
    it = Intent(strategy=1, instrument=3, side=1, order_type=LIMIT, qty=10.0, price=100.02)
    check = model.check
    now = NOW + 1

    def go():
        return check(it, now)

    assert go() == ("PASS", 10, 10_002)
    benchmark(go)
    _per_order_ns(benchmark, 1)
