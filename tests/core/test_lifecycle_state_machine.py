"""A hypothesis state machine over the signal lifecycle, through the real engine (``btkit.Backtest.run``).

Rules grow a random candle series, plan what the strategy answers at given minutes (market and limit
entries, invalid signals, re-used ids) and plan user commands (``commit_close_pending`` /
``commit_cancel_scheduled`` from ping listeners, which also switches the engine to its per-candle path;
from the listener of the result stream, answering the n-th "opened" / "scheduled" result in either path;
and from get_signal, where nothing is open so they must refuse). ``run_backtest`` runs the whole series
and an invariant replays the ordered log of calls, results, commands and errors against the rules:

- at most one open or scheduled signal at any time, get_signal only asked when nothing is;
- every close at exactly TP, exactly the stop, or the VWAP of its observation (time_expired / closed),
  and at the first observation that triggers it; activations and cancels likewise;
- an accepted close / cancel request (from a ping or a result listener) applies at the very next tick
  (one minute later), before anything else that tick would decide (expiry, stop, TP; timeout, price
  reject, activation): closed at that observation's VWAP / cancelled with reason "user"; a user close
  or cancel happens only then; from the result listener the other command refuses (nothing to act on);
- pnl equals ``simple_pnl_percent`` for these single-entry trades;
- invalid signals are rejected on ``listen_error`` and never open; the last opened id is never re-used.

Every example starts from a clean process state (``reset_btkit``), hence a fresh plugin manager.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import numpy as np
import pytest
from core_helpers import T0, M, dt, minute_of, vwap_at
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import btkit
from btkit.lifecycle.pnl import simple_pnl_percent
from btkit.testing import reset_btkit
from btkit.testing.exchange import memory_exchange

Request = tuple[str, int, str]  # ("close" | "cancel", when it was asked (ms), which listener asked)

START = 10  # first frame minute (candles 5–9 give the first VWAP)
MAX_CANDLES = 360
INVALID = ("wrong_side", "nan", "unknown_key", "close_tp", "far_sl")

steps = st.tuples(
    st.floats(-0.015, 0.015),  # close-to-close return
    st.floats(0.0, 0.015),  # lower wick
    st.floats(0.0, 0.015),  # upper wick
    st.sampled_from([0.0, 0.5, 1.0, 1.0, 3.0, 50.0]),  # volume (0: the mean-of-closes fallback)
)


def make_answer(kind: str, position: str, price: float, p: dict[str, float], sid: str) -> dict[str, Any]:
    """The dict get_signal returns, built at call time from the current price."""
    sign = 1.0 if position == "long" else -1.0
    tp, sl = p["tp"] / 100, p["sl"] / 100
    base = price
    out: dict[str, Any] = {"position": position, "id": sid}
    if kind == "limit":
        base = price * (1 - sign * p["offset"] / 100)  # offset < 0: already reached → opens now at price_open
        out["price_open"] = base
    if kind in ("market", "limit"):
        out["price_take_profit"] = base * (1 + sign * tp)
        out["price_stop_loss"] = base * (1 - sign * sl)
        if p["lifetime"]:
            out["minute_estimated_time"] = int(p["lifetime"])
        return out
    out.pop("id")
    out["price_take_profit"] = base * (1 + sign * tp)
    out["price_stop_loss"] = base * (1 - sign * sl)
    if kind == "wrong_side":
        out["price_take_profit"] = base * (1 - sign * tp)
    elif kind == "nan":
        out["price_stop_loss"] = math.nan
    elif kind == "unknown_key":
        out["take_profit"] = out.pop("price_take_profit")
    elif kind == "close_tp":
        out["price_take_profit"] = base * (1 + sign * 0.001)
    elif kind == "far_sl":
        out["price_stop_loss"] = base * (1 - sign * 0.25)
    return out


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        reset_btkit()  # a fresh plugin manager and registry for every example
        self.candles: list[list[float]] = [
            [T0 + i * M, 100.0, 100.0, 100.0, 100.0, 1.0] for i in range(START)
        ]
        self.plans: dict[int, tuple[str, str, dict[str, float]]] = {}
        self.listener_commands: dict[int, str] = {}
        self.result_commands: set[int] = set()  # ordinals of the opened/scheduled results to answer
        self.signal_commands: set[int] = set()
        self.interval = "1m"
        self.per_candle = False
        self.schedule_await = 120
        self.log: list[tuple[Any, ...]] = []
        self.data: np.ndarray | None = None
        self.frame_end = 0
        self.done: list[Any] = []
        self.ids = 0
        self.checked = True

    @initialize(
        interval=st.sampled_from(["1m", "1m", "3m", "5m"]),
        per_candle=st.booleans(),
        schedule_await=st.sampled_from([120, 3, 10, 30]),
    )
    def setup(self, interval: str, per_candle: bool, schedule_await: int) -> None:
        self.interval = interval
        self.per_candle = per_candle
        self.schedule_await = schedule_await

    # ------------------------------------------------------------ rules
    @precondition(lambda self: len(self.candles) < MAX_CANDLES)
    @rule(moves=st.lists(steps, min_size=5, max_size=60))
    def grow(self, moves: list[tuple[float, float, float, float]]) -> None:
        prev = self.candles[-1][4]
        for ret, down, up, volume in moves[: MAX_CANDLES - len(self.candles)]:
            close = min(400.0, max(25.0, prev * (1 + ret)))
            high = max(prev, close) * (1 + up)
            low = min(prev, close) * (1 - down)
            self.candles.append([T0 + len(self.candles) * M, prev, high, low, close, volume])
            prev = close

    @rule(
        at=st.floats(0.0, 1.0),
        kind=st.sampled_from(["market", "market", "market", "limit", "limit", "limit", "reuse", *INVALID]),
        position=st.sampled_from(["long", "short"]),
        tp=st.floats(0.6, 4.0),
        sl=st.floats(0.6, 4.0),
        offset=st.floats(-1.0, 4.0),
        lifetime=st.sampled_from([0, 1, 2, 5, 15, 40, 120]),
    )
    def plan_signal(
        self, at: float, kind: str, position: str, tp: float, sl: float, offset: float, lifetime: int
    ) -> None:
        self.plans[self.minute(at)] = (
            kind,
            position,
            {"tp": tp, "sl": sl, "offset": offset, "lifetime": lifetime},
        )

    @precondition(lambda self: self.per_candle)
    @rule(at=st.floats(0.0, 1.0), kind=st.sampled_from(["close", "cancel"]))
    def plan_listener_command(self, at: float, kind: str) -> None:
        self.listener_commands[self.minute(at)] = kind

    @rule(nth=st.integers(0, 2))  # (runs here rarely see more than three)
    def plan_result_command(self, nth: int) -> None:
        """Answer the ``nth`` opened/scheduled result of a run (from its listener) with a close/cancel."""
        self.result_commands.add(nth)

    @rule(at=st.floats(0.0, 1.0))
    def plan_command_from_get_signal(self, at: float) -> None:
        self.signal_commands.add(self.minute(at))

    def minute(self, at: float) -> int:
        """A frame minute at fraction ``at`` of the candles so far (plans land where the data is)."""
        return START + round(at * max(0, len(self.candles) - START - 3))

    @precondition(lambda self: len(self.candles) >= START + 8)
    @rule()
    def run_backtest(self) -> None:
        reset_btkit()
        btkit.set_config(schedule_await_minutes=self.schedule_await)
        self.data = data = np.array(self.candles, dtype=np.float64)
        btkit.add_exchange("mem", memory_exchange("mem", {"X": data}).get_candles)
        log: list[tuple[Any, ...]] = []
        self.log = log
        last_id: list[str | None] = [None]

        def get_signal(symbol: str, when: datetime, price: float) -> Any:
            minute = round(minute_of(int(when.timestamp() * 1000)))
            if minute in self.signal_commands:
                log.append(
                    (
                        "command",
                        minute,
                        "from_get_signal",
                        (btkit.commit_close_pending(symbol), btkit.commit_cancel_scheduled(symbol)),
                    )
                )
            plan = self.plans.get(minute)
            answer = None
            kind = None
            if plan is not None:
                kind, position, params = plan
                if kind == "reuse":
                    sid = last_id[0] or "none-yet"
                    answer = make_answer("market", position, price, params, sid)
                else:
                    self.ids += 1
                    sid = f"s{self.ids}"
                    answer = make_answer(kind, position, price, params, sid)
                    if kind in ("market", "limit"):
                        last_id[0] = sid
            log.append(("call", minute, price, kind, answer))
            return answer

        def on_ping(ping: Any) -> None:
            minute = round(minute_of(ping.timestamp))
            kind = self.listener_commands.get(minute)
            if kind == "close" and ping.signal is not None and ping.signal.pending_at is not None:
                log.append(("command", minute, "close", btkit.commit_close_pending(ping.symbol)))
            elif kind == "cancel" and ping.signal is not None and ping.signal.pending_at is None:
                log.append(("command", minute, "cancel", btkit.commit_cancel_scheduled(ping.symbol)))

        lifecycle = (btkit.Scheduled, btkit.Opened, btkit.Closed, btkit.Cancelled)
        starts = [0]  # opened/scheduled results so far in this run

        def on_result(r: Any) -> None:
            if not isinstance(r, lifecycle):
                return  # (the per-candle path also emits active/waiting ticks; the replay needs the four)
            log.append(("result", r))
            if isinstance(r, (btkit.Opened, btkit.Scheduled)):
                starts[0] += 1
                if starts[0] - 1 in self.result_commands:  # both: the one that does not apply must refuse
                    returned = (btkit.commit_close_pending(r.symbol), btkit.commit_cancel_scheduled(r.symbol))
                    log.append(("command", round(minute_of(r.timestamp)), "from_result", returned))

        btkit.add_strategy("s", get_signal, interval=self.interval)
        self.frame_end = len(data) - 3  # candle frame_end + 1 exists to force the end
        btkit.add_frame("f", dt(START), dt(self.frame_end))
        btkit.listen_signal_backtest(on_result)
        btkit.listen_error(lambda e: log.append(("error", e)))
        self.done = []
        btkit.listen_done_backtest(self.done.append)
        if self.per_candle:
            btkit.listen_active_ping(on_ping)
            btkit.listen_schedule_ping(on_ping)
        yielded = list(btkit.Backtest.run("X", strategy="s", exchange="mem", frame="f"))
        emitted = [e[1] for e in log if e[0] == "result"]
        assert yielded == emitted
        self.checked = False

    # ------------------------------------------------------------ the invariant
    @invariant()
    def lifecycle_rules_hold(self) -> None:
        if self.checked:
            return
        self.checked = True
        assert len(self.done) == 1 and self.done[0].error is None, self.done
        Checker(self).check()

    def teardown(self) -> None:
        reset_btkit()


class Checker:
    """Replays one run's log against the lifecycle rules."""

    def __init__(self, machine: LifecycleMachine) -> None:
        assert machine.data is not None
        self.data = machine.data
        self.log = machine.log
        self.frame_end = T0 + machine.frame_end * M
        self.cfg = btkit.get_config()

    # helpers over the candle data --------------------------------------------------------
    def vwap(self, t: int) -> float:
        return vwap_at(self.data, t)

    def candle(self, t: int) -> np.ndarray:
        """The candle observed at ``t`` (it opened at ``t − 1m``)."""
        return self.data[(t - M - T0) // M]

    def past_frame(self, t: int) -> bool:
        return t - M > self.frame_end

    def stop_touched(self, s: Any, t: int, level: float) -> bool:
        c = self.candle(t)
        return bool(c[3] <= level) if s.position == "long" else bool(c[2] >= level)

    def tp_reached(self, s: Any, t: int) -> bool:
        v = self.vwap(t)
        return v >= s.price_take_profit if s.position == "long" else v <= s.price_take_profit

    def expired(self, s: Any, t: int) -> bool:
        met = s.minute_estimated_time
        return met is not None and t - s.pending_at >= met * M

    def timed_out(self, s: Any, t: int) -> bool:
        return t - s.scheduled_at >= self.cfg.schedule_await_minutes * M

    def entry_touched(self, s: Any, t: int) -> bool:
        c = self.candle(t)
        return bool(c[3] <= s.price_open) if s.position == "long" else bool(c[2] >= s.price_open)

    # the replay ----------------------------------------------------------------------------
    def check(self) -> None:
        state: Any = None  # None, or the Scheduled / Opened result holding the slot
        last_opened: str | None = None
        due: Request | None = None  # an accepted close/cancel request not applied yet
        expect: tuple[str, dict[str, Any] | None, int, float] | None = None
        prev: tuple[Any, ...] | None = None
        for entry in self.log:
            tag = entry[0]
            if expect is not None:
                kind, answer, when, price = expect
                self.after_call(kind, answer, when, price, entry, last_opened)
                expect = None
            if tag == "call":
                _, minute, price, kind, answer = entry
                when = T0 + minute * M
                assert state is None, f"get_signal asked at minute {minute} while {state.action} is held"
                assert price == self.vwap(when), "current_price must be the VWAP of the 5 closed minutes"
                if answer is not None:
                    expect = (kind, answer, when, price)
            elif tag == "command":
                _, minute, kind, returned = entry
                when = T0 + minute * M
                if kind == "from_get_signal":
                    assert returned == (False, False), "nothing is open or scheduled while get_signal runs"
                elif kind == "from_result":  # answering the opened/scheduled result logged just before
                    assert prev is not None and prev[0] == "result" and prev[1] is state
                    assert state.timestamp == when
                    opened = isinstance(state, btkit.Opened)
                    assert returned == (opened, not opened), (
                        f"(close, cancel) from the {state.action} listener returned {returned}"
                    )
                    assert due is None, f"a {due} request was still waiting at a new result"
                    due = ("close" if opened else "cancel", when, "result listener")
                else:
                    assert returned is True
                    assert due is None, f"a {due} request was still waiting at a ping"
                    due = (kind, when, "ping listener")
            elif tag == "result":
                r = entry[1]
                state, last_opened = self.transition(state, r, last_opened, due)
                if isinstance(r, (btkit.Closed, btkit.Cancelled)):
                    due = None
            prev = entry
        if expect is not None:
            self.after_call(*expect, None, last_opened)
        assert state is None, f"the run ended with {state.action} still held"
        assert due is None, f"the {due} request was never applied"

    def after_call(
        self,
        kind: str,
        answer: dict[str, Any] | None,
        when: int,
        price: float,
        nxt: Any,
        last_opened: str | None,
    ) -> None:
        """What must directly follow a get_signal call that returned a signal."""
        assert answer is not None
        nxt_result = nxt[1] if nxt is not None and nxt[0] == "result" else None
        nxt_error = nxt[1] if nxt is not None and nxt[0] == "error" else None
        started = isinstance(nxt_result, (btkit.Opened, btkit.Scheduled)) and nxt_result.timestamp == when
        if kind in INVALID:
            assert not started, f"invalid signal ({kind}) was accepted: {answer}"
            assert nxt_error is not None, f"invalid signal ({kind}) was not reported on listen_error"
            assert isinstance(nxt_error.error, btkit.SignalValidationError), nxt_error
            assert str(nxt_error.error).strip() and "\n" not in str(nxt_error.error)
            return
        if answer.get("id") == last_opened:  # whipsaw guard: silently ignored
            assert not started and nxt_error is None, f"re-used id {last_opened} was not ignored"
            return
        if kind in ("market", "reuse"):
            assert started and isinstance(nxt_result, btkit.Opened), (
                f"valid market signal did not open: {nxt}"
            )
            s = nxt_result.signal
            assert (s.id, s.price_open, s.pending_at, s.scheduled_at) == (answer["id"], price, when, when)
            return
        # limit entry
        long = answer["position"] == "long"
        reached = price <= answer["price_open"] if long else price >= answer["price_open"]
        if nxt_error is not None:  # only possible when opening now with the price outside SL–TP
            assert reached and isinstance(nxt_error.error, btkit.SignalValidationError), nxt_error
            assert "would close immediately" in str(nxt_error.error)
            return
        assert started, f"valid limit signal neither opened, scheduled nor was rejected: {nxt}"
        s = nxt_result.signal
        assert s.id == answer["id"] and s.price_open == answer["price_open"]
        if reached:
            assert isinstance(nxt_result, btkit.Opened) and s.pending_at == when
        else:
            assert isinstance(nxt_result, btkit.Scheduled) and s.pending_at is None and s.scheduled_at == when

    def transition(
        self, state: Any, r: Any, last_opened: str | None, due: Request | None
    ) -> tuple[Any, str | None]:
        if due is not None:  # nothing may happen before the request applies, one tick after it
            kind, asked, source = due
            assert isinstance(r, btkit.Closed if kind == "close" else btkit.Cancelled), (
                f"{kind} requested by the {source} at minute {minute_of(asked)}, then {r.action} "
                f"at {minute_of(r.timestamp)}"
            )
        if isinstance(r, btkit.Scheduled):
            assert state is None, "scheduled while another signal is held"
            return r, last_opened
        if isinstance(r, btkit.Opened):
            s = r.signal
            assert state is None or isinstance(state, btkit.Scheduled), "opened while a position is open"
            assert s.id != last_opened, "the last opened id opened again"
            if isinstance(state, btkit.Scheduled):
                self.check_activation(state.signal, r)
            long = s.position == "long"
            assert (
                (s.price_take_profit > s.price_open > s.price_stop_loss)
                if long
                else (s.price_take_profit < s.price_open < s.price_stop_loss)
            )
            return r, s.id
        if isinstance(r, btkit.Cancelled):
            assert isinstance(state, btkit.Scheduled), "cancelled without a scheduled signal"
            self.check_cancel(state.signal, r, due)
            return None, last_opened
        if isinstance(r, btkit.Closed):
            assert isinstance(state, btkit.Opened), "closed without an open position"
            self.check_close(state.signal, r, due)
            return None, last_opened
        raise AssertionError(f"unexpected result in a backtest: {r.action}")

    def quiet_between(self, s: Any, start: int, stop: int, *, pending: bool) -> None:
        """No observation in ``[start, stop)`` should have ended or activated the signal."""
        for t in range(start, stop, M):
            if pending:
                hit = (
                    self.expired(s, t) or self.stop_touched(s, t, s.price_stop_loss) or self.tp_reached(s, t)
                )
            else:
                hit = (
                    self.timed_out(s, t)
                    or self.stop_touched(s, t, s.price_stop_loss)
                    or self.entry_touched(s, t)
                )
            assert not (hit or self.past_frame(t)), f"signal {s.id} should have resolved at {minute_of(t)}"

    def check_activation(self, scheduled: Any, r: Any) -> None:
        t = r.signal.pending_at
        assert r.timestamp == t and r.signal.price_open == scheduled.price_open
        assert self.entry_touched(scheduled, t) and not self.stop_touched(
            scheduled, t, scheduled.price_stop_loss
        )
        assert not self.timed_out(scheduled, t) and not self.past_frame(t)
        self.quiet_between(scheduled, scheduled.scheduled_at + M, t, pending=False)

    def check_user_exit(self, s: Any, r: Any, due: Request | None, reason: str) -> None:
        """An accepted request is applied by the first tick after it, at that observation's VWAP, whatever
        else that tick would decide (the engine checks the request first); without one, never."""
        t = r.close_timestamp
        closed = isinstance(r, btkit.Closed)
        price, got = (r.pnl.price_close, r.close_reason) if closed else (r.current_price, r.reason)
        if due is None:
            assert got != reason, f"{r.action} ({reason}) at {minute_of(t)} without a request the tick before"
            return
        kind, asked, source = due
        assert (got, t) == (reason, asked + M), (
            f"{kind} requested by the {source} at minute {minute_of(asked)}: expected {reason} at the "
            f"next tick, got {r.action} with reason {got} at {minute_of(t)}"
        )
        assert r.timestamp == t and price == self.vwap(t)
        if closed:
            contested = (
                self.expired(s, t) or self.stop_touched(s, t, s.price_stop_loss) or self.tp_reached(s, t)
            )
        else:
            contested = (
                self.timed_out(s, t) or self.stop_touched(s, t, s.price_stop_loss) or self.entry_touched(s, t)
            )
        contested = contested or self.past_frame(t)
        event(f"{kind} from the {source}" + (" (over another trigger that tick)" if contested else ""))

    def check_cancel(self, s: Any, r: Any, due: Request | None) -> None:
        t = r.close_timestamp
        self.check_user_exit(s, r, due, "user")  # (reason "user": checked there)
        if r.reason == "timeout":
            assert self.timed_out(s, t) or self.past_frame(t)
            assert r.current_price == self.vwap(t)
        elif r.reason != "user":
            assert r.reason == "price_reject" and self.stop_touched(s, t, s.price_stop_loss)
        self.quiet_between(s, s.scheduled_at + M, t, pending=False)  # (a user cancel takes precedence at t)

    def check_close(self, s: Any, r: Any, due: Request | None) -> None:
        t = r.close_timestamp
        close = r.pnl.price_close
        self.check_user_exit(s, r, due, "closed")
        if r.close_reason == "take_profit":
            assert close == s.price_take_profit and self.tp_reached(s, t)
        elif r.close_reason == "stop_loss":
            assert close == s.price_stop_loss and self.stop_touched(s, t, s.price_stop_loss)
        elif r.close_reason == "time_expired":
            assert close == self.vwap(t)
            assert self.expired(s, t) or self.past_frame(t)
        elif r.close_reason == "closed":
            assert close == self.vwap(t)  # (and requested the tick before: check_user_exit)
        else:
            raise AssertionError(f"unexpected close reason {r.close_reason}")
        self.quiet_between(s, s.pending_at + M, t, pending=True)  # (a user close takes precedence at t)
        assert r.pnl.price_open == s.price_open
        expected = simple_pnl_percent(
            s.position,
            s.price_open,
            close,
            slippage_pct=self.cfg.percent_slippage,
            fee_pct=self.cfg.percent_fee,
        )
        assert r.pnl.pnl_percentage == pytest.approx(expected, abs=1e-9)
        assert r.pnl.pnl_cost == pytest.approx(expected / 100 * s.cost, abs=1e-9)


LifecycleMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TestLifecycle = LifecycleMachine.TestCase
