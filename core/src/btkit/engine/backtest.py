"""The backtest driver (10-lifecycle.md §5): frame timestamps → ticks → the vectorised fast path.

For each frame timestamp it ticks the instance (the same tick live uses). When a tick opens or schedules
a signal, the instance resolves the whole signal over the following 1-minute candles in one numpy pass
(``engine.fastpath.resolve``), and the driver skips to the first frame timestamp strictly after
the close. Idle timestamps inside an already-used strategy-interval bucket are skipped without a tick
unless someone listens for idle pings — they could not do anything.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from btkit import events
from btkit.components import interval_ms
from btkit.config import get_config
from btkit.context import datetime_to_ms
from btkit.engine import arrays, fastpath
from btkit.engine.instance import StrategyInstance
from btkit.engine.run import Run
from btkit.engine.stream import ResultStream
from btkit.market import wall_clock_ms
from btkit.model import MINUTE_MS, Cancelled, Closed, Opened, Scheduled, TickResult
from btkit.plugins import collect_components, get_plugin_manager

log = logging.getLogger("btkit.backtest")


@attrs.frozen(kw_only=True)
class Progress:
    symbol: str
    strategy_name: str
    exchange_name: str
    frame_name: str
    total_frames: int
    processed_frames: int
    progress: float


@attrs.frozen(kw_only=True)
class Done:
    symbol: str
    strategy_name: str
    exchange_name: str
    frame_name: str
    backtest: bool
    error: BaseException | None = None


RunKey = tuple[str, str, str, str]
_results: dict[RunKey, list[TickResult]] = {}
_rejections: dict[RunKey, list[Any]] = {}
_params: dict[RunKey, dict[str, Any]] = {}  # the parameter values of the last run, shown in its report


async def emit_progress(inst: StrategyInstance, total: int, done: int) -> None:
    """A ``backtest_progress`` event: ``done`` of ``total`` frame timestamps of this instance processed."""
    await events.emit(
        "backtest_progress",
        Progress(
            symbol=inst.symbol,
            strategy_name=inst.strategy.name,
            exchange_name=inst.exchange_name,
            frame_name=inst.frame_name,
            total_frames=total,
            processed_frames=done,
            progress=done / total if total else 1.0,
        ),
    )


async def emit_done(inst: StrategyInstance, error: BaseException | None) -> None:
    """The ``done_backtest`` event that ends every instance's backtest, with its error if it failed."""
    await events.emit(
        "done_backtest",
        Done(
            symbol=inst.symbol,
            strategy_name=inst.strategy.name,
            exchange_name=inst.exchange_name,
            frame_name=inst.frame_name,
            backtest=True,
            error=error,
        ),
    )


def new_run(
    frame: str, risks: tuple[str, ...], params: Mapping[str, Mapping[str, Any]] | None = None
) -> tuple[Run, int, int, int]:
    """A backtest run over ``frame``: the Run (plugins, config, one risk book) and the frame's first
    timestamp, last timestamp (``frame_end``) and step, in ms (10-lifecycle.md §5)."""
    pm = get_plugin_manager()
    components = collect_components(pm)
    for problem in components.problems:
        log.warning("plugin problem: %s", problem)
    frame_spec = components.get("frame", frame)
    step = interval_ms(frame_spec.interval)
    start = (datetime_to_ms(frame_spec.start) // MINUTE_MS) * MINUTE_MS
    end = min(datetime_to_ms(frame_spec.end), wall_clock_ms())
    end = start + ((end - start) // step) * step if end >= start else start - step
    run = Run(
        pm=pm,
        components=components,
        cfg=get_config(),
        backtest=True,
        frame_end=end,
        extra_risks=risks,
        params=params,
    )
    return run, start, end, step


def next_tick_after_close(inst: StrategyInstance, closed_at: int, start: int, end: int, step: int) -> int:
    """The frame timestamp the backtest ticks next once a signal ended at ``closed_at``.

    Close, then decide, within one instant (10-lifecycle.md §3.1): when ``closed_at`` is a frame
    timestamp in a bucket of the strategy's interval the strategy was not asked in yet, that bucket's
    decision is taken at ``closed_at`` itself (a tick there finds nothing open and decides). Otherwise the
    first frame timestamp strictly after the close.
    """
    on_frame = start <= closed_at <= end and (closed_at - start) % step == 0
    if on_frame and inst.decision_due(closed_at):
        return closed_at
    return start + ((closed_at - start) // step + 1) * step


async def run_backtest(
    symbol: str,
    *,
    strategy: str,
    exchange: str,
    frame: str,
    stop: threading.Event | None = None,
    risks: tuple[str, ...] = (),
    params: Mapping[str, Any] | None = None,
) -> AsyncIterator[TickResult]:
    """The async generator behind ``Backtest.run``."""
    run, start, end, step = new_run(frame, risks, {strategy: params} if params else None)
    _rejections[(symbol, strategy, exchange, frame)] = run.rejections
    inst = run.instance(symbol, strategy, exchange, frame)
    key: RunKey = (symbol, strategy, exchange, frame)
    _params[key] = dict(inst.params)
    collected: list[TickResult] = []
    _results[key] = collected
    total = max(0, (end - start) // step + 1)
    bucket = inst.interval
    error: BaseException | None = None
    try:
        await arrays.prepare(inst, start)  # array-form strategies (issue 13): the whole run's table, once
        ts = start
        while ts <= end:
            if stop is not None and stop.is_set():
                break
            if events.has_listeners("backtest_progress"):
                await emit_progress(inst, total, (ts - start) // step)
            result = await inst.tick(ts)
            if isinstance(result, (Closed, Cancelled)):  # closed by the per-candle path or a command
                collected.append(result)
                yield result
                # close, then decide, within one instant (10-lifecycle.md §3.1)
                result = await inst.decide_after_close(ts) or result
            if isinstance(result, (Opened, Scheduled)):
                collected.append(result)
                yield result
                last = result.timestamp
                for follow in await fastpath.resolve(inst):
                    collected.append(follow)
                    yield follow
                    last = getattr(follow, "close_timestamp", follow.timestamp)
                ts = next_tick_after_close(inst, last, start, end, step)
                continue
            idle = inst.state.pending is None and inst.state.scheduled is None
            # skip the rest of the bucket only when it is used up: a bucket released by a risk
            # rejection must be retried on the next tick (10-lifecycle.md §3.1)
            used = inst.state.strategy.last_bucket == (ts // bucket) * bucket
            if idle and used and not events.has_listeners("idle_ping", inst.strategy):
                next_bucket = (ts // bucket + 1) * bucket
                # array-form strategies (issue 13): jump to the next bucket whose bar requests a signal
                next_bucket = arrays.skip_to(inst, next_bucket)
                ts = start + max(1, math.ceil((next_bucket - start) / step)) * step
            else:
                ts += step
        if events.has_listeners("backtest_progress"):
            await emit_progress(inst, total, total)
    except Exception as exc:
        error = exc
        await run.report(exc, f"backtest {symbol} {strategy} on {exchange}/{frame}")
        raise
    finally:
        await run.aclose()
        await emit_done(inst, error)


class BacktestHandle:
    """What ``Backtest.background`` returns: ``stop()``, ``join()``, ``error``, ``results``."""

    def __init__(self, symbol: str, **kw: str) -> None:
        self._stop = threading.Event()
        self.results: list[TickResult] = []
        self.error: BaseException | None = None

        def work() -> None:
            async def main() -> None:
                async for r in run_backtest(symbol, stop=self._stop, **kw):
                    self.results.append(r)

            try:
                asyncio.run(main())
            except Exception as exc:  # reported on listen_error already; never kills the host
                self.error = exc

        self._thread = threading.Thread(target=work, name=f"btkit-backtest-{symbol}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def __call__(self) -> None:
        self.stop()


class Backtest:
    """Backtest runner: ``run``, ``background``, ``get_data``, ``dump``."""

    @staticmethod
    def run(
        symbol: str,
        *,
        strategy: str,
        exchange: str,
        frame: str,
        risks: tuple[str, ...] = (),
        params: Mapping[str, Any] | None = None,
    ) -> ResultStream[TickResult]:
        """Iterate (``for`` or ``async for``) the scheduled/opened/closed/cancelled results.

        ``risks`` adds risk profiles to the strategy's own for this run (the CLI's ``[risk] apply``);
        ``params`` overrides the strategy's declared parameters (docs/parameters.md)."""
        return ResultStream(
            lambda: run_backtest(
                symbol, strategy=strategy, exchange=exchange, frame=frame, risks=tuple(risks), params=params
            )
        )

    @staticmethod
    def run_portfolio(
        symbols: Sequence[str],
        *,
        strategy: str | Sequence[str],
        exchange: str,
        frame: str,
        risks: tuple[str, ...] = (),
        params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ResultStream[TickResult]:
        """Backtest several symbols (and strategies) as one portfolio, in lockstep minute by minute, so
        risk profiles they share act as they do live. ``get_data``/``dump`` then work per symbol.
        ``params`` maps a strategy name to its parameter overrides (docs/parameters.md)."""
        from btkit.engine.portfolio import run_portfolio

        return ResultStream(
            lambda: run_portfolio(
                list(symbols),
                strategy=strategy,
                exchange=exchange,
                frame=frame,
                risks=tuple(risks),
                params=params,
            )
        )

    @staticmethod
    def background(symbol: str, *, strategy: str, exchange: str, frame: str) -> BacktestHandle:
        """Run in a background thread; returns a handle with ``.stop()`` and ``.join()``."""
        return BacktestHandle(symbol, strategy=strategy, exchange=exchange, frame=frame)

    @staticmethod
    def results(symbol: str, *, strategy: str, exchange: str, frame: str) -> list[TickResult]:
        key = (symbol, strategy, exchange, frame)
        if key not in _results:
            for _ in Backtest.run(symbol, strategy=strategy, exchange=exchange, frame=frame):
                pass
        return list(_results[key])

    @staticmethod
    def get_data(symbol: str, *, strategy: str, exchange: str, frame: str) -> Any:
        """Statistics of the last run of this (symbol, strategy, exchange, frame); runs it if needed."""
        from btkit.stats import compute_statistics

        cfg = get_config()
        closed = [
            r
            for r in Backtest.results(symbol, strategy=strategy, exchange=exchange, frame=frame)
            if isinstance(r, Closed)
        ]
        return compute_statistics(closed, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee)

    @staticmethod
    def dump(
        symbol: str,
        *,
        strategy: str,
        exchange: str,
        frame: str,
        path: str | Path = "./dump/backtest",
        formats: Sequence[str] = ("md",),
        portfolio: Any = None,
    ) -> Path:
        """Write the markdown report (and, per ``formats``, the HTML report and equity PNG next to it —
        they need the ``btkit[plot]`` extra); return the markdown report's path. ``portfolio`` (a
        ``btkit.accounting`` view of this symbol) puts its money equity on the HTML chart."""
        from btkit.reporting.dump import dump_report, fetch_chart_candles
        from btkit.reporting.family import backtest_family

        stats = Backtest.get_data(symbol, strategy=strategy, exchange=exchange, frame=frame)
        rejections = [
            r
            for r in _rejections.get((symbol, strategy, exchange, frame), [])
            if r.symbol == symbol and r.strategy_name == strategy  # a portfolio run shares one list
        ]
        candles = None
        if "html" in formats:
            frame_spec = collect_components(get_plugin_manager()).get("frame", frame)
            start = datetime_to_ms(frame_spec.start)
            end = max([datetime_to_ms(frame_spec.end), *(c.close_timestamp for c in stats.closed)])
            candles = fetch_chart_candles(exchange, symbol, start, min(end, wall_clock_ms()))
        return dump_report(
            Path(path),
            f"Backtest {symbol} · {strategy} · {exchange} · {frame}",
            stats,
            symbol=symbol,
            strategy=strategy,
            exchange=exchange,
            frame=frame,
            mode="backtest",
            ts_ms=wall_clock_ms(),
            sections={
                **params_section(_params.get((symbol, strategy, exchange, frame), {})),
                **risk_section(rejections),
            },
            formats=formats,
            family=backtest_family(symbol, strategy=strategy, exchange=exchange, frame=frame),
            rejections=rejections,
            candles=candles,
            portfolio=portfolio,
        )


def params_section(values: Mapping[str, Any]) -> dict[str, str]:
    """The report's "Parameters" section: the values this run used (empty for a strategy without any)."""
    if not values:
        return {}
    lines = ["| parameter | value |", "|---|---:|"]
    lines += [f"| {name} | {value!r} |" for name, value in values.items()]
    return {"Parameters": "\n".join(lines)}


def risk_section(rejections: list[Any]) -> dict[str, str]:
    """The report's "Risk rejections" section (empty when nothing was rejected)."""
    if not rejections:
        return {}
    from datetime import UTC, datetime

    lines = [
        f"{len(rejections)} signal(s) rejected by risk checks.",
        "",
        "| time (UTC) | symbol | strategy | profile | active | note |",
        "|---|---|---|---|---:|---|",
    ]
    for r in rejections[-200:]:
        when = datetime.fromtimestamp(r.timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        note = str(r.note).replace("|", "\\|")
        lines.append(
            f"| {when} | {r.symbol} | {r.strategy_name} | {r.risk_name} | {r.active_position_count} | {note} |"
        )
    return {"Risk rejections": "\n".join(lines)}
