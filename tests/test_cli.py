"""The ``tickwire`` command as an operator runs it: a real process, real signals, real HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKWIRE = [sys.executable, "-m", "engine.cli"]


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        TICKWIRE + args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def _summary_numbers(out: str) -> dict[str, int]:
    m = re.search(r"tickwire summary: .*?, ([\d,]+) book updates .*?, ([\d,]+) orders, "
                  r"([\d,]+) fills", out)  # fmt: skip
    assert m, out
    updates, orders, fills = (int(g.replace(",", "")) for g in m.groups())
    return {"updates": updates, "orders": orders, "fills": fills}


def test_synthetic_demo_runs_the_pipeline_and_prints_a_summary():
    proc = _run(["demo", "--duration", "2", "--config", "config/demo.toml"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    numbers = _summary_numbers(out)
    assert numbers["updates"] > 50_000
    assert numbers["orders"] > 0 and numbers["fills"] > 0
    assert re.search(r"^\[\s*1\.\ds\] updates/s", out, re.M), "one status line per second"
    for stage in ("feed_to_book", "risk", "tick_to_order"):
        assert re.search(rf"^\s+{stage}\s+n=\d+ .*p50=.*p99=.*p99\.9=", out, re.M), stage
    assert "tick-to-order: p50" in out
    assert re.search(r"^event loop lag \(a timer every 10 ms\): p50 [\d.]+ ms", out, re.M), out


def test_default_demo_trades_through_the_ib_adapter_against_the_embedded_simulator():
    proc = _run(["demo", "--duration", "3"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    numbers = _summary_numbers(out)
    assert numbers["updates"] > 0 and numbers["orders"] > 0 and numbers["fills"] > 0
    assert "tick-to-order: p50" in out
    assert re.search(r"^\s+order_ack\s+n=[1-9]", out, re.M), "IB acknowledged orders"


def _write_config(tmp_path: Path, port: int) -> Path:
    text = (ROOT / "config" / "demo.toml").read_text()
    text = re.sub(r"^port = 0.*$", f"port = {port}", text, flags=re.M)
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_run_stops_gracefully_on_sigterm_and_serves_metrics(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = _write_config(tmp_path, port)
    proc = subprocess.Popen(
        [*TICKWIRE, "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                    body = r.read().decode()
                if "tickwire_orders_total" in body and re.search(
                    r"^tickwire_messages_total\{ring=\"book_deltas\"\} [1-9]", body, re.M
                ):
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert "tickwire_stage_latency_seconds_bucket" in body
        assert 'tickwire_trading_state{state="active"} 1.0' in body
        assert "tickwire_loop_lag_seconds_bucket" in body
        assert re.search(r"^tickwire_loop_stalls_total \d", body, re.M)
        if Path("/proc/thread-self/schedstat").exists():  # the not-running time split
            assert re.search(r"^tickwire_loop_stall_queued_seconds_total \d", body, re.M)
            assert re.search(r"^tickwire_loop_stall_away_seconds_total \d", body, re.M)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert _summary_numbers(out)["updates"] > 0


def test_config_errors_exit_2_naming_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (ROOT / "config" / "demo.toml").read_text().replace("max_position", "max_postion")
    )
    proc = _run(["run", "--config", str(bad)])
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "risk.max_postion" in proc.stderr
    assert "max_position" in proc.stderr

    missing = tmp_path / "nope.toml"
    proc = _run(["run", "--config", str(missing)])
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "not found" in proc.stderr

    # A file the config names (the embedded simulator's) is checked at start-up too.
    sim_missing = tmp_path / "demo_ib.toml"
    sim_missing.write_text((ROOT / "config" / "demo_ib.toml").read_text())
    proc = _run(["demo", "--duration", "1", "--config", str(sim_missing)])
    assert proc.returncode == 2, proc.stderr
    assert str(tmp_path / "gateway_sim_demo.toml") in proc.stderr and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_cancels_its_open_orders_on_sigint_before_it_exits(tmp_path):
    """The operator's stop goes through the engine's stop: after SIGINT the market maker's
    quotes are cancelled and answered before the process exits, so the next start finds no
    order left open (it used to find its quotes 'lost with an in-process venue')."""
    import tomllib

    from engine.app import build_app
    from engine.config import parse_config

    journal = tmp_path / "orders.twj"
    text = (ROOT / "config" / "demo.toml").read_text()  # metrics on port 0: any free one
    config = tmp_path / "run.toml"
    config.write_text(f'{text}\n[journal]\npath = "{journal}"\n')
    proc = subprocess.Popen(
        [*TICKWIRE, "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # a status line with orders sent: it is trading
            if re.search(r"orders\s+[1-9]", line):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert _summary_numbers(out)["orders"] > 0
    assert "every open order is cancelled" in err
    data = tomllib.loads(config.read_text())
    data["metrics"]["enabled"] = False
    again = build_app(parse_config(data, str(config)))
    assert again.recovery.orders > 0
    assert again.recovery.open_orders == 0 and again.recovery.lost == []
    again.engine.close_journal()


def test_run_exits_1_when_a_venue_refuses_to_trade(tmp_path):
    """paper_only against a gateway with a live account: the run ends on its own with exit
    code 1 and the reason, so a supervisor restarting on failure sees a failure."""
    (tmp_path / "live_gateway.toml").write_text('[gateway]\naccounts = ["U7654321"]\n')
    text = (ROOT / "config" / "demo_ib.toml").read_text()
    text = text.replace(
        'simulator_config = "gateway_sim_demo.toml"', 'simulator_config = "live_gateway.toml"'
    )
    config = tmp_path / "live.toml"
    config.write_text(text)
    proc = _run(["run", "--config", str(config)], timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "tickwire: stopped: venue IB refused to trade: paper_only is on" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_journal_that_cannot_be_written_halts_once_loudly_and_shows_on_metrics(tmp_path):
    """The journal's file system refuses writes (here a file size limit, as a full disk
    would): trading is HALTED with one CRITICAL line naming the file, the error and the
    remedy (not a traceback per order message), order events are still processed and held in
    memory, and /metrics shows it so an operator can alert on it."""
    import resource
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = _write_config(tmp_path, port)
    journal = tmp_path / "j.twj"
    config.write_text(f'{config.read_text()}\n[journal]\npath = "{journal}"\n')

    def small_files() -> None:  # in the child: writes past 40 KB fail (EFBIG), no SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_960, 40_960))

    proc = subprocess.Popen(
        [*TICKWIRE, "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=small_files,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if ("CRITICAL" in line and "cannot be written" in line) or len(lines) > 200:
                break  # (a flood of tracebacks instead: the assertions below say so)
        time.sleep(2.0)  # trading goes on being refused; events go on arriving
        url = f"http://127.0.0.1:{port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += err.splitlines()
    critical = [x for x in lines if "CRITICAL" in x]
    assert (
        critical and f"journal {journal} cannot be written: File too large (EFBIG)" in critical[0]
    )
    assert "ulimit -f" in critical[0]
    assert not any("Traceback" in x for x in lines), "".join(lines[:40])
    assert len(lines) < 60, "".join(lines)

    def metric(name: str) -> float:
        m = re.search(rf"^tickwire_{name} (\S+)$", text, re.M)
        assert m, (name, text)
        return float(m.group(1))

    assert metric("journal_writable") == 0.0
    assert metric("journal_backlog_records") > 0
    assert metric('trading_state{state="halted"}') == 1.0
    assert metric('ring_handler_errors_total{ring="intents"}') == 0.0
    assert metric('ring_handler_errors_total{ring="order_events"}') == 0.0


def test_a_reader_that_goes_away_does_not_fail_the_run():
    """``tickwire demo | head -1``: stdout closes after the first line; the run goes on to its
    end and exits 0, without a BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [*TICKWIRE, "demo", "--duration", "2", "--config", "config/demo.toml"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert first.startswith(("kernels:", "metrics:")), first
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
