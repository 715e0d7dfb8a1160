"""The engine and its journal when the journal's file cannot be written (a full disk, an I/O
error, a file size limit).

The failure is real: the engine (or the journal alone) runs in a forked child whose file size
limit (RLIMIT_FSIZE, what ``ulimit -f`` sets) is lowered to just past the journal's length, so
the kernel cuts the next write short and refuses the rest (EFBIG), as a full disk does
(ENOSPC); later the limit is raised again, as an operator freeing space would. The child then
exits without closing anything, as a killed process would, and the test restarts from the
journal it left.
"""

from __future__ import annotations

import logging
import os
import pickle
import resource
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from event_recorder import Recorder

from adapters.sim.venue import SimVenue
from engine.clock import SimClock
from engine.config import RiskConfig, SimVenueConfig
from engine.instruments import AssetClass, InstrumentRegistry
from engine.journal import Journal, OrderRecord, StateRecord, read_journal
from engine.messages import BookSide
from engine.orders import OrderState
from engine.recovery import recover
from engine.risk_gate import TradingState, Verdict
from engine.router import NOT_JOURNALED
from engine.runtime import JOURNAL_REMINDER_NS, JOURNAL_RETRY_NS, Engine
from hotpath import risk as rk
from tests.book_support import set_levels

START_NS = 1_000_000_000
BID, ASK = int(BookSide.BID), int(BookSide.ASK)
SECOND = 1_000_000_000


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a forked child (its file size limit is its own); its result, pickled
    back through a pipe. The child ends with ``os._exit``: nothing is closed or flushed."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = pickle.dumps(("ok", fn(*args)))
        except BaseException:
            out = pickle.dumps(("error", traceback.format_exc()))
        with os.fdopen(w, "wb") as f:  # a pipe: no file size limit applies
            f.write(out)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    assert status == "ok", value
    return value


class Session:
    """An engine with ES on an in-process simulated venue that answers at once, a recording
    strategy, and a journal at ``path``."""

    def __init__(self, path: Path) -> None:
        self.registry = InstrumentRegistry()
        self.es = self.registry.add("ES", "SIM", AssetClass.FUTURE, 0.25, 1.0, 50.0)
        self.clock = SimClock(START_NS)
        self.venue = SimVenue("SIM", SimVenueConfig(ack_latency_us=0, fill_latency_us=0))
        self.engine = Engine(
            self.registry, {"SIM": self.venue}, self.clock, risk=RiskConfig(equity=1e9)
        )
        self.strat: Recorder = self.engine.add_strategy(Recorder, "rec", None, ["ES"])
        self.path = path

    def book(self, *levels: tuple[int, int, int]) -> None:
        set_levels(self.engine, self.es.id, self.clock.now(), levels)

    def buy(self, qty: float, price: float) -> int:
        coid = self.strat.buy(self.es, qty, price)
        self.engine.pump()
        return coid

    def sell(self, qty: float, price: float) -> int:
        coid = self.strat.sell(self.es, qty, price)
        self.engine.pump()
        return coid

    def order(self, coid: int):
        tr = self.engine.tracker
        return tr.get(coid) or tr.finished.get(coid)

    def gauges(self) -> dict[str, float]:
        return {name: value for name, _, _, value in self.engine.gauges() if "journal" in name}


class Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((record.levelname, record.name, record.getMessage()))


def _capture_logs() -> Logs:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    logs = Logs()
    root.addHandler(logs)
    root.setLevel(logging.INFO)
    return logs


def _limit_file_size(nbytes: int) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))


def _unlimit_file_size() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))


def _snapshot(s: Session, coids: list[int]) -> dict[str, Any]:
    """What the strategy heard of each order and where the OMS, the portfolio and the risk
    kernels have it, by the order's index in ``coids`` (ids differ between runs)."""
    index = {c: i for i, c in enumerate(coids)}
    events = [
        (index[e.client_order_id], e.kind.name, e.fill_lots, e.fill_price_ticks, e.cum_lots)
        for e in s.strat.events
        if e.client_order_id in index
    ]
    states = {}
    for i, c in enumerate(coids):
        o = s.order(c)
        states[i] = (o.state.name, o.filled_lots, o.qty_lots, o.price_ticks)
    ist = s.engine.risk.arrays.ist[s.es.id]
    return {
        "events": events,
        "states": states,
        "lots": s.engine.portfolio.position(s.strat.id, s.es.id).lots,
        "open_buy": float(ist[rk.IS_OPEN_BUY]),
        "open_sell": float(ist[rk.IS_OPEN_SELL]),
    }


def _trade(path: Path, fail: bool, recover_journal: bool = True, reset: bool = True) -> dict:
    """Resting orders A, B, C; then (with ``fail``) the journal's file stops taking writes;
    then a new order, 30 more, a modify of C, a cancel of B and a market move that fills A;
    two and a half minutes pass; then (``recover_journal``) the file takes writes again, and
    (``reset``) the operator sets trading ACTIVE."""
    logs = _capture_logs()
    s = Session(path)
    engine = s.engine
    journal = Journal.open(path, fsync="batch")
    engine.attach_journal(journal)
    engine.start()
    s.book((BID, 399, 100), (ASK, 400, 100))
    a, b, c = s.buy(5, 99.00), s.sell(5, 101.00), s.buy(3, 98.25)
    s.strat.modify(c, price=98.50)  # every path once before the limit (kernels, caches)
    engine.pump()
    s.strat.cancel(s.buy(1, 98.00))
    engine.pump()
    out: dict[str, Any] = {"pre_failure_records": len(read_journal(path).records)}
    if fail:
        _limit_file_size(os.path.getsize(path) + 10)  # the next record is cut short
    refused = [s.buy(2, 98.00)] + [s.buy(1, 98.00) for _ in range(30)]
    s.strat.modify(c, price=98.25)
    engine.pump()
    s.strat.cancel(b)
    engine.pump()
    s.book((BID, 399, 0), (ASK, 400, 0), (BID, 395, 100), (ASK, 396, 100))  # A fills
    out["state_in_failure"] = engine.trading_state.value
    out["gauges_in_failure"] = s.gauges()
    out["held"] = len(journal.backlog)
    out["size_in_failure"] = os.path.getsize(path)
    out["lift"] = engine.set_trading_state(TradingState.ACTIVE, "operator: resume") is not None
    s.clock.advance_to(s.clock.now() + 150 * SECOND)  # retried every second, still refused
    out["held_later"] = len(journal.backlog)
    if recover_journal:
        if fail:
            _unlimit_file_size()
        s.clock.advance_to(s.clock.now() + JOURNAL_RETRY_NS)
        out["gauges_after"] = s.gauges()
        out["state_after"] = engine.trading_state.value
    out["snapshot"] = _snapshot(s, [a, b, c])
    out["refused"] = [
        (e.kind.name, e.reason_code, e.reason)
        for e in s.strat.events
        if e.client_order_id in refused
    ]
    out["c_events"] = [(e.kind.name, e.reason_code, e.reason) for e in s.strat.of(c)]
    out["ring_errors"] = engine.intents.errors + engine.events.errors
    out["orders"] = {
        coid: (o.state.name, o.filled_lots)
        for coid, o in [*engine.tracker.finished.items(), *engine.tracker.open.items()]
    }
    out["coids"] = [a, b, c, *refused]
    out["logs"] = logs.records
    if reset and recover_journal and out["state_after"] == "halted":
        # Halted until the operator lifts it; then orders go out again.
        engine.set_trading_state(TradingState.ACTIVE, "operator: disk freed")
        out["after_reset"] = s.order(s.buy(1, 98.00)).state.name
    return out


def _restart(path: Path) -> tuple[Session, Any]:
    """A new engine from the journal at ``path``, as after a kill (before any venue answers)."""
    s = Session(path)
    journal = Journal.open(path, fsync="batch")  # refuses a file damaged in the middle
    report = recover(s.engine, journal.contents, str(path))
    journal.close()
    return s, report


def test_order_events_are_applied_and_held_while_the_journal_refuses_writes(tmp_path):
    failed = in_child(_trade, tmp_path / "failed.twj", True)
    clean = in_child(_trade, tmp_path / "clean.twj", False)

    # Nothing the venue said was lost: the strategy heard the same of A and B, and the OMS,
    # the portfolio and the risk kernels hold the same (C's modify was refused, see below).
    f, c = failed["snapshot"], clean["snapshot"]

    def heard(snap: dict[str, Any], i: int) -> list[tuple]:
        return [e for e in snap["events"] if e[0] == i]

    for i in (0, 1):  # A filled, B cancelled
        assert heard(f, i) == heard(c, i)
        assert f["states"][i] == c["states"][i]
    assert f["states"][0][:2] == ("FILLED", 5)
    assert f["states"][1][0] == "CANCELLED", "the cancel went out"
    assert f["lots"] == c["lots"] == 5
    # C keeps its working size and price (its modify was refused) and only that is reserved.
    assert f["states"][2] == ("ACCEPTED", 0, 3, 394)
    assert (f["open_buy"], f["open_sell"]) == (3.0, 0.0)
    assert failed["ring_errors"] == 0

    # Trading HALTED at the first failed write; no lift while the file refuses writes.
    assert failed["state_in_failure"] == "halted" and not failed["lift"]
    assert failed["gauges_in_failure"]["journal_writable"] == 0.0
    assert failed["gauges_in_failure"]["journal_backlog_records"] == failed["held"] > 60
    assert failed["held_later"] == failed["held"], "a retry that fails writes nothing twice"

    # The order that met the failure was not sent; the rest were refused by the halted gate,
    # and the strategy reads why; the modify was refused likewise.
    first, *rest = failed["refused"]
    assert first[:2] == ("REJECTED", NOT_JOURNALED)
    assert first[2].startswith("trading halted: the journal cannot be written (File too large")
    assert len(rest) == 30
    for kind, code, reason in rest:
        assert (kind, code) == ("REJECTED", Verdict.TRADING_HALTED)
        assert "the journal" in reason and "cannot be written" in reason
    kind, code, reason = failed["c_events"][-1]
    assert (kind, code) == ("CANCEL_REJECTED", Verdict.TRADING_HALTED)
    assert "cannot be written" in reason

    # One CRITICAL naming the file, the OS error and the remedy; a reminder a minute, not a
    # line per message; nothing from the rings' handlers.
    logs = failed["logs"]
    critical = [m for lvl, _, m in logs if lvl == "CRITICAL"]
    assert len(critical) == 1, critical
    assert str(tmp_path / "failed.twj") in critical[0]
    assert "File too large (EFBIG)" in critical[0] and "ulimit -f" in critical[0]
    reminders = [m for lvl, _, m in logs if lvl == "ERROR"]
    assert len(reminders) == 150 * SECOND // JOURNAL_REMINDER_NS == 2, reminders
    assert not [x for x in logs if x[1] == "engine.ring"]
    assert len([x for x in logs if x[0] in ("WARNING", "ERROR", "CRITICAL")]) <= 8, logs

    # Once the file takes writes again: everything held is written, in order; still HALTED
    # until the operator lifts it, then orders go out again.
    assert failed["gauges_after"] == {"journal_writable": 1.0, "journal_backlog_records": 0.0}
    assert any("takes writes again" in m for _, _, m in logs)
    assert failed["state_after"] == "halted"
    assert failed["after_reset"] == "ACCEPTED"


def test_a_restart_from_the_journal_written_after_the_failure_recovers_the_same_state(tmp_path):
    path = tmp_path / "j.twj"
    out = in_child(_trade, path, True, True, False)
    contents = read_journal(path)
    assert contents.corrupt_at is None and contents.torn == 0, contents.errors

    # In the order things happened: the order that met the failure, the halt, the rest.
    after = contents.records[out["pre_failure_records"] :]
    assert isinstance(after[0], OrderRecord) and after[0].client_order_id == out["coids"][3]
    assert isinstance(after[1], StateRecord) and after[1].state == "halted"
    assert "journal" in after[1].reason

    s, report = _restart(path)
    assert report.corrupt_at is None
    for coid, (state, filled) in out["orders"].items():
        o = s.order(coid)
        assert o is not None, f"order {coid} not rebuilt"
        assert (o.state.name, o.filled_lots) == (state, filled), coid
    assert s.engine.portfolio.position(s.strat.id, s.es.id).lots == out["snapshot"]["lots"]
    ist = s.engine.risk.arrays.ist[s.es.id]
    assert float(ist[rk.IS_OPEN_BUY]) == out["snapshot"]["open_buy"] == 3.0
    # Still HALTED: only the operator lifts it, and they had not.
    assert s.engine.trading_state is TradingState.HALTED
    assert report.trading_state == "halted"


def test_a_kill_while_the_journal_refuses_writes_leaves_a_whole_file(tmp_path):
    """Killed before the file took writes again: what was held is lost with the process (the
    venue's reconciliation tells), but the file holds no torn record and opens for appending."""
    path = tmp_path / "j.twj"
    out = in_child(_trade, path, True, False)
    assert out["size_in_failure"] == os.path.getsize(path), "nothing written after the failure"
    contents = read_journal(path)
    assert contents.corrupt_at is None and contents.torn == 0
    assert len(contents.records) == out["pre_failure_records"]
    s, _ = _restart(path)
    a, b, c = out["coids"][:3]
    assert [s.order(x).state for x in (a, b, c)] == [OrderState.ACCEPTED] * 3


def _modify_meets_failure(path: Path) -> dict[str, Any]:
    logs = _capture_logs()
    s = Session(path)
    engine = s.engine
    engine.attach_journal(Journal.open(path, fsync="always"))
    engine.start()
    s.book((BID, 399, 100), (ASK, 400, 100))
    a = s.buy(3, 98.50)
    s.strat.modify(a, 4)
    engine.pump()
    _limit_file_size(os.path.getsize(path))  # the next write is refused outright
    s.strat.modify(a, 6, 98.25)
    engine.pump()
    o = s.order(a)
    ist = engine.risk.arrays.ist[s.es.id]
    out = {
        "events": [(e.kind.name, e.reason_code, e.reason) for e in s.strat.of(a)],
        "order": (o.state.name, o.qty_lots, o.price_ticks, o.pending_qty_lots, o.reserved),
        "open_buy": float(ist[rk.IS_OPEN_BUY]),
        "state": engine.trading_state.value,
    }
    s.strat.cancel(a)
    engine.pump()
    out["after_cancel"] = s.order(a).state.name
    out["critical"] = [m for lvl, _, m in logs.records if lvl == "CRITICAL"]
    return out


def test_a_modify_that_cannot_be_journaled_is_not_sent_and_the_order_stays_as_it_was(tmp_path):
    out = in_child(_modify_meets_failure, tmp_path / "j.twj")
    kind, code, reason = out["events"][-1]
    assert (kind, code) == ("CANCEL_REJECTED", NOT_JOURNALED)
    assert reason == (
        "trading halted: the journal cannot be written (File too large (EFBIG)); the modify "
        "was not sent"
    )
    assert out["order"] == ("ACCEPTED", 4, 394, 0, 4), "the size it works at, 4 reserved"
    assert out["open_buy"] == 4.0
    assert out["state"] == "halted" and len(out["critical"]) == 1
    assert out["after_cancel"] == "CANCELLED", "a cancel still goes out"


@pytest.mark.parametrize("fsync", ["never", "batch", "always"])
def test_a_short_write_is_cut_off_and_held_records_are_written_in_order(tmp_path, fsync):
    """A record the kernel cut short must not stay in the file: once writes succeed again it
    would be damage in the middle, and the next start would refuse the journal."""

    def child(path: Path) -> dict[str, Any]:
        j = Journal.open(path, fsync=fsync)
        failures: list[str] = []
        j.on_failure = lambda journal: failures.append(journal.problem)
        written = [j.append_cancel(1, 1)]
        size = os.path.getsize(path)
        _limit_file_size(size + 10)
        written += [j.append_cancel(i, i) for i in range(2, 6)]
        cut = os.path.getsize(path)
        retried = j.retry()
        _unlimit_file_size()
        written.append(j.append_cancel(6, 6))  # held: behind the others
        recovered = j.retry()
        written.append(j.append_cancel(7, 7))
        return {
            "size": size, "cut": cut, "written": written, "failures": failures,
            "retried": retried, "recovered": recovered, "error": j.error,
        }  # fmt: skip

    path = tmp_path / "j.twj"
    out = in_child(child, path)
    assert out["cut"] == out["size"], "the torn part of the record was cut off"
    assert out["written"] == [True, False, False, False, False, False, True]
    assert not out["retried"] and out["recovered"] and out["error"] == ""
    assert len(out["failures"]) == 1 and "File too large (EFBIG)" in out["failures"][0]
    contents = read_journal(path)
    assert contents.corrupt_at is None and contents.torn == 0
    assert [r.client_order_id for r in contents.records] == [1, 2, 3, 4, 5, 6, 7]
    Journal.open(path).close()


def test_close_says_what_it_could_not_write_is_lost(tmp_path):
    def child(path: Path) -> list[str]:
        logs = _capture_logs()
        j = Journal.open(path, fsync="batch")
        _limit_file_size(os.path.getsize(path))
        j.append_cancel(1, 1)
        j.append_cancel(2, 2)
        j.close()
        return [m for lvl, _, m in logs.records if lvl == "CRITICAL"]

    (critical,) = in_child(child, tmp_path / "j.twj")
    assert "2 records" in critical and "lost" in critical and "File too large" in critical
