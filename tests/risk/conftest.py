"""Risk tests: btkit's pytest fixtures and a clean btkit process state around every test.

The fixtures are imported (pytest accepts ``pytest_plugins`` only in the top-level conftest).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from btkit.testing import btkit_clean, btkit_plugin, candle_exchange, hook_recorder, plugin_manager

__all__ = ["btkit_clean", "btkit_plugin", "candle_exchange", "hook_recorder", "plugin_manager"]


@pytest.fixture(autouse=True)
def _clean_btkit(btkit_clean: None) -> Iterator[None]:
    yield
