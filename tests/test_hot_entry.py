"""Kernel entry points (``hotpath.jit.entry``) and page-resident buffers
(``hotpath.layouts.resident_zeros``): the hot path's two ways of not paying for things twice."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from book_reference import ASK, BID, SET, Delta, to_deltas
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

import hotpath.risk as rk
from engine.book import BookStore
from hotpath.jit import entry
from hotpath.layouts import PAGE, resident_zeros
from hotpath.limits import new_risk_arrays


def test_entry_of_a_single_signature_kernel_is_its_machine_code() -> None:
    fast = entry(rk.check_order)
    assert fast is not rk.check_order
    assert fast is next(iter(rk.check_order.overloads.values())).entry_point


def test_entry_of_a_kernel_with_several_signatures_is_the_dispatcher() -> None:
    @njit(["int64(int64)", "float64(float64)"])
    def twice(x):  # pragma: no cover
        return x * 2

    assert entry(twice) is twice
    assert entry(twice)(3) == 6 and entry(twice)(1.5) == 3.0


def _arrays():
    a = new_risk_arrays(3, 2, 1)
    a.ilim[:, rk.IL_TRADABLE] = 1.0
    a.ilim[:, rk.IL_TICK_SIZE] = 0.01
    a.ist[:, rk.IS_MARK_TICKS] = 10_000.0
    return a


@settings(max_examples=300, deadline=None)
@given(
    strategy_id=st.integers(-1, 3),
    instrument_id=st.integers(-1, 4),
    side=st.sampled_from([1, -1, 0]),
    order_type=st.integers(0, 8),
    qty=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(0, 10**6)),
    price=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(100.0)),
    now=st.integers(0, 2**62),
)
def test_entry_point_checks_orders_exactly_as_the_dispatcher(
    strategy_id, instrument_id, side, order_type, qty, price, now
) -> None:
    """Same verdict, lots and ticks, and the same limit state afterwards, for any order, valid
    or not (the entry point only skips the argument typing the dispatcher does)."""
    by_dispatch, by_entry = _arrays(), _arrays()
    args = (strategy_id, instrument_id, side, order_type, float(qty), price, now)
    want = rk.check_order(*by_dispatch, *args)
    got = entry(rk.check_order)(*by_entry, *args)
    assert got == want
    for x, y in zip(by_dispatch, by_entry, strict=True):
        assert np.array_equal(x, y, equal_nan=True)


def _deltas(seed: int, n: int) -> list[Delta]:
    rng = np.random.default_rng(seed)
    return [
        Delta(
            int(rng.integers(0, 4)),
            SET,
            BID if rng.random() < 0.5 else ASK,
            int(1000 + rng.integers(-20, 20)),
            int(rng.integers(0, 5)),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", range(3))
def test_book_store_refuses_a_strided_batch_instead_of_misreading_it(seed: int) -> None:
    """Only a contiguous BOOK_DELTA batch enters the kernel directly (the entry point would read
    a strided one as if it were contiguous); anything else meets the dispatcher's type check and
    the books are left as they were."""
    batch = to_deltas(_deltas(seed, 300))
    store = BookStore(4, 64)
    spaced = np.zeros(2 * len(batch), dtype=batch.dtype)
    spaced[::2] = batch
    with pytest.raises(TypeError, match="No matching definition"):
        store.apply(spaced[::2], 7)
    assert not store.levels.any() and (spaced["ts_book"] == 0).all()
    with pytest.raises(TypeError):
        store.apply(np.zeros(4, dtype=np.dtype([("x", "i8")] * 1 + [("y", "V48")])), 7)
    changed = store.apply(batch, 7)  # the same rows, contiguous
    assert changed and (batch["ts_book"] == 7).all() and store.levels.any()


def test_resident_zeros_are_zeros_of_the_shape_and_dtype() -> None:
    a = resident_zeros((3, 5000), np.int64)
    assert a.shape == (3, 5000) and a.dtype == np.int64 and not a.any()
    rec = resident_zeros(1000, np.dtype([("a", "i8"), ("b", "i4")], align=True))
    assert rec.dtype.names == ("a", "b") and not rec["a"].any() and not rec["b"].any()
    assert resident_zeros(0, np.float64).shape == (0,)
    assert math.isclose(resident_zeros(2, np.float64).sum(), 0.0)


_RSS_PROBE = """
import numpy as np
from hotpath.layouts import resident_zeros

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

size = 64 * 1024 * 1024
before = rss_kib()
lazy = np.zeros(size, dtype=np.uint8)
lazy_growth = rss_kib() - before
before = rss_kib()
resident = resident_zeros(size, np.uint8)
print(lazy_growth * 1024, (rss_kib() - before) * 1024, size)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_resident_zeros_are_mapped_at_allocation_and_np_zeros_are_not() -> None:
    """In a fresh interpreter (a test session's heap may already hold freed, mapped memory
    that a new array reuses): the resident buffer's pages are all mapped at once, the
    ``np.zeros`` control's are not until written."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE], capture_output=True, text=True, check=True,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout  # fmt: skip
    lazy_growth, resident_growth, size = (int(x) for x in out.split())
    assert resident_growth >= 0.9 * size  # every page mapped now
    assert lazy_growth < 0.1 * size  # the control: nothing mapped until written
    assert size % PAGE == 0
