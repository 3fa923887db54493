"""Spot trading on any ccxt exchange: the broker behind ``--broker ccxt:<id>`` (docs/spot-trading.md)."""

from btkit_ccxt.spot.broker import CcxtSpotBroker, derive_id, make_spot_broker
from btkit_ccxt.spot.config import SpotConfig, key_env
from btkit_ccxt.spot.errors import Outcome, classify

__all__ = ["CcxtSpotBroker", "Outcome", "SpotConfig", "classify", "derive_id", "key_env", "make_spot_broker"]
