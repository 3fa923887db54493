"""The markdown report of a run (20-pnl-stats.md §6) and the formatters every report format shares.

:func:`render_markdown` turns :class:`~btkit.stats.Statistics` into one markdown document; docs/reports.md
describes what it contains.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from btkit.context import iso
from btkit.model import Closed, SignalView
from btkit.stats import Statistics, drawdown_pnl, duration_ms, opened_at, peak_pnl

NA = "N/A"


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
    """ISO 8601 UTC, seconds precision: ``2024-01-01T00:00:00Z`` (:func:`btkit.context.iso`)."""
    return iso(ms, seconds=True, missing=NA)


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
    html_report: str | None = None,
) -> str:
    """The whole report as markdown.

    ``sections`` are appended as ``## <title>`` sections with markdown bodies (e.g. risk rejections).
    ``extra`` is shown as a key/value list under the title (symbol, strategy, exchange, frame, mode, …).
    ``max_rows`` limits the signal table (newest first) — the statistics always cover every signal.
    ``equity_image`` is a path relative to the report (e.g. the PNG next to it) linked as an image.
    ``html_report`` is the interactive HTML report next to it, linked under the title.
    """
    if max_rows is not None and max_rows < 0:
        raise ValueError(f"max_rows must be >= 0 or None, got {max_rows}")
    lines = [f"# {title}", ""]
    if extra:
        lines += [f"- **{_cell(k)}**: {_cell(v)}" for k, v in extra.items()]
        lines.append("")
    if html_report:
        lines += [f"Interactive report (chart, sortable trades): [{_cell(html_report)}]({html_report})", ""]
    lines += ["## Statistics", ""]
    lines += statistics_lines(stats)
    if equity_image:
        lines += ["", "## Equity curve", "", f"![Equity curve]({equity_image})"]
        lines += [
            "",
            "Compounded per trade from 1.0 (as a return, %); each trade is first marked down by its max "
            "drawdown; the lower panel is the drawdown below the running peak.",
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
