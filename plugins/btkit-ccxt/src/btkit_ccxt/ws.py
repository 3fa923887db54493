"""ccxt.pro clients (websockets, bundled with ccxt) built from a configured REST client.

A websocket client is a second ccxt object next to the REST one: same keys, timeout, options, REST URLs,
error tables and markets (copied, never loaded twice), with ``urls["api"]["ws"]`` rebased onto
``ws_base_url`` when one is given (each URL keeps its path: ``wss://ws-api.binance.com:443/ws-api/v3``
becomes ``<ws_base_url>/ws-api/v3``), or the listed URLs replaced when it is a table. Like the REST client
it binds to the event loop that first uses it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from btkit.errors import ConfigError


def parse_switch(value: Any, what: str) -> bool | None:
    """``true`` / ``false`` / ``auto`` (None) from TOML, keyword arguments or environment text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", ""):
            return None
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
    raise ConfigError(f'{what} must be true, false or "auto", got {value!r}')


def _is_ws_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("ws://", "wss://")) and bool(urlsplit(value).netloc)


def check_ws_url(value: Any, what: str) -> str | dict[str, str] | None:
    """A ``ws(s)://`` base URL, or a table of ccxt's websocket URL keys (dotted: ``"ws-api.spot"``) to
    whole URLs (for an exchange whose sockets live on several hosts, e.g. Binance's spot testnet)."""
    if value is None:
        return None
    if isinstance(value, Mapping) and value and all(_is_ws_url(v) for v in value.values()):
        return {str(k): str(v).rstrip("/") for k, v in value.items()}
    if not _is_ws_url(value):
        raise ConfigError(
            f"{what} must be a ws:// or wss:// URL (or a table of such URLs by ccxt's urls['api']['ws'] keys), "
            f"got {value!r}"
        )
    return str(value).rstrip("/")


def check_seconds(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number <= 0:
        raise ConfigError(f"{what} must be a number > 0, got {value!r}")
    return number


def rebase_ws_urls(ws: Any, base_url: str) -> Any:
    """A copy of ``urls["api"]["ws"]`` with every URL moved onto ``base_url`` (paths kept)."""
    prefix = base_url.rstrip("/")

    def move(value: Any) -> Any:
        if isinstance(value, str):
            return prefix + (urlsplit(value).path if "://" in value else "")
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    return move(ws)


def set_ws_urls(ws: Any, urls: Mapping[str, str], exchange_id: str) -> Any:
    """A copy of ``urls["api"]["ws"]`` with the dotted keys of ``urls`` replaced (each must exist)."""
    out = copy.deepcopy(ws)
    for dotted, url in urls.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or not isinstance(node.get(leaf), str):
            known = sorted(_dotted(ws))
            raise ConfigError(
                f"ws_base_url: ccxt {exchange_id} has no websocket URL {dotted!r}; known: {', '.join(known)}"
            )
        node[leaf] = url
    return out


def _dotted(ws: Any, prefix: str = "") -> list[str]:
    if isinstance(ws, dict):
        return [k for key, v in ws.items() for k in _dotted(v, f"{prefix}{key}.")]
    return [prefix.rstrip(".")] if isinstance(ws, str) else []


def pro_class(exchange_id: str) -> Any:
    """The ccxt.pro class of ``exchange_id``, or None when ccxt has no websockets for it."""
    import ccxt.pro as ccxtpro

    if exchange_id not in getattr(ccxtpro, "exchanges", ()):
        return None
    return getattr(ccxtpro, exchange_id, None)


def pro_has(exchange_id: str, feature: str) -> bool:
    """Whether ccxt.pro says ``exchange_id`` has ``feature`` (e.g. ``watchOrders``)."""
    cls = pro_class(exchange_id)
    if cls is None:
        return False
    return bool(cls().has.get(feature))


def make_pro_client(rest: Any, ws_base_url: str | Mapping[str, str] | None = None) -> Any:
    """A ccxt.pro client mirroring the REST client ``rest`` (markets must be loaded on ``rest``)."""
    cls = pro_class(rest.id)
    if cls is None:
        raise ConfigError(f"ccxt has no websocket client for {rest.id}; set websocket = false")
    cfg: dict[str, Any] = {"enableRateLimit": True, "timeout": rest.timeout}
    for key in ("apiKey", "secret", "password", "uid"):
        value = getattr(rest, key, None)
        if value:
            cfg[key] = value
    pro = cls(cfg)
    pro.verbose = False
    pro.enableRateLimit = True
    pro.options = pro.deep_extend(pro.options, copy.deepcopy(dict(rest.options)))
    urls = dict(pro.urls)
    api = dict(pro.urls.get("api") or {})
    ws = api.get("ws")
    api.update({k: v for k, v in (rest.urls.get("api") or {}).items() if k != "ws"})
    if isinstance(ws_base_url, Mapping):
        ws = set_ws_urls(ws, ws_base_url, rest.id)
    elif ws_base_url and ws is not None:
        ws = rebase_ws_urls(ws, ws_base_url)
    if ws is not None:
        api["ws"] = ws
    urls["api"] = api
    pro.urls = urls
    pro.exceptions = rest.exceptions
    if rest.markets:
        pro.set_markets(rest.markets, getattr(rest, "currencies", None))
    return pro
