"""Tests for engine.journal: round trips, torn tails, damage in the middle, a real SIGKILL."""

from __future__ import annotations

import logging
import math
import os
import random
import select
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.journal import (
    FILE_HEADER,
    CancelRecord,
    EventRecord,
    Journal,
    JournalCorruptError,
    JournalError,
    MetaRecord,
    ModifyRecord,
    OrderRecord,
    StateRecord,
    VenueIdsRecord,
    read_journal,
)
from engine.messages import NO_PRICE, EventKind, OrderEvent
from engine.orders import Order, OrderExtras

ROOT = Path(__file__).resolve().parents[1]
NAN = math.nan


def order(coid: int = 7, extras: OrderExtras | None = None) -> Order:
    o = Order(coid, 2, 3, -1, 1, 0, 100, 10_002)
    o.extras = extras
    return o


def event(**kw: object) -> OrderEvent:
    ev = OrderEvent()
    for k, v in kw.items():
        setattr(ev, k, v)
    return ev


def same(a: object, b: object) -> bool:
    """Equality where NaN equals NaN (records compare field by field)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return same(tuple(a), tuple(b))
    return a == b


def without_offsets(records: list) -> list:
    return [r._replace(offset=-1) for r in records]


def write_sample(path: Path) -> list:
    """One record of every kind (the awkward values included); the records expected back."""
    extras = OrderExtras(NAN, 10_050, 0.5, NAN, math.inf, 10, 123, 2, (("maxPctVol", "0.1"),))
    fill = event(
        kind=EventKind.FILL, strategy_id=2, instrument_id=3, client_order_id=8,
        venue_order_id=41, side=-1, fill_lots=40, fill_price_ticks=10_001, cum_lots=40,
        leaves_lots=60, price_ticks=10_002, qty_lots=100, commission=NAN,
        exec_id="0000e0d5.01", ts_event=11, ts_recv=12,
    )  # fmt: skip
    rej = event(kind=EventKind.REJECTED, client_order_id=9, reason="prix hors limite — 201 ✗")
    with Journal.open(path, fsync="always") as j:
        j.append_meta("session_start", {"pid": 1, "floor": 2**40, "x": NAN, "l": [1, "a"]}, 1)
        j.append_order(order(7), 2, venue="SIM")
        j.append_order(order(8, extras), 3, venue="IB", shadow=True)
        j.append_venue_ids(8, "IB", 41, 1_234_567_890, 4)
        j.append_cancel(7, 5)
        j.append_modify(8, 90, -10_003, 6)
        j.append_event(fill)
        j.append_event(rej)
        j.append_state("HALTED", "daily loss 5.1% ≥ 5%", 7)
        assert (j.records, j.syncs) == (9, 9)
    return [
        MetaRecord("session_start", {"pid": 1, "floor": 2**40, "x": NAN, "l": [1, "a"]}, 1),
        OrderRecord(2, 7, 2, 3, -1, 1, 0, 100, 10_002, "SIM"),
        OrderRecord(3, 8, 2, 3, -1, 1, 0, 100, 10_002, "IB", True, extras),
        VenueIdsRecord(8, "IB", 41, 1_234_567_890, 4),
        CancelRecord(7, 5),
        ModifyRecord(8, 90, -10_003, 6),
        EventRecord(6, 2, 3, 8, 41, -1, 40, 10_001, 40, 60, 10_002, 100, NAN, "0000e0d5.01",
                    0, "", 11, 12),
        EventRecord(2, 0, 0, 9, 0, 1, 0, NO_PRICE, 0, 0, NO_PRICE, 0, 0.0, "", 0,
                    "prix hors limite — 201 ✗", 0, 0),
        StateRecord("HALTED", "daily loss 5.1% ≥ 5%", 7),
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Round trips


def test_every_record_kind_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "orders.journal"  # parent directories are created
    expected = write_sample(path)
    got = read_journal(path)
    assert (got.torn, got.corrupt_at, got.warnings, got.errors) == (0, None, [], [])
    assert got.end == path.stat().st_size
    assert same(without_offsets(got.records), expected)
    offsets = [r.offset for r in got.records]
    assert offsets[0] == len(FILE_HEADER) and offsets == sorted(offsets)
    assert type(got.records[2].extras) is OrderExtras
    assert got.records[2].extras.algo_params == (("maxPctVol", "0.1"),)


def test_records_rebuild_orders_and_events(tmp_path: Path) -> None:
    write_sample(tmp_path / "j")
    recs = read_journal(tmp_path / "j").records
    o = recs[2].to_order()
    assert (o.client_order_id, o.side, o.qty_lots, o.price_ticks) == (8, -1, 100, 10_002)
    assert o.extras == recs[2].extras and o.ts_sent == 3 and o.filled_lots == 0
    slot = event(kind=EventKind.CANCELLED, reason="stale", exec_id="old")
    ev = recs[6].to_event(slot)
    assert ev is slot and ev.kind is EventKind.FILL
    assert (ev.client_order_id, ev.fill_lots, ev.exec_id, ev.reason) == (8, 40, "0000e0d5.01", "")
    assert math.isnan(ev.commission)


def test_optional_order_slots_are_journaled_when_present(tmp_path: Path) -> None:
    o = _FullOrder(5, 1, 1, 1, 1, 0, 10, 99)
    o.shadow, o.parent_id, o.oca_group, o.oca_type, o.transmit = True, 4, "grp", 2, False
    with Journal.open(tmp_path / "j", fsync="never") as j:
        j.append_order(o, 1)
    (rec,) = read_journal(tmp_path / "j").records
    assert (rec.shadow, rec.parent_id, rec.oca_group, rec.oca_type, rec.transmit) == (
        True, 4, "grp", 2, False,
    )  # fmt: skip


def test_a_modify_that_moves_the_stop_or_trail_is_journaled_with_the_new_extras(
    tmp_path: Path,
) -> None:
    stop = OrderExtras(99.75, 9_975, NAN, NAN, NAN, 0, 0, 0, None)
    trail = OrderExtras(NAN, NO_PRICE, NAN, 1.5, NAN, 0, 0, 0, None, 3, "g", 1, False)
    with Journal.open(tmp_path / "j") as j:
        j.append_modify(7, 4, NO_PRICE, 1, stop)
        j.append_modify(8, 2, NO_PRICE, 2, trail)
        j.append_modify(9, 5, 10_000, 3)  # quantity and price only
    got = without_offsets(read_journal(tmp_path / "j").records)
    expected = [
        ModifyRecord(7, 4, NO_PRICE, 1, stop),
        ModifyRecord(8, 2, NO_PRICE, 2, trail),
        ModifyRecord(9, 5, 10_000, 3),
    ]
    assert same(got, expected)
    assert type(got[0].extras) is OrderExtras and got[2].extras is None


def test_bad_strings_are_kept_escaped_not_dropped(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j", fsync="never") as j:
        j.append_event(event(client_order_id=3, reason="bad \udcff byte"))
        j.append_state("HALTED", "\ud800", 1)
        j.append_venue_ids(4, "IB\udc80", 1, 2)
    ev, st_, ids = read_journal(tmp_path / "j").records
    assert (ev.client_order_id, ev.reason, st_.reason) == (3, "bad \\udcff byte", "\\ud800")
    assert (ids.client_order_id, ids.venue) == (4, "IB\\udc80")


def test_unencodable_values_raise_a_journal_error(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j", fsync="never") as j:
        with pytest.raises(JournalError, match="kind 2"):
            j.append_cancel(2**70, 1)
        with pytest.raises(JournalError, match="meta record 'x'"):
            j.append_meta("x", {"obj": object()}, 1)
        assert j.records == 0


def test_reopen_appends_after_existing_records(tmp_path: Path) -> None:
    path = tmp_path / "j"
    expected = write_sample(path)
    with Journal.open(path, fsync="batch") as j:
        assert same(without_offsets(j.contents.records), expected)  # read once, at open
        j.append_cancel(99, 100)
    got = read_journal(path).records
    assert len(got) == len(expected) + 1 and got[-1] == CancelRecord(99, 100, got[-1].offset)


def test_open_checks_its_arguments_and_the_lock(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sometimes"):
        Journal.open(tmp_path / "j", fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fsync_interval_ms"):
        Journal.open(tmp_path / "j", fsync_interval_ms=0)
    with Journal.open(tmp_path / "j"), pytest.raises(JournalError, match="another process"):
        Journal.open(tmp_path / "j")
    Journal.open(tmp_path / "j").close()  # the lock went with the first close


def test_not_a_journal_and_newer_format_are_refused(tmp_path: Path) -> None:
    (tmp_path / "cfg").write_text("[engine]\nname = 'x'\n")
    with pytest.raises(JournalError, match="not a tickwire journal"):
        Journal.open(tmp_path / "cfg")
    (tmp_path / "new").write_bytes(FILE_HEADER[:8] + struct.pack("<I4x", 99))
    with pytest.raises(JournalError, match="format 99"):
        read_journal(tmp_path / "new")


def test_batch_policy_syncs_when_the_interval_has_passed(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "j", fsync="batch", fsync_interval_ms=5.0) as j:
        assert j.next_sync_ns == 0 and not j.sync_due()
        j.append_cancel(1, 1)
        due = j.next_sync_ns
        assert due > 0
        j.append_cancel(2, 2)
        assert j.next_sync_ns == due  # the deadline is set by the first unsynced record
        assert not j.maybe_sync(due - 1) and j.syncs == 0
        assert j.maybe_sync(due) and j.syncs == 1 and j.next_sync_ns == 0
        assert not j.maybe_sync(due + 10**9)  # nothing pending
    never = Journal.open(tmp_path / "n", fsync="never")
    never.append_cancel(1, 1)
    assert never.next_sync_ns == 0 and never.syncs == 0
    never.close()
    assert never.closed


def test_unknown_record_kind_is_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    path = tmp_path / "j"
    with Journal.open(path, fsync="never") as j:
        j.append_cancel(1, 1)
    payload = b'["from the future"]'
    with open(path, "ab") as f:
        f.write(struct.pack("<IIH", len(payload), zlib.crc32(payload, 200), 200) + payload)
    with Journal.open(path, fsync="never") as j:
        j.append_cancel(2, 2)
    caplog.set_level(logging.WARNING)
    got = read_journal(path)
    assert [r.client_order_id for r in got.records] == [1, 2]
    assert got.corrupt_at is None and "record kind 200" in got.warnings[0]


def test_fields_added_by_a_newer_writer_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "j"
    Journal.open(path).close()
    payload = b'[5,6,"new field"]'
    with open(path, "ab") as f:
        f.write(struct.pack("<IIH", len(payload), zlib.crc32(payload, 2), 2) + payload)
    assert read_journal(path).records == [CancelRecord(5, 6, len(FILE_HEADER))]


# ---------------------------------------------------------------------------------------------
# Torn tails and damage


def _last_record_span(path: Path) -> tuple[int, int]:
    got = read_journal(path)
    return got.records[-1].offset, path.stat().st_size


def test_torn_tail_at_every_byte_is_skipped_and_cut_on_reopen(tmp_path: Path, caplog) -> None:
    full = tmp_path / "full"
    expected = write_sample(full)
    start, end = _last_record_span(full)
    data = full.read_bytes()
    caplog.set_level(logging.WARNING)
    for cut in range(start + 1, end):  # every proper prefix of the last record
        path = tmp_path / f"cut{cut}"
        path.write_bytes(data[:cut])
        got = read_journal(path)
        assert got.torn == cut - start and got.corrupt_at is None and got.end == start
        assert same(without_offsets(got.records), expected[:-1])
        assert f"torn last record at offset {start} ({cut - start} bytes)" in got.warnings[0]
        assert str(path) in got.warnings[0]
        with Journal.open(path, fsync="never") as j:
            assert j.contents.torn == cut - start
            j.append_cancel(cut, 1)
        assert path.stat().st_size == start + 10 + len(b"[%d,1]" % cut)
        again = read_journal(path)
        assert (again.torn, again.corrupt_at) == (0, None)
        assert again.records[-1] == CancelRecord(cut, 1, start)
        assert len(again.records) == len(expected)
        path.unlink()
    assert any("cut the torn last record off" in r.message for r in caplog.records)


def test_torn_file_header_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "j"
    path.write_bytes(FILE_HEADER[:5])
    assert read_journal(path).torn == 5
    with Journal.open(path) as j:
        j.append_cancel(1, 1)
    assert read_journal(path).records == [CancelRecord(1, 1, len(FILE_HEADER))]


def test_zero_filled_tail_is_torn_not_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "j"
    expected = write_sample(path)
    with open(path, "ab") as f:
        f.write(bytes(4096))  # a power cut after the size grew but before the data landed
    got = read_journal(path)
    assert got.torn == 4096 and got.corrupt_at is None
    assert same(without_offsets(got.records), expected)


def test_bad_checksum_in_the_last_record_is_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "j"
    expected = write_sample(path)
    start, end = _last_record_span(path)
    data = bytearray(path.read_bytes())
    data[end - 2] ^= 0x01
    path.write_bytes(data)
    got = read_journal(path)
    assert (got.torn, got.corrupt_at) == (end - start, None)
    assert "checksum" in got.warnings[0]
    assert len(got.records) == len(expected) - 1


@pytest.mark.parametrize("where", ["payload", "length", "kind"])
def test_damage_in_the_middle_is_reported_and_not_trusted(tmp_path: Path, where, caplog) -> None:
    path = tmp_path / "j"
    write_sample(path)
    recs = read_journal(path).records
    victim = recs[4].offset
    data = bytearray(path.read_bytes())
    pos = {"payload": victim + 12, "length": victim + 1, "kind": victim + 8}[where]
    data[pos] ^= 0x40
    path.write_bytes(data)
    caplog.set_level(logging.ERROR)
    got = read_journal(path)
    assert got.corrupt_at == victim and got.torn == 0
    assert same(without_offsets(got.records), without_offsets(recs[:4]))  # nothing after it
    assert f"offset {victim}" in got.errors[0] and f"truncate -s {victim}" in got.errors[0]
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    with pytest.raises(JournalCorruptError, match="damaged in the middle") as info:
        Journal.open(path)
    assert info.value.offset == victim
    assert path.read_bytes() == data  # nothing appended, nothing cut


# ---------------------------------------------------------------------------------------------
# A real crash

CHILD = """
import os, sys
from engine.journal import Journal
from engine.messages import OrderEvent
from engine.orders import Order
j = Journal.open(sys.argv[1], fsync="never")
ev = OrderEvent()
ev.reason = "x" * int(sys.argv[2])
out = int(sys.argv[3])
i = 0
while True:
    i += 1
    if i % 3 == 0:
        j.append_order(Order(i, 1, 2, 1, 1, 0, i, 100 + i), i)
    else:
        ev.client_order_id = i
        j.append_event(ev)
    os.write(out, i.to_bytes(8, "little"))
"""


@pytest.mark.parametrize("seed", range(4))
def test_sigkill_loses_no_appended_record(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = tmp_path / "j"
    r, w = os.pipe()
    # A long reason makes some records straddle page boundaries (a kill can split a write there).
    pad = rng.choice([10, 3000, 6000])
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(pad), str(w)],
        cwd=ROOT, pass_fds=(w,), stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(w)
    reported = 0
    target = rng.randint(50, 3000)
    buf = b""
    try:
        while reported < target:
            ready, _, _ = select.select([r], [], [], 10.0)
            assert ready, f"child wrote nothing for 10 s: {child.stderr.read()!r}"
            chunk = os.read(r, 65536)
            assert chunk, f"child died: {child.stderr.read()!r}"
            buf += chunk
            reported = int.from_bytes(buf[len(buf) // 8 * 8 - 8 : len(buf) // 8 * 8], "little")
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        while chunk := os.read(r, 65536):  # what it reported before it died
            buf += chunk
    finally:
        os.close(r)
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    reported = int.from_bytes(buf[len(buf) // 8 * 8 - 8 : len(buf) // 8 * 8], "little")
    got = read_journal(path)
    assert got.corrupt_at is None
    ids = [rec.client_order_id for rec in got.records]
    assert ids == list(range(1, len(ids) + 1))  # in order, none missing, none twice
    assert reported <= len(ids) <= reported + 1  # every acknowledged record, at most one more
    for rec in got.records:
        if isinstance(rec, OrderRecord):
            assert (rec.qty_lots, rec.price_ticks) == (rec.client_order_id, 100 + rec.ts_ns)
        else:
            assert rec.reason == "x" * pad
    with Journal.open(path, fsync="never") as j:  # and appending goes on after the crash
        j.append_cancel(0, 0)
    assert read_journal(path).records[-1].client_order_id == 0


# ---------------------------------------------------------------------------------------------
# Any sequence of records round-trips

_i64 = st.integers(-(2**63), 2**63 - 1)
_text = st.text(max_size=20)
_float = st.floats(allow_nan=True, allow_infinity=True)
_extras = st.builds(
    OrderExtras, _float, _i64, _float, _float, _float, _i64, _i64, st.integers(0, 9),
    st.none() | st.lists(st.tuples(_text, _text), max_size=3).map(tuple),
    _i64, _text, st.integers(0, 3), st.booleans(),
)  # fmt: skip
_records = st.one_of(
    st.builds(
        OrderRecord,
        _i64,
        _i64,
        _i64,
        _i64,
        st.sampled_from([1, -1]),
        _i64,
        _i64,
        _i64,
        _i64,
        _text,
        st.booleans(),
        st.none() | _extras,
        _i64,
        _text,
        _i64,
        st.booleans(),
    ),
    st.builds(CancelRecord, _i64, _i64),
    st.builds(ModifyRecord, _i64, _i64, _i64, _i64, st.none() | _extras),
    st.builds(
        EventRecord,
        st.sampled_from([int(k) for k in EventKind]),
        *[_i64] * 11,
        _float,
        _text,
        _i64,
        _text,
        _i64,
        _i64,
    ),
    st.builds(VenueIdsRecord, _i64, _text, _i64, _i64, _i64),
    st.builds(StateRecord, _text, _text, _i64),
    st.builds(
        MetaRecord,
        _text,
        st.dictionaries(_text, st.none() | st.booleans() | _i64 | _float | _text, max_size=4),
        _i64,
    ),
)


class _FullOrder(Order):
    """An Order with the slots the router and oca branches add (whether or not they landed)."""

    __slots__ = ("oca_group", "oca_type", "parent_id", "shadow", "transmit")


def _append(j: Journal, rec) -> None:
    """Write a record through the public API (the reference: the record itself)."""
    if isinstance(rec, OrderRecord):
        o = _FullOrder(*rec[1:9])
        o.extras, o.parent_id, o.oca_group = rec.extras, rec.parent_id, rec.oca_group
        o.oca_type, o.transmit, o.shadow = rec.oca_type, rec.transmit, False
        j.append_order(o, rec.ts_ns, rec.venue, rec.shadow)
    elif isinstance(rec, CancelRecord):
        j.append_cancel(*rec[:-1])
    elif isinstance(rec, ModifyRecord):
        j.append_modify(*rec[:-1])
    elif isinstance(rec, EventRecord):
        j.append_event(rec.to_event(OrderEvent()))
    elif isinstance(rec, VenueIdsRecord):
        j.append_venue_ids(*rec[:-1])
    elif isinstance(rec, StateRecord):
        j.append_state(*rec[:-1])
    else:
        j.append_meta(*rec[:-1])


@settings(max_examples=60, deadline=None)
@given(st.lists(_records, max_size=12))
def test_any_sequence_of_records_round_trips(tmp_path_factory, records) -> None:
    path = tmp_path_factory.mktemp("prop") / "j"
    path.write_bytes(FILE_HEADER)  # an empty journal, without the fsyncs of creating one
    with Journal.open(path, fsync="never") as j:
        for rec in records:
            _append(j, rec)
    got = read_journal(path)
    assert (got.torn, got.corrupt_at, got.warnings) == (0, None, [])
    assert same(without_offsets(got.records), without_offsets(records))
