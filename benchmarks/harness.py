"""The latency harness: the demo pipeline driven flat out, with per-stage nanosecond stamps.

Market data is generated before timing (the generator is the market, not the engine) and each
batch is stamped ``ts_recv`` as it is copied into the ring (``ArrayRing.write(batch, ts)``), as
a socket read would be. The engine records every stage's delta into its preallocated latency
rings; the report is p50/p90/p99/p99.9/max per stage, plus throughput.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import uvloop

from engine.app import build_app
from engine.clock import LiveClock
from engine.config import parse_config
from engine.metrics import LatencySummary

ROOT = Path(__file__).resolve().parent.parent


def pipeline_app(
    strategies: bool = True, venue_latency_us: float = 0.0, seed: int = 7, journal: str = ""
):
    """The shipped demo config; ``venue_latency_us`` 0 makes the venue answer inline;
    ``journal`` a journal file (batch fsync) every order and event is appended to."""
    data = tomllib.loads((ROOT / "config" / "demo.toml").read_text())
    if journal:
        data["journal"] = {"path": journal, "fsync": "batch"}
    data["venues"]["SIM"]["ack_latency_us"] = venue_latency_us
    data["venues"]["SIM"]["fill_latency_us"] = venue_latency_us
    data["metrics"]["enabled"] = False
    data["engine"]["log_level"] = "WARNING"
    data["feed"]["seed"] = seed
    if not strategies:
        data["strategies"] = []
    app = build_app(parse_config(data, "config/demo.toml (benchmark)"), LiveClock())
    app.engine.tracker._history = 1024
    return app


def pregenerate(app, n_batches: int, batch: int):
    return [app.feed.generate(batch, 0) for _ in range(n_batches)]


def read_socket(engine, deltas: np.ndarray, trades: np.ndarray) -> None:
    """What a venue adapter does with one socket read: write into the rings stamped with the
    read's arrival time (as the IB adapter's decoder does in its kernel), pump."""
    ts = engine.clock.now()
    engine.deltas.write(deltas, ts)
    if len(trades):
        engine.trades.write(trades, ts)
    engine.pump()


@contextmanager
def _no_gc():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def drive(app, batches) -> float:
    """Every batch back to back; returns elapsed seconds."""
    engine = app.engine
    with _no_gc():
        t0 = time.perf_counter()
        for d, t in batches:
            read_socket(engine, d, t)
        return time.perf_counter() - t0


async def drive_on_loop(app, batches) -> float:
    """Each batch as one event-loop callback, as socket reads arrive: the venue's answers come
    back through loop timers in between, off the order path being measured."""
    engine = app.engine
    with _no_gc():
        t0 = time.perf_counter()
        for d, t in batches:
            read_socket(engine, d, t)
            await asyncio.sleep(0)
        return time.perf_counter() - t0


@dataclass(frozen=True, slots=True)
class HarnessResult:
    updates: int
    seconds: float
    orders: int
    fills: int
    stages: list[LatencySummary]

    @property
    def updates_per_s(self) -> float:
        return self.updates / self.seconds


def _reset_latency(engine) -> None:
    for stage in engine.latency.stages.values():
        stage.fold()
        stage.fine[:] = 0
        stage.prom_counts[:] = 0
        stage.sum_ns = 0
        stage.max = 0


def run(
    n_batches: int = 3000, batch: int = 100, warmup: int = 500, journal: str = ""
) -> HarnessResult:
    """Throughput and per-stage latency with both strategies, venue answering 20 µs later;
    with ``journal`` (a path, removed first) every order and event is journaled."""

    async def main() -> HarnessResult:
        if journal:
            Path(journal).unlink(missing_ok=True)
        app = pipeline_app(venue_latency_us=20.0, journal=journal)
        app.clock.bind(asyncio.get_running_loop())
        engine = app.engine
        engine.start()
        app.feed.publish_snapshot(engine)
        await drive_on_loop(app, pregenerate(app, warmup, batch))
        _reset_latency(engine)
        orders0, fills0 = engine.router.orders, engine.fills
        batches = pregenerate(app, n_batches, batch)
        updates = sum(len(d) for d, _ in batches)
        seconds = await drive_on_loop(app, batches)
        await asyncio.sleep(0.01)
        if engine.journal is not None:
            engine.journal.close()
        return HarnessResult(
            updates,
            seconds,
            engine.router.orders - orders0,
            engine.fills - fills0,
            engine.latency.summaries(),
        )

    return uvloop.run(main())


if __name__ == "__main__":
    import argparse

    cli = argparse.ArgumentParser(
        prog="python -m benchmarks.harness",
        description="Per-stage latency of the demo pipeline with both strategies, the venue "
        "answering 20 µs later (make bench runs 16 x 12000 and 100 x 3000).",
    )
    cli.add_argument("--batch", type=int, default=100, help="market-data updates per socket read")
    cli.add_argument("--batches", type=int, default=3000, help="socket reads measured")
    cli.add_argument("--warmup", type=int, default=500, help="socket reads before measuring")
    args = cli.parse_args()
    r = run(n_batches=args.batches, batch=args.batch, warmup=args.warmup)
    print(f"{r.updates:,} updates in {r.seconds:.2f}s = {r.updates_per_s:,.0f}/s, "
          f"{r.orders} orders, {r.fills} fills")  # fmt: skip
    for s in r.stages:
        print(s.format_us())
