"""The live driver (30-live.md): the same instance tick, driven by a clock, with persistence and a broker.

One :class:`LiveSession` per process owns an event loop on a background thread, the plugin manager,
the persistence backend (opened exclusively: a second live process on the same state refuses to
start), the broker gate and the portfolio-wide risk book. Every ``Live.run`` / ``Live.background`` is a
task on that loop, so many symbols × strategies tick concurrently and share risk. A raising tick is
reported on ``listen_error`` and retried next minute; it never ends the loop.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from btkit import events
from btkit.broker import Broker, BrokerGate
from btkit.config import get_config
from btkit.context import iso
from btkit.engine.backtest import Done
from btkit.engine.clock import ReplayClock, WallClock
from btkit.engine.instance import StrategyInstance
from btkit.engine.run import Run
from btkit.errors import (
    BtkitError,
    CorruptStateError,
    OrderRejectedError,
    PersistenceError,
    StateLockedError,
)
from btkit.model import Cancelled, Closed, Idle, Opened, TickResult
from btkit.persist.state import BackendStore
from btkit.plugins import check_factory_options, collect_components, get_plugin_manager, require_loaded
from btkit.risk import RiskBook

log = logging.getLogger("btkit.live")
EVENT_LIST_MAX = 10_000


@attrs.define
class LiveSettings:
    """What the next live session uses; set by ``use_persistence``, ``Broker.*`` and the CLI."""

    persistence: str = "file"
    persistence_options: dict[str, Any] = attrs.Factory(lambda: {"root": "./dump"})
    broker: str | None = None
    broker_options: dict[str, Any] = attrs.Factory(dict)
    broker_timeout_seconds: float = 60.0
    extra_risks: tuple[str, ...] = ()


SETTINGS = LiveSettings()
REJECTIONS: collections.deque[Any] = collections.deque(maxlen=EVENT_LIST_MAX)  # risk rejections, for reports


def use_persistence(name: str, **options: Any) -> None:
    """Select the persistence backend (``file``, ``sqlite``, ``redis``, …) for live runs in this process."""
    if _session is not None:
        raise PersistenceError("a live session is running; choose the persistence backend before it starts")
    SETTINGS.persistence = name
    SETTINGS.persistence_options = dict(options) if options or name != "file" else {"root": "./dump"}


class LiveSession:
    def __init__(self) -> None:
        self.pm = get_plugin_manager()
        self.components = collect_components(self.pm)
        for problem in self.components.problems:
            log.warning("plugin problem: %s", problem)
        backend_spec = self.components.get("persistence", SETTINGS.persistence)
        require_loaded(self.pm, backend_spec.dist)
        broker_spec = self.components.get("broker", Broker.selected_name(SETTINGS.broker))
        require_loaded(self.pm, broker_spec.dist)
        check_factory_options("persistence", backend_spec, SETTINGS.persistence_options)
        check_factory_options("broker", broker_spec, SETTINGS.broker_options)
        self.backend = backend_spec.factory(**SETTINGS.persistence_options)
        self.backend.open(exclusive=True)  # StateLockedError when another live process owns it
        try:
            self.broker = broker_spec.factory(**self._broker_options(broker_spec))
            self.store = BackendStore(self.pm, self.backend)
            self.gate = BrokerGate(self.pm, self.broker, timeout_seconds=SETTINGS.broker_timeout_seconds)
            self.risk = RiskBook(self.components.by_kind["risk"], hook=self.pm.hook.btkit_risk_check)
            self.cfg = get_config()
            self.runs: dict[int, Run] = {}
            self.handles: list[LiveHandle] = []
            self._broker_start: asyncio.Future[None] | None = None
            self._refusal_reported = False
            #: set once this process lost the ownership of the state (a lease that expired while the
            #: process was frozen): every run of the session stops, nothing more is written
            self.lost: StateLockedError | None = None
            self.loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._serve, name="btkit-live", daemon=True)
            self._thread.start()
        except BaseException:
            self.backend.close()
            raise

    def _broker_options(self, spec: Any) -> dict[str, Any]:
        """The configured options, plus ``expected_positions`` (what the persisted state holds per symbol:
        "long"/"short", or None for a resting entry or an action in flight) for brokers that reconcile."""
        options = dict(SETTINGS.broker_options)
        try:
            params = inspect.signature(spec.factory).parameters
        except (TypeError, ValueError):
            return options
        if "expected_positions" in params:  # named explicitly: the broker reconciles at start-up
            options["expected_positions"] = expected_positions(BackendStore(self.pm, self.backend))
        return options

    async def broker_started(self) -> None:
        """Initialise the broker once, before any run of this session ticks (``wait_for_init``: connect,
        start-up reconciliation against ``expected_positions``). A definitive refusal
        (``OrderRejectedError``, e.g. exchange positions the persisted state does not know) is raised to
        every run: none of them trades. Anything else (a timeout, a network error) is logged; the gate
        tries the initialisation again before the first broker call."""
        if self._broker_start is None:
            self._broker_start = asyncio.ensure_future(self._start_broker())
            # retrieved here too, so a refusal nobody waits for any more is not logged as unhandled
            self._broker_start.add_done_callback(lambda f: f.cancelled() or f.exception())
        await asyncio.shield(self._broker_start)

    async def _start_broker(self) -> None:
        try:
            await asyncio.wait_for(self.gate._init(), self.gate.timeout)
        except OrderRejectedError:
            raise
        except Exception as exc:
            log.warning(
                "broker start-up did not complete (%s: %s); it is tried again before the first broker call",
                type(exc).__name__,
                exc,
            )

    def lost_ownership(self) -> StateLockedError | None:
        """Why this session no longer owns its state, if it does not (the backend's ``lock_lost``, or
        a write refused with ``StateLockedError``)."""
        if self.lost is None:
            lost = getattr(self.backend, "lock_lost", None)
            if isinstance(lost, StateLockedError):
                self.lost = lost
        return self.lost

    def first_refusal_report(self) -> bool:
        """True once per session: the start-up refusal is reported by the first run that sees it."""
        first, self._refusal_reported = not self._refusal_reported, True
        return first

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run_for(self, clock: Any) -> Run:
        run = self.runs.get(id(clock))
        if run is None:
            run = Run(
                pm=self.pm,
                components=self.components,
                cfg=self.cfg,
                backtest=False,
                store=self.store,
                gate=self.gate,
                now_ms=clock.now_ms,
                risk=self.risk,
                extra_risks=SETTINGS.extra_risks,
            )
            run.rejections = REJECTIONS  # type: ignore[assignment]  # outlives the session, for Live.dump
            self.runs[id(clock)] = run
        return run

    def refresh_components(self) -> None:
        """Pick up components registered since the session started (``add_strategy("B")`` after
        ``Live.background(..., "A")``): scripts and agent loops register and start one after another.
        A name registered again replaces the old record for the instances started from now on."""
        fresh = collect_components(self.pm)
        for kind, table in fresh.by_kind.items():
            self.components.by_kind.setdefault(kind, {}).update(table)
        self.risk.profiles.update(fresh.by_kind.get("risk", {}))

    def instance(self, clock: Any, symbol: str, strategy: str, exchange: str) -> StrategyInstance:
        self.refresh_components()
        for run in self.runs.values():
            if run.find(symbol, strategy) is not None and run is not self.runs.get(id(clock)):
                raise PersistenceError(f"{strategy} on {symbol} already runs live in this process")
        return self.run_for(clock).instance(symbol, strategy, exchange)

    def find(self, symbol: str, strategy: str) -> StrategyInstance | None:
        for run in self.runs.values():
            inst = run.find(symbol, strategy)
            if inst is not None:
                return inst
        return None

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def finished(self, handle: LiveHandle) -> None:
        close_session(self)

    def close(self) -> None:
        try:
            runs = list(self.runs.values())
            if self.loop.is_running():

                async def close_connections() -> None:
                    for run in runs:
                        await run.aclose()
                    await self._close_broker()

                try:
                    asyncio.run_coroutine_threadsafe(close_connections(), self.loop).result(10)
                except Exception as exc:
                    log.warning("closing exchanges and the broker failed: %s", exc)
            self.backend.close()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)

    async def _close_broker(self) -> None:
        """Release a broker that is an async context manager (``__aexit__``, e.g. a ccxt-based broker
        holding an HTTP session), on the loop its calls ran on. A plain ``close`` method is not called:
        on a broker that name could mean closing positions."""
        exit_ = getattr(self.broker, "__aexit__", None)
        if exit_ is None:
            return
        try:
            out = exit_(None, None, None)
            if inspect.isawaitable(out):
                await out
        except Exception as exc:  # closing must never mask the run's own outcome
            log.warning("closing the broker failed: %s", exc)


def expected_positions(store: BackendStore) -> dict[str, str | None]:
    """Per symbol, what the persisted live state says the exchange should hold (read before trading)."""
    out: dict[str, str | None] = {}
    for domain in ("signal", "schedule", "strategy"):
        for key in store.backend.keys(domain):
            if len(key) != 2:
                continue
            state, _ = store.load_sync(key)
            symbol = key[1]
            if state.pending is not None:
                out[symbol] = state.pending.position
            elif state.scheduled is not None or state.strategy.intent is not None:
                out.setdefault(symbol, None)
    return out


_session: LiveSession | None = None
_session_lock = threading.RLock()  # also held by Live._start while a handle joins the session


def session() -> LiveSession:
    global _session
    with _session_lock:
        if _session is None:
            _session = LiveSession()
        return _session


def close_session(only: LiveSession | None = None) -> None:
    """Release the state lock and stop the live loop thread (after every live run ended). With ``only``:
    close that session if it is still the current one and every run in it has ended."""
    global _session
    with _session_lock:
        if only is not None and (_session is not only or not all(h.done for h in only.handles)):
            return
        if _session is not None:
            current, _session = _session, None
            current.close()


class LiveHandle:
    """A running live instance: ``stop()`` (graceful), ``kill()``, ``join()``, ``event_list``."""

    def __init__(
        self, sess: LiveSession, inst: StrategyInstance, clock: Any, sink: Callable[[TickResult], None] | None
    ) -> None:
        self.session = sess
        self.instance = inst
        self.clock = clock
        self.sink = sink
        self.event_list: collections.deque[TickResult] = collections.deque(maxlen=EVENT_LIST_MAX)
        self.error: BaseException | None = None
        self._hard_stop: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None  # a graceful stop wakes the clock wait: idle runs end at once
        self._finished = threading.Event()
        sess.handles.append(self)
        self.future = sess.submit(self._loop())

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def stop(self) -> None:
        """Graceful: no new signals; a resting entry is cancelled; an open position runs to TP/SL/expiry.
        With nothing open the run ends at once, without waiting for the next minute."""
        self.instance.stop_requested = True
        if self._wake is not None:
            self.session.loop.call_soon_threadsafe(self._wake.set)

    __call__ = stop

    def kill(self) -> None:
        """Stop ticking at once (state on disk stays consistent; positions stay open)."""
        self.instance.stop_requested = True
        if self._hard_stop is not None:
            self.session.loop.call_soon_threadsafe(self._hard_stop.set)
        if self._wake is not None:
            self.session.loop.call_soon_threadsafe(self._wake.set)

    def join(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    async def _resume_point(self) -> int | None:
        """Load persisted state first: a restarted run (a replay starting over, or the wall clock in
        the same minute) must not tick minutes whose effects are already persisted."""
        try:
            await self.instance.ensure_loaded()
        except CorruptStateError:
            raise
        except Exception:
            return None  # e.g. a transient read error: the first tick loads again and reports it
        if isinstance(self.clock, WallClock):
            refuse_future_state(self.instance, self.clock.now_ms())
        return self.instance.resume_after()

    async def _broker_ready(self) -> bool:
        """Wait for the session's broker start-up (raises its refusal); False after a hard stop."""
        assert self._hard_stop is not None
        started = asyncio.ensure_future(self.session.broker_started())
        stopped = asyncio.ensure_future(self._hard_stop.wait())
        try:
            await asyncio.wait({started, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not started.done():
            started.cancel()  # the start-up itself goes on for the other runs (shielded)
            return False
        started.result()
        return True

    async def _loop(self) -> None:
        inst, clock = self.instance, self.clock
        run = inst.run
        self._hard_stop = asyncio.Event()
        self._wake = wake = asyncio.Event()
        if inst.stop_requested:  # stopped before the loop started
            wake.set()
        pid = clock.register()
        last: int | None = None
        where = f"live {inst.strategy.name} on {inst.symbol}"
        try:
            last = await self._resume_point()
            try:
                if not await self._broker_ready():
                    return
            except OrderRejectedError as exc:  # refused at start-up: this run never ticks
                self.error = exc
                if self.session.first_refusal_report():
                    await run.report(exc, "live start-up: the broker refuses to trade", fatal=True)
                return
            while True:
                when = await clock.next_tick(pid, last, wake)
                if self._hard_stop.is_set():
                    break
                if when is None:
                    if not (wake.is_set() and wake is not self._hard_stop):
                        break  # the replay is over
                    st = inst.state  # a graceful stop between two ticks
                    if st.pending is None and st.scheduled is None and st.strategy.intent is None:
                        break  # nothing open, nothing resting: no minute to wait for
                    wake = self._hard_stop  # an open position: keep ticking until it closes
                    continue
                lost = self.session.lost_ownership()
                if lost is not None:  # another process owns the state now: stop, write nothing
                    self.error = lost
                    await run.report(lost, where, fatal=True)
                    break
                last = when
                try:
                    result = await inst.tick(when)
                except CorruptStateError as exc:
                    self.error = exc
                    await run.report(exc, where, fatal=True)
                    break
                except StateLockedError as exc:  # a fenced write refused: this process lost the lock
                    self.session.lost = self.session.lost or exc
                    self.error = exc
                    await run.report(exc, where, fatal=True)
                    break
                except Exception as exc:
                    await run.report(exc, f"{where}: tick at {iso(when)} failed; retrying next minute")
                    continue
                self.event_list.append(result)
                if self.sink is not None and isinstance(result, (Opened, Closed, Cancelled)):
                    self.sink(result)
                if isinstance(result, (Closed, Cancelled)):
                    # close, then decide, within one instant (10-lifecycle.md §3.1)
                    try:
                        decided = await inst.decide_after_close(when)
                    except CorruptStateError as exc:
                        self.error = exc
                        await run.report(exc, where, fatal=True)
                        break
                    except Exception as exc:
                        await run.report(exc, f"{where}: decision at {iso(when)} failed; retrying next minute")
                        continue
                    if decided is not None:
                        result = decided
                        self.event_list.append(result)
                        if self.sink is not None and isinstance(result, (Opened, Closed, Cancelled)):
                            self.sink(result)
                st = inst.state
                if (
                    inst.stop_requested
                    and isinstance(result, Idle)
                    and st.pending is None
                    and st.scheduled is None
                ):
                    break
        except Exception as exc:  # never kill the process
            self.error = exc
            await run.report(exc, where, fatal=True)
        finally:
            clock.unregister(pid)
            await events.emit(
                "done_live",
                Done(
                    symbol=inst.symbol,
                    strategy_name=inst.strategy.name,
                    exchange_name=inst.exchange_name,
                    frame_name="",
                    backtest=False,
                    error=self.error,
                ),
            )
            self._finished.set()
            if self.sink is not None:
                self.sink(_END)
            threading.Thread(target=self.session.finished, args=(self,), daemon=True).start()


_END: Any = object()

#: How far a persisted time may be ahead of the wall clock (clock skew between two hosts, say).
FUTURE_SKEW_MS = 5 * 60_000


def refuse_future_state(inst: StrategyInstance, now: int) -> None:
    """On the wall clock, a persisted time later than now (beyond :data:`FUTURE_SKEW_MS`) means the
    document was edited or the clock stepped back since it was written: the runner would silently
    skip every minute up to it (an open position unmonitored). Refuse to start, naming the document."""
    from datetime import UTC, datetime

    from btkit.persist.file import describe

    st = inst.state
    key = (inst.strategy.name, inst.symbol)
    found: list[tuple[str, str, int]] = []
    if st.strategy.last_tick is not None:
        found.append(("strategy", "last_tick", st.strategy.last_tick))
    if st.strategy.intent is not None and st.strategy.intent.time is not None:
        found.append(("strategy", "intent.time", st.strategy.intent.time))
    for domain, row in (("signal", st.pending), ("schedule", st.scheduled)):
        if row is not None:
            found.append((domain, "scheduled_at", row.scheduled_at))
            if row.pending_at is not None:
                found.append((domain, "pending_at", row.pending_at))
    for domain, field, value in found:
        if value > now + FUTURE_SKEW_MS:

            def iso(ms: int) -> str:
                return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")

            raise CorruptStateError(
                f"state document {describe(domain, key)} has {field} {iso(value)}, later than now "
                f"({iso(now)}): the clock stepped back or the document was edited; fix the system clock, "
                "or correct that document, then restart (nothing was traded)"
            )


class LiveStream:
    """``Live.run``'s result: a never-ending (until stopped / replay end) iterator, sync or async."""

    def __init__(self, start: Callable[[Callable[[Any], None]], LiveHandle]) -> None:
        self._start = start
        self.handle: LiveHandle | None = None

    def __iter__(self) -> Iterator[TickResult]:
        q: queue.Queue[Any] = queue.Queue()
        self.handle = self._start(q.put)
        try:
            while True:
                item = q.get()
                if item is _END:
                    if isinstance(self.handle.error, (CorruptStateError, StateLockedError)):
                        raise self.handle.error
                    return
                yield item
        finally:
            if not self.handle.done:
                self.handle.stop()

    async def __aiter__(self) -> AsyncIterator[TickResult]:
        loop = asyncio.get_running_loop()
        aq: asyncio.Queue[Any] = asyncio.Queue()
        self.handle = self._start(lambda item: loop.call_soon_threadsafe(aq.put_nowait, item))
        try:
            while True:
                item = await aq.get()
                if item is _END:
                    return
                yield item
        finally:
            if not self.handle.done:
                self.handle.stop()


class Live:
    """Live runner: same registrations as the backtest, the wall clock (or a replay clock), no frame."""

    @staticmethod
    def _start(
        symbol: str, strategy: str, exchange: str, clock: Any, sink: Any, params: Any = None
    ) -> LiveHandle:
        from btkit.params import resolve_params
        from btkit.persist.keys import encode_key

        encode_key((strategy, symbol))  # a name that cannot be stored is refused now, not every minute
        with _session_lock:  # the session cannot close between joining it and registering the handle
            sess = session()
            clock = clock if clock is not None else WallClock()
            inst = sess.instance(clock, symbol, strategy, exchange)
            if params:  # docs/parameters.md: this instance's values
                inst.params = resolve_params(inst.strategy.name, inst.strategy.params, params)
            return LiveHandle(sess, inst, clock, sink)

    @staticmethod
    def run(
        symbol: str,
        *,
        strategy: str,
        exchange: str,
        clock: WallClock | ReplayClock | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> LiveStream:
        """Iterate opened/closed/cancelled results as they happen (idle and active ticks suppressed);
        ``params`` overrides the strategy's declared parameters (docs/parameters.md)."""
        return LiveStream(lambda sink: Live._start(symbol, strategy, exchange, clock, sink, params))

    @staticmethod
    def background(
        symbol: str,
        *,
        strategy: str,
        exchange: str,
        clock: WallClock | ReplayClock | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> LiveHandle:
        """Start without blocking; the returned handle (callable) stops gracefully."""
        return Live._start(symbol, strategy, exchange, clock, None, params)

    @staticmethod
    def get_data(symbol: str, *, strategy: str, exchange: str) -> Any:
        """Statistics over every closed signal (history survives restarts) plus ``event_list``."""
        from btkit.stats import compute_statistics

        cfg = get_config()
        inst = _session.find(symbol, strategy) if _session is not None else None
        if inst is not None:
            closed = list(inst.history)
            handle = next((h for h in _session.handles if h.instance is inst), None) if _session else None
            event_list = list(handle.event_list) if handle else []
        else:
            closed, event_list = _read_history(symbol, strategy), []
        stats = compute_statistics(closed, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee)
        return attrs.evolve(stats, event_list=tuple(event_list))

    @staticmethod
    def dump(
        symbol: str,
        *,
        strategy: str,
        exchange: str,
        path: str | Path = "./dump/live",
        formats: Sequence[str] = ("md",),
    ) -> Path:
        """The live report (markdown; HTML and PNG per ``formats``) with the report family; its path."""
        data = Live.get_data(symbol, strategy=strategy, exchange=exchange)
        rejections = [r for r in REJECTIONS if r.symbol == symbol and r.strategy_name == strategy]
        try:
            return Live._dump(path, symbol, strategy, exchange, data, rejections, formats)
        except OSError as exc:  # ENOSPC, EACCES, ...: one line that says where
            import errno

            code = errno.errorcode.get(exc.errno or 0, "")
            raise BtkitError(
                f"cannot write the live report of {symbol!r} into {Path(path).absolute()}: "
                f"{exc.strerror or exc}{f' ({code})' if code else ''}; free space or choose another directory"
            ) from None

    @staticmethod
    def _dump(
        path: str | Path,
        symbol: str,
        strategy: str,
        exchange: str,
        data: Any,
        rejections: Any,
        formats: Sequence[str] = ("md",),
    ) -> Path:
        from btkit.engine.backtest import risk_section
        from btkit.market import wall_clock_ms
        from btkit.reporting.dump import dump_report, fetch_chart_candles
        from btkit.reporting.family import family_data

        cfg = get_config()
        family = family_data(
            list(data.closed), data.event_list, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee
        )
        candles = None
        if "html" in formats and data.closed:
            first = min(c.signal.scheduled_at for c in data.closed if c.signal is not None)
            candles = fetch_chart_candles(exchange, symbol, first, min(wall_clock_ms(), data.last_timestamp or 0))

        return dump_report(
            Path(path),
            f"Live {symbol} · {strategy} · {exchange}",
            data,
            symbol=symbol,
            strategy=strategy,
            exchange=exchange,
            frame="live",
            mode="live",
            ts_ms=wall_clock_ms(),
            sections=risk_section(rejections),
            formats=formats,
            family=family,
            rejections=rejections,
            candles=candles,
        )

    @staticmethod
    def shutdown() -> None:
        """Stop every live run at once and release the state directory (tests, embedding)."""
        with _session_lock:  # waits for a close already under way (the last run's own), so the state
            sess = _session  # lock (a Redis lease too) is released when this returns
        if sess is None:
            return
        for h in list(sess.handles):
            h.kill()
        for h in list(sess.handles):
            h.join(10)
        close_session()


def _read_history(symbol: str, strategy: str) -> list[Closed]:
    """History from the configured backend without taking the live lock (reports after a run)."""
    pm = get_plugin_manager()
    components = collect_components(pm)
    backend = components.get("persistence", SETTINGS.persistence).factory(**SETTINGS.persistence_options)
    backend.open(exclusive=False)
    try:
        return BackendStore(pm, backend).load_history((strategy, symbol))
    finally:
        backend.close()
