"""The SMA-crossover demo strategy, shipped with the core as an ordinary default plugin.

Registered like every default (``btkit.plugins.DEFAULT_PLUGINS``), so ``pip install btkit`` alone runs
``btkit backtest``; this module implements the ``btkit_strategies`` registry hook and offers the strategy
under two names, ``smacross`` and ``sma-cross``. It is written exactly like a third-party strategy package
(see ``docs/writing-a-strategy-package.md``).

Rule: on 15-minute candles, go long when SMA(fast) of the closes crosses above SMA(slow) — the previous
SMA(fast) was at or below the previous SMA(slow) and the current SMA(fast) is above the current SMA(slow).
Take profit +2 %, stop loss −1 % from the current price, at most one day (1440 minutes) in the trade, $100.

Parameters (docs/parameters.md): ``fast`` (int, default 10, 5..50) and ``slow`` (int, default 30,
10..400); ``fast`` must stay below ``slow``. ``btkit.get_params()`` gives the values of the current run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

import btkit
from btkit.components import StrategySpec

__all__ = [
    "COST",
    "FAST",
    "INTERVAL",
    "LIFETIME_MINUTES",
    "PARAMS",
    "SLOW",
    "STOP_LOSS_PERCENT",
    "TAKE_PROFIT_PERCENT",
    "btkit_strategies",
    "crossed_up",
    "get_signal",
    "long_bracket",
]

INTERVAL = "15m"
FAST = 10
SLOW = 30
TAKE_PROFIT_PERCENT = 2.0
STOP_LOSS_PERCENT = 1.0
LIFETIME_MINUTES = 1440
COST = 100.0
DIST = "btkit"
PARAMS = {
    "fast": btkit.IntParam(FAST, 5, 50, "SMA length of the fast average (15m bars)"),
    "slow": btkit.IntParam(SLOW, 10, 400, "SMA length of the slow average (15m bars)"),
}


def fast_slow() -> tuple[int, int]:
    """The ``fast``/``slow`` values of the current run; fast must be below slow."""
    p = btkit.get_params()
    fast, slow = int(p.get("fast", FAST)), int(p.get("slow", SLOW))
    if fast >= slow:
        raise ValueError(f"smacross needs fast < slow, got fast={fast} slow={slow}")
    return fast, slow


def crossed_up(close: np.ndarray, fast: int = FAST, slow: int = SLOW) -> bool:
    """True when SMA(fast) crossed above SMA(slow) on the last close.

    Needs ``slow + 1`` closes (the last value and the one before it of both averages):
    ``prev_fast <= prev_slow and fast > slow``.
    """
    c = np.asarray(close, dtype=np.float64)
    if len(c) < slow + 1:
        raise ValueError(f"need at least {slow + 1} closes for SMA({fast})/SMA({slow}), got {len(c)}")
    # a few dozen values: plain float sums of the numpy column's tail beat four numpy reductions (call
    # overhead dominates), and this runs on every strategy-interval bucket of a backtest
    tail = c[-slow - 1 :].tolist()
    fast_now = sum(tail[-fast:]) / fast
    slow_now = sum(tail[-slow:]) / slow
    fast_prev = sum(tail[-fast - 1 : -1]) / fast
    slow_prev = sum(tail[-slow - 1 : -1]) / slow
    return bool(fast_prev <= slow_prev and fast_now > slow_now)


def long_bracket(current_price: float) -> dict[str, Any]:
    """``{position, price_take_profit, price_stop_loss}`` for a long at ``current_price`` (+2 % / −1 %)."""
    return btkit.Position.bracket(
        position="long",
        current_price=current_price,
        percent_take_profit=TAKE_PROFIT_PERCENT,
        percent_stop_loss=STOP_LOSS_PERCENT,
    )


def get_signal(symbol: str, when: datetime, current_price: float) -> dict[str, Any] | None:
    """Called by the engine once per 15-minute bucket with nothing open."""
    fast, slow = fast_slow()
    candles = btkit.get_candles(symbol, INTERVAL, slow + 1)
    if not crossed_up(candles.close, fast, slow):
        return None
    return {
        **long_bracket(current_price),
        "minute_estimated_time": LIFETIME_MINUTES,
        "cost": COST,
        "note": f"SMA({fast}) crossed above SMA({slow}) on {INTERVAL}",
    }


@btkit.hookimpl
def btkit_strategies() -> list[StrategySpec]:
    """The registry hook: the strategy as ``smacross`` and under the alias ``sma-cross``."""
    return [
        StrategySpec(name=name, interval=INTERVAL, get_signal=get_signal, dist=DIST, params=PARAMS)
        for name in ("smacross", "sma-cross")
    ]
