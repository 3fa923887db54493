"""Out-of-sample testing (docs/walk-forward.md): optimise in sample, evaluate the winner on the next range.

``--train A --test B`` is one window. Walk-forward cuts ``[start, end)`` into ``windows + 1`` equal chunks:
``rolling`` optimises on chunk ``i`` and tests on chunk ``i + 1``; ``anchored`` optimises on chunks
``0..i`` and tests on chunk ``i + 1``. An out-of-sample range always starts where its in-sample range ends
(the in-sample frame's last minute is the minute before), so they never overlap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from btkit.errors import ConfigError
from btkit.research.optimizer import OptimizeResult, _as_ms, optimize
from btkit.research.study import Study
from btkit.research.trial import Task, TrialOutcome, check_metric

__all__ = ["WalkForwardResult", "Window", "WindowResult", "plan_windows", "walk_forward"]

MINUTE_MS = 60_000
MODES = ("rolling", "anchored")


@attrs.frozen(kw_only=True)
class Window:
    """In-sample ``[is_start, is_end)`` and out-of-sample ``[oos_start, oos_end)`` (ms UTC)."""

    index: int
    is_start: int
    is_end: int
    oos_start: int
    oos_end: int


@attrs.define(kw_only=True)
class WindowResult:
    window: Window
    optimization: OptimizeResult
    params: dict[str, Any] | None
    is_metrics: dict[str, float | None]
    oos_metrics: dict[str, float | None]
    oos_trades: tuple[tuple[Any, ...], ...] = ()
    is_trades: tuple[tuple[Any, ...], ...] = ()
    error: str = ""


@attrs.define(kw_only=True)
class WalkForwardResult:
    metric: str
    mode: str
    windows: list[WindowResult]
    stitched_is: dict[str, Any]
    stitched_oos: dict[str, Any]
    equity_csv: Path | None = None
    report: Path | None = None


def plan_windows(start_ms: int, end_ms: int, windows: int, mode: str) -> list[Window]:
    """The windows of a walk-forward over ``[start_ms, end_ms)`` (whole minutes)."""
    if mode not in MODES:
        raise ConfigError(f"unknown walk-forward mode {mode!r}; use rolling or anchored")
    if windows < 1:
        raise ConfigError(f"--windows must be at least 1, got {windows}")
    minutes = (end_ms - start_ms) // MINUTE_MS
    chunk = minutes // (windows + 1)
    if chunk < 60:
        raise ConfigError(
            f"the range is too short for {windows} walk-forward windows; give a longer timerange"
        )
    edges = [start_ms + k * chunk * MINUTE_MS for k in range(windows + 2)]
    edges[-1] = end_ms
    return [
        Window(
            index=i,
            is_start=edges[0] if mode == "anchored" else edges[i],
            is_end=edges[i + 1],
            oos_start=edges[i + 1],
            oos_end=edges[i + 2],
        )
        for i in range(windows)
    ]


def stitched(trades: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """Statistics of a sequence of trades (pnl % per trade; an equity curve of cumulative pnl $)."""
    pnl = [float(t[5]) for t in trades]
    n = len(pnl)
    mean = sum(pnl) / n if n else None
    std = math.sqrt(sum((p - mean) ** 2 for p in pnl) / (n - 1)) if n > 1 and mean is not None else None
    equity, acc = [], 0.0
    for t in trades:
        acc += float(t[6])
        equity.append((int(t[1]), acc))
    return {
        "trades": n,
        "win_rate": 100.0 * sum(p > 0 for p in pnl) / n if n else None,
        "total_pnl": sum(pnl),
        "avg_pnl": mean,
        "sharpe_ratio": (mean / std) if mean is not None and std else None,
        "total_pnl_cost": acc,
        "equity": equity,
    }


def walk_forward(
    strategy: str,
    *,
    params: Sequence[str] | Mapping[str, Any],
    start: datetime | str | int | None = None,
    end: datetime | str | int | None = None,
    windows: int = 3,
    mode: str = "rolling",
    train: tuple[Any, Any] | None = None,
    test: tuple[Any, Any] | None = None,
    metric: str = "sharpe_ratio",
    symbol: str = "BTCUSDT",
    exchange: str = "sim",
    executor: str = "serial",
    jobs: int | None = None,
    address: str | None = None,
    dump_dir: str | Path | None = None,
    risks: Sequence[str] = (),
    strategy_files: Sequence[str] = (),
    engine: Mapping[str, Any] | None = None,
    progress: Any = None,
    **search: Any,
) -> WalkForwardResult:
    """Optimise on each in-sample window, evaluate the winner out of sample; candles are loaded once.
    ``search`` takes the optimiser's options (constraint, method, trials, min_trades, seed, resume …)."""
    check_metric(metric)
    if train is not None or test is not None:
        if train is None or test is None:
            raise ConfigError("give both --train and --test (or neither)")
        a, b = _as_ms(train[0]), _as_ms(train[1])
        c, d = _as_ms(test[0]), _as_ms(test[1])
        if not (a < b <= c < d):
            raise ConfigError("the test range must come after the train range without overlapping it")
        plan, mode = [Window(index=0, is_start=a, is_end=b, oos_start=c, oos_end=d)], "train/test"
    else:
        if start is None or end is None:
            raise ConfigError("walk-forward needs a timerange (start and end)")
        plan = plan_windows(_as_ms(start), _as_ms(end), windows, mode)
    lo, hi = min(w.is_start for w in plan), max(w.oos_end for w in plan)
    out: list[WindowResult] = []
    with Study(
        strategy=strategy, symbol=symbol, exchange=exchange, start_ms=lo, end_ms=hi, executor=executor,
        jobs=jobs, address=address, risks=risks, strategy_files=strategy_files, engine=engine,
    ) as study:  # fmt: skip
        for w in plan:
            opt = optimize(
                strategy, params=params, start=w.is_start, end=w.is_end, symbol=symbol, exchange=exchange,
                metric=metric, dump_dir=Path(dump_dir) / f"window-{w.index}" if dump_dir else None,
                study=study, report=False, progress=progress, risks=risks, **search,
            )  # fmt: skip
            best = opt.best
            res = WindowResult(window=w, optimization=opt, params=None, is_metrics={}, oos_metrics={})
            if best is None:
                res.error = "no trial ranked in sample (all failed, non-finite metric or too few trades)"
                out.append(res)
                continue
            res.params, res.is_metrics = dict(best.params), dict(best.metrics)
            res.is_trades = best.outcome.trades if best.outcome else ()
            got: list[Any] = []
            study.run(
                [Task(params=best.params, start_ms=w.oos_start, end_ms=w.oos_end - MINUTE_MS)],
                lambda _i, r, got=got: got.append(r),
            )
            if isinstance(got[0], TrialOutcome):
                res.oos_metrics, res.oos_trades = dict(got[0].metrics), got[0].trades
            else:
                res.error = f"out-of-sample run failed: {got[0]}"
            out.append(res)
    result = WalkForwardResult(
        metric=metric,
        mode=mode,
        windows=out,
        stitched_is=stitched([t for r in out for t in r.is_trades]),
        stitched_oos=stitched([t for r in out for t in r.oos_trades]),
    )
    if dump_dir is not None:
        from btkit.research.wf_report import write_walk_forward

        write_walk_forward(Path(dump_dir), result, strategy, symbol)
    return result
