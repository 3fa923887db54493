"""Writing a run's reports: markdown always, HTML and PNG when asked (``--report html,md,png``).

:func:`dump_report` writes ``<name>.md`` and, per ``formats``, ``<name>.html`` (bokeh) and ``<name>.png``
(matplotlib); the markdown links the others. Each phase's time goes to the performance report
(``btkit.reporting.family.PERFORMANCE``). :func:`fetch_chart_candles` reads the candles an HTML chart
draws from the run's exchange.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from btkit.errors import ConfigError
from btkit.model import MINUTE_MS
from btkit.reporting import files
from btkit.reporting.family import PERFORMANCE, Family, markdown_sections, performance_data
from btkit.reporting.markdown import render_markdown
from btkit.stats import Statistics

REPORT_FORMATS: tuple[str, ...] = ("html", "md", "png")
DEFAULT_FORMATS: tuple[str, ...] = ("html", "md")


def parse_formats(text: str) -> tuple[str, ...]:
    """``"html,md"`` → ``("html", "md")``; unknown names raise :class:`ConfigError` (exit 2)."""
    out = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    bad = [p for p in out if p not in REPORT_FORMATS]
    if bad or not out:
        raise ConfigError(
            f"--report takes a comma-separated list of {', '.join(REPORT_FORMATS)}; got {text!r}"
        )
    return out


def plot_extra_installed(module: str = "bokeh") -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


async def _candles(exchange: str, symbol: str, start: int, end: int) -> np.ndarray | None:
    from btkit.config import get_config
    from btkit.market import Market
    from btkit.plugins import collect_components, get_plugin_manager
    from btkit.reporting.html import chart_interval_minutes

    spec = collect_components(get_plugin_manager()).get("exchange", exchange)
    market = Market(spec, get_config(), backtest=True)
    # a chart drawn at >= 1h needs only hourly candles: 60x fewer to fetch (e.g. a year: 8,784, not 527,040)
    hourly = chart_interval_minutes(end - start + MINUTE_MS) % 60 == 0
    try:
        for interval, step in ((("1h", 60 * MINUTE_MS),) if hourly else ()) + (("1m", MINUTE_MS),):
            try:
                arr = await market._fetch(symbol, interval, (start // step) * step, end + MINUTE_MS)
            except Exception:
                if interval == "1m":
                    raise
                continue  # no hourly candles on this exchange: 1m
            if len(arr):
                return arr
        return None
    finally:
        close = spec.close
        if close is not None:
            out = close()
            if asyncio.iscoroutine(out):
                await out


def fetch_chart_candles(exchange: str, symbol: str, start: int, end: int) -> np.ndarray | None:
    """Candles ``[start, end]`` of ``symbol`` from ``exchange`` for the chart — hourly when the chart is
    drawn at an hour or more, else 1m — or ``None`` when the exchange cannot give them (the chart then
    shows the trades without candles)."""
    if end < start:
        return None
    try:
        return asyncio.run(_candles(exchange, symbol, start, end))
    except Exception:  # a report never fails because its chart's candles are unavailable
        return None


def dump_report(
    directory: str | os.PathLike[str],
    title: str,
    stats: Statistics,
    *,
    symbol: str,
    strategy: str,
    exchange: str,
    frame: str,
    mode: str,
    ts_ms: int,
    extra: Mapping[str, str] | None = None,
    max_rows: int | None = None,
    formats: Collection[str] = ("md",),
    sections: Mapping[str, str] | None = None,
    family: Family | None = None,
    rejections: Sequence[Any] = (),
    candles: np.ndarray | None = None,
    portfolio: Any | None = None,
    research: Sequence[str] = (),
) -> Path:
    """Write the markdown report and the other ``formats`` next to it; returns the ``.md`` path.

    ``formats`` ⊆ {"html", "md", "png"} (markdown is always written). PNG needs a curve of at least two
    points. ``family`` adds the report-family sections/tabs; ``candles`` (1m rows) the HTML candlesticks."""
    bad = set(formats) - set(REPORT_FORMATS)
    if bad:
        raise ValueError(f"unknown report format(s) {sorted(bad)}; choose from {REPORT_FORMATS}")
    name = files.report_filename(symbol, strategy, exchange, frame, mode, ts_ms)
    stem = name[: -len(".md")]
    directory = Path(directory)
    image: str | None = None
    page: str | None = None
    if "png" in formats and len(stats.equity_curve) >= 2:
        from btkit.reporting.charts import equity_png

        with PERFORMANCE.timed("report: png"):
            image = f"{stem}.png"
            files._atomic_write(directory / image, equity_png(stats, title=title))
    if "html" in formats:
        from btkit.reporting.html import render_html

        with PERFORMANCE.timed("report: html"):
            text = render_html(
                title,
                stats,
                candles=candles,
                extra=extra,
                rejections=rejections,
                family=family,
                portfolio=portfolio,
                research=research,
            )
            page = f"{stem}.html"
            files._atomic_write(directory / page, text.encode("utf-8"))
    from btkit.analysis.intrabar import report_section  # issue 13: the intrabar ambiguity section

    with PERFORMANCE.timed("report: markdown"):
        more = dict(sections or {})
        if family is not None:  # with the timings of the HTML/PNG just written
            more.update(markdown_sections(attrs.evolve(family, performance=performance_data())))
        more.update(report_section(stats, exchange=exchange, mode=mode))
        text = render_markdown(
            title, stats, extra=extra, max_rows=max_rows, equity_image=image, sections=more, html_report=page
        )
        return files.write_report(directory, name, text)


def dump_portfolio_report(
    directory: str | os.PathLike[str],
    title: str,
    view: Any,
    *,
    name: str,
    formats: Collection[str] = ("md",),
    stats: Statistics | None = None,
    family: Family | None = None,
) -> Path:
    """The portfolio report ``<name>.md`` (money totals, per-symbol rows, heat table, equity curve) with
    ``<name>-equity.csv``, ``<name>.png`` (equity + drawdown) when ``"png"`` is in ``formats``, and
    ``<name>.html`` (money equity, drawdown, every trade of ``stats``, the family) with ``"html"``."""
    from btkit.accounting.view import curve_csv
    from btkit.accounting.view import markdown_sections as portfolio_sections

    directory = Path(directory)
    image = None
    if "png" in formats:
        from btkit.reporting.charts import portfolio_png

        image = f"{name}.png"
        png = portfolio_png(view.curve.time, view.curve.equity, currency=view.stats.currency, title=title)
        files._atomic_write(directory / image, png)
    files._atomic_write(directory / f"{name}-equity.csv", curve_csv(view.curve).encode("utf-8"))
    body = [f"# {title}", ""]
    if "html" in formats:
        from btkit.reporting.html import render_html

        with PERFORMANCE.timed("report: portfolio html"):
            page = render_html(
                title,
                stats or Statistics(),
                portfolio=view,
                family=family,
                extra={"Currency": view.stats.currency},
            )
            files._atomic_write(directory / f"{name}.html", page.encode("utf-8"))
        body += [f"Interactive report: [{name}.html]({name}.html)", ""]
    for heading, text in portfolio_sections(view, equity_image=image).items():
        body += [f"## {heading}", "", text, ""]
    body += [f"Full curve: [{name}-equity.csv]({name}-equity.csv)", ""]
    return files.write_report(directory, f"{name}.md", "\n".join(body))


def newest_report(directory: str | os.PathLike[str]) -> Path | None:
    """The newest report under ``directory`` (recursively): the newest HTML report when there is one,
    else the newest markdown. Newest = the largest ``-<ts>`` in the name, then the latest modification."""
    import re

    root = Path(directory)
    if not root.is_dir():
        return None
    stamp = re.compile(r"-(\d{10,})$")
    best: tuple[int, int, float, str] | None = None
    for p in root.rglob("*"):
        if p.suffix not in (".html", ".md") or p.name.startswith(".") or not p.is_file():
            continue
        m = stamp.search(p.stem)
        key = (1 if p.suffix == ".html" else 0, int(m.group(1)) if m else 0, p.stat().st_mtime, str(p))
        if best is None or key > best:
            best = key
    return None if best is None else Path(best[3])
