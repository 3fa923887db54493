"""Fixtures of the fake Binance USD-M server (they live in btkit_binance_futures.testing for reuse)."""

from btkit_binance_futures.testing import binance_keys, fake_binance

__all__ = ["binance_keys", "fake_binance"]
