"""IB hot market-data rows (``hotpath.ibwire.HOT_ROW``) into the engine's market-data rows
(``BOOK_DELTA``, ``QUOTE``, ``TRADE``), one kernel call per decoded batch.

``translate`` reads each row's request id, looks up the instrument and the kind of
subscription it was bound to, and:

* ``updateMktDepth`` / ``updateMktDepthL2`` rows (depth subscriptions) become ``BOOK_DELTA``
  rows for ``hotpath.book``'s position-based form: IB's operation 0 insert / 1 update /
  2 delete is ``DeltaAction`` 1 / 2 / 3 (operation + 1); IB's side 0 is the ask, 1 the bid,
  the reverse of ``BookSide``. ``ts_event`` is ``ts_recv`` (IB depth carries no venue time);
  flags bit 1 is ``isSmartDepth`` and bit 0 marks the last delta of the batch. ``mm_id`` is a
  31-bit FNV-1a hash of the market maker (0 when empty): the book keys rows by position and only
  stores it, so it identifies a row's market maker without a per-message string table.
* ``tickPrice`` bid/ask (1/2, delayed 66/67) and ``tickSize`` bid/ask size (0/3, delayed
  69/70) of an L1 subscription, and ``tickByTickBidAsk`` of a tick-by-tick one, update the
  instrument's top of book ``l1[i] = (bid, ask, bid size, ask size)`` in IB's units. After the
  loop each instrument touched gets one ``QUOTE`` row (conflation: one per instrument per call,
  in order of first touch) with ``ts_event`` its last update's time: the tick-by-tick time, or
  ``ts_recv`` for ``tickPrice``/``tickSize``. A price of -1 or 0 is IB's "no price"
  (``NO_PRICE``); an unset size (``ibwire.UNSET_SIZE``) leaves the size as it was.
* ``tickByTickAllLast`` / ``Last`` rows of a tick-by-tick subscription become ``TRADE`` rows
  (``ts_event`` = IB time in ns, aggressor 0: IB does not say, trade id 0).

Other tick types (last, volume, high, low, ...) and ``tickByTickMidPoint`` are ignored. A row is
*skipped* (counted, nothing written, no state changed) when its request id is outside the
table or unbound, its kind does not match the subscription's, or a number it needs is not
usable: NaN or infinite, a price beyond +-2**62 ticks (as ``hotpath.book``), a negative or
unset size where a size is needed (a trade, a depth insert or update), a depth side other than
0/1, an operation other than 0-2, a position outside 0..32767. A depth *delete* is never
skipped for its price or size (the book deletes by position; dropping it would leave a stale
row): an unusable price is written ``NO_PRICE`` and an unusable size 0.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, types

from hotpath import ibwire, layouts
from hotpath.jit import kernel

NO_PRICE = layouts.NO_PRICE

# Subscription kinds in ``req_kind`` (``adapters.ib.marketdata.Subscription``).
SUB_NONE = 0
SUB_L1 = 1  # reqMktData
SUB_DEPTH = 2  # reqMktDepth
SUB_TICK_BY_TICK = 3  # reqTickByTickData

# Columns of ``l1``.
L1_BID = 0
L1_ASK = 1
L1_BID_SIZE = 2
L1_ASK_SIZE = 3

# Mirrors engine.messages.DeltaAction and BookSide (hotpath does not import engine).
_SIDE_BID = 0
_SIDE_ASK = 1
_IB_SIDE_ASK = 0
_IB_SIDE_BID = 1
_ACTION_DELETE = 3

FLAG_LAST = 1
"""``BOOK_DELTA.flags`` bit 0: the last delta of the batch."""
FLAG_SMART_DEPTH = 2
"""``BOOK_DELTA.flags`` bit 1: IB's ``isSmartDepth``."""

PRICE_LIMIT = float(1 << 62)
"""Ticks and lots must be strictly inside +-PRICE_LIMIT, as ``hotpath.book`` requires."""
POSITION_MAX = int(np.iinfo(np.int16).max)

_UNSET_SIZE = ibwire.UNSET_SIZE
_MM_OFFSET = ibwire.HOT_ROW.fields["market_maker"][1]
_MM_WIDTH = ibwire.STRING_WIDTH


def _kernel_dtype(dtype: np.dtype) -> np.dtype:
    """``dtype`` without its void padding fields (Numba cannot type ``V`` fields)."""
    names = [n for n in dtype.names if dtype.fields[n][0].kind != "V"]
    return np.dtype(
        {
            "names": names,
            "formats": [dtype.fields[n][0] for n in names],
            "offsets": [dtype.fields[n][1] for n in names],
            "itemsize": dtype.itemsize,
        },
        align=dtype.isalignedstruct,
    )


TRADE_KERNEL = _kernel_dtype(layouts.TRADE)
"""``TRADE`` as the kernel sees it: same bytes, no ``_pad`` field. Pass ``trades.view(...)``."""

# ---- helpers (compiled into the kernel) ----------------------------------------------------
#
# Without Numba's reference counting, as in ``hotpath.book``: they borrow the kernel's arrays.

_helper = njit(_nrt=False, inline="always")


@_helper
def _units_ok(x, inv):  # pragma: no cover
    """Does ``x * inv`` round to an integer strictly inside +-PRICE_LIMIT? (False for NaN)"""
    v = np.rint(x * inv)
    return -PRICE_LIMIT < v < PRICE_LIMIT


@_helper
def _l1_price_ok(p, inv):  # pragma: no cover
    return p == -1.0 or p == 0.0 or _units_ok(p, inv)


@_helper
def _l1_size_ok(q, inv):  # pragma: no cover
    """Usable as an L1 size: unset (no change), or a non-negative number of lots."""
    return q == _UNSET_SIZE or (q >= 0.0 and _units_ok(q, inv))


@_helper
def _ticks(p, inv):  # pragma: no cover
    """L1 price to ticks: IB's -1 and 0 are no price."""
    if p == -1.0 or p == 0.0:
        return NO_PRICE
    return np.int64(np.rint(p * inv))


@_helper
def _mm_hash(raw, k):  # pragma: no cover
    """31-bit FNV-1a of row ``k``'s market maker bytes (up to the first NUL); 0 when empty."""
    h = np.int64(2166136261)
    n = 0
    for j in range(_MM_WIDTH):
        c = np.int64(raw[k, _MM_OFFSET + j])
        if c == 0:
            break
        h = ((h ^ c) * 16777619) & 0xFFFFFFFF  # < 2**57 before the mask: no int64 overflow
        n += 1
    if n == 0:
        return 0
    return h & 0x7FFFFFFF


@_helper
def _l1_col(kind, tick_type):  # pragma: no cover
    """The ``l1`` column a tickPrice / tickSize row sets, or -1 for a tick type we ignore."""
    if kind == ibwire.KIND_TICK_PRICE:
        if tick_type == 1 or tick_type == 66:
            return L1_BID
        if tick_type == 2 or tick_type == 67:
            return L1_ASK
    elif tick_type == 0 or tick_type == 69:
        return L1_BID_SIZE
    elif tick_type == 3 or tick_type == 70:
        return L1_ASK_SIZE
    return -1


# ---- kernel ----------------------------------------------------------------------------------

_i64 = types.int64
_a1 = types.Array(_i64, 1, "C")
_f1 = types.Array(types.float64, 1, "C")
_f2 = types.Array(types.float64, 2, "C")
_ROWS = types.Array(numba.from_dtype(ibwire.HOT_ROW), 1, "C")
_RAW = types.Array(types.uint8, 2, "C")
_DELTAS = types.Array(numba.from_dtype(layouts.BOOK_DELTA), 1, "C")
_QUOTES = types.Array(numba.from_dtype(layouts.QUOTE), 1, "C")
_TRADES = types.Array(numba.from_dtype(TRADE_KERNEL), 1, "C")


@kernel(
    [
        types.UniTuple(_i64, 5)(
            _ROWS, _RAW, _i64, _a1, _a1, _f1, _f1, _f2, _a1, _a1, _a1,
            _DELTAS, _QUOTES, _TRADES, _i64,
        )
    ]
)  # fmt: skip
def translate(
    rows, raw, start, req_inst, req_kind, tick_inv, lot_inv, l1, l1_ts, l1_dirty, dirty_ids,
    deltas, quotes, trades, ts_recv,
):  # fmt: skip  # pragma: no cover
    """Translate ``rows[start:]`` into ``deltas``, ``quotes`` and ``trades`` (written from 0).

    Returns ``(n_deltas, n_quotes, n_trades, n_skipped, end)``. ``raw`` is ``rows`` as bytes
    (``rows.view(np.uint8).reshape(len(rows), -1)``); ``req_inst[req_id]`` is the instrument id
    (-1 unbound) and ``req_kind[req_id]`` the ``SUB_*`` kind; ``tick_inv[i]`` and ``lot_inv[i]``
    are 1 / tick size and 1 / lot size. Per instrument, ``l1[i]`` (bid, ask, bid size, ask size
    in IB units), ``l1_ts[i]`` (its time) persist across calls; ``l1_dirty`` (all 0 between
    calls) and ``dirty_ids`` (length >= ``len(quotes)``) are scratch. ``TRADES`` are
    ``TRADE_KERNEL`` rows.

    When ``end == len(rows)`` every row was taken and the last delta has ``FLAG_LAST``.
    Otherwise row ``end`` needs a delta, quote or trade slot that is not free: nothing of it
    was done; flush the outputs (the quotes are written for the rows before ``end``) and call
    again from ``end``.
    """
    n_req = req_inst.shape[0]
    n_inst = l1.shape[0]
    nd = 0
    nt = 0
    nq = 0
    skipped = 0
    end = rows.shape[0]
    for k in range(start, rows.shape[0]):
        r = rows[k]
        req = np.int64(r.req_id)
        if req < 0 or req >= n_req:
            skipped += 1
            continue
        i = req_inst[req]
        if i < 0 or i >= n_inst:
            skipped += 1
            continue
        sub = req_kind[req]
        kind = np.int64(r.kind)
        if kind == ibwire.KIND_MKT_DEPTH or kind == ibwire.KIND_MKT_DEPTH_L2:
            op = np.int64(r.operation)
            ib_side = np.int64(r.side)
            pos = np.int64(r.position)
            p = r.price
            q = r.size
            p_ok = _units_ok(p, tick_inv[i])
            q_ok = q >= 0.0 and _units_ok(q, lot_inv[i])
            if (
                sub != SUB_DEPTH
                or op < 0
                or op > 2
                or (ib_side != _IB_SIDE_ASK and ib_side != _IB_SIDE_BID)
                or pos < 0
                or pos > POSITION_MAX
                or (op + 1 != _ACTION_DELETE and not (p_ok and q_ok))
            ):
                skipped += 1
                continue
            if nd == deltas.shape[0]:
                end = k
                break
            d = deltas[nd]
            d.price = np.int64(np.rint(p * tick_inv[i])) if p_ok else NO_PRICE
            d.size = np.int64(np.rint(q * lot_inv[i])) if q_ok else 0
            d.ts_event = ts_recv
            d.ts_recv = ts_recv
            d.ts_book = 0
            d.instrument_id = i
            d.side = _SIDE_ASK if ib_side == _IB_SIDE_ASK else _SIDE_BID
            d.action = op + 1
            d.position = pos
            if kind == ibwire.KIND_MKT_DEPTH_L2:
                d.mm_id = _mm_hash(raw, k)
                d.flags = FLAG_SMART_DEPTH if r.is_smart_depth else 0
            else:
                d.mm_id = 0
                d.flags = 0
            nd += 1
            continue
        if kind == ibwire.KIND_TBT_LAST:
            p = r.price
            q = r.size
            if (
                sub != SUB_TICK_BY_TICK
                or not _units_ok(p, tick_inv[i])
                or q == _UNSET_SIZE
                or not (q >= 0.0 and _units_ok(q, lot_inv[i]))
            ):
                skipped += 1
                continue
            if nt == trades.shape[0]:
                end = k
                break
            t = trades[nt]
            t.price = np.int64(np.rint(p * tick_inv[i]))
            t.size = np.int64(np.rint(q * lot_inv[i]))
            t.trade_id = 0
            t.ts_event = r.time * 1_000_000_000
            t.ts_recv = ts_recv
            t.ts_book = 0
            t.instrument_id = i
            t.aggressor = 0
            nt += 1
            continue
        if kind == ibwire.KIND_TICK_PRICE or kind == ibwire.KIND_TICK_SIZE:
            if sub != SUB_L1:
                skipped += 1
                continue
            col = _l1_col(kind, np.int64(r.tick_type))
            if col < 0:
                continue
            if col <= L1_ASK:
                x = r.price
                if not _l1_price_ok(x, tick_inv[i]):
                    skipped += 1
                    continue
            else:
                x = r.size
                if not _l1_size_ok(x, lot_inv[i]):
                    skipped += 1
                    continue
                if x == _UNSET_SIZE:
                    continue
            if l1_dirty[i] == 0:
                if nq == quotes.shape[0]:
                    end = k
                    break
                l1_dirty[i] = 1
                dirty_ids[nq] = i
                nq += 1
            l1[i, col] = x
            l1_ts[i] = ts_recv
            continue
        if kind == ibwire.KIND_TBT_BID_ASK:
            if (
                sub != SUB_TICK_BY_TICK
                or not _l1_price_ok(r.bid_price, tick_inv[i])
                or not _l1_price_ok(r.ask_price, tick_inv[i])
                or not _l1_size_ok(r.bid_size, lot_inv[i])
                or not _l1_size_ok(r.ask_size, lot_inv[i])
            ):
                skipped += 1
                continue
            if l1_dirty[i] == 0:
                if nq == quotes.shape[0]:
                    end = k
                    break
                l1_dirty[i] = 1
                dirty_ids[nq] = i
                nq += 1
            l1[i, L1_BID] = r.bid_price
            l1[i, L1_ASK] = r.ask_price
            if r.bid_size != _UNSET_SIZE:
                l1[i, L1_BID_SIZE] = r.bid_size
            if r.ask_size != _UNSET_SIZE:
                l1[i, L1_ASK_SIZE] = r.ask_size
            l1_ts[i] = r.time * 1_000_000_000
            continue
        if kind == ibwire.KIND_TBT_MID_POINT and sub == SUB_TICK_BY_TICK:
            continue
        skipped += 1
    for t in range(nq):
        i = dirty_ids[t]
        l1_dirty[i] = 0
        o = quotes[t]
        o.bid_price = _ticks(l1[i, L1_BID], tick_inv[i])
        o.ask_price = _ticks(l1[i, L1_ASK], tick_inv[i])
        o.bid_size = np.int64(np.rint(l1[i, L1_BID_SIZE] * lot_inv[i]))
        o.ask_size = np.int64(np.rint(l1[i, L1_ASK_SIZE] * lot_inv[i]))
        o.ts_event = l1_ts[i]
        o.ts_recv = ts_recv
        o.ts_book = 0
        o.instrument_id = i
        o.flags = 0
    if end == rows.shape[0] and nd > 0:
        deltas[nd - 1].flags |= FLAG_LAST
    return nd, nq, nt, skipped, end
