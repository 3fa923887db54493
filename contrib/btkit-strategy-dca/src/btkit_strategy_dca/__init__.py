"""DCA ladder example strategy for btkit, packaged like any third-party strategy.

Installed through the ``btkit`` entry point ``dca-ladder = "btkit_strategy_dca"``; this module implements
the ``btkit_strategies`` registry hook and offers the strategy as ``dca-ladder`` (alias ``dca``).

Entry: on 15-minute candles, go long when the last close is at least 1.5 % below SMA(20) of the closes
(a dip). Take profit +2 % and stop loss −10 % from the entry price, at most one day, $100.

Management, from the strategy's ``on_active`` callback on every tick (live) / candle (backtest):
- the ladder: whenever the price is 2 % below the lowest entry so far, buy another $100
  (``commit_average_buy``), up to 4 entries in all — the effective entry is the cost-weighted harmonic
  mean of the entries;
- the target follows the ladder: once averaged, the take-profit is pulled to +2 % above the *effective*
  entry (``commit_trailing_take``; the engine keeps TP/SL where they are after a DCA buy and accepts a
  trailing take only when it brings the target closer).

Everything the callback decides on comes from the result it receives (the engine's view of the
position), so it keeps working after a live restart — there is no state in this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

import btkit
from btkit.commands import commit_average_buy, commit_trailing_take
from btkit.components import StrategySpec

__version__ = "0.2.0"
btkit_api = ">=1,<2"  # the btkit plugin API versions this plugin supports (btkit.PLUGIN_API_VERSION)

__all__ = [
    "COST",
    "DIP_PERCENT",
    "INTERVAL",
    "LADDER_STEP_PERCENT",
    "LIFETIME_MINUTES",
    "MAX_ENTRIES",
    "SMA_PERIOD",
    "STOP_LOSS_PERCENT",
    "TAKE_PROFIT_PERCENT",
    "btkit_strategies",
    "get_signal",
    "is_dip",
    "next_rung",
    "on_active",
    "take_profit_shift",
]

INTERVAL = "15m"
SMA_PERIOD = 20
DIP_PERCENT = 1.5
TAKE_PROFIT_PERCENT = 2.0
STOP_LOSS_PERCENT = 10.0
LADDER_STEP_PERCENT = 2.0
MAX_ENTRIES = 4
COST = 100.0
LIFETIME_MINUTES = 1440
DIST = "btkit-strategy-dca"


def is_dip(close: np.ndarray, period: int = SMA_PERIOD, percent: float = DIP_PERCENT) -> bool:
    """True when the last close is at least ``percent`` % below the SMA(``period``) of the closes."""
    c = np.asarray(close, dtype=np.float64)
    if len(c) < period:
        raise ValueError(f"need at least {period} closes for SMA({period}), got {len(c)}")
    sma = float(c[-period:].mean())
    return bool(c[-1] <= sma * (1 - percent / 100))


def next_rung(entry_prices: Sequence[float], step_percent: float = LADDER_STEP_PERCENT) -> float:
    """The price of the next ladder buy: ``step_percent`` % below the lowest entry so far."""
    return min(entry_prices) * (1 - step_percent / 100)


def take_profit_shift(effective_entry: float, original_take_profit: float, percent: float) -> float:
    """The ``percent_shift`` for ``commit_trailing_take`` that puts a long's target ``percent`` % above
    the effective entry: the new distance is the original one plus the shift."""
    original_distance = (original_take_profit - effective_entry) / effective_entry * 100
    return percent - original_distance


def get_signal(symbol: str, when: datetime, current_price: float) -> dict[str, Any] | None:
    """Called by the engine once per 15-minute bucket with nothing open."""
    candles = btkit.get_candles(symbol, INTERVAL, SMA_PERIOD)
    if not is_dip(candles.close):
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
        "note": f"close {DIP_PERCENT} % under SMA({SMA_PERIOD}) on {INTERVAL}; ladder every {LADDER_STEP_PERCENT} %",
    }


def on_active(result: Any) -> None:
    """Every tick with the position open: buy the next rung, or pull the target to the new entry."""
    view, symbol = result.signal, result.symbol
    prices = [e.price for e in view.entries]
    if len(prices) < MAX_ENTRIES and result.current_price <= next_rung(prices):
        commit_average_buy(symbol, COST)
        return  # the target follows on the next tick, from the new effective entry
    if len(prices) > 1:
        # False (nothing changes) when the target is already there: it only ever moves closer
        commit_trailing_take(
            symbol, take_profit_shift(view.price_open, view.original_price_take_profit, TAKE_PROFIT_PERCENT)
        )


@btkit.hookimpl
def btkit_strategies() -> list[StrategySpec]:
    """The registry hook: the strategy as ``dca-ladder`` and under the alias ``dca``."""
    return [
        StrategySpec(
            name=name, interval=INTERVAL, get_signal=get_signal, callbacks={"on_active": on_active}, dist=DIST
        )
        for name in ("dca-ladder", "dca")
    ]
