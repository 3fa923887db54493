"""Configuration of the Binance USD-M futures broker and exchange (``[exchange.binance-futures]``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from btkit.errors import ConfigError

KEY_ENV = "BINANCE_API_KEY"
SECRET_ENV = "BINANCE_API_SECRET"
SECRET_OPTION_NAMES = frozenset({"api_key", "apikey", "api_secret", "secret", "key", "password"})
POSITION_SIDES = ("long", "short")


def _bool(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if not isinstance(v, bool):
        raise ConfigError(f"binance-futures {a.name} must be true or false, got {v!r}")


def _positive(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"binance-futures {a.name} must be a number > 0, got {v!r}")


def _non_negative(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ConfigError(f"binance-futures {a.name} must be a number >= 0, got {v!r}")


def _count(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ConfigError(f"binance-futures {a.name} must be a whole number >= 1, got {v!r}")


def _leverage(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 125):
        raise ConfigError(f"binance-futures leverage must be a whole number from 1 to 125, got {v!r}")


def _choice(*choices: str | None) -> Any:
    def check(inst: Any, a: attrs.Attribute, v: Any) -> None:
        if v not in choices:
            shown = ", ".join(repr(c) for c in choices)
            raise ConfigError(f"binance-futures {a.name} must be one of {shown}, got {v!r}")

    return check


def _url(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if v is not None and (not isinstance(v, str) or not v.startswith(("http://", "https://"))):
        raise ConfigError(f"binance-futures api_base_url must be an http(s) URL, got {v!r}")


def _expected(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if v is None:
        return
    if not isinstance(v, Mapping):
        raise ConfigError("binance-futures expected_positions must map symbol -> 'long' | 'short' | None")
    for symbol, side in v.items():
        if side is not None and side not in POSITION_SIDES:
            raise ConfigError(
                f"binance-futures expected_positions[{symbol!r}] must be 'long', 'short' or None, got {side!r}"
            )


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    return tuple(str(s) for s in value)


@attrs.frozen(kw_only=True)
class BinanceFuturesConfig:
    """Every option of the broker (see docs/binance-futures.md). API keys are not options: they come only
    from ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET`` in the environment."""

    api_base_url: str | None = attrs.field(default=None, validator=_url)
    hedge_mode: bool = attrs.field(default=False, validator=_bool)
    leverage: int | None = attrs.field(default=None, validator=_leverage)
    margin_mode: str | None = attrs.field(default=None, validator=_choice(None, "isolated", "cross"))
    entry_timeout_seconds: float = attrs.field(default=30.0, validator=_positive)
    entry_order_type: str = attrs.field(default="limit", validator=_choice("limit", "market"))
    poll_interval_seconds: float = attrs.field(default=0.5, validator=_positive)
    request_timeout_ms: int = attrs.field(default=10_000, validator=_count)
    rate_limit_ms: int | None = attrs.field(default=None, validator=attrs.validators.optional(_count))
    rate_limiter: str = attrs.field(default="binance", validator=_choice("binance", "ccxt"))
    account_reads: str = attrs.field(default="shared", validator=_choice("shared", "per_symbol"))
    submit_attempts: int = attrs.field(default=3, validator=_count)
    read_attempts: int = attrs.field(default=4, validator=_count)
    retry_delay_seconds: float = attrs.field(default=0.25, validator=_non_negative)
    working_type: str = attrs.field(
        default="CONTRACT_PRICE", validator=_choice("CONTRACT_PRICE", "MARK_PRICE")
    )
    repair_protection: bool = attrs.field(default=True, validator=_bool)
    symbols: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    foreign_symbols: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    expected_positions: Mapping[str, str | None] | None = attrs.field(default=None, validator=_expected)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> BinanceFuturesConfig:
        """Build from keyword arguments or a ``btkit.toml`` table (strings from the environment are
        coerced); unknown names and anything that looks like a key are errors."""
        secrets = sorted(k for k in options if k.lower() in SECRET_OPTION_NAMES)
        if secrets:
            raise ConfigError(
                f"binance-futures: {', '.join(secrets)} cannot be configured; API keys come only from "
                f"{KEY_ENV} / {SECRET_ENV} in the environment"
            )
        fields = attrs.fields_dict(cls)
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise ConfigError(
                f"binance-futures: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
            )
        coerced = {name: _coerce(name, fields[name].default, value) for name, value in options.items()}
        return cls(**coerced)


def _coerce(name: str, default: Any, value: Any) -> Any:
    if not isinstance(value, str) or name in (
        "api_base_url",
        "margin_mode",
        "entry_order_type",
        "working_type",
        "rate_limiter",
        "account_reads",
        "symbols",
        "foreign_symbols",
    ):
        if (
            isinstance(value, float)
            and value.is_integer()
            and name
            in ("leverage", "request_timeout_ms", "submit_attempts", "read_attempts", "rate_limit_ms")
        ):
            return int(value)
        return value
    text = value.strip().lower()
    if isinstance(default, bool):
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"binance-futures {name} must be true or false, got {value!r}")
    if name in ("leverage", "request_timeout_ms", "submit_attempts", "read_attempts", "rate_limit_ms"):
        if text in ("", "none"):
            return None
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"binance-futures {name} must be a whole number, got {value!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"binance-futures {name} must be a number, got {value!r}") from None
    return value
