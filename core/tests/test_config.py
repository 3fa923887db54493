"""Engine constants: defaults, set_config validation (reject and leave unchanged), btkit.toml and the
BTKIT__SECTION__KEY environment overrides (10-lifecycle.md §6, 00-product.md Configuration)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from btkit import ConfigError, get_config, set_config
from btkit.config import CONFIG_KEYS, EngineConfig, load_settings, reset_config

SPEC_DEFAULTS: dict[str, Any] = {
    "schedule_await_minutes": 120,
    "avg_price_candles_count": 5,
    "percent_slippage": 0.1,
    "percent_fee": 0.1,
    "min_takeprofit_distance_percent": 0.5,
    "min_stoploss_distance_percent": 0.5,
    "max_stoploss_distance_percent": 20,
    "max_signal_lifetime_minutes": 1440,
    "max_signal_generation_seconds": 180,
    "get_candles_retry_count": 3,
    "get_candles_retry_delay_ms": 5000,
    "max_candles_per_request": 1000,
    "breakeven_threshold": 0.2,
    "position_entry_cost": 100,
    "order_open_retry_attempts": 5,
    "order_close_retry_attempts": 5,
    "order_check_retry_attempts": 5,
    "signal_leverage_multiplier": 1,
    "signal_isolated_margin": True,
}


@pytest.fixture(autouse=True)
def fresh_config() -> Iterator[None]:
    reset_config()
    yield
    reset_config()


def test_defaults_are_the_spec_constants() -> None:
    cfg = get_config()
    assert set(CONFIG_KEYS) == set(SPEC_DEFAULTS)
    for name, value in SPEC_DEFAULTS.items():
        assert getattr(cfg, name) == value, name


def test_set_config_changes_values_and_returns_the_new_config() -> None:
    cfg = set_config(percent_fee=0.05, schedule_await_minutes=30, min_takeprofit_distance_percent=0.4)
    assert cfg is get_config()
    assert (cfg.percent_fee, cfg.schedule_await_minutes, cfg.min_takeprofit_distance_percent) == (
        0.05,
        30,
        0.4,
    )
    assert cfg.percent_slippage == 0.1  # untouched values stay


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"no_such_constant": 1}, "no_such_constant"),
    ({"percent_fee": -0.1}, "percent_fee"),
    ({"percent_slippage": math.nan}, "percent_slippage"),
    ({"percent_fee": "a lot"}, "percent_fee"),
    ({"percent_fee": True}, "percent_fee"),
    ({"schedule_await_minutes": 0}, "schedule_await_minutes"),
    ({"schedule_await_minutes": 2.5}, "schedule_await_minutes"),
    ({"avg_price_candles_count": -5}, "avg_price_candles_count"),
    ({"position_entry_cost": math.inf}, "position_entry_cost"),
    ({"position_entry_cost": 0}, "position_entry_cost"),
    ({"signal_leverage_multiplier": math.nan}, "signal_leverage_multiplier"),
    ({"signal_isolated_margin": "maybe"}, "signal_isolated_margin"),
    ({"max_signal_lifetime_minutes": -math.inf}, "max_signal_lifetime_minutes"),
    ({"max_signal_generation_seconds": 0}, "max_signal_generation_seconds"),
    ({"min_takeprofit_distance_percent": 0.3}, "min_takeprofit_distance_percent"),  # < 2·(0.1+0.1)
    ({"percent_fee": 0.2}, "min_takeprofit_distance_percent"),  # raises the floor above the 0.5 in force
    ({"min_stoploss_distance_percent": 30}, "min_stoploss_distance_percent"),  # above the max (20)
]


@pytest.mark.parametrize(
    ("change", "named"), INVALID, ids=[next(iter(c)) + "=" + repr(v) for c, v in INVALID]
)
def test_an_invalid_change_raises_config_error_and_changes_nothing(
    change: dict[str, Any], named: str
) -> None:
    set_config(percent_fee=0.05)  # a non-default config in force
    before = get_config()
    with pytest.raises(ConfigError) as info:
        set_config(**change)
    assert get_config() is before
    text = str(info.value)
    assert named in text and "\n" not in text


def test_a_change_is_all_or_nothing() -> None:
    before = get_config()
    with pytest.raises(ConfigError):
        set_config(percent_fee=0.05, schedule_await_minutes=30, percent_slippage=-1)
    assert get_config() is before
    assert get_config().percent_fee == 0.1 and get_config().schedule_await_minutes == 120


def test_the_take_profit_floor_follows_costs_changed_together() -> None:
    cfg = set_config(percent_fee=0.2, percent_slippage=0.2, min_takeprofit_distance_percent=0.8)
    assert cfg.min_takeprofit_distance_percent == 0.8
    with pytest.raises(ConfigError, match="2·\\(slippage\\+fee\\)"):
        set_config(min_takeprofit_distance_percent=0.79)


def test_zero_turns_a_distance_check_off_and_infinity_allows_endless_signals() -> None:
    cfg = set_config(min_takeprofit_distance_percent=0, max_stoploss_distance_percent=0)
    assert cfg.min_takeprofit_distance_percent == 0
    cfg = set_config(max_signal_lifetime_minutes=math.inf)
    assert cfg.lifetime_is_infinite


def test_whole_floats_are_accepted_where_counts_are_wanted() -> None:
    cfg = set_config(schedule_await_minutes=30.0, get_candles_retry_count="4")
    assert cfg.schedule_await_minutes == 30 and isinstance(cfg.schedule_await_minutes, int)
    assert cfg.get_candles_retry_count == 4


# ---------------------------------------------------------------- btkit.toml and environment
def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "btkit.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_btkit_toml_in_the_working_directory_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[engine]\npercent_fee = 0.05\n[run]\nstrategy = "mine"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings["engine"] == {"percent_fee": 0.05}
    assert settings["run"]["strategy"] == "mine"


def test_no_file_and_no_environment_is_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}) == {}


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[engine]\npercent_fee = 0.05\npercent_slippage = 0.02\n")
    settings = load_settings(path, environ={"BTKIT__ENGINE__PERCENT_FEE": "0.07", "OTHER": "x"})
    assert settings["engine"]["percent_fee"] == "0.07"  # env wins over the file …
    assert settings["engine"]["percent_slippage"] == 0.02  # … only for the keys it names
    cfg = set_config(**settings["engine"])
    assert (cfg.percent_fee, cfg.percent_slippage) == (0.07, 0.02)


def test_the_real_process_environment_is_used_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[engine]\npercent_fee = 0.05\n")
    monkeypatch.setenv("BTKIT__ENGINE__PERCENT_FEE", "0.09")
    monkeypatch.setenv("BTKIT__RUN__SYMBOL", "ETHUSDT")
    settings = load_settings(path)
    assert settings["engine"]["percent_fee"] == "0.09"
    assert settings["run"]["symbol"] == "ETHUSDT"


@pytest.mark.parametrize(
    ("toml", "environ", "message"),
    [
        ("[engine]\npercent_fee = -1\n", {}, "percent_fee"),
        ("[engine]\nbogus = 1\n", {}, "bogus"),
        ("[nonsense]\na = 1\n", {}, "unknown section [nonsense]"),
        ("[engine\npercent_fee = 1\n", {}, "invalid TOML"),
        ("engine = 3\n", {}, "[engine] must be a table"),
        ("", {"BTKIT__ENGINE__PERCENT_FEE": "cheap"}, "percent_fee must be a number"),
        ("", {"BTKIT__ENGINE__PERCENT_FEE": "nan"}, "percent_fee"),
        ("", {"BTKIT__ENGINE": "1"}, "BTKIT__SECTION__KEY"),
        ("", {"BTKIT__NOPE__KEY": "1"}, "unknown section 'nope'"),
        ("[engine]\nmin_takeprofit_distance_percent = 0.1\n", {}, "min_takeprofit_distance_percent"),
    ],
)
def test_invalid_settings_are_one_line_config_errors(
    tmp_path: Path, toml: str, environ: dict[str, str], message: str
) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=environ)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_an_explicit_config_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_load_settings_does_not_change_the_config_in_force(tmp_path: Path) -> None:
    before = get_config()
    load_settings(write(tmp_path, "[engine]\npercent_fee = 0.05\n"), environ={})
    assert get_config() is before


def test_engine_config_records_are_immutable() -> None:
    cfg = EngineConfig()
    with pytest.raises(AttributeError):
        cfg.percent_fee = 1.0  # type: ignore[misc]


def test_btkit_config_env_names_the_file_plugins_read(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from btkit.config import load_settings

    cfg = tmp_path / "elsewhere.toml"
    cfg.write_text('[exchange."ccxt:binance"]\napi_base_url = "http://127.0.0.1:9"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).get("exchange") is None  # no ./btkit.toml here
    got = load_settings(environ={"BTKIT_CONFIG": str(cfg)})
    assert got["exchange"]["ccxt:binance"]["api_base_url"] == "http://127.0.0.1:9"
