"""The rsi-bb contrib strategy: installed through its entry point, and every trade it opens is on a bar where
RSI and the Bollinger bands (TA-Lib over plain numpy arrays, computed here on their own) meet the rule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
import talib

import btkit
from btkit import candles as ca
from btkit.defaults.sim_exchange import SimExchange
from btkit.model import Opened
from btkit.plugins import collect_components, get_plugin_manager
from btkit.testing import reset_btkit

START = datetime(2024, 1, 2, tzinfo=UTC)
END = datetime(2024, 1, 20, tzinfo=UTC)
BAR = 15 * 60_000


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    reset_btkit()
    yield
    reset_btkit()


def test_rsi_bb_comes_from_its_entry_point_in_the_array_form() -> None:
    spec = collect_components(get_plugin_manager()).get("strategy", "rsi-bb")
    assert spec.dist == "btkit-strategy-rsi-bb"
    assert spec.array is not None and spec.array.pandas and spec.get_signal is None


def test_every_opened_trade_is_on_a_bar_that_meets_the_rule() -> None:
    btkit.add_frame("f", START, END)
    opened = [
        r
        for r in btkit.Backtest.run("BTCUSDT", strategy="rsi-bb", exchange="sim", frame="f")
        if isinstance(r, Opened)
    ]
    assert len(opened) >= 5
    assert {r.signal.position for r in opened} == {"long", "short"}
    # the sim exchange's 15m candles from well before the frame, indicators straight from TA-Lib
    since = int(START.timestamp() * 1000) - 400 * BAR
    count = (int(END.timestamp() * 1000) - since) // BAR
    bars = ca.to_array(
        SimExchange().get_candles("BTCUSDT", "15m", datetime.fromtimestamp(since / 1000, UTC), count)
    )
    close = np.ascontiguousarray(bars[:, 4])
    rsi = talib.RSI(close, timeperiod=14)
    upper, _mid, lower = talib.BBANDS(close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0)
    index = {int(t): i for i, t in enumerate(bars[:, 0])}
    for r in opened:
        i = index[(r.timestamp // BAR) * BAR - BAR]  # the last bar closed when the trade opened
        if r.signal.position == "long":
            assert rsi[i] < 30 and close[i] < lower[i], r
        else:
            assert rsi[i] > 70 and close[i] > upper[i], r
    # and the first bar of the frame that meets the rule is where the first trade opened
    ok = ((rsi < 30) & (close < lower)) | ((rsi > 70) & (close > upper))
    first_decision = bars[:, 0] + BAR >= START.timestamp() * 1000
    j = int(np.argmax(ok & first_decision))
    assert (opened[0].timestamp // BAR) * BAR == int(bars[j, 0]) + BAR


def test_candles_to_pandas_feeds_talib() -> None:
    ts = np.arange(40, dtype=np.int64) * 60_000
    close = 100 + np.sin(np.arange(40) / 3)
    c = btkit.Candles(ts, close, close + 1, close - 1, close, np.ones(40))
    df = c.to_pandas()
    assert list(df.columns) == ["timestamp", "date", "open", "high", "low", "close", "volume"]
    assert str(df["date"].dt.tz) == "UTC" and df["close"].dtype == np.float64
    np.testing.assert_array_equal(talib.SMA(df["close"], 5).to_numpy(), talib.SMA(close, 5))
