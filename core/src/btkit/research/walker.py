"""The Walker (backtest-kit parity, docs/walker.md): compare strategies on one symbol by a metric.

``add_walker(name, strategies=[...], exchange=, frame=, metric="sharpe_ratio")`` registers a comparison;
``Walker.run(symbol, walker=name)`` backtests each strategy (a plain ``Backtest.run``) and yields a
:class:`WalkerProgress` per strategy; ``get_data`` gives the rows and the best strategy; ``dump`` writes
the markdown report. A strategy whose metric is not finite gets no rank.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from btkit.errors import ConfigError
from btkit.research.trial import METRICS, check_metric, metric_value

__all__ = ["Walker", "WalkerData", "WalkerProgress", "WalkerRow", "WalkerSpec", "add_walker"]


@attrs.frozen(kw_only=True)
class WalkerSpec:
    name: str
    strategies: tuple[str, ...] = attrs.field(converter=tuple)
    exchange: str
    frame: str
    metric: str = "sharpe_ratio"
    params: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=dict, eq=False)


@attrs.frozen(kw_only=True)
class WalkerRow:
    strategy: str
    metric_value: float | None
    rank: int | None
    stats: Any = attrs.field(eq=False, repr=False)
    error: str = ""


@attrs.frozen(kw_only=True)
class WalkerProgress:
    """After each strategy: which one, how far, its metric and the best so far."""

    walker: str
    symbol: str
    strategy: str
    index: int
    total: int
    metric: str
    metric_value: float | None
    best_strategy: str | None
    best_metric: float | None
    progress: float
    error: str = ""


@attrs.frozen(kw_only=True)
class WalkerData:
    walker: str
    symbol: str
    metric: str
    rows: tuple[WalkerRow, ...]
    best_strategy: str | None
    best_metric: float | None


WALKERS: dict[str, WalkerSpec] = {}
_DATA: dict[tuple[str, str], WalkerData] = {}


def add_walker(
    name: str,
    strategies: Sequence[str],
    exchange: str,
    frame: str,
    metric: str = "sharpe_ratio",
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> WalkerSpec:
    """Register a strategy comparison (``params``: per-strategy parameter overrides)."""
    check_metric(metric)
    if not strategies:
        raise ConfigError(f"walker {name!r}: give at least one strategy")
    if len(set(strategies)) != len(strategies):
        raise ConfigError(f"walker {name!r}: a strategy is listed twice")
    spec = WalkerSpec(
        name=name, strategies=strategies, exchange=exchange, frame=frame, metric=metric, params=params or {}
    )
    WALKERS[name] = spec
    return spec


def _spec(walker: str) -> WalkerSpec:
    spec = WALKERS.get(walker)
    if spec is None:
        raise ConfigError(
            f"no walker named {walker!r} (known: {', '.join(sorted(WALKERS)) or 'none'}); call add_walker"
        )
    return spec


def _rows(rows: list[WalkerRow]) -> list[WalkerRow]:
    ranked = sorted((r for r in rows if r.metric_value is not None), key=lambda r: -(r.metric_value or 0.0))
    ranks = {r.strategy: n for n, r in enumerate(ranked, 1)}
    return [attrs.evolve(r, rank=ranks.get(r.strategy)) for r in rows]


class Walker:
    """``run``, ``background``, ``get_data``, ``dump``."""

    @staticmethod
    def run(symbol: str, *, walker: str, stop: threading.Event | None = None) -> Iterator[WalkerProgress]:
        import btkit

        spec = _spec(walker)
        rows: list[WalkerRow] = []
        best: tuple[str, float] | None = None
        total = len(spec.strategies)
        for i, name in enumerate(spec.strategies):
            if stop is not None and stop.is_set():
                break
            error, value, stats = "", None, None
            try:
                for _ in btkit.Backtest.run(
                    symbol,
                    strategy=name,
                    exchange=spec.exchange,
                    frame=spec.frame,
                    params=spec.params.get(name),
                ):
                    pass
                stats = btkit.Backtest.get_data(
                    symbol, strategy=name, exchange=spec.exchange, frame=spec.frame
                )
                value = metric_value(getattr(stats, spec.metric))
            except ConfigError:
                raise
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            rows.append(WalkerRow(strategy=name, metric_value=value, rank=None, stats=stats, error=error))
            if value is not None and (best is None or value > best[1]):
                best = (name, value)
            _DATA[(symbol, walker)] = WalkerData(
                walker=walker, symbol=symbol, metric=spec.metric, rows=tuple(_rows(rows)),
                best_strategy=best[0] if best else None, best_metric=best[1] if best else None,
            )  # fmt: skip
            yield WalkerProgress(
                walker=walker, symbol=symbol, strategy=name, index=i, total=total, metric=spec.metric,
                metric_value=value, best_strategy=best[0] if best else None, best_metric=best[1] if best else None,
                progress=(i + 1) / total, error=error,
            )  # fmt: skip

    @staticmethod
    def background(symbol: str, *, walker: str) -> Any:
        """Run in a thread; the handle has ``stop()``, ``join()``, ``progress`` (list) and ``error``."""
        stop = threading.Event()

        class Handle:
            progress: list[WalkerProgress]
            error: BaseException | None = None

            def stop(self) -> None:
                stop.set()

            def join(self, timeout: float | None = None) -> bool:
                thread.join(timeout)
                return not thread.is_alive()

        handle = Handle()
        handle.progress = []

        def work() -> None:
            try:
                for p in Walker.run(symbol, walker=walker, stop=stop):
                    handle.progress.append(p)
            except Exception as exc:
                handle.error = exc

        thread = threading.Thread(target=work, name=f"btkit-walker-{walker}", daemon=True)
        thread.start()
        return handle

    @staticmethod
    def get_data(symbol: str, *, walker: str) -> WalkerData:
        """The rows of the last run (runs it when it has not run yet)."""
        if (symbol, walker) not in _DATA:
            for _ in Walker.run(symbol, walker=walker):
                pass
        return _DATA[(symbol, walker)]

    @staticmethod
    def dump(symbol: str, *, walker: str, path: str | Path = "./dump/walker") -> Path:
        """The markdown report: one row per strategy (every metric), the best one named."""
        data = Walker.get_data(symbol, walker=walker)
        spec = _spec(walker)
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        lines = [
            f"# Walker {walker} · {symbol} · {spec.exchange} · {spec.frame}",
            "",
            f"Ranked by `{data.metric}`. Best: **{data.best_strategy or 'none (no finite metric)'}**"
            + (f" ({data.best_metric:.4f})" if data.best_metric is not None else ""),
            "",
            "| rank | strategy | trades | " + " | ".join(METRICS) + " | error |",
            "|---:|---|---:|" + "---:|" * len(METRICS) + "---|",
        ]
        for r in sorted(data.rows, key=lambda r: (r.rank is None, r.rank or 0)):
            vals = [_fmt(getattr(r.stats, m, None)) for m in METRICS]
            trades = r.stats.total_signals if r.stats is not None else 0
            lines.append(
                f"| {r.rank or '—'} | {r.strategy} | {trades} | " + " | ".join(vals) + f" | {r.error} |"
            )
        out = directory / f"walker-{walker}-{symbol}.md"
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return out


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "N/A"
    return f"{v:.4f}" if isinstance(v, float) else str(v)
