"""Live-mode tests: btkit's pytest fixtures, and a clean btkit process state around every test.

``pytest_plugins = ["btkit.testing"]`` is declared by the top-level tests/conftest.py (pytest accepts
it only there); the fixtures are imported here too so this folder also runs on its own. The suite
runs with ``--import-mode=importlib``, so this folder is put on ``sys.path`` for ``live_helpers``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from btkit.testing import btkit_clean, btkit_plugin, candle_exchange, hook_recorder, plugin_manager

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

__all__ = ["btkit_clean", "btkit_plugin", "candle_exchange", "hook_recorder", "plugin_manager"]


@pytest.fixture(autouse=True)
def _clean_btkit(btkit_clean: None) -> Iterator[None]:
    yield
