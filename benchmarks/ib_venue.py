"""IBVenue end to end through a real loopback socket, the gateway simulator in its own process.

Three figures, each from the engine's own nanosecond stamps (``LiveClock``, one instance):

tick-to-wire
    A strategy reacts to a book update by sending a far-from-market limit order. Measured from
    ``ts_recv`` of the market data that triggered it, as ``IBVenue`` stamps it, to
    ``intent.ts_sent`` (stamped by ``IBVenue.submit`` after encoding, just before the frame
    goes to the pacer and the socket): the engine's ``tick_to_order`` stage. Where ``ts_recv``
    is taken is the venue's business (``_stamp_read``, at the entry of the session's
    ``receive``, before any decoding; earlier versions stamped in ``_on_rows`` after the hot
    decoder had cut the whole read), so two figures do not depend on it: ``read_to_wire``, from
    the entry of the ``data_received`` call that carried the triggering bytes (a probe), and
    ``decode_before_stamp`` (read entry → ``ts_recv``: what ``ts_recv`` leaves out). Also
    reported: ``tick_to_write``, to the moment the socket write returned.
order → ack
    ``order.ts_sent`` → ``ts_recv`` of the ACCEPTED event (stamped by ``IBVenue._emit`` after
    ibapi decoded the openOrder / orderStatus frame): the engine's ``order_ack`` stage. Orders
    go one at a time, ≥ 50 ms apart, so the 45 msg/s pacer never queues (checked: a frame left
    in the pacer after a send is counted as ``queued``).
cancel
    Just before ``IBVenue._send_cancel`` encodes the cancel → ``ts_recv`` of the CANCELLED
    event. Measured at a moderate market-data rate and under a market-data flood (the
    simulator streaming L1 + 10 rows of depth + tick-by-tick on several instruments; the rate
    that reached the client is counted from the frames the hot decoder took and reported). The
    simulator streams in slices of ``market.slice_ms`` and holds a client's market data back
    while its send buffers are full (see ``adapters.ib.gateway_sim.server``): messages held back
    are never sent, so they are not in the counted rate, which stays what the client got.

The anchor, measured in the same run, is a plain uvloop loopback TCP echo round trip between
two processes (64 B): one network round trip's floor between the engine and another process.

The benchmark subclasses ``IBVenue`` only to stamp (cancel sent, write returned) and patches
``_Transport.data_received`` / ``HotDecoder.decode`` (restored afterwards) to stamp the read's
entry and count frames: each probe costs one ``perf_counter_ns`` call or an integer add.

Run: ``.venv/bin/python -m benchmarks.ib_venue``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import uvloop

from adapters.ib import connection as ib_connection
from adapters.ib.decode import HotDecoder
from adapters.ib.venue import IBVenue
from benchmarks.anchors import echo_rounds
from engine.clock import LiveClock
from engine.config import EngineSection, IBVenueConfig, RiskConfig
from engine.instruments import AssetClass, InstrumentRegistry
from engine.messages import NO_PRICE, EventKind, OrderEvent
from engine.metrics import LatencySummary, LoopMonitor
from engine.process import settle_heap
from engine.runtime import Engine
from engine.scheduler import BusyPoll
from engine.strategy import Strategy

ROOT = Path(__file__).resolve().parent.parent

TICK_TO_WIRE_TARGET_NS = 200_000
ORDER_ACK_TARGET_NS = 2_000_000
CANCEL_FLOOD_TARGET_NS = 500_000
FLOOD_TARGET_PER_S = 100_000

#: How the engine under test runs its loop: ``keep_warm_ms`` (``[engine] keep_warm``: the
#: shipped default for an IB venue is on, every 1 ms) and ``busy_poll``. ``--keep-warm-ms 0``
#: and ``--busy-poll`` change them for a run.
ENGINE_OPTIONS = {
    "keep_warm_ms": EngineSection().keep_warm_interval_ms,
    "busy_poll": False,
    "pin": False,  # the engine (this process) and the simulator on different CPUs
}


@functools.cache
def pinned_cpus() -> tuple[int, int] | None:
    """(engine CPU, simulator CPU) for ``ENGINE_OPTIONS["pin"]``: the last and the first this
    process may use (when first asked: before it pins itself); None with fewer than two (or
    no affinity on this platform)."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (allowed[-1], allowed[0]) if len(allowed) >= 2 else None


def _sim_cpu() -> int | None:
    cpus = pinned_cpus() if ENGINE_OPTIONS["pin"] else None
    return cpus[1] if cpus else None


_ACCEPTED = EventKind.ACCEPTED
_CANCELLED = EventKind.CANCELLED
_REJECTED = EventKind.REJECTED


# ---- the simulator and the anchor, each in its own process ----------------------------------


def _start_process(args: list[str], what: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"(?::|^)(\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"{what} did not report its port: {line!r}")
    return proc, int(m.group(1))


def _stop_process(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def start_simulator(events_per_second: float, depth_subscriptions: int = 3):
    """``tickwire gateway-sim`` in its own process on a free loopback port (IB-like pacing on:
    50 msg/s, so a pacer bug shows up as error 100 / a disconnect)."""
    cfg = Path(tempfile.mkdtemp(prefix="tickwire-ibvenue-")) / "sim.toml"
    cfg.write_text(
        "[gateway]\nport = 0\n"
        f"[market]\nevents_per_second = {events_per_second}\ntick_interval_ms = 1.0\n"
        f"max_depth_subscriptions = {max(depth_subscriptions, 1)}\n"
        "[pacing]\nenabled = true\nmax_messages_per_second = 50\n"
    )
    proc, port = _start_process(
        ["-m", "engine.cli", "gateway-sim", "--config", str(cfg)], "gateway-sim"
    )
    cpu = _sim_cpu()
    if cpu is not None:
        # From here, not its [gateway] cpu_affinity: a child starts with this process's
        # affinity, and this process is already pinned to the engine's CPU.
        os.sched_setaffinity(proc.pid, {cpu})
    return proc, port


_ECHO_SERVER = r"""
import asyncio, socket, sys, uvloop

class Echo(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t
        t.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def data_received(self, d):
        self.t.write(d)

async def main():
    srv = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(float(sys.argv[1]))

uvloop.run(main())
"""


def loopback_rtt_two_process_ns(rounds: int = 3000, size: int = 64) -> np.ndarray:
    """Round trips of ``size`` bytes to a uvloop echo server in another process (127.0.0.1)."""
    proc, port = _start_process(["-c", _ECHO_SERVER, "60"], "echo server")
    cpu = _sim_cpu()
    if cpu is not None:  # where the simulator will run
        os.sched_setaffinity(proc.pid, {cpu})
    try:
        return uvloop.run(echo_rounds(port, rounds, size))
    finally:
        _stop_process(proc)


# ---- probes -----------------------------------------------------------------------------------


class _Probe:
    """Read-entry stamps and frame counts, from class-level wrappers (see ``_probing``)."""

    def __init__(self) -> None:
        self.now = time.perf_counter_ns
        self.entry_ns = 0  # entry of the data_received call running now (or last)
        self.reads = 0
        self.bytes = 0
        self.frames = 0
        self.gc_starts: list[tuple[int, int]] = []  # ``--stages``: (time, generation)


@contextlib.contextmanager
def _probing(probe: _Probe) -> Iterator[None]:
    transport_cls = ib_connection._Transport
    orig_received = transport_cls.data_received
    orig_decode = HotDecoder.decode

    def data_received(self, data: bytes) -> None:
        probe.entry_ns = probe.now()
        probe.reads += 1
        probe.bytes += len(data)
        orig_received(self, data)

    def decode(self):
        batch = orig_decode(self)
        probe.frames += batch.frames
        return batch

    transport_cls.data_received = data_received  # type: ignore[method-assign]
    HotDecoder.decode = decode  # type: ignore[method-assign]
    try:
        yield
    finally:
        transport_cls.data_received = orig_received  # type: ignore[method-assign]
        HotDecoder.decode = orig_decode  # type: ignore[method-assign]


#: ``--stages``: where a triggering read's time goes, stamp by stamp (names in order). Each stamp
#: is the last one taken before the order left, relative to the read's entry.
STAGE_MARKS = (
    "ts_recv",  # IBVenue._stamp_read (the session's receive entry)
    "decoded",  # HotDecoder.decode returned (the read cut into rows)
    "translated",  # MarketDataTranslator.translate returned (rows -> ring records)
    "pump",  # Scheduler.pump entered (after the ring writes)
    "book",  # BookStore.apply / apply_span entered (the kernel)
    "booked",  # BookStore.apply / apply_span returned
    "marked",  # BookActor._dispatch entered (after the mark-to-market kernel)
    "on_book",  # the strategy's on_book entered
    "created",  # intent.ts_created (Strategy._new)
    "gate",  # RiskGate.on_intent entered
    "risked",  # intent.ts_risk (the risk kernel passed it)
    "routed",  # intent.ts_routed (Router.submit entered, after OMS ``submitted``)
    "venue",  # IBVenue.submit entered
    "encode",  # IBVenue._place_frame entered
    "encoded",  # IBVenue._place_frame returned
    "sent",  # intent.ts_sent
)


@contextlib.contextmanager
def _stage_probing(marks: dict[str, int], probe: _Probe) -> Iterator[None]:
    """Class-level wrappers stamping ``marks[name] = now()`` (``--stages`` only: each wrapper
    adds a Python frame, ~0.2 µs warm and more cold, to the path it measures)."""
    from adapters.ib.marketdata import MarketDataTranslator
    from engine.book import BookStore
    from engine.book_actor import BookActor
    from engine.risk_gate import RiskGate
    from engine.scheduler import Scheduler

    patched: list[tuple[type, str, object]] = []

    def wrap(cls: type, name: str, enter: str | None, leave: str | None) -> None:
        orig = getattr(cls, name)

        def wrapper(self, *args):
            if enter:
                marks[enter] = probe.now()
            out = orig(self, *args)
            if leave:
                marks[leave] = probe.now()
            return out

        patched.append((cls, name, orig))
        setattr(cls, name, wrapper)

    wrap(HotDecoder, "decode", None, "decoded")
    wrap(MarketDataTranslator, "translate", None, "translated")
    wrap(Scheduler, "pump", "pump", None)
    wrap(BookStore, "apply", "book", "booked")  # L1 quotes
    wrap(BookStore, "apply_span", "book", "booked")  # depth rows, read in the ring
    wrap(BookActor, "_dispatch", "marked", None)
    wrap(RiskGate, "on_intent", "gate", None)
    wrap(IBVenue, "submit", "venue", None)
    wrap(IBVenue, "_place_frame", "encode", "encoded")

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            probe.gc_starts.append((probe.now(), info["generation"]))

    gc.callbacks.append(on_gc)
    try:
        yield
    finally:
        gc.callbacks.remove(on_gc)
        for cls, name, orig in reversed(patched):
            setattr(cls, name, orig)


class _BenchVenue(IBVenue):
    """``IBVenue`` plus two stamps, both taken outside the stamps it already takes."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cancel_sent: dict[int, int] = {}
        self.last_write_ns = 0
        self.last_pending = 0

    def _send_cancel(self, live) -> None:
        t0 = self.ports.clock.now()  # type: ignore[union-attr]
        super()._send_cancel(live)
        self.cancel_sent[live.client_order_id] = t0

    def _send(self, priority: int, frame: bytes) -> bool:
        sent = super()._send(priority, frame)
        self.last_write_ns = self.ports.clock.now()  # type: ignore[union-attr]
        self.last_pending = self.pacer.pending
        return sent


# ---- the strategy -----------------------------------------------------------------------------


class _Driver(Strategy):
    """One far-from-market buy at a time, sent from ``on_book``; cancelled ``rest_s`` after its
    ACCEPTED; the next one no sooner than ``spacing_ns`` after the previous one and only once
    the previous one is finished (so the pacer never has two of ours waiting)."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.venue: _BenchVenue | None = None
        self.probe: _Probe | None = None
        self.symbol = "AAPL"
        self.active = False
        self.recording = False
        self.spacing_ns = 50_000_000
        self.rest_s = 0.01
        self.live_coid = 0
        self.live_since = 0
        self.next_at = 0
        self.sent_ns: dict[int, int] = {}
        self.done = 0  # finished cycles (recorded or not)
        self.tick: list[tuple[int, int, int, int]] = []  # trigger, sent, written, read entry
        self.ack: list[tuple[int, int]] = []  # ack ts_recv - sent, read entry - sent
        self.cancel_lat: list[tuple[int, int]] = []  # cancelled ts_recv - t0, entry - t0
        self.queued = 0
        self.rejected: list[str] = []
        self.lost = 0
        self.marks: dict[str, int] | None = None  # ``--stages``: the stage probes' stamps
        self.stage_rows: list[list[int]] = []  # read entry, then STAGE_MARKS

    def on_book(self, view) -> None:
        if not self.active or self.live_coid or view.instrument.symbol != self.symbol:
            return
        now = self._now()
        if now < self.next_at:
            return
        marks = self.marks
        if marks is not None:
            marks["on_book"] = now
        bid = view.bid_ticks
        if bid == NO_PRICE:
            return
        inst = view.instrument
        trigger = self._engine.trigger_ts
        entry = self.probe.entry_ns  # type: ignore[union-attr]
        price = round(bid * 0.95) * inst.tick_size
        coid = self.buy(inst, 1, round(price, 2))
        venue = self.venue
        order = self._engine.tracker.get(coid)
        sent = order.ts_sent if order is not None else 0
        self.next_at = now + self.spacing_ns
        if not sent:
            self.rejected.append(f"{coid}: not sent")
            return
        if venue.last_pending:  # type: ignore[union-attr]
            self.queued += 1
        self.live_coid, self.live_since = coid, now
        self.sent_ns[coid] = sent
        if self.recording:
            self.tick.append((trigger, sent, venue.last_write_ns, entry))  # type: ignore[union-attr]
            if marks is not None:
                it = self._engine.intents.last()
                marks.update(
                    ts_recv=trigger, created=it.ts_created, risked=it.ts_risk,
                    routed=it.ts_routed, sent=it.ts_sent,
                )  # fmt: skip
                self.stage_rows.append([entry, *(marks.get(m, 0) for m in STAGE_MARKS)])

    def on_order(self, ev: OrderEvent) -> None:
        coid = ev.client_order_id
        if coid != self.live_coid:
            return
        kind = ev.kind
        entry = self.probe.entry_ns  # type: ignore[union-attr]
        if kind == _ACCEPTED:
            sent = self.sent_ns.pop(coid, 0)
            if self.recording and sent:
                self.ack.append((ev.ts_recv - sent, entry - sent))
            self.set_timer("cancel", self.rest_s, repeat=False)
        elif kind == _CANCELLED:
            t0 = self.venue.cancel_sent.pop(coid, 0)  # type: ignore[union-attr]
            if self.recording and t0:
                self.cancel_lat.append((ev.ts_recv - t0, entry - t0))
            self._finished()
        elif kind == _REJECTED:
            self.rejected.append(f"{coid}: {ev.reason_code} {ev.reason}")
            self._finished()

    def on_timer(self, name: str) -> None:
        if name == "cancel" and self.live_coid:
            self.cancel(self.live_coid)
            if self.venue.last_pending:  # type: ignore[union-attr]
                self.queued += 1

    def _finished(self) -> None:
        self.live_coid = 0
        self.done += 1

    def check_stuck(self, timeout_ns: int) -> None:
        """An order with no final state after ``timeout_ns`` counts as lost; move on."""
        if self.live_coid and self._now() - self.live_since > timeout_ns:
            self.lost += 1
            self.rejected.append(f"{self.live_coid}: no final state within {timeout_ns / 1e9} s")
            self.venue.cancel_sent.pop(self.live_coid, None)  # type: ignore[union-attr]
            self.live_coid = 0


# ---- one session ------------------------------------------------------------------------------


def _summary(stage: str, samples) -> LatencySummary:
    a = np.asarray(samples, dtype=np.float64)
    if not len(a):
        return LatencySummary(stage, 0, *([float("nan")] * 6))
    p50, p90, p99, p999 = np.percentile(a, [50, 90, 99, 99.9])
    return LatencySummary(stage, len(a), p50, p90, p99, p999, float(a.max()), float(a.mean()))


@dataclass(frozen=True, slots=True)
class PhaseResult:
    name: str
    events_per_second: float  # simulator setting, per instrument
    instruments: int
    md_frames_per_s: float  # frames the hot decoder took, per second of the measured window
    md_rows_per_s: float  # rows the venue translated (venue._md_rows_seen)
    reads_per_s: float
    bytes_per_read: float  # near the transport's read size (256 KiB): the socket is backed up
    seconds: float
    stages: dict[str, LatencySummary]
    engine_stages: dict[str, LatencySummary]  # the engine's own (2%-binned) summaries
    queued: int
    lost: int
    rejected: list[str]
    ib_errors: list[tuple[int, int, str]] = field(default_factory=list)
    #: ``--stages``: read entry -> each stamp of ``STAGE_MARKS``, and each stamp -> the next.
    breakdown: dict[str, LatencySummary] = field(default_factory=dict)
    #: ``--stages``: garbage collections that started between a read's entry and its order's
    #: send, by generation (a structural wait, not coldness).
    gc_in_path: tuple[int, int, int] = (0, 0, 0)
    warm_runs: int = 0  # the engine's dry runs of the order path (``keep_warm``)
    warm_skips: int = 0
    #: How long each dry run took (the most a read arriving meanwhile waits for it).
    warm_run: LatencySummary | None = None
    #: The engine's event loop over the measured window (``LoopMonitor.describe``, 1 ms ticks).
    loop: str = ""

    def __getitem__(self, stage: str) -> LatencySummary:
        return self.stages[stage]


def _reset_latency(engine: Engine) -> None:
    for stage in engine.latency.stages.values():
        stage.fold()
        stage.fine[:] = 0
        stage.prom_counts[:] = 0
        stage.sum_ns = 0
        stage.max = 0


async def _session(
    name: str,
    symbols: tuple[str, ...],
    events_per_second: float,
    samples: int,
    spacing_ms: float,
    rest_s: float,
    max_seconds: float,
    warmup: int = 15,
    stages: bool = False,
) -> PhaseResult:
    proc, port = start_simulator(events_per_second, len(symbols))
    probe = _Probe()
    marks: dict[str, int] | None = {} if stages else None
    try:
        with _probing(probe), contextlib.ExitStack() as stack:
            if marks is not None:
                stack.enter_context(_stage_probing(marks, probe))
            return await _run_session(
                name, port, probe, symbols, events_per_second, samples, spacing_ms, rest_s,
                max_seconds, warmup, marks,
            )  # fmt: skip
    finally:
        _stop_process(proc)


async def _run_session(
    name,
    port,
    probe,
    symbols,
    events_per_second,
    samples,
    spacing_ms,
    rest_s,
    max_seconds,
    warmup,
    marks=None,
) -> PhaseResult:
    loop = asyncio.get_running_loop()
    clock = LiveClock()
    clock.bind(loop)
    probe.now = clock.now  # the same clock (and epoch offset) as the engine's stamps
    registry = InstrumentRegistry()
    for s in symbols:
        registry.add(s, "IB", AssetClass.STOCK, 0.01, 1.0, 1.0, "USD")
    venue = _BenchVenue(
        "IB",
        IBVenueConfig(port=port, client_id=11, reconnect_initial_s=0.05, reconnect_max_s=0.5,
                      reconcile_timeout_s=3.0, depth_rows=10, tick_by_tick=True),
    )  # fmt: skip
    risk = RiskConfig(
        equity=1e9, max_open_orders=1000, order_rate_per_s=100.0, order_burst=100,
        strategy_order_rate_per_s=100.0, strategy_order_burst=100,
        venue_msgs_per_s=40.0, venue_burst=10,
    )  # fmt: skip
    engine = Engine(
        registry, {"IB": venue}, clock, risk=risk, keep_warm_ms=ENGINE_OPTIONS["keep_warm_ms"]
    )
    strat: _Driver = engine.add_strategy(_Driver, "bench", None, list(symbols))  # type: ignore
    strat.venue, strat.probe = venue, probe
    strat.spacing_ns = int(spacing_ms * 1e6)
    strat.marks = marks
    strat.rest_s = rest_s
    warm_ns: list[int] = []
    dry_run = engine.warm_order_path

    def timed_dry_run() -> bool:  # the timer calls it through the instance: time each run
        t0 = probe.now()
        ran = dry_run()
        if ran and strat.recording:
            warm_ns.append(probe.now() - t0)
        return ran

    engine.warm_order_path = timed_dry_run  # type: ignore[method-assign]
    engine.start()
    busy = BusyPoll(loop)
    if ENGINE_OPTIONS["busy_poll"]:
        busy.start()
    await venue.start()
    try:
        if not await venue.wait_ready(15):
            raise RuntimeError(f"{name}: the IB venue never became ready")
        deadline = loop.time() + 10
        while engine.book_views[registry.resolve(strat.symbol).id].mid_ticks is None:
            if loop.time() > deadline:
                raise RuntimeError(f"{name}: no book for {strat.symbol}")
            await asyncio.sleep(0.01)
        # Warm-up: the first orders and cancels build encode templates and ibapi's paths.
        strat.active = True
        deadline = loop.time() + 10
        while strat.done < warmup and loop.time() < deadline:
            strat.check_stuck(2_000_000_000)
            await asyncio.sleep(0.02)
        while strat.live_coid and loop.time() < deadline:
            await asyncio.sleep(0.005)
        strat.active = False
        await asyncio.sleep(0.1)
        settle_heap()  # as run_app does before trading starts
        _reset_latency(engine)
        strat.queued, strat.lost, strat.rejected = 0, 0, []
        venue.errors.clear()
        rows0, frames0, reads0, bytes0 = (
            venue._md_rows_seen, probe.frames, probe.reads, probe.bytes
        )  # fmt: skip
        monitor = LoopMonitor(loop, 0.001, 0.002)  # stalls: our code, or the thread off CPU?
        monitor.start()
        steal0 = _steal_ticks()
        t0 = time.perf_counter()
        strat.recording = strat.active = True
        deadline = loop.time() + max_seconds
        while len(strat.cancel_lat) + strat.lost < samples and loop.time() < deadline:
            strat.check_stuck(2_000_000_000)
            await asyncio.sleep(0.02)
        strat.active = False
        seconds = time.perf_counter() - t0
        monitor.stop()
        steal = _steal_ticks()
        rows, frames, reads, nbytes = (
            venue._md_rows_seen - rows0, probe.frames - frames0, probe.reads - reads0,
            probe.bytes - bytes0,
        )  # fmt: skip
        strat.recording = False
        while strat.live_coid and loop.time() < deadline + 2:
            await asyncio.sleep(0.005)
    finally:
        busy.stop()
        engine.stop()
        await venue.stop()

    tick = np.array(strat.tick, dtype=np.int64).reshape(-1, 4)
    trig, sent, wrote, entry = tick.T
    same_read = entry <= trig  # the trigger's bytes arrived in the read whose entry we stamped
    ack = np.array(strat.ack, dtype=np.int64).reshape(-1, 2)
    canc = np.array(strat.cancel_lat, dtype=np.int64).reshape(-1, 2)
    stages = {
        "tick_to_wire": _summary("tick_to_wire", sent - trig),
        "tick_to_write": _summary("tick_to_write", wrote - trig),
        "read_to_wire": _summary("read_to_wire", (sent - entry)[same_read]),
        "decode_before_stamp": _summary("decode_before_stamp", (trig - entry)[same_read]),
        "order_ack": _summary("order_ack", ack[:, 0]),
        "order_ack_read": _summary("order_ack_read", ack[:, 1]),
        "cancel": _summary("cancel", canc[:, 0]),
        "cancel_read": _summary("cancel_read", canc[:, 1]),
    }
    engine_stages = {s.stage: s for s in engine.latency.summaries() if s.count}
    breakdown: dict[str, LatencySummary] = {}
    gc_in_path = (0, 0, 0)
    if strat.stage_rows:
        rows = np.array(strat.stage_rows, dtype=np.int64)
        rows = rows[(rows > 0).all(axis=1) & (rows[:, 0] <= rows[:, 1])]  # the same read
        names = ("entry", *STAGE_MARKS)
        for k in range(1, len(names)):
            key = f"{names[k - 1]}->{names[k]}"
            breakdown[key] = _summary(key, rows[:, k] - rows[:, k - 1])
        breakdown["entry->sent"] = _summary("entry->sent", rows[:, -1] - rows[:, 0])
        if probe.gc_starts:
            at, gen = np.array(probe.gc_starts, dtype=np.int64).T
            inside = np.zeros(len(at), dtype=bool)
            for start, stop in zip(rows[:, 0], rows[:, -1], strict=True):
                inside |= (at >= start) & (at <= stop)
            gc_in_path = tuple(int(((gen == g) & inside).sum()) for g in range(3))
    return PhaseResult(
        name, events_per_second, len(symbols), frames / seconds, rows / seconds, reads / seconds,
        nbytes / max(reads, 1), seconds, stages, engine_stages, strat.queued, strat.lost,
        list(strat.rejected),
        [e for e in venue.errors if e[1] not in (202, 2104, 2106, 2158)],  # 202: cancelled
        breakdown,
        gc_in_path,  # type: ignore[arg-type]
        engine.warm_runs,
        engine.warm_skips,
        _summary("warm_up_run", warm_ns) if warm_ns else None,
        monitor.describe() + _steal_text(steal0, steal),
    )  # fmt: skip


def _steal_ticks() -> dict[str, int]:
    """Each CPU's steal time so far (/proc/stat, clock ticks): how long the hypervisor ran
    something else while the vCPU had work. Empty where the OS does not say."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    return {
        f[0]: int(f[8])
        for f in (line.split() for line in lines)
        if len(f) > 8 and f[0].startswith("cpu") and f[0] != "cpu"
    }


def _steal_text(before: dict[str, int], after: dict[str, int]) -> str:
    if not before or not after:
        return ""
    ms = 1e3 / os.sysconf("SC_CLK_TCK")
    parts = [f"{cpu} {(after[cpu] - n) * ms:.0f} ms" for cpu, n in before.items() if cpu in after]
    return "; the hypervisor's steal over the window: " + ", ".join(parts)


# ---- the whole benchmark ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IBVenueResult:
    anchor_p50_ns: float
    anchor_p99_ns: float
    anchor_n: int
    quiet: PhaseResult
    flood: PhaseResult

    @property
    def tick_to_wire(self) -> LatencySummary:
        return self.quiet["tick_to_wire"]

    @property
    def order_ack(self) -> LatencySummary:
        return self.quiet["order_ack"]

    @property
    def cancel_flood(self) -> LatencySummary:
        return self.flood["cancel"]

    def verdicts(self) -> dict[str, bool]:
        return {
            "tick_to_wire": self.tick_to_wire.p99 <= TICK_TO_WIRE_TARGET_NS,
            "order_ack": self.order_ack.p99 <= ORDER_ACK_TARGET_NS,
            "cancel_flood": self.cancel_flood.p99 <= CANCEL_FLOOD_TARGET_NS,
            "flood_rate": self.flood.md_frames_per_s >= FLOOD_TARGET_PER_S,
        }


#: Orders per phase. A p99 of n samples is decided by its n/100 slowest: with 250, by 2-3
#: orders, so one or two of the VM's multi-ms stalls (the loop monitor counts tens of them a
#: phase) moved it; 500 takes ~30 s a phase.
SAMPLES = 500


def _max_seconds(samples: int, spacing_ms: float) -> float:
    return 5.0 + samples * spacing_ms / 1e3 * 1.3


def measure_quiet(
    samples: int = SAMPLES, max_seconds: float | None = None, stages: bool = False
) -> PhaseResult:
    """Tick-to-wire, order→ack and cancel at a moderate market-data rate (2 instruments);
    ``stages``: with the stage probes (``STAGE_MARKS``), which slow the path they measure."""
    seconds = max_seconds or _max_seconds(samples, 55.0)
    return uvloop.run(
        _session("quiet", ("AAPL", "MSFT"), 1000.0, samples, 55.0, 0.01, seconds, stages=stages)
    )


def measure_flood(
    samples: int = SAMPLES,
    max_seconds: float | None = None,
    events_per_second: float = 25_000.0,
    symbols: tuple[str, ...] = ("AAPL", "MSFT", "SPY"),
) -> PhaseResult:
    """The same cycle under a market-data flood: cancel latency (and the others) at the
    achieved rate. 3 x 25,000 events/s is ~1.65 messages an event, ~125,000 messages/s
    (above the 100,000 the target asks for) with the simulator at about half its CPU: past
    ~35,000 it saturates, and its own queueing then shows in every answer it gives."""
    seconds = max_seconds or _max_seconds(samples, 60.0)
    return uvloop.run(_session("flood", symbols, events_per_second, samples, 60.0, 0.02, seconds))


def run(samples: int = SAMPLES) -> IBVenueResult:
    with _pinned():
        rtt = loopback_rtt_two_process_ns()
        p50, p99 = np.percentile(rtt, [50, 99])
        quiet = measure_quiet(samples)
        flood = measure_flood(samples)
    return IBVenueResult(float(p50), float(p99), len(rtt), quiet, flood)


@contextlib.contextmanager
def _pinned() -> Iterator[None]:
    """With ``ENGINE_OPTIONS["pin"]``: this process (the engine) on its CPU for the block."""
    cpus = pinned_cpus() if ENGINE_OPTIONS["pin"] else None
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _fmt(s: LatencySummary) -> str:
    return (
        f"{s.stage:<20} n={s.count:<4} p50={s.p50 / 1e3:8.1f}µs p90={s.p90 / 1e3:8.1f}µs "
        f"p99={s.p99 / 1e3:8.1f}µs p99.9={s.p999 / 1e3:8.1f}µs max={s.max / 1e3:8.1f}µs"
    )


def _options() -> str:
    ms = ENGINE_OPTIONS["keep_warm_ms"]
    warm = f"every {ms:g} ms" if ms else "off"
    cpus = pinned_cpus() if ENGINE_OPTIONS["pin"] else None
    pin = f", engine on CPU {cpus[0]} and simulator on CPU {cpus[1]}" if cpus else ""
    busy = "on" if ENGINE_OPTIONS["busy_poll"] else "off"
    return f"engine: keep_warm {warm}, busy_poll {busy}{pin}"


def _quiet_report(ph: PhaseResult) -> str:
    lines = [
        _options(),
        f"[{ph.name}] {ph.md_frames_per_s:,.0f} market-data msgs/s over {ph.seconds:.1f} s; "
        f"queued {ph.queued}, lost {ph.lost}, rejected {len(ph.rejected)}; warm-up runs "
        f"{ph.warm_runs:,}, skipped {ph.warm_skips:,}",
    ]
    lines += [_fmt(s) for s in ph.stages.values()]
    if ph.warm_run is not None:
        lines.append(_fmt(ph.warm_run))
    lines += ["  engine " + s.format_us() for s in ph.engine_stages.values()]
    lines.append(f"  engine {ph.loop}")
    if ph.breakdown:
        lines.append("stage probes (read entry -> order sent, each stamp to the next):")
        lines += ["  " + _fmt(s) for s in ph.breakdown.values()]
        g0, g1, g2 = ph.gc_in_path
        lines.append(f"garbage collections inside the order path: gen0 {g0}, gen1 {g1}, gen2 {g2}")
    lines += [f"  rejected: {x}" for x in ph.rejected[:5]]
    return "\n".join(lines)


def report(r: IBVenueResult) -> str:
    lines = [
        _options(),
        f"anchor: two-process uvloop loopback echo RTT 64 B: p50 {r.anchor_p50_ns / 1e3:.1f} µs, "
        f"p99 {r.anchor_p99_ns / 1e3:.1f} µs (n={r.anchor_n})",
    ]
    for ph in (r.quiet, r.flood):
        lines.append(
            f"\n[{ph.name}] {ph.instruments} instruments x {ph.events_per_second:,.0f} events/s: "
            f"{ph.md_frames_per_s:,.0f} market-data msgs/s ({ph.md_rows_per_s:,.0f} rows/s, "
            f"{ph.reads_per_s:,.0f} reads/s of {ph.bytes_per_read / 1024:.1f} KiB) over "
            f"{ph.seconds:.1f} s; queued {ph.queued}, lost {ph.lost}, rejected {len(ph.rejected)}"
        )
        lines += [_fmt(s) for s in ph.stages.values()]
        if ph.warm_run is not None:
            lines.append(_fmt(ph.warm_run))
        lines += ["  engine " + s.format_us() for s in ph.engine_stages.values()]
        lines.append(f"  engine {ph.loop}")
        lines += [f"  rejected: {x}" for x in ph.rejected[:5]]
        lines += [f"  IB error: {e}" for e in ph.ib_errors[:5]]
    v = r.verdicts()
    lines.append(
        f"\ntick-to-wire p99 {r.tick_to_wire.p99 / 1e3:.1f} µs (target 200): "
        f"{'met' if v['tick_to_wire'] else 'NOT met'}; order→ack p99 "
        f"{r.order_ack.p99 / 1e3:.1f} µs = {r.order_ack.p99 / r.anchor_p99_ns:.1f}x anchor p99 "
        f"(target 2000): {'met' if v['order_ack'] else 'NOT met'}; cancel under "
        f"{r.flood.md_frames_per_s:,.0f} msgs/s p99 {r.cancel_flood.p99 / 1e3:.1f} µs (target "
        f"500 at >= 100k/s): {'met' if v['cancel_flood'] and v['flood_rate'] else 'NOT met'}"
    )
    return "\n".join(lines)


def main() -> int:
    import argparse

    cli = argparse.ArgumentParser(prog="python -m benchmarks.ib_venue", description=__doc__)
    cli.add_argument("--samples", type=int, default=SAMPLES, help="orders per phase")
    cli.add_argument("--flood-eps", type=float, default=None,
                     help="only the flood phase, at this many events/s per instrument")  # fmt: skip
    cli.add_argument("--quiet-only", action="store_true",
                     help="only the quiet phase (tick-to-wire), no anchor, no flood")  # fmt: skip
    cli.add_argument("--stages", action="store_true",
                     help="quiet phase only, with per-stage probes (they add to what they "
                     "measure: use the plain run for the headline figures)")  # fmt: skip
    cli.add_argument("--keep-warm-ms", type=float, default=ENGINE_OPTIONS["keep_warm_ms"],
                     help="the engine's order-path warm-up interval; 0: off "
                     "(default: %(default)s, the shipped IB default)")  # fmt: skip
    cli.add_argument("--busy-poll", action="store_true",
                     help="run the loop with [engine] busy_poll (a core at 100%%)")  # fmt: skip
    cli.add_argument("--pin", action="store_true",
                     help="engine and simulator on different CPUs (cpu_affinity)")  # fmt: skip
    args = cli.parse_args()
    ENGINE_OPTIONS.update(keep_warm_ms=args.keep_warm_ms, busy_poll=args.busy_poll, pin=args.pin)
    logging.basicConfig(level=logging.ERROR)
    if args.quiet_only or args.stages:
        with _pinned():
            print(_quiet_report(measure_quiet(args.samples, stages=args.stages)))
        return 0
    if args.flood_eps is not None:
        with _pinned():
            ph = measure_flood(args.samples, events_per_second=args.flood_eps)
        print(
            f"{ph.md_frames_per_s:,.0f} msgs/s, {ph.md_rows_per_s:,.0f} rows/s, "
            f"{ph.reads_per_s:,.0f} reads/s of {ph.bytes_per_read / 1024:.1f} KiB"
        )
        for s in ph.stages.values():
            print(_fmt(s))
        return 0
    print(report(run(args.samples)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
