"""The order journal: an append-only file the engine writes every order fact to before acting on
it, and rebuilds from after a restart.

What goes in, in the order it happened: each new order that passed the risk gate (before it is
sent), each cancel and modify request, the venue's ids for an order (IB order id and permId),
each order event and fill (before the OMS and the strategy see it), trading-state changes, and
meta records (session start, id floors). ``read_journal`` gives them back as typed records.

Format (chosen by measurement, see below)
-----------------------------------------
A 16-byte file header (``b"TWJOURNL"``, format version u32, 4 reserved bytes), then records::

    u32 payload length | u32 CRC32 | u16 kind | payload

all little-endian. The CRC32 covers the payload and is seeded with the kind, so a damaged kind
fails the check too. The payload is an orjson array of plain values (int, float, str, bool,
None, nested arrays) whose order is fixed per kind by the record's NamedTuple below. A newer
writer may append fields (an older reader ignores them) and an older file may lack trailing
fields (they read as the NamedTuple's defaults). Kinds this build does not know are skipped with
a warning (the length says how far). Floats that are not finite are written as the strings
``"nan"``, ``"inf"``, ``"-inf"`` (JSON has no NaN; orjson would write null) and read back as
floats. Meta records carry their ``data`` as stdlib JSON text inside the array (NaN allowed).
Each record is written with a single ``os.write`` to an ``O_APPEND`` descriptor.

Measured (CPython 3.11, 2-vCPU VM shared with other jobs, ext4 on a virtio disk;
``python -m benchmarks.journal``: 50k appends of the mix order / venue ids / accepted / fill,
5k for ``always``; p50/p99 of one append call (in batch mode plus its ``maybe_sync``),
throughput over the whole run, syncs included). Two runs, the second under load average 3.7::

    policy   file: p50 / p99        records/s         SQLite WAL: p50 / p99   records/s
    never    2.8 / 6.3 µs           319k (252k)       14.0 / 32 µs            64k (39k)
    batch    3.0 / 6.7 µs           274k (168k)       14.8 / 40 µs            45k (25k)
    always   182 / 415 µs           5.2k (0.6k)       157 / 392 µs            5.3k (0.5k)

Per record kind (``benchmarks/test_journal_bench.py``, median per record): cancel 1.8 µs,
venue ids 2.1 µs, order 2.3 µs, fill 2.2 µs, acknowledgement 2.6 µs, order with extras 2.9 µs;
the SQLite anchor 11.3 µs (never) / 11.6 µs (batch).

Of a fill's append, reading the slots costs ~0.23 µs, orjson ~0.18 µs, CRC32 ~0.11 µs and the
header ~0.07 µs; the rest (~1.5 µs on this VM) is the ``write`` system call. SQLite (WAL, one
INSERT and one commit per record so that a record is in the kernel when the call returns, as
here) is mapped to the same policies: never = ``synchronous=OFF``, batch = ``NORMAL`` (the WAL
is fsynced only at checkpoints, so weaker than ours), always = ``FULL``. The file is 5-6x faster
at never and batch; with a disk flush per record (always) both are bound by the disk, a few
thousand records/s at best, which is why the default is batch. It also reads back in one pass
with no dependency and its torn tail is ours to detect: the journal is a file.

Durability policy
-----------------
* Once an ``append_*`` call returns, the record is in the kernel's page cache: a crash of the
  process (SIGKILL, segfault, OOM kill) loses nothing that was appended. A record being written
  at the moment of the kill may be torn; it is detected and skipped on the next read (and cut
  off before the next append).
* A power cut or kernel crash loses what was appended since the last ``fdatasync``:
  ``fsync="always"``: nothing that was acknowledged (one fdatasync per record, inside the
  append); ``"batch"`` (default): at most ``fsync_interval_ms`` (10 ms) of records, provided the
  runtime calls ``maybe_sync()`` from a loop timer at ``next_sync_ns`` (``time.monotonic_ns``
  scale; no thread here, and an append never syncs in batch mode: it only arms the deadline);
  ``"never"``: whatever the OS had not written back yet (dirty pages are flushed after ~30 s by
  default on Linux).
* A damaged record in the middle of the file (a bad checksum with intact records after it) is not
  something a crash produces: reading stops there and reports ``corrupt_at``; ``Journal.open``
  refuses to append to such a file.

When the file cannot be written (disk full, an I/O error, a file size limit, a short write)
------------------------------------------------------------------------------------------
An append never raises for it. The failed record and every record appended after it are held in
memory (``backlog``), in order, and ``append_*`` returns False; what a failed write left of its
record is cut off at once (``ftruncate`` back to the last whole record), so a later successful
write never leaves a torn record in the middle of the file. ``on_failure`` is called once, when
writes start failing (the engine halts trading there). ``retry()`` (the engine calls it from a
timer) writes the held records, in order, and syncs; once it returns True the journal takes
writes again. A caller that must not act on what is not journaled (a new order, a modify)
checks the return value; facts that happened anyway (a venue's order event, a cancel that goes
out regardless) are simply held. Held records die with the process: the venues'
reconciliation at the next start fills in what they said.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import json
import logging
import math
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from engine.messages import EventKind, OrderEvent
from engine.orders import Order, OrderExtras

log = logging.getLogger(__name__)

MAGIC = b"TWJOURNL"
FORMAT_VERSION = 1
_FILE_HEADER = struct.Struct("<8sI4x")
FILE_HEADER = _FILE_HEADER.pack(MAGIC, FORMAT_VERSION)
_REC = struct.Struct("<IIH")
REC_HEADER_SIZE = _REC.size
MAX_PAYLOAD = 1 << 24  # a length above this is damage, not a record

# Record kinds: stable numbers (they are in the files). 0 is never a kind: a zero-filled tail
# left by a power cut must not read as records.
K_ORDER = 1
K_CANCEL = 2
K_MODIFY = 3
K_EVENT = 4
K_VENUE_IDS = 5
K_STATE = 6
K_META = 7

FsyncPolicy = Literal["never", "batch", "always"]
_NEVER, _BATCH, _ALWAYS = 0, 1, 2
_POLICIES = {"never": _NEVER, "batch": _BATCH, "always": _ALWAYS}


class JournalError(Exception):
    """The journal cannot be opened, a record cannot be encoded, or it is closed; the message
    says which file and what to do. (A file that refuses writes raises nothing: see the module
    docstring.)"""


class JournalCorruptError(JournalError):
    """The journal is damaged in the middle (not merely torn at its end)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


# --------------------------------------------------------------------------------------------
# Records. Field order = payload order; ``offset`` (where the record starts in the file) is not
# in the payload. Fields after the first one with a default may be missing in older files.


class OrderRecord(NamedTuple):
    """A new order that passed the risk gate, written before it was sent."""

    ts_ns: int
    client_order_id: int
    strategy_id: int
    instrument_id: int
    side: int
    order_type: int
    tif: int
    qty_lots: int
    price_ticks: int
    venue: str = ""
    shadow: bool = False
    extras: OrderExtras | None = None
    parent_id: int = 0
    oca_group: str = ""
    oca_type: int = 0
    transmit: bool = True
    offset: int = -1

    def to_order(self) -> Order:
        """A fresh ``Order`` (state INITIALIZED, nothing filled) with this record's fields."""
        o = Order(
            self.client_order_id, self.strategy_id, self.instrument_id, self.side,
            self.order_type, self.tif, self.qty_lots, self.price_ticks,
        )  # fmt: skip
        o.extras = self.extras
        o.ts_sent = self.ts_ns
        # Slots other parts of the engine add to Order; set only where this build has them.
        for name in _ORDER_OPTIONAL:
            if hasattr(Order, name):
                setattr(o, name, getattr(self, name))
        return o


class CancelRecord(NamedTuple):
    client_order_id: int
    ts_ns: int
    offset: int = -1


class ModifyRecord(NamedTuple):
    """A modify request, written before it was sent; ``extras`` are the order's new extras
    when it moved the stop or trail (None: it kept them, or an older file)."""

    client_order_id: int
    qty_lots: int
    price_ticks: int
    ts_ns: int
    extras: OrderExtras | None = None
    offset: int = -1


class EventRecord(NamedTuple):
    """An ``OrderEvent`` as it arrived (every slot; ``kind`` as its int value)."""

    kind: int
    strategy_id: int
    instrument_id: int
    client_order_id: int
    venue_order_id: int
    side: int
    fill_lots: int
    fill_price_ticks: int
    cum_lots: int
    leaves_lots: int
    price_ticks: int
    qty_lots: int
    commission: float
    exec_id: str
    reason_code: int
    reason: str
    ts_event: int
    ts_recv: int
    offset: int = -1

    def to_event(self, ev: OrderEvent) -> OrderEvent:
        """Fill the slot ``ev`` with this record (every field is set) and return it."""
        for name, value in zip(_EVENT_FIELDS, self, strict=False):
            setattr(ev, name, value)
        kind = self.kind
        ev.kind = EventKind(kind) if kind in _EVENT_KINDS else kind
        return ev


class VenueIdsRecord(NamedTuple):
    """The venue's ids for an order: for IB the order id and the permId (``broker_id``)."""

    client_order_id: int
    venue: str
    venue_order_id: int
    broker_id: int
    ts_ns: int = 0
    offset: int = -1


class StateRecord(NamedTuple):
    """A trading-state change (ACTIVE / REDUCING / HALTED) and why."""

    state: str
    reason: str
    ts_ns: int
    offset: int = -1


class MetaRecord(NamedTuple):
    """Anything else recovery needs: session start, id floors, ... (``data`` is JSON-like)."""

    kind: str
    data: dict[str, Any]
    ts_ns: int
    offset: int = -1


Record = (
    OrderRecord | CancelRecord | ModifyRecord | EventRecord | VenueIdsRecord | StateRecord
    | MetaRecord
)  # fmt: skip

_ORDER_OPTIONAL = ("shadow", "parent_id", "oca_group", "oca_type", "transmit")
_EVENT_FIELDS = EventRecord._fields[:-1]
_EVENT_KINDS = frozenset(int(k) for k in EventKind)
_get_event = attrgetter(*_EVENT_FIELDS)
_EVENT_COMMISSION = _EVENT_FIELDS.index("commission")
_get_order_core = attrgetter(
    "client_order_id", "strategy_id", "instrument_id", "side", "order_type", "tif", "qty_lots",
    "price_ticks",
)  # fmt: skip
_EXTRAS_FLOATS = tuple(i for i, f in enumerate(OrderExtras._fields) if f in (
    "stop_price", "trail_amount", "trail_percent", "limit_offset"
))  # fmt: skip
_ALGO_PARAMS = OrderExtras._fields.index("algo_params")
_dumps = orjson.dumps
_crc32 = zlib.crc32
_pack_header = _REC.pack
_write = os.write


def _float_out(v: float) -> float | str:
    """JSON has no NaN or infinity: write those as strings float() reads back."""
    return v if v - v == 0.0 else repr(v)


def _float_in(v: Any) -> float:
    return float(v) if v is not None else math.nan


def _extras_out(e: OrderExtras) -> list[Any]:
    vals = list(e)
    for i in _EXTRAS_FLOATS:
        vals[i] = _float_out(vals[i])
    return vals


def _extras_in(v: list[Any] | None) -> OrderExtras | None:
    if v is None:
        return None
    vals = list(v[: len(OrderExtras._fields)])
    for i in _EXTRAS_FLOATS:
        vals[i] = _float_in(vals[i])
    params = vals[_ALGO_PARAMS]
    vals[_ALGO_PARAMS] = None if params is None else tuple((str(k), str(x)) for k, x in params)
    return OrderExtras(*vals)


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(slots=True)
class JournalContents:
    """What a journal file holds: its records in file order and what was wrong with it."""

    path: str
    records: list[Record] = field(default_factory=list)
    torn: int = 0  # bytes skipped at the tail (a record cut short by a crash)
    corrupt_at: int | None = None  # offset of a damaged record with data after it; None = ok
    end: int = 0  # offset just past the last good record (where appends continue)
    version: int = FORMAT_VERSION
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def read_journal(path: str | os.PathLike[str]) -> JournalContents:
    """Every record of the journal at ``path``, with a warning for a torn tail and an error
    (``corrupt_at``) for damage in the middle; raises ``JournalError`` for a file that is not a
    journal or comes from a newer format."""
    with open(path, "rb") as f:
        data = f.read()
    return _scan(data, str(path))


def _decode(kind: int, vals: list[Any], offset: int) -> Record:
    cls = _RECORD_CLASSES[kind]
    n = len(cls._fields) - 1
    if len(vals) > n:
        vals = vals[:n]  # fields a newer writer added
    if kind == K_ORDER:
        rec = OrderRecord(*vals, offset=offset)
        if rec.extras is not None:
            rec = rec._replace(extras=_extras_in(rec.extras))
        return rec
    if kind == K_MODIFY:
        rec = ModifyRecord(*vals, offset=offset)
        if rec.extras is not None:
            rec = rec._replace(extras=_extras_in(rec.extras))
        return rec
    if kind == K_EVENT:
        vals[_EVENT_COMMISSION] = _float_in(vals[_EVENT_COMMISSION])
        return EventRecord(*vals, offset=offset)
    if kind == K_META:
        name, data, ts = vals
        return MetaRecord(name, json.loads(data), ts, offset)
    return cls(*vals, offset=offset)


_RECORD_CLASSES: dict[int, type] = {
    K_ORDER: OrderRecord,
    K_CANCEL: CancelRecord,
    K_MODIFY: ModifyRecord,
    K_EVENT: EventRecord,
    K_VENUE_IDS: VenueIdsRecord,
    K_STATE: StateRecord,
    K_META: MetaRecord,
}


def _scan(data: bytes, file: str) -> JournalContents:
    out = JournalContents(file)
    n = len(data)
    hs = _FILE_HEADER.size
    if n < hs:
        if FILE_HEADER.startswith(data):  # died while creating the file
            out.torn = n
            if n:
                _torn(out, 0, n, "the file header is incomplete: the process died creating it")
            return out
        raise JournalError(f"journal {file}: not a tickwire journal (too short, no header)")
    magic, version = _FILE_HEADER.unpack_from(data)
    if magic != MAGIC:
        raise JournalError(
            f"journal {file}: not a tickwire journal (starts with {data[:8]!r}, "
            f"expected {MAGIC!r}); point [journal] path at a journal file or a new path"
        )
    if version > FORMAT_VERSION:
        raise JournalError(
            f"journal {file}: written in journal format {version}, this build reads up to "
            f"{FORMAT_VERSION}; run a newer tickwire to recover from it"
        )
    out.version = version
    pos = hs
    records = out.records
    unpack = _REC.unpack_from
    loads = orjson.loads
    while pos < n:
        left = n - pos
        if left < REC_HEADER_SIZE:
            _torn(out, pos, left, "the process died mid-write")
            break
        length, crc, kind = unpack(data, pos)
        end = pos + REC_HEADER_SIZE + length
        if length == 0 or length > MAX_PAYLOAD or kind == 0:
            if data.count(0, pos) == left:
                _torn(out, pos, left, "zero bytes at the end (a power cut during writeback)")
            else:
                _corrupt(out, pos, n, f"impossible header (length {length}, kind {kind})")
            break
        if end > n:
            if _resyncs(data, pos + REC_HEADER_SIZE):
                _corrupt(out, pos, n, f"length {length} runs past the end, records follow")
            else:
                _torn(out, pos, left, "the process died mid-write")
            break
        payload = data[pos + REC_HEADER_SIZE : end]
        if _crc32(payload, kind) != crc:
            if end == n:
                _torn(out, pos, left, "its checksum does not match (cut short by a power cut)")
            else:
                _corrupt(out, pos, n, "checksum mismatch")
            break
        if kind not in _RECORD_CLASSES:
            msg = (
                f"journal {file}: record kind {kind} at offset {pos} ({length} bytes) is not "
                "known to this build (written by a newer tickwire?); skipped"
            )
            log.warning(msg)
            out.warnings.append(msg)
        else:
            try:
                records.append(_decode(kind, loads(payload), pos))
            except (orjson.JSONDecodeError, TypeError, ValueError) as e:
                _corrupt(out, pos, n, f"a valid checksum but an unreadable payload ({e})")
                break
        pos = end
    out.end = pos
    return out


def _resyncs(data: bytes, start: int) -> bool:
    """Whether an intact record starts anywhere from ``start`` on: then a record that claims to
    run past the end had its length damaged, and is not a crash's torn tail (which is the end of
    the file: only a few KB to search)."""
    n = len(data)
    unpack = _REC.unpack_from
    for q in range(start, n - REC_HEADER_SIZE + 1):
        length, crc, kind = unpack(data, q)
        end = q + REC_HEADER_SIZE + length
        sane = 0 < length <= MAX_PAYLOAD and kind and end <= n
        if sane and _crc32(data[q + REC_HEADER_SIZE : end], kind) == crc:
            return True
    return False


def _torn(out: JournalContents, pos: int, nbytes: int, why: str) -> None:
    out.torn = nbytes
    msg = f"journal {out.path}: torn last record at offset {pos} ({nbytes} bytes) skipped: {why}"
    log.warning(msg)
    out.warnings.append(msg)


def _corrupt(out: JournalContents, pos: int, n: int, what: str) -> None:
    out.corrupt_at = pos
    msg = (
        f"journal {out.path}: record at offset {pos} is damaged ({what}) and {n - pos} bytes "
        "follow it: the file is damaged in the middle, not torn by a crash, so nothing from that "
        "offset on was read. Keep a copy of the file for inspection; to continue from the "
        f"records before it, cut the file there (truncate -s {pos} FILE) and let recovery "
        "reconcile the rest with the venue"
    )
    log.error(msg)
    out.errors.append(msg)


# --------------------------------------------------------------------------------------------
# Writing


class Journal:
    """An open journal, appending; see the module docstring for the format and durability."""

    __slots__ = (
        "_fd",
        "_interval_ns",
        "_policy",
        "_size",
        "backlog",
        "backlog_bytes",
        "bytes",
        "contents",
        "error",
        "failures",
        "fsync",
        "next_sync_ns",
        "on_failure",
        "path",
        "records",
        "syncs",
    )

    def __init__(
        self, path: str, fd: int, fsync: FsyncPolicy, interval_ms: float, contents: JournalContents
    ) -> None:
        self.path = path
        self._fd = fd
        self.fsync = fsync
        self._policy = _POLICIES[fsync]
        self._interval_ns = int(interval_ms * 1e6)
        self.contents = contents  # what the file held when opened: recovery reads it from here
        self.next_sync_ns = 0  # monotonic ns when unsynced records are due; 0 = none pending
        self.records = 0  # appended since open
        self.bytes = 0
        self.syncs = 0
        self._size = contents.end  # the file's length: just past the last whole record
        #: Why the file cannot be written now ("" while it can): the OS error, e.g.
        #: "No space left on device (ENOSPC)".
        self.error = ""
        self.failures = 0  # times writes started failing
        #: Records appended while the file could not be written, in order, whole (header
        #: included): ``retry`` writes them.
        self.backlog: deque[bytes] = deque()
        self.backlog_bytes = 0
        #: Called with the journal once each time writes start failing (not per record).
        self.on_failure: Callable[[Journal], object] | None = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        fsync: FsyncPolicy = "batch",
        fsync_interval_ms: float = 10.0,
    ) -> Journal:
        """Open (or create) the journal at ``path`` for appending: its contents are read once
        (``.contents``), a torn tail is cut off with a warning, and a file damaged in the middle
        raises ``JournalCorruptError`` rather than being appended to."""
        if fsync not in _POLICIES:
            raise ValueError(f"journal fsync must be one of never, batch, always; got {fsync!r}")
        if not fsync_interval_ms > 0:
            raise ValueError(f"journal fsync_interval_ms must be > 0, got {fsync_interval_ms!r}")
        p = Path(path)
        file = str(p)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(file, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalError(
                    f"journal {file} is open in another process (another engine running with "
                    "the same [journal] path?); stop it or use another path"
                ) from None
            size = os.fstat(fd).st_size
            contents = _scan(os.pread(fd, size, 0), file) if size else JournalContents(file)
            if contents.corrupt_at is not None:
                raise JournalCorruptError(contents.errors[-1], contents.corrupt_at)
            if contents.torn:
                log.warning(
                    "journal %s: cut the torn last record off (offset %d, %d bytes) before "
                    "appending", file, contents.end, contents.torn,
                )  # fmt: skip
                os.ftruncate(fd, contents.end)
            if contents.end == 0:  # new file (or one that died being created)
                _write_all(fd, FILE_HEADER)
                contents.end = len(FILE_HEADER)
                os.fsync(fd)
                _fsync_dir(p.parent)
            elif contents.torn:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(file, fd, fsync, fsync_interval_ms, contents)

    def _append(self, kind: int, payload: bytes) -> bool:
        """Write one record; False if it could not be written now (then it is held, in order,
        for ``retry``; see the module docstring)."""
        rec = _pack_header(len(payload), _crc32(payload, kind), kind) + payload
        if self.error:  # behind what is held: records reach the file in the order they came
            self.backlog.append(rec)
            self.backlog_bytes += len(rec)
            return False
        fd = self._fd
        size = len(rec)
        try:
            n = _write(fd, rec)
            if n != size:  # a regular file writes less only at a limit: the rest says which
                _write_rest(fd, rec, n)
        except OSError as e:
            if fd < 0:
                raise JournalError(
                    f"journal {self.path} is closed: nothing can be appended"
                ) from None
            self.backlog.append(rec)
            self.backlog_bytes += size
            self._fail(e)
            return False
        self._size += size
        self.records += 1
        self.bytes += size
        policy = self._policy
        if policy == _BATCH:
            if not self.next_sync_ns:
                self.next_sync_ns = time.monotonic_ns() + self._interval_ns
        elif policy == _ALWAYS:
            try:
                os.fdatasync(fd)
            except OSError as e:  # written, but not known to be on the disk: not acted on
                self._fail(e)
                return False
            self.syncs += 1
        return True

    def _fail(self, e: OSError) -> None:
        """Writes fail: cut off what the failed write left (a torn record must not end up in
        the middle of the file once writes succeed again), note why, and tell ``on_failure``
        the first time."""
        with contextlib.suppress(OSError):  # ``retry`` cuts it again before it writes
            os.ftruncate(self._fd, self._size)
        first = not self.error
        self.error = _describe(e)
        if not first:
            return
        self.failures += 1
        hook = self.on_failure
        if hook is not None:
            try:
                hook(self)
            except Exception:
                log.exception("journal %s: the on_failure hook raised", self.path)

    @property
    def problem(self) -> str:
        """What is wrong and what to do, for an operator ("" while the file can be written)."""
        if not self.error:
            return ""
        return f"journal {self.path} cannot be written: {self.error}; {_remedy(self.error)}"

    def retry(self) -> bool:
        """Write the records held while the file could not be written, in order, then sync
        (unless the policy is never); True once the journal takes writes again (nothing held,
        no error), False if the file still refuses them (``error`` says why; nothing held is
        lost or written twice)."""
        if not self.error:
            return True
        fd = self._fd
        backlog = self.backlog
        try:
            os.ftruncate(fd, self._size)  # a write that failed may have left part of a record
            while backlog:
                chunk, n = _chunk(backlog)
                done = _write(fd, chunk)
                if done != len(chunk):
                    _write_rest(fd, chunk, done)
                for _ in range(n):
                    backlog.popleft()
                size = len(chunk)
                self._size += size
                self.backlog_bytes -= size
                self.records += n
                self.bytes += size
            if self._policy != _NEVER:
                os.fdatasync(fd)
                self.syncs += 1
                self.next_sync_ns = 0
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._size)
            self.error = _describe(e)
            return False
        self.error = ""
        return True

    def _encode(self, kind: int, vals: Any) -> bytes:
        try:
            return _dumps(vals)
        except orjson.JSONEncodeError as e:
            if "surrogates" in str(e):
                return _dumps(_clean_strings(vals, self.path))
            raise JournalError(
                f"journal {self.path}: cannot encode a record of kind {kind} ({e}): {vals!r}"
            ) from None

    def append_order(self, order: Order, ts_ns: int, venue: str = "", shadow: bool = False) -> bool:
        """A new order that passed the risk gate; call before sending it, and do not send it
        when this returns False (the file cannot be written: the record is held)."""
        e = order.extras
        vals = (
            ts_ns, *_get_order_core(order), venue, shadow or getattr(order, "shadow", False),
            None if e is None else _extras_out(e), getattr(order, "parent_id", 0),
            getattr(order, "oca_group", ""), getattr(order, "oca_type", 0),
            getattr(order, "transmit", True),
        )  # fmt: skip
        return self._append(K_ORDER, self._encode(K_ORDER, vals))

    def append_cancel(self, client_order_id: int, ts_ns: int) -> bool:
        return self._append(K_CANCEL, self._encode(K_CANCEL, (client_order_id, ts_ns)))

    def append_modify(
        self,
        client_order_id: int,
        qty_lots: int,
        price_ticks: int,
        ts_ns: int,
        extras: OrderExtras | None = None,
    ) -> bool:
        """A modify request; ``extras`` when it moves the order's stop or trail. False: not
        written now (held), do not send it."""
        if extras is None:
            vals = (client_order_id, qty_lots, price_ticks, ts_ns)
        else:
            vals = (client_order_id, qty_lots, price_ticks, ts_ns, _extras_out(extras))
        return self._append(K_MODIFY, self._encode(K_MODIFY, vals))

    def append_event(self, ev: OrderEvent) -> bool:
        """An order event or fill as the venue reported it; call before the OMS applies it
        (False: held until the file takes writes again; apply it all the same)."""
        vals = _get_event(ev)
        c = ev.commission
        if c - c != 0.0:  # NaN or infinite: JSON cannot say it
            vals = list(vals)
            vals[_EVENT_COMMISSION] = repr(c)
        try:
            payload = _dumps(vals)
        except orjson.JSONEncodeError:
            payload = _dumps(_clean_strings(vals, self.path))
        return self._append(K_EVENT, payload)

    def append_venue_ids(
        self, client_order_id: int, venue: str, venue_order_id: int, broker_id: int, ts_ns: int = 0
    ) -> bool:
        """The venue's ids for an order (IB: order id and permId), as soon as they are known."""
        vals = (client_order_id, venue, venue_order_id, broker_id, ts_ns)
        return self._append(K_VENUE_IDS, self._encode(K_VENUE_IDS, vals))

    def append_state(self, state: str, reason: str, ts_ns: int) -> bool:
        vals = (state, reason, ts_ns)
        try:
            payload = _dumps(vals)
        except orjson.JSONEncodeError:
            payload = _dumps(_clean_strings(vals, self.path))
        return self._append(K_STATE, payload)

    def append_meta(self, kind: str, data: dict[str, Any], ts_ns: int) -> bool:
        """A meta record; ``data`` must be JSON-like (NaN and infinities survive)."""
        try:
            text = json.dumps(data, allow_nan=True, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise JournalError(f"journal {self.path}: meta record {kind!r}: {e}") from None
        return self._append(K_META, self._encode(K_META, (kind, text, ts_ns)))

    def sync_due(self, now_ns: int | None = None) -> bool:
        """True if unsynced records are older than the batch interval (``now_ns``: monotonic)."""
        due = self.next_sync_ns
        return bool(due) and (time.monotonic_ns() if now_ns is None else now_ns) >= due

    def maybe_sync(self, now_ns: int | None = None) -> bool:
        """Batch mode: fdatasync if the interval since the first unsynced record has passed
        (call from a loop timer at ``next_sync_ns``); True if it synced. While the file cannot
        be written, ``retry`` syncs instead."""
        if self.sync_due(now_ns) and not self.error:
            return self.sync()
        return False

    def sync(self) -> bool:
        """Make everything appended so far survive a power cut (fdatasync); False if the disk
        refused (then the journal fails as a refused write does: see ``retry``)."""
        try:
            os.fdatasync(self._fd)
        except OSError as e:
            self._fail(e)
            return False
        self.syncs += 1
        self.next_sync_ns = 0
        return True

    def close(self) -> None:
        """Write what is held (``retry``), sync (unless the policy is never) and close;
        appending afterwards raises. Records the file still refuses are logged as lost."""
        if self._fd < 0:
            return
        try:
            if self.error:
                self.retry()
            elif self._policy != _NEVER:
                self.sync()
            if self.error:
                log.critical(
                    "%s. Closing it with %d records (%d bytes) that could not be written: they "
                    "are lost with this process; at the next start the venues' reconciliation "
                    "reports those orders' states", self.problem, len(self.backlog),
                    self.backlog_bytes,
                )  # fmt: skip
        finally:
            os.close(self._fd)
            self._fd = -1

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_RETRY_CHUNK = 1 << 20  # held records are written back in writes of about this size


def _chunk(backlog: deque[bytes]) -> tuple[bytes, int]:
    """The first held records joined, up to about ``_RETRY_CHUNK`` bytes, and how many."""
    size = n = 0
    for rec in backlog:
        if n and size + len(rec) > _RETRY_CHUNK:
            break
        size += len(rec)
        n += 1
    return b"".join(itertools.islice(backlog, n)), n


def _write_rest(fd: int, data: bytes, done: int) -> None:
    """Finish a write that stopped short after ``done`` bytes: a regular file writes less than
    asked only at a limit (full disk, file size limit), and the next write raises with it."""
    view = memoryview(data)
    while done < len(data):
        n = os.write(fd, view[done:])
        if n <= 0:
            raise OSError(errno.ENOSPC, f"short write: {done} of {len(data)} bytes written")
        done += n


def _describe(e: OSError) -> str:
    """An OS error as an operator reads it: "No space left on device (ENOSPC)"."""
    name = errno.errorcode.get(e.errno or 0, "")
    text = e.strerror or str(e)
    return f"{text} ({name})" if name else text


_REMEDIES = {
    "ENOSPC": "free space on its file system",
    "EDQUOT": "free space or raise the disk quota",
    "EFBIG": (
        "the file reached a size limit (the process's ulimit -f / RLIMIT_FSIZE, or the file "
        "system's largest file): raise the limit or free space"
    ),
    "EIO": "the disk reported an I/O error: check the disk and the kernel log (dmesg)",
    "EROFS": "the file system went read-only (after errors?): check it and remount it writable",
}


def _remedy(error: str) -> str:
    for name, what in _REMEDIES.items():
        if f"({name})" in error:
            return what
    return "check the file system it is on"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(d: Path) -> None:
    """Make a new file's directory entry durable (otherwise a power cut can lose the file)."""
    try:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(dfd)


def _clean_strings(vals: Any, file: str) -> list[Any]:
    """A record whose strings orjson refused (lone surrogates from a bad decode): keep the record,
    with those characters escaped, rather than drop an order fact."""
    out = []
    for v in vals:
        if isinstance(v, str):
            v = v.encode("utf-8", "backslashreplace").decode("utf-8")
        out.append(v)
    try:
        _dumps(out)
    except orjson.JSONEncodeError as e:
        raise JournalError(f"journal {file}: cannot encode record {vals!r}: {e}") from None
    return out
