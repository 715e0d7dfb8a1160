"""Process-wide settings for a latency-sensitive run: the garbage collector and CPU affinity.

Both concern the whole process, not one engine: ``run_app`` applies them once, before the
strategies start trading (the gateway simulator's server does the same for itself).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence

from engine.config import ConfigError

log = logging.getLogger("tickwire.process")


def settle_heap() -> int:
    """Collect once, then freeze what survives (``gc.freeze``); returns how many objects
    the collector now leaves alone.

    What start-up built (modules, the kernels, ibapi and protobuf, instruments, rings, the
    venues' contracts and sessions) lives as long as the process, and every full collection
    would walk it again: ~120,000 objects, ~70 ms on the 2-vCPU VM, a stall of the one
    thread at whatever moment the collector picks. Frozen, a full collection walks only what
    was made since. Call it once trading is about to start (``run_app`` does, after the
    venues reconciled); objects made later (a reconnect's new session) are collected as usual.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def pin_to_cpus(cpus: Sequence[int], file: str, key: str) -> None:
    """Let this process run only on ``cpus`` (``os.sched_setaffinity``); empty: leave it to
    the OS. A CPU the process may not use (absent, or outside its cgroup's set) is a
    ``ConfigError`` naming ``file`` and ``key`` and the CPUs there are.

    Why pin: an order wakes its gateway; the kernel tends to put a task woken by a socket on
    the waker's CPU, and on a small box the gateway, all its answer's work long, can then hold
    the engine's CPU while the engine sits inside its own write (measured here: the engine's
    write of an order took 0.6-0.9 ms unpinned, 40-60 µs with the engine and the simulator
    on different CPUs).
    """
    if not cpus:
        return
    check_cpus(cpus, file, key)
    os.sched_setaffinity(0, set(cpus))
    log.info("pinned to CPU(s) %s", ", ".join(map(str, sorted(set(cpus)))))


def check_cpus(cpus: Sequence[int], file: str, key: str) -> None:
    """The ``ConfigError`` ``pin_to_cpus`` would raise for ``cpus``, now (when a config is
    built, long before the run pins)."""
    if not cpus:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError(file, key, "CPU affinity is not supported on this platform; remove it")
    allowed = os.sched_getaffinity(0)
    missing = sorted(set(cpus) - allowed)
    if missing:
        raise ConfigError(
            file,
            key,
            f"CPU(s) {', '.join(map(str, missing))} are not available to this process "
            f"(it may use {', '.join(map(str, sorted(allowed)))}); pick from those",
        )
