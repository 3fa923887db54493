"""Actions are isolated from trading: raising, sleeping past the limit, slow under load — same trades."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import btkit
from btkit.defaults import smacross
from btkit.errors import ConfigError
from btkit.ops.actions import HUB, drain_actions

FRAME = ("2024-02-01T00:00:00", "2024-02-01T14:00:00")  # two trades (10:45-11:28, 12:00-13:25)


@pytest.fixture(autouse=True)
def _clean(btkit_clean: None) -> None:
    btkit.add_frame("frame", *FRAME)


def trades(strategy: str) -> list[tuple[Any, ...]]:
    out = []
    for r in btkit.Backtest.run("BTCUSDT", strategy=strategy, exchange="sim", frame="frame"):
        if r.action in ("opened", "closed"):
            pnl = r.pnl.pnl_percentage if r.action == "closed" else None
            out.append((r.action, r.timestamp, r.current_price, pnl))
    return out


def strategy_with(*actions: str) -> str:
    name = "sma-" + ("-".join(actions) or "plain")
    btkit.add_strategy(name, smacross.get_signal, interval="5m", actions=actions)
    return name


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.threads: set[str] = set()

    def _rec(self, method: str, payload: Any) -> None:
        self.calls.append((method, payload))
        self.threads.add(threading.current_thread().name)

    def on_start(self, p: Any) -> None:
        self._rec("on_start", p)

    def on_signal(self, p: Any) -> None:
        self._rec("on_signal", p)

    def on_ping(self, p: Any) -> None:
        self._rec("on_ping", p)

    def on_stop(self, p: Any) -> None:
        self._rec("on_stop", p)


class Raising:
    def on_signal(self, p: Any) -> None:
        raise RuntimeError("boom from an action")


class Sleeping:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def on_signal(self, p: Any) -> None:
        self.calls += 1
        time.sleep(self.seconds)


def errors() -> list[Any]:
    seen: list[Any] = []
    btkit.listen_error(seen.append)
    return seen


def test_actions_receive_events_in_order_on_their_own_thread() -> None:
    baseline = trades(strategy_with())
    rec = Recorder()
    btkit.add_action("rec", rec)
    got = trades(strategy_with("rec"))
    assert drain_actions(10)
    assert got == baseline and baseline  # the run traded, and identically
    methods = [m for m, _ in rec.calls]
    assert methods[0] == "on_start" and methods[-1] == "on_stop"
    signals = [(p.action, p.timestamp) for m, p in rec.calls if m == "on_signal" and p.action in ("opened", "closed")]
    assert signals == [(a, t) for a, t, _, _ in baseline]
    assert "on_ping" in methods  # pings are emitted for a strategy whose action wants them
    assert rec.threads and all(name.startswith("btkit-action-rec") for name in rec.threads)


def test_raising_action_is_reported_and_changes_nothing() -> None:
    baseline = trades(strategy_with())
    seen = errors()
    btkit.add_action("raise", Raising())
    assert trades(strategy_with("raise")) == baseline
    assert drain_actions(10)
    time.sleep(0.1)
    assert any("boom from an action" in str(e) and e.where.startswith("action raise") for e in seen)


def test_action_past_its_time_limit_is_abandoned_and_reported() -> None:
    baseline = trades(strategy_with())
    seen = errors()
    slow = Sleeping(2.0)
    btkit.add_action("sleepy", slow, timeout_seconds=0.2)
    started = time.monotonic()
    assert trades(strategy_with("sleepy")) == baseline
    assert time.monotonic() - started < 2.0  # trading never waited for the sleeper
    drain_actions(5)
    time.sleep(0.2)
    timeouts = [e for e in seen if "time limit of 0.2s" in str(e)]
    assert timeouts, [str(e) for e in seen]
    assert any("switched off" in str(e) for e in seen)  # after 3 time-outs in a row


def test_slow_action_under_load_drops_and_reports_but_trades_identically() -> None:
    baseline = trades(strategy_with())
    seen = errors()

    class SlowPings:
        calls = 0

        def on_ping(self, p: Any) -> None:
            SlowPings.calls += 1
            time.sleep(0.02)

    btkit.add_action("slowpings", SlowPings(), queue_size=8, timeout_seconds=1)
    started = time.monotonic()
    assert trades(strategy_with("slowpings")) == baseline
    elapsed = time.monotonic() - started
    drain_actions(5)
    time.sleep(0.1)
    dropped = [e for e in seen if "queue full" in str(e)]
    assert dropped and SlowPings.calls > 0
    # one ping per candle: 840 candles — handling each at 20 ms would take > 16 s
    assert elapsed < 10


def test_unknown_action_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="no action named 'nope'"):
        btkit.ops.actions.use_actions(["nope"])
    assert HUB.extra == ()


def test_a_plugin_offers_an_action_through_btkit_actions(btkit_plugin: Any) -> None:
    built: list[dict[str, Any]] = []

    class Counter:
        def __init__(self, **options: Any) -> None:
            built.append(options)
            self.closed = 0

        def on_signal(self, result: Any) -> None:
            self.closed += result.action == "closed"

    class Plugin:
        @btkit.hookimpl
        def btkit_actions(self) -> list[btkit.ActionSpec]:
            return [btkit.ActionSpec(name="counter", factory=Counter, dist="btkit-counter")]

    btkit_plugin(Plugin())
    baseline = trades(strategy_with())
    use = btkit.ops.actions.use_actions
    use([], {"counter": {"label": "x"}})
    assert trades(strategy_with("counter")) == baseline
    assert drain_actions(10)
    assert built == [{"label": "x"}]  # one handler for the strategy, built with its options
    (worker,) = [w for (name, _), w in HUB.workers.items() if name == "counter"]
    assert worker.handler.closed == sum(1 for a, *_ in baseline if a == "closed")


def test_on_broker_receives_the_broker_calls_that_did_not_confirm(tmp_path: Any) -> None:
    from datetime import UTC, datetime

    got: list[Any] = []

    class Rec:
        def on_broker(self, outcome: Any) -> None:
            got.append(outcome)

    class Refusing:  # an in-code broker that never confirms an open
        def on_signal_open_commit(self, payload: Any) -> bool:
            return False

    btkit.add_action("brk", Rec())
    btkit.add_strategy("sma-brk", smacross.get_signal, interval="5m", actions=["brk"])
    btkit.Broker.use_adapter(Refusing())
    btkit.Broker.enable()
    btkit.use_persistence("file", root=str(tmp_path / "dump"))
    start, end = datetime(2024, 2, 1, 10, 0, tzinfo=UTC), datetime(2024, 2, 1, 11, 0, tzinfo=UTC)
    handle = btkit.Live.background("BTCUSDT", strategy="sma-brk", exchange="sim", clock=btkit.ReplayClock(start, end=end))
    assert handle.join(60)
    btkit.Live.shutdown()
    assert drain_actions(10)
    assert got, "the refused open reached no action"
    assert {(o.symbol, o.strategy_name, o.verdict) for o in got} == {("BTCUSDT", "sma-brk", "transient")}
    assert all(o.method == "on_signal_open_commit" for o in got)
