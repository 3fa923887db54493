"""The interactive HTML report: one self-contained file (bokeh's JS inlined, no CDN) that opens offline.

Tabs: chart (candlesticks resampled to at most :data:`MAX_BARS` bars, entries/exits with TP/SL and the
close reason on hover, equity and drawdown, linked x axes), trades (a table that sorts on a header
click and filters as you type), statistics, the report family, risk rejections and research tables
(:func:`render_research_section`). bokeh is imported only here, only when an HTML report is written
(extra ``btkit[plot]``). Why bokeh and not plotly: docs/reports.md.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from btkit.candles import resample
from btkit.model import MINUTE_MS, Closed
from btkit.reporting.charts import drawdown_of, require
from btkit.reporting.markdown import (
    SIGNAL_COLUMNS,
    STAT_ROWS,
    _signal_row,
    fmt_time,
    format_stat,
)
from btkit.stats import Statistics, chronological, opened_at

MAX_BARS = 2000  # candles drawn per symbol; longer ranges are resampled to the next interval that fits
MAX_POINTS = 5000  # equity points drawn
LADDER = (1, 5, 15, 30, 60, 120, 240, 360, 720, 1440, 10080)  # minutes

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:12px 20px;background:#1f2937;color:#fff}header h1{margin:0;font-size:20px}
header ul{margin:6px 0 0;padding:0;list-style:none;font-size:13px;color:#cbd5e1}header li{display:inline;margin-right:14px}
nav{display:flex;flex-wrap:wrap;gap:4px;padding:8px 20px;background:#e5e7eb}
nav button{border:0;padding:6px 12px;border-radius:4px;background:#fff;cursor:pointer;font-size:14px}
nav button.active{background:#2563eb;color:#fff}
section.tab{display:none;padding:12px 20px}section.tab.active{display:block}
table{border-collapse:collapse;font-size:13px;background:#fff}th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f3f4f6;position:sticky;top:0}td.l,th.l{text-align:left}
table.sortable th{cursor:pointer;user-select:none}table.sortable th.asc:after{content:" \\25B2"}
table.sortable th.desc:after{content:" \\25BC"}
.pos{color:#15803d}.neg{color:#b91c1c}input.filter{margin:6px 0;padding:4px 8px;width:320px}
.note{color:#555;font-size:13px}.wrap{overflow:auto;max-height:75vh}
"""

_JS = """
(function(){
  function show(id){
    document.querySelectorAll('section.tab').forEach(function(s){s.classList.toggle('active',s.id===id)});
    document.querySelectorAll('nav button').forEach(function(b){b.classList.toggle('active',b.dataset.tab===id)});
    window.dispatchEvent(new Event('resize'));}
  document.querySelectorAll('nav button').forEach(function(b){
    b.addEventListener('click',function(){show(b.dataset.tab)})});
  function key(td){var v=td.getAttribute('data-v');
    if(v!==null&&v!==''&&!isNaN(+v))return +v;return td.textContent.trim().toLowerCase();}
  document.querySelectorAll('table.sortable').forEach(function(t){
    t.querySelectorAll('thead th').forEach(function(th,i){th.addEventListener('click',function(){
      var asc=!th.classList.contains('asc');
      t.querySelectorAll('thead th').forEach(function(h){h.classList.remove('asc','desc')});
      th.classList.add(asc?'asc':'desc');var body=t.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
        if(x<y)return asc?-1:1;if(x>y)return asc?1:-1;return 0;});
      rows.forEach(function(r){body.appendChild(r)});});});});
  document.querySelectorAll('input.filter').forEach(function(inp){inp.addEventListener('input',function(){
    var q=inp.value.toLowerCase();var t=document.getElementById(inp.dataset.table);var n=0;
    Array.prototype.forEach.call(t.tBodies[0].rows,function(r){
      var ok=r.textContent.toLowerCase().indexOf(q)>=0;r.style.display=ok?'':'none';if(ok)n++;});
    var c=document.getElementById(inp.dataset.table+'-count');if(c)c.textContent=n;});});
})();
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    table_id: str | None = None,
    sortable: bool = False,
    left: int = 1,
    values: Sequence[Sequence[Any]] | None = None,
) -> str:
    """An HTML table; ``values`` (same shape as rows) become ``data-v`` sort keys; ``left`` columns align left."""
    attrs_ = (f' id="{_e(table_id)}"' if table_id else "") + (' class="sortable"' if sortable else "")
    head = "".join(
        f'<th class="l">{_e(h)}</th>' if i < left else f"<th>{_e(h)}</th>" for i, h in enumerate(header)
    )
    body = []
    for r, row in enumerate(rows):
        cells = []
        for i, c in enumerate(row):
            v = "" if values is None or values[r][i] is None else f' data-v="{_e(values[r][i])}"'
            cls = ' class="l"' if i < left else ""
            cells.append(f"<td{cls}{v}>{_e(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table{attrs_}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _heat_color(v: float, lo: float, hi: float) -> str:
    if not np.isfinite(v) or hi <= lo:
        return "#ffffff"
    f = (v - lo) / (hi - lo)
    r, g, b = (int(255 - f * 200), int(255 - abs(f - 0.5) * 80), int(55 + f * 200))
    return f"rgb({r},{g},{b})"


def render_research_section(
    title: str, rows: Sequence[Mapping[str, Any]], heatmap: Mapping[str, Any] | None = None
) -> str:
    """An HTML fragment for walker/optimiser results: a sortable table of ``rows`` (dicts sharing keys;
    their keys are the columns) and, when given, a heatmap of ``heatmap = {"x": [...], "y": [...],
    "z": [[...] per y], "x_label": str, "y_label": str}`` drawn as a coloured table (no JS needed).
    Pass the fragments to ``render_html(research=[...])`` (or ``dump_report(research=…)``)."""
    sid = "research-" + "".join(ch if ch.isalnum() else "-" for ch in title.lower())[:40]
    parts = [f'<div class="research" id="{_e(sid)}"><h2>{_e(title)}</h2>']
    if rows:
        cols = list(rows[0].keys())
        shown = [[_fmt_cell(r.get(c)) for c in cols] for r in rows]
        vals = [[r.get(c) if isinstance(r.get(c), (int, float)) else None for c in cols] for r in rows]
        parts.append(_table(cols, shown, table_id=f"{sid}-rows", sortable=True, values=vals))
    else:
        parts.append('<p class="note">No rows.</p>')
    if heatmap is not None:
        xs, ys = list(heatmap["x"]), list(heatmap["y"])
        z = np.asarray(heatmap["z"], dtype=float)
        if z.shape != (len(ys), len(xs)):
            raise ValueError(
                f"heatmap z must have shape (len(y), len(x)) = {(len(ys), len(xs))}, got {z.shape}"
            )
        finite = z[np.isfinite(z)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        head = f'<th class="l">{_e(heatmap.get("y_label", ""))} \\ {_e(heatmap.get("x_label", ""))}</th>'
        head += "".join(f"<th>{_e(x)}</th>" for x in xs)
        body = "".join(
            f'<tr><th class="l">{_e(y)}</th>'
            + "".join(
                f'<td style="background:{_heat_color(z[i, j], lo, hi)}">{_fmt_cell(z[i, j])}</td>'
                for j in range(len(xs))
            )
            + "</tr>"
            for i, y in enumerate(ys)
        )
        parts.append(
            f'<h3>Heatmap</h3><table class="heatmap"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        )
    parts.append("</div>")
    return "".join(parts)


def _fmt_cell(v: Any) -> str:
    if isinstance(v, float):
        return "N/A" if not np.isfinite(v) else f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    return "" if v is None else str(v)


# ---------------------------------------------------------------- charts
def chart_interval_minutes(span_ms: int, max_bars: int = MAX_BARS) -> int:
    """The smallest interval of :data:`LADDER` that draws ``span_ms`` in at most ``max_bars`` candles."""
    for m in LADDER:
        if span_ms / (m * MINUTE_MS) <= max_bars:
            return m
    return LADDER[-1]


def resample_for_chart(arr: np.ndarray, max_bars: int = MAX_BARS) -> tuple[np.ndarray, int]:
    """Candles (1m, or any step that divides the chart's) → at most ``max_bars`` candles, and the
    interval in minutes used."""
    if not len(arr):
        return arr, 1
    base = int(np.min(np.diff(arr[:, 0]))) if len(arr) > 1 else MINUTE_MS
    base = max(MINUTE_MS, base)
    span = int(arr[-1, 0] - arr[0, 0]) + base
    m = max(chart_interval_minutes(span, max_bars), base // MINUTE_MS)
    if (m * MINUTE_MS) % base:
        m = base // MINUTE_MS
    return (arr if m * MINUTE_MS == base else resample(arr, m * MINUTE_MS, base_ms=base)), m


def _thin(t: np.ndarray, v: np.ndarray, n: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    if len(t) <= n:
        return t, v
    idx = np.unique(np.linspace(0, len(t) - 1, n).round().astype(int))
    return t[idx], v[idx]


def _trade_sources(closed: Sequence[Closed]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    ent: dict[str, list[Any]] = {k: [] for k in ("t", "price", "id", "position", "tp", "sl", "when")}
    ext: dict[str, list[Any]] = {
        k: [] for k in ("t", "price", "id", "reason", "pnl", "tp", "sl", "when", "color")
    }
    for c in closed:
        v = c.signal
        if v is None:
            continue
        t0 = opened_at(c)
        ent["t"].append(t0)
        ent["price"].append(v.price_open)
        ent["id"].append(v.id)
        ent["position"].append(v.position)
        ent["tp"].append(v.price_take_profit)
        ent["sl"].append(v.price_stop_loss)
        ent["when"].append(fmt_time(t0))
        ext["t"].append(c.close_timestamp)
        ext["price"].append(c.pnl.price_close)
        ext["id"].append(v.id)
        ext["reason"].append(str(c.close_reason))
        ext["pnl"].append(f"{c.pnl.pnl_percentage:+.2f}%")
        ext["tp"].append(v.price_take_profit)
        ext["sl"].append(v.price_stop_loss)
        ext["when"].append(fmt_time(c.close_timestamp))
        ext["color"].append("#15803d" if c.pnl.pnl_percentage > 0 else "#b91c1c")
    return ent, ext


def _charts(
    title: str, stats: Statistics, candles: np.ndarray | None, portfolio: Any | None, width: int
) -> tuple[str, str, int]:
    """bokeh ``components``: (script, div, chart interval in minutes)."""
    bplot = require("bokeh.plotting", "the HTML report")
    from bokeh.core.validation import silence
    from bokeh.core.validation.warnings import EMPTY_LAYOUT, MISSING_RENDERERS
    from bokeh.embed import components
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, HoverTool

    closed = chronological(stats.closed)
    tools = "xpan,xwheel_zoom,box_zoom,reset,save"
    figs = []
    minutes = 1
    price: Any = None
    if candles is not None and len(candles):
        bars, minutes = resample_for_chart(candles)
        width_ms = minutes * MINUTE_MS * 0.7
        price = bplot.figure(
            title=f"{title} — candles ({minutes}m)",
            x_axis_type="datetime",
            width=width,
            height=420,
            tools=tools,
            active_drag="xpan",
            active_scroll="xwheel_zoom",
            name="candles",
        )
        up = bars[:, 4] >= bars[:, 1]
        for mask, color in ((up, "#16a34a"), (~up, "#dc2626")):  # numeric columns only: sent as binary
            part = bars[mask]
            src = ColumnDataSource(dict(t=part[:, 0], o=part[:, 1], h=part[:, 2], l=part[:, 3], c=part[:, 4]))
            price.segment("t", "h", "t", "l", source=src, color=color, line_width=1)
            price.vbar("t", width_ms, "o", "c", source=src, fill_color=color, line_color=color)
        price.yaxis.axis_label = "Price"
    elif portfolio is None:  # no candles: the trades on a price axis (a portfolio page: money charts only)
        price = bplot.figure(
            title=f"{title} — trades",
            x_axis_type="datetime",
            width=width,
            height=420,
            tools=tools,
            name="candles",
        )
    ent, ext = _trade_sources(closed)
    if ent["t"] and price is not None:
        levels = ColumnDataSource(dict(t0=ent["t"], t1=ext["t"], tp=ent["tp"], sl=ent["sl"]))
        price.segment(
            "t0", "tp", "t1", "tp", source=levels, color="#16a34a", line_dash="dashed", line_width=1
        )
        price.segment(
            "t0", "sl", "t1", "sl", source=levels, color="#dc2626", line_dash="dashed", line_width=1
        )
        r_in = price.scatter(
            "t",
            "price",
            source=ColumnDataSource(ent),
            marker="triangle",
            size=10,
            color="#2563eb",
            legend_label="entry",
            name="entries",
        )
        r_out = price.scatter(
            "t",
            "price",
            source=ColumnDataSource(ext),
            marker="inverted_triangle",
            size=10,
            color="color",
            legend_label="exit",
            name="exits",
        )
        price.add_tools(
            HoverTool(
                renderers=[r_in],
                tooltips=[
                    ("entry", "@id (@position)"),
                    ("time", "@when"),
                    ("price", "@price{0,0.00[000]}"),
                    ("TP", "@tp{0,0.00[000]}"),
                    ("SL", "@sl{0,0.00[000]}"),
                ],
            ),
            HoverTool(
                renderers=[r_out],
                tooltips=[
                    ("exit", "@id"),
                    ("time", "@when"),
                    ("reason", "@reason"),
                    ("pnl", "@pnl"),
                    ("price", "@price{0,0.00[000]}"),
                    ("TP", "@tp{0,0.00[000]}"),
                    ("SL", "@sl{0,0.00[000]}"),
                ],
            ),
        )
        price.legend.location = "top_left"
        price.legend.click_policy = "hide"
    shared: dict[str, Any] = {}
    if price is not None:
        figs.append(price)
        shared["x_range"] = price.x_range
    eq = bplot.figure(
        title="Equity", x_axis_type="datetime", width=width, height=240, tools=tools, name="equity", **shared
    )
    dd_fig = bplot.figure(
        title="Drawdown %",
        x_axis_type="datetime",
        width=width,
        height=180,
        tools=tools,
        x_range=eq.x_range,
        name="drawdown",
    )
    if portfolio is not None and len(portfolio.curve.time):
        pt, pv = _thin(
            np.asarray(portfolio.curve.time, dtype=float), np.asarray(portfolio.curve.equity, dtype=float)
        )
        eq.line(
            pt, pv, color="#1f77b4", line_width=1.5, legend_label=f"portfolio ({portfolio.stats.currency})"
        )
        eq.yaxis.axis_label = portfolio.stats.currency
        dd_t, dd_v = pt, drawdown_of(pv)
    else:
        pts = stats.equity_curve or ((stats.first_timestamp or 0, 1.0),)
        et = np.array([p[0] for p in pts], dtype=float)
        ev = np.array([p[1] for p in pts], dtype=float)
        eq.step(
            et,
            (ev - 1.0) * 100.0,
            mode="after",
            color="#1f77b4",
            line_width=1.5,
            legend_label="return % (per trade)",
        )
        eq.yaxis.axis_label = "Return %"
        dd_t, dd_v = et, drawdown_of(ev)
    eq.legend.location = "top_left"
    dd_fig.varea(x=dd_t, y1=dd_v, y2=np.zeros_like(dd_v), fill_color="#dc2626", fill_alpha=0.35)
    dd_fig.line(dd_t, dd_v, color="#dc2626", line_width=1)
    figs += [eq, dd_fig]
    silence(MISSING_RENDERERS, True)  # a run without trades or candles: an empty figure is expected
    silence(EMPTY_LAYOUT, True)
    script, div = components(column(*figs, sizing_mode="stretch_width"))
    return script, div, minutes


# ---------------------------------------------------------------- document
def _stats_table(stats: Statistics) -> str:
    rows = [(label, format_stat(getattr(stats, name), kind)) for name, label, kind in STAT_ROWS]
    body = "".join(
        f'<tr data-field="{_e(name)}"><td class="l">{_e(label)}</td><td>{_e(val)}</td></tr>'
        for (name, _l, _k), (label, val) in zip(STAT_ROWS, rows, strict=True)
    )
    head = '<thead><tr><th class="l">Metric</th><th>Value</th></tr></thead>'
    return f'<table id="statistics">{head}<tbody>{body}</tbody></table>'


def _trades_table(stats: Statistics) -> str:
    shown = list(stats.closed)  # newest first, like the markdown
    rows = [_signal_row(c, stats) for c in shown]
    numeric = {"Open", "Close", "TP", "SL"}
    vals: list[list[Any]] = []
    for c, row in zip(shown, rows, strict=True):
        v = c.signal
        assert v is not None
        keys: list[Any] = [None] * len(row)
        for i, col in enumerate(SIGNAL_COLUMNS):
            if col in numeric:
                keys[i] = {
                    "Open": v.price_open,
                    "Close": c.pnl.price_close,
                    "TP": v.price_take_profit,
                    "SL": v.price_stop_loss,
                }[col]
            elif col == "PnL %":
                keys[i] = c.pnl.pnl_percentage
            elif col == "PnL $":
                keys[i] = c.pnl.pnl_cost
            elif col == "Opened (UTC)":
                keys[i] = opened_at(c)
            elif col == "Closed (UTC)":
                keys[i] = c.close_timestamp
        vals.append(keys)
    n = len(rows)
    table = _table(SIGNAL_COLUMNS, rows, table_id="trades", sortable=True, left=3, values=vals)
    return (
        f'<input class="filter" data-table="trades" placeholder="filter trades (id, symbol, reason…)">'
        f' <span class="note"><span id="trades-count">{n}</span> of {n} trades shown; click a header to sort</span>'
        f'<div class="wrap">{table}</div>'
    )


def _rejections_html(rejections: Sequence[Any]) -> str:
    if not rejections:
        return '<p class="note">No signal was rejected by risk checks.</p>'
    rows = [
        (fmt_time(r.timestamp), r.symbol, r.strategy_name, r.risk_name, r.active_position_count, r.note)
        for r in rejections
    ]
    return f"<p>{len(rows)} signal(s) rejected by risk checks.</p>" + _table(
        ("Time (UTC)", "Symbol", "Strategy", "Profile", "Active", "Note"),
        rows,
        table_id="rejections",
        sortable=True,
        left=4,
    )


def _family_tabs(family: Any) -> list[tuple[str, str, str]]:
    from btkit.reporting import family as fam

    s = family.schedule
    sched = (
        f"<p>{s.scheduled} scheduled · {s.activated} activated · {s.cancelled} cancelled · {s.waiting} waiting</p>"
        + _table(
            ("ID", "Symbol", "Position", "Scheduled (UTC)", "Outcome", "At (UTC)", "Cancel reason"),
            [
                (
                    r.id,
                    r.symbol,
                    r.position,
                    fmt_time(r.scheduled_at),
                    r.outcome,
                    fmt_time(r.resolved_at),
                    r.cancel_reason or "",
                )
                for r in s.rows
            ],
            table_id="schedule",
            sortable=True,
            left=3,
        )
    )
    p = family.partials
    parts = (
        f"<p>{p.partial_profits} partial profit(s) · {p.partial_losses} partial loss(es) · "
        f"{p.breakevens} breakeven(s)</p>"
    )
    parts += _table(
        ("ID", "Symbol", "Event", "Percent", "Price", "Time (UTC)"),
        [
            (e.id, e.symbol, e.kind, _fmt_cell(e.percent), _fmt_cell(e.price), fmt_time(e.timestamp))
            for e in p.rows
        ],
        table_id="partials",
        sortable=True,
        left=3,
    )
    ext = _table(
        fam.EXTREMES_COLUMNS,
        [
            (
                r.id,
                r.symbol,
                r.position,
                _fmt_cell(r.peak_pnl),
                _fmt_cell(r.drawdown_pnl),
                _fmt_cell(r.pnl),
                _fmt_cell(r.given_back),
                r.close_reason,
            )
            for r in family.extremes
        ],
        table_id="extremes",
        sortable=True,
        left=3,
        values=[
            (None, None, None, r.peak_pnl, r.drawdown_pnl, r.pnl, r.given_back, None) for r in family.extremes
        ],
    )
    perf = _table(
        ("Phase", "Count", "Total ms", "Mean ms", "p95 ms", "p99 ms", "Max ms"),
        [
            (r.phase, r.count, *(f"{x:,.3f}" for x in (r.total_ms, r.mean_ms, r.p95_ms, r.p99_ms, r.max_ms)))
            for r in family.performance
        ],
        table_id="performance",
        sortable=True,
    )
    heat = _table(
        ("Symbol", "Trades", "PnL", "Win rate %", "Sharpe (per trade)", "Max DD", "Max DD %"),
        [
            (
                h.symbol,
                h.trades,
                _fmt_cell(h.pnl),
                _fmt_cell(h.win_rate),
                _fmt_cell(h.sharpe),
                _fmt_cell(h.max_drawdown),
                _fmt_cell(h.max_drawdown_pct),
            )
            for h in family.heat
        ],
        table_id="heat",
        sortable=True,
    )
    t = fam.SECTION_TITLES
    return [
        ("schedule", "Schedule", f"<h2>{_e(t['schedule'])}</h2>{sched}"),
        ("partials", "Partials", f"<h2>{_e(t['partials'])}</h2>{parts}"),
        ("extremes", "Peaks / drawdowns", f"<h2>{_e(t['extremes'])}</h2>{ext}"),
        ("performance", "Performance", f"<h2>{_e(t['performance'])}</h2>{perf}"),
        ("heat", "Heat", f"<h2>{_e(t['heat'])}</h2>{heat}"),
    ]


def render_html(
    title: str,
    stats: Statistics,
    *,
    candles: np.ndarray | None = None,
    extra: Mapping[str, str] | None = None,
    rejections: Sequence[Any] = (),
    family: Any | None = None,
    portfolio: Any | None = None,
    research: Sequence[str] = (),
    width: int = 1200,
) -> str:
    """The whole report as one HTML document (bokeh JS inlined). ``candles`` are 1m rows
    ``[ts, o, h, l, c, v]`` of the run's range; ``portfolio`` a ``btkit.accounting`` view (money equity)."""
    require("bokeh", "the HTML report")
    from bokeh.resources import Resources

    script, div, minutes = _charts(title, stats, candles, portfolio, width)
    js = Resources(mode="inline", components=["bokeh"]).render_js()
    info = "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in (extra or {}).items())
    tabs: list[tuple[str, str, str]] = [
        (
            "chart",
            "Chart",
            f'{div}<p class="note">Candles drawn at {minutes}m; drag to pan, wheel to zoom; '
            "hover a marker for TP/SL and the close reason.</p>",
        ),
        ("trades", f"Trades ({len(stats.closed)})", _trades_table(stats)),
        ("statistics", "Statistics", _stats_table(stats)),
    ]
    if family is not None:
        tabs += _family_tabs(family)
    tabs.append(("risk", f"Risk rejections ({len(rejections)})", _rejections_html(rejections)))
    if research:
        tabs.append(("research", "Research", "".join(research)))
    nav = "".join(
        f'<button data-tab="{tid}"{" class=active" if i == 0 else ""}>{_e(label)}</button>'
        for i, (tid, label, _b) in enumerate(tabs)
    )
    sections = "".join(
        f'<section class="tab{" active" if i == 0 else ""}" id="{tid}">{body}</section>'
        for i, (tid, _l, body) in enumerate(tabs)
    )
    meta = json.dumps({"trades": len(stats.closed), "chart_minutes": minutes})
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style>{js}{script}</head><body>"
        f"<header><h1>{_e(title)}</h1><ul>{info}</ul></header><nav>{nav}</nav>{sections}"
        f'<script type="application/json" id="btkit-report-meta">{meta}</script>'
        f"<script>{_JS}</script></body></html>\n"
    )
