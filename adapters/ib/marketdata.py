"""IB market data as engine rows: decoded ``HOT_ROW`` rows in, ``BOOK_DELTA``, ``QUOTE`` and
``TRADE`` rows out, one kernel call (``hotpath.ibmd.translate``) per decoded batch.

``MarketDataTranslator`` holds the request-id table (``bind``: which instrument, which kind of
subscription), each instrument's tick and lot size, its L1 state, and preallocated outputs.
The mapping:

* **Depth** (``reqMktDepth``: ``updateMktDepth`` / ``updateMktDepthL2``) becomes IB's
  position-based ``BOOK_DELTA`` rows, which ``hotpath.book`` applies row by row per side.
  IB's ``operation`` 0 insert, 1 update, 2 delete is ``DeltaAction.INSERT`` / ``UPDATE`` /
  ``DELETE`` (operation + 1). IB's ``side`` 0 is the **ask** and 1 the **bid**: they map to
  ``BookSide.ASK`` (1) and ``BookSide.BID`` (0). ``ts_event`` is ``ts_recv`` (IB sends no
  venue time for depth); flags bit 1 is ``isSmartDepth``, bit 0 marks the batch's last delta;
  ``mm_id`` is a 31-bit hash of the market maker (0 for ``updateMktDepth``).
* **L1** (``reqMktData``: tickPrice bid 1 / ask 2, tickSize bid size 0 / ask size 3, and the
  delayed 66 / 67 / 69 / 70) and **tick-by-tick bid/ask** (``reqTickByTickData``
  ``BidAsk``) update the instrument's top of book; the batch then yields **one** ``QUOTE`` per
  instrument it touched, with the latest values (conflation: ten ticks of one instrument in a
  socket read are one quote). Price -1 or 0 is IB's "no price" (``NO_PRICE``); an unset size
  leaves the size as it was. ``ts_event`` is the tick-by-tick time when that set the quote
  last, else ``ts_recv``. Other tick types (last, volume, high/low, ...) are ignored.
* **Trades** (``reqTickByTickData`` ``Last`` / ``AllLast``) become ``TRADE`` rows with
  ``ts_event`` the IB time in ns, aggressor 0 (unknown) and trade id 0.

Rows of an unbound request id, of a kind the subscription does not produce, or with a number
that cannot be used (NaN, infinite, beyond the tick range, a negative or missing size where one
is needed) are counted in ``skipped`` and change nothing; see ``hotpath.ibmd`` for the exact
rules. Prices become integer ticks (``round(price / tick_size)``), sizes integer lots.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import IntEnum

import numpy as np

from engine.messages import BOOK_DELTA, QUOTE, TRADE, DeltaAction
from hotpath import ibmd
from hotpath.ibwire import HOT_ROW
from hotpath.jit import entry

log = logging.getLogger(__name__)


class Subscription(IntEnum):
    """What a request id was used for, which decides what its rows become."""

    L1 = ibmd.SUB_L1  # reqMktData
    DEPTH = ibmd.SUB_DEPTH  # reqMktDepth
    TICK_BY_TICK = ibmd.SUB_TICK_BY_TICK  # reqTickByTickData


#: The kernel's compiled entry (``hotpath.jit.entry``): ``translate`` passes checked rows and the
#: translator's own tables and outputs, always of the kernel's types; the dispatcher's typing
#: of fifteen arguments, four of them record arrays, cost ~0.9 µs a call.
_TRANSLATE = entry(ibmd.translate)


class MarketDataTranslator:
    """Translate decoded IB market-data rows for ``n_instruments`` instruments.

    ``tick_sizes[i]`` and ``lot_sizes[i]`` are instrument ``i``'s tick and lot size; request ids
    are ``0 <= req_id < max_req_ids``. ``capacity`` is the initial room for deltas and trades
    per ``translate``; a batch that needs more grows the outputs (doubling, with a warning) and
    they stay that size, so steady state allocates nothing. Quotes need no growth: a batch
    yields at most one per instrument.
    """

    def __init__(
        self,
        n_instruments: int,
        tick_sizes: Sequence[float] | np.ndarray,
        lot_sizes: Sequence[float] | np.ndarray,
        max_req_ids: int = 4096,
        capacity: int = 4096,
    ) -> None:
        tick = np.asarray(tick_sizes, dtype=np.float64)
        lot = np.asarray(lot_sizes, dtype=np.float64)
        if tick.shape != (n_instruments,) or lot.shape != (n_instruments,):
            raise ValueError(
                f"MarketDataTranslator: tick_sizes and lot_sizes need one value per instrument "
                f"({n_instruments}); got {tick.shape[0] if tick.ndim else 0} and "
                f"{lot.shape[0] if lot.ndim else 0}"
            )
        for name, values in (("tick_sizes", tick), ("lot_sizes", lot)):
            bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
            if len(bad):
                raise ValueError(
                    f"MarketDataTranslator: {name}[{bad[0]}] = {values[bad[0]]!r}; every tick "
                    "and lot size must be a positive finite number (check the instrument table)"
                )
        if max_req_ids < 1 or capacity < 1:
            raise ValueError(
                f"MarketDataTranslator: max_req_ids and capacity must be >= 1, got "
                f"{max_req_ids} and {capacity}"
            )
        self.n_instruments = n_instruments
        self.tick_inv = 1.0 / tick
        self.lot_inv = 1.0 / lot
        self.req_inst = np.full(max_req_ids, -1, dtype=np.int64)
        self.req_kind = np.zeros(max_req_ids, dtype=np.int64)
        self.l1 = np.zeros((n_instruments, 4), dtype=np.float64)
        """Top of book per instrument in IB units: bid, ask, bid size, ask size (0: none)."""
        self._l1_ts = np.zeros(n_instruments, dtype=np.int64)
        self._l1_dirty = np.zeros(n_instruments, dtype=np.int64)
        self._dirty_ids = np.zeros(max(n_instruments, 1), dtype=np.int64)
        self._deltas = np.zeros(capacity, dtype=BOOK_DELTA)
        self._quotes = np.zeros(max(n_instruments, 1), dtype=QUOTE)
        self._trades = np.zeros(capacity, dtype=TRADE)
        self._trades_k = self._trades.view(ibmd.TRADE_KERNEL)
        self.skipped = 0
        """Rows dropped: unbound request id, wrong kind for the subscription, unusable number."""
        self.grows = 0

    def bind(self, req_id: int, instrument_id: int, kind: Subscription | int) -> None:
        """Route the rows of ``req_id`` to ``instrument_id`` as subscription ``kind``."""
        if not 0 <= req_id < len(self.req_inst):
            raise ValueError(
                f"IB request id {req_id} is outside the market-data table (0..."
                f"{len(self.req_inst) - 1}); raise max_req_ids or reuse request ids"
            )
        if not 0 <= instrument_id < self.n_instruments:
            raise ValueError(
                f"instrument id {instrument_id} is not one of the {self.n_instruments} "
                "instruments this translator was built for"
            )
        self.req_inst[req_id] = instrument_id
        self.req_kind[req_id] = int(Subscription(kind))

    def unbind_all(self) -> None:
        """Forget every subscription (before resubscribing after a reconnect)."""
        self.req_inst[:] = -1
        self.req_kind[:] = ibmd.SUB_NONE

    def unbind(self, req_id: int) -> None:
        """Stop translating ``req_id`` (its late rows count as skipped)."""
        if 0 <= req_id < len(self.req_inst):
            self.req_inst[req_id] = -1
            self.req_kind[req_id] = ibmd.SUB_NONE

    def translate(
        self, rows: np.ndarray, ts_recv: int, raw: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(deltas, quotes, trades)`` for a batch of ``HOT_ROW`` rows received at ``ts_recv``.

        ``raw``: the rows' bytes as ``HotDecoder``'s ``Batch.raw`` gives them with its ``rows``
        (the kernel reads both; viewing the rows as bytes here costs ~0.6 µs); without it the
        rows are checked and viewed here.

        The arrays are views of preallocated outputs, valid until the next call. A batch that
        outgrows them is finished by further kernel calls into grown outputs; an instrument can
        then have one quote per call, in order (the last is current).
        """
        if raw is None:
            if rows.dtype != HOT_ROW or rows.ndim != 1:
                raise TypeError(
                    f"translate takes a 1-d array of HOT_ROW rows (hotpath.ibwire), got "
                    f"{rows.ndim}-d {rows.dtype}"
                )
            if not (rows.flags.c_contiguous and rows.flags.writeable and rows.flags.aligned):
                rows = np.array(rows, order="C")
            raw = rows.view(np.uint8).reshape(len(rows), HOT_ROW.itemsize)
        elif raw.shape != (len(rows), HOT_ROW.itemsize) or rows.dtype != HOT_ROW:
            raise TypeError("translate: raw must be the HOT_ROW rows' own bytes (Batch.raw)")
        nd, nq, nt, skipped, end = _TRANSLATE(
            rows, raw, 0, self.req_inst, self.req_kind, self.tick_inv, self.lot_inv, self.l1,
            self._l1_ts, self._l1_dirty, self._dirty_ids, self._deltas, self._quotes,
            self._trades_k, ts_recv,
        )  # fmt: skip
        grown = end < len(rows)
        while end < len(rows):  # rare: more deltas or trades than ever before in one batch
            self._grow(nd, nq, nt)
            d, q, t, more, end = _TRANSLATE(
                rows, raw, end, self.req_inst, self.req_kind, self.tick_inv, self.lot_inv,
                self.l1, self._l1_ts, self._l1_dirty, self._dirty_ids, self._deltas[nd:],
                self._quotes[nq:], self._trades_k[nt:], ts_recv,
            )  # fmt: skip
            nd, nq, nt, skipped = nd + d, nq + q, nt + t, skipped + more
        if grown and nd:  # the last call may have written no delta to mark
            self._deltas[nd - 1]["flags"] |= ibmd.FLAG_LAST
        if skipped:
            self.skipped += skipped
        return self._deltas[:nd], self._quotes[:nq], self._trades[:nt]

    def _grow(self, nd: int, nq: int, nt: int) -> None:
        """Double whichever output is full, keeping what it holds."""
        if nd == len(self._deltas):
            self._deltas = np.concatenate([self._deltas, np.zeros_like(self._deltas)])
        if nt == len(self._trades):
            self._trades = np.concatenate([self._trades, np.zeros_like(self._trades)])
            self._trades_k = self._trades.view(ibmd.TRADE_KERNEL)
        # A resumed call writes its quotes after the earlier calls': room for one per instrument.
        if len(self._quotes) - nq < len(self._dirty_ids):
            self._quotes = np.concatenate([self._quotes, np.zeros_like(self._quotes)])
        self.grows += 1
        log.warning(
            "IB market data: a batch did not fit the translator's outputs; grown to %d deltas, "
            "%d trades and %d quotes per batch (raise capacity to start there)",
            len(self._deltas), len(self._trades), len(self._quotes),
        )  # fmt: skip

    def clear_depth(self, instrument_id: int, ts_recv: int) -> np.ndarray:
        """One ``CLEAR`` delta for ``instrument_id``: empty its book before depth is resubscribed
        (IB restarts the rows from position 0 after a reconnect) or when its stream ends.

        Its top of book from L1 is forgotten too: a new stream's first tick sets one side, and
        the quote it makes must not carry the other side of the old stream."""
        self.l1[instrument_id] = 0.0
        d = np.zeros(1, dtype=BOOK_DELTA)
        d["instrument_id"] = instrument_id
        d["action"] = int(DeltaAction.CLEAR)
        d["ts_event"] = ts_recv
        d["ts_recv"] = ts_recv
        d["flags"] = ibmd.FLAG_LAST
        return d
