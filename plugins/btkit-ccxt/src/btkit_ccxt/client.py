"""Building configured async ccxt clients (shared by btkit-ccxt and btkit-binance-futures).

Rules kept here, in one place:
- rate limiting stays on (``enableRateLimit=True`` cannot be overridden); for Binance (``binance``,
  ``binanceusdm``) it is btkit's process-wide weight limiter (:mod:`btkit_ccxt.pacing`) unless
  ``rate_limiter="ccxt"`` asks for ccxt's own per-client spacing;
- API keys come only from the environment (:func:`credentials_from_env`), never from options or files;
- ``api_base_url`` replaces ``exchange.urls["api"]`` *as a whole* (never ``set_sandbox_mode``, never URLs
  through the constructor, which merges instead of replacing);
- the ``ccxt`` logger is kept at INFO (its DEBUG output prints request headers with the API key), and
  :class:`SecretMasker` / :func:`mask_secrets` scrub secrets from btkit's own messages.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
from ccxt.base.errors import BadResponse

from btkit.errors import ConfigError
from btkit_ccxt.secrets import Credentials, SecretMasker, credentials_from_env, mask_secrets

#: ``urls["api"]`` keys kept when ``api_base_url`` is set, per exchange id (others: every key, rebased).
API_KEY_FILTERS: dict[str, tuple[str, ...]] = {
    "binanceusdm": (
        "fapiPublic",
        "fapiPublicV2",
        "fapiPublicV3",
        "fapiPrivate",
        "fapiPrivateV2",
        "fapiPrivateV3",
        "fapiData",
    ),
}
#: For the Binance family the market-type specific error tables are chosen by the URL's host name; with
#: a rebased URL they would silently stop applying (``-2019`` would become a plain ExchangeError).
ERROR_TABLES_BY_URL: dict[str, str] = {"binanceusdm": "linear", "binancecoinm": "inverse", "binance": "spot"}
__all__ = [
    "Credentials",
    "SecretMasker",
    "credentials_from_env",
    "make_client",
    "mask_secrets",
    "quiet_ccxt_logger",
    "rebase_api_urls",
]
FORBIDDEN_OPTION_KEYS = frozenset({"apiKey", "secret", "password", "uid", "privateKey", "walletAddress"})


def quiet_ccxt_logger() -> None:
    """Keep the ``ccxt`` logger at INFO or above (its DEBUG lines carry request headers with the key)."""
    logger = logging.getLogger("ccxt")
    if logger.level == logging.NOTSET or logger.level < logging.INFO:
        logger.setLevel(logging.INFO)


def rebase_api_urls(api: Any, base_url: str, keep: Iterable[str] | None = None) -> Any:
    """Return a copy of a ccxt ``urls["api"]`` value with every URL moved onto ``base_url``.

    The path of each URL is kept (``https://fapi.binance.com/fapi/v1`` → ``<base_url>/fapi/v1``); with
    ``keep`` only those top-level keys survive (the whole dict is replaced, nothing merged).
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"api_base_url {base_url!r} must look like https://host[:port][/prefix]")
    prefix = base_url.rstrip("/")

    def move(value: Any) -> Any:
        if isinstance(value, str):
            path = urlsplit(value).path if "://" in value else ""
            return prefix + path
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    if isinstance(api, dict) and keep is not None:
        wanted = set(keep)
        api = {k: v for k, v in api.items() if k in wanted}
    return move(api)


def make_client(
    exchange_id: str,
    *,
    api_base_url: str | None = None,
    options: Mapping[str, Any] | None = None,
    credentials: Credentials | None = None,
    timeout_ms: int | None = None,
    config: Mapping[str, Any] | None = None,
    strict_json: bool = True,
    rate_limiter: str | None = None,
) -> Any:
    """Create an async ccxt client for ``exchange_id`` configured the btkit way (see module docs).

    ``options`` is merged into ``exchange.options``; ``config`` into the constructor config (without
    URLs or keys). With ``strict_json`` a successful (2xx) answer whose body is not JSON raises ccxt
    ``BadResponse`` instead of being parsed as an empty result (ccxt would turn an HTML page from a proxy
    into ``[]``, which reads as "no candles"). The client's HTTP session binds to the first event loop
    that uses it: use one client per loop. ``rate_limiter``: ``"binance"`` (btkit's weight limiter where
    btkit knows the venue's weights) or ``"ccxt"``; None: :func:`btkit_ccxt.pacing.default_limiter`.
    """
    from btkit_ccxt import pacing

    limiter = rate_limiter or pacing.default_limiter()
    if limiter not in pacing.LIMITERS:
        raise ConfigError(f"rate_limiter must be one of {', '.join(pacing.LIMITERS)}, got {limiter!r}")
    cls = getattr(ccxt_async, exchange_id, None)
    if exchange_id not in ccxt_async.exchanges or cls is None:
        raise ConfigError(f"unknown ccxt exchange id {exchange_id!r}; see ccxt.exchanges for the valid ids")
    for source, mapping in (("options", options or {}), ("config", config or {})):
        bad = FORBIDDEN_OPTION_KEYS.intersection(mapping)
        if bad:
            raise ConfigError(
                f"{source} for {exchange_id} contain {', '.join(sorted(bad))}: API keys come only from the "
                "environment; remove them from the configuration"
            )
    cfg = dict(config or {})
    if "urls" in cfg:
        raise ConfigError("pass api_base_url instead of urls: URLs given to the ccxt constructor are merged")
    cfg.pop("enableRateLimit", None)
    cfg["enableRateLimit"] = True
    if timeout_ms is not None:
        cfg["timeout"] = int(timeout_ms)
    if credentials is not None:
        cfg["apiKey"] = credentials.api_key
        cfg["secret"] = credentials.secret
        if credentials.password:
            cfg["password"] = credentials.password
    quiet_ccxt_logger()
    client = cls(cfg)
    client.verbose = False
    client.enableRateLimit = True
    if options:
        client.options = client.deep_extend(client.options, dict(options))
    if credentials is not None and exchange_id.startswith("binance"):
        # with keys set, load_markets would also call the spot wallet API (sapi) for currencies
        client.options["fetchCurrencies"] = False
    if strict_json:
        _install_json_guard(client)
    if api_base_url:
        urls = dict(client.urls)
        urls["api"] = rebase_api_urls(urls["api"], api_base_url, API_KEY_FILTERS.get(exchange_id))
        client.urls = urls
        table = ERROR_TABLES_BY_URL.get(exchange_id)
        if table is not None:
            client.exceptions = _merge_error_table(client.exceptions, table)
    if limiter == "binance":
        pacing.install(client, exchange_id)
    return client


def _merge_error_table(exceptions: Mapping[str, Any], table: str) -> dict[str, Any]:
    """Fold the market-type error table into the global exact/broad tables (used with a rebased URL)."""
    merged: dict[str, Any] = copy.copy(dict(exceptions))
    specific = exceptions.get(table) or {}
    for kind in ("exact", "broad"):
        combined = dict(exceptions.get(kind) or {})
        combined.update(specific.get(kind) or {})
        merged[kind] = combined
    return merged


def _install_json_guard(client: Any) -> None:
    original = client.on_rest_response

    def on_rest_response(
        code: int,
        reason: str,
        url: str,
        method: str,
        response_headers: Any,
        response_body: str,
        request_headers: Any,
        request_body: Any,
    ) -> str:
        body = original(
            code, reason, url, method, response_headers, response_body, request_headers, request_body
        )
        if 200 <= int(code) < 300 and body and body[0] not in "{[":
            path = urlsplit(url).path
            raise BadResponse(f"{client.id} {method} {path}: the answer is not JSON ({body[:60]!r})")
        return body

    client.on_rest_response = on_rest_response
