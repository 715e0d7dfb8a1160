"""IB receive path: socket bytes in, hot market data out as numpy rows, everything else as
frames for ``ibapi``'s ``Decoder``.

``HotDecoder(server_version, capacity).feed(data)`` appends a socket read to a preallocated
receive buffer and makes one kernel call (``hotpath.ibwire.decode_batch``) that cuts every
complete frame and decodes tickPrice, tickSize, updateMktDepth(L2) and tickByTick, text or
protobuf, into ``HOT_ROW`` rows: the values ``ibapi`` would pass to the ``EWrapper``, in the
order it would call it. The ``Batch`` it returns holds

* ``rows``: a view of the preallocated output, valid until the next ``feed``;
* ``cold``: every other frame (``ColdFrame``: id, payload, and ``at``, how many rows come
  before it), which ``ColdFrame.dispatch`` hands to ``ibapi``'s ``Decoder`` as ``EClient.run``
  does. ``Batch.in_order()`` interleaves rows and frames in wire order;
* ``malformed``: hot frames ``ibapi`` would reject (a missing field, a number it cannot parse,
  a protobuf that does not parse), with the reason, for the log; they yield no rows;
* ``fatal``: set when a length prefix exceeds ``MAX_MSG_LEN`` (``ibapi``: error 507,
  BAD_LENGTH); the stream cannot be resynchronised, so close the connection. The decoder then
  stays failed;
* ``more``: the batch stopped at ``capacity`` frames; call ``feed(b"")`` for the rest.

Why a kernel. ``ibapi`` decodes a frame with ``read_fields`` (a ``bytes.split``), one
``decode()`` call per field and one Python call per callback, plus a protobuf object per
message from 201 on; ib_async splits a ``str`` and calls a handler per message. Either way a
message costs microseconds of interpreter work, and a busy feed is tens of thousands of
messages a second. Measured side by side (``benchmarks/test_ib_decode_bench.py``, one run,
2-vCPU VM, CPython 3.11, numba 0.68; a realistic mix of tickPrice, tickSize, L2 depth and
tick-by-tick bid/ask in 4 KB reads, frame cutting included, no-op callbacks for the anchors;
medians):

===================  ==========================  ==========================
per message          text, server version 176    protobuf, server version 225
===================  ==========================  ==========================
this decoder         160 ns (6.2 million/s)      139 ns (7.2 million/s)
ibapi ``Decoder``    4.1 µs (26x slower)         3.2 µs (23x slower)
ib_async             1.7 µs (10x slower)         (no protobuf)
===================  ==========================  ==========================

Of our 160 / 139 ns, about 145 / 120 are the kernel itself (parsing, rows); the rest is the
one call per read, ~1.2 µs (0.7 µs of it Numba's dispatch of a structured array), which a 4 KB
read of ~130 messages amortises. No Python object is created per hot message, and downstream
kernels (the book) take the rows as they are.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from ibapi import comm
from ibapi.decoder import Decoder

from hotpath import ibwire
from hotpath.jit import entry

HOT_ROW = ibwire.HOT_ROW
#: Up to this many frames in a batch, ``_collect`` finds the cold ones in Python: cheaper than
#: the numpy calls (~3 µs) it takes to find a few among many.
_FEW_FRAMES = 16
UNSET_SIZE = ibwire.UNSET_SIZE
MAX_MSG_LEN = ibwire.MAX_MSG_LEN
PROTOBUF_MSG_ID = ibwire.PROTOBUF_MSG_ID


class HotKind(IntEnum):
    """``HOT_ROW.kind``: which ``EWrapper`` callback the row stands for."""

    TICK_PRICE = ibwire.KIND_TICK_PRICE
    TICK_SIZE = ibwire.KIND_TICK_SIZE
    MKT_DEPTH = ibwire.KIND_MKT_DEPTH
    MKT_DEPTH_L2 = ibwire.KIND_MKT_DEPTH_L2
    TBT_LAST = ibwire.KIND_TBT_LAST
    TBT_BID_ASK = ibwire.KIND_TBT_BID_ASK
    TBT_MID_POINT = ibwire.KIND_TBT_MID_POINT


@dataclass(frozen=True, slots=True)
class ColdFrame:
    """A frame for ``ibapi``: ``msg_id`` as on the wire (> 200: protobuf), the bytes after it."""

    index: int  # position among the batch's frames
    at: int  # rows of the batch that come before it
    msg_id: int
    payload: bytes

    @property
    def protobuf(self) -> bool:
        return self.msg_id > PROTOBUF_MSG_ID

    def dispatch(self, decoder: Decoder) -> None:
        """Decode with ``ibapi`` exactly as ``EClient.run`` does (it may raise ``BadMessage``)."""
        if self.msg_id > PROTOBUF_MSG_ID:
            decoder.processProtoBuf(self.payload, self.msg_id - PROTOBUF_MSG_ID)
        else:
            decoder.interpret(comm.read_fields(self.payload), self.msg_id)


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """A hot frame ``ibapi`` would reject: dropped, to be logged with its id and reason."""

    index: int
    at: int
    msg_id: int  # -1 when the id itself is unreadable
    reason: str
    frame: bytes  # the whole payload, id included

    def describe(self) -> str:
        """One log line: the message id, what is wrong, and the frame's first bytes."""
        return (
            f"dropped a malformed IB message (id {self.msg_id}, {len(self.frame)} bytes): "
            f"{self.reason}; frame starts {self.frame[:64]!r}"
        )


@dataclass(slots=True)
class Batch:
    """What one ``feed`` decoded."""

    rows: np.ndarray  # HOT_ROW view of the decoder's output: valid until the next feed
    cold: list[ColdFrame]
    malformed: list[MalformedFrame]
    frames: int  # complete frames taken
    more: bool  # stopped at capacity: call ``feed(b"")`` for the frames still buffered
    fatal: str | None  # the connection must be closed, and why
    raw: np.ndarray  # the same rows' bytes, (rows, HOT_ROW.itemsize) uint8 (the translator's)

    def in_order(self) -> Iterator[np.ndarray | ColdFrame | MalformedFrame]:
        """Row slices and frames, in the order they came off the wire."""
        others = sorted([*self.cold, *self.malformed], key=lambda f: f.index)
        done = 0
        for frame in others:
            if frame.at > done:
                yield self.rows[done : frame.at]
                done = frame.at
            yield frame
        if done < len(self.rows):
            yield self.rows[done:]


#: The kernel's compiled entry: the decoder passes only its own buffers and ints, always of the
#: kernel's types, so the dispatcher's per-call typing (~300 ns) is skipped (``hotpath.jit``).
_DECODE_BATCH = entry(ibwire.decode_batch)
_PICK_FRAMES = entry(ibwire.pick_frames)
#: ``HotDecoder.pick`` returns at most this many frames (a read's order answers are a few).
PICK_MAX = 64


class HotDecoder:
    """Receive-side decoder for one TWS API connection at a negotiated server version."""

    def __init__(
        self, server_version: int, capacity: int = 4096, buffer_bytes: int = 1 << 20
    ) -> None:
        if sys.byteorder != "little":
            raise RuntimeError(
                "hotpath.ibwire reads protobuf doubles in host byte order, which must be "
                "little-endian (as the wire is); this host is big-endian"
            )
        if capacity < 1:
            raise ValueError(f"HotDecoder capacity must be >= 1 frame per feed, got {capacity}")
        self.server_version = server_version
        self.capacity = capacity
        self._rows = np.zeros(2 * capacity, dtype=HOT_ROW)  # a frame writes at most 2 rows
        self._raw = self._rows.view(np.uint8).reshape(2 * capacity, HOT_ROW.itemsize)
        self._frames = np.zeros((capacity, ibwire.N_FRAME_COLUMNS), dtype=np.int64)
        self._picked = np.zeros(PICK_MAX, dtype=np.int64)
        self._buf = bytearray(max(buffer_bytes, 4096))
        self._view = np.frombuffer(self._buf, dtype=np.uint8)
        self._start = 0  # first byte not yet decoded
        self._end = 0  # end of the bytes received
        self._consumed = 0  # stream offset of self._start, for error messages
        self._fatal: str | None = None

    @property
    def buffered(self) -> int:
        """Bytes received and not decoded yet (a partial frame, or frames beyond capacity)."""
        return self._end - self._start

    def feed(self, data: bytes | bytearray | memoryview) -> Batch:
        """Append a socket read and decode every complete frame (up to ``capacity``)."""
        self.append(data)
        return self.decode()

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer a socket read without decoding it (``decode`` does, or ``pick`` looks)."""
        n = len(data)
        if n and self._fatal is None:
            if self._end + n > len(self._buf):
                self._make_room(n)
            self._buf[self._end : self._end + n] = data
            self._end += n

    def pick(self, wanted: np.ndarray) -> list[ColdFrame]:
        """Frames ``decode`` will take next whose message id ``wanted`` marks (a ``uint8``
        table by id as on the wire), found without decoding anything: what a receiver that
        must not wait for a big read's market data (an order's answer) takes first. Each is
        the ``ColdFrame`` ``decode`` will also return for it, with the same ``index``; ``at`` is
        0, the rows before it not being decoded yet. At most ``PICK_MAX``, the first ones."""
        if self._fatal is not None or self._end - self._start < 4:
            return []
        frames = self._frames  # decode rewrites every column of the rows it takes
        n_picked = _PICK_FRAMES(
            self._view, self._start, self._end, self.server_version, wanted, frames, self._picked
        )[4]
        view = self._view
        out = []
        for i in self._picked[:n_picked].tolist():
            offset, length, msg_id, _, _, _, _, payload = frames[i].tolist()
            out.append(ColdFrame(i, 0, msg_id, view[payload : offset + length].tobytes()))
        return out

    def decode(self) -> Batch:
        """Decode every complete frame buffered (up to ``capacity``)."""
        if self._fatal is not None:
            return Batch(self._rows[:0], [], [], 0, False, self._fatal, self._raw[:0])
        start = self._start
        end, n_frames, n_rows, n_other, status, bad_length = _DECODE_BATCH(
            self._view, start, self._end, self.server_version, self._rows, self._raw, self._frames
        )
        cold: list[ColdFrame] = []
        malformed: list[MalformedFrame] = []
        if n_other:
            self._collect(n_frames, cold, malformed)
        self._consumed += end - start
        self._start = end
        if self._start == self._end:
            self._start = self._end = 0
        fatal = None
        if status == ibwire.CUT_BAD_LENGTH:
            fatal = self._fatal = (
                f"IB message at stream offset {self._consumed} declares {bad_length} bytes, "
                f"more than ibapi's MAX_MSG_LEN {MAX_MSG_LEN} (error 507 BAD_LENGTH): the "
                "byte stream is corrupt or is not a TWS API connection; close the connection "
                "and reconnect"
            )
        more = status == ibwire.CUT_FULL
        return Batch(
            self._rows[:n_rows], cold, malformed, n_frames, more, fatal, self._raw[:n_rows]
        )

    def _collect(self, n_frames: int, cold: list[ColdFrame], bad: list[MalformedFrame]) -> None:
        frames = self._frames
        view = self._view
        status_col, hot = ibwire.F_STATUS, ibwire.FRAME_HOT
        if n_frames <= _FEW_FRAMES:  # a small read (an order's answer): no numpy calls
            rows = enumerate(frames[:n_frames].tolist())
            todo = [(i, r) for i, r in rows if r[status_col] != hot]
        else:
            picked = np.flatnonzero(frames[:n_frames, status_col] != hot).tolist()
            todo = [(i, frames[i].tolist()) for i in picked]
        for i, (offset, length, msg_id, status, at, _, err, payload) in todo:
            end = offset + length
            if status == ibwire.FRAME_COLD:
                cold.append(ColdFrame(i, at, msg_id, view[payload:end].tobytes()))
            else:
                reason = ibwire.ERROR_NAMES[err]
                bad.append(MalformedFrame(i, at, msg_id, reason, view[offset:end].tobytes()))

    def _make_room(self, n: int) -> None:
        keep = self._end - self._start
        need = keep + n
        if need <= len(self._buf):
            self._buf[:keep] = self._buf[self._start : self._end]
        else:
            grown = bytearray(max(2 * len(self._buf), need))
            grown[:keep] = self._buf[self._start : self._end]
            self._buf = grown
            self._view = np.frombuffer(self._buf, dtype=np.uint8)
        self._start, self._end = 0, keep
