"""`make bench`: run the pytest-benchmark suites and the latency harness, then write
benchmarks/RESULTS.md with the machine, the figures, the ratios to the anchors measured in the
same run, and each target's verdict."""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numba
import numpy as np
import pytest

from benchmarks import anchors, harness

HERE = Path(__file__).resolve().parent


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _suites() -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        code = pytest.main(
            [str(HERE), "-q", "-p", "no:cacheprovider", f"--benchmark-json={out}",
             "--benchmark-disable-gc", "--benchmark-min-rounds=20"]
        )  # fmt: skip
        if code != 0:
            raise SystemExit(f"benchmark suites failed (pytest exit {code})")
        data = json.loads(out.read_text())
    res = {}
    for b in data["benchmarks"]:
        per = b["extra_info"].get("messages_per_round", 1)
        res[b["name"]] = {
            "median_ns": b["stats"]["median"] * 1e9 / per,
            "min_ns": b["stats"]["min"] * 1e9 / per,
            "per_round": per,
        }
    return res


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    suites = _suites()
    rtt = anchors.loopback_rtt_ns()
    rtt_p50, rtt_p99 = np.percentile(rtt, [50, 99])
    lat = {b: harness.run(n_batches=n, batch=b) for b, n in ((16, 12000), (100, 3000))}

    obj = suites["test_object_ring_write_drain"]["median_ns"]
    arr = suites["test_array_ring_batch_write_read"]["median_ns"]
    dq = suites["test_anchor_deque"]["median_ns"]
    aq = suites["test_anchor_asyncio_queue"]["median_ns"]
    pipe_ns = suites["test_pipeline_with_strategies"]["median_ns"]
    book_ns = suites["test_pipeline_book_only"]["median_ns"]
    pipe_rate = 1e9 / pipe_ns

    lines = [
        "# tickwire benchmark results",
        "",
        "Written by `make bench` (benchmarks/run.py). Machines here are shared and noisy: read",
        "the ratios to the anchors measured in the same run before the absolute figures.",
        "",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {_cpu()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({sys.implementation.name}), numpy "
        f"{np.__version__}, numba {numba.__version__}",
        "",
        "## Rings (per message, write + drain, from Python)",
        "",
        "| what | median ns/msg | vs deque anchor | target |",
        "|---|---|---|---|",
        f"| ObjectRing (order flow: claim, 4 fields, handler per message) | {obj:.0f} | "
        f"{obj / dq:.2f}x | <= 150 ns: {_verdict(obj <= 150)} |",
        f"| ArrayRing (market data: 256-row batch write + view read) | {arr:.1f} | "
        f"{arr / dq:.2f}x | <= 150 ns: {_verdict(arr <= 150)} |",
        f"| anchor: collections.deque append/popleft + handler | {dq:.0f} | 1.00x | |",
        f"| anchor: asyncio.Queue put_nowait/get_nowait + handler | {aq:.0f} | {aq / dq:.2f}x | |",
        "",
        "## Synthetic pipeline (book kernel, SMA + market maker, risk gate, router, sim venue)",
        "",
        "| what | updates/s | ns/update | target |",
        "|---|---|---|---|",
        f"| with both strategies | {pipe_rate:,.0f} | {pipe_ns:.0f} | >= 200,000/s: "
        f"{_verdict(pipe_rate >= 200_000)} |",
        f"| book only (anchor for the strategies' cost) | {1e9 / book_ns:,.0f} | {book_ns:.0f} | |",
        "",
        "## Latency harness (per-stage ns stamps; venue answers 20 µs later via loop timers)",
        "",
        f"Anchor: uvloop loopback TCP round trip, 64 B: p50 {rtt_p50 / 1e3:.1f} µs, "
        f"p99 {rtt_p99 / 1e3:.1f} µs (n={len(rtt)}).",
        "",
    ]
    for batch, r in lat.items():
        lines += [
            f"### {batch} updates per socket read: {r.updates_per_s:,.0f} updates/s, "
            f"{r.orders} orders, {r.fills} fills",
            "",
            "| stage | n | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in r.stages:
            lines.append(
                f"| {s.stage} | {s.count} | {s.p50 / 1e3:.1f} | {s.p90 / 1e3:.1f} | "
                f"{s.p99 / 1e3:.1f} | {s.p999 / 1e3:.1f} | {s.max / 1e3:.1f} |"
            )
        ttl = next(s for s in r.stages if s.stage == "tick_to_order")
        lines += [
            "",
            f"tick-to-order p99 {ttl.p99 / 1e3:.1f} µs = {ttl.p99 / rtt_p99:.2f}x the loopback "
            f"RTT p99; target <= 50 µs: {_verdict(ttl.p99 <= 50_000)}",
            "",
        ]
    text = "\n".join(lines)
    (HERE / "RESULTS.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
