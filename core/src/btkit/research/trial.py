"""One research task = one real btkit backtest (``Backtest.run``) with given parameters over a given range.

:func:`run_trial` is the module-level function every executor calls as ``run_trial(shared, task)`` in a
worker. ``shared`` holds the candle handles (shared memory), the symbol, the strategy, the risks and what a
fresh worker needs to see the same components (strategy files, engine settings); ``task`` the parameters and
the frame. It returns a :class:`TrialOutcome`: the metrics and the trade list.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import attrs

from btkit.errors import BtkitError, ConfigError

__all__ = [
    "METRICS",
    "Task",
    "TrialFailed",
    "TrialOutcome",
    "check_metric",
    "metric_value",
    "run_trial",
    "trades_of",
]

METRICS = (
    "sharpe_ratio",
    "annualized_sharpe_ratio",
    "win_rate",
    "total_pnl",
    "certainty_ratio",
    "avg_pnl",
    "expected_yearly_returns",
)
EXTRA_COLUMNS = ("total_signals", "total_return", "max_drawdown", "total_pnl_cost", "profit_factor")


class TrialFailed(BtkitError):
    """The strategy reported an error during the backtest (the trial is recorded as failed)."""


def check_metric(name: str) -> str:
    if name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; use one of {', '.join(METRICS)}")
    return name


def metric_value(value: Any) -> float | None:
    """A finite float, or None (non-finite metrics never rank)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@attrs.frozen(kw_only=True)
class Task:
    """The parameters of one backtest and its frame ``[start_ms, end_ms]`` (ms UTC, inclusive end)."""

    params: Mapping[str, Any] = attrs.field(converter=dict, eq=False)
    start_ms: int
    end_ms: int
    interval: str = "1m"


@attrs.frozen(kw_only=True)
class TrialOutcome:
    metrics: Mapping[str, float | None] = attrs.field(eq=False)
    trades: tuple[tuple[Any, ...], ...] = ()  # (opened at, closed at, reason, entry, exit, pnl %, pnl $)


def trades_of(results: Any) -> tuple[tuple[Any, ...], ...]:
    """The comparable trade list of backtest results: one tuple per closed signal."""
    from btkit.model import Closed

    out = []
    for r in results:
        if isinstance(r, Closed):
            out.append(
                (
                    r.signal.pending_at,
                    r.close_timestamp,
                    r.close_reason,
                    r.pnl.price_open,
                    r.pnl.price_close,
                    r.pnl.pnl_percentage,
                    r.pnl.pnl_cost,
                )
            )
    return tuple(out)


_SETUP: dict[str, Any] = {}


def _quiet(record: logging.LogRecord) -> bool:
    return not getattr(record, "btkit_error_event", False)


def _setup(shared: Mapping[str, Any]) -> str:
    """Once per worker process: the strategy files, engine settings and the shared-candle exchange."""
    from btkit.research.shared import shared_exchange

    token = shared["token"]
    if _SETUP.get("token") == token:
        return _SETUP["exchange"]
    from btkit.config import set_config
    from btkit.plugins import get_plugin_manager
    from btkit.registry import CODE

    if shared.get("engine"):
        set_config(**shared["engine"])
    for path in shared.get("strategy_files", ()):
        _import_file(path)
    spec = shared_exchange(shared["candles"])
    CODE.exchanges[spec.name] = spec
    # the installed plugins are loaded once per study here, not again by every trial's Backtest.run
    _SETUP.update(token=token, exchange=spec.name, pm=get_plugin_manager())
    return spec.name


def _import_file(path: str) -> None:
    import importlib.util
    import sys
    from pathlib import Path

    module_name = f"btkit_user_{Path(path).stem}"
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"strategy file {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)


def run_trial(shared: Mapping[str, Any], task: Task) -> TrialOutcome:
    """One real backtest of ``shared["strategy"]`` on ``shared["symbol"]`` with ``task.params``."""
    import btkit
    from btkit.config import get_config
    from btkit.context import ms_to_datetime
    from btkit.plugins import pinned_plugin_manager
    from btkit.stats import compute_statistics

    exchange = _setup(shared)
    frame = f"research:{task.start_ms}-{task.end_ms}-{task.interval}"
    btkit.add_frame(frame, ms_to_datetime(task.start_ms), ms_to_datetime(task.end_ms), interval=task.interval)
    errors: list[Any] = []
    unsubscribe = btkit.listen_error(errors.append)
    log = logging.getLogger("btkit")
    log.addFilter(_quiet)  # error events are collected into TrialFailed, not printed once per tick
    try:
        with pinned_plugin_manager(_SETUP["pm"]):
            results = list(
                btkit.Backtest.run(
                    shared["symbol"],
                    strategy=shared["strategy"],
                    exchange=exchange,
                    frame=frame,
                    risks=tuple(shared.get("risks", ())),
                    params=task.params,
                )
            )
    finally:
        unsubscribe()
        log.removeFilter(_quiet)
    if errors:
        first = errors[0]
        raise TrialFailed(f"{len(errors)} error(s) during the backtest; first: {first.where}: {first.error}")
    cfg = get_config()
    from btkit.model import Closed

    closed = [r for r in results if isinstance(r, Closed)]
    stats = compute_statistics(closed, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee)
    metrics = {name: metric_value(getattr(stats, name)) for name in (*METRICS, *EXTRA_COLUMNS)}
    return TrialOutcome(metrics=metrics, trades=trades_of(results))
