"""Partial-profit and trailing-stop example strategy for btkit, packaged like any third-party strategy.

Installed through the ``btkit`` entry point ``partials-trailing = "btkit_strategy_partials"``; this module
implements the ``btkit_strategies`` registry hook and offers the strategy as ``partials-trailing`` (alias
``partials``).

Entry: on 15-minute candles, go long on a channel breakout — the last close is above the highest high of
the 20 candles before it. Take profit +3 %, stop loss −1.5 %, at most one day, $100.

Management, from the strategy's ``on_active`` callback on every tick (live) / candle (backtest):
- partial profits: 25 % of the position a third of the way to the target, then 33 % of what remains
  two thirds of the way (``commit_partial_profit``: a share of the *remaining* position);
- breakeven: the stop moves to the entry as soon as the engine allows it (``commit_breakeven``: once the
  price is 2·(slippage+fee) + breakeven_threshold % in profit);
- trailing stop: from half-way to the target, the stop follows 1 % under the price
  (``commit_trailing_stop``; a move is accepted only when it raises the stop);
- cutting losses: half of the position goes half-way to the stop (``commit_partial_loss``).

Everything the callback decides on comes from the result it receives (the engine's view of the
position and its progress), so it keeps working after a live restart — there is no state in this module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

import btkit
from btkit.commands import commit_breakeven, commit_partial_loss, commit_partial_profit, commit_trailing_stop
from btkit.components import StrategySpec

__version__ = "0.2.0"
btkit_api = ">=1,<2"  # the btkit plugin API versions this plugin supports (btkit.PLUGIN_API_VERSION)

__all__ = [
    "CHANNEL",
    "COST",
    "CUT_LOSS_AT",
    "CUT_LOSS_PERCENT",
    "FIRST_PARTIAL_AT",
    "FIRST_PARTIAL_PERCENT",
    "INTERVAL",
    "LIFETIME_MINUTES",
    "SECOND_PARTIAL_AT",
    "SECOND_PARTIAL_PERCENT",
    "STOP_LOSS_PERCENT",
    "TAKE_PROFIT_PERCENT",
    "TRAIL_FROM",
    "TRAIL_PERCENT",
    "breakout",
    "btkit_strategies",
    "get_signal",
    "on_active",
    "stop_shift",
]

INTERVAL = "15m"
CHANNEL = 20
TAKE_PROFIT_PERCENT = 3.0
STOP_LOSS_PERCENT = 1.5
FIRST_PARTIAL_AT, FIRST_PARTIAL_PERCENT = 33.0, 25.0  # % of the way to TP, % of the remaining position
SECOND_PARTIAL_AT, SECOND_PARTIAL_PERCENT = 66.0, 33.0
TRAIL_FROM, TRAIL_PERCENT = 50.0, 1.0  # start trailing half-way to TP, 1 % under the price
CUT_LOSS_AT, CUT_LOSS_PERCENT = 50.0, 50.0  # half-way to SL, close half
COST = 100.0
LIFETIME_MINUTES = 1440
DIST = "btkit-strategy-partials"


def breakout(high: np.ndarray, close: np.ndarray, channel: int = CHANNEL) -> bool:
    """True when the last close is above the highest high of the ``channel`` candles before it."""
    h = np.asarray(high, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    if len(c) < channel + 1 or len(h) != len(c):
        raise ValueError(f"need {channel + 1} candles (highs and closes) for a {channel}-candle channel")
    return bool(c[-1] > h[-channel - 1 : -1].max())


def stop_shift(
    effective_entry: float, original_stop_loss: float, price: float, trail_percent: float
) -> float:
    """The ``percent_shift`` for ``commit_trailing_stop`` that puts a long's stop ``trail_percent`` %
    under ``price``: the new distance from the effective entry is the original distance plus the shift."""
    original_distance = (effective_entry - original_stop_loss) / effective_entry * 100
    wanted_distance = (effective_entry - price * (1 - trail_percent / 100)) / effective_entry * 100
    return wanted_distance - original_distance


def get_signal(symbol: str, when: datetime, current_price: float) -> dict[str, Any] | None:
    """Called by the engine once per 15-minute bucket with nothing open."""
    candles = btkit.get_candles(symbol, INTERVAL, CHANNEL + 1)
    if not breakout(candles.high, candles.close):
        return None
    return {
        **btkit.Position.bracket(
            position="long",
            current_price=current_price,
            percent_take_profit=TAKE_PROFIT_PERCENT,
            percent_stop_loss=STOP_LOSS_PERCENT,
        ),
        "minute_estimated_time": LIFETIME_MINUTES,
        "cost": COST,
        "note": f"close above the {CHANNEL}-candle high on {INTERVAL}",
    }


def on_active(result: Any) -> None:
    """Every tick with the position open: partials, breakeven, trailing stop, loss cut."""
    view, symbol, price = result.signal, result.symbol, result.current_price
    profits = sum(1 for p in view.partials if p.kind == "profit")
    if profits == 0 and result.percent_tp >= FIRST_PARTIAL_AT:
        commit_partial_profit(symbol, FIRST_PARTIAL_PERCENT)
    elif profits == 1 and result.percent_tp >= SECOND_PARTIAL_AT:
        commit_partial_profit(symbol, SECOND_PARTIAL_PERCENT)
    if view.price_stop_loss < view.price_open:
        commit_breakeven(symbol)  # False until the price moved far enough
    if result.percent_tp >= TRAIL_FROM:
        commit_trailing_stop(
            symbol, stop_shift(view.price_open, view.original_price_stop_loss, price, TRAIL_PERCENT)
        )
    if result.percent_sl >= CUT_LOSS_AT and not any(p.kind == "loss" for p in view.partials):
        commit_partial_loss(symbol, CUT_LOSS_PERCENT)


@btkit.hookimpl
def btkit_strategies() -> list[StrategySpec]:
    """The registry hook: the strategy as ``partials-trailing`` and under the alias ``partials``."""
    return [
        StrategySpec(
            name=name, interval=INTERVAL, get_signal=get_signal, callbacks={"on_active": on_active}, dist=DIST
        )
        for name in ("partials-trailing", "partials")
    ]
