"""Files of an optimisation: ``trials.csv``, the heatmap PNG, ``summary.md`` and the best trial's report."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from btkit.research.trial import EXTRA_COLUMNS, METRICS

if TYPE_CHECKING:
    from btkit.research.optimizer import OptimizeResult

__all__ = ["best_report", "heatmap", "top_table", "write_csv", "write_summary"]


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else ""
    return str(v)


def write_csv(path: Path, result: OptimizeResult) -> Path:
    """One row per trial: index, rank, status, a column per parameter, every metric, the error."""
    ranks = {r.index: n for n, r in enumerate(result.ranked, 1)}
    names = result.names
    cols = ["trial", "rank", "status", *names, "trades", *METRICS, *EXTRA_COLUMNS, "error"]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in result.records:
            w.writerow(
                [r.index, ranks.get(r.index, ""), r.status, *(r.params.get(n) for n in names), r.trades]
                + [_fmt(r.metrics.get(m), 6) for m in (*METRICS, *EXTRA_COLUMNS)]
                + [r.error]
            )
    tmp.replace(path)
    return path


def top_table(result: OptimizeResult, top: int = 10) -> list[str]:
    """The ranked table as aligned text lines (the terminal output)."""
    header = ["rank", "trial", *result.names, "trades", result.metric, "total_pnl", "win_rate"]
    rows = [header]
    for n, r in enumerate(result.ranked[:top], 1):
        rows.append(
            [
                str(n),
                str(r.index),
                *(str(r.params.get(k)) for k in result.names),
                str(r.trades),
                _fmt(r.metrics.get(result.metric)),
                _fmt(r.metrics.get("total_pnl"), 2),
                _fmt(r.metrics.get("win_rate"), 1),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def write_summary(path: Path, result: OptimizeResult, strategy: str, symbol: str) -> Path:
    failed = [r for r in result.records if r.status == "failed"]
    lines = [
        f"# Optimisation · {strategy} · {symbol}",
        "",
        f"{len(result.records)} trial(s), {len(result.ranked)} ranked by `{result.metric}`, {len(failed)} failed.",
        "",
        "| rank | trial | " + " | ".join(result.names) + f" | trades | {result.metric} |",
        "|---:|---:|" + "---:|" * len(result.names) + "---:|---:|",
    ]
    for n, r in enumerate(result.ranked[:20], 1):
        vals = " | ".join(str(r.params.get(k)) for k in result.names)
        lines.append(f"| {n} | {r.index} | {vals} | {r.trades} | {_fmt(r.metrics.get(result.metric))} |")
    if failed:
        lines += ["", "## Failed trials", ""]
        lines += [f"- trial {r.index} {r.params}: {r.error}" for r in failed[:50]]
    if result.heatmap:
        lines += ["", f"![heatmap]({result.heatmap.name})"]
    if result.report:
        lines += ["", f"Best trial's report: [{result.report.name}]({result.report.name})"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def heatmap(directory: Path, result: OptimizeResult, pair: Sequence[str] | None = None) -> Path | None:
    """``heatmap-<x>-<y>.png``: the best metric over the other parameters for each (x, y); None without
    matplotlib (``pip install 'btkit[plot]'``)."""
    import numpy as np

    names = list(pair) if pair else result.names[:2]
    if len(names) != 2 or any(n not in result.names for n in names):
        from btkit.errors import ConfigError

        raise ConfigError(f"--heatmap needs two optimised parameters, e.g. {','.join(result.names[:2])}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    x_name, y_name = names
    xs = sorted(
        {r.params[x_name] for r in result.records}, key=str if not _numeric(result, x_name) else float
    )
    ys = sorted(
        {r.params[y_name] for r in result.records}, key=str if not _numeric(result, y_name) else float
    )
    grid = np.full((len(ys), len(xs)), np.nan)
    ranked = {r.index for r in result.ranked}
    for r in result.records:
        value = r.metrics.get(result.metric) if r.index in ranked else None
        if value is None:
            continue
        i, j = ys.index(r.params[y_name]), xs.index(r.params[x_name])
        grid[i, j] = value if np.isnan(grid[i, j]) else max(grid[i, j], value)
    fig, ax = plt.subplots(figsize=(max(5, len(xs) * 0.6), max(4, len(ys) * 0.45)), dpi=100)
    image = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=45)
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(f"{result.metric} (best over the other parameters; blank = no rank)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path = directory / f"heatmap-{x_name}-{y_name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _numeric(result: OptimizeResult, name: str) -> bool:
    return all(isinstance(r.params.get(name), (int, float)) for r in result.records)


def best_report(
    directory: Path,
    strategy: str,
    symbol: str,
    exchange: str,
    start_ms: int,
    end_ms: int,
    interval: str,
    params: dict[str, Any],
    risks: Sequence[str] = (),
) -> Path:
    """The full markdown report of the best trial: a plain ``Backtest.run`` on the real exchange."""
    import btkit
    from btkit.context import ms_to_datetime

    frame = "optimize-best"
    btkit.add_frame(frame, ms_to_datetime(start_ms), ms_to_datetime(end_ms), interval=interval)
    for _ in btkit.Backtest.run(
        symbol, strategy=strategy, exchange=exchange, frame=frame, risks=tuple(risks), params=params
    ):
        pass
    return btkit.Backtest.dump(symbol, strategy=strategy, exchange=exchange, frame=frame, path=directory)
