"""btkit-binance-futures: Binance USD-M futures as a btkit exchange and broker (ccxt ``binanceusdm``).

- exchange ``binance-futures``: candles through btkit-ccxt (paginated, bounded retries);
- broker ``binance-futures``: :class:`BinanceFuturesBroker` (limit/market entries polled until filled,
  reduce-only stop-loss/take-profit protection, idempotent client order ids, start-up reconciliation).

Configuration: ``[exchange.binance-futures]`` (api_base_url, hedge_mode, leverage, margin_mode,
entry_timeout_seconds, …); keys only from ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET``. Importing this
package does not import ccxt.
"""

from __future__ import annotations

from typing import Any

import btkit
from btkit.components import BrokerSpec, ExchangeSpec
from btkit_binance_futures.broker import BinanceFuturesBroker, ExchangePosition, ReconcileReport, make_broker
from btkit_binance_futures.config import BinanceFuturesConfig
from btkit_binance_futures.errors import Outcome, classify
from btkit_binance_futures.ids import derive_id

NAME = "binance-futures"
DIST = "btkit-binance-futures"

__version__ = "0.2.0"
btkit_api = ">=1,<2"  # the btkit plugin API versions this plugin supports (btkit.PLUGIN_API_VERSION)

__all__ = [
    "NAME",
    "BinanceFuturesBroker",
    "BinanceFuturesConfig",
    "ExchangePosition",
    "Outcome",
    "ReconcileReport",
    "btkit_brokers",
    "btkit_exchanges",
    "classify",
    "derive_id",
    "make_binance_futures_exchange",
    "make_broker",
]


def make_binance_futures_exchange(
    *,
    api_base_url: str | None = None,
    timeout_ms: int | None = None,
    retry: Any = None,
    read_settings: bool = False,
) -> ExchangeSpec:
    """The ``binance-futures`` exchange (candles from ``binanceusdm`` through btkit-ccxt)."""
    from btkit_ccxt import make_ccxt_exchange

    return make_ccxt_exchange(
        "binanceusdm",
        name=NAME,
        api_base_url=api_base_url,
        timeout_ms=timeout_ms,
        retry=retry,
        read_settings=read_settings,
        dist=DIST,
    )


@btkit.hookimpl
def btkit_exchanges() -> list[ExchangeSpec]:
    """``binance-futures``; ``api_base_url``/``timeout_ms`` come from ``[exchange.binance-futures]``."""
    return [make_binance_futures_exchange(read_settings=True)]


@btkit.hookimpl
def btkit_brokers() -> list[BrokerSpec]:
    """``binance-futures``: ``factory(**options)`` → :class:`BinanceFuturesBroker`."""
    return [BrokerSpec(name=NAME, factory=make_broker, dist=DIST)]
