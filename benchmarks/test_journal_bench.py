"""Order journal appends (``engine.journal``) per record kind, against SQLite in WAL mode.

Each round appends 64 records of one kind to a real file (``tmp_path``, the disk the tests run
on); in batch mode the round ends with ``maybe_sync()``, as the runtime's timer would call it, so
the fdatasync every 10 ms is amortised into the figure. Target: one append (encode, CRC, one
``os.write``) in 2-4 µs. Anchor measured in the same run: one orjson-encoded record per INSERT
and commit into SQLite WAL (``synchronous=OFF`` for never, ``NORMAL`` for batch). Throughput and
p50/p99 for every policy, ``always`` included: ``benchmarks/journal.py``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import orjson
import pytest

from benchmarks.journal import sample_event, sample_order
from engine.journal import Journal
from engine.messages import EventKind
from engine.orders import OrderExtras

PER_ROUND = 64


def _per_record_ns(benchmark) -> None:
    benchmark.extra_info["messages_per_round"] = PER_ROUND
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["ns_per_record"] = benchmark.stats.stats.median * 1e9 / PER_ROUND


def _appenders(j: Journal) -> dict[str, Callable[[], None]]:
    order = sample_order()
    stop = sample_order(2)
    stop.extras = OrderExtras(float("nan"), 10_050, 0.5, float("nan"), 0.0, 0, 0, 0, None)
    fill = sample_event(EventKind.FILL)
    ack = sample_event(EventKind.ACCEPTED)
    return {
        "order": lambda: j.append_order(order, 1, "SIM"),
        "order_extras": lambda: j.append_order(stop, 1, "IB"),
        "fill": lambda: j.append_event(fill),
        "ack": lambda: j.append_event(ack),
        "venue_ids": lambda: j.append_venue_ids(1, "IB", 4711, 987_654_321, 1),
        "cancel": lambda: j.append_cancel(1, 1),
        "modify": lambda: j.append_modify(1, 50, 10_003, 1),
    }


@pytest.mark.parametrize("fsync", ["never", "batch"])
@pytest.mark.parametrize(
    "kind", ["order", "order_extras", "fill", "ack", "venue_ids", "cancel", "modify"]
)
def test_journal_append(benchmark, tmp_path, kind, fsync):
    """One record of ``kind`` appended (encode + CRC + os.write), per record; target 2-4 µs."""
    j = Journal.open(tmp_path / "bench.journal", fsync=fsync)
    append = _appenders(j)[kind]
    maybe_sync = j.maybe_sync

    def go():
        for _ in range(PER_ROUND):
            append()
        maybe_sync()

    go()
    benchmark.extra_info["target_ns"] = 4000
    benchmark(go)
    _per_record_ns(benchmark)
    j.close()
    assert j.records >= PER_ROUND


@pytest.mark.parametrize("fsync", ["never", "batch"])
def test_anchor_sqlite_wal(benchmark, tmp_path, fsync):
    """Anchor: a fill's fields as an orjson blob, one INSERT and COMMIT per record, WAL mode."""
    db = sqlite3.connect(tmp_path / "bench.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'OFF' if fsync == 'never' else 'NORMAL'}")
    db.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, kind INTEGER, payload BLOB)")
    ev = sample_event(EventKind.FILL)
    row = (6, 1, 3, 1, 4711, 1, 100, 10_002, 100, 0, 10_002, 100, 1.0, ev.exec_id, 0, "",
           ev.ts_event, ev.ts_recv)  # fmt: skip
    execute = db.execute
    dumps = orjson.dumps
    insert = "INSERT INTO journal (kind, payload) VALUES (4, ?)"

    def go():
        for _ in range(PER_ROUND):
            execute("BEGIN")
            execute(insert, (dumps(row),))
            execute("COMMIT")

    go()
    benchmark(go)
    _per_record_ns(benchmark)
    db.close()
