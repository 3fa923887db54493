"""The plotting libraries stay out of ``btkit backtest --report md``; a year of 1m renders within 10 MB;
the research section and the report family work on their own."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from btkit.model import Closed, Entry, Partial, SignalRow, view_of
from btkit.reporting.family import Timings, partials_data, schedule_data
from btkit.reporting.html import MAX_BARS, render_html, render_research_section, resample_for_chart
from btkit.stats import compute_statistics

T0 = 1_704_067_200_000
MIN = 60_000

PROBE = """
import json, sys
from btkit.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'bokeh', 'plotly', 'rich'))
print('MODULES ' + json.dumps({'rc': rc, 'heavy': heavy}))
"""


def test_backtest_report_md_imports_no_plotting_library(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "backtest", "--timerange", "20240101-20240102", "--report", "md"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("MODULES "))
    found = json.loads(line[8:])
    assert found["rc"] == 0, out.stderr[-2000:]
    # not a TTY: no rich either (plain progress and tables)
    assert found["heavy"] == [], found["heavy"]
    assert not list((tmp_path / "dump" / "backtest").glob("*.html"))
    assert not list((tmp_path / "dump" / "backtest").glob("*.png"))


def _row(i: int, t: int, price: float, **kw: object) -> SignalRow:
    return SignalRow(
        id=f"s{i}", symbol="BTCUSDT", strategy_name="s", exchange_name="sim", frame_name="f",
        position="long", price_open=price, price_take_profit=price * 1.02, price_stop_loss=price * 0.99,
        minute_estimated_time=1440, cost=100.0, note="", scheduled_at=t, pending_at=t,
        entries=(Entry(price, 100.0, t),), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _closed(row: SignalRow, t_close: int, price_close: float, reason: str = "take_profit") -> Closed:
    from btkit.lifecycle.pnl import position_pnl

    pnl = position_pnl(row, price_close, slippage_pct=0.1, fee_pct=0.1)
    return Closed(
        symbol=row.symbol, strategy_name="s", exchange_name="sim", frame_name="f", backtest=True,
        timestamp=t_close, current_price=price_close, signal=view_of(row), close_reason=reason,  # type: ignore[arg-type]
        close_timestamp=t_close, pnl=pnl,
    )  # fmt: skip


def year_of_candles(n: int = 525_600) -> np.ndarray:
    rng = np.random.default_rng(7)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 6e-4, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    hi = np.maximum(open_, close) * (1 + rng.uniform(0, 4e-4, n))
    lo = np.minimum(open_, close) * (1 - rng.uniform(0, 4e-4, n))
    ts = T0 + np.arange(n, dtype=np.int64) * MIN
    return np.column_stack([ts.astype(float), open_, hi, lo, close, rng.uniform(1, 10, n)])


def test_a_year_of_1m_with_a_thousand_trades_renders_under_10_mb_and_fast(tmp_path: Path) -> None:
    candles = year_of_candles()
    idx = np.arange(100, len(candles) - 600, 500)[:1000]
    trades = [
        _closed(
            _row(i, int(candles[k, 0]), float(candles[k, 4])),
            int(candles[k + 300, 0]),
            float(candles[k + 300, 4]),
        )
        for i, k in enumerate(idx)
    ]
    stats = compute_statistics(trades)
    bars, minutes = resample_for_chart(candles)
    assert len(bars) <= MAX_BARS and minutes == 360
    t = time.perf_counter()
    page = render_html("a year", stats, candles=candles)
    seconds = time.perf_counter() - t
    size = len(page.encode("utf-8"))
    print(f"year of 1m, {len(trades)} trades: {size / 1e6:.2f} MB in {seconds:.2f} s")
    assert size <= 10_000_000
    assert seconds < 10  # generous for a loaded 2-core CI box; benchmarks/report_html.py measures it
    assert page.count("<tr>") >= len(trades)
    assert "<script src=" not in page and "<link " not in page  # everything inline: opens offline


def test_research_section_renders_rows_and_a_heatmap() -> None:
    rows = [{"fast": 5, "slow": 20, "sharpe": 1.25}, {"fast": 10, "slow": 30, "sharpe": -0.5}]
    heat = {
        "x": [20, 30],
        "y": [5, 10],
        "z": [[1.25, 0.3], [0.1, -0.5]],
        "x_label": "slow",
        "y_label": "fast",
    }
    frag = render_research_section("Walker: smacross", rows, heat)
    assert frag.count("<tr>") == 1 + 2 + 1 + 2  # rows table (head + 2) and heatmap (head + 2)
    assert 'data-v="1.25"' in frag and "background:rgb(" in frag and "Walker: smacross" in frag
    page = render_html("with research", compute_statistics([]), research=[frag])
    assert 'data-tab="research"' in page and frag in page


def test_schedule_and_partials_counts() -> None:
    import attrs

    from btkit.model import Cancelled, Scheduled

    r1 = _row(1, T0, 100.0)
    waiting = attrs.evolve(r1, id="w", pending_at=None)
    activated = attrs.evolve(r1, id="a", pending_at=T0 + 30 * MIN)
    cancelled = attrs.evolve(r1, id="c", pending_at=None)
    common = dict(symbol="BTCUSDT", strategy_name="s", exchange_name="sim", frame_name="f", backtest=True,
                  current_price=100.0)  # fmt: skip
    events = [
        Scheduled(timestamp=T0, signal=view_of(waiting), **common),  # type: ignore[arg-type]
        Scheduled(timestamp=T0, signal=view_of(attrs.evolve(activated, pending_at=None)), **common),  # type: ignore[arg-type]
        Scheduled(timestamp=T0, signal=view_of(cancelled), **common),  # type: ignore[arg-type]
        Cancelled(timestamp=T0 + 60 * MIN, signal=view_of(cancelled), reason="timeout",  # type: ignore[arg-type]
                  close_timestamp=T0 + 60 * MIN, **common),  # type: ignore[arg-type]
    ]  # fmt: skip
    part = Partial("profit", 25.0, 101.0, 100.0, 1, T0 + 40 * MIN)
    be = attrs.evolve(activated, partials=(part,), trailing_stop_loss=activated.price_open, breakeven=True)
    closed = [_closed(be, T0 + 90 * MIN, 101.5)]
    s = schedule_data([*events, *closed])
    assert (s.scheduled, s.activated, s.cancelled, s.waiting) == (3, 1, 1, 1)
    assert s.activation_rate is not None and abs(s.activation_rate - 100 / 3) < 1e-9
    assert s.avg_wait_minutes == 30
    p = partials_data(closed)
    assert (p.partial_profits, p.partial_losses, p.breakevens) == (1, 0, 1)


def test_timings_summarise_per_phase() -> None:
    t = Timings()
    for ms in range(1, 101):
        t.record("tick", ms / 1000)
    (row,) = t.rows()
    assert row.count == 100 and abs(row.mean_ms - 50.5) < 1e-9
    assert abs(row.p95_ms - 95.05) < 1e-6 and abs(row.p99_ms - 99.01) < 1e-6 and row.max_ms == 100
