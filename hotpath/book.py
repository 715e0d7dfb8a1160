"""L2 order books as tick-indexed arrays, updated a batch of deltas per kernel call.

Layout, per instrument ``i`` and side ``s`` (0 bid, 1 ask), all ``int64``:

* ``levels[i, s, k]``: lots at tick ``meta[i, BASE] + k``, over a window of ``W`` ticks around the
  market (as in hftbacktest's tick-indexed depth). The common case, an update inside the window,
  is one store and a compare.
* ``ovf_px[i, s, :m]`` / ``ovf_sz[i, s, :m]`` with ``m = meta[i, NOVF + s]``: the levels outside
  the window, sorted best first (bids descending, asks ascending). Window plus overflow hold every
  level, so best and depth merge the two and no level is ever lost when the window moves.
* ``rows[i, s, r] = (ticks, lots, mm_id)``: IB's position-based depth rows (at most ``R``). Row
  operations update the price levels above by the row's size, so the level view of an IB book is
  the sum of the rows at each price.
* ``meta[i, :]``: per-instrument scalars, columns below.

Window policy. An empty book places its window around the first price it gets. A level outside
the window goes to the overflow; then, if the best bid or ask is outside the window, the window is
re-centred: on the mid when both sides fit in half a window, else on the side just updated unless
one side's best is still inside (a book whose spread is wider than the window keeps the side it
holds rather than thrash). Re-centring merges window and overflow best first and deals the levels
out again, so levels leaving the window spill to the overflow and come back when it returns. A
re-centre whose spill would not fit in the overflow is not done (correctness does not depend on
it). A delta that needs a new overflow slot when the overflow is full stops the kernel before it
changes anything: the caller grows the overflow and calls again from that delta.

IB row semantics (``updateMktDepth`` / ``updateMktDepthL2``, operation 0/1/2), per side:
``INSERT`` at ``position`` p (0 <= p <= rows held) shifts rows p.. down by one, and a row pushed
past ``R`` falls off (an insert at p == R with R rows held falls off at once); ``UPDATE`` replaces
row p (p < rows held); ``DELETE`` removes row p (p < rows held) and shifts the rows below up.
``CLEAR`` empties both sides, levels and rows. Sides are ``BookSide`` (0 bid, 1 ask): IB's
own side numbers (0 ask, 1 bid) are mapped by the adapter. One form per instrument: a ``SET`` on
an instrument fed by rows overrides the level the rows sum to.

Invalid deltas are counted as skipped and change nothing: instrument id out of range, unknown
action, side not 0/1, negative size, price beyond +-2**62 ticks, row position out of range.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, types

from hotpath import layouts
from hotpath.jit import kernel

NO_PRICE = layouts.NO_PRICE

# Mirrors engine.messages.DeltaAction and BookSide (hotpath does not import engine).
ACTION_SET = 0
ACTION_INSERT = 1
ACTION_UPDATE = 2
ACTION_DELETE = 3
ACTION_CLEAR = 4
SIDE_BID = 0
SIDE_ASK = 1

PRICE_LIMIT = 1 << 62
"""Prices are valid strictly inside +-PRICE_LIMIT ticks: differences of two never overflow."""

# Columns of ``meta``. ``+ s`` columns hold the bid at ``s == 0`` and the ask at ``s == 1``.
BASE = 0  # tick of window index 0
BEST = 1  # + s: window index of the side's best level, -1 when the window holds none
FAR = 3  # + s: no level of the side beyond this index (bids: below it; asks: above it)
NOVF = 5  # + s: levels in the overflow
NROWS = 7  # + s: IB rows held
TOP = 9  # .. 12: top of book last reported (bid ticks, bid lots, ask ticks, ask lots)
TOUCHED = 13  # 1 while the instrument is in the batch's list of instruments to look at
N_META = 14

# What became of one delta in the kernel loop.
_OK = 0
_INVALID = 1
_STOP = 2


def new_book_state(
    n_instruments: int, window: int, overflow: int, max_rows: int
) -> tuple[np.ndarray, ...]:
    """Preallocated ``(levels, ovf_px, ovf_sz, rows, meta)`` for ``n_instruments`` empty books."""
    if window < 4 or overflow < 1 or max_rows < 1:
        raise ValueError(
            f"book arrays: window must be >= 4 ticks, overflow and max_rows >= 1; got "
            f"window={window}, overflow={overflow}, max_rows={max_rows}"
        )
    levels = layouts.resident_zeros((n_instruments, 2, window), dtype=np.int64)
    ovf_px = layouts.resident_zeros((n_instruments, 2, overflow), dtype=np.int64)
    ovf_sz = layouts.resident_zeros((n_instruments, 2, overflow), dtype=np.int64)
    rows = layouts.resident_zeros((n_instruments, 2, max_rows, 3), dtype=np.int64)
    meta = np.zeros((n_instruments, N_META), dtype=np.int64)
    meta[:, BEST : BEST + 2] = -1
    meta[:, TOP] = NO_PRICE
    meta[:, TOP + 2] = NO_PRICE
    return levels, ovf_px, ovf_sz, rows, meta


def grow_overflow(
    ovf_px: np.ndarray, ovf_sz: np.ndarray, capacity: int
) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the overflow arrays with room for ``capacity`` levels per side."""
    n, _, old = ovf_px.shape
    px = layouts.resident_zeros((n, 2, capacity), dtype=np.int64)
    sz = layouts.resident_zeros((n, 2, capacity), dtype=np.int64)
    px[:, :, :old] = ovf_px
    sz[:, :, :old] = ovf_sz
    return px, sz


# ---- helpers (compiled into the kernels that call them) ------------------------------------
#
# Compiled without Numba's reference counting (the ``_nrt=False`` target option): they allocate
# nothing and only borrow the kernel's arrays. With it, every call would pay an atomic increment
# and decrement per array argument, several times the work of a level update (an IB row cost
# 575 ns with it, 80 without). The kernels themselves count references once per call.

_helper = njit(_nrt=False)
_helper_inline = njit(_nrt=False, inline="always")


@_helper_inline
def _better(s, x, y):  # pragma: no cover
    """Is price ``x`` better than ``y`` on side ``s`` (higher bid, lower ask)?"""
    return x > y if s == SIDE_BID else x < y


@_helper_inline
def _valid_price(p):  # pragma: no cover
    return -PRICE_LIMIT < p < PRICE_LIMIT


@_helper_inline
def _book_empty(meta, i):  # pragma: no cover
    return (
        meta[i, BEST] < 0
        and meta[i, BEST + 1] < 0
        and meta[i, NOVF] == 0
        and meta[i, NOVF + 1] == 0
    )


@_helper_inline
def _window_set(levels, meta, i, s, k, q):  # pragma: no cover
    """Set lots ``q`` at window index ``k``; returns True if that emptied the side's window."""
    levels[i, s, k] = q
    b = meta[i, BEST + s]
    if q > 0:
        if b < 0:
            meta[i, BEST + s] = k
            meta[i, FAR + s] = k
        elif s == SIDE_BID:
            if k > b:
                meta[i, BEST] = k
            elif k < meta[i, FAR]:
                meta[i, FAR] = k
        elif k < b:
            meta[i, BEST + 1] = k
        elif k > meta[i, FAR + 1]:
            meta[i, FAR + 1] = k
        return False
    if k != b:
        return False
    # The best level went: the next one outwards (there is none beyond FAR).
    far = meta[i, FAR + s]
    if s == SIDE_BID:
        j = k - 1
        while j >= far and levels[i, s, j] == 0:
            j -= 1
        if j >= far:
            meta[i, BEST] = j
            return False
    else:
        j = k + 1
        while j <= far and levels[i, s, j] == 0:
            j += 1
        if j <= far:
            meta[i, BEST + 1] = j
            return False
    meta[i, BEST + s] = -1
    return True


@_helper
def _ovf_find(ovf_px, i, s, m, p):  # pragma: no cover
    """Index of ``p`` in the side's overflow (first ``m`` entries), or where it would go."""
    lo = 0
    hi = m
    while lo < hi:
        mid = (lo + hi) >> 1
        if _better(s, ovf_px[i, s, mid], p):
            lo = mid + 1
        else:
            hi = mid
    return lo


@_helper
def _ovf_set(ovf_px, ovf_sz, meta, i, s, p, q):  # pragma: no cover
    """Set lots ``q`` at ``p`` in the overflow; False (and no change) if it has no free slot."""
    m = meta[i, NOVF + s]
    j = _ovf_find(ovf_px, i, s, m, p)
    if j < m and ovf_px[i, s, j] == p:
        if q > 0:
            ovf_sz[i, s, j] = q
        else:
            for t in range(j, m - 1):
                ovf_px[i, s, t] = ovf_px[i, s, t + 1]
                ovf_sz[i, s, t] = ovf_sz[i, s, t + 1]
            meta[i, NOVF + s] = m - 1
        return True
    if q == 0:
        return True
    if m == ovf_px.shape[2]:
        return False
    for t in range(m, j, -1):
        ovf_px[i, s, t] = ovf_px[i, s, t - 1]
        ovf_sz[i, s, t] = ovf_sz[i, s, t - 1]
    ovf_px[i, s, j] = p
    ovf_sz[i, s, j] = q
    meta[i, NOVF + s] = m + 1
    return True


@_helper
def _level_get(levels, ovf_px, ovf_sz, meta, i, s, p):  # pragma: no cover
    k = p - meta[i, BASE]
    if 0 <= k < levels.shape[2]:
        return levels[i, s, k]
    m = meta[i, NOVF + s]
    j = _ovf_find(ovf_px, i, s, m, p)
    if j < m and ovf_px[i, s, j] == p:
        return ovf_sz[i, s, j]
    return 0


@_helper
def _needs_room(levels, ovf_px, meta, i, s, p, q):  # pragma: no cover
    """Would setting ``q > 0`` lots at ``p`` need an overflow slot that is not free?"""
    if q <= 0 or _book_empty(meta, i):
        return False
    k = p - meta[i, BASE]
    if 0 <= k < levels.shape[2]:
        return False
    m = meta[i, NOVF + s]
    if m < ovf_px.shape[2]:
        return False
    j = _ovf_find(ovf_px, i, s, m, p)
    return not (j < m and ovf_px[i, s, j] == p)


@_helper
def _set_level(levels, ovf_px, ovf_sz, meta, i, s, p, q):  # pragma: no cover
    """Set lots at ``p`` in the window or the overflow (callers check room first)."""
    w = levels.shape[2]
    if q > 0 and _book_empty(meta, i):
        meta[i, BASE] = p - w // 2
    k = p - meta[i, BASE]
    if 0 <= k < w:
        _window_set(levels, meta, i, s, k, q)
    else:
        _ovf_set(ovf_px, ovf_sz, meta, i, s, p, q)


@_helper
def _level_add(levels, ovf_px, ovf_sz, meta, i, s, p, dq):  # pragma: no cover
    if dq == 0:
        return
    q = _level_get(levels, ovf_px, ovf_sz, meta, i, s, p) + dq
    # A row removing more than its level holds only happens if SET and rows were mixed.
    _set_level(levels, ovf_px, ovf_sz, meta, i, s, p, q if q > 0 else 0)


@_helper
def _best(levels, ovf_px, ovf_sz, meta, i, s):  # pragma: no cover
    """(ticks, lots) of side ``s``'s best level; (NO_PRICE, 0) if the side is empty."""
    k = meta[i, BEST + s]
    m = meta[i, NOVF + s]
    if k >= 0:
        p = meta[i, BASE] + k
        if m > 0 and _better(s, ovf_px[i, s, 0], p):
            return ovf_px[i, s, 0], ovf_sz[i, s, 0]
        return p, levels[i, s, k]
    if m > 0:
        return ovf_px[i, s, 0], ovf_sz[i, s, 0]
    return NO_PRICE, 0


@_helper
def _merge(levels, ovf_px, ovf_sz, meta, i, s, n, out_px, out_sz):  # pragma: no cover
    """Write up to ``n`` levels of side ``s``, best first, from window and overflow."""
    m = meta[i, NOVF + s]
    base = meta[i, BASE]
    count = 0
    j = 0
    k = meta[i, BEST + s]
    if k >= 0:
        far = meta[i, FAR + s]
        step = -1 if s == SIDE_BID else 1
        while count < n and (k >= far if s == SIDE_BID else k <= far):
            q = levels[i, s, k]
            if q > 0:
                p = base + k
                while count < n and j < m and _better(s, ovf_px[i, s, j], p):
                    out_px[count] = ovf_px[i, s, j]
                    out_sz[count] = ovf_sz[i, s, j]
                    count += 1
                    j += 1
                if count < n:
                    out_px[count] = p
                    out_sz[count] = q
                    count += 1
            k += step
    while count < n and j < m:
        out_px[count] = ovf_px[i, s, j]
        out_sz[count] = ovf_sz[i, s, j]
        count += 1
        j += 1
    return count


@_helper
def _recentre(levels, ovf_px, ovf_sz, meta, scratch, i, new_base):  # pragma: no cover
    """Move the window to start at ``new_base``; False (and no change) if the spill won't fit."""
    w = levels.shape[2]
    cap = ovf_px.shape[2]
    base = meta[i, BASE]
    for s in range(2):
        outside = 0
        for j in range(meta[i, NOVF + s]):
            if not 0 <= ovf_px[i, s, j] - new_base < w:
                outside += 1
        k = meta[i, BEST + s]
        if k >= 0:
            lo = meta[i, FAR + s] if s == SIDE_BID else k
            hi = k if s == SIDE_BID else meta[i, FAR + s]
            for k in range(lo, hi + 1):
                if levels[i, s, k] > 0 and not 0 <= base + k - new_base < w:
                    outside += 1
        if outside > cap:
            return False
    for s in range(2):
        m = _merge(levels, ovf_px, ovf_sz, meta, i, s, w + cap, scratch[0], scratch[1])
        k = meta[i, BEST + s]
        if k >= 0:
            lo = meta[i, FAR + s] if s == SIDE_BID else k
            hi = k if s == SIDE_BID else meta[i, FAR + s]
            levels[i, s, lo : hi + 1] = 0
        meta[i, BEST + s] = -1
        n_ovf = 0
        for t in range(m):
            p = scratch[0, t]
            k = p - new_base
            if 0 <= k < w:
                _window_set(levels, meta, i, s, k, scratch[1, t])
            else:
                ovf_px[i, s, n_ovf] = p
                ovf_sz[i, s, n_ovf] = scratch[1, t]
                n_ovf += 1
        meta[i, NOVF + s] = n_ovf
    meta[i, BASE] = new_base
    return True


@_helper
def _settle(levels, ovf_px, ovf_sz, meta, scratch, i, s):  # pragma: no cover
    """Re-centre the window if the best bid or ask is outside it (see the module docstring)."""
    w = levels.shape[2]
    base = meta[i, BASE]
    b = _best(levels, ovf_px, ovf_sz, meta, i, SIDE_BID)[0]
    a = _best(levels, ovf_px, ovf_sz, meta, i, SIDE_ASK)[0]
    b_in = b != NO_PRICE and 0 <= b - base < w
    a_in = a != NO_PRICE and 0 <= a - base < w
    if (b == NO_PRICE or b_in) and (a == NO_PRICE or a_in):
        return
    if b != NO_PRICE and a != NO_PRICE and abs(a - b) <= w // 2:
        centre = (a + b) // 2
    elif b_in or a_in:
        return
    elif b != NO_PRICE and (s == SIDE_BID or a == NO_PRICE):
        centre = b
    else:
        centre = a
    _recentre(levels, ovf_px, ovf_sz, meta, scratch, i, centre - w // 2)


@_helper
def _set_slow(levels, ovf_px, ovf_sz, meta, scratch, i, s, p, q):  # pragma: no cover
    """``SET`` outside the window or on a side the window holds nothing of."""
    if _needs_room(levels, ovf_px, meta, i, s, p, q):
        return _STOP
    _set_level(levels, ovf_px, ovf_sz, meta, i, s, p, q)
    _settle(levels, ovf_px, ovf_sz, meta, scratch, i, s)
    return _OK


@_helper
def _clear(levels, meta, i):  # pragma: no cover
    for s in range(2):
        k = meta[i, BEST + s]
        if k >= 0:
            lo = meta[i, FAR + s] if s == SIDE_BID else k
            hi = k if s == SIDE_BID else meta[i, FAR + s]
            levels[i, s, lo : hi + 1] = 0
        meta[i, BEST + s] = -1
        meta[i, NOVF + s] = 0
        meta[i, NROWS + s] = 0


@_helper
def _row_op(
    levels, ovf_px, ovf_sz, rows, meta, scratch, i, a, s, pos, p, q, mm
):  # pragma: no cover
    """Apply one IB row operation (``INSERT`` / ``UPDATE`` / ``DELETE``) at row ``pos``."""
    n = meta[i, NROWS + s]
    r_max = rows.shape[2]
    if a == ACTION_DELETE:
        if pos < 0 or pos >= n:
            return _INVALID
        _level_add(levels, ovf_px, ovf_sz, meta, i, s, rows[i, s, pos, 0], -rows[i, s, pos, 1])
        for r in range(pos, n - 1):
            rows[i, s, r, 0] = rows[i, s, r + 1, 0]
            rows[i, s, r, 1] = rows[i, s, r + 1, 1]
            rows[i, s, r, 2] = rows[i, s, r + 1, 2]
        meta[i, NROWS + s] = n - 1
    else:
        if q < 0 or not _valid_price(p):
            return _INVALID
        if pos < 0 or pos > n or (a == ACTION_UPDATE and pos == n):
            return _INVALID
        if pos == r_max:
            return _OK  # an insert past the last row falls off at once
        if _needs_room(levels, ovf_px, meta, i, s, p, q):
            return _STOP
        if a == ACTION_UPDATE:
            _level_add(levels, ovf_px, ovf_sz, meta, i, s, rows[i, s, pos, 0], -rows[i, s, pos, 1])
        else:
            if n == r_max:  # the last row falls off
                n -= 1
                _level_add(levels, ovf_px, ovf_sz, meta, i, s, rows[i, s, n, 0], -rows[i, s, n, 1])
            for r in range(n, pos, -1):
                rows[i, s, r, 0] = rows[i, s, r - 1, 0]
                rows[i, s, r, 1] = rows[i, s, r - 1, 1]
                rows[i, s, r, 2] = rows[i, s, r - 1, 2]
            meta[i, NROWS + s] = n + 1
        rows[i, s, pos, 0] = p
        rows[i, s, pos, 1] = q
        rows[i, s, pos, 2] = mm
        _level_add(levels, ovf_px, ovf_sz, meta, i, s, p, q)
    _settle(levels, ovf_px, ovf_sz, meta, scratch, i, s)
    return _OK


@_helper
def _collect(levels, ovf_px, ovf_sz, meta, out_ids, out_top, n_touched):  # pragma: no cover
    """Keep, in ``out_ids``/``out_top``, the touched instruments whose top of book changed.

    Returns ``(n, crossed)``: how many, and how many of them are crossed or locked (bid >= ask).
    """
    n = 0
    crossed = 0
    for t in range(n_touched):
        i = out_ids[t]
        meta[i, TOUCHED] = 0
        bp, bq = _best(levels, ovf_px, ovf_sz, meta, i, SIDE_BID)
        ap, aq = _best(levels, ovf_px, ovf_sz, meta, i, SIDE_ASK)
        if (
            bp == meta[i, TOP]
            and bq == meta[i, TOP + 1]
            and ap == meta[i, TOP + 2]
            and aq == meta[i, TOP + 3]
        ):
            continue
        meta[i, TOP] = bp
        meta[i, TOP + 1] = bq
        meta[i, TOP + 2] = ap
        meta[i, TOP + 3] = aq
        out_ids[n] = i
        out_top[n, 0] = bp
        out_top[n, 1] = bq
        out_top[n, 2] = ap
        out_top[n, 3] = aq
        if bp != NO_PRICE and ap != NO_PRICE and bp >= ap:
            crossed += 1
        n += 1
    return n, crossed


@_helper
def _apply(
    deltas, start, end, n_touched, levels, ovf_px, ovf_sz, rows, meta, out_ids, out_top, scratch,
    now,
):  # fmt: skip  # pragma: no cover
    """The kernels' loop over ``deltas[start:end]`` (see ``apply_deltas``); a ``SET`` inside the
    window stays inline."""
    n_inst = meta.shape[0]
    w = levels.shape[2]
    nt = n_touched
    skipped = 0
    for k in range(start, end):
        d = deltas[k]
        d.ts_book = now
        i = np.int64(d.instrument_id)
        a = np.int64(d.action)
        s = np.int64(d.side)
        p = d.price
        q = d.size
        if i < 0 or i >= n_inst:
            skipped += 1
            continue
        if a != ACTION_CLEAR:
            if s != SIDE_BID and s != SIDE_ASK:
                skipped += 1
                continue
            if a == ACTION_SET and (q < 0 or not _valid_price(p)):
                skipped += 1
                continue
        if meta[i, TOUCHED] == 0:  # listed once; ``_collect`` drops it if its top is unchanged
            meta[i, TOUCHED] = 1
            out_ids[nt] = i
            nt += 1
        if a == ACTION_SET:
            x = p - meta[i, BASE]
            if 0 <= x < w and meta[i, BEST + s] >= 0:
                if _window_set(levels, meta, i, s, x, q):  # the side's window emptied
                    _settle(levels, ovf_px, ovf_sz, meta, scratch, i, s)
                continue
            status = _set_slow(levels, ovf_px, ovf_sz, meta, scratch, i, s, p, q)
        elif a == ACTION_CLEAR:
            _clear(levels, meta, i)
            continue
        elif ACTION_INSERT <= a <= ACTION_DELETE:
            status = _row_op(
                levels, ovf_px, ovf_sz, rows, meta, scratch, i, a, s,
                np.int64(d.position), p, q, np.int64(d.mm_id),
            )  # fmt: skip
            if status == _INVALID:
                skipped += 1
        else:
            status = _INVALID
            skipped += 1
        if status == _STOP:
            return k, nt, skipped, 0
    n, crossed = _collect(levels, ovf_px, ovf_sz, meta, out_ids, out_top, nt)
    return end, n, skipped, crossed


# ---- kernels ----------------------------------------------------------------------------------

_i64 = types.int64
_f64 = types.float64
_a1 = types.Array(_i64, 1, "C")
_a2 = types.Array(_i64, 2, "C")
_a3 = types.Array(_i64, 3, "C")
_a4 = types.Array(_i64, 4, "C")
_f1 = types.Array(_f64, 1, "C")
_DELTAS = types.Array(numba.from_dtype(layouts.BOOK_DELTA), 1, "C")
_RESULT = types.UniTuple(_i64, 4)
_RESULT5 = types.UniTuple(_i64, 5)


@kernel([_RESULT(_DELTAS, _i64, _i64, _a3, _a3, _a3, _a4, _a2, _a1, _a2, _a2, _i64)])
def apply_deltas(
    deltas, start, n_touched, levels, ovf_px, ovf_sz, rows, meta, out_ids, out_top, scratch, now
):  # pragma: no cover
    """Apply ``deltas[start:]`` in order; stamps ``ts_book`` with ``now``.

    Returns ``(end, n, skipped, crossed)``. When ``end == len(deltas)`` the batch is done:
    ``out_ids[:n]`` lists the instruments whose top of book changed (in order of first touch),
    ``out_top[:n]`` their top ``(bid ticks, bid lots, ask ticks, ask lots)`` (``NO_PRICE`` and 0
    for an empty side), ``crossed`` how many of them are crossed or locked. Otherwise delta
    ``end`` needs an overflow slot and none is free: nothing of it was applied, ``n`` is the
    count to pass back as ``n_touched`` when calling again from ``end`` with a grown overflow.
    ``skipped`` counts invalid deltas (see the module docstring) in either case.
    """
    return _apply(
        deltas, start, deltas.shape[0], n_touched, levels, ovf_px, ovf_sz, rows, meta, out_ids,
        out_top, scratch, now,
    )  # fmt: skip


@kernel([_RESULT5(_DELTAS, _i64, _i64, _i64, _a3, _a3, _a3, _a4, _a2, _a1, _a2, _a2, _i64)])
def apply_span(
    buffer, start, end, n_touched, levels, ovf_px, ovf_sz, rows, meta, out_ids, out_top,
    scratch, now,
):  # fmt: skip  # pragma: no cover
    """``apply_deltas`` on rows ``buffer[start:end]`` of a ring buffer, in place: a ring read
    without a view made for it. Returns ``(end, n, skipped, crossed, ts_recv)``, the first four
    as ``apply_deltas``'s (``end`` is where it stopped), ``ts_recv`` that of row ``start`` (0 for
    an empty span). A span reaching outside the buffer is cut to it."""
    end = min(end, buffer.shape[0])
    start = min(max(start, 0), end)
    ts_recv = buffer[start].ts_recv if start < end else 0
    stop, n, skipped, crossed = _apply(
        buffer, start, end, n_touched, levels, ovf_px, ovf_sz, rows, meta, out_ids, out_top,
        scratch, now,
    )  # fmt: skip
    return stop, n, skipped, crossed, ts_recv


@kernel(
    [
        _RESULT(
            _a1, _f1, _f1, _f64, _f64, _i64, _DELTAS, _i64, _i64,
            _a3, _a3, _a3, _a4, _a2, _a1, _a2, _a2,
        )
    ]
)  # fmt: skip
def apply_levels(
    sides, prices, sizes, tick, lot, i, work, start, n_touched,
    levels, ovf_px, ovf_sz, rows, meta, out_ids, out_top, scratch,
):  # fmt: skip  # pragma: no cover
    """``SET`` levels of instrument ``i`` from float prices and sizes (rounded to ticks, lots).

    ``sides`` holds 0 (bid) / 1 (ask); ``work`` is scratch of at least ``len(prices)`` deltas.
    Same results and resumption as ``apply_deltas``; a side other than 0/1, a negative or NaN
    size, or a price beyond the tick range is skipped.
    """
    n = prices.shape[0]
    for k in range(start, n):
        d = work[k]
        d.instrument_id = i
        d.side = sides[k] if 0 <= sides[k] <= 1 else -1
        pt = np.rint(prices[k] / tick)
        qt = np.rint(sizes[k] / lot)
        valid = qt >= 0 and _valid_price(pt)  # False for NaN
        d.action = ACTION_SET if valid else -1
        d.price = np.int64(pt) if valid else 0
        d.size = np.int64(qt) if valid else 0
    return _apply(
        work, start, n, n_touched, levels, ovf_px, ovf_sz, rows, meta, out_ids, out_top,
        scratch, 0,
    )  # fmt: skip


@kernel([_i64(_a3, _a3, _a3, _a2, _i64, _i64, _i64, _a1, _a1)])
def depth_levels(levels, ovf_px, ovf_sz, meta, i, s, n, out_px, out_sz):  # pragma: no cover
    """Write up to ``n`` levels of instrument ``i``'s side ``s``, best first; returns how many."""
    return _merge(levels, ovf_px, ovf_sz, meta, i, s, n, out_px, out_sz)
