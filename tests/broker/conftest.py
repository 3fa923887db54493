"""Broker tests: btkit's pytest fixtures, a clean process state around every test, and ``engine``.

The fixtures are imported (pytest accepts ``pytest_plugins`` only in the top-level conftest); this
folder is put on ``sys.path`` for the shared ``broker_helpers`` module (the suite uses importlib mode).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from btkit.persist.file import FileBackend
from btkit.registry import add_strategy
from btkit.testing import btkit_clean, btkit_plugin, candle_exchange, hook_recorder, plugin_manager
from btkit.testing.exchange import candles_from_prices

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from broker_helpers import EXCHANGE, STRATEGY, SYMBOL, T0, Engine

__all__ = ["btkit_clean", "btkit_plugin", "candle_exchange", "hook_recorder", "plugin_manager"]


@pytest.fixture(autouse=True)
def _clean_btkit(btkit_clean: None) -> Iterator[None]:
    yield


@pytest.fixture
def engine(tmp_path: Path, candle_exchange: Callable[..., Any]) -> Iterator[Callable[..., Engine]]:
    """``engine(broker, prices=[...], signals=[...])`` → an :class:`Engine` over ``tmp_path / "state"``.

    ``signals`` is what ``get_signal`` returns on successive calls (the last one repeats; None = no
    signal); ``risk`` names a risk profile for the strategy.
    """
    made: list[Engine] = []

    def make(
        broker: Any,
        *,
        prices: Sequence[float],
        signals: Sequence[Any],
        risk: str | None = None,
        backend_factory: Callable[[Path], FileBackend] = FileBackend,
    ) -> Engine:
        candle_exchange(EXCHANGE, {SYMBOL: candles_from_prices(T0, list(prices))})
        queue = list(signals)

        def get_signal(symbol: str, when: Any, current_price: float) -> Any:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        add_strategy(STRATEGY, get_signal, risk=risk)
        e = Engine(tmp_path / "state", broker, risks=(risk,) if risk else (), backend_factory=backend_factory)
        made.append(e)
        return e

    yield make
    for e in made:
        e.close()


def pytest_assertrepr_compare(op: str, left: Any, right: Any) -> list[str] | None:
    """Show which fields of two engine snapshots differ."""
    from broker_helpers import Snapshot, differences

    if op == "==" and isinstance(left, Snapshot) and isinstance(right, Snapshot):
        return ["engine snapshots differ:", *differences(left, right)]
    return None
