"""Engine constants (10-lifecycle.md §6), ``set_config``/``get_config``, and ``btkit.toml`` loading.

The current configuration is one immutable :class:`EngineConfig`; ``set_config`` builds a new one and
swaps it in only when every value validates, so a rejected change leaves the old config untouched.
Precedence for the CLI: command-line options > ``BTKIT__SECTION__KEY`` environment > file > defaults.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from btkit.errors import ConfigError


def _non_negative(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
        raise ConfigError(f"{a.name} must be a number >= 0, got {v!r}")


def _positive(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v <= 0:
        raise ConfigError(f"{a.name} must be a number > 0, got {v!r}")


def _finite_positive(inst: Any, a: attrs.Attribute, v: Any) -> None:
    _positive(inst, a, v)
    if not math.isfinite(v):
        raise ConfigError(f"{a.name} must be finite, got {v!r}")


def _count(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ConfigError(f"{a.name} must be a whole number >= 0, got {v!r}")


def _positive_count(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"{a.name} must be a whole number >= 1, got {v!r}")


def _minutes(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, float) and math.isinf(v) and v > 0:
        return
    _positive_count(inst, a, v)


def _bool(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if not isinstance(v, bool):
        raise ConfigError(f"{a.name} must be true or false, got {v!r}")


@attrs.frozen(kw_only=True)
class EngineConfig:
    """All engine constants with their defaults. Percent values are in percent units."""

    schedule_await_minutes: int = attrs.field(default=120, validator=_positive_count)
    avg_price_candles_count: int = attrs.field(default=5, validator=_positive_count)
    percent_slippage: float = attrs.field(default=0.1, validator=_non_negative)
    percent_fee: float = attrs.field(default=0.1, validator=_non_negative)
    min_takeprofit_distance_percent: float = attrs.field(default=0.5, validator=_non_negative)
    min_stoploss_distance_percent: float = attrs.field(default=0.5, validator=_non_negative)
    max_stoploss_distance_percent: float = attrs.field(default=20.0, validator=_non_negative)
    max_signal_lifetime_minutes: int | float = attrs.field(default=1440, validator=_minutes)
    max_signal_generation_seconds: float = attrs.field(default=180, validator=_positive)
    get_candles_retry_count: int = attrs.field(default=3, validator=_positive_count)
    get_candles_retry_delay_ms: int = attrs.field(default=5000, validator=_count)
    max_candles_per_request: int = attrs.field(default=1000, validator=_positive_count)
    breakeven_threshold: float = attrs.field(default=0.2, validator=_non_negative)
    position_entry_cost: float = attrs.field(default=100.0, validator=_finite_positive)
    order_open_retry_attempts: int = attrs.field(default=5, validator=_positive_count)
    order_close_retry_attempts: int = attrs.field(default=5, validator=_positive_count)
    order_check_retry_attempts: int = attrs.field(default=5, validator=_positive_count)
    signal_leverage_multiplier: float = attrs.field(default=1.0, validator=_finite_positive)
    signal_isolated_margin: bool = attrs.field(default=True, validator=_bool)

    def __attrs_post_init__(self) -> None:
        floor = 2 * (self.percent_slippage + self.percent_fee)
        if self.min_takeprofit_distance_percent and self.min_takeprofit_distance_percent < floor:
            raise ConfigError(
                f"min_takeprofit_distance_percent={self.min_takeprofit_distance_percent} is below "
                f"2·(slippage+fee)={floor:g}: a take-profit that close cannot cover its costs; raise it"
            )
        if (
            self.max_stoploss_distance_percent
            and self.min_stoploss_distance_percent > self.max_stoploss_distance_percent
        ):
            raise ConfigError(
                "min_stoploss_distance_percent is above max_stoploss_distance_percent; lower the minimum"
            )

    @property
    def lifetime_is_infinite(self) -> bool:
        return isinstance(self.max_signal_lifetime_minutes, float) and math.isinf(
            self.max_signal_lifetime_minutes
        )


CONFIG_KEYS: frozenset[str] = frozenset(a.name for a in attrs.fields(EngineConfig))
_current = EngineConfig()


def get_config() -> EngineConfig:
    """The engine constants in force."""
    return _current


def _coerce(name: str, value: Any) -> Any:
    """Make whole floats whole where an integer is wanted (TOML/env give ``5.0`` or ``"5"``)."""
    field = attrs.fields_dict(EngineConfig)[name]
    default = field.default
    if isinstance(value, str):
        text = value.strip().lower()
        if isinstance(default, bool):
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if (
        isinstance(default, int)
        and not isinstance(default, bool)
        and isinstance(value, float)
        and value.is_integer()
    ):
        return int(value)
    return value


def build_config(base: EngineConfig | None = None, **changes: Any) -> EngineConfig:
    """Return a validated config with ``changes`` applied, or raise :class:`ConfigError`."""
    unknown = sorted(set(changes) - CONFIG_KEYS)
    if unknown:
        raise ConfigError(f"unknown engine constant(s) {', '.join(unknown)}; see docs/configuration.md")
    coerced = {k: _coerce(k, v) for k, v in changes.items()}
    try:
        return attrs.evolve(base or _current, **coerced)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # pragma: no cover - validators raise ConfigError
        raise ConfigError(str(exc)) from exc


def set_config(**changes: Any) -> EngineConfig:
    """Change engine constants. Invalid changes raise :class:`ConfigError` and change nothing."""
    global _current
    _current = build_config(_current, **changes)
    return _current


def reset_config() -> EngineConfig:
    """Back to the defaults (used by tests and by each CLI run)."""
    global _current
    _current = EngineConfig()
    return _current


# ---------------------------------------------------------------- btkit.toml + environment
SECTIONS = (
    "run", "exchange", "broker", "persistence", "risk", "engine", "wallet", "sizing", "actions", "strategy"
)
# keys the host reads itself; [broker]/[persistence] options go to the plugin, which checks its own, and
# [exchange.<name>] tables belong to exchange plugins
KNOWN_KEYS = {
    "run": ("strategy", "strategy_file", "exchange", "symbol", "timerange", "interval", "dump_dir"),
    "exchange": ("offline", "data_dir", "gaps"),
    "wallet": ("balance", "currency"),  # docs/wallet-and-sizing.md
    "sizing": ("method", "min_size", "max_percent", "max_size"),
    "strategy": ("params",),  # [strategy.params]: docs/parameters.md
}


def _check_keys(section: str, body: Mapping[str, Any], where: str) -> None:
    known = KNOWN_KEYS.get(section)
    if known is None:
        return
    for key, value in body.items():
        if key not in known and not (section == "exchange" and isinstance(value, dict)):
            raise ConfigError(f"{where}: unknown key {key!r} in [{section}]; use one of {', '.join(known)}")


# the type of every key the host reads itself; a value from the environment (always a string) is parsed
# to that type, a value from the TOML file must already have it — the same rules for both
def _as_bool(text: Any) -> bool:
    if isinstance(text, bool):
        return text
    if isinstance(text, str) and text.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(text, str) and text.strip().lower() in ("false", "0", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _as_positive(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number > 0")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("must be a number > 0") from None
    if not math.isfinite(number) or number <= 0 or number > 1e15:
        raise ValueError("must be a finite number > 0")
    return number


def _as_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty string")
    return value


def _as_names(value: Any) -> Any:
    """A name, or a list of names (``[run] symbol = ["BTCUSDT", "ETHUSDT"]``)."""
    if isinstance(value, list) and value:
        return [_as_text(item) for item in value]
    return _as_text(value)


def _as_choice(*choices: str) -> Any:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return str(value)

    return parse


HOST_TYPES: dict[tuple[str, str], Any] = {
    ("exchange", "offline"): _as_bool,
    ("exchange", "data_dir"): _as_text,
    ("exchange", "gaps"): _as_choice("reject", "fill"),
    ("broker", "name"): _as_text,
    ("broker", "timeout_seconds"): _as_positive,
    ("persistence", "backend"): _as_text,
    ("wallet", "balance"): _as_positive,
    ("wallet", "currency"): _as_text,
    ("sizing", "method"): _as_text,
    ("sizing", "min_size"): _as_positive,
    ("sizing", "max_percent"): _as_positive,
    ("sizing", "max_size"): _as_positive,
    **{("run", key): _as_names for key in KNOWN_KEYS["run"]},
}


def _typed(section: str, key: str, value: Any, where: str) -> Any:
    parse = HOST_TYPES.get((section, key))
    if parse is None:
        return value
    try:
        return parse(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: [{section}] {key} {exc}, got {value!r}") from None


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, value in environ.items():
        if not name.startswith("BTKIT__"):
            continue
        parts = name[len("BTKIT__") :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"environment variable {name} must look like BTKIT__SECTION__KEY")
        section, key = parts
        if section not in SECTIONS:
            raise ConfigError(f"{name}: unknown section {section!r}; use one of {', '.join(SECTIONS)}")
        out.setdefault(section, {})[key] = value
    return out


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """Read ``btkit.toml`` (``path``, else ``$BTKIT_CONFIG``, else ``./btkit.toml`` when present) and apply
    ``BTKIT__SECTION__KEY`` overrides.

    Returns ``{section: {key: value}}``; the ``[engine]`` section is validated here (an invalid constant
    raises :class:`ConfigError` naming the key).
    """
    settings: dict[str, dict[str, Any]] = {}
    env = os.environ if environ is None else environ
    if path is None and env.get("BTKIT_CONFIG"):  # set by `btkit --config`, so plugins read the same file
        path = env["BTKIT_CONFIG"]
    file = Path(path) if path is not None else Path("btkit.toml")
    if path is not None and not file.is_file():
        raise ConfigError(f"config file {file} not found; pass an existing --config path")
    if file.is_file():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: invalid TOML ({exc}); fix the file") from None
        for section, body in data.items():
            if section not in SECTIONS:
                raise ConfigError(f"{file}: unknown section [{section}]; use one of {', '.join(SECTIONS)}")
            if not isinstance(body, dict):
                raise ConfigError(f"{file}: [{section}] must be a table")
            _check_keys(section, body, str(file))
            settings[section] = {k: _typed(section, k, v, str(file)) for k, v in body.items()}
    for section, body in _env_overrides(os.environ if environ is None else environ).items():
        _check_keys(section, body, "environment (BTKIT__SECTION__KEY)")
        for key, value in body.items():
            where = f"environment variable BTKIT__{section.upper()}__{key.upper()}"
            settings.setdefault(section, {})[key] = _typed(section, key, value, where)
    build_config(EngineConfig(), **settings.get("engine", {}))
    return settings
