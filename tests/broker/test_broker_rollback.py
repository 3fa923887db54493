"""Hook-level rollback tests: what the engine does when a broker plugin fails.

Read these as examples of the broker transaction (docs/writing-a-broker.md). For each action the engine
1. persists the intent (a pending open / close / cancel with a deterministic client order id),
2. calls the broker,
3. applies the change only when the broker confirms.
If the broker does not confirm, nothing changes — in memory and on disk — except the intent's attempt
counter, and the same action is retried on the next tick with the same client order id.

Each test registers a broker (mostly ``ScriptedBroker`` from broker_helpers.py, which keeps its own
record of what it placed by client order id, as a real broker must) that misbehaves in one way:
  raise        raises a plain exception (an HTTP 502 from the exchange)            → transient
  false        returns False                                                     → transient
  side_effect  places the order, then the connection drops before the answer    → transient
  hang         never answers within ``broker_timeout_seconds``                    → transient
  reject       raises OrderRejectedError                                         → final
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from broker_helpers import (
    CANCEL,
    CLOSE,
    OPEN,
    SYMBOL,
    ScriptedBroker,
    path,
    retried,
    without_unwritten_bucket,
)

import btkit
from btkit import Closed, Idle, Opened, Scheduled, Signal, set_config
from btkit.broker_payloads import client_order_id
from btkit.engine import live
from btkit.errors import OrderDeletedError, PersistenceError
from btkit.model import Active, Cancelled, Waiting
from btkit.persist.file import FileBackend
from btkit.registry import add_risk
from btkit.risk import PORTFOLIO

LONG = Signal(position="long", price_take_profit=102.0, price_stop_loss=98.0, id="s1")
RESTING = Signal(position="long", price_open=99.0, price_take_profit=103.0, price_stop_loss=97.0, id="r1")
FAILS = ("raise", "false", "hang")  # transient, and the retry fails again while the exchange is down


@pytest.fixture(autouse=True)
def _fast(btkit_clean: None) -> None:
    set_config(order_open_retry_attempts=3, order_close_retry_attempts=3, schedule_await_minutes=4)
    live.SETTINGS.broker_timeout_seconds = 0.05  # the "hang" broker is given up on after 50 ms


def _no_errors_but_retries(errors: list[Any]) -> None:
    assert all(not e.fatal for e in errors), errors


# ================================================================ open
@pytest.mark.parametrize("how", FAILS)
def test_failed_open_changes_nothing_and_is_retried_with_the_same_client_order_id(
    engine: Any, how: str
) -> None:
    broker = ScriptedBroker(OPEN, how, times=2)
    e = engine(broker, prices=path((100, 60)), signals=[LONG, None])
    coid = client_order_id("s1", "open")

    assert isinstance(e.tick(), Idle)  # attempt 1 fails
    first = e.memory()
    assert first == e.persisted()
    assert first.state.pending is None and first.history == ()
    assert first.state.strategy.intent is not None
    assert (first.state.strategy.intent.client_order_id, first.state.strategy.intent.attempt) == (coid, 1)
    assert first.risk[PORTFOLIO] == (("s", "BTCUSDT", "s1"),)  # the order in flight holds its risk slot

    assert isinstance(e.tick(), Idle)  # attempt 2 fails: exactly as before, one attempt more
    assert e.memory() == retried(first, at=e.last_tick)
    assert e.persisted() == retried(first, at=e.last_tick)

    opened = e.tick()  # attempt 3 confirms
    assert isinstance(opened, Opened) and opened.signal.id == "s1"
    assert broker.calls_of(OPEN) == [(coid, 1), (coid, 2), (coid, 3)]
    assert broker.placed_count(OPEN) == 1
    assert e.memory() == e.persisted()
    assert e.memory().state.strategy.intent is None
    assert e.persisted().risk[PORTFOLIO] == (("s", "BTCUSDT", "s1"),)
    _no_errors_but_retries(e.errors)
    assert len(e.errors) == 2 and "retrying next tick" in e.errors[0].where


@pytest.mark.parametrize("how", FAILS)
def test_open_retries_are_bounded_and_the_id_is_never_reused(engine: Any, how: str) -> None:
    broker = ScriptedBroker(OPEN, how, times=99)
    e = engine(broker, prices=path((100, 60)), signals=[LONG])  # offers s1 on every call
    for _ in range(3):  # order_open_retry_attempts = 3
        assert isinstance(e.tick(), Idle)
    coid = client_order_id("s1", "open")
    assert broker.calls_of(OPEN) == [(coid, 1), (coid, 2), (coid, 3)]
    dropped = e.memory()
    assert dropped == e.persisted()
    assert dropped.state.strategy.intent is None and dropped.state.pending is None
    assert dropped.state.strategy.rejected_ids == ("s1",)
    assert not e.holds_slot()
    for _ in range(3):
        e.tick()  # the strategy offers s1 again: never sent again
    assert len(broker.calls_of(OPEN)) == 3
    assert "dropped" in e.errors[-1].where


def test_rejected_open_is_final_and_its_id_never_reused(engine: Any) -> None:
    broker = ScriptedBroker(OPEN, "reject", times=1)
    s2 = Signal(position="long", price_take_profit=102.0, price_stop_loss=98.0, id="s2")
    e = engine(broker, prices=path((100, 60)), signals=[LONG, LONG, LONG, s2, None])

    assert isinstance(e.tick(), Idle)
    after = e.memory()
    assert after == e.persisted()
    assert after.state.pending is None and after.state.strategy.intent is None
    assert after.state.strategy.rejected_ids == ("s1",)
    assert not e.holds_slot() and after.risk[PORTFOLIO] == ()

    assert isinstance(e.tick(), Idle)  # s1 offered again: ignored, the broker is not called
    assert isinstance(e.tick(), Idle)
    assert isinstance(e.tick(), Opened)  # s2 is a new signal
    assert broker.calls_of(OPEN) == [(client_order_id("s1", "open"), 1), (client_order_id("s2", "open"), 1)]


def test_open_that_went_through_before_a_crash_is_adopted_after_restart(engine: Any) -> None:
    broker = ScriptedBroker(OPEN, "side_effect", times=1)
    e = engine(broker, prices=path((100, 60)), signals=[LONG, None])
    e.tick()  # the order is placed, the answer lost; the intent (attempt 1) is on disk
    e.crash_and_restart()
    assert e.memory().state.strategy.intent is not None
    assert e.holds_slot()  # the restarted process holds the slot for the order in flight
    assert isinstance(e.tick(), Opened)
    assert broker.placed_count(OPEN) == 1
    assert broker.calls_of(OPEN)[-1] == (client_order_id("s1", "open"), 2)


def test_sync_broker_that_answers_too_late_is_adopted_on_retry(engine: Any) -> None:
    """The classic unknown outcome: the engine stops waiting, the order goes through afterwards."""
    release, done = threading.Event(), threading.Event()

    class SlowBroker:
        def __init__(self) -> None:
            self.placed: list[str] = []
            self.calls = 0

        def on_signal_open_commit(self, p: Any) -> bool:  # sync: runs in a worker thread
            self.calls += 1
            if p.client_order_id in self.placed:
                return True
            if self.calls == 1:
                release.wait(30)  # still in flight when the engine gives up
            self.placed.append(p.client_order_id)
            done.set()
            return True

    broker = SlowBroker()
    e = engine(broker, prices=path((100, 60)), signals=[LONG, None])
    try:
        assert isinstance(e.tick(), Idle)  # timed out: transient
        assert e.memory().state.strategy.intent is not None
    finally:
        release.set()
    assert done.wait(30)  # the late order reached the exchange
    e.gate.timeout = 30.0  # from now on the broker answers; give its worker thread all the time it needs
    assert isinstance(e.tick(), Opened)
    assert broker.placed == [client_order_id("s1", "open")]


# ================================================================ close
def _open_then_reach_tp(e: Any) -> None:
    assert isinstance(e.tick(), Opened)
    e.tick_until(lambda r: not isinstance(r, Active) or r.signal is None or e.broker.calls_of(CLOSE))


@pytest.mark.parametrize("how", FAILS)
def test_failed_close_changes_nothing_and_is_retried_with_the_same_client_order_id(
    engine: Any, how: str
) -> None:
    broker = ScriptedBroker(CLOSE, how, times=2)
    e = engine(broker, prices=path((100, 8), (104, 60)), signals=[LONG, None])
    _open_then_reach_tp(e)  # the TP tick: attempt 1 fails
    coid = client_order_id("s1", "close")
    first = e.memory()
    assert first == e.persisted()
    assert first.state.pending is not None and first.state.pending.id == "s1"
    intent = first.state.strategy.intent
    assert intent is not None
    assert (intent.action, intent.client_order_id, intent.attempt) == ("close", coid, 1)
    assert first.history == ()
    assert first.risk[PORTFOLIO] == (("s", "BTCUSDT", "s1"),)

    assert isinstance(e.tick(), Active)  # attempt 2 fails
    assert e.memory() == retried(first, at=e.last_tick)
    assert e.persisted() == retried(first, at=e.last_tick)

    closed = e.tick()
    assert isinstance(closed, Closed) and closed.close_reason == "take_profit"
    assert broker.calls_of(CLOSE) == [(coid, 1), (coid, 2), (coid, 3)]
    assert broker.placed_count(CLOSE) == 1
    done = e.memory()
    assert done == e.persisted()
    assert done.state.pending is None and done.state.strategy.intent is None
    assert [c.signal.id for c in done.history] == ["s1"]
    assert done.risk[PORTFOLIO] == () and not e.holds_slot()
    _no_errors_but_retries(e.errors)


@pytest.mark.parametrize("how", [*FAILS, "reject"])
def test_close_is_forced_with_a_fatal_error_when_retries_run_out(engine: Any, how: str) -> None:
    broker = ScriptedBroker(CLOSE, how, times=99)
    e = engine(broker, prices=path((100, 8), (104, 60)), signals=[LONG, None])
    _open_then_reach_tp(e)
    if how != "reject":  # transient: retried up to order_close_retry_attempts (3)
        assert isinstance(e.tick(), Active)
        closed = e.tick()
    else:  # rejected: forced at once
        closed = e.memory().history[-1]
    assert isinstance(closed, Closed) and closed.close_reason == "take_profit"
    expected = 1 if how == "reject" else 3
    assert [a for _, a in broker.calls_of(CLOSE)] == list(range(1, expected + 1))
    fatal = [err for err in e.errors if err.fatal]
    assert len(fatal) == 1 and "check the exchange by hand" in str(fatal[0].error)
    assert e.memory() == e.persisted()
    assert e.memory().state.pending is None and not e.holds_slot()


def test_order_deleted_on_the_exchange_closes_the_position_with_reason_closed(engine: Any) -> None:
    class Broker(ScriptedBroker):
        gone = False

        def on_active_check(self, p: Any) -> bool:
            if self.gone:
                raise OrderDeletedError("position was liquidated by the exchange")
            return True

    broker = Broker()
    e = engine(broker, prices=path((100, 60)), signals=[LONG, None])
    assert isinstance(e.tick(), Opened)
    assert isinstance(e.tick(), Active)
    broker.gone = True
    closed = e.tick()
    assert isinstance(closed, Closed) and closed.close_reason == "closed"
    assert broker.calls_of(CLOSE) == []  # nothing left to close on the exchange
    assert e.memory() == e.persisted()
    assert e.persisted().history[-1].close_reason == "closed"


# ================================================================ scheduled cancel
def _schedule_then_time_out(e: Any) -> None:
    assert isinstance(e.tick(), Scheduled)
    e.tick_until(lambda r: bool(e.broker.calls_of(CANCEL)))


@pytest.mark.parametrize("how", FAILS)
def test_failed_cancel_changes_nothing_and_is_retried_with_the_same_client_order_id(
    engine: Any, how: str
) -> None:
    broker = ScriptedBroker(CANCEL, how, times=2)
    e = engine(broker, prices=path((100, 60)), signals=[RESTING, None])
    _schedule_then_time_out(e)  # schedule_await_minutes = 4: the timeout's cancel fails
    coid = client_order_id("r1", "cancel")
    first = e.memory()
    assert first == e.persisted()
    assert first.state.scheduled is not None and first.state.scheduled.id == "r1"
    intent = first.state.strategy.intent
    assert intent is not None
    assert (intent.action, intent.client_order_id, intent.attempt) == ("cancel", coid, 1)
    assert e.holds_slot()  # a resting entry holds its risk slot

    assert isinstance(e.tick(), Waiting)
    assert e.memory() == retried(first, at=e.last_tick)
    assert e.persisted() == retried(first, at=e.last_tick)

    cancelled = e.tick()
    assert isinstance(cancelled, Cancelled) and cancelled.reason == "timeout"
    assert broker.calls_of(CANCEL) == [(coid, 1), (coid, 2), (coid, 3)]
    assert broker.placed_count(CANCEL) == 1
    assert e.memory() == e.persisted()
    assert e.memory().state.scheduled is None and not e.holds_slot()


def test_cancel_retries_are_bounded(engine: Any) -> None:
    broker = ScriptedBroker(CANCEL, "raise", times=99)
    e = engine(broker, prices=path((100, 60)), signals=[RESTING, None])
    _schedule_then_time_out(e)
    e.tick()
    cancelled = e.tick()
    assert isinstance(cancelled, Cancelled)
    assert [a for _, a in broker.calls_of(CANCEL)] == [1, 2, 3]
    assert "forced" in e.errors[-1].where
    assert e.memory() == e.persisted() and not e.holds_slot()


# ================================================================ sent, then the connection dropped
@pytest.mark.parametrize("action", ["open", "close", "cancel"])
def test_order_sent_before_the_connection_dropped_is_adopted_not_sent_twice(engine: Any, action: str) -> None:
    method = {"open": OPEN, "close": CLOSE, "cancel": CANCEL}[action]
    broker = ScriptedBroker(method, "side_effect", times=1)
    signal, prices = (RESTING, path((100, 60))) if action == "cancel" else (LONG, path((100, 8), (104, 60)))
    e = engine(broker, prices=prices, signals=[signal, None])
    e.tick_until(lambda r: bool(broker.calls_of(method)))  # sent; the answer is lost
    coid = client_order_id(signal.id or "", action)
    failed = e.memory()
    assert failed == e.persisted()
    intent = failed.state.strategy.intent
    assert intent is not None and (intent.action, intent.client_order_id, intent.attempt) == (action, coid, 1)
    assert failed.history == ()

    done = e.tick()  # the retry finds the order by its client order id and adopts it
    assert isinstance(done, {"open": Opened, "close": Closed, "cancel": Cancelled}[action])
    assert broker.calls_of(method) == [(coid, 1), (coid, 2)]
    assert broker.placed_count(method) == 1
    assert e.memory() == e.persisted()
    assert e.memory().state.strategy.intent is None


# ================================================================ intent not persisted → no broker call
class RefusingBackend(FileBackend):
    """The real file backend, except that writing a broker intent fails (disk full, say)."""

    refuse = True

    def write(self, changes: Any) -> None:
        if self.refuse and any(
            c.domain == "strategy" and c.document is not None and c.document.get("intent") for c in changes
        ):
            raise OSError(28, "No space left on device")
        super().write(changes)


def test_broker_is_not_called_when_the_intent_cannot_be_persisted(engine: Any) -> None:
    add_risk("one", lambda p: "max 1 position" if p.active_position_count >= 1 else None)
    broker = ScriptedBroker()
    e = engine(broker, prices=path((100, 60)), signals=[LONG], risk="one", backend_factory=RefusingBackend)
    with pytest.raises(PersistenceError):
        e.tick()
    assert broker.calls == []
    assert e.memory() == e.persisted()
    assert e.memory().state.strategy.intent is None and e.memory().state.pending is None
    assert not e.holds_slot("one") and not e.holds_slot()  # the risk reservation is released

    assert e.backend is not None
    e.backend.refuse = False  # type: ignore[attr-defined]
    assert isinstance(e.tick(), Opened)
    assert broker.calls_of(OPEN) == [(client_order_id("s1", "open"), 1)]


# ================================================================ position commands
@pytest.mark.parametrize("how", [*FAILS, "side_effect", "reject"])
def test_failed_position_command_changes_nothing_and_can_be_issued_again(engine: Any, how: str) -> None:
    """A partial close asked for by user code (here an active-ping listener) goes to the broker before
    the position changes; when the broker fails, the position stays exactly as it was and the error is
    reported — issuing the command again sends the same client order id."""
    partial = "on_partial_profit_commit"
    broker = ScriptedBroker(partial, how, times=1)
    e = engine(broker, prices=path((100, 8), (101, 60)), signals=[LONG, None])  # in profit, below TP 102
    wanted: list[float] = []

    def manage(ping: Any) -> None:
        if wanted:
            assert btkit.commit_partial_profit(SYMBOL, wanted.pop())

    btkit.listen_active_ping(manage)
    assert isinstance(e.tick(), Opened)
    e.tick_until(lambda r: isinstance(r, Active) and r.current_price > 100.8)
    before = without_unwritten_bucket(e.memory())

    wanted.append(25.0)
    assert isinstance(e.tick(), Active)  # the broker fails: nothing changes
    after = without_unwritten_bucket(e.memory())
    assert after.state.pending == before.state.pending and after.state.pending.partials == ()
    assert after == without_unwritten_bucket(e.persisted())
    assert "the position is unchanged" in e.errors[-1].where
    coid = broker.calls_of(partial)[0][0]

    wanted.append(25.0)
    e.tick()  # issued again: same action, same client order id, applied once
    row = e.memory().state.pending
    assert row is not None and [p.percent for p in row.partials] == [25.0]
    assert [c for c, _ in broker.calls_of(partial)] == [coid, coid]
    assert broker.placed_count(partial) == 1
    assert without_unwritten_bucket(e.memory()) == without_unwritten_bucket(e.persisted())


def test_a_slow_sync_wait_for_init_does_not_block_the_engine(engine: Any) -> None:
    """A plain ``def wait_for_init`` (say, a blocking REST login) runs in a worker thread like every
    other sync broker method: the engine's loop keeps running and the timeout applies."""
    release = threading.Event()

    class SlowLogin(ScriptedBroker):
        def wait_for_init(self) -> None:
            release.wait(10)

    broker = SlowLogin()
    e = engine(broker, prices=path((100, 60)), signals=[LONG, None])
    try:
        assert isinstance(e.tick(), Idle)  # no answer within broker_timeout_seconds: transient
        assert broker.calls == []
        assert "no answer" in str(e.errors[-1].error)
        assert e.memory().state.strategy.intent is not None
    finally:
        release.set()
    e.gate.timeout = 30.0  # the login is done; give the worker thread all the time it needs
    assert isinstance(e.tick(), Opened)  # logged in now: the retry goes through
