"""One test per hook (the meta-test in test_meta.py checks that every hook is named in some test).

Each test installs a small plugin with the ``btkit_plugin`` fixture — registered into every plugin
manager created during the test, and always removed afterwards — and runs the real engine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import numpy as np
import pytest

import btkit
from btkit.components import ExchangeSpec, FrameSpec, PersistenceBackendSpec, StrategySpec
from btkit.persist.backend import Change
from btkit.testing.exchange import candles_from_prices, memory_exchange

START = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def flat_then_up(n: int = 600) -> np.ndarray:
    """100 for 30 minutes, then a steady climb: a long opened early hits a 1 % TP."""
    closes = np.concatenate([np.full(30, 100.0), np.linspace(100.0, 110.0, n - 30)])
    return candles_from_prices(START, closes, spread=0.0005)


def every_10_minutes(symbol: str, when: datetime, price: float) -> Any:
    return btkit.Signal(
        **btkit.Position.bracket(
            position="long", current_price=price, percent_take_profit=1, percent_stop_loss=1
        )
    )


class Registry:
    @btkit.hookimpl
    def btkit_exchanges(self) -> list[ExchangeSpec]:
        return [memory_exchange("mem", {"TEST": flat_then_up()})]

    @btkit.hookimpl
    def btkit_strategies(self) -> list[StrategySpec]:
        return [StrategySpec(name="ten", get_signal=every_10_minutes, interval="15m", dist="test")]

    @btkit.hookimpl
    def btkit_frames(self) -> list[FrameSpec]:
        return [
            FrameSpec(
                name="first-hours",
                start=datetime(2024, 1, 1, 0, 10, tzinfo=UTC),
                end=datetime(2024, 1, 1, 8, 0, tzinfo=UTC),
            )
        ]


def test_registry_hooks_btkit_exchanges_strategies_frames(btkit_plugin: Any) -> None:
    btkit_plugin(Registry())
    results = list(btkit.Backtest.run("TEST", strategy="ten", exchange="mem", frame="first-hours"))
    assert [r.action for r in results][:2] == ["opened", "closed"]
    assert results[1].close_reason == "take_profit"


def test_btkit_get_signal_plugins_preempt_and_wrappers_veto(btkit_plugin: Any) -> None:
    btkit_plugin(Registry())

    class Preempt:
        calls = 0

        @btkit.hookimpl(tryfirst=True)
        def btkit_get_signal(self, strategy: StrategySpec, symbol: str, current_price: float) -> Any:
            Preempt.calls += 1
            return {
                "position": "short",
                "price_take_profit": current_price * 0.98,
                "price_stop_loss": current_price * 1.01,
            }

    btkit_plugin(Preempt())
    results = list(btkit.Backtest.run("TEST", strategy="ten", exchange="mem", frame="first-hours"))
    assert Preempt.calls >= 1 and results[0].signal.position == "short"


def test_btkit_get_signal_wrapper_can_veto(btkit_plugin: Any) -> None:
    btkit_plugin(Registry())

    class Veto:
        @btkit.hookimpl(wrapper=True)
        def btkit_get_signal(self) -> Any:
            yield  # let the strategy answer …
            return None  # … and veto it

    btkit_plugin(Veto())
    assert list(btkit.Backtest.run("TEST", strategy="ten", exchange="mem", frame="first-hours")) == []


def test_btkit_signal_event_and_btkit_run_error_observers(btkit_plugin: Any) -> None:
    btkit_plugin(Registry())
    seen: list[str] = []
    errors: list[str] = []

    class Observer:
        @btkit.hookimpl
        def btkit_signal_event(self, result: Any) -> None:
            seen.append(result.action)

        @btkit.hookimpl
        def btkit_run_error(self, error: BaseException, where: str) -> None:
            errors.append(where)

    btkit_plugin(Observer())

    def broken(symbol: str, when: datetime, price: float) -> Any:
        raise RuntimeError("boom")

    btkit.add_strategy("broken", broken, interval="15m")
    list(btkit.Backtest.run("TEST", strategy="ten", exchange="mem", frame="first-hours"))
    assert seen[:2] == ["opened", "closed"]
    list(btkit.Backtest.run("TEST", strategy="broken", exchange="mem", frame="first-hours"))
    assert errors and all("broken" in w for w in errors)


class DictBackend:
    """A persistence backend kept in a dict: enough for the hook tests (no durability promised)."""

    name = "dict"
    atomic_batches = True
    shared: ClassVar[dict[tuple[str, tuple[str, ...]], dict[str, Any]]] = {}

    def __init__(self, **options: Any) -> None:
        self.docs = DictBackend.shared

    def open(self, *, exclusive: bool = False) -> None:
        pass

    def close(self) -> None:
        pass

    def read(self, domain: str, key: tuple[str, ...]) -> dict[str, Any] | None:
        return self.docs.get((domain, key))

    def write(self, changes: list[Change]) -> None:
        for c in changes:
            if c.document is None:
                self.docs.pop((c.domain, c.key), None)
            else:
                self.docs[(c.domain, c.key)] = c.document

    def keys(self, domain: str) -> list[tuple[str, ...]]:
        return [k for d, k in self.docs if d == domain]

    def quarantine(self, domain: str, key: tuple[str, ...], reason: str) -> str:
        self.docs.pop((domain, key), None)
        return "nowhere"


def test_btkit_persistence_backends_and_persist_read_write_delete(btkit_plugin: Any) -> None:
    btkit_plugin(Registry())
    DictBackend.shared.clear()
    writes: list[int] = []
    reads: list[str] = []
    deletes: list[str] = []

    class Backends:
        @btkit.hookimpl
        def btkit_persistence_backends(self) -> list[PersistenceBackendSpec]:
            return [PersistenceBackendSpec(name="dict", factory=DictBackend, dist="test")]

    class Observer:  # first-result hooks: returning None lets the built-in implementation act
        @btkit.hookimpl(tryfirst=True)
        def btkit_persist_write(self, changes: list[Change]) -> None:
            writes.append(len(changes))

        @btkit.hookimpl(tryfirst=True)
        def btkit_persist_read(self, domain: str) -> None:
            reads.append(domain)

        @btkit.hookimpl(tryfirst=True)
        def btkit_persist_delete(self, domain: str) -> None:
            deletes.append(domain)

    btkit_plugin(Backends())
    btkit_plugin(Observer())
    btkit.use_persistence("dict")
    clock = btkit.ReplayClock(START + 10 * 60_000, end=START + 300 * 60_000)
    results = list(btkit.Live.run("TEST", strategy="ten", exchange="mem", clock=clock))
    assert [r.action for r in results][:2] == ["opened", "closed"]
    assert writes and {"signal", "strategy"} <= set(reads)
    docs = DictBackend.shared
    assert (
        "row" in docs[("signal", ("ten", "TEST"))]
        and docs[("signal", ("ten", "TEST"))]["schema_version"] == 1
    )
    assert len(docs[("history", ("ten", "TEST"))]["closed"]) >= 1
    # the operator's `forget` goes through btkit_persist_delete
    from btkit.persist.state import BackendStore
    from btkit.plugins import get_plugin_manager

    n = BackendStore(get_plugin_manager(), DictBackend()).forget(("ten", "TEST"))
    assert n >= 3 and "signal" in deletes and ("signal", ("ten", "TEST")) not in docs


@pytest.mark.parametrize("hook", ["btkit_persist_write"])
def test_a_persist_hook_that_raises_means_the_change_did_not_happen(btkit_plugin: Any, hook: str) -> None:
    btkit_plugin(Registry())
    errors: list[Any] = []
    btkit.listen_error(errors.append)

    class Refuse:
        @btkit.hookimpl(tryfirst=True)
        def btkit_persist_write(self, changes: list[Change]) -> None:
            if any(c.domain == "signal" and c.document and c.document.get("row") for c in changes):
                raise OSError(28, "No space left on device")

    btkit_plugin(Refuse())
    DictBackend.shared.clear()

    class Backends:
        @btkit.hookimpl
        def btkit_persistence_backends(self) -> list[PersistenceBackendSpec]:
            return [PersistenceBackendSpec(name="dict", factory=DictBackend, dist="test")]

    btkit_plugin(Backends())
    btkit.use_persistence("dict")
    clock = btkit.ReplayClock(START + 10 * 60_000, end=START + 60 * 60_000)
    results = list(btkit.Live.run("TEST", strategy="ten", exchange="mem", clock=clock))
    assert not any(r.action == "opened" for r in results)  # never counted as opened
    assert any("No space left" in str(e) for e in errors)
    sig = DictBackend.shared.get(("signal", ("ten", "TEST")))
    assert sig is None or sig["row"] is None
