"""Brokers through the real live runner (``Live.run`` on a replay clock, file persistence on tmp_path):
selection (``Broker.use_adapter`` + ``enable``, the ``btkit_brokers`` hook), the retry of a failed open
with the same client order id, the ``btkit_broker_commit`` / ``btkit_commit_failed`` hooks, and no
broker call at all in backtests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from broker_helpers import CLOSE, EXCHANGE, OPEN, STRATEGY, SYMBOL, T0, ScriptedBroker, path

from btkit import (
    Backtest,
    Broker,
    Cancelled,
    Closed,
    Live,
    Opened,
    ReplayClock,
    Signal,
    add_frame,
    add_strategy,
    hookimpl,
    listen_error,
    set_config,
    use_persistence,
)
from btkit.broker_payloads import BrokerCall, client_order_id
from btkit.components import BrokerSpec
from btkit.engine import live
from btkit.errors import OrderRejectedError
from btkit.model import MINUTE_MS
from btkit.persist.file import FileBackend
from btkit.persist.state import BackendStore
from btkit.plugins import get_plugin_manager
from btkit.testing.exchange import candles_from_prices

LONG = Signal(position="long", price_take_profit=102.0, price_stop_loss=98.0, id="s1")


@pytest.fixture
def market(candle_exchange: Any, tmp_path: Path) -> Path:
    """Flat at 100 for 8 minutes, then 104 (the take-profit); a strategy that signals s1 once."""
    candle_exchange(EXCHANGE, {SYMBOL: candles_from_prices(T0, path((100, 8), (104, 60)))})
    offers = [LONG]
    add_strategy(STRATEGY, lambda symbol, when, price: offers.pop() if offers else None)
    root = tmp_path / "state"
    use_persistence("file", root=str(root))
    set_config(order_open_retry_attempts=3)
    return root


def replay(minutes: int = 30) -> list[Any]:
    clock = ReplayClock(T0 + 5 * MINUTE_MS, end=T0 + (5 + minutes) * MINUTE_MS)
    return list(Live.run(SYMBOL, strategy=STRATEGY, exchange=EXCHANGE, clock=clock))


def history_on_disk(root: Path) -> list[Closed]:
    backend = FileBackend(root)
    backend.open(exclusive=False)
    try:
        return BackendStore(get_plugin_manager(entrypoints=False), backend).load_history((STRATEGY, SYMBOL))
    finally:
        backend.close()


def test_in_code_broker_failing_open_is_retried_by_the_live_runner(market: Path) -> None:
    broker = ScriptedBroker(OPEN, "raise", times=2)
    Broker.use_adapter(broker)
    Broker.enable()
    errors: list[Any] = []
    listen_error(errors.append)

    results = replay()

    assert [type(r) for r in results] == [Opened, Closed]
    coid = client_order_id("s1", "open")
    assert broker.calls_of(OPEN) == [(coid, 1), (coid, 2), (coid, 3)]
    assert broker.calls_of(CLOSE) == [(client_order_id("s1", "close"), 1)]
    assert results[0].timestamp == T0 + 7 * MINUTE_MS  # opened on the third tick, by the third attempt
    assert len(errors) == 2 and not any(e.fatal for e in errors)
    assert [c.signal.id for c in history_on_disk(market)] == ["s1"]


def test_adapter_without_enable_is_not_used(market: Path) -> None:
    broker = ScriptedBroker()
    Broker.use_adapter(broker)  # not enabled: the paper broker trades
    assert [type(r) for r in replay()] == [Opened, Closed]
    assert broker.calls == []


def test_broker_plugin_selected_by_name(market: Path, btkit_plugin: Any) -> None:
    made: list[ScriptedBroker] = []

    class Plugin:
        @hookimpl
        def btkit_brokers(self) -> list[BrokerSpec]:
            def factory(**options: Any) -> ScriptedBroker:
                made.append(ScriptedBroker(**options))
                return made[-1]

            return [BrokerSpec(name="scripted", factory=factory, dist="test-broker")]

    btkit_plugin(Plugin())
    live.SETTINGS.broker = "scripted"  # what `[broker] name = "scripted"` in btkit.toml sets
    live.SETTINGS.broker_options = {"method": OPEN, "how": "false", "times": 1}
    assert [type(r) for r in replay()] == [Opened, Closed]
    assert len(made) == 1  # exactly one broker acts
    assert [a for _, a in made[0].calls_of(OPEN)] == [1, 2]


def test_wait_for_init_is_awaited_once_before_the_first_call(market: Path) -> None:
    class Broker_(ScriptedBroker):
        inits = 0

        async def wait_for_init(self) -> None:
            assert self.calls == [], "a broker method was called before wait_for_init"
            self.inits += 1

    broker = Broker_()
    Broker.use_adapter(broker)
    Broker.enable()
    replay()
    assert broker.inits == 1 and len(broker.calls) == 2


def test_commit_failed_observers_see_every_failure(market: Path, btkit_plugin: Any) -> None:
    seen: list[tuple[str, str, int, str]] = []

    class Observer:
        @hookimpl
        def btkit_commit_failed(self, call: BrokerCall, error: BaseException, verdict: str) -> None:
            seen.append((call.method, call.payload.client_order_id, call.payload.attempt, verdict))
            raise RuntimeError("a broken observer must not change the verdict")

    btkit_plugin(Observer())
    Broker.use_adapter(ScriptedBroker(OPEN, "raise", times=2))
    Broker.enable()
    assert [type(r) for r in replay()] == [Opened, Closed]
    coid = client_order_id("s1", "open")
    assert seen == [(OPEN, coid, 1, "transient"), (OPEN, coid, 2, "transient")]


def test_broker_commit_hook_can_veto_before_the_broker(market: Path, btkit_plugin: Any) -> None:
    """A kill switch: a plugin answers ``btkit_broker_commit`` itself (first result wins), so the
    selected broker is never asked to open."""

    class KillSwitch:
        @hookimpl(tryfirst=True)
        def btkit_broker_commit(self, broker: Any, call: BrokerCall) -> Any:
            if call.method == OPEN:
                raise OrderRejectedError("trading halted by the operator")
            return None  # everything else goes to the selected broker

    broker = ScriptedBroker()
    btkit_plugin(KillSwitch())
    Broker.use_adapter(broker)
    Broker.enable()
    assert replay() == []
    assert broker.calls == []


def test_broker_commit_wrapper_sees_calls_and_results(market: Path, btkit_plugin: Any) -> None:
    audit: list[tuple[str, int, Any]] = []

    class Audit:
        @hookimpl(wrapper=True)
        def btkit_broker_commit(self, broker: Any, call: BrokerCall) -> Any:
            result = yield
            audit.append(
                (call.method, call.payload.attempt, "awaitable" if hasattr(result, "__await__") else result)
            )
            return result

    btkit_plugin(Audit())
    Broker.use_adapter(ScriptedBroker())
    Broker.enable()
    assert [type(r) for r in replay()] == [Opened, Closed]
    assert [(m, a) for m, a, _ in audit if m in (OPEN, CLOSE)] == [(OPEN, 1), (CLOSE, 1)]


# ---------------------------------------------------------------- backtests never touch the broker
def test_broker_is_never_called_in_backtest(market: Path, btkit_plugin: Any) -> None:
    made: list[Any] = []

    class Plugin:
        @hookimpl
        def btkit_brokers(self) -> list[BrokerSpec]:
            return [BrokerSpec(name="scripted", factory=lambda **o: made.append(o) or ScriptedBroker())]

        @hookimpl
        def btkit_broker_commit(self, broker: Any, call: BrokerCall) -> Any:
            made.append(call)
            raise AssertionError("broker code ran in a backtest")

    btkit_plugin(Plugin())
    live.SETTINGS.broker = "scripted"
    adapter = ScriptedBroker()
    Broker.use_adapter(adapter)
    Broker.enable()
    add_frame("f", "2024-01-01 00:05", "2024-01-01 00:40")
    results = list(Backtest.run(SYMBOL, strategy=STRATEGY, exchange=EXCHANGE, frame="f"))
    assert [type(r) for r in results] == [Opened, Closed]
    assert made == [] and adapter.calls == []


def test_scheduled_entry_places_and_cancels_through_the_broker_live(
    candle_exchange: Any, tmp_path: Path
) -> None:
    candle_exchange(EXCHANGE, {SYMBOL: candles_from_prices(T0, path((100, 60)))})
    resting = Signal(position="long", price_open=99.0, price_take_profit=103.0, price_stop_loss=97.0, id="r1")
    offers = [resting]
    add_strategy(STRATEGY, lambda symbol, when, price: offers.pop() if offers else None)
    use_persistence("file", root=str(tmp_path / "state"))
    set_config(schedule_await_minutes=4)
    broker = ScriptedBroker()
    Broker.use_adapter(broker)
    Broker.enable()
    results = replay(10)
    assert [type(r) for r in results] == [Cancelled]
    assert [m for m, _, _ in broker.calls if m != "on_schedule_check"] == [OPEN, "on_signal_cancel_commit"]
    assert broker.calls[0][1] == client_order_id("r1", "schedule")


def test_the_late_clean_up_of_a_finished_run_never_closes_the_next_session(market: Path) -> None:
    """A restart in the same process: the first session's clean-up (a helper thread, possibly late)
    must not close the session of the run that started after it."""
    broker = ScriptedBroker()
    Broker.use_adapter(broker)
    Broker.enable()
    stream = Live.run(
        SYMBOL,
        strategy=STRATEGY,
        exchange=EXCHANGE,
        clock=ReplayClock(T0 + 5 * MINUTE_MS, end=T0 + 6 * MINUTE_MS),
    )
    assert [type(r) for r in stream] == [Opened]
    first = stream.handle
    assert first is not None
    Live.shutdown()

    clock = ReplayClock(T0 + 7 * MINUTE_MS, end=T0 + 30 * MINUTE_MS)
    second = Live.background(SYMBOL, strategy=STRATEGY, exchange=EXCHANGE, clock=clock)
    first.session.finished(first)  # the first run's clean-up arrives now
    assert second.join(20), "the second run's session was closed under it"
    assert second.error is None
    assert [type(r) for r in second.event_list if isinstance(r, Closed)] == [Closed]
