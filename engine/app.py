"""Assemble an engine from a config and run it on the uvloop event loop.

This is the layer that names concrete adapters (by ``kind`` in the config, imported only when
used), loads strategies by import path, starts the feed, the metrics endpoint and the status
line, and stops everything on SIGINT/SIGTERM or at the end of ``duration`` (``stop_engine``:
open orders cancelled and their answers awaited before the venues disconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import math
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import hotpath.jit
from engine.clock import Clock, LiveClock
from engine.config import Config, ConfigError, build
from engine.instruments import AssetClass, InstrumentRegistry
from engine.journal import Journal, JournalError
from engine.metrics import LatencySummary, LoopMonitor, MetricsServer, VenueCollector
from engine.orders import Order
from engine.process import check_cpus, pin_to_cpus, settle_heap
from engine.recovery import RecoveryReport, check_positions, recover
from engine.risk_gate import parse_hours
from engine.runtime import Engine, describe_orders
from engine.scheduler import BusyPoll
from engine.strategy import Strategy, check_params

log = logging.getLogger(__name__)

VENUE_ADAPTERS = {"sim": "adapters.sim.venue:SimVenue", "ib": "adapters.ib.venue:IBVenue"}
FEEDS = {"synthetic": "adapters.sim.feed:SyntheticFeed"}


def load_object(path: str) -> Any:
    """Import ``package.module:Name``."""
    module_name, _, attr = path.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None


@dataclass
class App:
    config: Config
    engine: Engine
    clock: Clock
    feed: Any = None
    metrics: MetricsServer | None = None
    kernels: hotpath.jit.KernelReport | None = None
    status_lines: list[str] = field(default_factory=list)
    recovery: RecoveryReport | None = None

    async def after_venues_ready(self) -> None:
        """Once the venues reconciled (they do before ``start`` returns): the positions the
        journal and the reconciliation give, against each broker's own; then the recovery
        report is logged whole."""
        self.engine.pump()
        if self.recovery is None:
            return
        check_positions(self.engine, self.recovery)
        level = logging.WARNING if self.recovery.differences else logging.INFO
        log.log(level, "%s", self.recovery.format())


def build_app(config: Config, clock: Clock | None = None) -> App:
    """Instruments, venues, engine, strategies and feed, as the config describes them."""
    clock = clock or LiveClock()
    file = config.source
    registry = InstrumentRegistry()
    for i, ic in enumerate(config.instruments):
        try:
            registry.add(
                ic.symbol, ic.venue, AssetClass(ic.asset_class), ic.tick_size, ic.lot_size,
                ic.multiplier, ic.currency,
            )  # fmt: skip
        except ValueError as e:  # what the config's checks let through (a Config built in code)
            raise ConfigError(file, f"instruments[{i}]", str(e)) from None
    hours = {}
    for i, ic in enumerate(config.instruments):
        if ic.trading_hours:
            try:
                windows = [parse_hours(h) for h in ic.trading_hours]
            except ValueError as e:
                raise ConfigError(file, f"instruments[{i}].trading_hours", str(e)) from None
            hours[i] = (ic.utc_offset_minutes * 60, windows)
    venues = {}
    for name, vc in config.venues.items():
        sim_path = getattr(vc, "simulator_config", "")
        if sim_path and not Path(sim_path).is_absolute():
            # Relative to the config file that names it, as secrets files are.
            vc = dataclasses.replace(vc, simulator_config=str(Path(file).parent / sim_path))
        venues[name] = load_object(VENUE_ADAPTERS[vc.kind])(name, vc)
    check_cpus(config.engine.cpu_affinity, file, "engine.cpu_affinity")
    warm = config.engine.keep_warm
    if warm == "auto":
        warm = "on" if any(getattr(v, "wants_warm_path", False) for v in venues.values()) else "off"
    try:
        engine = Engine(
            registry, venues, clock, rings=config.rings, risk=config.risk,
            metrics=config.metrics, name=config.engine.name, trading_hours=hours,
            portfolio=config.portfolio, router=config.router,
            keep_warm_ms=config.engine.keep_warm_interval_ms if warm == "on" else 0.0,
            cancel_on_stop=config.engine.cancel_on_stop,
        )  # fmt: skip
    except ValueError as e:  # a venue refusing its part of the config (say, a contract)
        raise ConfigError(file, "venues", str(e)) from None
    for i, sc in enumerate(config.strategies):
        key = f"strategies[{i}]"
        try:
            cls = load_object(sc.class_path)
        except ImportError as e:
            raise ConfigError(
                file, f"{key}.class", f"cannot import {sc.class_path!r}: {e}"
            ) from None
        if not (isinstance(cls, type) and issubclass(cls, Strategy)):
            raise ConfigError(file, f"{key}.class", f"{sc.class_path!r} is not a Strategy subclass")
        params = build(cls.Params, sc.params, file, f"{key}.params") if cls.Params else sc.params
        try:
            check_params(params)
        except ValueError as e:
            name = getattr(e, "field", "")
            where = f"{key}.params.{name}" if name else f"{key}.params"
            raise ConfigError(file, where, str(e)) from None
        engine.add_strategy(cls, sc.name, params, sc.instruments)
    feed = None
    if config.feed is not None:
        missing = [ic.symbol for ic in config.instruments if ic.ref_price is None]
        if missing:
            raise ConfigError(
                file, "instruments", f"the synthetic feed needs ref_price for: {', '.join(missing)}"
            )
        feed_cls = load_object(FEEDS[config.feed.kind])
        feed = feed_cls(config.feed, list(registry), [ic.ref_price for ic in config.instruments])
    # Every kernel was compiled (or loaded from cache) at import with explicit signatures and
    # warmed up by the engine; from here on a surprise signature raises instead of compiling.
    recovery = _open_journal(config, engine)
    report = hotpath.jit.freeze()
    log.info("kernels: %s", report.format())
    return App(config, engine, clock, feed, kernels=report, recovery=recovery)


def _open_journal(config: Config, engine: Engine) -> RecoveryReport | None:
    """With ``[journal] path``: rebuild the engine from the journal (``engine.recovery``), then
    journal everything from here on. Before any venue connects and any strategy starts."""
    jc = config.journal
    if not jc.path:
        return None
    try:
        journal = Journal.open(jc.path, jc.fsync, jc.fsync_interval_ms)
    except JournalError as e:
        raise ConfigError(config.source, "journal.path", str(e)) from None
    except OSError as e:  # a directory, no permission, a read-only disk: the operator's to fix
        raise ConfigError(
            config.source,
            "journal.path",
            f"cannot open the journal {jc.path}: {e.strerror or e}; give a file path this "
            "process can create and write",
        ) from None
    report = recover(engine, journal.contents, jc.path)
    engine.attach_journal(journal)
    engine.pump()  # what recovery reported (orders lost with an in-process venue) goes in now
    return report


async def stop_engine(
    engine: Engine, timeout_s: float, hurry: asyncio.Event | None = None
) -> list[Order]:
    """Stop ``engine`` (``Engine.stop``: the strategies' ``on_stop``, then a cancel for each
    order still open unless ``cancel_on_stop`` is off) and, while the loop keeps running, wait
    up to ``timeout_s`` for the venues to answer those cancels (``hurry`` set: stop waiting).
    Returns the orders still open after the wait, logged as an error: they stay working at
    their venues once the venues disconnect."""
    left = engine.stop()
    if not left or not engine.cancel_on_stop:
        return left
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while left and loop.time() < deadline and not (hurry is not None and hurry.is_set()):
        await asyncio.sleep(0.005)
        left = engine.working_orders()
    if left:
        log.error(
            "stopping: %d orders still open at the venues after waiting %.1f s for their "
            "cancels ([engine] stop_cancel_timeout_s): %s; check them at the venue",
            len(left), timeout_s, describe_orders(engine, left),
        )  # fmt: skip
    else:
        log.info("stopping: every open order is cancelled")
    return left


@dataclass(frozen=True, slots=True)
class RunReport:
    seconds: float
    updates: int
    orders: int
    fills: int
    rejects: int
    pnl: float
    latencies: list[LatencySummary]
    state: str
    metrics_port: int | None
    router: str = ""  # the shadow-vs-live comparison table, when a venue is not LIVE
    loop: str = ""  # the event loop's lag and stalls (LoopMonitor.describe), when watched
    error: str = ""  # why the run stopped on its own (a venue refused to trade); "" = it did not

    def format(self) -> str:
        lines = [
            "",
            f"tickwire summary: {self.seconds:.1f}s, {self.updates:,} book updates "
            f"({self.updates / max(self.seconds, 1e-9):,.0f}/s), {self.orders:,} orders, "
            f"{self.fills:,} fills, {self.rejects:,} rejects, P&L {self.pnl:+,.2f}, "
            f"trading {self.state}",
            "stage latency (ns stamps on every message):",
        ]
        lines += ["  " + s.format_us() for s in self.latencies]
        ttl = next((s for s in self.latencies if s.stage == "tick_to_order"), None)
        if ttl is not None and ttl.count:
            lines.append(
                f"tick-to-order: p50 {ttl.p50 / 1e3:.1f}µs  p99 {ttl.p99 / 1e3:.1f}µs  "
                f"p99.9 {ttl.p999 / 1e3:.1f}µs  (n={ttl.count})"
            )
        if self.loop:
            lines.append(self.loop)
        if self.router:
            lines.append(self.router)
        if self.error:
            lines.append(f"stopped: {self.error}")
        return "\n".join(lines)


def _say(out: TextIO, line: str) -> None:
    """Print ``line`` to ``out``; if whatever read it has gone (``tickwire demo | head``), the
    run goes on without it."""
    with contextlib.suppress(BrokenPipeError):
        print(line, file=out, flush=True)


def _status(engine: Engine, elapsed: float, last_updates: int, interval: float) -> str:
    updates = engine.book_actor.updates
    shadow = ""
    if engine.router.any_shadow:
        shadow = (
            f"shadowed {engine.router.shadowed:>7,}  "
            f"shadow P&L {engine.shadow_portfolio.total_pnl():>+12,.2f}  "
        )
    return (
        f"[{elapsed:5.1f}s] updates/s {(updates - last_updates) / interval:>10,.0f}  "
        f"orders {engine.router.orders:>7,}  fills {engine.fills:>7,}  "
        f"rejects {sum(engine.risk.rejects):>5,}  P&L {engine.portfolio.total_pnl():>+12,.2f}  "
        f"{shadow}{engine.trading_state.value}"
    )


async def run_app(
    app: App, duration_s: float | None = None, out: TextIO | None = None
) -> RunReport:
    """Run until ``duration_s`` passes, SIGINT/SIGTERM arrives or a venue refuses to trade;
    returns the end-of-run report (``error`` says why, when the run stopped on a refusal).

    A signal during start-up (a venue still connecting or reconciling) stops at once: the
    strategies never start. A metrics port that cannot be bound is a ``ConfigError``."""
    out = out or sys.stdout
    loop = asyncio.get_running_loop()
    if isinstance(app.clock, LiveClock):
        app.clock.bind(loop)
    engine = app.engine
    cfg = app.config
    if cfg.metrics.loop_monitor_ms > 0:
        engine.loop_monitor = LoopMonitor(
            loop, cfg.metrics.loop_monitor_ms / 1e3, cfg.metrics.loop_stall_ms / 1e3
        )
    if cfg.metrics.enabled:
        registry = engine.prometheus_registry()
        registry.register(VenueCollector(engine.venues))
        app.metrics = MetricsServer(registry, cfg.metrics.host, cfg.metrics.port)
        try:
            await app.metrics.start()
        except OSError as e:
            app.metrics = None
            raise ConfigError(
                cfg.source,
                "metrics.port",
                f"cannot serve /metrics on {cfg.metrics.host}:{cfg.metrics.port}: "
                f"{e.strerror or e}; pick a free port (0: any free one) or stop what holds it",
            ) from None
        _say(out, f"metrics: http://{cfg.metrics.host}:{app.metrics.port}/metrics")
    pin_to_cpus(cfg.engine.cpu_affinity, cfg.source, "engine.cpu_affinity")
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    busy = BusyPoll(loop)
    helpers: list[asyncio.Task] = []
    feed_task = None
    started = loop.time()
    refused: list[str] = []

    def check_refusals() -> None:
        # A venue that refuses to trade (IB's paper_only, an account the gateway does not
        # manage) has stopped connecting for good: running on would look healthy and do nothing.
        if not refused:
            refused.extend(_refusals(engine))
            if refused:
                log.critical("stopping: %s", "; ".join(refused))
                stop.set()

    try:
        if await _unless_stopped(_start_venues(engine), stop):
            check_refusals()
        if not stop.is_set():
            await app.after_venues_ready()  # recovery's last step: strategies trade after it
            frozen = settle_heap()  # no full collection walks start-up's objects mid-session
            log.debug("gc: %d start-up objects frozen", frozen)
            engine.start()
            if cfg.engine.busy_poll:
                busy.start()
            if engine.loop_monitor is not None:
                engine.loop_monitor.start()
            started = loop.time()
            if app.feed is not None:
                feed_task = loop.create_task(app.feed.run(engine, stop))
            _start_helpers(app, stop, started, helpers, check_refusals, out)
            if duration_s is None:
                await stop.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration_s)
    finally:
        stop.set()
        busy.stop()
        if engine.loop_monitor is not None:
            engine.loop_monitor.stop()
        # A second SIGINT/SIGTERM while the cancels are answered: stop waiting for them.
        hurry = asyncio.Event()
        for sig in signals:
            loop.add_signal_handler(sig, hurry.set)
        for t in helpers:
            t.cancel()
        if feed_task is not None:
            await feed_task
        try:
            await stop_engine(engine, cfg.engine.stop_cancel_timeout_s, hurry)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        for venue in engine.venues.values():
            await venue.stop()
        engine.pump()  # the venues' last answers, journaled
        engine.close_journal()
        if app.metrics is not None:
            await app.metrics.stop()
    elapsed = loop.time() - started
    return RunReport(
        elapsed,
        engine.book_actor.updates,
        engine.router.orders,
        engine.fills,
        sum(engine.risk.rejects),
        engine.portfolio.total_pnl(),
        engine.latency.summaries(),
        engine.trading_state.value,
        app.metrics.port if app.metrics else None,
        engine.router.format_comparison() if engine.router.any_shadow else "",
        engine.loop_monitor.describe() if engine.loop_monitor is not None else "",
        "; ".join(refused),
    )


async def _start_venues(engine: Engine) -> None:
    for venue in engine.venues.values():
        await venue.start()


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless ``stop`` is set first (then ``work`` is cancelled): True when it
    finished. IB's start waits up to connect_timeout_s + 2 x reconcile_timeout_s for a
    gateway still logging in; a signal must not wait that long."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(work)
    waiter = loop.create_task(stop.wait())
    try:
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            log.warning("stopping during start-up: the venues were still starting")
    return not task.cancelled() and task.result() is None


def _refusals(engine: Engine) -> list[str]:
    """Why each venue that refuses to trade does (its ``refused``; venues without one never
    refuse)."""
    return [
        f"venue {name} refused to trade: {why}"
        for name, venue in engine.venues.items()
        if (why := getattr(venue, "refused", ""))
    ]


def _start_helpers(
    app: App,
    stop: asyncio.Event,
    started: float,
    helpers: list[asyncio.Task],
    check_refusals: Callable[[], None],
    out: TextIO,
) -> None:
    """The run's timers: the status line, the latency fold, VaR samples, the journal's batch
    sync and the refusal check."""
    loop = asyncio.get_running_loop()
    engine, cfg = app.engine, app.config
    interval = cfg.engine.status_interval_s

    async def every(period: float, fn: Callable[[], object]) -> None:
        """``fn`` every ``period`` until the stop; one that raises is logged (then at most once a
        minute while it goes on failing) and called again: a status line or a journal sync
        that failed once must not stop for the rest of the run unnoticed."""
        told = -math.inf
        while not stop.is_set():
            await asyncio.sleep(period)
            try:
                fn()
            except Exception:
                if loop.time() - told >= 60.0:
                    told = loop.time()
                    log.exception("periodic %s failed (repeats are logged once a minute)",
                                  getattr(fn, "__qualname__", repr(fn)))  # fmt: skip

    last = [0]

    def status() -> None:
        line = _status(engine, loop.time() - started, last[0], interval)
        last[0] = engine.book_actor.updates
        app.status_lines.append(line)
        _say(out, line)

    helpers.append(loop.create_task(every(interval, status)))
    helpers.append(loop.create_task(every(cfg.metrics.fold_interval_ms / 1e3, engine.latency.fold)))
    # The portfolio's return series for historical VaR, one equity sample per interval.
    var_s = cfg.portfolio.var_sample_s
    helpers.append(loop.create_task(every(var_s, lambda: engine.portfolio.sample(app.clock.now()))))
    journal = engine.journal
    if journal is not None and cfg.journal.fsync == "batch":
        # Batch durability: what was appended reaches the disk within fsync_interval_ms.
        sync_s = cfg.journal.fsync_interval_ms / 1e3
        helpers.append(loop.create_task(every(sync_s, journal.maybe_sync)))
    helpers.append(loop.create_task(every(min(interval, 1.0), check_refusals)))
