"""Shared parts of the broker tests: :class:`Engine`, a live strategy instance driven tick by tick.

``engine`` builds what the live runner builds for one strategy × symbol — a fresh plugin manager, a
real :class:`~btkit.engine.run.Run` and :class:`~btkit.engine.instance.StrategyInstance`, the real
:class:`~btkit.broker.BrokerGate` around the broker under test and the real file backend on
``tmp_path`` — but lets the test say when each minute's tick happens, so every assertion can sit
between two ticks. ``persisted()`` reads the documents back through a second backend over the same
directory, as a restarted process would; ``crash_and_restart()`` drops the instance and builds a new
one over the same directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from btkit import listen_error
from btkit.broker import BrokerGate
from btkit.config import get_config
from btkit.engine import live
from btkit.engine.instance import StrategyInstance
from btkit.engine.run import ErrorEvent, Run
from btkit.engine.state import InstanceState
from btkit.errors import OrderRejectedError
from btkit.model import MINUTE_MS, Closed, TickResult
from btkit.persist.file import FileBackend
from btkit.persist.state import BackendStore
from btkit.plugins import collect_components, get_plugin_manager
from btkit.risk import PORTFOLIO

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
SYMBOL = "BTCUSDT"
EXCHANGE = "prices"
STRATEGY = "s"
OPEN, CLOSE, CANCEL = "on_signal_open_commit", "on_signal_close_commit", "on_signal_cancel_commit"


def path(*segments: tuple[float, int]) -> list[float]:
    """Closes minute by minute: ``path((100, 10), (104, 30))`` is 10 minutes at 100, then 30 at 104."""
    out: list[float] = []
    for price, minutes in segments:
        out.extend([float(price)] * minutes)
    return out


@attrs.frozen(eq=False)
class Snapshot:
    """What the engine keeps for one instance: its state, its history and the risk slots it holds
    (``{risk profile: ((strategy, symbol, signal id), ...)}``)."""

    state: InstanceState
    history: tuple[Closed, ...]
    risk: dict[str, tuple[tuple[str, str, str], ...]]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and not differences(self, other)

    def __hash__(self) -> int:
        return hash(self.history)

    def __repr__(self) -> str:
        return (
            f"Snapshot(pending={self.state.pending is not None}, scheduled={self.state.scheduled is not None}, "
            f"intent={self.state.strategy.intent and self.state.strategy.intent.attempt}, history={len(self.history)})"
        )


def snapshot(inst: StrategyInstance, names: Sequence[str]) -> Snapshot:
    slots = {
        name: tuple(sorted((p.strategy_name, p.symbol, p.signal_id) for p in inst.run.risk.snapshot(name)))
        for name in names
    }
    return Snapshot(inst.state, tuple(inst.history), slots)


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Field-by-field differences between two attrs records (for readable assertion messages)."""
    if type(a) is type(b) and attrs.has(type(a)):
        out: list[str] = []
        for f in attrs.fields(type(a)):
            out += differences(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
        return out
    return [] if a == b else [f"{where or 'value'}: {a!r} != {b!r}"]


def without_unwritten_bucket(snap: Snapshot) -> Snapshot:
    """``snap`` without the interval bucket an idle tick consumed: kept in memory and written with the
    decision it leads to (so a crash repeats get_signal rather than losing a signal); disk may lag behind
    memory there, and only there. (Best/worst prices are written as soon as they change.)"""
    st = snap.state.strategy
    return attrs.evolve(snap, state=attrs.evolve(snap.state, strategy=attrs.evolve(st, last_bucket=None)))


def retried(snap: Snapshot, at: int) -> Snapshot:
    """``snap`` after one more failed attempt at minute ``at``: the in-flight intent's attempt counter
    one higher, the time of the attempt (a close's or cancel's ``intent.time``, the tick stamp
    ``last_tick``) moved to ``at`` — and nothing else changed."""
    intent = snap.state.strategy.intent
    assert intent is not None, "no intent in flight"
    again = attrs.evolve(intent, attempt=intent.attempt + 1, time=at if intent.time is not None else None)
    strategy = attrs.evolve(snap.state.strategy, intent=again, last_tick=at)
    return attrs.evolve(snap, state=attrs.evolve(snap.state, strategy=strategy))


class Engine:
    def __init__(
        self,
        root: Path,
        broker: Any,
        *,
        risks: Sequence[str] = (),
        backend_factory: Callable[[Path], FileBackend] = FileBackend,
    ) -> None:
        self.root = root
        self.broker = broker
        self.risk_names = (*risks, PORTFOLIO)
        self.backend_factory = backend_factory
        self.when = T0 + 5 * MINUTE_MS  # the first tick sees five closed candles
        self.last_tick: int | None = None
        self.loop = asyncio.new_event_loop()
        self.errors: list[ErrorEvent] = []
        self._unlisten = listen_error(self.errors.append)
        self.backend: FileBackend | None = None
        self.start()

    def start(self) -> None:
        """What a (re)started live process does: fresh plugins, open the state directory, load."""
        self.pm = get_plugin_manager()
        components = collect_components(self.pm)
        self.backend = self.backend_factory(self.root)
        self.backend.open(exclusive=True)
        self.gate = BrokerGate(self.pm, self.broker, timeout_seconds=live.SETTINGS.broker_timeout_seconds)
        self.run = Run(
            pm=self.pm,
            components=components,
            cfg=get_config(),
            backtest=False,
            store=BackendStore(self.pm, self.backend),
            gate=self.gate,
            now_ms=lambda: self.when,
        )
        self.inst = self.run.instance(SYMBOL, STRATEGY, EXCHANGE)
        self.loop.run_until_complete(self.inst.ensure_loaded())

    def tick(self) -> TickResult:
        """One live tick at the current minute; the clock then moves on by one minute."""
        when = self.when
        try:
            return self.loop.run_until_complete(self.inst.tick(when))
        finally:
            self.last_tick, self.when = when, when + MINUTE_MS

    def tick_until(self, done: Callable[[TickResult], bool], limit: int = 60) -> TickResult:
        for _ in range(limit):
            result = self.tick()
            if done(result):
                return result
        raise AssertionError(f"nothing happened within {limit} ticks")

    def crash_and_restart(self, broker: Any | None = None) -> None:
        """Drop the instance without any clean-up (as a crash would) and start over from disk."""
        assert self.backend is not None
        self.backend.close()
        if broker is not None:
            self.broker = broker
        self.start()

    # ------------------------------------------------------------ what the engine holds
    def memory(self) -> Snapshot:
        return snapshot(self.inst, self.risk_names)

    def persisted(self) -> Snapshot:
        """What a restarted process would hold: a second engine loads the documents from the same
        directory (through a second, non-exclusive backend) and rebuilds its state and risk slots."""
        reader = FileBackend(self.root)
        reader.open(exclusive=False)
        try:
            pm = get_plugin_manager(entrypoints=False)
            run = Run(
                pm=pm,
                components=collect_components(pm),
                cfg=get_config(),
                backtest=False,
                store=BackendStore(pm, reader),
                now_ms=lambda: self.when,
            )
            inst = run.instance(SYMBOL, STRATEGY, EXCHANGE)
            self.loop.run_until_complete(inst.ensure_loaded())
            return snapshot(inst, self.risk_names)
        finally:
            reader.close()

    def holds_slot(self, risk_name: str = PORTFOLIO) -> bool:
        return self.run.risk.holds(risk_name, STRATEGY, SYMBOL)

    def close(self) -> None:
        self._unlisten()
        if self.backend is not None:
            self.backend.close()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


class ScriptedBroker:
    """A broker plugin that keeps its own record of what it placed, by client order id — as a real
    broker must, so that a retry after an unknown outcome adopts the order instead of placing it twice —
    and misbehaves on the first ``times`` calls of ``method`` in the way ``how`` says."""

    def __init__(self, method: str = "", how: str = "", times: int = 1) -> None:
        self.method, self.how, self.times = method, how, times
        self.failures = 0
        self.placed: dict[str, str] = {}  # client order id -> method
        self.calls: list[tuple[str, str, int]] = []  # (method, client order id, attempt)

    async def _handle(self, method: str, p: Any) -> bool:
        self.calls.append((method, p.client_order_id, p.attempt))
        if p.client_order_id in self.placed:
            return True  # an earlier attempt went through: adopt it, never send it again
        if method == self.method and self.failures < self.times:
            self.failures += 1
            if self.how == "raise":
                raise RuntimeError("exchange API answered HTTP 502")
            if self.how == "reject":
                raise OrderRejectedError("exchange refused: insufficient margin")
            if self.how == "false":
                return False
            if self.how == "side_effect":
                self.placed[p.client_order_id] = method
                raise ConnectionError("connection reset after the order was sent")
            if self.how == "hang":
                await asyncio.sleep(3600)
        self.placed[p.client_order_id] = method
        return True

    async def on_signal_open_commit(self, p: Any) -> bool:
        return await self._handle(OPEN, p)

    async def on_signal_close_commit(self, p: Any) -> bool:
        return await self._handle(CLOSE, p)

    async def on_signal_cancel_commit(self, p: Any) -> bool:
        return await self._handle(CANCEL, p)

    async def on_partial_profit_commit(self, p: Any) -> bool:
        return await self._handle("on_partial_profit_commit", p)

    async def on_breakeven_commit(self, p: Any) -> bool:
        return await self._handle("on_breakeven_commit", p)

    def calls_of(self, method: str) -> list[tuple[str, int]]:
        return [(coid, attempt) for m, coid, attempt in self.calls if m == method]

    def placed_count(self, method: str) -> int:
        return sum(1 for m in self.placed.values() if m == method)
