"""The SMA-crossover demo in the array form (``smacross-array``): the same rule, every bar at once.

``populate`` computes SMA(10) and SMA(30) of the 15-minute closes over the whole run and marks the bars where
the fast average crossed above the slow one. The averages are summed left to right over each window, like
the per-tick ``smacross.crossed_up`` (Python's ``sum``), so both forms make bit-identical decisions and give
the very same trades (the benchmark ``benchmarks/array_form.py`` checks all 524 of them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import btkit
from btkit.components import ArrayForm, StrategySpec
from btkit.defaults import smacross

__all__ = ["btkit_strategies", "populate", "sma"]


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """SMA(n) of ``x`` aligned to the window's last value (NaN before), each window summed left to right
    (the same float additions as ``sum(window) / n``)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(len(x), np.nan)
    m = len(x) - n + 1
    if m <= 0:
        return out
    acc = x[0:m].copy()
    for k in range(1, n):
        acc += x[k : k + m]
    out[n - 1 :] = acc / n
    return out


def populate(candles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``enter`` = 1 on bars where SMA(fast) crossed above SMA(slow) (``btkit.get_params()``, defaults 10 and
    30); the averages as indicator columns."""
    close = candles["close"]
    n_fast, n_slow = smacross.fast_slow()
    fast = sma(close, n_fast)
    slow = sma(close, n_slow)
    enter = np.zeros(len(close), dtype=np.int8)
    with np.errstate(invalid="ignore"):
        crossed = (fast[:-1] <= slow[:-1]) & (fast[1:] > slow[1:])
    enter[1:] = crossed
    return {"enter": enter, "sma_fast": fast, "sma_slow": slow}


def window_for(params: Any) -> int:
    """The warm-up/live window for these parameter values: SMA(slow) of the previous bar needs slow + 1."""
    return int(params.get("slow", smacross.SLOW)) + 1


FORM = ArrayForm(
    populate=populate,
    window=smacross.SLOW + 1,
    window_for=window_for,
    defaults={
        "percent_take_profit": smacross.TAKE_PROFIT_PERCENT,
        "percent_stop_loss": smacross.STOP_LOSS_PERCENT,
        "minute_estimated_time": smacross.LIFETIME_MINUTES,
        "cost": smacross.COST,
        "note": f"SMA(fast) crossed above SMA(slow) on {smacross.INTERVAL}",
    },
)


@btkit.hookimpl
def btkit_strategies() -> list[StrategySpec]:
    """The registry hook: the array-form demo as ``smacross-array``."""
    return [
        StrategySpec(
            name="smacross-array",
            interval=smacross.INTERVAL,
            array=FORM,
            dist=smacross.DIST,
            params=smacross.PARAMS,
        )
    ]
