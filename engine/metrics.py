"""Latency recording and Prometheus metrics, kept off the hot path.

The hot path only stores raw nanosecond deltas into a preallocated int64 array per stage
(``LatencyRecorder.record``: one setitem and two integer updates) and bumps plain integer
counters on the actors. ``fold()`` runs on a timer and before a report: it bins the new samples
(``hotpath.latency.bin_samples``: no temporaries, a run of equal samples binned once) into a fine
log-spaced histogram (2% relative resolution, for p50/p99/p99.9 over the whole run) and into the
Prometheus bucket counts. A custom collector reads those arrays and the actors' counters only
when ``/metrics`` is scraped, so a scrape costs the hot path nothing. ``LoopMonitor`` watches
how late the event loop runs a timer: the stalls everything waiting on the loop shares.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


class LoopMonitor:
    """How late the event loop runs a timer: the stalls every message waiting on the loop shares.

    A timer every ``interval_s`` notes how late it fired, into a latency ring folded like a
    stage's (``lag``). libuv's timers are in milliseconds, so lateness under ~1 ms is the timer's
    own rounding (on a VM an idle vCPU's wake-up adds its own). A tick later than ``stall_s`` is
    a stall, counted with its lateness in ``stall_ns`` and split into lower bounds by what the
    thread did over the tick's interval plus the lateness: ran our code for ``C`` (its CPU
    time), and on Linux (``/proc/thread-self/schedstat``) waited runnable for a CPU for ``Q``
    (the scheduler's run delay: another task held the core) and was neither for the rest ``S``
    (blocked in a call, or the vCPU itself away: the hypervisor gave the core to another guest
    or woke the halted vCPU late). Before the timer was due each of them can account for at most
    one interval, so of the lateness at least ``C - interval`` was our code (``stall_busy_ns``),
    at least ``late - C`` the thread not running (``stall_off_cpu_ns``), and of that at least
    ``Q - interval`` waiting for the CPU (``stall_queued_ns``) and at least ``S - interval``
    neither (``stall_away_ns``). The shorter the interval, the tighter the bounds. Start it on
    the loop's thread: that is the thread it reads.
    """

    __slots__ = (
        "_cpu",
        "_due",
        "_handle",
        "_interval_ns",
        "_interval_s",
        "_loop",
        "_queued",
        "_sched_fd",
        "_stall_ns",
        "lag",
        "splits_off_cpu",
        "stall_away_ns",
        "stall_busy_ns",
        "stall_ns",
        "stall_off_cpu_ns",
        "stall_queued_ns",
        "stalls",
        "worst_ns",
    )

    def __init__(self, loop: Any, interval_s: float, stall_s: float, capacity: int = 4096) -> None:
        self._loop = loop
        self._interval_s = interval_s
        self._interval_ns = round(interval_s * 1e9)
        self._stall_ns = round(stall_s * 1e9)
        self._handle: Any = None
        self._sched_fd = -1
        self._due = self._cpu = self._queued = 0
        self.lag = StageLatency("loop_lag", capacity)
        self.stalls = 0
        self.stall_ns = 0
        self.stall_busy_ns = 0
        self.stall_off_cpu_ns = 0
        self.stall_queued_ns = 0
        self.stall_away_ns = 0
        self.worst_ns = 0
        #: Whether the not-running time is split (the OS gives the thread's run delay).
        self.splits_off_cpu = False

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self._handle is None:
            self._sched_fd = _open_schedstat()
            self.splits_off_cpu = self._sched_fd >= 0
            self._arm(time.perf_counter_ns(), *self._sched())

    def stop(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.cancel()
        fd, self._sched_fd = self._sched_fd, -1
        if fd >= 0:
            os.close(fd)

    def describe(self) -> str:
        """One line for a run's summary."""
        lag = self.lag.summary()
        text = (
            f"event loop lag (a timer every {self._interval_s * 1e3:g} ms): "
            f"p50 {lag.p50 / 1e6:.2f} ms, p99 {lag.p99 / 1e6:.2f} ms, max {lag.max / 1e6:.2f} ms"
        )
        if not self.stalls:
            return f"{text}; no stall over {self._stall_ns / 1e6:g} ms"
        text = (
            f"{text}; {self.stalls} stalls over {self._stall_ns / 1e6:g} ms, "
            f"{self.stall_ns / 1e6:.1f} ms in all (worst {self.worst_ns / 1e6:.1f} ms): at least "
            f"{self.stall_busy_ns / 1e6:.1f} ms our code running, at least "
            f"{self.stall_off_cpu_ns / 1e6:.1f} ms the thread not running"
        )
        if not self.splits_off_cpu:
            return text
        return (
            f"{text} (at least {self.stall_queued_ns / 1e6:.1f} ms waiting for its CPU behind "
            f"other tasks, at least {self.stall_away_ns / 1e6:.1f} ms neither: blocked, or the "
            "vCPU away)"
        )

    def _sched(self) -> tuple[int, int]:
        """The thread's CPU time and run delay so far, ns (run delay 0 without schedstat).
        schedstat's own CPU time lags by up to a scheduler tick while the thread runs (the
        kernel updates it at ticks and switches): the clock is read for that."""
        fd = self._sched_fd
        if fd < 0:
            return time.thread_time_ns(), 0
        return time.thread_time_ns(), int(os.pread(fd, 128, 0).split()[1])

    def _arm(self, now: int, cpu: int, queued: int) -> None:
        self._due = now + self._interval_ns
        self._cpu = cpu
        self._queued = queued
        self._handle = self._loop.call_later(self._interval_s, self._tick)

    def _tick(self) -> None:
        if self._handle is None:
            return
        now = time.perf_counter_ns()
        cpu, queued = self._sched()
        late = now - self._due
        if late < 0:
            late = 0
        self.lag.record(late)
        if late > self._stall_ns:
            interval = self._interval_ns
            ran = cpu - self._cpu
            self.stalls += 1
            self.stall_ns += late
            self.stall_busy_ns += min(late, max(0, ran - interval))
            self.stall_off_cpu_ns += max(0, late - ran)
            if self._sched_fd >= 0:
                waited = queued - self._queued
                away = now - (self._due - interval) - ran - waited  # over the window
                self.stall_queued_ns += min(late, max(0, waited - interval))
                self.stall_away_ns += min(late, max(0, away - interval))
            if late > self.worst_ns:
                self.worst_ns = late
        self._arm(now, cpu, queued)


def _open_schedstat() -> int:
    """This thread's ``/proc/thread-self/schedstat`` (CPU time, run delay, timeslices), kept
    open and re-read with ``pread``; -1 where the OS has none (not Linux, no schedstats)."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        return -1
    try:
        fields = os.pread(fd, 128, 0).split()
        if len(fields) >= 2 and all(f.isdigit() for f in fields[:2]):
            return fd
    except OSError:
        pass
    os.close(fd)
    return -1


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
        loop_monitor: Callable[[], LoopMonitor | None] | None = None,
    ) -> None:
        self._latency = latency
        self._counters = counters
        self._gauges = gauges
        self._prefix = prefix
        self._loop_monitor = loop_monitor

    def collect(self) -> Iterator[object]:
        self._latency.fold()
        hist = HistogramMetricFamily(
            f"{self._prefix}_stage_latency_seconds",
            "Latency of each pipeline stage, from per-message nanosecond stamps.",
            labels=["stage"],
        )
        for stage in self._latency.stages.values():
            hist.add_metric([stage.name], _buckets(stage), stage.sum_ns / 1e9)
        yield hist
        monitor = self._loop_monitor() if self._loop_monitor is not None else None
        if monitor is not None:
            lag = monitor.lag
            lag.fold()
            family = HistogramMetricFamily(
                f"{self._prefix}_loop_lag_seconds",
                "How late the event loop ran a periodic timer: what anything waiting on the "
                "loop waited at that moment.",
            )
            family.add_metric([], _buckets(lag), lag.sum_ns / 1e9)
            yield family
        yield from _families(self._prefix, self._counters(), CounterMetricFamily)
        yield from _families(self._prefix, self._gauges(), GaugeMetricFamily)


class VenueCollector(Collector):
    """Each venue's connection as an operator alerts on it, read at scrape time from the
    venue's ``status()`` and ``down_since`` (venues without ``status()``, such as the
    in-process simulator, have no connection to watch and are left out)."""

    def __init__(
        self,
        venues: Mapping[str, Any],
        prefix: str = "tickwire",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._venues = venues
        self._prefix = prefix
        self._now = now

    def collect(self) -> Iterator[object]:
        p = self._prefix
        labels = ["venue"]
        connected = GaugeMetricFamily(
            f"{p}_venue_connected",
            "1 while the venue's API session is up (IB: handshake, nextValidId and "
            "managedAccounts received), else 0.",
            labels=labels,
        )
        ready = GaugeMetricFamily(
            f"{p}_venue_ready",
            "1 while new orders can go out (connected, reconciled, not in IB's 1100 "
            "connectivity loss), else 0.",
            labels=labels,
        )
        down = GaugeMetricFamily(
            f"{p}_venue_down_seconds",
            "Seconds since the venue's connection went down, 0 while it is up (IB's expected "
            "outages count too: alert when it outlasts them).",
            labels=labels,
        )
        reconnects = CounterMetricFamily(
            f"{p}_venue_reconnects", "Connections made again after one was lost.", labels=labels
        )
        held = CounterMetricFamily(
            f"{p}_venue_orders_held_back",
            "New orders refused because the venue could not take them then (down, 1100, "
            "reconciling, the guard before a scheduled restart).",
            labels=labels,
        )
        queued = GaugeMetricFamily(
            f"{p}_venue_pacer_queued",
            "Messages waiting in the venue's pacer for their turn.",
            labels=labels,
        )
        now = self._now()
        for name, venue in self._venues.items():
            status = getattr(venue, "status", None)
            if status is None:
                continue
            s = status()
            up = bool(s.get("connected"))
            connected.add_metric([name], float(up))
            ready.add_metric([name], float(up and s.get("ready", up) and not s.get("in_1100")))
            since = getattr(venue, "down_since", None)
            gone = (now - since).total_seconds() if since is not None and not up else 0.0
            down.add_metric([name], max(gone, 0.0))
            reconnects.add_metric([name], float(s.get("reconnects", 0)))
            held.add_metric([name], float(s.get("held_back", 0)))
            queued.add_metric([name], float(s.get("queued", 0)))
        yield from (connected, ready, down, reconnects, held, queued)


def _buckets(stage: StageLatency) -> list[tuple[str, float]]:
    cum = np.cumsum(stage.prom_counts)
    buckets = [(repr(b), float(c)) for b, c in zip(PROM_BOUNDS_S, cum[:-1], strict=True)]
    buckets.append(("+Inf", float(cum[-1])))
    return buckets


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
