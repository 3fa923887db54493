"""``btkit check``: planted look-ahead biases are caught (with the bar and the column that moved), honest
strategies pass with zero findings in both forms, the recursive check shows an EMA's warm-up, and the
intrabar re-pricings equal pnl computed by hand on hand-built candles."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import btkit
from btkit.analysis import intrabar, lookahead, recursive
from btkit.cli import main
from btkit.context import current
from btkit.testing.exchange import candles_from_prices, memory_exchange

M = 60_000
START_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
MINUTES = 3 * 1440
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def dt(minute: int) -> datetime:
    return datetime.fromtimestamp((START_MS + minute * M) / 1000, UTC)


def walk(seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return candles_from_prices(
        START_MS, 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, MINUTES))), spread=0.0005
    )


@pytest.fixture
def market() -> str:
    btkit.add_exchange("mem", memory_exchange("mem", {"X": walk()}).get_candles)
    btkit.add_frame("f", dt(600), dt(MINUTES - 400))
    return "f"


DEFAULTS = {"percent_take_profit": 1.0, "percent_stop_loss": 1.0, "minute_estimated_time": 120}


def cross(fast: pd.Series, slow: pd.Series) -> pd.Series:
    return ((fast.shift(1) <= slow.shift(1)) & (fast > slow)).astype("int8")


def honest(df: pd.DataFrame) -> pd.DataFrame:
    df["fast"] = df["close"].rolling(5).mean()
    df["slow"] = df["close"].rolling(20).mean()
    df["enter"] = cross(df["fast"], df["slow"])
    return df


def shifted(df: pd.DataFrame) -> pd.DataFrame:
    df["next_close"] = df["close"].shift(-1)  # tomorrow's close, today
    df["enter"] = (df["next_close"] > df["close"] * 1.002).astype("int8")
    return df


def centred(df: pd.DataFrame) -> pd.DataFrame:
    df["mid"] = df["close"].rolling(21, center=True).mean()  # half of the window is in the future
    df["enter"] = cross(df["close"], df["mid"])
    return df


def normalised(df: pd.DataFrame) -> pd.DataFrame:
    df["norm"] = df["close"] / df["close"].max()  # the maximum of the whole series, future included
    df["enter"] = ((df["norm"] > 0.97) & (df["norm"].shift(1) <= 0.97)).astype("int8")
    return df


def htf_early(df: pd.DataFrame) -> pd.DataFrame:
    # the hourly close merged on the hour's OPEN time: a 15m bar sees the close of the hour it is part of
    hourly = df.set_index("date")["close"].resample("1h").last()
    df["close_1h"] = hourly.reindex(df["date"].dt.floor("1h")).to_numpy()
    df["enter"] = cross(df["close"], df["close_1h"])
    return df


def htf_proper(df: pd.DataFrame) -> pd.DataFrame:
    df["enter"] = cross(df["close"], df["close_1h"])  # btkit's informative column: closed hours only
    return df


def check(strategy: str, frame: str, samples: int = 60) -> lookahead.LookaheadReport:
    return asyncio.run(
        lookahead.check_lookahead("X", strategy=strategy, exchange="mem", frame=frame, samples=samples)
    )


@pytest.mark.parametrize(
    ("populate", "column"),
    [(shifted, "next_close"), (centred, "mid"), (normalised, "norm"), (htf_early, "close_1h")],
)
def test_planted_lookahead_biases_are_caught_with_the_column_that_moved(
    market: str, populate: Any, column: str
) -> None:
    btkit.add_array_strategy("biased", populate, interval="15m", window=60, pandas=True, defaults=DEFAULTS)
    report = check("biased", market)
    assert report.biased and report.form == "array"
    assert report.signals_checked + report.samples_checked > 20
    assert column in report.columns
    finding = next(f for f in report.findings if any(name == column for name, _a, _b in f.moved))
    assert finding.bar % (15 * M) == 0
    text = "\n".join(lookahead.markdown_lines(report))
    assert "BIASED" in text and column in text


@pytest.mark.parametrize("populate", [honest, htf_proper])
def test_honest_array_strategies_have_zero_findings(market: str, populate: Any) -> None:
    btkit.add_array_strategy(
        "honest", populate, interval="15m", window=60, pandas=True, informative=("1h",), defaults=DEFAULTS
    )
    report = check("honest", market)
    assert report.signals_checked >= 5
    assert report.findings == ()


def test_per_tick_form_honest_passes_and_a_peek_at_the_exchange_is_caught(market: str) -> None:
    def honest_tick(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
        c = btkit.get_candles(symbol, "15m", 3).close
        if not (c[-1] > c[-2] > c[-3]):
            return None
        return {
            **btkit.Position.bracket(
                position="long", current_price=price, percent_take_profit=1, percent_stop_loss=1
            ),
            "minute_estimated_time": 120,
        }

    def peeking(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
        # reads the run's exchange directly from the bar that is still forming: its future
        spec = current().instance.market.spec
        ahead = np.asarray(spec.get_candles(symbol, "15m", when, 2))
        if len(ahead) < 2 or ahead[-1, 4] <= price:
            return None
        return {
            **btkit.Position.bracket(
                position="long", current_price=price, percent_take_profit=1, percent_stop_loss=1
            ),
            "minute_estimated_time": 120,
        }

    btkit.add_strategy("honest-tick", honest_tick, interval="15m")
    btkit.add_strategy("peeking", peeking, interval="15m")
    good = check("honest-tick", market, samples=30)
    assert good.form == "per-tick" and good.signals_checked >= 5 and good.findings == ()
    bad = check("peeking", market, samples=30)
    assert bad.biased
    assert all(f.full == "long" and f.truncated == "none" for f in bad.findings if f.kind == "signal")


def test_recursive_check_shows_the_ema_warm_up_and_a_window_too_short(market: str) -> None:
    def ema_cross(df: pd.DataFrame) -> pd.DataFrame:
        df["ema"] = df["close"].ewm(span=40, adjust=False).mean()
        df["sma"] = df["close"].rolling(10).mean()
        df["enter"] = cross(df["sma"], df["ema"])
        return df

    btkit.add_array_strategy("ema", ema_cross, interval="15m", window=30, pandas=True, defaults=DEFAULTS)
    report = asyncio.run(
        recursive.check_recursive("X", strategy="ema", exchange="mem", frame=market, warmups=(30, 100, 200))
    )
    rows = {r.warmup: r for r in report.rows}
    assert rows[30].is_window and report.unstable and rows[30].signals_changed > 0
    assert rows[30].max_rel["ema"] > rows[200].max_rel["ema"] > 0  # longer warm-up, closer to the full value
    assert all(r.max_rel["sma"] == 0 for r in report.rows)  # a 10-bar mean has no memory
    assert "UNSTABLE" in "\n".join(recursive.markdown_lines(report))


# ---------------------------------------------------------------- intrabar
def flat(n: int) -> np.ndarray:
    ts = START_MS + np.arange(n) * M
    return np.column_stack([ts, *([np.full(n, 100.0)] * 4), np.ones(n)])


def hand_pnl(entry: float, close: float) -> float:
    """20-pnl-stats.md §1 for a long: slipped O and C, raw return minus fees on both legs."""
    cfg = btkit.get_config()
    s, f = cfg.percent_slippage / 100, cfg.percent_fee
    o, c = entry * (1 + s), close * (1 - s)
    return (c - o) / o * 100 - f * (1 + c / o)


def test_intrabar_flags_the_ambiguous_closes_and_reprices_them_by_hand(tmp_path: Path) -> None:
    data = flat(600)
    data[100, 2:4] = (101.2, 98.5)  # reaches both; the high is nearer the open → adaptive: target first
    data[200, 2:4] = (101.6, 98.8)  # reaches both; the low is nearer the open → adaptive: stop first
    data[300:320, 1:5] = 102.0  # a clean take profit (VWAP climbs over the target, the low stays high)
    btkit.add_exchange("mem", memory_exchange("mem", {"X": data}).get_candles)
    signal_at = {START_MS + k * M for k in (100, 200, 300)}

    def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
        if round(when.timestamp() * 1000) not in signal_at:
            return None
        return {
            "position": "long",
            "price_take_profit": 101.0,
            "price_stop_loss": 99.0,
            "minute_estimated_time": 60,
        }

    btkit.add_strategy("levels", get_signal)
    btkit.add_frame("f", dt(50), dt(500))
    closed = [
        r
        for r in btkit.Backtest.run("X", strategy="levels", exchange="mem", frame="f")
        if r.action == "closed"
    ]
    assert [c.close_reason for c in closed] == ["stop_loss", "stop_loss", "take_profit"]
    cfg = btkit.get_config()
    rep = intrabar.analyse_with_exchange(
        closed, "mem", slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee
    )
    assert rep.trades == 3 and [a.closed.close_timestamp for a in rep.ambiguous] == [
        START_MS + 101 * M,
        START_MS + 201 * M,
    ]
    sl, tp = hand_pnl(100.0, 99.0), hand_pnl(100.0, 101.0)
    a, b = rep.ambiguous
    assert a.pnl["pessimistic"] == pytest.approx(sl) and a.pnl["optimistic"] == pytest.approx(tp)
    assert a.pnl["adaptive"] == pytest.approx(tp) and b.pnl["adaptive"] == pytest.approx(sl)
    assert rep.headline.total_pnl == pytest.approx(2 * sl + tp)
    assert rep.orderings["pessimistic"].total_pnl == pytest.approx(2 * sl + tp)
    assert rep.orderings["optimistic"].total_pnl == pytest.approx(3 * tp)
    assert rep.orderings["adaptive"].total_pnl == pytest.approx(2 * tp + sl)
    assert rep.pnl_range == pytest.approx((2 * sl + tp, 3 * tp))
    # and the backtest's markdown report carries the section
    text = btkit.Backtest.dump("X", strategy="levels", exchange="mem", frame="f", path=tmp_path).read_text()
    assert "Intrabar ambiguity" in text and "2 of 3 closed trade(s)" in text
    assert math.isclose(float(text.split("optimistic | ")[1].split("%")[0]), 3 * tp, abs_tol=0.01)


# ---------------------------------------------------------------- the CLI
def test_cli_check_exits_1_on_the_biased_example_and_0_on_the_demo(tmp_path: Path, capsys: Any) -> None:
    common = ["--timerange", "20240101-20240115", "--dump-dir", str(tmp_path)]
    assert main(["check", "lookahead", *common]) == 0
    out = capsys.readouterr().out
    assert "smacross-array (array)" in out and "no look-ahead bias found" in out
    example = str(EXAMPLES / "biased_lookahead.py")
    assert (
        main(["check", "lookahead", "--strategy-file", example, "--strategy", "biased-shift", *common]) == 1
    )
    out = capsys.readouterr().out
    assert "BIASED" in out and "next_close" in out
    assert (tmp_path / "check" / "lookahead-biased-shift.md").read_text().count("| signal |") >= 1
    assert main(["check", "intrabar", *common]) == 0
    assert "trade(s) closed on a candle" in capsys.readouterr().out
    assert main(["check", "recursive", "--strategy", "rsi-bb", "--warmups", "100,300", *common]) == 0
    assert "warm-up" in capsys.readouterr().out
