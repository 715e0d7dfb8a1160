"""Configuration: TOML files loaded into typed, validated, frozen dataclasses.

Every mistake is reported as ``ConfigError`` naming the file, the key (as a dotted path such as
``strategies[1].params.fast``) and what was expected, so an operator can fix it without reading
code. Unknown keys are errors (with a "did you mean" hint): a misspelt risk limit must never be
silently ignored. Secrets are given as ``"env:NAME"`` or ``"file:PATH"`` and become ``Secret``
values whose repr never shows the content.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
import types
import typing
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem, located by file and key."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        self.message = message
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {message}")


class Secret:
    """A credential read from the environment or a file; prints as ``Secret(<source>, ***)``."""

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self._source = source

    def reveal(self) -> str:
        """The secret itself: pass it to the venue, never to a log or an exception."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self._source}, ***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _check(fn: Callable[[Any], str | None]) -> dict[str, Any]:
    return {"check": fn}


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _positive_finite(v: float) -> str | None:
    return None if v > 0 and math.isfinite(v) else "must be a finite number > 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _power_of_two(v: int) -> str | None:
    return None if v >= 2 and v & (v - 1) == 0 else "must be a power of two >= 2"


def _port(v: int) -> str | None:
    return None if 0 <= v <= 65535 else "must be a TCP port 0..65535 (0 picks a free one)"


def _cpu_list(v: list[int]) -> str | None:
    if any(c < 0 for c in v):
        return "CPU numbers are 0 or more"
    return None if len(set(v)) == len(v) else "a CPU is listed twice"


def _fraction(v: float) -> str | None:
    return None if 0.0 <= v <= 1.0 else "must be between 0 and 1"


# --------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True, slots=True)
class EngineSection:
    name: str = "tickwire"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    status_interval_s: float = field(default=1.0, metadata=_check(_positive))
    #: A dry run of the order path (risk check, route, the venue's encode; nothing sent or
    #: changed) every ``keep_warm_interval_ms`` while idle, so a sparse order does not find its
    #: path cold. "auto": on when a venue asks for it (IB: orders are paced, so always sparse).
    keep_warm: Literal["auto", "on", "off"] = "auto"
    keep_warm_interval_ms: float = field(default=1.0, metadata=_check(_positive))
    #: Poll sockets without blocking: the loop's core stays busy (100 %) and never idles.
    busy_poll: bool = False
    #: CPUs the engine's one thread may run on (``os.sched_setaffinity``); empty: any, as the OS
    #: decides. Keep it off IB Gateway's CPUs (``engine.process.pin_to_cpus`` says why).
    cpu_affinity: list[int] = field(default_factory=list, metadata=_check(_cpu_list))
    #: On stop (SIGINT/SIGTERM, ``--duration``), after the strategies' ``on_stop``: cancel
    #: every order still open, one by one through the risk gate, and wait up to
    #: ``stop_cancel_timeout_s`` for the venues' answers before disconnecting. Off: the orders
    #: are left working (at IB they outlive the process) and logged with a warning.
    cancel_on_stop: bool = True
    stop_cancel_timeout_s: float = field(default=5.0, metadata=_check(_non_negative))


@dataclass(frozen=True, slots=True)
class RingsConfig:
    market_data: int = field(default=65536, metadata=_check(_power_of_two))
    quotes: int = field(default=4096, metadata=_check(_power_of_two))
    trades: int = field(default=16384, metadata=_check(_power_of_two))
    intents: int = field(default=4096, metadata=_check(_power_of_two))
    order_events: int = field(default=4096, metadata=_check(_power_of_two))
    md_batch: int = field(default=256, metadata=_check(_positive))
    md_policy: Literal["conflate", "drop_oldest", "drop_newest"] = "conflate"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=9464, metadata=_check(_port))
    fold_interval_ms: int = field(default=250, metadata=_check(_positive))
    samples_per_stage: int = field(default=65536, metadata=_check(_power_of_two))
    #: How late the event loop runs a timer set every ``loop_monitor_ms`` (0: not watched):
    #: ``loop_lag_seconds``, and the stalls later than ``loop_stall_ms`` with the thread's CPU
    #: time in them (``engine.metrics.LoopMonitor``).
    loop_monitor_ms: float = field(default=10.0, metadata=_check(_non_negative))
    loop_stall_ms: float = field(default=2.0, metadata=_check(_positive))


@dataclass(frozen=True, slots=True)
class FeedConfig:
    kind: Literal["synthetic"] = "synthetic"
    seed: int = 1
    rate: float = field(default=100_000.0, metadata=_check(_positive_finite))
    interval_ms: float = field(default=1.0, metadata=_check(_positive_finite))
    depth: int = field(default=10, metadata=_check(_positive))
    max_size: int = field(default=500, metadata=_check(_positive))
    step_prob: float = field(default=0.05, metadata=_check(_fraction))
    trade_ratio: float = field(default=0.02, metadata=_check(_fraction))


@dataclass(frozen=True, slots=True)
class InstrumentConfig:
    symbol: str
    venue: str
    # Prices and P&L are computed from these: each a finite number > 0.
    tick_size: float = field(metadata=_check(_positive_finite))
    asset_class: Literal["stock", "future", "option", "fx", "crypto"] = "stock"
    lot_size: float = field(default=1.0, metadata=_check(_positive_finite))
    multiplier: float = field(default=1.0, metadata=_check(_positive_finite))
    currency: str = "USD"
    ref_price: float | None = field(default=None, metadata=_check(_positive_finite))
    trading_hours: list[str] = field(default_factory=list)  # "HH:MM-HH:MM" local; empty: 24h
    utc_offset_minutes: int = 0  # local time = UTC + offset


def _fraction_open(v: float) -> str | None:
    return None if 0.0 < v < 1.0 else "must be between 0 and 1 (exclusive)"


def _percent(v: float) -> str | None:
    return None if 0.0 < v < 100.0 else "must be a percentage between 0 and 100 (exclusive)"


@dataclass(frozen=True, slots=True)
class StrategyRiskConfig:
    """``[risk.strategies.NAME]``: one strategy's limits; unset (None) inherits ``[risk]``'s.

    Order quantity, order value and position are held to the smaller of this and the
    instrument's limit."""

    daily_loss_limit: float | None = field(default=None, metadata=_check(_positive))
    max_order_qty: float | None = field(default=None, metadata=_check(_positive))
    max_order_notional: float | None = field(default=None, metadata=_check(_positive))
    max_position: float | None = field(default=None, metadata=_check(_positive))
    order_rate_per_s: float | None = field(default=None, metadata=_check(_positive))
    order_burst: int | None = field(default=None, metadata=_check(_positive))


@dataclass(frozen=True, slots=True)
class InstrumentRiskConfig:
    """``[risk.instruments.SYMBOL]`` (or ``"SYMBOL.VENUE"``): one instrument's limits in place
    of ``[risk]``'s; unset (None) inherits them."""

    max_order_qty: float | None = field(default=None, metadata=_check(_positive))
    max_order_notional: float | None = field(default=None, metadata=_check(_positive))
    max_position: float | None = field(default=None, metadata=_check(_positive))
    max_open_orders: int | None = field(default=None, metadata=_check(_positive))
    price_collar_pct: float | None = field(default=None, metadata=_check(_positive))
    price_collar_ticks: float | None = field(default=None, metadata=_check(_positive))
    max_concentration: float | None = field(default=None, metadata=_check(_positive))
    #: Buying power an order uses per unit of its notional: 1.0 (the default) for cash
    #: stocks; a future's initial margin over its notional (say 0.06 for ES).
    margin: float | None = field(default=None, metadata=_check(_positive))


@dataclass(frozen=True, slots=True)
class BreakersConfig:
    """``[risk.breakers]``: circuit breakers (``engine.breakers``)."""

    enabled: bool = True
    interval_ms: float = field(default=100.0, metadata=_check(_positive))  # evaluation timer
    daily_loss_pct: float = field(default=5.0, metadata=_check(_percent))  # of equity at SOD
    reject_rate: float = field(default=0.2, metadata=_check(_fraction_open))
    reject_window_s: float = field(default=60.0, metadata=_check(_positive))
    reject_min_orders: int = field(default=20, metadata=_check(_positive))
    size_scale: float = field(default=0.5, metadata=_check(_fraction_open))
    scale_minutes: float = field(default=30.0, metadata=_check(_positive))
    concentration_trip: float = field(default=0.30, metadata=_check(_positive))
    concentration_reset: float = field(default=0.25, metadata=_check(_positive))


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Pre-trade limits (``hotpath.risk``); every limit is off (inf) unless set, except
    ``max_leverage`` (1.0) and ``max_concentration`` (0.2), which need ``equity``."""

    max_order_qty: float = field(default=math.inf, metadata=_check(_positive))
    max_order_notional: float = field(default=math.inf, metadata=_check(_positive))
    max_position: float = field(default=math.inf, metadata=_check(_positive))
    max_open_orders: int = field(default=1000, metadata=_check(_positive))
    price_collar_pct: float = field(default=math.inf, metadata=_check(_positive))
    price_collar_ticks: float = field(default=math.inf, metadata=_check(_positive))
    max_gross_exposure: float = field(default=math.inf, metadata=_check(_positive))
    max_leverage: float = field(default=1.0, metadata=_check(_positive))
    max_concentration: float = field(default=0.2, metadata=_check(_positive))
    daily_loss_limit: float = field(default=math.inf, metadata=_check(_positive))
    strategy_daily_loss_limit: float = field(default=math.inf, metadata=_check(_positive))
    equity: float = field(default=math.nan)  # start-of-day equity (until the broker reports)
    buying_power: float = field(default=math.inf, metadata=_check(_non_negative))
    order_rate_per_s: float = field(default=math.inf, metadata=_check(_positive))
    order_burst: int = field(default=100, metadata=_check(_positive))
    strategy_order_rate_per_s: float = field(default=math.inf, metadata=_check(_positive))
    strategy_order_burst: int = field(default=100, metadata=_check(_positive))
    venue_msgs_per_s: float = field(default=math.inf, metadata=_check(_positive))
    venue_burst: int = field(default=10, metadata=_check(_positive))
    allow_list: list[str] = field(default_factory=list)  # empty: every instrument allowed
    block_list: list[str] = field(default_factory=list)
    pdt_max_day_trades: int | None = None  # FINRA pattern-day-trader rule: 3; None = off
    #: The trading day (``engine.trading_day``): every daily figure (risk limits, breakers,
    #: both portfolios) rolls here, and recovery replays it over the journal.
    daily_reset: str = field(default="17:00", metadata=_check(lambda v: _reset_time(v)))
    daily_reset_tz: str = "America/New_York"
    strategies: dict[str, StrategyRiskConfig] = field(default_factory=dict)  # by strategy name
    instruments: dict[str, InstrumentRiskConfig] = field(default_factory=dict)  # by symbol
    breakers: BreakersConfig = field(default_factory=BreakersConfig)
    #: The kill switch also asks each venue that sends orders for real (LIVE, CANARY) for a
    #: venue-wide cancel: IB's reqGlobalCancel cancels every open order of the account,
    #: whichever client placed it (other engines, TWS). Off: only this engine's own orders.
    kill_switch_global_cancel: bool = False


class VenueConfig:
    """Base of the per-kind venue sections; ``kind`` picks the dataclass."""

    KINDS: typing.ClassVar[dict[str, type]] = {}


@dataclass(frozen=True, slots=True)
class SimVenueConfig(VenueConfig):
    kind: Literal["sim"] = "sim"
    ack_latency_us: float = field(default=0.0, metadata=_check(_non_negative))
    fill_latency_us: float = field(default=0.0, metadata=_check(_non_negative))
    commission_per_lot: float = field(default=0.0, metadata=_check(_non_negative))
    depth_levels: int = field(default=10, metadata=_check(_positive))


VenueConfig.KINDS["sim"] = SimVenueConfig


def _pacing_rate(v: float) -> str | None:
    return None if 0 < v <= 50 else "must be in (0, 50] messages/s (IB's limit is 50)"


def _market_data_type(v: int) -> str | None:
    return None if v in (1, 2, 3, 4) else "must be 1 live, 2 frozen, 3 delayed or 4 delayed-frozen"


def _hhmm(v: str) -> str | None:
    if v == "":
        return None
    h, _, m = v.partition(":")
    ok = h.isdigit() and m.isdigit() and int(h) < 24 and int(m) < 60
    return None if ok else 'must be a local time "HH:MM" (or "" for none)'


def _reset_time(v: str) -> str | None:
    return None if v and _hhmm(v) is None else 'must be a local time "HH:MM"'


def _time_zone(v: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return 'is not a time zone zoneinfo knows; use an IANA name such as "America/New_York"'
    return None


def _open_fraction(v: float) -> str | None:
    return None if 0.0 < v < 1.0 else "must be between 0 and 1, exclusive"


def _fx_rates(v: dict[str, float]) -> str | None:
    bad = [c for c, r in v.items() if not (math.isfinite(r) and r > 0)]
    return (
        f"rates must be positive numbers (base currency per unit), not for {bad}" if bad else None
    )


@dataclass(frozen=True, slots=True)
class PortfolioConfig:
    """``[portfolio]``: the currency P&L is summed in, and the VaR window.

    ``daily_reset`` / ``daily_reset_tz`` are accepted only when they agree with ``[risk]``'s,
    which set the one trading day (older configs named it in both sections)."""

    daily_reset: str = field(default="17:00", metadata=_check(_reset_time))  # local time
    daily_reset_tz: str = field(default="America/New_York", metadata=_check(_time_zone))
    base_currency: str = ""  # "": the first instrument's currency
    fx: dict[str, float] = field(default_factory=dict, metadata=_check(_fx_rates))
    var_window: int = field(default=250, metadata=_check(_positive))  # returns
    var_confidence: float = field(default=0.99, metadata=_check(_open_fraction))
    var_sample_s: float = field(default=60.0, metadata=_check(_positive))
    var_min_samples: int = field(default=20, metadata=_check(_positive))  # returns


_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _day_names(v: list[str]) -> str | None:
    bad = [d for d in v if d.lower() not in {n.lower() for n in _DAY_NAMES}]
    return f"must be day names {', '.join(_DAY_NAMES)} ([] = every day)" if bad else None


@dataclass(frozen=True, slots=True)
class IBOutageConfig:
    """An expected outage: IB's reset windows, or anything else scheduled. Daily, or on the
    days named in ``days`` (the day it starts; it may run past midnight, e.g. IB's weekend
    maintenance: start "23:00", minutes 240, days ["Fri"]). ``restart``: the gateway restarts
    at ``start`` (the socket is cut), so new orders are held back ``restart_guard_s`` before
    it; in IB's reset windows the socket stays up and orders keep working."""

    start: str = field(metadata=_check(_hhmm))  # "HH:MM" local time in ``tz``
    minutes: float = field(metadata=_check(_positive))
    tz: str = field(default="US/Eastern", metadata=_check(_time_zone))
    name: str = "reset window"
    days: list[str] = field(default_factory=list, metadata=_check(_day_names))
    restart: bool = False


@dataclass(frozen=True, slots=True)
class IBVenueConfig(VenueConfig):
    """``[venues.NAME]`` with ``kind = "ib"``: IB Gateway / TWS over the TWS API socket."""

    kind: Literal["ib"] = "ib"
    host: str = "127.0.0.1"
    port: int = field(default=4002, metadata=_check(_port))
    client_id: int = 1
    account: Secret | None = None  # the managed account to trade; required if it manages several
    paper_only: bool = True
    connect_timeout_s: float = field(default=10.0, metadata=_check(_positive))
    max_server_version: int = 0  # 0: the newest the pinned ibapi speaks
    pacing_msgs_per_s: float = field(default=45.0, metadata=_check(_pacing_rate))
    pacing_burst: int = field(default=5, metadata=_check(_positive))  # rate + burst <= 50
    reconnect_initial_s: float = field(default=1.0, metadata=_check(_positive))
    reconnect_max_s: float = field(default=60.0, metadata=_check(_positive))
    daily_restart: str = field(default="", metadata=_check(_hhmm))  # IBC AutoRestartTime
    daily_restart_tz: str = field(default="US/Eastern", metadata=_check(_time_zone))
    daily_restart_minutes: float = field(default=5.0, metadata=_check(_positive))
    outages: list[IBOutageConfig] = field(default_factory=list)
    outage_grace_s: float = field(default=120.0, metadata=_check(_non_negative))
    restart_guard_s: float = field(default=60.0, metadata=_check(_non_negative))
    #: An outage outside every expected window is an ERROR once it has lasted this long.
    alert_after_s: float = field(default=60.0, metadata=_check(_non_negative))
    #: Nothing read for this long: ask the gateway the time (0: never); no answer within
    #: ``heartbeat_timeout_s`` closes the connection as hung and reconnects.
    heartbeat_s: float = field(default=5.0, metadata=_check(_non_negative))
    heartbeat_timeout_s: float = field(default=5.0, metadata=_check(_positive))
    market_data_type: int = field(default=1, metadata=_check(_market_data_type))
    depth_rows: int = field(default=10, metadata=_check(_non_negative))  # 0: no L2
    smart_depth: bool = False
    tick_by_tick: bool = True
    data_check_s: float = field(default=5.0, metadata=_check(_positive))
    reconcile_timeout_s: float = field(default=10.0, metadata=_check(_positive))
    state_file: str = ""  # order-id high-water mark; "" keeps it in memory only
    order_id_block: int = field(default=1000, metadata=_check(_positive))
    contracts: dict[str, dict[str, Any]] = field(default_factory=dict)  # by symbol
    embedded_simulator: bool = False  # start the gateway simulator in-process (the demo)
    simulator_config: str = ""  # its TOML (see ``tickwire gateway-sim``); "" = defaults


VenueConfig.KINDS["ib"] = IBVenueConfig


def _check_ib_venue(v: IBVenueConfig, file: str, key: str) -> None:
    """What one key's check cannot see: the pacing bucket as a whole."""
    if v.pacing_msgs_per_s + v.pacing_burst > 50:
        raise ConfigError(
            file,
            f"{key}.pacing_burst",
            f"pacing_msgs_per_s ({v.pacing_msgs_per_s:g}) + pacing_burst ({v.pacing_burst}) "
            "must be at most 50: IB Gateway takes 50 messages a second, and a full burst on "
            "top of a second's rate goes out within one second (e.g. 45 and 5)",
        )


def _percent(v: float) -> str | None:
    return None if 0.0 <= v <= 100.0 else "must be a percentage between 0 and 100"


@dataclass(frozen=True, slots=True)
class RouterVenueConfig:
    """``[router.venues.NAME]``: one venue's rollout mode (capped by ``[router] mode``)."""

    mode: Literal["shadow", "canary", "live"] = "live"
    canary_pct: float = field(default=0.0, metadata=_check(_percent))  # CANARY: share sent live


@dataclass(frozen=True, slots=True)
class ShadowVenueConfig:
    """``[router.shadow]``: the simulated venue that fills shadowed orders against live books."""

    ack_latency_us: float = field(default=200.0, metadata=_check(_non_negative))
    fill_latency_us: float = field(default=200.0, metadata=_check(_non_negative))
    commission_per_lot: float = field(default=0.0, metadata=_check(_non_negative))
    depth_levels: int = field(default=10, metadata=_check(_positive))


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """``[router]``: venue modes SHADOW < CANARY < LIVE; ``mode`` caps every venue's."""

    mode: Literal["shadow", "canary", "live"] = "live"
    venues: dict[str, RouterVenueConfig] = field(default_factory=dict)
    shadow: ShadowVenueConfig = field(default_factory=ShadowVenueConfig)
    #: Orders (and as many fills) kept for the shadow-vs-live comparison, newest first.
    stats_window: int = field(default=65536, metadata=_check(_positive))


@dataclass(frozen=True, slots=True)
class JournalConfig:
    """``[journal]``: the order journal (``engine.journal``); its docstring has the durability
    policy each ``fsync`` choice gives."""

    path: str = ""  # "" = no journal
    fsync: Literal["never", "batch", "always"] = "batch"
    fsync_interval_ms: float = field(default=10.0, metadata=_check(_positive))


@dataclass(frozen=True, slots=True)
class StrategyConfig:
    name: str
    class_path: str = field(metadata={"key": "class"})
    instruments: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Config:
    source: str = field(metadata={"internal": True})
    engine: EngineSection = field(default_factory=EngineSection)
    rings: RingsConfig = field(default_factory=RingsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    feed: FeedConfig | None = None
    instruments: list[InstrumentConfig] = field(default_factory=list)
    risk: RiskConfig = field(default_factory=RiskConfig)
    portfolio: PortfolioConfig = field(default_factory=PortfolioConfig)
    venues: dict[str, VenueConfig] = field(default_factory=dict)
    router: RouterConfig = field(default_factory=RouterConfig)
    strategies: list[StrategyConfig] = field(default_factory=list)
    journal: JournalConfig = field(default_factory=JournalConfig)


# --------------------------------------------------------------------------------------------
# Loading


def read_toml(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str]:
    """A TOML file's document and its name for errors; ``ConfigError`` if it cannot be read."""
    p = Path(path)
    file = str(p)
    try:
        with p.open("rb") as f:
            return tomllib.load(f), file
    except FileNotFoundError:
        raise ConfigError(file, "", "config file not found; pass an existing TOML file") from None
    except OSError as e:
        raise ConfigError(file, "", f"cannot read the config file: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(file, "", f"not valid TOML: {e}") from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file."""
    return parse_config(*read_toml(path))


def parse_config(data: dict[str, Any], file: str = "<config>") -> Config:
    """Validate an already-parsed TOML document (``file`` names it in errors)."""
    cfg = build(Config, {**data, "source": file}, file, "")
    _cross_check(cfg, file)
    return _one_trading_day(cfg, data.get("portfolio"), file)


def _one_trading_day(cfg: Config, portfolio: Any, file: str) -> Config:
    """``[risk] daily_reset`` / ``daily_reset_tz`` set the one trading day. ``[portfolio]``'s
    keys of the same names (older configs set the day there too) are an alias: given, they
    must agree; not given, they read as ``[risk]``'s."""
    given = portfolio if isinstance(portfolio, dict) else {}
    same = {}
    for key in ("daily_reset", "daily_reset_tz"):
        day = getattr(cfg.risk, key)
        if key not in given:
            same[key] = day
        elif getattr(cfg.portfolio, key) != day:
            raise ConfigError(
                file,
                f"portfolio.{key}",
                f"{given[key]!r} differs from risk.{key} ({day!r}): the trading day is one, set "
                f"by risk.{key} for the risk limits, the breakers and both portfolios; set it "
                "there and remove this key (it is accepted only when it agrees)",
            )
    return replace(cfg, portfolio=replace(cfg.portfolio, **same))


def build(cls: type[T], data: Any, file: str, key: str) -> T:
    """Turn a TOML table into dataclass ``cls``, checking keys, types and field checks."""
    if not isinstance(data, dict):
        raise ConfigError(file, key or "(top level)", f"expected a table, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    by_toml_key = {f.metadata.get("key", f.name): f for f in fields(cls)}
    unknown = [k for k in data if k not in by_toml_key]
    if unknown:
        k = unknown[0]
        public = [n for n, f in by_toml_key.items() if not f.metadata.get("internal")]
        did_you_mean = _did_you_mean(k, public)
        raise ConfigError(
            file,
            _join(key, k),
            f"unknown key{did_you_mean}; expected one of: {', '.join(sorted(public))}",
        )
    kwargs: dict[str, Any] = {}
    for toml_key, f in by_toml_key.items():
        sub = _join(key, toml_key)
        if toml_key not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(
                    file, sub, f"missing required value ({_type_name(hints[f.name])})"
                )
            continue
        value = _coerce(hints[f.name], data[toml_key], file, sub)
        check = f.metadata.get("check")
        if check is not None and value is not None:
            problem = check(value)
            if problem:
                raise ConfigError(file, sub, f"{problem}, got {value!r}")
        kwargs[f.name] = value
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, file: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, file, key)
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(file, key, f"expected one of {choices}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(file, key, f"expected an array, got {_describe(value)}")
        return [_coerce(args[0], v, file, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(file, key, f"expected a table, got {_describe(value)}")
        return {k: _coerce(args[1], v, file, _join(key, k)) for k, v in value.items()}
    if tp is Secret:
        return _secret(value, file, key)
    if isinstance(tp, type) and issubclass(tp, VenueConfig) and tp is VenueConfig:
        kind = value.get("kind") if isinstance(value, dict) else None
        if kind not in VenueConfig.KINDS:
            kinds = ", ".join(repr(k) for k in sorted(VenueConfig.KINDS))
            raise ConfigError(file, _join(key, "kind"), f"expected one of {kinds}, got {kind!r}")
        return build(VenueConfig.KINDS[kind], value, file, key)
    if is_dataclass(tp):
        return build(tp, value, file, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(file, key, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(file, key, f"expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(file, key, f"expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(file, key, f"expected a string, got {_describe(value)}")
        return value
    raise TypeError(f"config field {key} has an unsupported type {tp!r}")


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest of ``known`` to a misspelt ``name``, or ""."""
    hint = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _secret(value: Any, file: str, key: str) -> Secret:
    if not isinstance(value, str) or not value.startswith(("env:", "file:")):
        raise ConfigError(
            file,
            key,
            'expected a secret reference "env:VARIABLE" or "file:/path/to/file" '
            "(secrets are never written in the config itself)",
        )
    scheme, _, ref = value.partition(":")
    if scheme == "env":
        if ref not in os.environ:
            raise ConfigError(file, key, f"environment variable {ref} is not set")
        if not os.environ[ref].strip():
            # An empty value is a deployment slip (``IB_ACCOUNT=`` in an env file), never a
            # choice: taken as given, an empty account would trade the gateway's first one.
            raise ConfigError(
                file, key, f"environment variable {ref} is empty; set it to the secret"
            )
        return Secret(os.environ[ref], f"env:{ref}")
    secret_path = Path(ref).expanduser()
    if not secret_path.is_absolute():
        secret_path = Path(file).parent / secret_path
    try:
        text = secret_path.read_text().strip()
        if not text:
            raise ConfigError(
                file, key, f"secret file {secret_path} is empty; write the secret in it"
            )
        return Secret(text, f"file:{secret_path}")
    except FileNotFoundError:
        raise ConfigError(file, key, f"secret file {secret_path} does not exist") from None
    except OSError as e:
        raise ConfigError(
            file, key, f"cannot read secret file {secret_path}: {e.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(file, key, f"secret file {secret_path} is not UTF-8 text") from None


def _cross_check(cfg: Config, file: str) -> None:
    pf = cfg.portfolio
    if pf.var_min_samples > pf.var_window:
        raise ConfigError(
            file,
            "portfolio.var_min_samples",
            f"must be <= portfolio.var_window ({pf.var_window}), got {pf.var_min_samples}: "
            "VaR would never be reported",
        )
    base = pf.base_currency or (cfg.instruments[0].currency if cfg.instruments else "USD")
    if pf.fx.get(base, 1.0) != 1.0:
        raise ConfigError(
            file,
            f"portfolio.fx.{base}",
            f"{base} is the base currency, its rate is 1 by definition: remove it "
            "(or set portfolio.base_currency to the currency the rates are in)",
        )
    rates = {**pf.fx, base: 1.0}
    for i, inst in enumerate(cfg.instruments):
        if inst.currency not in rates:  # the risk limits would compare it one to one
            raise ConfigError(
                file,
                f"portfolio.fx.{inst.currency}",
                f"instruments[{i}] {inst.symbol} trades in {inst.currency}; the risk limits are "
                f"in {base}: set the rate ({base} per {inst.currency})",
            )
    seen: set[str] = set()
    for i, inst in enumerate(cfg.instruments):
        k = f"{inst.symbol}.{inst.venue}"
        if k in seen:
            raise ConfigError(file, f"instruments[{i}]", f"instrument {k} is listed twice")
        seen.add(k)
        if inst.venue not in cfg.venues:
            venues = ", ".join(sorted(cfg.venues)) or "none"
            raise ConfigError(
                file,
                f"instruments[{i}].venue",
                f"venue {inst.venue!r} has no [venues.{inst.venue}] section (defined: {venues})",
            )
    for name in cfg.router.venues:
        if name not in cfg.venues:
            venues = ", ".join(sorted(cfg.venues)) or "none"
            raise ConfigError(
                file,
                f"router.venues.{name}",
                f"venue {name!r} has no [venues.{name}] section (defined: {venues})",
            )
    for name, venue in cfg.venues.items():
        if isinstance(venue, IBVenueConfig):
            _check_ib_venue(venue, file, f"venues.{name}")
    symbols = {i.symbol for i in cfg.instruments} | seen
    _check_risk(cfg, file, symbols)
    names: set[str] = set()
    for i, s in enumerate(cfg.strategies):
        if s.name in names:
            raise ConfigError(
                file, f"strategies[{i}].name", f"strategy name {s.name!r} is used twice"
            )
        names.add(s.name)
        if ":" not in s.class_path:
            raise ConfigError(
                file, f"strategies[{i}].class", "expected an import path 'package.module:Class'"
            )
        for j, ref in enumerate(s.instruments):
            if ref not in symbols:
                raise ConfigError(
                    file,
                    f"strategies[{i}].instruments[{j}]",
                    f"instrument {ref!r} is not in [[instruments]]",
                )


def _check_risk(cfg: Config, file: str, symbols: set[str]) -> None:
    """Per-strategy and per-instrument risk tables must name a strategy and an instrument of
    this config; the breakers' thresholds and the reset time zone must make sense."""
    risk = cfg.risk
    strategy_names = [s.name for s in cfg.strategies]
    for name in risk.strategies:
        if name not in strategy_names:
            did_you_mean = _did_you_mean(name, strategy_names)
            raise ConfigError(
                file,
                f"risk.strategies.{name}",
                f"no strategy named {name!r} in [[strategies]]{did_you_mean}; "
                f"defined: {', '.join(strategy_names) or 'none'}",
            )
    for symbol in risk.instruments:
        if symbol not in symbols:
            did_you_mean = _did_you_mean(symbol, symbols)
            raise ConfigError(
                file,
                f"risk.instruments.{symbol}",
                f"instrument {symbol!r} is not in [[instruments]]{did_you_mean}",
            )
    for list_key, effect in (
        ("block_list", "blocks nothing"),
        ("allow_list", "lets nothing through (the instrument meant stays refused)"),
    ):
        for j, ref in enumerate(getattr(risk, list_key)):
            if ref not in symbols:
                did_you_mean = _did_you_mean(ref, symbols)
                raise ConfigError(
                    file,
                    f"risk.{list_key}[{j}]",
                    f"instrument {ref!r} is not in [[instruments]]{did_you_mean}: a name that "
                    f"matches none {effect}; name a symbol or SYMBOL.VENUE of [[instruments]]",
                )
    b = risk.breakers
    if not b.concentration_reset < b.concentration_trip:
        raise ConfigError(
            file,
            "risk.breakers.concentration_reset",
            f"must be below concentration_trip ({b.concentration_trip:g}), got "
            f"{b.concentration_reset:g}",
        )
    try:
        zoneinfo.ZoneInfo(risk.daily_reset_tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            file,
            "risk.daily_reset_tz",
            f"unknown time zone {risk.daily_reset_tz!r}; use an IANA name such as "
            "'America/New_York'",
        ) from None


def _join(key: str, sub: str) -> str:
    return f"{key}.{sub}" if key else sub


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
