"""The portfolio equity curve against hand calculations, its statistics, the heat table, and the CLI."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from btkit.accounting.equity import HOUR_MS, EquityCurve, Holding, Prices, equity_curve
from btkit.accounting.portfolio import drawdown, max_concurrent, portfolio_stats
from btkit.model import Entry, SignalRow

H = HOUR_MS
M = 60_000


def row(entries: list[Entry], multiplier: float = 1.0) -> SignalRow:
    return SignalRow(
        id="a",
        symbol="X",
        strategy_name="s",
        exchange_name="e",
        frame_name="f",
        position="long",
        price_open=entries[0].price,
        price_take_profit=200.0,
        price_stop_loss=50.0,
        minute_estimated_time=None,
        cost=entries[0].cost,
        note="",
        scheduled_at=entries[0].timestamp,
        pending_at=entries[0].timestamp,
        multiplier=multiplier,
        entries=tuple(entries),
    )


PRICES = {
    "X": Prices(
        time=np.asarray([0, H, 2 * H, 3 * H, 4 * H]), close=np.asarray([99.0, 105.0, 95.0, 110.0, 108.0])
    )
}


def test_marks_at_chosen_instants_equal_the_hand_calculation_with_fees_slippage_and_leverage() -> None:
    pos = Holding(
        row=row([Entry(100.0, 1_000.0, 30 * M)], multiplier=2.0),
        symbol="X",
        opened=30 * M,
        closed=3 * H + 30 * M,
        net_pnl=123.0,
    )
    curve = equity_curve([pos], PRICES, balance=10_000.0, start=0, end=4 * H, slippage_pct=0.1, fee_pct=0.1)
    at = dict(zip(curve.time.tolist(), curve.equity.tolist(), strict=True))

    def by_hand(price: float) -> float:  # (raw − f·(1 + C/O)) · leverage, of the 1,000 margin
        o, c = 100.0 * 1.001, price * 0.999
        return ((c - o) / o * 100 - 0.1 * (1 + c / o)) * 2 / 100 * 1_000.0

    assert at[0] == 10_000.0  # nothing open yet
    assert at[30 * M] == pytest.approx(
        10_000.0 + by_hand(100.0)
    )  # the 0h price predates the entry: entry price
    assert at[H] == pytest.approx(10_000.0 + by_hand(105.0))
    assert at[2 * H] == pytest.approx(10_000.0 + by_hand(95.0))
    assert at[3 * H] == pytest.approx(10_000.0 + by_hand(110.0))
    assert at[3 * H + 30 * M] == 10_000.0 + 123.0  # closed: its recorded pnl, no mark
    assert at[4 * H] == 10_000.0 + 123.0
    assert curve.open_positions.tolist() == [0, 1, 1, 1, 1, 0, 0]


def test_a_dca_entry_counts_only_from_when_it_filled() -> None:
    entries = [Entry(100.0, 500.0, 30 * M), Entry(90.0, 500.0, 2 * H + 30 * M)]
    pos = Holding(row=row(entries), symbol="X", opened=30 * M, closed=None)
    curve = equity_curve([pos], PRICES, balance=1_000.0, start=0, end=4 * H, slippage_pct=0.0, fee_pct=0.0)
    at = dict(zip(curve.time.tolist(), curve.equity.tolist(), strict=True))
    assert at[H] == pytest.approx(1_000.0 + 5 * 105.0 - 500.0)  # 5 units of the first entry
    units = 500 / 100 + 500 / 90
    assert at[3 * H] == pytest.approx(1_000.0 + units * 110.0 - 1_000.0)
    assert at[4 * H] == pytest.approx(1_000.0 + units * 108.0 - 1_000.0)  # still open at the end: marked


def test_statistics_of_a_known_curve() -> None:
    day = 86_400_000
    eq = 1_000.0 * np.asarray([1.0, 1.1, 0.99, 1.089, 1.2, 1.0, 1.05] * 3)  # 21 daily points
    curve = EquityCurve(
        time=np.arange(len(eq), dtype=np.int64) * day,
        equity=eq,
        realised=eq - 1_000.0,
        unrealised=np.zeros(len(eq)),
        open_positions=np.zeros(len(eq), dtype=np.int64),
        balance=1_000.0,
    )
    s = portfolio_stats(curve, [], currency="USDT")
    r = eq[1:] / eq[:-1] - 1
    assert s.sharpe == pytest.approx(r.mean() / r.std(ddof=1) * math.sqrt(365))
    assert s.sortino == pytest.approx(r.mean() / math.sqrt((np.minimum(r, 0) ** 2).mean()) * math.sqrt(365))
    assert s.volatility_pct == pytest.approx(r.std(ddof=1) * math.sqrt(365) * 100)
    days = len(eq) - 1
    assert s.cagr_pct == pytest.approx(((1.05) ** (365 / days) - 1) * 100)
    assert (s.max_drawdown, s.max_drawdown_pct) == pytest.approx((210.0, 210 / 1200 * 100))  # 1.2 → 0.99
    assert s.calmar == pytest.approx(s.cagr_pct / s.max_drawdown_pct)
    assert s.total_return_pct == pytest.approx(5.0)
    assert drawdown(np.asarray([5.0, 10.0, 4.0, 12.0])) == pytest.approx((6.0, 60.0))


def test_a_wiped_out_account_never_shows_below_minus_100_percent() -> None:
    eq = np.asarray([1_000.0, 500.0, -200.0])
    curve = EquityCurve(
        time=np.asarray([0, 1, 2]),
        equity=eq,
        realised=eq,
        unrealised=eq * 0,
        open_positions=np.asarray([0, 0, 0]),
        balance=1_000.0,
    )
    s = portfolio_stats(curve, [], currency="USDT")
    assert s.total_return_pct == -100.0 and s.max_drawdown_pct == 100.0


def test_max_concurrent_frees_a_slot_closed_at_the_same_instant() -> None:
    r = row([Entry(100.0, 1.0, 0)])
    hs = [
        Holding(row=r, symbol="A", opened=0, closed=10),
        Holding(row=r, symbol="B", opened=10, closed=20),
        Holding(row=r, symbol="C", opened=5, closed=None),
    ]
    assert max_concurrent(hs, end=30) == 2


def test_done_when_the_example_prints_money_and_the_report_shows_curve_and_heat(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTKIT")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "btkit.cli",
            "backtest",
            "--config",
            str(repo / "examples" / "btkit.toml"),
            "--balance",
            "10000",
            "--sizing",
            "risk:2",
            "--timerange",
            "20240101-20240115",
            "--report",
            "md,png",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for sym in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "total"):
        assert any(re.match(rf"{sym}\s+\d+\s+\S+%\s+-?[\d,]+\.\d\d\s+[\d,]+\.\d\d$", ln) for ln in lines), sym
    assert any(ln.startswith("Compounded return") for ln in lines)
    final = next(ln for ln in lines if ln.startswith("Final equity"))
    report = Path(tmp_path / next(ln for ln in lines if ln.startswith("portfolio report: "))[18:])
    text = report.read_text()
    for heading in (
        "## Portfolio",
        "## Per symbol (money)",
        "## Heat (per symbol)",
        "## Portfolio equity curve",
    ):
        assert heading in text
    png = report.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in text
    csv = report.with_name(report.stem + "-equity.csv").read_text().splitlines()
    assert csv[0].startswith("time_ms,time_utc,equity")
    hours = (int(csv[-1].split(",")[0]) - int(csv[1].split(",")[0])) / HOUR_MS
    assert len(csv) - 1 >= hours  # at least hourly
    last_equity = float(csv[-1].split(",")[2])
    assert f"{last_equity:,.2f} USDT" in final
