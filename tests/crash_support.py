"""The crash lab: an engine trading through ``IBVenue`` against the gateway simulator, killed
with SIGKILL while orders are in flight, then restarted from its journal.

Every part runs in its own process, forked from the test process (the kernels are compiled
there once; a fresh interpreter would spend ~2 s importing them):

* the gateway simulator, for the whole run: it is the broker and outlives the engine;
* the engine, trading with ``Churn`` (new, marketable and passive orders, cancels, modifies)
  until it is killed at a seeded random moment;
* the engine again, started from the same config and journal: it recovers, reconciles with
  the gateway, cancels what is left, waits for the last answers and writes what it ended with.

The test then holds the three records against each other: the gateway's own ledger (control
port), the journal, and the recovered engine's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.book import BookView
from engine.messages import NO_PRICE, EventKind, OrderEvent
from engine.strategy import Strategy

SYMBOLS = ("AAPL", "MSFT")


@dataclass(frozen=True, slots=True)
class ChurnParams:
    seed: int = 1
    act_every_ms: float = 8.0
    max_position: float = 60.0
    seen_file: str = ""  # every event the strategy is told of, one JSON line each


class Churn(Strategy):
    """Keeps orders in flight: crossing and passive limits, cancels and modifies, at random."""

    Params = ChurnParams

    def on_start(self) -> None:
        p: ChurnParams = self.params
        self.rng = random.Random(p.seed)
        self.last_ns = 0
        self.fd = (
            os.open(p.seen_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if p.seen_file
            else -1
        )

    def _seen(self, ev: OrderEvent) -> None:
        if self.fd >= 0:
            line = [int(ev.kind), ev.client_order_id, ev.exec_id, ev.fill_lots, ev.cum_lots]
            os.write(self.fd, orjson.dumps(line) + b"\n")

    def on_order(self, event: OrderEvent) -> None:
        self._seen(event)

    def on_fill(self, fill: OrderEvent) -> None:
        self._seen(fill)

    def on_book(self, book: BookView) -> None:
        now = self.now()
        if now - self.last_ns < self.params.act_every_ms * 1e6:
            return
        bid, ask = book.bid_ticks, book.ask_ticks
        if bid == NO_PRICE or ask == NO_PRICE:
            return
        self.last_ns = now
        inst = book.instrument
        tick = inst.tick_size
        rng = self.rng
        pos = self.position(inst)
        opens = self.open_orders(inst)
        roll = rng.random()
        if opens and roll < 0.2:
            self.cancel(rng.choice(opens).client_order_id)
            return
        if opens and roll < 0.3:
            o = rng.choice(opens)
            self.modify(o.client_order_id, price=(o.price_ticks + rng.choice((-1, 1))) * tick)
            return
        buy = pos < 0 if abs(pos) >= self.params.max_position else rng.random() < 0.5
        qty = float(rng.randint(1, 5))
        if roll < 0.65:  # crossing: fills at once, mostly
            price = (ask + 2) * tick if buy else (bid - 2) * tick
        else:  # passive: rests, gets cancelled, modified or filled later
            price = (bid - rng.randint(0, 3)) * tick if buy else (ask + rng.randint(0, 3)) * tick
        (self.buy if buy else self.sell)(inst, qty, round(price, 2))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_config(tmp: Path, port: int, seed: int, journal_fsync: str = "batch") -> dict[str, Any]:
    """The engine's config (a TOML document as a dict): IB venue, journal, Churn."""
    return {
        "engine": {"name": "crash", "log_level": "WARNING"},
        "metrics": {"enabled": False},
        "instruments": [
            {"symbol": s, "venue": "IB", "asset_class": "stock", "tick_size": 0.01}
            for s in SYMBOLS
        ],
        "risk": {
            "max_order_qty": 100, "max_position": 1000, "max_open_orders": 200,
            "equity": 10_000_000, "max_leverage": 10.0, "max_concentration": 1.0,
            "price_collar_pct": 5.0,
        },
        "venues": {
            "IB": {
                "kind": "ib", "port": port, "client_id": 1, "depth_rows": 0,
                "tick_by_tick": False, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2,
                "reconcile_timeout_s": 3.0, "connect_timeout_s": 3.0,
                "state_file": str(tmp / "ib_state.json"), "pacing_msgs_per_s": 40.0,
                "pacing_burst": 10,
            },
        },
        "journal": {"path": str(tmp / "journal.twj"), "fsync": journal_fsync},
        "strategies": [
            {
                "name": "churn", "class": "crash_support:Churn",
                "instruments": list(SYMBOLS),
                "params": {"seed": seed, "seen_file": str(tmp / "seen.jsonl")},
            },
        ],
    }  # fmt: skip


# ---- processes ------------------------------------------------------------------------------


def _child(fn, *args: Any) -> int:
    """Fork; the child runs ``fn(*args)`` on a fresh uvloop loop and exits without cleanup."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        import uvloop

        signal.signal(signal.SIGINT, signal.SIG_DFL)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(fn(*args))
        code = 0
    except BaseException:
        logging.getLogger("crash_lab").exception("child failed")
    finally:
        os._exit(code)


async def _gateway_main(ready_w: int, seed: int) -> None:
    from adapters.ib.gateway_sim.server import GatewaySimServer
    from tests.ib_sim_support import sim_config

    cfg = sim_config(
        gateway={"seed": seed, "control_port": 0},
        market={"events_per_second": 300, "tick_interval_ms": 1.0},
        orders={"duplicate_status": True},
    )
    server = GatewaySimServer(cfg)
    await server.start()
    os.write(ready_w, orjson.dumps([server.port, server.control_port]))
    os.close(ready_w)
    await asyncio.Event().wait()


async def _engine_main(cfg: dict[str, Any], log_file: str) -> None:
    from engine.app import build_app, run_app
    from engine.config import parse_config

    _log_to(log_file)
    app = build_app(parse_config(cfg, "crash-lab"))
    with open(os.devnull, "w") as out:
        await run_app(app, None, out)


async def _recover_main(cfg: dict[str, Any], log_file: str, out_file: str) -> None:
    """Start from the journal, reconcile, cancel what is left, settle, write the outcome."""
    from engine.app import build_app
    from engine.clock import LiveClock
    from engine.config import parse_config

    _log_to(log_file)
    app = build_app(parse_config(cfg, "crash-lab"))
    engine = app.engine
    loop = asyncio.get_running_loop()
    if isinstance(app.clock, LiveClock):
        app.clock.bind(loop)
    venue = engine.venues["IB"]
    await venue.start()
    ready = await venue.wait_ready(10)
    await app.after_venues_ready()  # the recovery report: positions against the broker's
    for v in engine.venues.values():
        v.cancel_all()
    deadline = loop.time() + 8.0
    while engine.tracker.open and loop.time() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.4)  # fills racing the cancels
    engine.pump()
    registry = engine.registry
    outcome = {
        "ready": ready,
        "open_left": sorted(engine.tracker.open),
        "positions": {
            inst.symbol: engine.portfolio.net_lots(inst.id) * inst.lot_size for inst in registry
        },
        "orders": {
            str(coid): [o.state.value, o.filled_lots]
            for coid, o in [*engine.tracker.finished.items(), *engine.tracker.open.items()]
        },
        "recovery": app.recovery.as_dict() if app.recovery is not None else None,
    }
    Path(out_file).write_bytes(orjson.dumps(outcome))
    await venue.stop()
    engine.close_journal()


def _log_to(path: str) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def control(port: int, action: str) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(orjson.dumps({"action": action}) + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    reply = orjson.loads(buf)
    assert reply.get("ok"), reply
    return reply


def _wait(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"process {pid} did not finish within {timeout}s")


@dataclass
class CrashRun:
    """One seeded run: what each record says."""

    seed: int
    kill_after_s: float
    ledger: dict[str, Any]
    outcome: dict[str, Any]
    journal_before: Any  # read_journal of the file the killed process left
    journal_after: Any  # read_journal after recovery
    seen: list[list[Any]]  # events the killed engine's strategy was told of
    log: str


def _wait_for_first_order(journal_path: Path, eng: int, timeout_s: float = 60.0) -> None:
    """Until the engine has journaled its first order: the seeded delay counts from there, so
    a machine slow to start the engine (imports, the gateway handshake) moves no kill before
    trading began."""
    from engine.journal import JournalError, OrderRecord, read_journal

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, JournalError):  # not created, no header yet
            if any(isinstance(r, OrderRecord) for r in read_journal(journal_path).records):
                return
        done, _ = os.waitpid(eng, os.WNOHANG)
        assert done == 0, "the engine exited before it sent an order"
        time.sleep(0.005)
    raise AssertionError(f"the engine journaled no order within {timeout_s:.0f} s")


def crash_run(tmp: Path, seed: int, min_s: float = 0.0, max_s: float = 1.2) -> CrashRun:
    """Gateway up; engine trades and, a seeded delay after its first order, is SIGKILLed;
    engine recovers."""
    from engine.journal import read_journal

    rng = random.Random(seed)
    kill_after = rng.uniform(min_s, max_s)
    r, w = os.pipe()
    gw = _child(_gateway_main, w, seed)
    os.close(w)
    try:
        with os.fdopen(r, "rb") as pipe:
            port, control_port = orjson.loads(pipe.read())
        cfg = engine_config(tmp, port, seed)
        log_file = str(tmp / "engine.log")
        eng = _child(_engine_main, cfg, log_file)
        journal_path = Path(cfg["journal"]["path"])
        _wait_for_first_order(journal_path, eng)
        if seed % 2:
            # Just after the journal grows past a seeded size: an order or an event was
            # journaled a moment ago, and what follows it (the socket write, the strategy's
            # callback) may or may not have happened.
            size = rng.randint(2_000, 30_000)
            deadline = time.monotonic() + 2 * max_s
            while time.monotonic() < deadline:
                with contextlib.suppress(FileNotFoundError):
                    if journal_path.stat().st_size >= size:
                        break
                time.sleep(0.0005)
        else:
            time.sleep(kill_after)
        os.kill(eng, signal.SIGKILL)
        os.waitpid(eng, 0)
        before = read_journal(journal_path)
        out_file = str(tmp / "outcome.json")
        rec = _child(_recover_main, cfg, log_file, out_file)
        code = _wait(rec, 30)
        log = Path(log_file).read_text() if Path(log_file).exists() else ""
        assert code == 0, f"recovery process failed ({code}); log:\n{log[-4000:]}"
        ledger = control(control_port, "ledger")
        outcome = orjson.loads(Path(out_file).read_bytes())
        after = read_journal(journal_path)
        seen_path = tmp / "seen.jsonl"
        seen = (
            [orjson.loads(x) for x in seen_path.read_bytes().splitlines() if x.strip()]
            if seen_path.exists()
            else []
        )
        return CrashRun(seed, kill_after, ledger, outcome, before, after, seen, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(gw, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(gw, 0)


FILL = int(EventKind.FILL)
