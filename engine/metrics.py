"""Latency recording and Prometheus metrics, kept off the hot path.

The hot path only stores raw nanosecond deltas into a preallocated int64 array per stage
(``LatencyRecorder.record``: one setitem and two integer updates) and bumps plain integer
counters on the actors. ``fold()`` runs on a timer and before a report: it bins the new samples
(``hotpath.latency.bin_samples``: no temporaries, a run of equal samples binned once) into a fine
log-spaced histogram (2% relative resolution, for p50/p99/p99.9 over the whole run) and into the
Prometheus bucket counts. A custom collector reads those arrays and the
actors' counters only when ``/metrics`` is scraped, so a scrape costs the hot path nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from hotpath.latency import BIN_SAMPLES
from hotpath.layouts import resident_zeros

log = logging.getLogger(__name__)

# Fine bins: 1 ns .. ~100 s, each 2% wider than the previous.
_FINE_EDGES = np.unique(np.round(np.geomspace(1, 1e11, 1300)).astype(np.int64))
# Prometheus bucket upper bounds, in seconds (1 µs .. 1 s).
PROM_BOUNDS_S = (
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3,
    1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
_PROM_EDGES_NS = np.array([round(b * 1e9) for b in PROM_BOUNDS_S], dtype=np.int64)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    stage: str
    count: int
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    mean: float

    def format_us(self) -> str:
        if not self.count:
            return f"{self.stage:<16} n=0"
        return (
            f"{self.stage:<16} n={self.count:<9} p50={self.p50 / 1e3:9.1f}µs "
            f"p99={self.p99 / 1e3:9.1f}µs p99.9={self.p999 / 1e3:9.1f}µs "
            f"max={self.max / 1e3:9.1f}µs"
        )


class StageLatency:
    """One stage's raw samples (a preallocated ring) and its folded histograms."""

    __slots__ = (
        "_buf",
        "_folded",
        "_mask",
        "count",
        "fine",
        "max",
        "name",
        "prom_counts",
        "sum_ns",
    )

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self._buf = resident_zeros(capacity, np.int64)  # no page faults while recording
        self._mask = capacity - 1
        self.count = 0  # samples recorded
        self._folded = 0  # samples already binned
        self.fine = np.zeros(len(_FINE_EDGES) + 1, dtype=np.int64)
        self.prom_counts = np.zeros(len(_PROM_EDGES_NS) + 1, dtype=np.int64)
        self.sum_ns = 0
        self.max = 0

    def record(self, delta_ns: int) -> None:
        n = self.count
        if n - self._folded > self._mask:
            self.fold()  # the ring is full of unbinned samples: bin them before overwriting
        self._buf[n & self._mask] = delta_ns
        self.count = n + 1

    def record_many(self, deltas: np.ndarray) -> None:
        k = len(deltas)
        if k > self._mask:
            # Bigger than the ring: bin directly.
            self.fold()
            self._bin(np.ascontiguousarray(deltas, dtype=np.int64))
            self.count += k
            self._folded = self.count
            return
        if self.count + k - self._folded > self._mask + 1:
            self.fold()
        start = self.count & self._mask
        first = min(k, self._mask + 1 - start)
        self._buf[start : start + first] = deltas[:first]
        if first < k:
            self._buf[: k - first] = deltas[first:]
        self.count += k

    def fold(self) -> None:
        n = self.count - self._folded
        if n <= 0:
            return
        start = self._folded & self._mask
        end = start + n
        buf = self._buf
        if end <= len(buf):
            self._bin(buf[start:end])
        else:  # wrapped: the two pieces, no copy
            self._bin(buf[start:])
            self._bin(buf[: end - len(buf)])
        self._folded = self.count

    def _bin(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        total, top = BIN_SAMPLES(samples, self.fine, _FINE_EDGES, self.prom_counts, _PROM_EDGES_NS)
        self.sum_ns += total
        if top > self.max:
            self.max = top

    def quantile(self, q: float) -> float:
        """The ``q`` quantile in ns, from the fine histogram (upper edge of its bin)."""
        total = int(self.fine.sum())
        if not total:
            return 0.0
        idx = int(np.searchsorted(np.cumsum(self.fine), q * total, side="left"))
        if idx >= len(_FINE_EDGES):
            return float(self.max)
        return float(min(_FINE_EDGES[idx], self.max))

    def summary(self) -> LatencySummary:
        self.fold()
        n = int(self.fine.sum())
        return LatencySummary(
            self.name,
            n,
            self.quantile(0.5),
            self.quantile(0.9),
            self.quantile(0.99),
            self.quantile(0.999),
            float(self.max),
            self.sum_ns / n if n else 0.0,
        )


class LatencyRecorder:
    """Per-stage latency rings, created up front so recording never allocates."""

    def __init__(self, stages: Iterable[str], capacity: int = 65536) -> None:
        self.stages: dict[str, StageLatency] = {s: StageLatency(s, capacity) for s in stages}

    def __getitem__(self, stage: str) -> StageLatency:
        return self.stages[stage]

    def fold(self) -> None:
        for s in self.stages.values():
            s.fold()

    def summaries(self) -> list[LatencySummary]:
        return [s.summary() for s in self.stages.values()]


CounterSource = Callable[[], Iterable[tuple[str, str, dict[str, str], float]]]


class EngineCollector(Collector):
    """Prometheus view of the engine, computed at scrape time.

    ``counters`` yields ``(name, help, labels, value)`` tuples read from the actors' own
    integers; ``gauges`` likewise.
    """

    def __init__(
        self,
        latency: LatencyRecorder,
        counters: CounterSource,
        gauges: CounterSource,
        prefix: str = "tickwire",
    ) -> None:
        self._latency = latency
        self._counters = counters
        self._gauges = gauges
        self._prefix = prefix

    def collect(self) -> Iterator[object]:
        self._latency.fold()
        hist = HistogramMetricFamily(
            f"{self._prefix}_stage_latency_seconds",
            "Latency of each pipeline stage, from per-message nanosecond stamps.",
            labels=["stage"],
        )
        for stage in self._latency.stages.values():
            cum = np.cumsum(stage.prom_counts)
            buckets = [(repr(b), float(c)) for b, c in zip(PROM_BOUNDS_S, cum[:-1], strict=True)]
            buckets.append(("+Inf", float(cum[-1])))
            hist.add_metric([stage.name], buckets, stage.sum_ns / 1e9)
        yield hist
        yield from _families(self._prefix, self._counters(), CounterMetricFamily)
        yield from _families(self._prefix, self._gauges(), GaugeMetricFamily)


def _families(prefix: str, rows: Iterable[tuple[str, str, dict[str, str], float]], kind: type):
    families: dict[str, tuple[object, list[str]]] = {}
    for name, help_text, labels, value in rows:
        entry = families.get(name)
        if entry is None:
            names = sorted(labels)
            entry = families[name] = (kind(f"{prefix}_{name}", help_text, labels=names), names)
        fam, names = entry
        fam.add_metric([labels[n] for n in names], value)
    return [fam for fam, _ in families.values()]


class MetricsServer:
    """``/metrics`` (Prometheus text format) and ``/health`` on a loopback port, on our loop."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._runner = None
        self.port: int | None = None

    async def start(self) -> int:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("metrics on http://%s:%d/metrics", self._host, self.port)
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request):
        from aiohttp import web

        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    async def _health(self, request):
        from aiohttp import web

        return web.json_response({"status": "ok"})
