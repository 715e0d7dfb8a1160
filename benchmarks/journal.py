"""Journal throughput and append latency (``engine.journal``), and the SQLite WAL anchor it was
chosen against: callable from ``benchmarks/run.py`` and from ``test_journal_bench.py``.

The record mix is what one order costs the journal in a session: the order, the venue's ids,
the acknowledgement and a fill. Each append is timed on its own (``perf_counter_ns`` around the
call); in batch mode the loop calls ``maybe_sync`` after every append, as the runtime's timer
would, and that call's time (the fdatasync when it is due) is counted in the same sample.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson

from engine.journal import Journal
from engine.messages import EventKind, OrderEvent
from engine.orders import Order


def sample_order(coid: int = 1) -> Order:
    return Order(coid, 1, 3, 1, 1, 0, 100, 10_002)


def sample_event(kind: EventKind = EventKind.FILL, coid: int = 1) -> OrderEvent:
    ev = OrderEvent()
    ev.kind = kind
    ev.strategy_id, ev.instrument_id, ev.client_order_id = 1, 3, coid
    ev.venue_order_id = 4711
    ev.fill_lots, ev.fill_price_ticks, ev.cum_lots, ev.leaves_lots = 100, 10_002, 100, 0
    ev.price_ticks, ev.qty_lots, ev.commission = 10_002, 100, 1.0
    ev.exec_id = "0000e0d5.6553b2a1.01.01"
    ev.ts_event = ev.ts_recv = 1_700_000_000_000_000_000
    return ev


def _mix(j: Journal) -> list[Callable[[int], None]]:
    order = sample_order()
    ack = sample_event(EventKind.ACCEPTED)
    fill = sample_event(EventKind.FILL)
    return [
        lambda i: j.append_order(order, i, "SIM"),
        lambda i: j.append_venue_ids(1, "SIM", 4711, 987_654_321, i),
        lambda i: j.append_event(ack),
        lambda i: j.append_event(fill),
    ]


def _summary(lat: np.ndarray, elapsed_ns: int, extra: dict) -> dict:
    p50, p99 = np.percentile(lat, [50, 99])
    return {
        "events_per_s": len(lat) * 1e9 / elapsed_ns,
        "p50_ns": float(p50),
        "p99_ns": float(p99),
        "max_ns": float(lat.max()),
        **extra,
    }


def journal_throughput(path: str | os.PathLike[str], n: int, fsync: str) -> dict:
    """Append ``n`` records (the order mix) to a new journal at ``path`` with the fsync policy;
    events/s over the whole run and p50/p99/max of one append (plus its ``maybe_sync``)."""
    Path(path).unlink(missing_ok=True)
    j = Journal.open(path, fsync=fsync)  # type: ignore[arg-type]
    mix = _mix(j)
    lat = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    batch = fsync == "batch"
    start = clock()
    for i in range(n):
        t = clock()
        mix[i & 3](i)
        if batch:
            j.maybe_sync()
        lat[i] = clock() - t
    elapsed = clock() - start
    j.close()
    return _summary(lat, elapsed, {"syncs": j.syncs, "bytes": j.bytes})


_SQLITE_SYNC = {"never": "OFF", "batch": "NORMAL", "always": "FULL"}


def sqlite_throughput(path: str | os.PathLike[str], n: int, fsync: str) -> dict:
    """The anchor: the same records as orjson blobs, one INSERT and one commit each (so a record
    is in the kernel when the call returns), SQLite in WAL mode with ``synchronous`` OFF /
    NORMAL / FULL for never / batch / always."""
    Path(path).unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={_SQLITE_SYNC[fsync]}")
    db.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, kind INTEGER, payload BLOB)")
    ev = sample_event()
    # The same values the file journal encodes, encoded the same way (orjson) per record.
    rows = [
        (1, 1, 1, 3, 1, 1, 0, 100, 10_002, "SIM", False, None, 0, "", 0, True),
        (1, "SIM", 4711, 987_654_321, 0),
        (1, 1, 3, 1, 4711, 1, 0, 0, 0, 100, 10_002, 100, 0.0, "", 0, "", ev.ts_event, ev.ts_recv),
        (6, 1, 3, 1, 4711, 1, 100, 10_002, 100, 0, 10_002, 100, 1.0, ev.exec_id, 0, "",
         ev.ts_event, ev.ts_recv),
    ]  # fmt: skip
    dumps = orjson.dumps
    insert = "INSERT INTO journal (kind, payload) VALUES (?, ?)"
    execute = db.execute
    lat = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    start = clock()
    for i in range(n):
        t = clock()
        execute("BEGIN")
        execute(insert, (i & 3, dumps(rows[i & 3])))
        execute("COMMIT")
        lat[i] = clock() - t
    elapsed = clock() - start
    db.close()
    return _summary(lat, elapsed, {})


def compare(directory: str | os.PathLike[str], n: int = 20_000) -> dict[str, dict]:
    """Both formats at every policy (``always`` with n/10 records: each costs a disk flush)."""
    d = Path(directory)
    out = {}
    for fsync in ("never", "batch", "always"):
        m = n if fsync != "always" else max(n // 10, 100)
        out[f"file_{fsync}"] = journal_throughput(d / f"j_{fsync}.journal", m, fsync)
        out[f"sqlite_{fsync}"] = sqlite_throughput(d / f"j_{fsync}.sqlite", m, fsync)
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(dir=os.environ.get("JOURNAL_BENCH_DIR")) as tmp:
        for name, r in compare(tmp, int(os.environ.get("JOURNAL_BENCH_N", "50000"))).items():
            rate, p50, p99, mx = r["events_per_s"], r["p50_ns"], r["p99_ns"], r["max_ns"]
            print(f"{name:16s} {rate:10,.0f}/s  p50 {p50:8,.0f} ns  ", end="")
            print(f"p99 {p99:10,.0f} ns  max {mx:11,.0f} ns")


def recovery_rate(path: str | os.PathLike[str]) -> dict:
    """How fast a restart rebuilds an engine from the journal at ``path``: ``read_journal``
    (parse and check every record) and ``recover`` (replay them into a fresh engine of the
    demo pipeline's config, venues not started), timed separately."""
    from benchmarks.harness import pipeline_app
    from engine.journal import read_journal
    from engine.recovery import recover

    t0 = time.perf_counter()
    contents = read_journal(path)
    t1 = time.perf_counter()
    app = pipeline_app()
    t2 = time.perf_counter()
    recover(app.engine, contents, str(path))
    t3 = time.perf_counter()
    records = len(contents.records)
    return {
        "records": records,
        "bytes": os.path.getsize(path),
        "read_s": t1 - t0,
        "replay_s": t3 - t2,
        "records_per_s": records / ((t1 - t0) + (t3 - t2)),
    }
