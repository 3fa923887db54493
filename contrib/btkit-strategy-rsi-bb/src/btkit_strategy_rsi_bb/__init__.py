"""RSI + Bollinger-band mean reversion for btkit, in the array form, with TA-Lib indicators.

Installed through the ``btkit`` entry point ``rsi-bb = "btkit_strategy_rsi_bb"``; offers the strategy
``rsi-bb``. btkit hands ``populate`` the candles of the whole backtest (or of the latest ``WINDOW`` bars
live) as a pandas DataFrame; TA-Lib computes the indicators over the columns in one call each.

Rule, on 15-minute candles: go long when RSI(14) is below 30 and the close is below the lower Bollinger
band (20 bars, 2 standard deviations); go short when RSI(14) is above 70 and the close is above the upper
band. Take profit 1.5 %, stop loss 1 % from the current price, at most 6 hours in the trade, $100.
``WINDOW`` = 300 bars: enough for RSI's recursive smoothing to settle (``btkit check recursive`` shows it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import btkit
from btkit.components import ArrayForm, StrategySpec

__all__ = ["BB_PERIOD", "BB_STDDEV", "INTERVAL", "RSI_PERIOD", "WINDOW", "btkit_strategies", "populate"]

INTERVAL = "15m"
RSI_PERIOD = 14
RSI_LOW, RSI_HIGH = 30.0, 70.0
BB_PERIOD = 20
BB_STDDEV = 2.0
WINDOW = 300
DIST = "btkit-strategy-rsi-bb"


def populate(df: Any) -> Any:
    """Indicator columns and ``enter`` (1 long, -1 short, 0 nothing) for every bar of ``df``."""
    import talib

    close = df["close"]
    df["rsi"] = talib.RSI(close, timeperiod=RSI_PERIOD)
    df["bb_upper"], df["bb_middle"], df["bb_lower"] = talib.BBANDS(
        close, timeperiod=BB_PERIOD, nbdevup=BB_STDDEV, nbdevdn=BB_STDDEV
    )
    long = (df["rsi"] < RSI_LOW) & (close < df["bb_lower"])
    short = (df["rsi"] > RSI_HIGH) & (close > df["bb_upper"])
    df["enter"] = np.where(long, 1, np.where(short, -1, 0)).astype(np.int8)
    return df


FORM = ArrayForm(
    populate=populate,
    window=WINDOW,
    pandas=True,
    defaults={
        "percent_take_profit": 1.5,
        "percent_stop_loss": 1.0,
        "minute_estimated_time": 360,
        "cost": 100.0,
        "note": f"RSI({RSI_PERIOD}) and Bollinger({BB_PERIOD}, {BB_STDDEV:g}) on {INTERVAL}",
    },
)


@btkit.hookimpl
def btkit_strategies() -> list[StrategySpec]:
    """The registry hook: the strategy as ``rsi-bb``."""
    return [StrategySpec(name="rsi-bb", interval=INTERVAL, array=FORM, dist=DIST)]
