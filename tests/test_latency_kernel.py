"""hotpath.latency.bin_samples against a plain-Python reference (bisect), and the fold it drives."""

from __future__ import annotations

import bisect

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.metrics import _FINE_EDGES, _PROM_EDGES_NS, StageLatency
from hotpath.latency import BIN_SAMPLES, bin_samples


def reference(
    samples: list[int], fine_edges: list[int], prom_edges: list[int]
) -> tuple[list[int], list[int], int, int]:
    """What binning means, one sample at a time: the first edge >= the sample (negative: 0)."""
    fine = [0] * (len(fine_edges) + 1)
    prom = [0] * (len(prom_edges) + 1)
    total = top = 0
    for x in samples:
        x = max(x, 0)
        fine[bisect.bisect_left(fine_edges, x)] += 1
        prom[bisect.bisect_left(prom_edges, x)] += 1
        total += x
        top = max(top, x)
    return fine, prom, total, top


# Runs of equal values (one socket read's rows share a delta), negatives, edge values exactly,
# values beyond the last edge.
_value = st.one_of(
    st.integers(-5_000, 200_000_000_000),
    st.sampled_from([0, 1, 999, 1000, 1001, *_PROM_EDGES_NS.tolist()[:5], int(_FINE_EDGES[-1])]),
)
_samples = st.lists(st.tuples(_value, st.integers(1, 40)), max_size=60).map(
    lambda runs: [v for v, n in runs for _ in range(n)]
)


@settings(max_examples=300, deadline=None)
@given(samples=_samples, split=st.integers(0, 1000))
def test_bin_samples_matches_the_reference_on_the_engine_edges(samples, split):
    fine = np.zeros(len(_FINE_EDGES) + 1, np.int64)
    prom = np.zeros(len(_PROM_EDGES_NS) + 1, np.int64)
    arr = np.array(samples, np.int64)
    cut = min(split, len(arr))  # binned in two calls, as a wrapped ring is: counts accumulate
    t1, m1 = bin_samples(arr[:cut].copy(), fine, _FINE_EDGES, prom, _PROM_EDGES_NS)
    t2, m2 = BIN_SAMPLES(arr[cut:].copy(), fine, _FINE_EDGES, prom, _PROM_EDGES_NS)
    want_fine, want_prom, want_total, want_top = reference(
        samples, _FINE_EDGES.tolist(), _PROM_EDGES_NS.tolist()
    )
    assert fine.tolist() == want_fine
    assert prom.tolist() == want_prom
    assert t1 + t2 == want_total
    assert max(m1, m2) == want_top


@settings(max_examples=200, deadline=None)
@given(
    samples=st.lists(st.integers(-10, 10_000), max_size=200),
    fine_edges=st.lists(st.integers(0, 10_000), min_size=1, max_size=30, unique=True),
    prom_edges=st.lists(st.integers(0, 10_000), min_size=1, max_size=8, unique=True),
)
def test_bin_samples_matches_the_reference_on_any_edges(samples, fine_edges, prom_edges):
    fine_edges, prom_edges = sorted(fine_edges), sorted(prom_edges)
    fine = np.zeros(len(fine_edges) + 1, np.int64)
    prom = np.zeros(len(prom_edges) + 1, np.int64)
    total, top = bin_samples(
        np.array(samples, np.int64), fine, np.array(fine_edges, np.int64), prom,
        np.array(prom_edges, np.int64),
    )  # fmt: skip
    want = reference(samples, fine_edges, prom_edges)
    assert (fine.tolist(), prom.tolist(), total, top) == want


def test_a_wrapped_ring_folds_both_pieces_without_losing_a_sample():
    stage = StageLatency("feed_to_book", 8)
    first = np.array([5, 5, 5, 7, 7, 7], np.int64)
    stage.record_many(first)
    stage.fold()
    second = np.array([1000, 1000, 1000, 2, 2, 2], np.int64)  # starts at slot 6: wraps
    stage.record_many(second)
    stage.fold()
    everything = np.concatenate((first, second)).tolist()
    want_fine, want_prom, want_total, want_top = reference(
        everything, _FINE_EDGES.tolist(), _PROM_EDGES_NS.tolist()
    )
    assert stage.fine.tolist() == want_fine
    assert stage.prom_counts.tolist() == want_prom
    assert (stage.sum_ns, stage.max, stage.count) == (want_total, want_top, 12)
