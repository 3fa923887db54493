"""Options of the ccxt spot broker (``[broker]`` table of btkit.toml with ``name = "ccxt:<id>"``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from btkit.errors import ConfigError

SECRET_OPTION_NAMES = frozenset({"api_key", "apikey", "api_secret", "secret", "key", "password"})
INTS = ("request_timeout_ms", "rate_limit_ms", "submit_attempts", "read_attempts")


def key_env(exchange_id: str) -> tuple[str, str, str]:
    """The environment variables holding the keys of ``exchange_id``: ``<ID>_API_KEY``, ``<ID>_API_SECRET``
    and ``<ID>_API_PASSWORD`` (the passphrase some exchanges use)."""
    stem = "".join(ch if ch.isalnum() else "_" for ch in exchange_id).upper()
    return f"{stem}_API_KEY", f"{stem}_API_SECRET", f"{stem}_API_PASSWORD"


def _positive(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"ccxt spot broker {a.name} must be a number > 0, got {v!r}")


def _non_negative(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ConfigError(f"ccxt spot broker {a.name} must be a number >= 0, got {v!r}")


def _count(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise ConfigError(f"ccxt spot broker {a.name} must be a whole number >= 1, got {v!r}")


def _choice(*choices: str) -> Any:
    def check(inst: Any, a: attrs.Attribute, v: Any) -> None:
        if v not in choices:
            raise ConfigError(f"ccxt spot broker {a.name} must be one of {', '.join(choices)}, got {v!r}")

    return check


def _url(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if v is not None and (not isinstance(v, str) or not v.startswith(("http://", "https://"))):
        raise ConfigError(f"ccxt spot broker api_base_url must be an http(s) URL, got {v!r}")


def _switch(value: Any) -> bool | None:
    from btkit_ccxt.ws import parse_switch

    return parse_switch(value, "ccxt spot broker websocket")


def _ws_url(value: Any) -> str | dict[str, str] | None:
    from btkit_ccxt.ws import check_ws_url

    return check_ws_url(value, "ccxt spot broker ws_base_url")


def _tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    return tuple(str(s) for s in value)


@attrs.frozen(kw_only=True)
class SpotConfig:
    """Every option of the spot broker (docs/spot-trading.md). Keys are not options: they come only from
    ``<ID>_API_KEY`` / ``<ID>_API_SECRET`` (/ ``<ID>_API_PASSWORD``) in the environment."""

    exchange_id: str
    api_base_url: str | None = attrs.field(default=None, validator=_url)
    entry_order_type: str = attrs.field(default="limit", validator=_choice("limit", "market"))
    entry_timeout_seconds: float = attrs.field(default=30.0, validator=_positive)
    poll_interval_seconds: float = attrs.field(default=0.5, validator=_positive)
    partial_fill: str = attrs.field(default="keep", validator=_choice("keep", "unwind"))
    protection: str = attrs.field(default="auto", validator=_choice("auto", "native", "emulated"))
    request_timeout_ms: int = attrs.field(default=10_000, validator=_count)
    rate_limit_ms: int | None = attrs.field(default=None, validator=_count)
    rate_limiter: str = attrs.field(default="binance", validator=_choice("binance", "ccxt"))
    submit_attempts: int = attrs.field(default=3, validator=_count)
    read_attempts: int = attrs.field(default=4, validator=_count)
    retry_delay_seconds: float = attrs.field(default=0.25, validator=_non_negative)
    quote_assets: tuple[str, ...] = attrs.field(default=("USDT",), converter=_tuple)
    foreign_assets: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    expected_positions: Mapping[str, str | None] | None = None
    # websockets (btkit_ccxt.spot.ws_fills): None = on where ccxt.pro has watchOrders
    websocket: bool | None = attrs.field(default=None, converter=_switch)
    ws_base_url: str | dict[str, str] | None = attrs.field(default=None, converter=_ws_url)
    websocket_reconcile_seconds: float = attrs.field(default=2.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.websocket and self.api_base_url and not self.ws_base_url:
            raise ConfigError(
                f"ccxt:{self.exchange_id} broker: websocket = true with api_base_url needs ws_base_url (the "
                "websocket endpoint of that server); set it, or websocket = false"
            )

    @classmethod
    def from_options(cls, exchange_id: str, options: Mapping[str, Any]) -> SpotConfig:
        """From keyword arguments or a ``[broker]`` table; unknown names and key-like names are errors."""
        secrets = sorted(k for k in options if k.lower() in SECRET_OPTION_NAMES)
        if secrets:
            k, s, _ = key_env(exchange_id)
            raise ConfigError(
                f"ccxt:{exchange_id}: {', '.join(secrets)} cannot be configured; API keys come only from "
                f"{k} / {s} in the environment"
            )
        fields = attrs.fields_dict(cls)
        unknown = sorted(set(options) - set(fields) - {"exchange_id"})
        if unknown:
            known = ", ".join(sorted(set(fields) - {"exchange_id"}))
            raise ConfigError(
                f"ccxt:{exchange_id} broker: unknown option(s) {', '.join(unknown)}; known: {known}"
            )
        values: dict[str, Any] = {}
        for name, value in options.items():
            if name == "exchange_id":
                continue
            default = fields[name].default
            if isinstance(value, str) and name in INTS:
                try:
                    value = int(value)
                except ValueError:
                    raise ConfigError(
                        f"ccxt spot broker {name} must be a whole number, got {value!r}"
                    ) from None
            elif isinstance(value, str) and isinstance(default, float):
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigError(f"ccxt spot broker {name} must be a number, got {value!r}") from None
            elif isinstance(value, float) and name in INTS and value.is_integer():
                value = int(value)
            values[name] = value
        return cls(exchange_id=exchange_id, **values)
