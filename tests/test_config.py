"""Tests for engine.config: loading, validation errors, secrets, and strategy params."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from engine.app import build_app
from engine.config import (
    Config,
    ConfigError,
    InstrumentConfig,
    Secret,
    SimVenueConfig,
    StrategyConfig,
    build,
    load_config,
    parse_config,
)
from engine.strategies.market_maker import MarketMakerParams
from engine.strategies.sma import SmaParams
from engine.strategy import Strategy

DEMO = Path(__file__).resolve().parents[1] / "config" / "demo.toml"
DEMO_TEXT = DEMO.read_text()

MINIMAL = """\
[[instruments]]
symbol = "AAPL"
venue = "SIM"
tick_size = 0.01

[venues.SIM]
kind = "sim"
"""


def write(tmp_path: Path, text: str, name: str = "tickwire.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def demo_with(tmp_path: Path, pattern: str, replacement: str, count: int = 1) -> Path:
    """The demo config with ``pattern`` (a regex, multi-line) replaced ``count`` times."""
    text, n = re.subn(pattern, replacement, DEMO_TEXT, count=count, flags=re.MULTILINE)
    assert n == count, f"pattern {pattern!r} not found in demo.toml"
    return write(tmp_path, text)


def config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


# ---------------------------------------------------------------------------------------------
# The demo config


def test_demo_config_loads() -> None:
    cfg = load_config(DEMO)
    assert isinstance(cfg, Config)
    assert cfg.source == str(DEMO)
    assert cfg.engine.name == "demo"
    assert [i.symbol for i in cfg.instruments] == ["AAPL", "MSFT", "ES", "BTC/USDT"]
    assert all(isinstance(i, InstrumentConfig) for i in cfg.instruments)
    es = cfg.instruments[2]
    assert es.tick_size == 0.25
    assert es.multiplier == 50.0
    assert isinstance(es.multiplier, float)
    assert es.asset_class == "future"
    assert cfg.instruments[3].lot_size == 0.001
    assert cfg.instruments[3].currency == "USDT"
    assert set(cfg.venues) == {"SIM"}
    assert isinstance(cfg.venues["SIM"], SimVenueConfig)
    assert cfg.venues["SIM"].commission_per_lot == 0.005
    assert [s.name for s in cfg.strategies] == ["sma", "mm"]
    assert all(isinstance(s, StrategyConfig) for s in cfg.strategies)
    assert cfg.strategies[0].class_path == "engine.strategies.sma:SmaCrossover"
    assert cfg.strategies[1].instruments == ["AAPL", "ES", "BTC/USDT"]
    assert cfg.strategies[0].params == {"fast": 20, "slow": 100, "target": 100, "sample_every": 4}
    assert cfg.risk.max_position == 2000.0
    assert cfg.rings.md_policy == "conflate"
    assert cfg.metrics.port == 0
    assert cfg.feed is not None
    assert cfg.feed.seed == 7


def test_minimal_config_uses_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    assert cfg.feed is None
    assert cfg.strategies == []
    assert cfg.rings.market_data == 65536
    assert cfg.metrics.port == 9464
    assert cfg.instruments[0].asset_class == "stock"
    assert cfg.instruments[0].ref_price is None


def test_config_is_frozen() -> None:
    cfg = load_config(DEMO)
    with pytest.raises(AttributeError):
        cfg.risk.max_position = 1.0  # type: ignore[misc]


def test_demo_builds_an_app_with_validated_params() -> None:
    app = build_app(load_config(DEMO))
    strategies = app.engine.strategies
    assert [s.name for s in strategies] == ["sma", "mm"]
    assert strategies[0].params == SmaParams(fast=20, slow=100, target=100.0, sample_every=4)
    assert isinstance(strategies[1].params, MarketMakerParams)
    assert strategies[1].params.size == 2.0
    assert [i.symbol for i in strategies[1].instruments] == ["AAPL", "ES", "BTC/USDT"]


# ---------------------------------------------------------------------------------------------
# Errors name the file, the key and what was expected


def test_unknown_key_has_file_key_and_hint(tmp_path: Path) -> None:
    path = demo_with(tmp_path, r"^max_position = 2000$", "max_postion = 2000")
    err = config_error(path)
    msg = str(err)
    assert str(path) in msg
    assert "risk.max_postion" in msg
    assert "did you mean 'max_position'" in msg
    assert err.file == str(path)
    assert err.key == "risk.max_postion"


def test_unknown_top_level_section(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\n[riks]\nmax_position = 10\n")
    err = config_error(path)
    assert err.key == "riks"
    assert "did you mean 'risk'" in str(err)
    # Internal fields are not offered as valid keys.
    assert "source" not in err.message


def test_wrong_type_names_file_key_and_expectation(tmp_path: Path) -> None:
    path = demo_with(tmp_path, r"^port = 0\b", 'port = "abc"')
    err = config_error(path)
    msg = str(err)
    assert str(path) in msg
    assert "metrics.port" in msg
    assert "expected an integer" in msg
    assert "'abc'" in msg


@pytest.mark.parametrize(
    ("pattern", "replacement", "key", "expected"),
    [
        (r"^log_json = false$", 'log_json = "no"', "engine.log_json", "expected true or false"),
        (r"^md_batch = 256$", "md_batch = 2.5", "rings.md_batch", "expected an integer"),
        (r"^seed = 7$", "seed = true", "feed.seed", "expected an integer"),
        (r"^max_order_qty = 1000$", 'max_order_qty = "1k"', "risk.max_order_qty", "number"),
        (r'^name = "demo"$', "name = 5", "engine.name", "expected a string"),
        (r'^instruments = \["AAPL", "MSFT"\]$', 'instruments = "AAPL"', "strategies[0].instruments",
         "expected an array"),
    ],
)  # fmt: skip
def test_wrong_types(
    tmp_path: Path, pattern: str, replacement: str, key: str, expected: str
) -> None:
    err = config_error(demo_with(tmp_path, pattern, replacement))
    assert err.key == key
    assert expected in err.message


def test_scalar_where_a_table_is_expected(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, "metrics = 3\n" + MINIMAL))
    assert err.key == "metrics"
    assert "expected a table" in err.message


def test_missing_required_value(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("tick_size = 0.01\n", ""))
    err = config_error(path)
    msg = str(err)
    assert str(path) in msg
    assert "instruments[0].tick_size" in msg
    assert "missing required value" in msg


def test_missing_required_value_in_second_entry(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[instruments]]\nsymbol = "MSFT"\ntick_size = 0.01\n'
    err = config_error(write(tmp_path, text))
    assert err.key == "instruments[1].venue"


def test_missing_config_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "missing.toml"
    err = config_error(path)
    assert str(path) in str(err)
    assert "not found" in str(err)


def test_config_path_is_a_directory(tmp_path: Path) -> None:
    """Passing a directory (e.g. ``--config config/``) is an operator mistake like any other."""
    err = config_error(tmp_path)
    assert str(tmp_path) in str(err)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[engine\nname = 'x'\n")
    err = config_error(path)
    assert str(path) in str(err)
    assert "not valid TOML" in str(err)


def test_literal_outside_choices(tmp_path: Path) -> None:
    path = demo_with(tmp_path, r'^md_policy = "conflate"$', 'md_policy = "drop_all"')
    err = config_error(path)
    assert err.key == "rings.md_policy"
    assert "'conflate'" in err.message
    assert "'drop_oldest'" in err.message
    assert "'drop_newest'" in err.message
    assert "'drop_all'" in err.message


def test_asset_class_outside_choices(tmp_path: Path) -> None:
    path = demo_with(tmp_path, r'^asset_class = "future"$', 'asset_class = "futures"')
    err = config_error(path)
    assert err.key == "instruments[2].asset_class"
    assert "'future'" in err.message


@pytest.mark.parametrize("value", [1000, 0, 1, 3, -4])
def test_ring_capacity_must_be_power_of_two(tmp_path: Path, value: int) -> None:
    path = demo_with(tmp_path, r"^market_data = 65536$", f"market_data = {value}")
    err = config_error(path)
    assert str(path) in str(err)
    assert err.key == "rings.market_data"
    assert "power of two" in err.message
    assert str(value) in err.message


@pytest.mark.parametrize(
    ("pattern", "replacement", "key"),
    [
        (r"^status_interval_s = 1.0$", "status_interval_s = 0", "engine.status_interval_s"),
        (r"^ack_latency_us = 50$", "ack_latency_us = -1", "venues.SIM.ack_latency_us"),
        (r"^step_prob = 0.02$", "step_prob = 1.5", "feed.step_prob"),
        (r"^max_position = 2000$", "max_position = nan", "risk.max_position"),
        (r"^tick_size = 0.25$", "tick_size = -0.25", "instruments[2].tick_size"),
        (r"^ref_price = 410.0$", "ref_price = 0", "instruments[1].ref_price"),
        (r"^port = 0\b", "port = 70000", "metrics.port"),
        (
            r"^status_interval_s = 1.0$",
            "status_interval_s = 1.0\nstop_cancel_timeout_s = -1",
            "engine.stop_cancel_timeout_s",
        ),
    ],
)
def test_value_checks(tmp_path: Path, pattern: str, replacement: str, key: str) -> None:
    err = config_error(demo_with(tmp_path, pattern, replacement))
    assert err.key == key


@pytest.mark.parametrize(
    ("pattern", "replacement", "key"),
    [
        (r"^multiplier = 50$", "multiplier = inf", "instruments[2].multiplier"),
        (r"^tick_size = 0.01$", "tick_size = inf", "instruments[0].tick_size"),
        (r"^lot_size = 0.001$", "lot_size = inf", "instruments[3].lot_size"),
        (r"^ref_price = 65000.0$", "ref_price = inf", "instruments[3].ref_price"),
        (r"^tick_size = 0.25$", "tick_size = nan", "instruments[2].tick_size"),
        (r"^rate = 100000 ", "rate = inf ", "feed.rate"),
    ],
)
def test_instrument_numbers_must_be_finite(
    tmp_path: Path, pattern: str, replacement: str, key: str
) -> None:
    """An infinite tick size, lot size, multiplier or price is named where it is written (it
    used to surface from the risk kernels' arrays under the key ``venues``, or as a plain
    ValueError)."""
    err = config_error(demo_with(tmp_path, pattern, replacement))
    assert err.key == key
    assert "must be a finite number > 0" in err.message


def test_an_instrument_the_registry_refuses_is_a_config_error_naming_it() -> None:
    """A Config built in code skips the file checks: the registry's refusal still names the
    instrument's key."""
    cfg = load_config(DEMO)
    bad = replace(cfg.instruments[1], tick_size=math.inf)
    cfg = replace(cfg, instruments=[cfg.instruments[0], bad, *cfg.instruments[2:]])
    with pytest.raises(ConfigError) as info:
        build_app(cfg)
    assert info.value.key == "instruments[1]" and "MSFT.SIM: tick_size" in info.value.message


def test_instrument_venue_without_section(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('venue = "SIM"', 'venue = "IBKR"'))
    err = config_error(path)
    assert str(path) in str(err)
    assert err.key == "instruments[0].venue"
    assert "[venues.IBKR]" in err.message
    assert "SIM" in err.message


def test_unknown_venue_kind(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('kind = "sim"', 'kind = "ftx"'))
    err = config_error(path)
    assert err.key == "venues.SIM.kind"
    assert "'ib'" in err.message and "'sim'" in err.message


def test_ib_venue_section_is_validated(tmp_path: Path) -> None:
    ib = MINIMAL.replace('kind = "sim"', 'kind = "ib"\npacing_msgs_per_s = 60')
    err = config_error(write(tmp_path, ib))
    assert err.key == "venues.SIM.pacing_msgs_per_s" and "50" in err.message
    ib = MINIMAL.replace('kind = "sim"', 'kind = "ib"\naccount = "DU123456"')
    err = config_error(write(tmp_path, ib))
    assert err.key == "venues.SIM.account" and "env:" in err.message  # never inline


def test_unknown_key_in_venue_section(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "ack_latency = 5\n")
    err = config_error(path)
    assert err.key == "venues.SIM.ack_latency"
    assert "did you mean 'ack_latency_us'" in err.message


def test_journal_section(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL)).journal.path == ""  # no journal by default
    text = MINIMAL + '\n[journal]\npath = "state/orders.journal"\nfsync = "always"\n'
    cfg = load_config(write(tmp_path, text))
    assert (cfg.journal.path, cfg.journal.fsync) == ("state/orders.journal", "always")
    assert cfg.journal.fsync_interval_ms == 10.0


def test_unknown_key_in_journal_section(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\n[journal]\nfsync_interval = 5\n")
    err = config_error(path)
    assert err.key == "journal.fsync_interval"
    assert "did you mean 'fsync_interval_ms'" in err.message


def test_journal_fsync_policy_is_checked(tmp_path: Path) -> None:
    err = config_error(write(tmp_path, MINIMAL + '\n[journal]\nfsync = "sometimes"\n'))
    assert err.key == "journal.fsync" and "'batch'" in err.message
    err = config_error(write(tmp_path, MINIMAL + "\n[journal]\nfsync_interval_ms = 0\n"))
    assert err.key == "journal.fsync_interval_ms" and "must be > 0" in err.message


def test_strategy_with_unknown_instrument(tmp_path: Path) -> None:
    path = demo_with(
        tmp_path, r'^instruments = \["AAPL", "MSFT"\]$', 'instruments = ["AAPL", "TSLA"]'
    )
    err = config_error(path)
    assert str(path) in str(err)
    assert err.key == "strategies[0].instruments[1]"
    assert "'TSLA'" in err.message


def test_strategy_may_name_instrument_with_venue(tmp_path: Path) -> None:
    path = demo_with(
        tmp_path, r'^instruments = \["AAPL", "MSFT"\]$', 'instruments = ["AAPL.SIM", "MSFT"]'
    )
    cfg = load_config(path)
    assert cfg.strategies[0].instruments == ["AAPL.SIM", "MSFT"]


def test_duplicate_instrument_and_strategy_names(tmp_path: Path) -> None:
    dup_inst = MINIMAL + '\n[[instruments]]\nsymbol = "AAPL"\nvenue = "SIM"\ntick_size = 0.01\n'
    assert config_error(write(tmp_path, dup_inst, "a.toml")).key == "instruments[1]"
    dup_strat = demo_with(tmp_path, r'^name = "mm"$', 'name = "sma"')
    assert config_error(dup_strat).key == "strategies[1].name"


def test_class_path_without_colon(tmp_path: Path) -> None:
    path = demo_with(
        tmp_path, r'^class = "engine.strategies.sma:SmaCrossover"$',
        'class = "engine.strategies.sma.SmaCrossover"',
    )  # fmt: skip
    err = config_error(path)
    assert err.key == "strategies[0].class"


def test_parse_config_uses_given_file_name() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"risk": {"max_postion": 1}}, "inline.toml")
    assert str(info.value).startswith("inline.toml: risk.max_postion:")


# ---------------------------------------------------------------------------------------------
# Secrets


@dataclass(frozen=True, slots=True)
class Creds:
    api_key: Secret
    account: str = "DU123"


ENV = "TICKWIRE_TEST_API_KEY"
VALUE = "s3cr3t-V4lue-xyz"


def test_secret_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, VALUE)
    creds = build(Creds, {"api_key": f"env:{ENV}"}, "venue.toml", "venues.IB")
    assert isinstance(creds.api_key, Secret)
    assert creds.api_key.reveal() == VALUE
    assert creds.account == "DU123"


def test_secret_missing_env_names_file_key_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ConfigError) as info:
        build(Creds, {"api_key": f"env:{ENV}"}, "venue.toml", "venues.IB")
    msg = str(info.value)
    assert "venue.toml" in msg
    assert "venues.IB.api_key" in msg
    assert ENV in msg


def test_secret_from_absolute_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "key.txt"
    secret_file.write_text(VALUE + "\n")
    creds = build(Creds, {"api_key": f"file:{secret_file}"}, "venue.toml", "")
    assert creds.api_key.reveal() == VALUE


def test_secret_from_file_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key").write_text(f"  {VALUE}\n")
    config_file = str(tmp_path / "live.toml")
    creds = build(Creds, {"api_key": "file:secrets/key"}, config_file, "venues.IB")
    assert creds.api_key.reveal() == VALUE


def test_missing_secret_file_names_config_file_and_key(tmp_path: Path) -> None:
    config_file = str(tmp_path / "live.toml")
    missing = tmp_path / "no-such-key"
    with pytest.raises(ConfigError) as info:
        build(Creds, {"api_key": f"file:{missing}"}, config_file, "venues.IB")
    msg = str(info.value)
    assert config_file in msg
    assert "venues.IB.api_key" in msg
    assert str(missing) in msg


def test_secret_file_that_is_a_directory(tmp_path: Path) -> None:
    """A secret path that cannot be read is a config mistake, reported as ConfigError."""
    config_file = str(tmp_path / "live.toml")
    with pytest.raises(ConfigError) as info:
        build(Creds, {"api_key": f"file:{tmp_path}"}, config_file, "venues.IB")
    assert "venues.IB.api_key" in str(info.value)


@pytest.mark.parametrize("value", [VALUE, "ENV:X", "path/to/key", "", 12345, ["env:X"]])
def test_plain_secret_is_refused(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        build(Creds, {"api_key": value}, "venue.toml", "venues.IB")
    msg = str(info.value)
    assert "venue.toml" in msg
    assert "venues.IB.api_key" in msg
    assert "env:" in msg
    # A secret written inline is never echoed back.
    assert VALUE not in msg


def test_secret_repr_never_shows_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV, VALUE)
    from_env = build(Creds, {"api_key": f"env:{ENV}"}, "venue.toml", "").api_key
    secret_file = tmp_path / "key.txt"
    secret_file.write_text(VALUE)
    creds = build(Creds, {"api_key": f"file:{secret_file}"}, "venue.toml", "")
    for secret in (from_env, creds.api_key):
        texts = (repr(secret), str(secret), f"{secret}", f"{secret!r}", format(secret, ""))
        for text in texts:
            assert VALUE not in text
            assert "***" in text
    assert ENV in repr(from_env)
    assert VALUE not in repr(creds)
    assert VALUE not in str(creds)


def test_secret_equality() -> None:
    assert Secret("a", "env:A") == Secret("a", "env:B")
    assert Secret("a", "env:A") != Secret("b", "env:A")
    assert Secret("a", "env:A") != "a"


# ---------------------------------------------------------------------------------------------
# Strategy params and classes, validated when the app is built


def test_unknown_strategy_param(tmp_path: Path) -> None:
    path = demo_with(tmp_path, r"^fast = 20$", "fsat = 20")
    cfg = load_config(path)  # params are only checked against the class in build_app
    with pytest.raises(ConfigError) as info:
        build_app(cfg)
    err = info.value
    assert str(path) in str(err)
    assert err.key == "strategies[0].params.fsat"
    assert "did you mean 'fast'" in err.message


def test_strategy_param_in_second_strategy(tmp_path: Path) -> None:
    path = demo_with(tmp_path, r"^size = 2$", "sise = 2")
    with pytest.raises(ConfigError) as info:
        build_app(load_config(path))
    assert info.value.key == "strategies[1].params.sise"


def test_strategy_param_wrong_type(tmp_path: Path) -> None:
    path = demo_with(tmp_path, r"^slow = 100$", 'slow = "100"')
    with pytest.raises(ConfigError) as info:
        build_app(load_config(path))
    assert info.value.key == "strategies[0].params.slow"
    assert "expected an integer" in info.value.message


@pytest.mark.parametrize(
    ("pattern", "replacement", "key", "words"),
    [
        (r"^fast = 20$", "fast = 200", "strategies[0].params.fast", "below slow (100), got 200"),
        (r"^fast = 20$", "fast = 0", "strategies[0].params.fast", ">= 1, got 0"),
        (r"^target = 100$", "target = -5", "strategies[0].params.target", "> 0"),
        (r"^sample_every = 4$", "sample_every = 0", "strategies[0].params.sample_every", ">= 1"),
        (r"^size = 2$", "size = -2", "strategies[1].params.size", "> 0, got -2"),
        (
            r"^max_inventory = 40$",
            "max_inventory = 0",
            "strategies[1].params.max_inventory",
            "divides by it",
        ),
        (
            r"^half_spread_ticks = 1$",
            "half_spread_ticks = 0",
            "strategies[1].params.half_spread_ticks",
            ">= 1",
        ),
        (r"^requote_ticks = 1$", "requote_ticks = 0", "strategies[1].params.requote_ticks", ">= 1"),
        (r"^skew_ticks = 2.0$", "skew_ticks = nan", "strategies[1].params.skew_ticks", "nan"),
    ],
)
def test_strategy_params_out_of_range_name_the_key(
    tmp_path: Path, pattern: str, replacement: str, key: str, words: str
) -> None:
    """Each sample strategy's ``Params.validate`` checks ranges when the app is built: a value
    that would break the strategy is a config error naming file and key, not a strategy that
    fails at start (or divides by zero on the first book)."""
    path = demo_with(tmp_path, pattern, replacement)
    with pytest.raises(ConfigError) as info:
        build_app(load_config(path))
    err = info.value
    assert str(path) in str(err)
    assert err.key == key and words in err.message


def test_a_params_validate_without_a_field_names_the_params_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL + '\n[[strategies]]\nname = "x"\nclass = "tests.test_config:Picky"\n',
    )
    with pytest.raises(ConfigError) as info:
        build_app(load_config(path))
    assert info.value.key == "strategies[0].params"
    assert "not today" in info.value.message


@dataclass(frozen=True, slots=True)
class PickyParams:
    n: int = 1

    def validate(self) -> None:
        raise ValueError("not today")


class Picky(Strategy):
    Params = PickyParams


@pytest.mark.parametrize(
    "class_path",
    [
        "engine.strategies.no_such_module:SmaCrossover",
        "no_such_package.strategies:Thing",
        "engine.strategies.sma:NoSuchClass",
    ],
)
def test_unimportable_strategy_class(tmp_path: Path, class_path: str) -> None:
    path = demo_with(
        tmp_path, r'^class = "engine.strategies.sma:SmaCrossover"$', f'class = "{class_path}"'
    )
    with pytest.raises(ConfigError) as info:
        build_app(load_config(path))
    err = info.value
    assert str(path) in str(err)
    assert err.key == "strategies[0].class"
    assert class_path in err.message


def test_strategy_class_that_is_not_a_strategy(tmp_path: Path) -> None:
    path = demo_with(
        tmp_path, r'^class = "engine.strategies.sma:SmaCrossover"$',
        'class = "engine.config:Config"',
    )  # fmt: skip
    with pytest.raises(ConfigError) as info:
        build_app(load_config(path))
    assert info.value.key == "strategies[0].class"
    assert "not a Strategy subclass" in info.value.message


# ---------------------------------------------------------------------------------------------
# Keeping the order path warm, busy poll


DEMO_IB = DEMO.parent / "demo_ib.toml"


def test_keep_warm_auto_is_on_for_ib_and_off_for_the_sim_venue() -> None:
    cfg = load_config(DEMO_IB)
    assert cfg.engine.keep_warm == "auto" and not cfg.engine.busy_poll
    assert build_app(cfg).engine.keep_warm_ms == cfg.engine.keep_warm_interval_ms == 1.0
    assert build_app(load_config(DEMO)).engine.keep_warm_ms == 0.0


@pytest.mark.parametrize(
    ("setting", "demo", "expected"),
    [('"on"', DEMO, 0.5), ('"off"', DEMO_IB, 0.0), ('"auto"', DEMO_IB, 0.5)],
)
def test_keep_warm_setting(tmp_path: Path, setting: str, demo: Path, expected: float) -> None:
    text = re.sub(  # demo_ib.toml sets them: drop those lines first
        r"^(keep_warm|keep_warm_interval_ms|busy_poll) = .*\n", "", demo.read_text(), flags=re.M
    )
    text, n = re.subn(
        r"^\[engine\]$",
        f"[engine]\nkeep_warm = {setting}\nkeep_warm_interval_ms = 0.5\nbusy_poll = true",
        text,
        flags=re.MULTILINE,
    )
    assert n == 1
    sim = DEMO.parent / "gateway_sim_demo.toml"  # demo_ib.toml names it, next to itself
    write(tmp_path, sim.read_text(), sim.name)
    cfg = load_config(write(tmp_path, text, demo.name))
    assert cfg.engine.busy_poll
    assert build_app(cfg).engine.keep_warm_ms == expected


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('keep_warm = "always"', "engine.keep_warm"),
        ("keep_warm_interval_ms = 0", "engine.keep_warm_interval_ms"),
        ('busy_poll = "yes"', "engine.busy_poll"),
    ],
)
def test_keep_warm_bad_values(tmp_path: Path, line: str, key: str) -> None:
    text = re.sub(r"^\[engine\]$", f"[engine]\n{line}", DEMO_TEXT, count=1, flags=re.MULTILINE)
    assert config_error(write(tmp_path, text)).key == key


# ---------------------------------------------------------------------------------------------
# CPU affinity: checked when the config is built, applied when the run starts


@pytest.mark.parametrize(
    ("value", "expected"),
    [("[-1]", "CPU numbers are 0 or more"), ("[0, 0]", "a CPU is listed twice")],
)
def test_cpu_affinity_values_are_checked(tmp_path: Path, value: str, expected: str) -> None:
    err = config_error(demo_with(tmp_path, r"^log_json = false$", f"cpu_affinity = {value}"))
    assert err.key == "engine.cpu_affinity" and expected in err.message


def test_a_cpu_the_process_may_not_use_is_refused_when_the_app_is_built(tmp_path: Path) -> None:
    import os

    absent = max(os.sched_getaffinity(0)) + 1
    path = demo_with(tmp_path, r"^log_json = false$", f"cpu_affinity = [{absent}]")
    with pytest.raises(ConfigError) as info:
        build_app(load_config(path))
    err = info.value
    assert err.file == str(path) and err.key == "engine.cpu_affinity"
    assert f"CPU(s) {absent} are not available" in err.message and "pick from" in err.message


async def test_run_app_pins_the_process_to_the_configured_cpus(tmp_path: Path) -> None:
    import io
    import os

    from engine.app import run_app

    before = os.sched_getaffinity(0)
    cpu = max(before)
    path = demo_with(tmp_path, r"^log_json = false$", f"cpu_affinity = [{cpu}]")
    app = build_app(load_config(path))
    assert os.sched_getaffinity(0) == before  # building only checks
    try:
        await run_app(app, 0.1, io.StringIO())
        assert os.sched_getaffinity(0) == {cpu}
    finally:
        os.sched_setaffinity(0, before)


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_secret_from_env_is_refused(monkeypatch: pytest.MonkeyPatch, empty: str) -> None:
    """``IB_ACCOUNT=`` in an env file must not read as "no account" (the gateway's first)."""
    monkeypatch.setenv(ENV, empty)
    with pytest.raises(ConfigError) as info:
        build(Creds, {"api_key": f"env:{ENV}"}, "venue.toml", "venues.IB")
    msg = str(info.value)
    assert msg.startswith("venue.toml: venues.IB.api_key: ")
    assert f"environment variable {ENV} is empty" in msg


def test_an_empty_secret_file_is_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "account"
    secret_file.write_text("\n")
    with pytest.raises(ConfigError) as info:
        build(Creds, {"api_key": f"file:{secret_file}"}, "venue.toml", "venues.IB")
    msg = str(info.value)
    assert msg.startswith("venue.toml: venues.IB.api_key: ")
    assert f"secret file {secret_file} is empty" in msg


def test_an_empty_account_never_reaches_the_ib_venue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the whole config: an empty ``account`` from the environment stops start-up
    instead of leaving the venue to trade the first account the gateway manages."""
    monkeypatch.setenv(ENV, "")
    text = (DEMO.parent / "demo_ib.toml").read_text()
    text = text.replace("client_id = 1", f'client_id = 1\naccount = "env:{ENV}"')
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(text), "live.toml")
    assert str(info.value).startswith("live.toml: venues.IB.account: environment variable")


@pytest.mark.parametrize(
    ("key", "names", "bad", "hint"),
    [
        ("block_list", '["APPL"]', 0, "did you mean 'AAPL'?"),
        ("allow_list", '["AAPL", "MSTF"]', 1, "did you mean 'MSFT'?"),
    ],
)
def test_an_allow_or_block_list_name_no_instrument_has_is_refused(
    tmp_path: Path, key: str, names: str, bad: int, hint: str
) -> None:
    """A misspelt block_list entry would block nothing (the instrument trades); a misspelt
    allow_list entry would refuse the instrument meant. Both stop start-up, like a misspelt
    limit."""
    path = demo_with(tmp_path, r"^\[risk\]$", f"[risk]\n{key} = {names}")
    err = config_error(path)
    assert err.key == f"risk.{key}[{bad}]"
    assert "is not in [[instruments]]" in err.message and hint in err.message


def test_allow_and_block_lists_take_symbols_and_symbol_dot_venue(tmp_path: Path) -> None:
    path = demo_with(
        tmp_path, r"^\[risk\]$", '[risk]\nblock_list = ["ES"]\nallow_list = ["AAPL.SIM", "MSFT"]'
    )
    risk = load_config(path).risk
    assert risk.block_list == ["ES"] and risk.allow_list == ["AAPL.SIM", "MSFT"]
