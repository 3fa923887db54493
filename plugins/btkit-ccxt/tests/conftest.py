"""Fixtures of the fake spot exchange (they live in btkit_ccxt.testing for reuse)."""

from btkit_ccxt.testing import fake_spot, spot_keys

__all__ = ["fake_spot", "spot_keys"]
