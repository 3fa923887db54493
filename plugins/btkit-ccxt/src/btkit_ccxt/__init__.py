"""btkit-ccxt: every ccxt exchange id as a btkit exchange named ``ccxt:<id>``.

Candles come from ``fetch_ohlcv`` (pages of at most 1000, bounded retries with backoff on network-type
errors, no retry on bad requests); ``format_price`` / ``format_quantity`` follow the market's precision.
:func:`make_client` builds the configured async ccxt client other plugins reuse (btkit-binance-futures).

Brokers ``ccxt:<id>``: spot trading on every ccxt exchange (:mod:`btkit_ccxt.spot`, docs/spot-trading.md).

Importing this package does not import ccxt (that takes seconds); ccxt loads at first use.
"""

from __future__ import annotations

from typing import Any

import btkit
from btkit.components import BrokerSpec, ExchangeSpec
from btkit_ccxt.exchange import CcxtExchange, all_exchange_ids, make_ccxt_exchange, to_ms, validate_rows
from btkit_ccxt.ids import exchange_ids
from btkit_ccxt.retry import RetryPolicy, call_with_retries, describe_error, error_code, read_retryable
from btkit_ccxt.secrets import Credentials, SecretMasker, credentials_from_env, mask_secrets

_LAZY = {
    "make_client": "btkit_ccxt.client",
    "quiet_ccxt_logger": "btkit_ccxt.client",
    "rebase_api_urls": "btkit_ccxt.client",
}

__version__ = "0.2.0"
btkit_api = ">=1,<2"  # the btkit plugin API versions this plugin supports (btkit.PLUGIN_API_VERSION)

__all__ = [
    "CcxtExchange",
    "Credentials",
    "RetryPolicy",
    "SecretMasker",
    "all_exchange_ids",
    "btkit_brokers",
    "btkit_exchanges",
    "call_with_retries",
    "credentials_from_env",
    "describe_error",
    "error_code",
    "exchange_ids",
    "make_ccxt_exchange",
    "make_client",
    "mask_secrets",
    "quiet_ccxt_logger",
    "read_retryable",
    "rebase_api_urls",
    "to_ms",
    "validate_rows",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'btkit_ccxt' has no attribute {name!r}")


@btkit.hookimpl
def btkit_exchanges() -> list[ExchangeSpec]:
    """One lazily connected exchange per ccxt id, named ``ccxt:<id>``.

    Options come from the ``[exchange."ccxt:<id>"]`` table of btkit.toml, read at first use."""
    return [make_ccxt_exchange(exchange_id, read_settings=True) for exchange_id in all_exchange_ids()]


def _spot_factory(exchange_id: str) -> Any:
    def factory(*, expected_positions: Any = None, **options: Any) -> Any:
        from btkit_ccxt.spot.broker import make_spot_broker

        return make_spot_broker(exchange_id)(expected_positions=expected_positions, **options)

    return factory


@btkit.hookimpl
def btkit_brokers() -> list[BrokerSpec]:
    """One spot broker per ccxt id, named ``ccxt:<id>`` (built, and ccxt imported, only when selected).

    Options come from the ``[broker]`` table; keys from ``<ID>_API_KEY`` / ``<ID>_API_SECRET``."""
    return [
        BrokerSpec(name=f"ccxt:{exchange_id}", factory=_spot_factory(exchange_id), dist="btkit-ccxt")
        for exchange_id in all_exchange_ids()
    ]
