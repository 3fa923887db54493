"""Array-form and ``btkit check`` tests: a clean btkit process state around every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from btkit.testing import btkit_clean

__all__ = ["btkit_clean"]


@pytest.fixture(autouse=True)
def _clean_btkit(btkit_clean: None) -> Iterator[None]:
    yield
