"""Accounting tests: btkit's fixtures and a clean process state (registrations, config, wallet) per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from btkit.testing import btkit_clean, btkit_plugin, candle_exchange, hook_recorder, plugin_manager

LIVE = Path(__file__).resolve().parents[1] / "live"
for folder in (LIVE, Path(__file__).resolve().parent):  # the crash-loop strategy lives with the live tests
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

__all__ = ["btkit_clean", "btkit_plugin", "candle_exchange", "hook_recorder", "plugin_manager"]


@pytest.fixture(autouse=True)
def _clean_btkit(btkit_clean: None) -> Iterator[None]:
    yield
