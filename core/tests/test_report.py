"""Markdown reports, file names and trade exports (20-pnl-stats.md §6); charts: tests/reporting/."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from btkit.lifecycle.pnl import position_pnl
from btkit.model import Closed, Entry, Partial, SignalRow, view_of
from btkit.reporting import (
    SIGNAL_COLUMNS,
    default_report_dir,
    dump_report,
    export_trades,
    fmt_duration,
    fmt_price,
    fmt_time,
    render_markdown,
    report_filename,
    safe_name,
    write_report,
)
from btkit.stats import compute_statistics

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MIN = 60_000
DAY = 86_400_000
FEES = {"slippage_pct": 0.1, "fee_pct": 0.1}


def closed(
    sid: str,
    *,
    close: float,
    opened: int,
    minutes: int = 60,
    position: str = "long",
    entry: float = 100.0,
    tp: float = 110.0,
    sl: float = 90.0,
    entries: tuple[Entry, ...] | None = None,
    partials: tuple[Partial, ...] = (),
    multiplier: float = 1.0,
    isolated: bool = True,
    best: float | None = None,
    worst: float | None = None,
    trailing_sl: float | None = None,
    symbol: str = "BTC/USDT",
) -> Closed:
    """A Closed result built by hand; its pnl comes from the real pnl module."""
    entries = entries or (Entry(entry, 100.0, opened),)
    row = SignalRow(
        id=sid,
        symbol=symbol,
        strategy_name="s1",
        exchange_name="ex",
        frame_name="fr",
        position=position,  # type: ignore[arg-type]
        price_open=entry,
        price_take_profit=tp,
        price_stop_loss=sl,
        minute_estimated_time=None,
        cost=100.0,
        note="",
        scheduled_at=opened,
        pending_at=opened,
        multiplier=multiplier,
        isolated=isolated,
        entries=entries,
        partials=partials,
        trailing_stop_loss=trailing_sl,
    )
    pnl = position_pnl(row, close, **FEES)
    end = opened + minutes * MIN
    return Closed(
        symbol=symbol,
        strategy_name="s1",
        exchange_name="ex",
        frame_name="fr",
        backtest=True,
        timestamp=end,
        current_price=close,
        signal=view_of(row),
        close_reason="take_profit" if pnl.pnl_percentage > 0 else "stop_loss",
        close_timestamp=end,
        pnl=pnl,
        price_best=best,
        price_worst=worst,
    )


def sample() -> list[Closed]:
    """Three trades: a plain long win, a 10× cross short with a trailed stop, a DCA long with a partial."""
    a = closed("a-1", close=110.0, opened=T0, best=110.0, worst=95.0)
    b = closed(
        "b-2",
        position="short",
        close=98.0,
        tp=90.0,
        sl=110.0,
        trailing_sl=104.0,
        opened=T0 + DAY,
        minutes=150,
        multiplier=10.0,
        isolated=False,
    )
    c = closed(
        "c|3",
        close=98.0,
        opened=T0 + 2 * DAY,
        entries=(Entry(100.0, 100.0, T0 + 2 * DAY), Entry(80.0, 200.0, T0 + 2 * DAY + 10 * MIN)),
        partials=(Partial("profit", 30.0, 95.0, 300.0, 2, T0 + 2 * DAY + 20 * MIN),),
        minutes=3 * 1440 + 65,
    )
    return [a, b, c]


# ---------------------------------------------------------------- formatting and names
def test_formatters() -> None:
    assert fmt_price(100.0) == "100.00"
    assert fmt_price(85.714285714) == "85.714286"  # 8 significant digits
    assert fmt_price(0.000012345678) == "0.000012345678"
    assert fmt_price(43_250.5) == "43,250.50"
    assert fmt_duration(0.5) == "30s"
    assert fmt_duration(45) == "45m"
    assert fmt_duration(125) == "2h 05m"
    assert fmt_duration(3 * 1440 + 65) == "3d 01h 05m"
    assert fmt_duration(None) == "N/A"
    assert fmt_time(T0) == "2024-01-01T00:00:00Z"
    assert fmt_time(T0 + 90 * MIN) == "2024-01-01T01:30:00Z"


def test_report_filename_is_filesystem_safe() -> None:
    name = report_filename("BTC/USDT", "sma cross", "binance", "1m", "backtest", 1_700_000_000_000)
    assert name == "BTC-USDT_sma-cross_binance_1m_backtest-1700000000000.md"
    assert report_filename("BTC/USDT:USDT", "s", "e", "f", "live", 5) == "BTC-USDT-USDT_s_e_f_live-5.md"
    assert safe_name("../../etc") == "etc"
    assert safe_name("..") == "_"
    assert safe_name("") == "_"
    assert "/" not in report_filename("a/b\\c", "x/..", "..", "f", "live", 1)


def test_default_report_dirs() -> None:
    assert default_report_dir("backtest") == Path("dump") / "backtest"
    assert default_report_dir("live", "out") == Path("out") / "live"


def test_write_report_creates_directories(tmp_path: Path) -> None:
    p = write_report(tmp_path / "dump" / "backtest", "r.md", "# hi\n")
    assert p == tmp_path / "dump" / "backtest" / "r.md"
    assert p.read_text(encoding="utf-8") == "# hi\n"
    assert [x.name for x in p.parent.iterdir()] == ["r.md"]  # no temporary file left behind
    with pytest.raises(ValueError, match="plain name"):
        write_report(tmp_path, "../escape.md", "x")


# ---------------------------------------------------------------- markdown
def test_markdown_statistics_block_and_na() -> None:
    stats = compute_statistics(sample(), **FEES)
    md = render_markdown("Backtest BTC/USDT", stats, extra={"Exchange": "ex", "Mode": "backtest"})
    assert md.startswith("# Backtest BTC/USDT\n")
    assert "- **Exchange**: ex" in md
    assert "| Closed signals | 3 |" in md
    # three closes: the ≥10-close ratios are undefined → N/A
    assert "| Sharpe ratio (per trade) | N/A |" in md
    assert "| Annualized Sharpe ratio | N/A |" in md
    assert not re.search(r"\b(nan|inf|infinity)\b", md, re.IGNORECASE)
    # win rate: all three trades' pnl signs decide it; the block shows it as a percentage
    assert f"| Win rate | {stats.win_rate:.2f}% |" in md


def test_markdown_signal_table_newest_first_with_all_columns() -> None:
    stats = compute_statistics(sample(), **FEES)
    md = render_markdown("T", stats)
    header = "| " + " | ".join(SIGNAL_COLUMNS) + " |"
    assert header in md
    for col in ("Multiplier", "Margin", "Peak PnL %", "Max DD PnL %", "Entries", "Partials"):
        assert col in header
    table = md.split("## Signals (newest first)", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith(("| a-1", "| b-2", "| c\\|3"))]
    assert [r.split(" | ")[0] for r in rows] == ["| c\\|3", "| b-2", "| a-1"]  # newest first, pipe escaped
    a_row = rows[2].split(" | ")
    # long 100 → 110 is the spec's 9.570439560 %; peak (best 110) is the same; worst 95 marks
    #   O=100.1, C=94.905 → raw −5.1898102 %, fees 0.1·(1+94.905/100.1) = 0.1948102 → −5.3846204 %
    assert a_row[7] == "+9.57%" and a_row[8] == "+$9.57"
    assert a_row[13] == "+9.57%" and a_row[14] == "-5.38%"
    assert a_row[10:13] == ["1h 00m", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"]
    assert a_row[15:] == ["1x", "isolated", "1", "0 |"]
    b_row = rows[1].split(" | ")
    assert b_row[2] == "short" and b_row[6] == "104.00"  # effective (trailed) stop
    assert b_row[15:17] == ["10x", "cross"]
    assert b_row[13] == "N/A" and b_row[14] == "N/A"  # no best/worst recorded
    c_row = rows[0].split(" | ")
    assert c_row[3] == "85.714286"  # DCA effective entry: 300 / (1 + 2.5)
    assert c_row[10] == "3d 01h 05m"
    assert c_row[17:] == ["2", "1 |"]


def test_markdown_detail_sections() -> None:
    md = render_markdown("T", compute_statistics(sample(), **FEES))
    dca = md.split("## DCA entries", 1)[1].split("## Partial closes", 1)[0]
    assert "c\\|3" in dca and "a-1" not in dca and "b-2" not in dca
    assert "| 2 | 80.00 | 200.00 | 2024-01-03T00:10:00Z |" in dca
    partials = md.split("## Partial closes", 1)[1].split("## Adjusted prices", 1)[0]
    assert "| 1 | profit | 30.00% | 95.00 | 300.00 | 2 | 2024-01-03T00:20:00Z |" in partials
    adjusted = md.split("## Adjusted prices (original vs effective)", 1)[1]
    assert "| b-2 | Stop loss | 110.00 | 104.00 |" in adjusted
    assert "| c\\|3 | Entry | 100.00 | 85.714286 |" in adjusted
    assert "a-1" not in adjusted


def test_markdown_without_details_and_empty() -> None:
    plain = render_markdown("T", compute_statistics([closed("x", close=105.0, opened=T0)]))
    assert "## DCA entries" not in plain and "## Partial closes" not in plain and "## Adjusted" not in plain
    empty = render_markdown("Nothing", compute_statistics([]))
    assert "No closed signals." in empty
    assert "| Win rate | N/A |" in empty and "| Max drawdown | N/A |" in empty
    assert "![" not in empty


def test_max_rows_limits_the_table_not_the_statistics() -> None:
    trades = [closed(f"t{i}", close=101.0 + i, opened=T0 + i * DAY) for i in range(12)]
    md = render_markdown("T", compute_statistics(trades), max_rows=5)
    assert "| Closed signals | 12 |" in md
    assert "Showing the newest 5 of 12 signals." in md
    ids = [line.split(" | ")[0][2:] for line in md.splitlines() if line.startswith("| t")]
    assert ids == ["t11", "t10", "t9", "t8", "t7"]
    with pytest.raises(ValueError, match="max_rows"):
        render_markdown("T", compute_statistics(trades), max_rows=-1)


# ---------------------------------------------------------------- dump
def test_dump_report_writes_markdown_and_the_png_only_when_asked(tmp_path: Path) -> None:
    stats = compute_statistics(sample(), **FEES)
    out = tmp_path / "dump" / "backtest"
    md_path = dump_report(
        out,
        "Backtest",
        stats,
        symbol="BTC/USDT",
        strategy="s1",
        exchange="ex",
        frame="fr",
        mode="backtest",
        ts_ms=T0,
        formats=("md", "png"),
    )
    assert md_path.name == "BTC-USDT_s1_ex_fr_backtest-1704067200000.md"
    png = md_path.with_suffix(".png")
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"![Equity curve]({png.name})" in md_path.read_text(encoding="utf-8")

    no_png = dump_report(
        tmp_path / "live", "Live", stats, symbol="X", strategy="s", exchange="e", frame="f", mode="live",
        ts_ms=1,
    )  # fmt: skip
    assert "![" not in no_png.read_text(encoding="utf-8")
    assert not no_png.with_suffix(".png").exists()


# ---------------------------------------------------------------- export
def test_export_csv(tmp_path: Path) -> None:
    trades = sample()
    p = export_trades(list(reversed(trades)), tmp_path / "x" / "trades.csv", "csv")
    with p.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["a-1", "b-2", "c|3"]  # oldest first
    a = rows[0]
    assert float(a["pnl_percentage"]) == pytest.approx(9.570439560, abs=1e-9)
    assert a["opened_at"] == str(T0) and a["closed_at_utc"] == "2024-01-01T01:00:00Z"
    assert a["duration_minutes"] == "60.0"
    assert a["isolated"] == "True" and a["multiplier"] == "1.0"
    assert float(a["drawdown_pnl_percentage"]) == pytest.approx(-5.38462038, abs=1e-8)
    assert rows[1]["price_best"] == ""  # None → empty cell
    assert rows[2]["entries_count"] == "2" and rows[2]["partials_count"] == "1"


def test_export_json_has_no_nan_and_nests_entries(tmp_path: Path) -> None:
    p = export_trades(sample(), tmp_path / "trades.json", "json")
    text = p.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    docs = json.loads(text)
    assert [d["id"] for d in docs] == ["a-1", "b-2", "c|3"]
    assert docs[1]["price_best"] is None and docs[1]["peak_pnl_percentage"] is None
    assert docs[1]["multiplier"] == 10.0 and docs[1]["isolated"] is False
    assert docs[2]["entries"] == [
        {"price": 100.0, "cost": 100.0, "timestamp": T0 + 2 * DAY},
        {"price": 80.0, "cost": 200.0, "timestamp": T0 + 2 * DAY + 10 * MIN},
    ]
    assert docs[2]["partials"][0]["percent"] == 30.0


def test_export_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'csv' or 'json'"):
        export_trades(sample(), tmp_path / "t.xml", "xml")
