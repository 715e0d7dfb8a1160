"""Tests for engine.metrics (latency histograms, Prometheus exposition, /metrics server)
and engine.log (JSON-lines logging)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.log import JsonLinesFormatter, setup_logging
from engine.metrics import (
    _FINE_EDGES,
    _PROM_EDGES_NS,
    PROM_BOUNDS_S,
    EngineCollector,
    LatencyRecorder,
    LatencySummary,
    LoopMonitor,
    MetricsServer,
    StageLatency,
)

QUANTILES = (0.5, 0.9, 0.99, 0.999)


def lognormal_ns(seed: int, n: int, median_ns: float = 20_000.0, sigma: float = 0.8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(rng.lognormal(math.log(median_ns), sigma, n), 1).astype(np.int64)


def expected_fine(samples: np.ndarray) -> np.ndarray:
    """The fine histogram ``samples`` should produce: every sample binned exactly once."""
    idx = np.searchsorted(_FINE_EDGES, np.maximum(samples, 0), side="left")
    return np.bincount(idx, minlength=len(_FINE_EDGES) + 1)


def expected_prom(samples: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(_PROM_EDGES_NS, np.maximum(samples, 0), side="left")
    return np.bincount(idx, minlength=len(_PROM_EDGES_NS) + 1)


def assert_stage_matches(stage: StageLatency, samples: np.ndarray) -> None:
    stage.fold()
    assert stage.count == len(samples)
    assert stage.max == int(samples.max())
    assert stage.sum_ns == int(samples.sum())
    np.testing.assert_array_equal(stage.fine, expected_fine(samples))
    np.testing.assert_array_equal(stage.prom_counts, expected_prom(samples))


def assert_quantiles_close(stage: StageLatency, samples: np.ndarray) -> None:
    stage.fold()  # quantile() reads the folded histogram only
    for q in QUANTILES:
        want = float(np.percentile(samples, q * 100))
        got = stage.quantile(q)
        assert abs(got - want) / want <= 0.03, f"q={q}: got {got}, numpy {want}"


# ---------------------------------------------------------------------------------------------
# StageLatency


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_quantiles_recorded_one_by_one(seed: int) -> None:
    samples = lognormal_ns(seed, 30_000)
    stage = StageLatency("risk", 4096)  # 30k samples: the ring folds several times
    for s in samples.tolist():
        stage.record(s)
    assert stage.count == len(samples)
    assert_quantiles_close(stage, samples)
    assert_stage_matches(stage, samples)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_quantiles_recorded_with_record_many(seed: int) -> None:
    samples = lognormal_ns(seed, 60_000, median_ns=250_000.0, sigma=1.2)
    stage = StageLatency("feed_to_book", 1024)
    rng = np.random.default_rng(seed)
    i = 0
    while i < len(samples):
        # Mostly ring-sized chunks, sometimes bigger than the whole ring.
        k = int(rng.choice([1, 7, 300, 1000, 1023, 1024, 1025, 5000]))
        stage.record_many(samples[i : i + k])
        i += k
    assert stage.count == len(samples)
    assert_quantiles_close(stage, samples)
    assert_stage_matches(stage, samples)


def test_record_many_larger_than_ring_in_one_call() -> None:
    samples = lognormal_ns(7, 100_000)
    stage = StageLatency("strategy", 256)
    stage.record_many(samples[:100])
    stage.record_many(samples[100:])
    assert_quantiles_close(stage, samples)
    assert_stage_matches(stage, samples)


def test_record_after_record_many_filled_the_ring() -> None:
    """record_many may leave the ring exactly full; the next record must not overwrite an
    unfolded sample."""
    stage = StageLatency("route", 8)
    stage.record(1_000_000)
    stage.record_many(np.full(7, 1_000, dtype=np.int64))  # 8 unfolded samples: ring full
    stage.record(2_000)
    samples = np.array([1_000_000, *[1_000] * 7, 2_000], dtype=np.int64)
    stage.fold()
    assert stage.max == 1_000_000
    assert_stage_matches(stage, samples)


def test_mixed_record_and_record_many() -> None:
    rng = np.random.default_rng(11)
    samples = lognormal_ns(11, 40_000)
    stage = StageLatency("tick_to_order", 64)
    i = 0
    while i < len(samples):
        if rng.random() < 0.5:
            stage.record(int(samples[i]))
            i += 1
        else:
            k = int(rng.integers(1, 100))
            stage.record_many(samples[i : i + k])
            i += k
    assert_stage_matches(stage, samples)
    assert_quantiles_close(stage, samples)


def test_summary_fields() -> None:
    samples = lognormal_ns(8, 20_000)
    stage = StageLatency("order_ack", 2048)
    stage.record_many(samples[:1000])
    for s in samples[1000:].tolist():
        stage.record(s)
    summary = stage.summary()
    assert isinstance(summary, LatencySummary)
    assert summary.stage == "order_ack"
    assert summary.count == len(samples)
    assert summary.max == float(samples.max())
    assert summary.mean == pytest.approx(float(samples.mean()), rel=1e-9)
    assert summary.p50 <= summary.p90 <= summary.p99 <= summary.p999 <= summary.max
    for q, got in zip(
        QUANTILES, (summary.p50, summary.p90, summary.p99, summary.p999), strict=True
    ):
        want = float(np.percentile(samples, q * 100))
        assert abs(got - want) / want <= 0.03
    assert "n=20000" in summary.format_us()


def test_quantile_never_exceeds_max() -> None:
    stage = StageLatency("x", 16)
    for v in (1_000, 1_000, 1_000, 1_003):
        stage.record(v)
    stage.fold()
    assert stage.quantile(1.0) == 1_003
    assert stage.quantile(0.5) <= 1_003
    assert stage.quantile(0.5) >= 1_000


def test_huge_sample_beyond_fine_edges() -> None:
    stage = StageLatency("x", 16)
    stage.record(10**12)  # 1000 s, above the last fine edge
    stage.fold()
    assert stage.max == 10**12
    assert stage.quantile(0.5) == float(10**12)
    assert stage.prom_counts[-1] == 1


def test_negative_samples_are_clamped_to_zero() -> None:
    stage = StageLatency("x", 16)
    stage.record(-5)
    stage.record(100)
    stage.fold()
    assert stage.count == 2
    assert stage.max == 100
    assert stage.sum_ns == 100
    assert stage.fine[0] == 1


def test_empty_stage() -> None:
    stage = StageLatency("idle", 16)
    assert stage.quantile(0.99) == 0.0
    summary = stage.summary()
    assert summary.count == 0
    assert summary.mean == 0.0
    assert summary.max == 0.0
    assert "n=0" in summary.format_us()


def test_fold_is_idempotent() -> None:
    samples = lognormal_ns(9, 500)
    stage = StageLatency("x", 1024)
    stage.record_many(samples)
    stage.fold()
    stage.fold()
    assert int(stage.fine.sum()) == 500
    assert_stage_matches(stage, samples)


def test_latency_recorder() -> None:
    rec = LatencyRecorder(["a", "b"], capacity=64)
    assert set(rec.stages) == {"a", "b"}
    rec["a"].record_many(np.arange(1, 201, dtype=np.int64))
    rec["b"].record(5)
    rec.fold()
    summaries = rec.summaries()
    assert [s.stage for s in summaries] == ["a", "b"]
    assert [s.count for s in summaries] == [200, 1]
    assert summaries[0].max == 200.0
    with pytest.raises(KeyError):
        rec["c"]


# ---------------------------------------------------------------------------------------------
# Prometheus exposition


def samples_by_name(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def one(samples: dict, name: str, **labels: str) -> float:
    found = [v for lab, v in samples.get(name, []) if lab == labels]
    assert len(found) == 1, f"{name}{labels}: {found} in {samples.get(name)}"
    return found[0]


def make_registry(
    latency: LatencyRecorder, counters: list | None = None, gauges: list | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        EngineCollector(latency, lambda: list(counters or []), lambda: list(gauges or []))
    )
    return registry


def test_exposition_histogram_buckets() -> None:
    latency = LatencyRecorder(["decode", "route"], capacity=16)
    values = [500, 1_000, 3_000, 2_000_000, 2_000_000_000]  # 1 µs falls in le="1e-06"
    for v in values:
        latency["decode"].record(v)
    text = generate_latest(make_registry(latency)).decode()
    assert 'tickwire_stage_latency_seconds_bucket{le="+Inf",stage="decode"} 5.0' in text
    assert "# TYPE tickwire_stage_latency_seconds histogram" in text

    samples = samples_by_name(text)
    bucket = "tickwire_stage_latency_seconds_bucket"
    expected = {b: sum(1 for v in values if v <= round(b * 1e9)) for b in PROM_BOUNDS_S}
    for b, want in expected.items():
        assert one(samples, bucket, stage="decode", le=repr(b)) == want
    assert expected[1e-6] == 2
    assert one(samples, bucket, stage="decode", le="+Inf") == 5
    assert one(samples, "tickwire_stage_latency_seconds_count", stage="decode") == 5
    assert one(samples, "tickwire_stage_latency_seconds_sum", stage="decode") == pytest.approx(
        sum(values) / 1e9
    )
    # An idle stage is still exposed, with zero counts.
    assert one(samples, bucket, stage="route", le="+Inf") == 0


def test_exposition_cumulative_counts_on_many_samples() -> None:
    latency = LatencyRecorder(["feed_to_book"], capacity=1024)
    values = lognormal_ns(10, 25_000, median_ns=50_000.0, sigma=2.0)
    latency["feed_to_book"].record_many(values[:20_000])
    for v in values[20_000:].tolist():
        latency["feed_to_book"].record(v)
    samples = samples_by_name(generate_latest(make_registry(latency)).decode())
    buckets = [
        (lab["le"], v)
        for lab, v in samples["tickwire_stage_latency_seconds_bucket"]
        if lab["stage"] == "feed_to_book"
    ]
    assert [le for le, _ in buckets] == [repr(b) for b in PROM_BOUNDS_S] + ["+Inf"]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    assert counts[-1] == len(values)
    for b, c in zip(PROM_BOUNDS_S, counts, strict=False):
        assert c == int(np.sum(values <= round(b * 1e9)))


def test_exposition_counters_and_gauges() -> None:
    latency = LatencyRecorder(["risk"], capacity=16)
    counters = [
        ("orders_total", "Orders sent.", {}, 7),
        ("messages_total", "Messages written to a ring.", {"ring": "deltas"}, 100),
        ("messages_total", "Messages written to a ring.", {"ring": "intents"}, 5),
    ]
    gauges = [
        ("trading_state", "Trading state.", {"state": "active"}, 1.0),
        ("trading_state", "Trading state.", {"state": "halted"}, 0.0),
        ("strategy_pnl", "P&L.", {"strategy": "sma"}, -12.5),
    ]
    text = generate_latest(make_registry(latency, counters, gauges)).decode()
    assert "# TYPE tickwire_orders_total counter" in text
    assert "# TYPE tickwire_messages_total counter" in text
    assert "# TYPE tickwire_trading_state gauge" in text
    samples = samples_by_name(text)
    assert one(samples, "tickwire_orders_total") == 7
    assert one(samples, "tickwire_messages_total", ring="deltas") == 100
    assert one(samples, "tickwire_messages_total", ring="intents") == 5
    assert one(samples, "tickwire_trading_state", state="active") == 1
    assert one(samples, "tickwire_trading_state", state="halted") == 0
    assert one(samples, "tickwire_strategy_pnl", strategy="sma") == -12.5


def test_exposition_reads_live_values_each_scrape() -> None:
    latency = LatencyRecorder(["risk"], capacity=16)
    state = {"orders": 1}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        EngineCollector(
            latency, lambda: [("orders_total", "Orders.", {}, state["orders"])], lambda: []
        )
    )
    latency["risk"].record(1_000)
    first = samples_by_name(generate_latest(registry).decode())
    second = samples_by_name(generate_latest(registry).decode())
    inf = "tickwire_stage_latency_seconds_bucket"
    # Scraping twice does not count samples twice.
    assert (
        one(first, inf, stage="risk", le="+Inf") == one(second, inf, stage="risk", le="+Inf") == 1
    )
    state["orders"] = 42
    latency["risk"].record(2_000)
    third = samples_by_name(generate_latest(registry).decode())
    assert one(third, "tickwire_orders_total") == 42
    assert one(third, inf, stage="risk", le="+Inf") == 2


def test_engine_registry_from_demo_config() -> None:
    from engine.app import build_app
    from engine.config import load_config
    from engine.runtime import STAGES

    demo = Path(__file__).resolve().parents[1] / "config" / "demo.toml"
    app = build_app(load_config(demo))
    samples = samples_by_name(generate_latest(app.engine.prometheus_registry()).decode())
    for stage in STAGES:
        assert one(samples, "tickwire_stage_latency_seconds_count", stage=stage) == 0
    rings = {lab["ring"] for lab, _ in samples["tickwire_messages_total"]}
    assert len(rings) == 5
    assert one(samples, "tickwire_orders_total") == 0
    states = {lab["state"]: v for lab, v in samples["tickwire_trading_state"]}
    assert sum(states.values()) == 1


# ---------------------------------------------------------------------------------------------
# LoopMonitor


async def _run_monitor(block) -> LoopMonitor:
    """A 1 ms monitor around one callback that holds the loop (``block``)."""
    loop = asyncio.get_running_loop()
    monitor = LoopMonitor(loop, 0.001, 0.005)
    monitor.start()
    await asyncio.sleep(0.02)  # a few on-time ticks first
    loop.call_soon(block)
    await asyncio.sleep(0.02)
    monitor.stop()
    assert not monitor.running
    return monitor


async def test_loop_monitor_counts_a_stall_of_our_own_code_as_busy() -> None:
    def spin() -> None:  # 50 ms of this thread's CPU time, whatever else the machine does
        end = time.thread_time_ns() + 50_000_000
        while time.thread_time_ns() < end:
            pass

    monitor = await _run_monitor(spin)
    assert monitor.stalls >= 1
    assert monitor.worst_ns >= 49_000_000
    assert monitor.stall_busy_ns >= 48_000_000  # the CPU time less one 1 ms interval
    assert monitor.stall_busy_ns + monitor.stall_off_cpu_ns <= monitor.stall_ns
    # The not-running part's split is within it (a µs of skew between the two clocks' reads).
    split = monitor.stall_queued_ns + monitor.stall_away_ns
    assert split <= monitor.stall_off_cpu_ns + 100_000
    assert monitor.lag.summary().count >= 5
    assert "stalls over 5 ms" in monitor.describe()


async def test_loop_monitor_counts_a_stall_off_the_cpu_as_not_running() -> None:
    monitor = await _run_monitor(lambda: time.sleep(0.05))  # held, but not on a CPU
    assert monitor.stalls >= 1
    assert monitor.worst_ns >= 49_000_000
    assert monitor.stall_off_cpu_ns >= 40_000_000
    assert monitor.stall_busy_ns <= 5_000_000
    if monitor.splits_off_cpu:  # blocked in a call: not waiting for a CPU
        assert monitor.stall_away_ns >= 40_000_000
        assert monitor.stall_queued_ns <= 5_000_000
        assert "neither: blocked, or the vCPU away" in monitor.describe()


@pytest.mark.skipif(
    not Path("/proc/thread-self/schedstat").exists() or not hasattr(os, "sched_setaffinity"),
    reason="needs Linux schedstat and CPU affinity",
)
async def test_loop_monitor_counts_waiting_behind_another_task_for_the_cpu() -> None:
    """Another process spinning on the loop thread's one CPU: a stall of our code then also
    waits for that CPU, and the run delay says so."""
    cpu = min(os.sched_getaffinity(0))
    before = os.sched_getaffinity(0)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(hog.pid, {cpu})
        os.sched_setaffinity(0, {cpu})  # this thread: the loop's
        deadline = time.monotonic() + 10
        while _cpu_ticks(hog.pid) < 5 and time.monotonic() < deadline:  # it is spinning
            await asyncio.sleep(0.01)

        def spin() -> None:  # 30 ms of this thread's CPU time, shared with the hog
            end = time.thread_time_ns() + 30_000_000
            while time.thread_time_ns() < end:
                pass

        monitor = await _run_monitor(spin)
    finally:
        os.sched_setaffinity(0, before)
        hog.kill()
        hog.wait()
    assert monitor.splits_off_cpu
    assert monitor.stalls >= 1
    assert monitor.stall_busy_ns >= 25_000_000
    assert monitor.stall_queued_ns >= 10_000_000  # ~30 ms on an even share
    assert "waiting for its CPU behind other tasks" in monitor.describe()


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def test_loop_monitor_metrics_are_exported() -> None:
    monitor = await _run_monitor(lambda: time.sleep(0.03))
    latency = LatencyRecorder(["tick_to_order"], capacity=16)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        EngineCollector(latency, lambda: [], lambda: [], loop_monitor=lambda: monitor)
    )
    samples = samples_by_name(generate_latest(registry).decode())
    ticks = one(samples, "tickwire_loop_lag_seconds_count")
    assert ticks == monitor.lag.count >= 5
    assert one(samples, "tickwire_loop_lag_seconds_bucket", le="+Inf") == ticks
    assert one(samples, "tickwire_loop_lag_seconds_bucket", le="0.01") < ticks  # the 30 ms one


# ---------------------------------------------------------------------------------------------
# MetricsServer


@pytest.fixture
def populated_registry() -> CollectorRegistry:
    latency = LatencyRecorder(["tick_to_order"], capacity=64)
    latency["tick_to_order"].record_many(np.array([1_500, 30_000, 700_000], dtype=np.int64))
    return make_registry(latency, [("fills_total", "Fills.", {}, 3)], [])


async def test_metrics_server_serves_metrics_and_health(
    populated_registry: CollectorRegistry,
) -> None:
    server = MetricsServer(populated_registry, "127.0.0.1", 0)
    port = await server.start()
    try:
        assert isinstance(port, int)
        assert port > 0
        assert server.port == port
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                text = await resp.text()
            async with session.get(f"{base}/health") as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "ok"}
            async with session.get(f"{base}/nope") as resp:
                assert resp.status == 404
        samples = samples_by_name(text)
        bucket = "tickwire_stage_latency_seconds_bucket"
        assert one(samples, bucket, stage="tick_to_order", le="+Inf") == 3
        assert one(samples, bucket, stage="tick_to_order", le="5e-05") == 2
        assert one(samples, "tickwire_fills_total") == 3
    finally:
        await server.stop()
    assert server._runner is None
    # The port is closed after stop.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/health")
    await server.stop()  # a second stop is harmless


async def test_metrics_server_with_blocking_client(
    populated_registry: CollectorRegistry,
) -> None:
    server = MetricsServer(populated_registry, "127.0.0.1", 0)
    port = await server.start()

    def fetch(path: str) -> tuple[int, str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()

    try:
        status, body = await asyncio.to_thread(fetch, "/metrics")
        assert status == 200
        assert 'tickwire_stage_latency_seconds_bucket{le="+Inf",stage="tick_to_order"} 3.0' in body
        status, body = await asyncio.to_thread(fetch, "/health")
        assert status == 200
        assert json.loads(body) == {"status": "ok"}
    finally:
        await server.stop()
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(fetch, "/health")


async def test_two_servers_on_port_zero_get_different_ports(
    populated_registry: CollectorRegistry,
) -> None:
    a = MetricsServer(populated_registry, "127.0.0.1", 0)
    b = MetricsServer(populated_registry, "127.0.0.1", 0)
    try:
        pa = await a.start()
        pb = await b.start()
        assert pa != pb
    finally:
        await a.stop()
        await b.stop()


# ---------------------------------------------------------------------------------------------
# Logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def json_lines(err: str) -> list[dict]:
    lines = err.splitlines()
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]


def test_json_lines_logging(capsys: pytest.CaptureFixture[str], restore_root_logger: None) -> None:
    setup_logging("INFO", json_lines=True)
    log = logging.getLogger("tickwire.test")
    log.info("hello %s", "world")
    log.warning('two\nlines with "quotes" and ünïcode')
    log.debug("not shown at INFO")
    captured = capsys.readouterr()
    assert captured.out == ""
    docs = json_lines(captured.err)
    assert len(docs) == 2
    assert docs[0]["level"] == "INFO"
    assert docs[0]["logger"] == "tickwire.test"
    assert docs[0]["msg"] == "hello world"
    assert isinstance(docs[0]["ts"], float)
    assert docs[1]["level"] == "WARNING"
    assert docs[1]["msg"] == 'two\nlines with "quotes" and ünïcode'
    assert "exc" not in docs[0]


def test_json_lines_logging_with_exception(
    capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    setup_logging("DEBUG", json_lines=True)
    log = logging.getLogger("engine.ring")
    try:
        raise ValueError("bad message")
    except ValueError:
        log.exception("handler failed on %d", 3)
    log.debug("debug shown")
    docs = json_lines(capsys.readouterr().err)
    assert len(docs) == 2
    assert docs[0]["level"] == "ERROR"
    assert docs[0]["msg"] == "handler failed on 3"
    assert "Traceback" in docs[0]["exc"]
    assert "ValueError: bad message" in docs[0]["exc"]
    assert docs[1] == {**docs[1], "level": "DEBUG", "msg": "debug shown", "logger": "engine.ring"}


def test_json_lines_keep_a_record_with_a_lone_surrogate_and_the_stack(
    capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    """A file name decoded with surrogateescape (a config path from argv, say) must neither
    lose its record nor put a plain-text traceback into the JSON stream; a stack asked for
    with ``stack_info`` is kept like an exception."""
    setup_logging("INFO", json_lines=True)
    log = logging.getLogger("engine.app")
    log.error("cannot read %s", "/etc/\udcff.toml")
    try:
        raise OSError("no such file: /etc/\udcff.toml")
    except OSError:
        log.exception("failed")
    log.warning("where from", stack_info=True)
    docs = json_lines(capsys.readouterr().err)
    assert [d["msg"] for d in docs] == ["cannot read /etc/\\udcff.toml", "failed", "where from"]
    assert "OSError: no such file: /etc/\\udcff.toml" in docs[1]["exc"]
    assert docs[2]["stack"].startswith("Stack (most recent call last):")
    assert "test_json_lines_keep_a_record_with_a_lone_surrogate_and_the_stack" in docs[2]["stack"]


def test_setup_logging_replaces_handler(
    capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    setup_logging("INFO", json_lines=False)
    setup_logging("WARNING", json_lines=True)
    assert len(logging.getLogger().handlers) == 1
    logging.getLogger("x").info("dropped")
    logging.getLogger("x").error("kept")
    docs = json_lines(capsys.readouterr().err)
    assert [d["msg"] for d in docs] == ["kept"]


def test_plain_logging(capsys: pytest.CaptureFixture[str], restore_root_logger: None) -> None:
    setup_logging("INFO", json_lines=False)
    logging.getLogger("engine.app").info("started %s", "demo")
    err = capsys.readouterr().err
    assert "INFO" in err
    assert "engine.app: started demo" in err
    with pytest.raises(json.JSONDecodeError):
        json.loads(err.splitlines()[0])


def test_json_formatter_directly() -> None:
    record = logging.LogRecord("a.b", logging.INFO, __file__, 1, "x=%s", ("y",), None)
    doc = json.loads(JsonLinesFormatter().format(record))
    assert doc["level"] == "INFO"
    assert doc["logger"] == "a.b"
    assert doc["msg"] == "x=y"
    assert doc["ts"] == record.created
