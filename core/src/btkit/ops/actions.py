"""Actions: named per-strategy event sinks (docs/actions.md), isolated from trading.

A strategy lists actions by name (``add_strategy(..., actions=["telegram"])``, or ``btkit paper --action
telegram`` for every strategy of the run); plugins offer them through ``btkit_actions``. The dispatcher is
an event tap (:func:`btkit.events.add_tap`): for every event of a strategy it only *enqueues* the event on
the bounded queue of each of its actions and returns. One worker thread per (action, strategy) calls the
handler; a call that raises, runs past the action's time limit, or an event dropped because the queue is
full is reported on ``listen_error`` — trading never waits for an action and never sees its failures.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import contextlib
import inspect
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import attrs

from btkit import events
from btkit.components import ActionSpec
from btkit.errors import BtkitError, ConfigError
from btkit.events import ErrorEvent
from btkit.hookspecs import hookimpl

log = logging.getLogger("btkit.actions")

#: which handler method receives which stream (``signal_backtest`` / ``signal_live`` repeat ``signal``)
METHOD_OF_STREAM: dict[str, str] = {
    "signal": "on_signal",
    "active_ping": "on_ping",
    "schedule_ping": "on_ping",
    "idle_ping": "on_ping",
    "partial_profit_available": "on_partial",
    "partial_loss_available": "on_partial",
    "breakeven_available": "on_breakeven",
    "risk": "on_risk_rejected",
    "error": "on_error",
    "done_backtest": "on_stop",
    "done_live": "on_stop",
}
#: consecutive time-outs after which an action is switched off for the rest of the process
MAX_TIMEOUTS = 3
ERROR_PREFIX = "action "


class ActionError(BtkitError):
    """An action failed, ran past its time limit or dropped events (reported on ``listen_error``)."""


@attrs.frozen(kw_only=True)
class ActionStart:
    """What ``on_start`` receives: the first event of ``strategy_name`` reached this action."""

    action_name: str
    strategy_name: str
    symbol: str
    backtest: bool


@attrs.frozen(kw_only=True)
class BrokerOutcome:
    """What ``on_broker`` receives: a broker call that did not confirm (live only)."""

    method: str
    symbol: str
    strategy_name: str
    signal_id: str
    verdict: str  # "transient", "rejected" or "deleted"
    error: BaseException


#: methods whose events may be dropped when an action falls behind (one per candle); every other event
#: (signals, start/stop, risk, broker, errors) evicts the oldest droppable event instead
DROPPABLE = frozenset({"on_ping", "on_partial", "on_breakeven"})


class _Worker:
    """One handler of one (action, strategy): a bounded buffer, a thread, a time limit per call."""

    def __init__(self, hub: ActionHub, spec: ActionSpec, strategy: str, handler: Any) -> None:
        self.hub, self.spec, self.strategy, self.handler = hub, spec, strategy, handler
        self.items: collections.deque[tuple[str, Any] | None] = collections.deque()
        self.cond = threading.Condition()
        self.unfinished = 0
        self.dropped = 0
        self.timeouts = 0
        self.disabled = False
        self.started = False  # on_start offered (at the first event of the strategy)
        self._last_drop_report = 0.0
        self._runner = self._new_runner()
        self.thread = threading.Thread(
            target=self._serve, name=f"btkit-action-{spec.name}-{strategy}", daemon=True
        )
        self.thread.start()

    def _new_runner(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"btkit-action-{self.spec.name}")

    @property
    def where(self) -> str:
        return f"{ERROR_PREFIX}{self.spec.name} of strategy {self.strategy}"

    def offer(self, method: str, payload: Any) -> None:
        if self.disabled or not callable(getattr(self.handler, method, None)):
            return
        with self.cond:
            if len(self.items) >= self.spec.queue_size and not self._evict(method):
                self.dropped += 1
                dropped = self.dropped
            else:
                self.items.append((method, payload))
                self.unfinished += 1
                self.cond.notify()
                return
        now = time.monotonic()
        if now - self._last_drop_report >= 1.0:  # one report a second, with the running count
            self._last_drop_report = now
            self.hub.report(
                ActionError(
                    f"queue full ({self.spec.queue_size} events waiting): {dropped} event(s) dropped so "
                    "far; the action is slower than the events — make its methods return quickly or "
                    "raise queue_size"
                ),
                self.where,
            )

    def _evict(self, method: str) -> bool:
        """Make room for a non-droppable event by dropping the oldest droppable one queued."""
        if method in DROPPABLE:
            return False
        for i, item in enumerate(self.items):
            if item is not None and item[0] in DROPPABLE:
                del self.items[i]
                self.unfinished -= 1
                self.dropped += 1
                return True
        return False

    def close(self) -> None:
        with self.cond:
            self.disabled = True
            self.items.append(None)
            self.cond.notify()
        close = getattr(self.handler, "close", None)  # optional: release threads and connections
        if callable(close):
            try:
                close()
            except Exception as exc:
                log.warning("%s: close raised %s: %s", self.where, type(exc).__name__, exc)

    def _serve(self) -> None:
        while True:
            with self.cond:
                while not self.items:
                    self.cond.wait()
                item = self.items.popleft()
            if item is None:
                return
            try:
                self._call(*item)
            finally:
                with self.cond:
                    self.unfinished -= 1
                    self.cond.notify_all()

    def _call(self, method: str, payload: Any) -> None:
        fn = getattr(self.handler, method)
        limit = self.spec.timeout_seconds
        future = self._runner.submit(_invoke, fn, payload, limit)
        try:
            future.result(timeout=limit)
            self.timeouts = 0
        except concurrent.futures.TimeoutError:
            # the stuck call keeps its thread until it returns; the next events get a fresh one
            self._runner.shutdown(wait=False)
            self._runner = self._new_runner()
            self.timeouts += 1
            note = ""
            if self.timeouts >= MAX_TIMEOUTS:
                self.disabled = True
                note = f"; {MAX_TIMEOUTS} time-outs in a row: the action is switched off for this process"
            self.hub.report(
                ActionError(f"{method} ran past its time limit of {limit:g}s and was abandoned{note}"),
                self.where,
            )
        except Exception as exc:
            self.hub.report(exc, f"{self.where}: {method} raised")


def _invoke(fn: Any, payload: Any, limit: float) -> None:
    out = fn(payload)
    if inspect.isawaitable(out):

        async def bounded() -> None:
            await asyncio.wait_for(out, limit)

        asyncio.run(bounded())


class ActionHub:
    """The process-wide dispatcher: routes each strategy's events to its actions' workers."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.workers: dict[tuple[str, str], _Worker] = {}
        #: actions attached to every strategy of this process (``btkit paper --action NAME``)
        self.extra: tuple[str, ...] = ()
        #: options per action name, passed to ``factory(**options)`` (``[actions.<name>]`` in btkit.toml)
        self.options: dict[str, dict[str, Any]] = {}
        self._plugin_actions: dict[str, ActionSpec] | None = None
        self._plugin_strategies: dict[str, Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.failed: set[tuple[str, str]] = set()

    # ------------------------------------------------------------ resolution
    def _plugins(self) -> tuple[dict[str, ActionSpec], dict[str, Any]]:
        if self._plugin_actions is None or self._plugin_strategies is None:
            from btkit.plugins import collect_components, get_plugin_manager

            comps = collect_components(get_plugin_manager())
            self._plugin_actions = dict(comps.by_kind.get("action", {}))
            self._plugin_strategies = dict(comps.by_kind.get("strategy", {}))
        return self._plugin_actions, self._plugin_strategies

    def action_names(self, strategy: Any) -> tuple[str, ...]:
        """The actions of ``strategy`` (a StrategySpec or its name), plus the process-wide ones."""
        names: tuple[str, ...] = tuple(getattr(strategy, "actions", ()))
        if isinstance(strategy, str):
            from btkit.registry import CODE

            spec = CODE.strategies.get(strategy)
            if spec is None and _any_plugin_action_possible():
                spec = self._plugins()[1].get(strategy)
            names = tuple(spec.actions) if spec is not None else ()
        return tuple(dict.fromkeys((*names, *self.extra)))

    def spec(self, name: str) -> ActionSpec:
        from btkit.registry import CODE

        spec = CODE.actions.get(name) or self._plugins()[0].get(name)
        if spec is None:
            self._plugin_actions = None  # a plugin registered since: look once more
            spec = self._plugins()[0].get(name)
        if spec is None:
            known = sorted({*CODE.actions, *self._plugins()[0]})
            raise ConfigError(
                f"no action named {name!r} is registered (known: {', '.join(known) or 'none'}); "
                "install its plugin (e.g. btkit-telegram) or add_action() it"
            )
        return spec

    def want(self, stream: str, strategy: Any) -> bool:
        if not self.extra and not getattr(strategy, "actions", ()):
            return False  # the common case, on every tick: no action attached
        method = METHOD_OF_STREAM.get(stream)
        if method is None:
            return False
        for name in self.action_names(strategy):
            try:
                spec = self.spec(name)
            except ConfigError:
                continue
            target = spec.handler if spec.handler is not None else None
            if target is None or callable(getattr(target, method, None)):
                return True  # a factory-built handler: assume it wants the stream (the tap filters)
        return False

    def _worker(self, name: str, strategy: str, first: Any) -> _Worker | None:
        key = (name, strategy)
        worker = self.workers.get(key)
        if worker is not None and worker.started:
            return worker
        if key in self.failed:
            return None
        with self.lock:
            worker = self.workers.get(key)
            if worker is None:
                try:
                    worker = self._build(name, strategy)
                except Exception as exc:
                    self.failed.add(key)  # reported once; the strategy trades on without the action
                    self.report(exc, f"{ERROR_PREFIX}{name} of strategy {strategy}: cannot start")
                    return None
            if not worker.started:
                worker.started = True
                worker.offer(
                    "on_start",
                    ActionStart(
                        action_name=name,
                        strategy_name=strategy,
                        symbol=getattr(first, "symbol", ""),
                        backtest=bool(getattr(first, "backtest", False)),
                    ),
                )
            return worker

    def _build(self, name: str, strategy: str) -> _Worker:
        spec = self.spec(name)
        handler = spec.handler
        if handler is None:
            assert spec.factory is not None
            handler = spec.factory(**self.options.get(name, {}))
        worker = self.workers[(name, strategy)] = _Worker(self, spec, strategy, handler)
        return worker

    def prepare(self, strategy: str) -> None:
        """Build the handlers of ``strategy``'s actions now, raising what a factory raises (the CLI
        refuses a bad option before the run instead of reporting it at the first event)."""
        with self.lock:
            for name in self.action_names(strategy):
                if (name, strategy) not in self.workers:
                    self._build(name, strategy)

    # ------------------------------------------------------------ the tap
    def tap(self, stream: str, payload: Any) -> None:
        method = METHOD_OF_STREAM.get(stream)
        if method is None:
            return
        if method == "on_error":
            if str(getattr(payload, "where", "")).startswith(ERROR_PREFIX):
                return  # an action's own failure is never fed back to actions (no loops)
            for worker in list(self.workers.values()):
                worker.offer(method, payload)
            return
        strategy = getattr(payload, "strategy_name", None)
        if not strategy or (not self.extra and not self._may_have_actions(strategy)):
            return
        self._remember_loop()
        for name in self.action_names(strategy):
            worker = self._worker(name, strategy, payload)
            if worker is not None:
                worker.offer(method, payload)

    def broker(self, outcome: BrokerOutcome) -> None:
        if not self.extra and not self._may_have_actions(outcome.strategy_name):
            return
        self._remember_loop()
        for name in self.action_names(outcome.strategy_name):
            worker = self._worker(name, outcome.strategy_name, outcome)
            if worker is not None:
                worker.offer("on_broker", outcome)

    def _may_have_actions(self, strategy: str) -> bool:
        from btkit.registry import CODE

        spec = CODE.strategies.get(strategy)
        if spec is not None:
            return bool(spec.actions)
        return _any_plugin_action_possible()

    def _remember_loop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop = asyncio.get_running_loop()

    # ------------------------------------------------------------ reporting and shutdown
    def report(self, exc: BaseException, where: str) -> None:
        """Put an action's failure on ``listen_error`` (from a worker thread), on the engine's loop
        when it still runs, else right here."""
        log.warning("%s: %s: %s", where, type(exc).__name__, exc, extra={"btkit_error_event": True})
        event = ErrorEvent(exc, where)
        loop = self.loop
        if loop is not None and loop.is_running() and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(events.emit("error", event), loop)
                return
            except RuntimeError:
                pass
        try:
            asyncio.run(events.emit("error", event))
        except RuntimeError:  # called on a thread with a running loop: log only
            log.warning("could not deliver the action error to listen_error: %s", where)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event was handled (or ``timeout``); True when all queues are empty."""
        deadline = time.monotonic() + timeout
        for worker in list(self.workers.values()):
            while worker.unfinished > 0 and not worker.disabled:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.01)
        return True

    def reset(self) -> None:
        """Forget the workers and settings (tests; a fresh CLI run)."""
        with self.lock:
            for worker in self.workers.values():
                worker.close()
            self.workers.clear()
            self.extra = ()
            self.options = {}
            self._plugin_actions = self._plugin_strategies = None
            self.failed.clear()


def _any_plugin_action_possible() -> bool:
    """Whether a strategy not registered in code could carry actions: only when some installed plugin
    offers strategies (checked lazily once; plugin strategies with ``actions`` are rare)."""
    return HUB._plugin_strategies is None or bool(HUB._plugin_strategies)


HUB = ActionHub()
events.add_tap(HUB.tap)
events.add_want(HUB.want)


def use_actions(names: Sequence[str], options: dict[str, dict[str, Any]] | None = None) -> None:
    """Attach ``names`` to every strategy of this process and set the factories' options (the CLI's
    ``--action`` and ``[actions]``); unknown names are refused now (``ConfigError``)."""
    for name in names:
        HUB.spec(name)
    HUB.extra = tuple(dict.fromkeys(names))
    HUB.options = {k: dict(v) for k, v in (options or {}).items()}


def drain_actions(timeout: float = 10.0) -> bool:
    """Wait (up to ``timeout`` seconds) until every action handled the events queued so far."""
    return HUB.drain(timeout)


atexit.register(HUB.drain, 10.0)


# ---------------------------------------------------------------- broker outcomes (a built-in plugin)
@hookimpl
def btkit_commit_failed(call: Any, error: BaseException, verdict: str) -> None:
    p = call.payload
    HUB.broker(
        BrokerOutcome(
            method=call.method,
            symbol=p.symbol,
            strategy_name=p.strategy_name,
            signal_id=p.signal_id,
            verdict=verdict,
            error=error,
        )
    )
