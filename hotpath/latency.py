"""Binning latency samples into histograms: the kernel behind ``engine.metrics``' fold.

``bin_samples(samples, fine, fine_edges, prom, prom_edges)`` adds each sample (negative ones
count as 0) to ``fine[i]`` where ``i`` is the first ``fine_edges[i] >= sample`` (``len(fine_edges)``
if none: ``fine`` has one more bin than there are edges), likewise to ``prom``, and returns the
samples' sum and max. That is ``np.searchsorted(edges, samples, side="left")`` and
``np.bincount`` without their temporaries: numpy's fold of a full 65,536-sample latency ring
allocated ~2 MiB of them and took 1.5-3.5 ms (~50 ns a sample), a stall of the loop every fold
under a 100k msgs/s feed; glibc then gave the memory back and took page faults for it at the
next fold.

Consecutive equal samples are binned once and counted: the market-data stage records one delta
per row, and every row of one socket read has the same ``ts_recv`` and ``ts_book``, so a read
of 100 rows costs one search, not 100.
"""

from __future__ import annotations

import numpy as np
from numba import types

from hotpath.jit import entry, kernel

_I64 = types.int64[::1]


@kernel([types.UniTuple(types.int64, 2)(_I64, _I64, _I64, _I64, _I64)], nogil=True)
def bin_samples(samples, fine, fine_edges, prom, prom_edges):  # pragma: no cover - compiled
    total = 0
    top = 0
    prev = -1
    run = 0
    fine_i = 0
    prom_i = 0
    for k in range(samples.shape[0]):
        x = samples[k]
        if x < 0:
            x = 0
        if x == prev:
            run += 1
            continue
        if run:
            fine[fine_i] += run
            prom[prom_i] += run
            total += prev * run
        fine_i = np.searchsorted(fine_edges, x)
        prom_i = np.searchsorted(prom_edges, x)
        prev = x
        run = 1
        if x > top:
            top = x
    if run:
        fine[fine_i] += run
        prom[prom_i] += run
        total += prev * run
    return total, top


#: ``bin_samples``' compiled entry point, for the engine's own int64 arrays (see ``entry``).
BIN_SAMPLES = entry(bin_samples)
