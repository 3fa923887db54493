"""The array form of a strategy: the same decisions as the per-tick form, in backtest and in live replay,
higher-timeframe bars visible only after they close, the two forms in one run, and bad array output ending
the run with one error naming the strategy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import btkit
from btkit.engine.arrays import ArrayOutputError, align
from btkit.model import Closed
from btkit.testing import reset_btkit
from btkit.testing.exchange import candles_from_prices, memory_exchange

M = 60_000
START = datetime(2024, 1, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
BAR = "5m"
BAR_MS = 5 * M


def random_walk(seed: int, minutes: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.0015, minutes)))
    return candles_from_prices(START_MS, closes, spread=0.0005)


def crossed(close: np.ndarray, fast: int, slow: int) -> bool:
    """Per-tick rule, written independently of the array form: SMA(fast) crossed above SMA(slow)."""
    tail = close[-slow - 1 :].tolist()
    return sum(tail[-fast - 1 : -1]) / fast <= sum(tail[-slow - 1 : -1]) / slow and (
        sum(tail[-fast:]) / fast > sum(tail[-slow:]) / slow
    )


def sma(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    for i in range(n - 1, len(x)):  # a plain loop: the same left-to-right sums as the per-tick rule
        out[i] = sum(x[i - n + 1 : i + 1].tolist()) / n
    return out


def register_pair(fast: int, slow: int, short: bool) -> None:
    side = -1 if short else 1
    position = "short" if short else "long"
    bracket = {"percent_take_profit": 0.8, "percent_stop_loss": 0.5, "minute_estimated_time": 90}

    def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
        close = btkit.get_candles(symbol, BAR, slow + 1).close
        if not crossed(close, fast, slow):
            return None
        return {
            **btkit.Position.bracket(
                position=position, current_price=price, percent_take_profit=0.8, percent_stop_loss=0.5
            ),
            "minute_estimated_time": 90,
        }

    def populate(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        f, s = sma(c["close"], fast), sma(c["close"], slow)
        enter = np.zeros(len(f), dtype=np.int8)
        with np.errstate(invalid="ignore"):
            enter[1:] = np.where((f[:-1] <= s[:-1]) & (f[1:] > s[1:]), side, 0)
        return {"enter": enter, "fast": f, "slow": s}

    btkit.add_strategy("tick", get_signal, interval=BAR)
    btkit.add_array_strategy("array", populate, interval=BAR, window=slow + 1, defaults=bracket)


def register_htf_pair() -> None:
    """Long when the 5m close crosses above the last closed hourly close: per-tick and array form."""
    bracket = {"percent_take_profit": 0.8, "percent_stop_loss": 0.5, "minute_estimated_time": 90}

    def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
        c = btkit.get_candles(symbol, BAR, 2)
        h = btkit.get_candles(symbol, "1h", 3)
        hour_ms = 3_600_000

        def hour_close_at(t: int) -> float:  # the close of the last hour closed at time t
            closed = [k for k in range(3) if int(h.timestamp[k]) + hour_ms <= t]
            return float(h.close[closed[-1]])

        end_now = int(c.timestamp[-1]) + BAR_MS  # the last 5m bar closes at end_now
        if not (c.close[-2] <= hour_close_at(end_now - BAR_MS) and c.close[-1] > hour_close_at(end_now)):
            return None
        return {
            **btkit.Position.bracket(
                position="long", current_price=price, percent_take_profit=0.8, percent_stop_loss=0.5
            ),
            "minute_estimated_time": 90,
        }

    def populate(c: dict[str, np.ndarray]) -> np.ndarray:
        h = c["close_1h"]
        enter = np.zeros(len(h), dtype=np.int8)
        with np.errstate(invalid="ignore"):
            enter[1:] = (c["close"][:-1] <= h[:-1]) & (c["close"][1:] > h[1:])
        return enter

    btkit.add_strategy("tick-htf", get_signal, interval=BAR)
    btkit.add_array_strategy(
        "array-htf", populate, interval=BAR, window=30, informative=("1h",), defaults=bracket
    )


def trades(strategy: str, frame: str = "f") -> list[dict[str, Any]]:
    out = []
    for r in btkit.Backtest.run("X", strategy=strategy, exchange="mem", frame=frame):
        d = attrs.asdict(r)
        d.pop("strategy_name")
        d["action"] = r.action
        d["signal"].pop("id")
        out.append(d)
    return out


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 10_000),
    fast=st.integers(2, 8),
    extra=st.integers(1, 12),
    short=st.booleans(),
)
def test_both_forms_give_identical_trades_in_a_backtest(
    seed: int, fast: int, extra: int, short: bool
) -> None:
    reset_btkit()
    slow = fast + extra
    minutes = 4 * 1440
    btkit.add_exchange("mem", memory_exchange("mem", {"X": random_walk(seed, minutes)}).get_candles)
    btkit.add_frame(
        "f",
        datetime.fromtimestamp((START_MS + 200 * M) / 1000, UTC),
        datetime.fromtimestamp((START_MS + (minutes - 200) * M) / 1000, UTC),
    )
    register_pair(fast, slow, short)
    tick, array = trades("tick"), trades("array")
    assert sum(1 for t in tick if t["action"] == "closed") >= 3
    assert array == tick


@pytest.mark.slow
def test_both_forms_give_identical_trades_in_live_replay(tmp_path: Path) -> None:
    minutes = 900
    end_ms = START_MS + (minutes - 120) * M
    btkit.add_exchange("mem", memory_exchange("mem", {"X": random_walk(7, minutes)}).get_candles)
    register_pair(3, 8, short=False)
    register_htf_pair()
    btkit.add_frame(
        "f",
        datetime.fromtimestamp((START_MS + 120 * M) / 1000, UTC),
        datetime.fromtimestamp(end_ms / 1000, UTC),
    )
    backtest = [t for t in trades("array") if t["action"] == "closed"]
    assert len(backtest) >= 5
    htf_backtest = [t for t in trades("array-htf") if t["action"] == "closed"]
    assert len(htf_backtest) >= 3 and htf_backtest == [
        t for t in trades("tick-htf") if t["action"] == "closed"
    ]

    btkit.use_persistence("file", root=str(tmp_path / "dump"))
    names = ("tick", "array", "tick-htf", "array-htf")
    live: dict[str, list[dict[str, Any]]] = {n: [] for n in names}

    def on_live(r: Any) -> None:
        if isinstance(r, Closed):
            d = attrs.asdict(r)
            for k in ("strategy_name", "backtest", "frame_name"):
                d.pop(k)
            d["signal"].pop("id")
            live[r.strategy_name].append(d)

    btkit.listen_signal_live(on_live)
    clock = btkit.ReplayClock(START_MS + 120 * M, end=end_ms)
    handles = [btkit.Live.background("X", strategy=s, exchange="mem", clock=clock) for s in names]
    for h in handles:
        assert h.join(120)
        assert h.error is None
    assert live["array"] == live["tick"]
    assert len(live["array"]) >= 5
    assert live["array-htf"] == live["tick-htf"] and len(live["array-htf"]) >= 3
    for b in backtest:
        for k in ("backtest", "frame_name"):
            b.pop(k)
        b.pop("action")
    # the live replay closes the same trades the backtest did (as long as both ran)
    assert live["array"][: len(backtest) - 1] == backtest[: len(backtest) - 1]


def test_higher_timeframe_bar_is_visible_only_after_it_closed() -> None:
    base = START_MS + np.arange(12) * 15 * M  # 15m bars from 00:00 to 02:45
    htf = START_MS + np.arange(3) * 60 * M  # 1h bars at 00:00, 01:00, 02:00
    idx = align(htf, 60 * M, base, 15 * M)
    # the 00:45 bar closes at 01:00 together with the 00:00 hour bar; bars before see no hour at all
    expected = [-1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert idx.tolist() == expected


def test_informative_columns_reach_populate_aligned_and_mixed_forms_share_one_run() -> None:
    minutes = 1440
    btkit.add_exchange("mem", memory_exchange("mem", {"X": random_walk(3, minutes)}).get_candles)
    seen: list[dict[str, np.ndarray]] = []

    def populate(c: dict[str, np.ndarray]) -> np.ndarray:
        seen.append(c)
        return np.zeros(len(c["close"]), dtype=np.int8)

    btkit.add_array_strategy("htf", populate, interval="15m", window=8, informative=("1h",))
    btkit.add_frame(
        "f",
        datetime.fromtimestamp((START_MS + 240 * M) / 1000, UTC),
        datetime.fromtimestamp((START_MS + 600 * M) / 1000, UTC),
    )
    assert trades("htf") == []
    (c,) = seen
    raw = random_walk(3, minutes)
    for i, ts in enumerate(c["timestamp"].tolist()):
        close_at = ts + 15 * M
        last_hour = (close_at // (60 * M)) * 60 * M - 60 * M  # the last hour bar closed by then
        k = (last_hour - START_MS) // M + 59  # its last minute
        assert c["close_1h"][i] == raw[k, 4], (i, ts)
    assert c["close"].dtype == np.float64 and c["close"].flags.c_contiguous

    # the two forms in one portfolio run equal their separate runs
    register_pair(3, 8, short=False)
    alone = {s: [t for t in trades(s) if t["action"] == "closed"] for s in ("tick", "array")}
    together: dict[str, list[Any]] = {"tick": [], "array": []}
    for r in btkit.Backtest.run_portfolio(["X"], strategy=["tick", "array"], exchange="mem", frame="f"):
        if isinstance(r, Closed):
            together[r.strategy_name].append(r.close_timestamp)
    assert together["tick"] == [t["close_timestamp"] for t in alone["tick"]]
    assert together["array"] == together["tick"]


@pytest.mark.parametrize(
    ("output", "words"),
    [
        (lambda n: np.zeros(n - 1), "has 29 rows for 30 candles"),
        (lambda n: np.where(np.arange(n) == 20, np.nan, 0.0), "NaN in 1 row(s)"),
        (lambda n: np.array(["long"] * n), "dtype <U4"),
        (lambda n: {"enter": np.full(n, 0.5)}, "is 0.5 at row 0"),
        (lambda n: {"signal": np.zeros(n)}, "no 'enter' column"),
        (lambda n: None, "returned None"),
    ],
)
def test_bad_array_output_ends_the_backtest_with_one_error_naming_the_strategy(
    output: Any, words: str
) -> None:
    btkit.add_exchange("mem", memory_exchange("mem", {"X": random_walk(1, 1440)}).get_candles)
    btkit.add_array_strategy("broken-one", lambda c: output(len(c["close"])), interval="5m", window=20)
    btkit.add_frame(
        "f",
        datetime.fromtimestamp((START_MS + 100 * M) / 1000, UTC),
        datetime.fromtimestamp((START_MS + 150 * M) / 1000, UTC),
    )
    errors: list[Any] = []
    done: list[Any] = []
    btkit.listen_error(errors.append)
    btkit.listen_done_backtest(done.append)
    with pytest.raises(ArrayOutputError) as info:
        list(btkit.Backtest.run("X", strategy="broken-one", exchange="mem", frame="f"))
    message = str(info.value)
    assert "'broken-one'" in message and words in message and "\n" not in message
    assert len(errors) == 1 and errors[0].error is info.value
    assert len(done) == 1 and done[0].error is info.value


def test_nan_price_column_on_a_requesting_bar_is_an_error() -> None:
    btkit.add_exchange("mem", memory_exchange("mem", {"X": random_walk(1, 1440)}).get_candles)

    def populate(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(c["close"])
        return {
            "enter": np.ones(n),
            "percent_take_profit": np.full(n, np.nan),
            "percent_stop_loss": np.ones(n),
        }

    btkit.add_array_strategy("nan-tp", populate, interval="5m", window=20)
    btkit.add_frame(
        "f",
        datetime.fromtimestamp((START_MS + 100 * M) / 1000, UTC),
        datetime.fromtimestamp((START_MS + 150 * M) / 1000, UTC),
    )
    with pytest.raises(ArrayOutputError, match="'nan-tp': column 'percent_take_profit' is nan"):
        list(btkit.Backtest.run("X", strategy="nan-tp", exchange="mem", frame="f"))


def test_a_strategy_needs_exactly_one_form() -> None:
    from btkit.components import ArrayForm, StrategySpec

    with pytest.raises(btkit.ConfigError, match="exactly one of get_signal"):
        StrategySpec(name="both", get_signal=lambda *a: None, array=ArrayForm(populate=lambda c: None))
    with pytest.raises(btkit.ConfigError, match="exactly one of get_signal"):
        StrategySpec(name="neither")


def test_cli_backtest_of_a_bad_array_strategy_exits_1_naming_it(tmp_path: Path, capsys: Any) -> None:
    from btkit.cli import main

    script = tmp_path / "bad.py"
    script.write_text(
        "import numpy as np\nimport btkit\n"
        "btkit.add_array_strategy('bad-len', lambda c: np.zeros(len(c['close']) - 1), interval='15m', window=40)\n"
    )
    code = main(
        [
            "backtest",
            "--strategy-file",
            str(script),
            "--strategy",
            "bad-len",
            "--timerange",
            "20240101-20240103",
            "--dump-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    (line,) = [ln for ln in err.splitlines() if ln.startswith("btkit: error:")]
    assert "strategy 'bad-len': column 'enter' has" in line and "rows for" in line
    assert not (tmp_path / "backtest").exists()  # no report of a run that failed
