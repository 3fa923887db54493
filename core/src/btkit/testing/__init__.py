"""pytest support for btkit and plugin authors (enable with ``pytest_plugins = ["btkit.testing"]``).

Fixtures:
- ``btkit_clean`` — a clean process state before and after the test: in-code registrations, listeners,
  engine config, live session and live settings;
- ``plugin_manager`` — a fresh plugin manager (defaults + installed entry points);
- ``btkit_plugin`` — ``btkit_plugin(obj)`` registers a throw-away plugin into every plugin manager
  created during the test, and always unregisters it afterwards;
- ``hook_recorder`` — records every hook call made through a plugin manager;
- ``candle_exchange`` — ``candle_exchange(name, arrays_by_symbol)`` registers an in-memory exchange fed
  from ``(n, 6)`` 1-minute candle arrays (higher intervals are resampled).
Contract suites: ``PersistenceContract`` (persistence backends); ``BrokerContract`` when present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest

pytest.register_assert_rewrite("btkit.testing.persistence_contract", "btkit.testing.broker_contract")

from btkit.testing.exchange import memory_exchange  # noqa: E402

try:
    from btkit.testing.persistence_contract import PersistenceContract
except ImportError:  # pragma: no cover
    PersistenceContract = None  # type: ignore[assignment,misc]
try:
    from btkit.testing.broker_contract import BrokerContract
except ImportError:  # pragma: no cover
    BrokerContract = None  # type: ignore[assignment,misc]

__all__ = ["BrokerContract", "PersistenceContract", "memory_exchange", "reset_btkit"]


def reset_btkit() -> None:
    """Forget everything process-wide that btkit keeps (registrations, listeners, config, live)."""
    from btkit import config, events, plugins
    from btkit.broker import Broker
    from btkit.engine import backtest, live
    from btkit.registry import CODE

    live.Live.shutdown()
    CODE.clear()
    events.clear()
    config.reset_config()
    from btkit.accounting import reset_wallet

    reset_wallet()
    plugins.TEST_PLUGINS.clear()
    Broker.disable()
    live.SETTINGS.__init__()  # type: ignore[misc]
    live.REJECTIONS.clear()
    from btkit.persist.adapter import PersistSignalAdapter

    PersistSignalAdapter.use(None)
    backtest._results.clear()
    from btkit.ops.actions import HUB

    HUB.reset()


@pytest.fixture
def btkit_clean() -> Iterator[None]:
    reset_btkit()
    yield
    reset_btkit()


@pytest.fixture
def plugin_manager(btkit_clean: None) -> Any:
    from btkit.plugins import get_plugin_manager

    return get_plugin_manager()


@pytest.fixture
def btkit_plugin(btkit_clean: None) -> Iterator[Callable[[object], object]]:
    from btkit import plugins

    added: list[object] = []

    def register(plugin: object) -> object:
        plugins.TEST_PLUGINS.append(plugin)
        added.append(plugin)
        return plugin

    yield register
    for plugin in added:
        if plugin in plugins.TEST_PLUGINS:
            plugins.TEST_PLUGINS.remove(plugin)


@pytest.fixture
def hook_recorder() -> Callable[[Any], list[tuple[str, dict[str, Any]]]]:
    """``calls = hook_recorder(pm)``: every later hook call on ``pm`` appends ``(hook_name, kwargs)``."""

    def attach(pm: Any) -> list[tuple[str, dict[str, Any]]]:
        calls: list[tuple[str, dict[str, Any]]] = []

        def before(hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
            calls.append((hook_name, dict(kwargs)))

        def after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: dict[str, Any]) -> None:
            return None

        pm.add_hookcall_monitoring(before, after)
        return calls

    return attach


@pytest.fixture
def candle_exchange(btkit_clean: None) -> Callable[[str, Mapping[str, np.ndarray]], Any]:
    from btkit.registry import CODE

    def register(name: str, arrays: Mapping[str, np.ndarray]) -> Any:
        spec = memory_exchange(name, arrays)
        CODE.exchanges[name] = spec
        return spec

    return register
