"""Walk-forward output: per-window table, in-sample vs out-of-sample, the stitched OOS equity CSV."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from btkit.research.walkforward import WalkForwardResult

__all__ = ["lines", "write_walk_forward"]


def _f(v: Any, digits: int = 3) -> str:
    if v is None:
        return "N/A"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else "N/A"
    return str(v)


def _day(ms: int) -> str:
    from btkit.context import ms_to_datetime

    return f"{ms_to_datetime(ms):%Y-%m-%d}"


def lines(result: WalkForwardResult) -> list[str]:
    """Terminal lines: one row per window, then stitched in-sample vs out-of-sample."""
    m = result.metric
    out = [f"walk-forward ({result.mode}), metric {m}", ""]
    header = [
        "window",
        "in sample",
        "out of sample",
        "params",
        f"IS {m}",
        f"OOS {m}",
        "IS trades",
        "OOS trades",
    ]
    rows = [header]
    for r in result.windows:
        w = r.window
        params = ", ".join(f"{k}={v}" for k, v in (r.params or {}).items()) or r.error
        rows.append(
            [
                str(w.index),
                f"{_day(w.is_start)}→{_day(w.is_end)}",
                f"{_day(w.oos_start)}→{_day(w.oos_end)}",
                params,
                _f(r.is_metrics.get(m)),
                _f(r.oos_metrics.get(m)),
                str(len(r.is_trades)) if r.params else "",
                str(len(r.oos_trades)) if r.params else "",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    table = ["  ".join(c.ljust(wd) for c, wd in zip(row, widths, strict=True)) for row in rows]
    table.insert(1, "  ".join("-" * wd for wd in widths))
    out += table
    s_is, s_oos = result.stitched_is, result.stitched_oos
    out += ["", "stitched        in-sample   out-of-sample"]
    for key in ("trades", "win_rate", "total_pnl", "avg_pnl", "sharpe_ratio", "total_pnl_cost"):
        out.append(f"{key:<14}  {_f(s_is.get(key)):>9}   {_f(s_oos.get(key)):>13}")
    return out


def write_walk_forward(directory: Path, result: WalkForwardResult, strategy: str, symbol: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    eq = directory / "walk-forward-oos-equity.csv"
    with eq.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp_ms", "cumulative_pnl_cost"])
        w.writerows(result.stitched_oos["equity"])
    result.equity_csv = eq
    md = directory / "walk-forward.md"
    body = [f"# Walk-forward · {strategy} · {symbol}", "", "```", *lines(result), "```", ""]
    body.append(f"Stitched out-of-sample equity: [{eq.name}]({eq.name}).")
    md.write_text("\n".join(body) + "\n", encoding="utf-8")
    result.report = md
