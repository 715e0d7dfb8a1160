"""The ``tickwire`` command: ``demo``, ``run --config FILE`` and ``gateway-sim``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import uvloop

from engine.app import build_app, run_app
from engine.config import ConfigError, load_config
from engine.log import setup_logging

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "config" / "demo_ib.toml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tickwire", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="the engine against the IB Gateway simulator (embedded, loopback) through the IB "
        "adapter; --config config/demo.toml runs the synthetic-feed pipeline instead",
    )
    demo.add_argument("--duration", type=float, default=10.0, help="seconds to run (default 10)")
    demo.add_argument("--config", type=Path, default=DEMO_CONFIG, help="config file (TOML)")
    run = sub.add_parser("run", help="run a configured engine until SIGINT/SIGTERM")
    run.add_argument("--config", type=Path, required=True, help="config file (TOML)")
    run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    sim = sub.add_parser("gateway-sim", help="run the IB Gateway simulator (TWS API on loopback)")
    sim.add_argument("--host", default=None, help="listen address (default 127.0.0.1)")
    sim.add_argument("--port", type=int, default=None, help="listen port (default 4002)")
    sim.add_argument("--max-server-version", type=int, default=None, help="newest version offered")
    sim.add_argument("--control-port", type=int, default=None, help="JSON-lines control port")
    sim.add_argument("--config", type=Path, default=None, help="simulator config (TOML)")
    sim.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    return p


def _gateway_sim(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    from adapters.ib.gateway_sim.config import (
        GatewaySection,
        GatewaySimConfig,
        load_gateway_config,
    )
    from adapters.ib.gateway_sim.server import serve_forever
    from engine.config import build

    flags = {
        "host": args.host,
        "port": args.port,
        "max_server_version": args.max_server_version,
        "control_port": args.control_port,
    }
    try:
        cfg = load_gateway_config(args.config) if args.config else GatewaySimConfig()
        given = {k: v for k, v in flags.items() if v is not None}
        if given:
            current = dataclasses.asdict(cfg.gateway)
            gateway = build(GatewaySection, {**current, **given}, "command line", "gateway")
            cfg = dataclasses.replace(cfg, gateway=gateway)
    except ConfigError as e:
        print(f"tickwire: config error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve_forever(cfg, args.duration))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "gateway-sim":
        return _gateway_sim(args)
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
    try:
        report = uvloop.run(run_app(app, args.duration))
    except ConfigError as e:
        print(f"tickwire: config error: {e}", file=sys.stderr)
        return 2
    try:
        print(report.format(), flush=True)
    except BrokenPipeError:
        # Whatever read stdout has gone (``| head``): the run itself ended cleanly. Point
        # stdout at /dev/null so the interpreter's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if report.error:
        # A supervisor (systemd, Docker) restarting on failure must see this one as a failure.
        print(f"tickwire: stopped: {report.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
