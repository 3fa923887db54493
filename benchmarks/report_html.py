"""What the HTML report costs on a one-year 1m backtest: its size and the time it adds to writing reports.

    uv run python benchmarks/report_html.py [--days 366] [--compare-plotly]

Runs the offline demo (smacross on the simulated exchange, BTCUSDT) over a year, then writes the report
three ways: markdown only, markdown + HTML, markdown + HTML + PNG. Prints the run time, each report's
time, the HTML's size and the ratio (added seconds / backtest seconds). ``--compare-plotly`` (needs
plotly: ``uv run --with plotly python benchmarks/report_html.py --compare-plotly``) draws the same
charts with plotly (JS inlined) and prints both files' size and how long headless Chromium takes to load
each (when chromium is on PATH). docs/reports.md quotes the figures.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

import btkit


def chromium_load_seconds(page: Path, repeats: int = 3) -> float | None:
    exe = shutil.which("chromium")
    if exe is None:
        return None
    best = None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as prof:
            t = time.perf_counter()
            subprocess.run(
                [exe, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={prof}",
                 "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                capture_output=True, timeout=120, check=True,
            )  # fmt: skip
            s = time.perf_counter() - t
        best = s if best is None else min(best, s)
    return best


def plotly_page(stats: object, candles: np.ndarray, out: Path) -> Path:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from btkit.reporting.charts import drawdown_of
    from btkit.reporting.html import resample_for_chart
    from btkit.stats import chronological, opened_at

    bars, _ = resample_for_chart(candles)
    x = bars[:, 0].astype("int64").astype("datetime64[ms]")
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, row_heights=(0.6, 0.25, 0.15))
    fig.add_trace(
        go.Candlestick(x=x, open=bars[:, 1], high=bars[:, 2], low=bars[:, 3], close=bars[:, 4]), 1, 1
    )
    closed = chronological(stats.closed)  # type: ignore[attr-defined]
    t_in = np.array([opened_at(c) for c in closed], dtype="int64").astype("datetime64[ms]")
    t_out = np.array([c.close_timestamp for c in closed], dtype="int64").astype("datetime64[ms]")
    fig.add_trace(go.Scatter(x=t_in, y=[c.signal.price_open for c in closed], mode="markers",
                             text=[f"TP {c.signal.price_take_profit:.2f} SL {c.signal.price_stop_loss:.2f}" for c in closed],
                             marker_symbol="triangle-up"), 1, 1)  # fmt: skip
    fig.add_trace(go.Scatter(x=t_out, y=[c.pnl.price_close for c in closed], mode="markers",
                             text=[c.close_reason for c in closed], marker_symbol="triangle-down"), 1, 1)  # fmt: skip
    pts = stats.equity_curve  # type: ignore[attr-defined]
    et = np.array([p[0] for p in pts], dtype="int64").astype("datetime64[ms]")
    ev = np.array([p[1] for p in pts])
    fig.add_trace(go.Scatter(x=et, y=(ev - 1) * 100, line_shape="hv"), 2, 1)
    fig.add_trace(go.Scatter(x=et, y=drawdown_of(ev), fill="tozeroy"), 3, 1)
    fig.update_layout(xaxis_rangeslider_visible=False)
    fig.write_html(out, include_plotlyjs=True, full_html=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=366)
    ap.add_argument("--compare-plotly", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=args.days)
    btkit.add_frame("year", start, end - timedelta(minutes=1))
    kw = {"strategy": "smacross", "exchange": "sim", "frame": "year"}
    t, c = time.perf_counter(), time.process_time()
    trades = sum(1 for r in btkit.Backtest.run("BTCUSDT", **kw) if r.action == "closed")
    run_s, run_cpu = time.perf_counter() - t, time.process_time() - c
    out = Path(tempfile.mkdtemp(prefix="btkit-report-bench-"))
    t = time.perf_counter()
    from btkit.reporting.html import render_html
    from btkit.stats import compute_statistics

    render_html("warm-up", compute_statistics([]))  # imports bokeh: paid once per process, shown apart
    import_s = time.perf_counter() - t
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    path = out
    kinds = (("md", ("md",)), ("html+md", ("html", "md")), ("html+md+png", ("html", "md", "png")))
    for i in range(args.repeats):  # interleaved, best of N: the machine's other load drifts
        for label, formats in kinds:
            t, c = time.perf_counter(), time.process_time()
            p = btkit.Backtest.dump("BTCUSDT", path=out / f"{label}-{i}", formats=formats, **kw)
            wall, used = time.perf_counter() - t, time.process_time() - c
            timings[label] = min(timings.get(label, wall), wall)
            cpu[label] = min(cpu.get(label, used), used)
            if label == "html+md":
                path = p
    html = path.with_suffix(".html")
    size = html.stat().st_size
    added = timings["html+md"] - timings["md"]
    print(
        f"backtest          : {args.days} days of 1m, {trades} trades, {run_s:.2f} s wall, {run_cpu:.2f} s cpu"
    )
    print(f"bokeh first import: {import_s:.2f} s (once per process)")
    for label, s in timings.items():
        print(f"report {label:<11}: {s:.3f} s wall, {cpu[label]:.3f} s cpu (best of {args.repeats})")
    print(f"html size         : {size / 1e6:.2f} MB (limit 10 MB)")
    print(f"html adds         : {added:.3f} s (target <= 1 s); ratio to the backtest {added / run_s:.3f}")
    print(f"html adds (cpu)   : {cpu['html+md'] - cpu['md']:.3f} s")
    print(f"html adds, with the import: {added + import_s:.3f} s; ratio {(added + import_s) / run_s:.3f}")
    load = chromium_load_seconds(html)
    if load is not None:
        print(f"chromium load bokeh : {load:.2f} s")
    if args.compare_plotly:
        stats = btkit.Backtest.get_data("BTCUSDT", **kw)
        from btkit.reporting.dump import fetch_chart_candles

        candles = fetch_chart_candles(
            "sim", "BTCUSDT", int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        )
        assert candles is not None
        t = time.perf_counter()
        page = plotly_page(stats, candles, out / "plotly.html")
        print(f"plotly write      : {time.perf_counter() - t:.3f} s, {page.stat().st_size / 1e6:.2f} MB")
        load = chromium_load_seconds(page)
        if load is not None:
            print(f"chromium load plotly: {load:.2f} s")
    print(f"files in {out}")


if __name__ == "__main__":
    main()
