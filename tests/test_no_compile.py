"""No compilation on the order path: kernels are built at start-up and then frozen."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import tomllib
    import hotpath.jit as jit
    from engine.app import build_app
    from engine.clock import SimClock
    from engine.config import parse_config

    data = tomllib.loads(open("config/demo.toml").read())
    data["venues"]["SIM"]["ack_latency_us"] = 0
    data["venues"]["SIM"]["fill_latency_us"] = 0
    data["metrics"]["enabled"] = False
    app = build_app(parse_config(data, "demo"), SimClock(1_700_000_000_000_000_000))
    report = app.kernels
    assert report is not None and report.kernels == len(jit.KERNELS) > 0, report
    assert all(not k._can_compile for k in jit.KERNELS), "compilation must be disabled"
    before = jit.compiled_signatures()
    engine, feed = app.engine, app.feed
    engine.start()
    feed.publish_snapshot(engine)
    while engine.router.orders == 0:
        feed.publish(engine, 100)
    for _ in range(50):
        feed.publish(engine, 100)
    assert engine.fills > 0
    assert jit.compiled_signatures() == before, "a kernel compiled a new signature"
    print("FIRST_ORDER_OK", report.format())
    """
)


def test_first_order_after_start_up_triggers_no_compilation():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FIRST_ORDER_OK" in proc.stdout
    assert "compilation is now disabled" in proc.stdout
