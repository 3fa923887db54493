"""End-to-end tests of the live engine with the binance-futures plugin against its fake exchange.

No ``pytest_plugins`` here (pytest accepts it only in the top-level conftest): the fixtures this folder
needs are imported instead. The suite runs with ``--import-mode=importlib``, so this folder is put on
``sys.path`` for ``e2e_helpers``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from btkit.testing import btkit_clean
from btkit_binance_futures.testing import binance_keys, fake_binance

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

__all__ = ["binance_keys", "btkit_clean", "fake_binance"]


@pytest.fixture(autouse=True)
def _clean_btkit(btkit_clean: None) -> Iterator[None]:
    yield
