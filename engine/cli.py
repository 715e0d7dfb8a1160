"""The ``tickwire`` command: ``tickwire demo`` and ``tickwire run --config FILE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import uvloop

from engine.app import build_app, run_app
from engine.config import ConfigError, load_config
from engine.log import setup_logging

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo.toml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickwire", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="synthetic feed -> book -> two strategies -> risk -> sim venue"
    )
    demo.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    demo.add_argument("--config", type=Path, default=DEMO_CONFIG, help="config file (TOML)")
    run = sub.add_parser("run", help="run a configured engine until SIGINT/SIGTERM")
    run.add_argument("--config", type=Path, required=True, help="config file (TOML)")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"tickwire: config error: {e}", file=sys.stderr)
        return 2
    setup_logging(config.engine.log_level, config.engine.log_json)
    try:
        app = build_app(config)
    except ConfigError as e:
        print(f"tickwire: config error: {e}", file=sys.stderr)
        return 2
    if app.kernels is not None:
        print(f"kernels: {app.kernels.format()}", flush=True)
    report = uvloop.run(run_app(app, args.duration))
    print(report.format(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
