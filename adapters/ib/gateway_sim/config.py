"""Gateway simulator configuration: TOML into frozen dataclasses, with the engine's validation.

Every section is optional; ``GatewaySimConfig()`` is a working paper gateway on 127.0.0.1:4002
with the default instrument universe. Mistakes are ``engine.config.ConfigError`` naming the file
and key, exactly as for the engine's own config.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.config import (
    ConfigError,
    _cpu_list,
    _non_negative,
    _port,
    _positive,
    build,
    read_toml,
)
from engine.process import check_cpus

from .market import SimInstrument
from .responses import MAX_SERVER_VERSION, MIN_SERVER_VERSION


def _version(v: int) -> str | None:
    if MIN_SERVER_VERSION <= v <= MAX_SERVER_VERSION:
        return None
    return f"must be a TWS API server version {MIN_SERVER_VERSION}..{MAX_SERVER_VERSION}"


def _paper_accounts(v: list[str]) -> str | None:
    if not v:
        return "needs at least one account (clients wait for a non-empty managedAccounts)"
    return None


@dataclass(frozen=True, slots=True)
class GatewaySection:
    host: str = "127.0.0.1"
    port: int = field(default=4002, metadata={"check": _port})
    #: Control interface (JSON lines) port; 0 picks a free one, -1 disables it.
    control_port: int = -1
    min_server_version: int = field(default=MIN_SERVER_VERSION, metadata={"check": _version})
    max_server_version: int = field(default=MAX_SERVER_VERSION, metadata={"check": _version})
    #: Send each message family as protobuf once the version reaches its threshold.
    protobuf: bool = True
    accounts: list[str] = field(
        default_factory=lambda: ["DU1234567"], metadata={"check": _paper_accounts}
    )
    next_order_id: int = field(default=1, metadata={"check": _positive})
    max_clients: int = field(default=32, metadata={"check": _positive})
    seed: int = 7
    #: Time zone name written in the handshake's connection time.
    time_zone: str = "US/Eastern"
    #: Unsent bytes a client may have queued (the kernel's send buffer is sized to this, and
    #: the server buffers as much again) before its market data is held back until it drains.
    #: Bounded so a slow reader's backlog is visible and an order answer never queues behind
    #: seconds of market data.
    send_buffer_kib: int = field(default=64, metadata={"check": _positive})
    #: CPUs the simulator's process may run on (empty: any); off the engine's, as a real
    #: gateway would be (``engine.process.pin_to_cpus``).
    cpu_affinity: list[int] = field(default_factory=list, metadata={"check": _cpu_list})


@dataclass(frozen=True, slots=True)
class MarketSection:
    #: Market events per second per instrument (each is one or more market-data messages).
    events_per_second: float = field(default=20.0, metadata={"check": _non_negative})
    #: How often the server advances the market and timers.
    tick_interval_ms: float = field(default=1.0, metadata={"check": _positive})
    #: Longest the server generates market data before it writes it and reads the sockets
    #: again: a flood goes out in slices, and a request (a cancel) waits at most one slice.
    #: Shorter slices answer sooner but cost a write (and the client a read) each: at 0.2 ms the
    #: simulator, CPU-bound, delivered ~50k msgs/s of a 100k flood; at 0.5 ms ~83k.
    slice_ms: float = field(default=0.5, metadata={"check": _positive})
    #: Re-run each client's last cancel answer dry this often (ms; 0 = never), as a JIT-warm
    #: gateway's would be warm (``GatewayCore.warm_answers``). Under a 125k msgs/s flood it
    #: took the simulator's part of a cancel from ~145 to ~90 µs (p50).
    keep_warm_ms: float = field(default=1.0, metadata={"check": _non_negative})
    #: JSON-lines recording to replay instead of the random walk ("" = random walk).
    replay: str = ""
    max_depth_subscriptions: int = field(default=3, metadata={"check": _positive})
    #: Symbols without a live market-data subscription (delayed data only).
    delayed_only: list[str] = field(default_factory=list)
    #: False: the account has no delayed data either, so a ``delayed_only`` symbol asked for
    #: with market data type 3 or 4 gets 10168 and no data.
    delayed_enabled: bool = True


@dataclass(frozen=True, slots=True)
class OrdersSection:
    #: Send every orderStatus twice (real gateways do).
    duplicate_status: bool = False
    #: Shuffle the messages of one order event (execDetails / openOrder / orderStatus).
    shuffle_events: bool = False
    commission_delay_ms: float = field(default=0.0, metadata={"check": _non_negative})
    #: Algo orders (Vwap, Twap, Adaptive) without start/end times fill over this horizon.
    algo_horizon_s: float = field(default=5.0, metadata={"check": _positive})


@dataclass(frozen=True, slots=True)
class PacingSection:
    enabled: bool = True
    max_messages_per_second: int = field(default=50, metadata={"check": _positive})
    #: Consecutive seconds over the limit after which the client is disconnected (0 = never).
    disconnect_after_s: int = field(default=3, metadata={"check": _non_negative})
    #: Historical requests for bars of 30 s or less allowed per 10 minutes (IB: 60).
    historical_per_10min: int = field(default=60, metadata={"check": _positive})


@dataclass(frozen=True, slots=True)
class AccountSection:
    cash: float = field(default=1_000_000.0, metadata={"check": _positive})
    currency: str = "USD"
    leverage: float = field(default=4.0, metadata={"check": _positive})


FaultAction = Literal[
    "drop_all",
    "connectivity_lost",
    "farm_blip",
    "ignore_requests",
    "silence_subscriptions",
    "depth_reset",
    "daily_restart",
    "hang",
    "latency",
    "reject_orders",
    "stop_market_data",
    "resume_market_data",
    "competing_session",
]


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """One scripted fault: ``action`` at ``at_s`` seconds after the gateway starts."""

    at_s: float = field(metadata={"check": _non_negative})
    action: FaultAction
    seconds: float = field(default=1.0, metadata={"check": _non_negative})
    data_lost: bool = False
    rollback_ids: bool = False
    refuse: Literal["refuse", "accept_close"] = "refuse"
    ms: float = field(default=0.0, metadata={"check": _non_negative})
    count: int = field(default=1, metadata={"check": _non_negative})
    #: ``ignore_requests``: the request's type as the simulator names it (``ReqOpenOrders``).
    request: str = ""
    #: ``farm_blip``: the farm that blips, ``usfarm`` (market data: 2103/2104) or ``ushmds``
    #: (historical data and keep-up-to-date bars: 2105/2106).
    farm: Literal["usfarm", "ushmds"] = "usfarm"
    symbol: str = ""


@dataclass(frozen=True, slots=True)
class GatewaySimConfig:
    gateway: GatewaySection = field(default_factory=GatewaySection)
    market: MarketSection = field(default_factory=MarketSection)
    orders: OrdersSection = field(default_factory=OrdersSection)
    pacing: PacingSection = field(default_factory=PacingSection)
    account: AccountSection = field(default_factory=AccountSection)
    faults: list[FaultConfig] = field(default_factory=list)
    #: The instrument universe; empty means ``market.default_universe()``.
    instruments: list[SimInstrument] = field(default_factory=list)
    source: str = field(default="<defaults>", metadata={"internal": True})


def load_gateway_config(path: str | os.PathLike[str]) -> GatewaySimConfig:
    """Read and validate a gateway simulator TOML file."""
    return parse_gateway_config(*read_toml(path))


def parse_gateway_config(data: dict[str, Any], file: str = "<config>") -> GatewaySimConfig:
    """Validate an already-parsed TOML document (``file`` names it in errors)."""
    cfg = build(GatewaySimConfig, {**data, "source": file}, file, "")
    gw = cfg.gateway
    check_cpus(gw.cpu_affinity, file, "gateway.cpu_affinity")
    if gw.min_server_version > gw.max_server_version:
        raise ConfigError(
            file, "gateway.min_server_version", "must not exceed gateway.max_server_version"
        )
    seen: set[int] = set()
    for i, inst in enumerate(cfg.instruments):
        if inst.con_id in seen:
            raise ConfigError(file, f"instruments[{i}].con_id", f"duplicate conId {inst.con_id}")
        seen.add(inst.con_id)
    return cfg
