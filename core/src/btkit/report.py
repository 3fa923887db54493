"""Reports of a run (20-pnl-stats.md §6): markdown, CSV/JSON trade exports and an equity-curve PNG.

- :func:`render_markdown` turns :class:`~btkit.stats.Statistics` into one markdown document;
- :func:`report_filename` / :func:`write_report` / :func:`dump_report` put it on disk
  (``./dump/backtest/…`` or ``./dump/live/…`` by default, see :func:`default_report_dir`);
- :func:`export_trades` writes the closed trades as CSV or JSON (``--export``);
- :func:`write_equity_png` draws the equity curve (numpy + zlib, see :mod:`btkit.png`).

docs/reports.md describes what a report contains.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from btkit.model import Closed, SignalView
from btkit.png import encode_png, line_chart
from btkit.stats import Statistics, chronological, drawdown_pnl, duration_ms, opened_at, peak_pnl

NA = "N/A"
DEFAULT_DUMP_DIR = "./dump"
ExportFormat = Literal["csv", "json"]
EXPORT_FORMATS: tuple[str, ...] = ("csv", "json")


# ---------------------------------------------------------------- formatting
def _na(x: Any) -> bool:
    return x is None or (isinstance(x, float) and not math.isfinite(x))


def fmt_num(x: float | None, digits: int = 3) -> str:
    return NA if _na(x) else f"{x:,.{digits}f}"


def fmt_pct(x: float | None, *, signed: bool = True, digits: int = 2) -> str:
    if _na(x):
        return NA
    assert x is not None
    return f"{x:+,.{digits}f}%" if signed else f"{x:,.{digits}f}%"


def fmt_money(x: float | None) -> str:
    if _na(x):
        return NA
    assert x is not None
    sign = "-" if x < 0 else "+"
    return f"{sign}${abs(x):,.2f}"


def fmt_price(x: float | None) -> str:
    """About 8 significant digits without scientific notation; at least 2 decimals."""
    if _na(x):
        return NA
    assert x is not None
    if x == 0:
        return "0.00"
    decimals = min(12, max(2, 7 - math.floor(math.log10(abs(x)))))
    s = f"{x:,.{decimals}f}"
    if "." in s:
        head, tail = s.split(".")
        tail = tail.rstrip("0")
        s = f"{head}.{tail.ljust(2, '0')}"
    return s


def fmt_duration(minutes: float | None) -> str:
    """``45s``, ``12m``, ``3h 05m``, ``2d 04h 30m``."""
    if _na(minutes):
        return NA
    assert minutes is not None
    if minutes < 1:
        return f"{round(minutes * 60)}s"
    total = round(minutes)
    days, rest = divmod(total, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h {mins:02d}m"
    if hours:
        return f"{hours}h {mins:02d}m"
    return f"{mins}m"


def fmt_time(ms: int | None) -> str:
    """ISO 8601 UTC, seconds precision: ``2024-01-01T00:00:00Z``."""
    if ms is None:
        return NA
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_multiplier(m: float) -> str:
    return f"{m:g}x"


def _cell(s: Any) -> str:
    """A markdown table cell: pipes escaped, line breaks flattened."""
    return str(s).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    aligns = align or "l" * len(header)
    out.append("|" + "|".join(":---" if a == "l" else "---:" for a in aligns) + "|")
    out.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return out


# ---------------------------------------------------------------- statistics block
# (field, label, kind) — kinds: int, pct (unsigned %), spct (signed %), ratio, money, min, days, time
STAT_ROWS: tuple[tuple[str, str, str], ...] = (
    ("total_return", "Compounded return (trades one after another)", "spct"),
    ("total_signals", "Closed signals", "int"),
    ("win_count", "Wins (pnl > 0)", "int"),
    ("loss_count", "Losses (pnl < 0)", "int"),
    ("win_rate", "Win rate", "pct"),
    ("total_pnl", "Sum of per-trade pnl % (not a return)", "spct"),
    ("total_pnl_cost", "Total pnl ($, as traded)", "money"),
    ("avg_pnl", "Average pnl per trade", "spct"),
    ("median_pnl", "Median pnl per trade", "spct"),
    ("avg_win", "Average win", "spct"),
    ("avg_loss", "Average loss", "spct"),
    ("best_trade", "Best trade", "spct"),
    ("worst_trade", "Worst trade", "spct"),
    ("std_dev", "Standard deviation", "ratio"),
    ("sharpe_ratio", "Sharpe ratio (per trade)", "ratio"),
    ("annualized_sharpe_ratio", "Annualized Sharpe ratio", "ratio"),
    ("sortino_ratio", "Sortino ratio (per trade)", "ratio"),
    ("certainty_ratio", "Certainty ratio", "ratio"),
    ("expectancy", "Expectancy (per trade)", "spct"),
    ("profit_factor", "Profit factor", "ratio"),
    ("trades_per_year", "Trades per year", "ratio"),
    ("expected_yearly_returns", "Per-trade pnl % × trades per year (not a return)", "spct"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("calmar_ratio", "Calmar ratio", "ratio"),
    ("recovery_factor", "Recovery factor", "ratio"),
    ("avg_duration_minutes", "Average duration", "min"),
    ("avg_win_duration_minutes", "Average duration (winners)", "min"),
    ("avg_loss_duration_minutes", "Average duration (losers)", "min"),
    ("max_consecutive_wins", "Max consecutive wins", "int"),
    ("max_consecutive_losses", "Max consecutive losses", "int"),
    ("long_count", "Long signals", "int"),
    ("long_pnl", "Long: sum of per-trade pnl %", "spct"),
    ("long_win_rate", "Long win rate", "pct"),
    ("short_count", "Short signals", "int"),
    ("short_pnl", "Short: sum of per-trade pnl %", "spct"),
    ("short_win_rate", "Short win rate", "pct"),
    ("exposure_minutes", "Time in market", "min"),
    ("exposure_pct", "Exposure (share of span)", "pct"),
    ("span_days", "Span", "days"),
    ("first_timestamp", "First open", "time"),
    ("last_timestamp", "Last close", "time"),
    ("slippage_pct", "Slippage per fill", "pct"),
    ("fee_pct", "Fee per fill", "pct"),
)


def format_stat(value: Any, kind: str) -> str:
    if _na(value):
        return NA
    if kind == "int":
        return str(value)
    if kind == "pct":
        return fmt_pct(value, signed=False)
    if kind == "spct":
        return fmt_pct(value)
    if kind == "money":
        return fmt_money(value)
    if kind == "min":
        return fmt_duration(value)
    if kind == "days":
        return f"{value:,.2f} days"
    if kind == "time":
        return fmt_time(value)
    return fmt_num(value)


def statistics_lines(stats: Statistics) -> list[str]:
    """The statistics block: a two-column markdown table, ``N/A`` for undefined values."""
    return _table(
        ("Metric", "Value"),
        [(label, format_stat(getattr(stats, name), kind)) for name, label, kind in STAT_ROWS],
        "lr",
    )


# ---------------------------------------------------------------- signals
SIGNAL_COLUMNS: tuple[str, ...] = (
    "ID",
    "Symbol",
    "Position",
    "Open",
    "Close",
    "TP",
    "SL",
    "PnL %",
    "PnL $",
    "Close reason",
    "Duration",
    "Opened (UTC)",
    "Closed (UTC)",
    "Peak PnL %",
    "Max DD PnL %",
    "Multiplier",
    "Margin",
    "Entries",
    "Partials",
)


def _view(c: Closed) -> SignalView:
    if c.signal is None:
        raise ValueError(f"closed result of {c.symbol}/{c.strategy_name} has no signal; cannot report it")
    return c.signal


def _signal_row(c: Closed, stats: Statistics) -> list[str]:
    v = _view(c)
    kw = {"slippage_pct": stats.slippage_pct, "fee_pct": stats.fee_pct}
    return [
        v.id,
        c.symbol,
        v.position,
        fmt_price(v.price_open),
        fmt_price(c.pnl.price_close),
        fmt_price(v.price_take_profit),
        fmt_price(v.price_stop_loss),
        fmt_pct(c.pnl.pnl_percentage),
        fmt_money(c.pnl.pnl_cost),
        c.close_reason,
        fmt_duration(duration_ms(c) / 60_000),
        fmt_time(opened_at(c)),
        fmt_time(c.close_timestamp),
        fmt_pct(peak_pnl(c, **kw)),
        fmt_pct(drawdown_pnl(c, **kw)),
        fmt_multiplier(v.multiplier),
        "isolated" if v.isolated else "cross",
        str(max(1, len(v.entries))),
        str(len(v.partials)),
    ]


def _differs(a: float, b: float) -> bool:
    return abs(a - b) > 1e-12 * max(1.0, abs(a), abs(b))


def _detail_sections(shown: Sequence[Closed]) -> list[str]:
    out: list[str] = []
    dca = [c for c in shown if len(_view(c).entries) > 1]
    if dca:
        out += ["", "## DCA entries", ""]
        for c in dca:
            v = _view(c)
            out += [f"### {_cell(v.id)} ({_cell(c.symbol)}, effective entry {fmt_price(v.price_open)})", ""]
            out += _table(
                ("#", "Price", "Cost $", "Time (UTC)"),
                [
                    (i, fmt_price(e.price), f"{e.cost:,.2f}", fmt_time(e.timestamp))
                    for i, e in enumerate(sorted(v.entries, key=lambda e: e.timestamp), 1)
                ],
                "rrrl",
            )
            out.append("")
        out.pop()
    partial = [c for c in shown if _view(c).partials]
    if partial:
        out += ["", "## Partial closes", ""]
        for c in partial:
            v = _view(c)
            out += [f"### {_cell(v.id)} ({_cell(c.symbol)})", ""]
            out += _table(
                ("#", "Kind", "Percent of remaining", "Price", "Cost basis $", "Entries then", "Time (UTC)"),
                [
                    (
                        i,
                        p.kind,
                        fmt_pct(p.percent, signed=False),
                        fmt_price(p.current_price),
                        f"{p.cost_basis_at_close:,.2f}",
                        p.entry_count_at_close,
                        fmt_time(p.timestamp),
                    )
                    for i, p in enumerate(sorted(v.partials, key=lambda p: p.timestamp), 1)
                ],
                "rlrrrrl",
            )
            out.append("")
        out.pop()
    adjusted: list[tuple[str, str, str, str]] = []
    for c in shown:
        v = _view(c)
        for label, orig, eff in (
            ("Entry", v.original_price_open, v.price_open),
            ("Take profit", v.original_price_take_profit, v.price_take_profit),
            ("Stop loss", v.original_price_stop_loss, v.price_stop_loss),
        ):
            if _differs(orig, eff):
                adjusted.append((v.id, label, fmt_price(orig), fmt_price(eff)))
    if adjusted:
        out += ["", "## Adjusted prices (original vs effective)", ""]
        out += _table(("ID", "Price", "Original", "Effective"), adjusted, "llrr")
    return out


def render_markdown(
    title: str,
    stats: Statistics,
    *,
    extra: Mapping[str, str] | None = None,
    max_rows: int | None = None,
    equity_image: str | None = None,
    sections: Mapping[str, str] | None = None,
) -> str:
    """The whole report as markdown.

    ``sections`` are appended as ``## <title>`` sections with markdown bodies (e.g. risk rejections).
    ``extra`` is shown as a key/value list under the title (symbol, strategy, exchange, frame, mode, …).
    ``max_rows`` limits the signal table (newest first) — the statistics always cover every signal.
    ``equity_image`` is a path relative to the report (e.g. the PNG next to it) linked as an image.
    """
    if max_rows is not None and max_rows < 0:
        raise ValueError(f"max_rows must be >= 0 or None, got {max_rows}")
    lines = [f"# {title}", ""]
    if extra:
        lines += [f"- **{_cell(k)}**: {_cell(v)}" for k, v in extra.items()]
        lines.append("")
    lines += ["## Statistics", ""]
    lines += statistics_lines(stats)
    if equity_image:
        lines += ["", "## Equity curve", "", f"![Equity curve]({equity_image})"]
        lines += [
            "",
            "Compounded per trade from 1.0; each trade is first marked down by its max drawdown "
            "(the dashed line is the starting level).",
        ]
    shown = list(stats.closed if max_rows is None else stats.closed[:max_rows])
    lines += ["", "## Signals (newest first)", ""]
    if not stats.closed:
        lines.append("No closed signals.")
    else:
        if len(shown) < len(stats.closed):
            lines += [f"Showing the newest {len(shown)} of {len(stats.closed)} signals.", ""]
        lines += _table(SIGNAL_COLUMNS, [_signal_row(c, stats) for c in shown], "lllrrrrrrlrllrrrlrr")
        lines += _detail_sections(shown)
    for heading, body in (sections or {}).items():
        lines += ["", f"## {heading}", "", body]
    lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------- files
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(s: str) -> str:
    """A filesystem-safe file-name part: ``BTC/USDT:USDT`` → ``BTC-USDT-USDT``; never empty or dot-led."""
    cleaned = _UNSAFE.sub("-", s).strip("-.")
    return cleaned or "_"


def report_filename(symbol: str, strategy: str, exchange: str, frame: str, mode: str, ts_ms: int) -> str:
    """``<symbol>_<strategy>_<exchange>_<frame>_<mode>-<ts>.md`` with every part made filesystem-safe."""
    parts = "_".join(safe_name(p) for p in (symbol, strategy, exchange, frame, mode))
    return f"{parts}-{int(ts_ms)}.md"


def default_report_dir(mode: str, base: str | os.PathLike[str] = DEFAULT_DUMP_DIR) -> Path:
    """``./dump/backtest`` or ``./dump/live`` (``base`` replaces ``./dump``)."""
    return Path(base) / safe_name(mode)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename (readers never see half a file).

    The file is created with ordinary permissions (subject to the umask): reports hold no secrets. Missing
    directories are created 0700, like the live state directory that may later share ``./dump``.
    """
    from btkit.persist.file import make_private_dirs

    make_private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _plain_filename(filename: str) -> str:
    if not filename or filename in (".", "..") or "/" in filename or "\\" in filename or "\0" in filename:
        raise ValueError(f"report file name must be a plain name without directories, got {filename!r}")
    return filename


def write_report(directory: str | os.PathLike[str], filename: str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``directory/filename`` atomically, creating directories. Returns the path."""
    path = Path(directory) / _plain_filename(filename)
    _atomic_write(path, text.encode("utf-8"))
    return path


def write_equity_png(
    stats: Statistics, path: str | os.PathLike[str], width: int = 800, height: int = 300
) -> Path:
    """Draw ``stats.equity_curve`` as a PNG line chart at ``path`` (directories created). Returns the path."""
    img = line_chart(stats.equity_curve, width=width, height=height, level=1.0)
    out = Path(path)
    _atomic_write(out, encode_png(img))
    return out


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
    png: bool = True,
    sections: Mapping[str, str] | None = None,
) -> Path:
    """Write the markdown report and, when there is a curve, the equity PNG next to it; returns the .md path.

    The PNG has the report's name with ``.png``; the markdown links it only when it was written.
    """
    name = report_filename(symbol, strategy, exchange, frame, mode, ts_ms)
    image: str | None = None
    if png and len(stats.equity_curve) >= 2:
        image = name[: -len(".md")] + ".png"
        write_equity_png(stats, Path(directory) / image)
    from btkit.analysis.intrabar import report_section  # issue 13: the intrabar ambiguity section

    sections = {**(sections or {}), **report_section(stats, exchange=exchange, mode=mode)}
    text = render_markdown(
        title, stats, extra=extra, max_rows=max_rows, equity_image=image, sections=sections
    )
    return write_report(directory, name, text)


# ---------------------------------------------------------------- trade export
CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "symbol",
    "strategy_name",
    "exchange_name",
    "frame_name",
    "backtest",
    "position",
    "price_open",
    "price_close",
    "price_take_profit",
    "price_stop_loss",
    "original_price_open",
    "original_price_take_profit",
    "original_price_stop_loss",
    "pnl_percentage",
    "pnl_cost",
    "pnl_entries",
    "close_reason",
    "opened_at",
    "closed_at",
    "opened_at_utc",
    "closed_at_utc",
    "duration_minutes",
    "multiplier",
    "isolated",
    "entries_count",
    "partials_count",
    "price_best",
    "price_worst",
    "peak_pnl_percentage",
    "drawdown_pnl_percentage",
    "note",
)


def trade_record(c: Closed, *, slippage_pct: float = 0.1, fee_pct: float = 0.1) -> dict[str, Any]:
    """One closed trade as a flat dict (the CSV columns, in order)."""
    v = _view(c)
    kw = {"slippage_pct": slippage_pct, "fee_pct": fee_pct}
    return {
        "id": v.id,
        "symbol": c.symbol,
        "strategy_name": c.strategy_name,
        "exchange_name": c.exchange_name,
        "frame_name": c.frame_name,
        "backtest": c.backtest,
        "position": v.position,
        "price_open": v.price_open,
        "price_close": c.pnl.price_close,
        "price_take_profit": v.price_take_profit,
        "price_stop_loss": v.price_stop_loss,
        "original_price_open": v.original_price_open,
        "original_price_take_profit": v.original_price_take_profit,
        "original_price_stop_loss": v.original_price_stop_loss,
        "pnl_percentage": c.pnl.pnl_percentage,
        "pnl_cost": c.pnl.pnl_cost,
        "pnl_entries": c.pnl.pnl_entries,
        "close_reason": c.close_reason,
        "opened_at": opened_at(c),
        "closed_at": c.close_timestamp,
        "opened_at_utc": fmt_time(opened_at(c)),
        "closed_at_utc": fmt_time(c.close_timestamp),
        "duration_minutes": duration_ms(c) / 60_000,
        "multiplier": v.multiplier,
        "isolated": v.isolated,
        "entries_count": max(1, len(v.entries)),
        "partials_count": len(v.partials),
        "price_best": c.price_best,
        "price_worst": c.price_worst,
        "peak_pnl_percentage": peak_pnl(c, **kw),
        "drawdown_pnl_percentage": drawdown_pnl(c, **kw),
        "note": v.note,
    }


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def export_trades(
    closed: Sequence[Closed],
    path: str | os.PathLike[str],
    fmt: str,
    *,
    slippage_pct: float = 0.1,
    fee_pct: float = 0.1,
) -> Path:
    """Write the trades, oldest first, as ``csv`` (one flat row each) or ``json`` (a list of objects that
    also carry their ``entries`` and ``partials``). Directories are created; JSON never contains NaN.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be 'csv' or 'json', got {fmt!r}")
    trades = chronological(closed)
    records = [trade_record(c, slippage_pct=slippage_pct, fee_pct=fee_pct) for c in trades]
    out = Path(path)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow({k: "" if r[k] is None else r[k] for k in CSV_COLUMNS})
        data = buf.getvalue()
    else:
        docs = []
        for c, r in zip(trades, records, strict=True):
            v = _view(c)
            doc = {k: _json_safe(val) for k, val in r.items()}
            doc["entries"] = [{"price": e.price, "cost": e.cost, "timestamp": e.timestamp} for e in v.entries]
            doc["partials"] = [
                {
                    "kind": p.kind,
                    "percent": p.percent,
                    "current_price": p.current_price,
                    "cost_basis_at_close": p.cost_basis_at_close,
                    "entry_count_at_close": p.entry_count_at_close,
                    "timestamp": p.timestamp,
                }
                for p in v.partials
            ]
            docs.append(doc)
        data = json.dumps(docs, indent=2, allow_nan=False) + "\n"
    _atomic_write(out, data.encode("utf-8"))
    return out


# ---------------------------------------------------------------- portfolio (money; btkit.accounting)
def dump_portfolio_report(directory: str | os.PathLike[str], title: str, view: Any, *, name: str) -> Path:
    """The portfolio report ``<name>.md`` (money totals, per-symbol rows, heat table, equity curve) with
    the curve as ``<name>.png`` and ``<name>-equity.csv``; sections come from ``btkit.accounting.view``."""
    from btkit.accounting.view import curve_csv, curve_points, markdown_sections

    points = [(t, e / view.stats.starting_balance) for t, e in curve_points(view.curve, 2000)]
    _atomic_write(Path(directory) / f"{name}.png", encode_png(line_chart(points, step=False)))
    _atomic_write(Path(directory) / f"{name}-equity.csv", curve_csv(view.curve).encode("utf-8"))
    body = [f"# {title}", ""]
    for heading, text in markdown_sections(view, equity_image=f"{name}.png").items():
        body += [f"## {heading}", "", text, ""]
    body += [f"Full curve: [{name}-equity.csv]({name}-equity.csv)", ""]
    return write_report(directory, f"{name}.md", "\n".join(body))
