"""One strategy instance (symbol × strategy × exchange × frame × mode): the tick both drivers call.

Each tick turns (state, observation) into a decision with the pure functions of ``btkit.lifecycle``,
then carries it out as a transaction: persist the intent → call the broker → on confirm write the new
state and only then count it as done and emit events. In backtests the store keeps nothing and there is
no broker, so the same code runs with those steps as no-ops.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs
import numpy as np

from btkit import events
from btkit.broker_payloads import (
    CancelCommit,
    CloseCommit,
    ExchangeFill,
    OpenCommit,
    client_order_id,
)
from btkit.components import StrategySpec, interval_ms
from btkit.context import ExecutionContext, entered, ms_to_datetime
from btkit.engine import announce
from btkit.engine.state import MAX_REJECTED_IDS, InstanceState, Intent, Levels, with_last_bucket
from btkit.errors import BtkitError, SignalValidationError
from btkit.lifecycle import machine
from btkit.lifecycle import pnl as pnl_math
from btkit.lifecycle.machine import ActivateDecision, CancelDecision, CloseDecision, Observation
from btkit.lifecycle.validation import coerce_signal
from btkit.model import (
    CLOSE_REASONS,
    MINUTE_MS,
    Active,
    Cancelled,
    Closed,
    Idle,
    Opened,
    Scheduled,
    Signal,
    SignalRow,
    TickResult,
    Waiting,
    view_of,
)
from btkit.persist.backend import Change
from btkit.risk import ActivePosition

if TYPE_CHECKING:
    from btkit.engine.run import Run

log = logging.getLogger("btkit.engine")
# get_signal calls per strategy name in this process: a host summarising strategy errors (the CLI) compares
# them with the errors it saw, to tell "some calls failed" from "no signal could be evaluated at all"
GET_SIGNAL_CALLS: Counter[str] = Counter()


class StrategyInstance:
    def __init__(
        self, run: Run, *, symbol: str, strategy: StrategySpec, exchange_name: str, frame_name: str = ""
    ) -> None:
        self.run = run
        self.symbol = symbol
        self.strategy = strategy
        self.exchange_name = exchange_name
        self.frame_name = frame_name
        self.market = run.markets[exchange_name]
        self.key = (strategy.name, symbol)
        self.state = InstanceState()
        self.history: list[Closed] = []
        self.loaded = False
        self.broken: str | None = None
        self._load_lock = asyncio.Lock()
        self.interval = interval_ms(strategy.interval)
        self.risk_names = run.risk.names_for(strategy.risk_names)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending_commands: list[Any] = []
        self.stop_requested = False
        self._check_failures = 0
        self._tick_when: int | None = None  # the minute being ticked (stamped on live commits)
        self._saved = InstanceState()  # live: the state as last written; commits are diffed against it
        self.params: Mapping[str, Any] = {}  # this run's parameter values (Run.instance resolves them)

    @property
    def stopping(self) -> bool:
        return self.stop_requested or self.run.stopping

    # ------------------------------------------------------------ helpers
    @property
    def backtest(self) -> bool:
        return self.run.backtest

    @property
    def cfg(self) -> Any:
        return self.run.cfg

    def context(self, when: int) -> ExecutionContext:
        return ExecutionContext(self.symbol, when, self.backtest, self)

    def _result(self, cls: type, when: int, price: float, row: SignalRow | None, **kw: Any) -> Any:
        return cls(
            symbol=self.symbol,
            strategy_name=self.strategy.name,
            exchange_name=self.exchange_name,
            frame_name=self.frame_name,
            backtest=self.backtest,
            timestamp=when,
            current_price=price,
            signal=view_of(row) if row is not None else None,
            **kw,
        )

    async def _emit(self, result: TickResult) -> None:
        if isinstance(result, Idle):
            return
        with entered(self.context(result.timestamp)):  # listeners may query and command, like get_signal
            await events.emit("signal", result)
            await events.emit("signal_backtest" if self.backtest else "signal_live", result)
        if isinstance(result, (Scheduled, Opened, Closed, Cancelled)):
            try:
                self.run.pm.hook.btkit_signal_event(result=result)
            except Exception as exc:
                await self.run.report(exc, f"btkit_signal_event observer for {self.symbol}")
        cb = self.strategy.callbacks
        if cb is not None:
            fn = getattr(cb, f"on_{result.action}", None) or (
                cb.get(f"on_{result.action}") if isinstance(cb, dict) else None
            )
            if fn is not None:
                with entered(self.context(result.timestamp)):
                    try:
                        out = fn(result)
                        if inspect.isawaitable(out):
                            await out
                    except Exception as exc:
                        await self.run.report(
                            exc, f"strategy {self.strategy.name} callback on_{result.action}"
                        )

    def _position_of(self, row: SignalRow, *, reserved: bool = False) -> ActivePosition:
        since = row.pending_at if row.pending_at is not None else row.scheduled_at
        if row.pending_at is None:
            expires = row.scheduled_at + self.cfg.schedule_await_minutes * MINUTE_MS
            if row.minute_estimated_time is not None:
                expires += row.minute_estimated_time * MINUTE_MS
        else:
            expires = (
                row.pending_at + row.minute_estimated_time * MINUTE_MS
                if row.minute_estimated_time is not None
                else None
            )
        return ActivePosition(
            strategy_name=self.strategy.name,
            symbol=self.symbol,
            exchange_name=self.exchange_name,
            signal_id=row.id,
            position=row.position,
            price_open=row.price_open,
            since=since,
            expires_at=expires,
            reserved=reserved,
        )

    def _risk_changes(self, position: ActivePosition | None) -> list[Change]:
        """Risk documents as they will be once this instance's slot is ``position`` (None = free)."""
        store = self.run.store
        if not store.persistent:
            return []
        slot = (self.strategy.name, self.symbol)
        out = []
        for name in self.risk_names:
            table = dict(self.run.risk.active.get(name, {}))
            if position is None:
                table.pop(slot, None)
            else:
                table[slot] = position
            change = store.risk_change(name, list(table.values()))
            if change is not None:
                out.append(change)
        return out

    def _set_slot(self, position: ActivePosition | None) -> None:
        if position is None:
            self.run.risk.release(self.strategy.risk_names, self.strategy.name, self.symbol)
        else:
            self.run.risk.set(self.strategy.risk_names, position)

    def _commit(
        self,
        new: InstanceState,
        *,
        closed: Closed | None = None,
        slot: ActivePosition | bool | None = False,
    ) -> None:
        """Durably write ``new`` (and history / risk slot), then make it the state. ``slot=False`` keeps
        the risk slot as it is; None frees it; an ActivePosition sets it."""
        store = self.run.store
        if store.persistent:
            from btkit.persist.state import state_changes

            done = self._tick_when
            if done is not None and (new.strategy.last_tick is None or new.strategy.last_tick < done):
                new = attrs.evolve(new, strategy=attrs.evolve(new.strategy, last_tick=done))
            changes = state_changes(self.key, self._saved, new)
            if closed is not None:
                change = store.history_change(self.key, [*self.history, closed])
                if change is not None:  # first: a crash mid-batch must not drop the closed trade
                    changes.insert(0, change)
            if slot is not False:
                changes.extend(self._risk_changes(slot if isinstance(slot, ActivePosition) else None))
            store.save(changes)
            self._saved = new
        self.state = new
        if closed is not None:
            self.history.append(closed)
        if slot is not False:
            self._set_slot(slot if isinstance(slot, ActivePosition) else None)

    # ------------------------------------------------------------ loading (live)
    async def ensure_loaded(self) -> None:
        if self.loaded:
            return
        async with self._load_lock:
            if self.loaded:
                return
            if self.run.store.persistent:
                state, history = await self.run.store.load(self.key, self.exchange_name)
                self._saved = state
                state = self._settle_loaded_intent(self._settle_closed(state, history))
                self.state, self.history = state, history
                row = state.pending or state.scheduled
                intent_row = state.strategy.intent.row if state.strategy.intent else None
                held = row or intent_row
                if held is not None:
                    self.run.risk.set(self.strategy.risk_names, self._position_of(held))
                else:
                    self.run.risk.release(self.strategy.risk_names, self.strategy.name, self.symbol)
            self.loaded = True

    @staticmethod
    def _settle_closed(state: InstanceState, history: Sequence[Closed]) -> InstanceState:
        """A position already in the history was closed: its close batch (history first) was cut by
        a crash before the position document was cleared. Finish the close instead of re-monitoring it."""
        row = state.pending
        if row is None or all(c.signal.id != row.id for c in history):
            return state
        st = state.strategy
        st = attrs.evolve(st, deferred=tuple(d for d in st.deferred if d != "close_pending"))
        return attrs.evolve(state, pending=None, levels=Levels(), strategy=st)

    def _settle_loaded_intent(self, state: InstanceState) -> InstanceState:
        """An intent whose effect is already in the state was applied before the crash: drop it."""
        intent = state.strategy.intent
        if intent is None:
            return state
        applied = False
        if intent.action in ("open", "activate"):
            applied = state.pending is not None and state.pending.id == intent.signal_id
        elif intent.action == "schedule":
            applied = state.scheduled is not None and state.scheduled.id == intent.signal_id
        elif intent.action == "close":
            applied = state.pending is None or state.pending.id != intent.signal_id
        elif intent.action == "cancel":
            applied = state.scheduled is None or state.scheduled.id != intent.signal_id
        if applied:
            return attrs.evolve(state, strategy=attrs.evolve(state.strategy, intent=None))
        return state

    # ------------------------------------------------------------ the tick
    async def tick(self, when: int, obs: Observation | None = None) -> TickResult:
        """One tick at ``when`` (ms). ``obs`` is given by the backtest's per-candle path; live builds it."""
        self.loop = asyncio.get_running_loop()
        await self.ensure_loaded()
        st = self.state
        if self.run.store.persistent:
            if self.already_done(when):  # a restarted replay handing out minutes processed before
                return self._result(Idle, when, 0.0, None)
            self._tick_when = when
        if st.strategy.intent is not None:
            return await self._retry_intent(when, obs)
        if st.pending is not None:
            return await self._tick_pending(when, obs)
        if st.scheduled is not None:
            return await self._tick_scheduled(when, obs)
        return await self._decide(when)

    async def _decide(self, when: int) -> TickResult:
        try:
            return await self._tick_idle(when)
        except BaseException:
            # the decision was not written: the bucket it consumed in memory is not consumed either
            if self.run.store.persistent:
                saved = self._saved.strategy.last_bucket
                self.state = attrs.evolve(
                    self.state, strategy=attrs.evolve(self.state.strategy, last_bucket=saved)
                )
            raise

    def decision_due(self, when: int) -> bool:
        """Close, then decide, within one instant (10-lifecycle.md §3.1): nothing is open or waiting and
        the strategy has not been asked yet in the bucket of its interval that holds ``when``
        (``floor(when/interval)·interval``) — backtest-kit's throttle (``_lastSignalTimestamp`` holds the
        aligned time of the last ``getSignal`` call). A close anywhere inside a bucket whose decision was
        skipped while a position was open is followed by that bucket's decision at the close instant."""
        st = self.state
        return (
            not self.stopping
            and not st.strategy.paused
            and st.pending is None
            and st.scheduled is None
            and st.strategy.intent is None
            and st.strategy.last_bucket != (when // self.interval) * self.interval
        )

    async def decide_after_close(self, when: int) -> TickResult | None:
        """Called by every driver right after a tick at ``when`` closed a position or ended a scheduled
        signal (TP, SL, expiry, timeout, price reject, user close/cancel): when the strategy was not asked
        yet in the bucket of its interval holding ``when``, that bucket's decision is taken now, after the
        close — exactly what a tick at ``when`` with nothing open would do — instead of one tick later.
        Returns the decision's result, or None when no decision is due at ``when``."""
        if not self.decision_due(when):
            return None
        return await self._decide(when)

    def _decision_owed(self) -> bool:
        """A restarted process finds a close stamped in a bucket with no decision taken in it: the decision
        that follows the close at that instant is still owed."""
        st = self.state.strategy
        return st.last_tick is not None and self.decision_due(st.last_tick)

    def already_done(self, when: int) -> bool:
        """Live: were the effects of the tick at ``when`` persisted before (by an earlier process)?

        Every live commit stamps its tick's minute in ``StrategyState.last_tick``; a minute after the last
        stamp had no durable effect and is ticked again. The stamped minute itself is ticked again when it
        left a broker intent in flight (retried at the same minute, as if nothing had happened), or when
        it closed a position in a bucket not yet asked and the decision due then was not written (see
        :meth:`decide_after_close`).
        """
        st = self.state.strategy
        if st.last_tick is None:
            return False
        again = st.intent is not None or self._decision_owed()
        return when < st.last_tick or (when == st.last_tick and not again)

    def resume_after(self) -> int | None:
        """The last minute a restarted live loop must not tick again (see :meth:`already_done`)."""
        st = self.state.strategy
        if st.last_tick is None:
            return None
        again = st.intent is not None or self._decision_owed()
        return st.last_tick - MINUTE_MS if again else st.last_tick

    async def _observe(self, when: int, obs: Observation | None) -> Observation:
        return obs if obs is not None else await self.market.observation(self.symbol, when)

    # ------------------------------------------------------------ idle
    async def _tick_idle(self, when: int) -> TickResult:
        st = self.state.strategy
        bucket = (when // self.interval) * self.interval
        if self.stopping or st.last_bucket == bucket:
            return await self._idle(when, None)
        if st.paused:
            return await self._idle(when, None)
        price = await self.market.vwap(self.symbol, when)
        # the bucket is consumed before get_signal is called (a None answer still uses it). It is kept in
        # memory and written with the decision it leads to: a crash before that decision repeats the call
        # instead of losing the signal, and an idle bucket costs no fsync.
        self.state = with_last_bucket(self.state, bucket)
        raw = await self._call_get_signal(when, price)
        if raw is None:
            return await self._idle(when, price)
        try:
            signal = coerce_signal(raw)
        except SignalValidationError as exc:
            await self.run.report(exc, f"strategy {self.strategy.name} on {self.symbol}")
            return await self._idle(when, price)
        if signal.id is not None and (signal.id == st.last_opened_id or signal.id in st.rejected_ids):
            return await self._idle(when, price)  # whipsaw guard / ids never reused
        # risk check with reservation, before anything else
        candidate_price = signal.price_open if signal.price_open is not None else price
        probe = ActivePosition(
            strategy_name=self.strategy.name,
            symbol=self.symbol,
            exchange_name=self.exchange_name,
            signal_id=signal.id or "",
            position=signal.position,
            price_open=candidate_price,
            since=when,
            reserved=True,
        )
        rejection = await self.run.risk.check_and_reserve(
            self.strategy.risk_names,
            candidate=probe,
            signal=attrs.evolve(signal, price_open=candidate_price),
            current_price=price,
            timestamp=when,
        )
        if rejection is None:  # sizing + the funds check; a refusal is reported like a risk rejection
            try:
                sized = await self.run.wallet.admit(self, signal, candidate_price, when)
            except BaseException:  # e.g. the first wallet write refused: nothing was opened, free the slot
                self.run.risk.release(self.strategy.risk_names, self.strategy.name, self.symbol)
                raise
            rejection, signal = (None, sized) if isinstance(sized, Signal) else (sized, signal)
            if rejection is not None:
                self.run.risk.release(self.strategy.risk_names, self.strategy.name, self.symbol)
        if rejection is not None:
            await self.run.report_risk(rejection)
            await self._release_bucket()
            return await self._idle(when, price)
        try:
            row = machine.build_row(
                signal,
                symbol=self.symbol,
                strategy_name=self.strategy.name,
                exchange_name=self.exchange_name,
                frame_name=self.frame_name,
                when=when,
                current_price=price,
                cfg=self.cfg,
            )
        except SignalValidationError as exc:
            self.run.risk.release(self.strategy.risk_names, self.strategy.name, self.symbol)
            await self.run.report(
                SignalValidationError(f"signal rejected: {exc}"),
                f"strategy {self.strategy.name} on {self.symbol}",
            )
            return await self._idle(when, price)
        action = "open" if row.pending_at is not None else "schedule"
        try:
            return await self._attempt_open(action, row, when, price, attempt=0)
        except BaseException:
            if (
                self.state.strategy.intent is None
                and self.state.pending is None
                and self.state.scheduled is None
            ):
                # the intent was never persisted (so the broker was not called): free the reservation
                self.run.risk.release(self.strategy.risk_names, self.strategy.name, self.symbol)
            raise

    async def _release_bucket(self) -> None:
        st = self.state.strategy
        if st.last_bucket is not None:  # in memory, like consuming it
            self.state = with_last_bucket(self.state, None)

    async def _idle(self, when: int, price: float | None) -> TickResult:
        if events.has_listeners("idle_ping", self.strategy):
            if price is None:
                price = await self.market.vwap(self.symbol, when)
            await announce.ping(self, "idle_ping", when, price, None)
        return self._result(Idle, when, price if price is not None else 0.0, None)

    async def _call_get_signal(self, when: int, price: float) -> Any:
        hook = self.run.pm.hook.btkit_get_signal
        kwargs = dict(
            strategy=self.strategy, symbol=self.symbol, when=ms_to_datetime(when), current_price=price
        )
        limit = self.cfg.max_signal_generation_seconds
        where = f"get_signal of {self.strategy.name} on {self.symbol}"
        GET_SIGNAL_CALLS[self.strategy.name] += 1
        with entered(self.context(when)):
            started = time.monotonic()
            try:
                if self.backtest or inspect.iscoroutinefunction(self.strategy.get_signal):
                    out = hook(**kwargs)
                else:  # live: a sync strategy must not block the other symbols
                    import contextvars

                    ctx = contextvars.copy_context()
                    out = await asyncio.wait_for(asyncio.to_thread(ctx.run, hook, **kwargs), limit)
                if inspect.isawaitable(out):
                    out = await asyncio.wait_for(out, limit)
            except TimeoutError:
                await self.run.report(
                    BtkitError(f"{where} took longer than {limit:g}s; treated as no signal"), where
                )
                return None
            except Exception as exc:
                await self.run.report(exc, where)
                return None
            if time.monotonic() - started > limit:
                await self.run.report(
                    BtkitError(f"{where} took longer than {limit:g}s; treated as no signal"), where
                )
                return None
        return out

    # ------------------------------------------------------------ open / schedule / activate
    def commit_fields(self, row: SignalRow, when: int, attempt: int, coid: str) -> dict[str, Any]:
        """The fields every broker payload shares (``btkit.broker_payloads.CommitPayload``)."""
        return dict(
            symbol=self.symbol,
            strategy_name=self.strategy.name,
            exchange_name=self.exchange_name,
            signal_id=row.id,
            when=when,
            attempt=attempt,
            client_order_id=coid,
            position=row.position,
        )

    def _open_payload(self, action: str, row: SignalRow, when: int, attempt: int) -> OpenCommit:
        coid = client_order_id(row.id, "schedule" if action == "schedule" else "open")
        return OpenCommit(
            **self.commit_fields(row, when, attempt, coid),
            type="schedule" if action == "schedule" else "open",
            cost=row.cost,
            price_open=row.price_open,
            price_take_profit=row.take_profit,
            price_stop_loss=row.stop_loss,
            multiplier=row.multiplier,
            isolated=row.isolated,
        )

    async def _attempt_open(
        self, action: str, row: SignalRow, when: int, price: float, *, attempt: int
    ) -> TickResult:
        """Open now (``open``/``activate``) or place a resting entry (``schedule``) through the broker."""
        gate = self.run.gate
        if gate is not None:
            intent = Intent(
                action=action,  # type: ignore[arg-type]
                signal_id=row.id,
                client_order_id=client_order_id(row.id, "schedule" if action == "schedule" else "open"),
                attempt=attempt,
                row=row,
            )
            self._commit(attrs.evolve(self.state, strategy=attrs.evolve(self.state.strategy, intent=intent)))
            verdict = await gate.call(
                "on_signal_open_commit", self._open_payload(action, row, when, attempt + 1)
            )
            if not verdict.confirmed:
                return await self._open_failed(action, row, when, price, attempt + 1, verdict)
            if verdict.fill is not None and action != "schedule":  # book the exchange's fill price
                row = machine.activate(row, verdict.fill.price, row.pending_at or when)
        st = attrs.evolve(self.state.strategy, intent=None)
        if action == "schedule":
            new = attrs.evolve(self.state, scheduled=row, pending=None, strategy=st)
            self._commit(new, slot=self._position_of(row))
            result = self._result(Scheduled, when, price, row)
        else:
            st = attrs.evolve(st, last_opened_id=row.id)
            new = attrs.evolve(
                self.state, pending=row, scheduled=None, strategy=st, levels=Levels(signal_id=row.id)
            )
            self._commit(new, slot=self._position_of(row))
            result = self._result(Opened, when, price, row)
        await self._emit(result)
        return result

    async def _open_failed(
        self, action: str, row: SignalRow, when: int, price: float, attempts: int, verdict: Any
    ) -> TickResult:
        st = self.state.strategy
        limit = self.cfg.order_open_retry_attempts
        where = f"broker open of {row.id} on {self.symbol}"
        if verdict.kind == "transient" and attempts < limit:
            intent = attrs.evolve(st.intent, attempt=attempts) if st.intent else None
            self._commit(attrs.evolve(self.state, strategy=attrs.evolve(st, intent=intent)))
            await self.run.report(
                verdict.error, f"{where}: attempt {attempts}/{limit} failed, retrying next tick"
            )
            return self._hold_result(action, row, when, price)
        # final: rejected, or transient retries exhausted → the open is dropped and its id never reused
        rejected = (*st.rejected_ids, row.id)[-MAX_REJECTED_IDS:]
        new_st = attrs.evolve(st, intent=None, rejected_ids=rejected, last_bucket=None)
        await self.run.report(verdict.error, f"{where}: dropped ({verdict.kind} after {attempts} attempt(s))")
        if (
            action == "activate"
        ):  # the resting entry may still be on the exchange: cancel it through the broker
            self._commit(attrs.evolve(self.state, strategy=new_st))
            return await self._cancel(
                CancelDecision("price_reject", price, when), self.state.scheduled or row
            )
        self._commit(attrs.evolve(self.state, strategy=new_st), slot=None)
        return self._result(Idle, when, price, None)

    async def _count_check(self, verdict: Any, row: SignalRow) -> None:
        """Consecutive unanswered order checks: after ``order_check_retry_attempts`` the operator is told."""
        if verdict.kind != "transient":
            self._check_failures = 0
            return
        self._check_failures += 1
        if self._check_failures == self.cfg.order_check_retry_attempts:
            await self.run.report(
                BtkitError(
                    f"FATAL: the broker could not confirm {row.id} on {self.symbol} exists for "
                    f"{self._check_failures} ticks ({verdict.error}); monitoring goes on — check the exchange"
                ),
                "broker check",
                fatal=True,
            )

    def _hold_result(self, action: str, row: SignalRow, when: int, price: float) -> TickResult:
        if action == "activate":
            return self._result(Waiting, when, price, row)
        return self._result(Idle, when, price, None)

    async def _activate(self, decision: ActivateDecision, row: SignalRow, price: float) -> TickResult:
        when = decision.time
        rejection = await self.run.risk.check_and_reserve(
            self.strategy.risk_names,
            candidate=self._position_of(row, reserved=True),
            signal=_signal_of(row),
            current_price=price,
            timestamp=when,
            exclude_self=True,
        )
        if rejection is not None:
            await self.run.report_risk(rejection)
            return await self._cancel(CancelDecision("price_reject", price, when), row)
        return await self._attempt_open(
            "activate", machine.activate(row, decision.price, when), when, price, attempt=0
        )

    # ------------------------------------------------------------ scheduled
    async def _tick_scheduled(self, when: int, obs: Observation | None) -> TickResult:
        row = self.state.scheduled
        assert row is not None
        o = await self._observe(when, obs)
        if self.stopping or "cancel_scheduled" in self.state.strategy.deferred:
            return await self._cancel(CancelDecision("user", o.vwap, when), row)
        decision = machine.decide_scheduled(row, o, self.cfg, self.run.frame_end)
        if isinstance(decision, CancelDecision):
            return await self._cancel(decision, row)
        if isinstance(decision, ActivateDecision):
            return await self._activate(decision, row, o.vwap)
        if self.run.gate is not None:
            verdict = await self.run.gate.call(
                "on_schedule_check", self._open_payload("schedule", row, when, 1)
            )
            await self._count_check(verdict, row)
            if verdict.kind == "deleted":
                return await self._cancel(CancelDecision("user", o.vwap, when), row, notify=False)
        if events.has_listeners("schedule_ping", self.strategy):
            await announce.ping(self, "schedule_ping", when, o.vwap, row)
        return self._result(Waiting, when, o.vwap, row)

    async def _cancel(
        self, decision: CancelDecision, row: SignalRow, *, attempt: int = 0, notify: bool = True
    ) -> TickResult:
        when = decision.time
        gate = self.run.gate
        if gate is not None and notify:

            def payload(coid: str, n: int) -> CancelCommit:
                return CancelCommit(
                    **self.commit_fields(row, when, n, coid),
                    reason=decision.reason,
                    price_open=row.price_open,
                )

            done, _fill = await self._exit_through_broker("cancel", row, decision, attempt, payload)
            if not done:
                return self._result(Waiting, when, decision.price, row)
        st = attrs.evolve(
            self.state.strategy,
            intent=None,
            deferred=tuple(d for d in self.state.strategy.deferred if d != "cancel_scheduled"),
        )
        self._commit(attrs.evolve(self.state, scheduled=None, strategy=st), slot=None)
        result = self._result(
            Cancelled, when, decision.price, row, reason=decision.reason, close_timestamp=when
        )
        await self._emit(result)
        return result

    # ------------------------------------------------------------ pending
    async def _tick_pending(self, when: int, obs: Observation | None) -> TickResult:
        row = self.state.pending
        assert row is not None
        o = await self._observe(when, obs)
        row = self._track_extremes(row, o)
        if "close_pending" in self.state.strategy.deferred:
            return await self._close(CloseDecision("closed", o.vwap, when), row)
        if pnl_math.remaining_cost(row) <= 1e-9:
            return await self._close(CloseDecision("closed", o.vwap, when), row)
        decision = machine.decide_pending(row, o, self.cfg, self.run.frame_end)
        if decision is not None:
            return await self._close(decision, row)
        if self.run.gate is not None:
            verdict = await self.run.gate.call("on_active_check", self._open_payload("open", row, when, 1))
            await self._count_check(verdict, row)
            if verdict.kind == "deleted":
                return await self._close(_exchange_close(verdict.fill, row, o.vwap, when), row, notify=False)
        if row is not self.state.pending:  # a new best/worst price: persisted like any other change
            self._commit(attrs.evolve(self.state, pending=row))
        await announce.levels(self, row, o, when)
        if events.has_listeners("active_ping", self.strategy):
            await announce.ping(self, "active_ping", when, o.vwap, row)
            row = self.state.pending or row
        await self._run_commands(when, o)
        row = self.state.pending
        if row is None:  # a command closed it
            return self._result(Idle, when, o.vwap, None)
        to_tp, to_sl = machine.progress(row, o.vwap)
        mark = pnl_math.position_pnl(
            row, o.vwap, slippage_pct=self.cfg.percent_slippage, fee_pct=self.cfg.percent_fee
        )
        result = self._result(Active, when, o.vwap, row, percent_tp=to_tp, percent_sl=to_sl, pnl=mark)
        await self._emit(result)
        await self._run_commands(when, o)  # commands from on_active callbacks / signal listeners: this tick
        return result

    def _track_extremes(self, row: SignalRow, o: Observation) -> SignalRow:
        best, worst = machine.extremes(row, np.array([o.low]), np.array([o.high]))
        if best == row.price_best and worst == row.price_worst:
            return row
        return attrs.evolve(row, price_best=best, price_worst=worst)

    async def _exit_through_broker(
        self,
        action: Literal["close", "cancel"],
        row: SignalRow,
        decision: CloseDecision | CancelDecision,
        attempt: int,
        payload: Callable[[str, int], Any],
    ) -> tuple[bool, ExchangeFill | None]:
        """Persist the close/cancel intent, then call the broker. True: go on and apply the change
        (confirmed, gone, or forced after final failure — forced is reported as fatal). False: transient,
        nothing changed but the attempt counter; the same action is retried next tick. The second item is
        the exchange's fill when the broker reported one."""
        assert self.run.gate is not None
        intent = Intent(
            action=action,
            signal_id=row.id,
            client_order_id=client_order_id(row.id, action),
            attempt=attempt,
            row=row,
            reason=decision.reason,
            price=decision.price,
            time=decision.time,
        )
        state = attrs.evolve(self.state, strategy=attrs.evolve(self.state.strategy, intent=intent))
        self._commit(attrs.evolve(state, pending=row) if action == "close" else state)
        method = "on_signal_close_commit" if action == "close" else "on_signal_cancel_commit"
        verdict = await self.run.gate.call(method, payload(intent.client_order_id, attempt + 1))
        limit = self.cfg.order_close_retry_attempts
        if verdict.kind == "transient" and attempt + 1 < limit:
            retry = attrs.evolve(intent, attempt=attempt + 1)
            self._commit(attrs.evolve(self.state, strategy=attrs.evolve(self.state.strategy, intent=retry)))
            await self.run.report(
                verdict.error,
                f"broker {action} of {row.id} on {self.symbol}: attempt {attempt + 1}/{limit} failed, "
                "retrying next tick",
            )
            return False, None
        if not verdict.confirmed and verdict.kind != "deleted":
            consequence = (
                "the position was closed in the engine"
                if action == "close"
                else "the resting entry was dropped in the engine but may still fill"
            )
            await self.run.report(
                BtkitError(
                    f"FATAL: broker {action} of {row.id} on {self.symbol} {verdict.kind} ({verdict.error}); "
                    f"{consequence} — check the exchange by hand"
                ),
                f"broker {action} forced",
                fatal=True,
            )
        return True, verdict.fill

    async def _close(
        self, decision: CloseDecision, row: SignalRow, *, attempt: int = 0, notify: bool = True
    ) -> TickResult:
        when = decision.time
        cfg = self.cfg
        pnl = pnl_math.position_pnl(
            row, decision.price, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee
        )
        gate = self.run.gate
        if gate is not None and notify:

            def payload(coid: str, n: int) -> CloseCommit:
                return CloseCommit(
                    **self.commit_fields(row, when, n, coid),
                    cost=pnl_math.remaining_cost(row),
                    current_price=decision.price,
                    price_open=pnl_math.effective_entry(row),
                    price_take_profit=row.take_profit,
                    price_stop_loss=row.stop_loss,
                    close_reason=decision.reason,
                    pnl=pnl,
                    total_entries=len(row.entries),
                    total_partials=len(row.partials),
                )

            done, fill = await self._exit_through_broker("close", row, decision, attempt, payload)
            if not done:
                return self._result(Active, when, decision.price, row, pnl=pnl)
            if fill is not None:  # the exchange's exit price, not the candle's
                decision = CloseDecision(decision.reason, fill.price, decision.time)
                pnl = pnl_math.position_pnl(
                    row, decision.price, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee
                )
        closed = self._result(
            Closed,
            when,
            decision.price,
            row,
            close_reason=decision.reason,
            close_timestamp=when,
            pnl=pnl,
            price_best=row.price_best,
            price_worst=row.price_worst,
        )
        st = attrs.evolve(
            self.state.strategy,
            intent=None,
            deferred=tuple(d for d in self.state.strategy.deferred if d != "close_pending"),
        )
        self._commit(
            attrs.evolve(self.state, pending=None, strategy=st, levels=Levels()), closed=closed, slot=None
        )
        await self._emit(closed)
        return closed

    # ------------------------------------------------------------ intents in flight
    async def _retry_intent(self, when: int, obs: Observation | None) -> TickResult:
        intent = self.state.strategy.intent
        assert intent is not None
        if intent.action in ("open", "schedule", "activate"):
            price = (await self._observe(when, obs)).vwap
            return await self._attempt_open(intent.action, intent.row, when, price, attempt=intent.attempt)
        decision_time = when
        if intent.action == "close":
            decision = CloseDecision(
                intent.reason or "closed", intent.price or intent.row.price_open, decision_time
            )  # type: ignore[arg-type]
            return await self._close(decision, self.state.pending or intent.row, attempt=intent.attempt)
        decision_c = CancelDecision(
            intent.reason or "user", intent.price or intent.row.price_open, decision_time
        )  # type: ignore[arg-type]
        return await self._cancel(decision_c, self.state.scheduled or intent.row, attempt=intent.attempt)

    async def _run_commands(self, when: int, o: Observation) -> None:
        """Carry out position commands queued by user code during this tick (see btkit.commands)."""
        while self.pending_commands:
            command = self.pending_commands.pop(0)
            try:
                await command.execute(self, when, o)
            except Exception as exc:
                await self.run.report(exc, f"position command {type(command).__name__} on {self.symbol}")


def _exchange_close(fill: ExchangeFill | None, row: SignalRow, price: float, when: int) -> CloseDecision:
    """How a position the exchange closed is booked: at the exchange's fill price and time (and reason)
    when the broker reported them, else at the current price as "closed"."""
    if fill is None:
        return CloseDecision("closed", price, when)
    reason = fill.reason if fill.reason in CLOSE_REASONS else "closed"
    at = fill.time if fill.time is not None and (row.pending_at or 0) <= fill.time <= when else when
    return CloseDecision(reason, fill.price, at)  # type: ignore[arg-type]


def _signal_of(row: SignalRow) -> Any:
    from btkit.model import Signal

    return Signal(
        position=row.position,
        price_take_profit=row.take_profit,
        price_stop_loss=row.stop_loss,
        minute_estimated_time=row.minute_estimated_time,
        price_open=row.price_open,
        cost=row.cost,
        id=row.id,
        note=row.note,
        multiplier=row.multiplier,
        isolated=row.isolated,
    )


__all__: Sequence[str] = ("StrategyInstance",)
