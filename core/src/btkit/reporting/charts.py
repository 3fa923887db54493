"""Static PNG charts drawn with matplotlib (headless Agg), imported only when a PNG is asked for.

``btkit[plot]`` installs matplotlib; without it :func:`require` raises one clear :class:`ConfigError`.
Each chart has a title, a dated UTC time axis and a drawdown panel under the equity panel.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from btkit.errors import ConfigError
from btkit.stats import Statistics

DPI = 100


def require(module: str, what: str) -> Any:
    """Import an optional plotting library or raise a one-line :class:`ConfigError` saying how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{what} needs {module.split('.')[0]}, which is not installed; "
            "install the extra with `pip install 'btkit[plot]'` or leave it out of --report"
        ) from None


def drawdown_of(values: np.ndarray) -> np.ndarray:
    """Drawdown in percent below the running peak (0 at new highs, negative below)."""
    if not len(values):
        return values
    peak = np.maximum.accumulate(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, (values / peak - 1.0) * 100.0, 0.0)
    return dd


def _figure(width: int, height: int) -> tuple[Any, Any, Any]:
    require("matplotlib", "the PNG chart")
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # headless: no pyplot, no GUI backend
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    return fig, top, bottom


def _dates(times_ms: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(times_ms, dtype="int64").astype("datetime64[ms]")


def _finish(fig: Any, top: Any, bottom: Any, x: np.ndarray, dd: np.ndarray) -> bytes:
    import matplotlib.dates as mdates

    bottom.fill_between(x, dd, 0.0, step="post", color="#d62728", alpha=0.35, linewidth=0)
    bottom.plot(x, dd, drawstyle="steps-post", color="#d62728", linewidth=0.8)
    bottom.set_ylabel("Drawdown %")
    bottom.set_xlabel("Time (UTC)")
    locator = mdates.AutoDateLocator()
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    for ax in (top, bottom):
        ax.grid(True, color="#dddddd", linewidth=0.6)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def equity_png(
    stats: Statistics, *, title: str = "Equity curve", width: int = 1000, height: int = 500
) -> bytes:
    """The per-trade compounded equity (from 1.0, as a return in %) and its drawdown, as PNG bytes."""
    fig, top, bottom = _figure(width, height)
    points = stats.equity_curve or ()
    if len(points) >= 2:
        t = np.array([p[0] for p in points], dtype=np.int64)
        v = np.array([p[1] for p in points], dtype=float)
    else:  # no trades: a flat line over the span we know (or one day)
        first = stats.first_timestamp or 0
        t = np.array([first, (stats.last_timestamp or first + 86_400_000)], dtype=np.int64)
        v = np.ones(2)
    x = _dates(t)
    ret = (v - 1.0) * 100.0
    top.plot(x, ret, drawstyle="steps-post", color="#1f77b4", linewidth=1.2, label="Return (compounded)")
    top.axhline(0.0, color="#888888", linestyle="--", linewidth=0.8)
    top.set_ylabel("Return %")
    top.set_title(title)
    top.legend(loc="best", frameon=False)
    return _finish(fig, top, bottom, x, drawdown_of(v))


def portfolio_png(
    times_ms: np.ndarray,
    equity: np.ndarray,
    *,
    currency: str,
    title: str,
    width: int = 1000,
    height: int = 500,
) -> bytes:
    """The portfolio equity in money (marked to market) and its drawdown, as PNG bytes."""
    fig, top, bottom = _figure(width, height)
    t = np.asarray(times_ms, dtype=np.int64)
    v = np.asarray(equity, dtype=float)
    if len(t) < 2:
        t = np.array([int(t[0]) if len(t) else 0, (int(t[0]) if len(t) else 0) + 86_400_000])
        v = np.full(2, float(v[0]) if len(v) else 0.0)
    x = _dates(t)
    top.plot(x, v, color="#1f77b4", linewidth=1.2, label=f"Equity ({currency})")
    top.axhline(float(v[0]), color="#888888", linestyle="--", linewidth=0.8)
    top.set_ylabel(currency or "Equity")
    top.set_title(title)
    top.legend(loc="best", frameon=False)
    return _finish(fig, top, bottom, x, drawdown_of(v))


def write_equity_png(
    stats: Statistics,
    path: str | os.PathLike[str],
    width: int = 1000,
    height: int = 500,
    *,
    title: str = "Equity curve",
) -> Path:
    """Draw ``stats.equity_curve`` with its drawdown at ``path`` (directories created). Returns the path."""
    from btkit.reporting import files

    out = Path(path)
    files._atomic_write(out, equity_png(stats, title=title, width=width, height=height))
    return out
