"""A hypothesis state machine over the live broker transaction.

One live strategy instance (a real Run, StrategyInstance, BrokerGate and file backend, a fresh plugin
manager per example and per restart) trades against the reference broker over an in-memory venue
(``btkit.testing.broker_contract``). Hypothesis interleaves ticks, price moves, signals, user commands
(``btkit.commit_close_pending`` / ``commit_cancel_scheduled``), broker faults (a request that never
reaches the venue, a response lost after the venue executed it, a refusal), the venue dropping a
position or resting entry on its own, a disk that refuses one write, and crashes (the instance is
dropped without clean-up and rebuilt from the state directory, with a new broker object over the
same venue, as a restarted process would). After every step:

- no client order id is executed twice by the venue;
- the persisted state equals the in-memory state (what a restarted process would load);
- at most one open or scheduled signal per strategy × symbol, and the venue agrees with the engine
  whenever no action is in flight (until a close or cancel had to be forced, which may leave the
  exchange out of step — that is what the fatal error event is for);
- the risk slot count equals open + waiting signals (+ the one whose open is in flight).
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from broker_helpers import EXCHANGE, STRATEGY, SYMBOL, T0, Engine, without_unwritten_bucket
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import btkit
from btkit.context import datetime_to_ms, entered
from btkit.engine import live
from btkit.errors import PersistenceError
from btkit.model import MINUTE_MS
from btkit.persist.file import FileBackend
from btkit.risk import PORTFOLIO
from btkit.testing import reset_btkit
from btkit.testing.broker_contract import FAULTS, MemoryVenue, VenueBroker

HORIZON = 10_000  # minutes of candles the tape can serve


class Tape:
    """Scripted 1m candles: the price is constant between moves; a move changes only future candles."""

    def __init__(self) -> None:
        self.moves: list[tuple[int, float]] = [(0, 100.0)]  # (first candle index, close)

    def close(self, i: int) -> float:
        return next(price for start, price in reversed(self.moves) if start <= i)

    def move(self, from_index: int, pct: float) -> None:
        self.moves.append((from_index, round(self.close(from_index) * (1 + pct / 100), 6)))

    def get_candles(self, symbol: str, interval: str, since: Any, limit: int) -> list[tuple[float, ...]]:
        assert interval == "1m"
        first = (datetime_to_ms(since) - T0) // MINUTE_MS
        out = []
        for i in range(max(first, 0), min(first + limit, HORIZON)):
            o, c = self.close(max(i - 1, 0)), self.close(i)
            out.append((T0 + i * MINUTE_MS, o, max(o, c), min(o, c), c, 1.0))
        return out


class Disk:
    """Shared by every backend of one example: ``refuse_next`` makes the next write fail untouched."""

    refuse_next = False


def disk_backend(disk: Disk) -> Any:
    class DiskBackend(FileBackend):
        def write(self, changes: Any) -> None:
            if disk.refuse_next:
                disk.refuse_next = False
                raise OSError(28, "No space left on device")
            super().write(changes)

    return DiskBackend


class BrokerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        reset_btkit()
        btkit.set_config(
            order_open_retry_attempts=3,
            order_close_retry_attempts=3,
            schedule_await_minutes=5,
        )
        live.SETTINGS.broker_timeout_seconds = 5.0
        self.tmp = Path(tempfile.mkdtemp(prefix="btkit-sm-"))
        self.tape = Tape()
        self.venue = MemoryVenue()
        self.disk = Disk()
        self.offer: str | None = None
        self.gone: set[str] = set()  # signal ids the venue dropped by itself
        self.ids = 0
        btkit.add_exchange(EXCHANGE, self.tape.get_candles)
        btkit.add_risk("one", lambda p: "max 1 position" if p.active_position_count >= 1 else None)
        btkit.add_strategy(STRATEGY, self._get_signal, risk="one")
        self.e = Engine(
            self.tmp / "state",
            VenueBroker(self.venue),
            risks=("one",),
            backend_factory=disk_backend(self.disk),
        )

    def teardown(self) -> None:
        self.e.close()
        reset_btkit()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _get_signal(self, symbol: str, when: Any, price: float) -> btkit.Signal | None:
        kind, self.offer = self.offer, None
        if kind is None:
            return None
        self.ids += 1
        sid = f"sig{self.ids}"
        if kind == "long":
            return btkit.Signal(
                position="long",
                price_take_profit=price * 1.02,
                price_stop_loss=price * 0.98,
                minute_estimated_time=8,
                id=sid,
            )
        if kind == "short":
            return btkit.Signal(
                position="short",
                price_take_profit=price * 0.98,
                price_stop_loss=price * 1.02,
                minute_estimated_time=8,
                id=sid,
            )
        return btkit.Signal(
            position="long",
            price_open=price * 0.99,
            price_take_profit=price * 1.03,
            price_stop_loss=price * 0.97,
            minute_estimated_time=8,
            id=sid,
        )

    # ------------------------------------------------------------ rules
    @rule(n=st.integers(1, 3))
    def tick(self, n: int) -> None:
        for _ in range(n):
            with contextlib.suppress(PersistenceError):  # the live loop reports it, ticks again next minute
                self.e.tick()

    @rule(kind=st.sampled_from(["long", "short", "resting"]))
    def offer_signal(self, kind: str) -> None:
        self.offer = kind

    @rule(pct=st.sampled_from([-4.0, -1.5, -0.5, 0.5, 1.5, 4.0]))
    def move_price(self, pct: float) -> None:
        self.tape.move((self.e.when - T0) // MINUTE_MS - 1, pct)  # from the first candle not yet closed

    @rule(
        kind=st.sampled_from(FAULTS),
        method=st.sampled_from(
            [None, "on_signal_open_commit", "on_signal_close_commit", "on_signal_cancel_commit"]
        ),
    )
    def broker_fault(self, kind: str, method: str | None) -> None:
        self.venue.fail_next(kind, method=method)

    @rule()
    def disk_refuses_next_write(self) -> None:
        self.disk.refuse_next = True

    @precondition(lambda self: self.e.inst.state.pending is not None)
    @rule()
    def user_closes(self) -> None:
        with entered(self.e.inst.context(self.e.when)), contextlib.suppress(PersistenceError):
            btkit.commit_close_pending(SYMBOL)

    @precondition(lambda self: self.e.inst.state.scheduled is not None)
    @rule()
    def user_cancels(self) -> None:
        with entered(self.e.inst.context(self.e.when)), contextlib.suppress(PersistenceError):
            btkit.commit_cancel_scheduled(SYMBOL)

    @rule()
    def venue_drops_everything(self) -> None:
        """A liquidation or a manual cancel on the exchange: the position / resting entry is gone."""
        self.gone |= set(self.venue.positions) | set(self.venue.resting)
        self.venue.positions.clear()
        self.venue.resting.clear()

    @rule()
    def crash_and_restart(self) -> None:
        self.disk.refuse_next = False
        self.e.crash_and_restart(VenueBroker(self.venue))

    # ------------------------------------------------------------ invariants
    @invariant()
    def no_client_order_id_executed_twice(self) -> None:
        twice = [coid for coid, n in collections.Counter(self.venue.executions).items() if n > 1]
        assert not twice, f"executed more than once: {twice}"

    @invariant()
    def persisted_equals_memory(self) -> None:
        # the best/worst price seen while open is tracked in memory and written with the next write
        assert without_unwritten_bucket(self.e.memory()) == without_unwritten_bucket(self.e.persisted())

    @invariant()
    def at_most_one_signal_and_the_venue_agrees(self) -> None:
        state = self.e.inst.state
        assert state.pending is None or state.scheduled is None
        forced = any(err.fatal or "forced" in err.where or "dropped" in err.where for err in self.e.errors)
        if state.strategy.intent is None and not forced:
            open_ids = {state.pending.id} if state.pending is not None else set()
            resting_ids = {state.scheduled.id} if state.scheduled is not None else set()
            # the venue holds exactly what the engine holds, except what the venue dropped by itself
            # (the engine notices on its next check)
            assert set(self.venue.positions) <= open_ids <= set(self.venue.positions) | self.gone, (
                self.venue.positions,
                state.pending,
            )
            assert set(self.venue.resting) <= resting_ids <= set(self.venue.resting) | self.gone, (
                self.venue.resting,
                state.scheduled,
            )

    @invariant()
    def risk_slots_match_open_and_waiting_signals(self) -> None:
        state = self.e.inst.state
        held = state.pending is not None or state.scheduled is not None or state.strategy.intent is not None
        for name in ("one", PORTFOLIO):
            assert self.e.run.risk.count(name) == int(held), (name, self.e.run.risk.snapshot(name), state)


BrokerMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestBrokerMachine = BrokerMachine.TestCase
