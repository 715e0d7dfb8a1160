"""L2 order books as tick-indexed arrays, updated a batch of deltas per call.

State per instrument ``i``: ``bid_sz[i, k]`` / ``ask_sz[i, k]`` hold the size (lots) at tick
``base[i] + k`` over a window of ``W`` ticks; ``best_bid[i]`` / ``best_ask[i]`` hold the window
index of the best level or -1. The window is placed around the first price seen.

This first version applies the price-level form (``SET``, size 0 deletes) and ``CLEAR``; deltas
outside the window or in other forms are counted as skipped and left to the caller.
"""

from __future__ import annotations

import numpy as np
from numba import njit

UNSET = np.iinfo(np.int64).min  # also "no price" in ``top`` (engine.messages.NO_PRICE)
ACTION_SET = 0
ACTION_CLEAR = 4
SIDE_BID = 0


def new_book_state(n_instruments: int, window: int) -> tuple[np.ndarray, ...]:
    """Preallocated arrays for ``n_instruments`` books of ``window`` ticks each."""
    bid_sz = np.zeros((n_instruments, window), dtype=np.int64)
    ask_sz = np.zeros((n_instruments, window), dtype=np.int64)
    base = np.full(n_instruments, UNSET, dtype=np.int64)
    best_bid = np.full(n_instruments, -1, dtype=np.int64)
    best_ask = np.full(n_instruments, -1, dtype=np.int64)
    return bid_sz, ask_sz, base, best_bid, best_ask


@njit(cache=True)
def apply_deltas(
    deltas, bid_sz, ask_sz, base, best_bid, best_ask, changed, out_ids, out_top, now
):  # pragma: no cover
    """Apply a batch of book deltas; stamps ``ts_book`` with ``now``.

    Every instrument whose best bid or ask (price or size) may have changed is listed once in
    ``out_ids[:n]``, with its top of book in ``out_top[k] = (bid ticks, bid lots, ask ticks,
    ask lots)`` (``UNSET`` and 0 for an empty side); ``changed`` is scratch (all 0 between
    calls). Returns ``(n, skipped, crossed)``: instruments listed, deltas not applied, and
    instruments whose book is crossed after the batch.
    """
    window = bid_sz.shape[1]
    skipped = 0
    for k in range(deltas.shape[0]):
        d = deltas[k]
        d.ts_book = now
        i = d.instrument_id
        if d.action == ACTION_CLEAR:
            bid_sz[i, :] = 0
            ask_sz[i, :] = 0
            best_bid[i] = -1
            best_ask[i] = -1
            changed[i] = 1
            continue
        if d.action != ACTION_SET:
            skipped += 1
            continue
        if base[i] == UNSET:
            base[i] = d.price - window // 2
        idx = d.price - base[i]
        if idx < 0 or idx >= window:
            skipped += 1
            continue
        size = d.size
        if d.side == SIDE_BID:
            bid_sz[i, idx] = size
            b = best_bid[i]
            if size > 0:
                if idx >= b:
                    best_bid[i] = idx
                    changed[i] = 1
            elif idx == b:
                j = idx - 1
                while j >= 0 and bid_sz[i, j] == 0:
                    j -= 1
                best_bid[i] = j
                changed[i] = 1
        else:
            ask_sz[i, idx] = size
            a = best_ask[i]
            if size > 0:
                if a < 0 or idx <= a:
                    best_ask[i] = idx
                    changed[i] = 1
            elif idx == a:
                j = idx + 1
                while j < window and ask_sz[i, j] == 0:
                    j += 1
                best_ask[i] = j if j < window else -1
                changed[i] = 1
    n = 0
    crossed = 0
    for i in range(changed.shape[0]):
        if not changed[i]:
            continue
        changed[i] = 0
        out_ids[n] = i
        b = best_bid[i]
        a = best_ask[i]
        if b >= 0:
            out_top[n, 0] = base[i] + b
            out_top[n, 1] = bid_sz[i, b]
        else:
            out_top[n, 0] = UNSET
            out_top[n, 1] = 0
        if a >= 0:
            out_top[n, 2] = base[i] + a
            out_top[n, 3] = ask_sz[i, a]
        else:
            out_top[n, 2] = UNSET
            out_top[n, 3] = 0
        if b >= 0 and a >= 0 and b >= a:
            crossed += 1
        n += 1
    return n, skipped, crossed


@njit(cache=True)
def depth_levels(sizes, best, base, n, bid, out_price, out_size):  # pragma: no cover
    """Write up to ``n`` non-empty levels from ``best`` outwards; returns how many."""
    window = sizes.shape[0]
    count = 0
    j = best
    step = -1 if bid else 1
    while j >= 0 and j < window and count < n:
        if sizes[j] > 0:
            out_price[count] = base + j
            out_size[count] = sizes[j]
            count += 1
        j += step
    return count
