"""Per-candle announcements for position management: pings and partial/breakeven level events.

Pings (``listen_active_ping`` / ``listen_schedule_ping`` / ``listen_idle_ping``) fire on every live tick
and backtest candle; level events fire once per 10 % of the way to TP or SL and once for breakeven, per
signal (remembered in the persisted ``Levels`` document). Listeners run inside the execution context,
so ``commit_*`` and ``get_position_*`` work in them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from btkit import events
from btkit.context import entered
from btkit.engine.state import Levels
from btkit.lifecycle import machine
from btkit.lifecycle import pnl as pnl_math
from btkit.lifecycle.machine import Observation
from btkit.model import SignalRow, view_of

if TYPE_CHECKING:
    from btkit.engine.instance import StrategyInstance

LEVEL_STREAMS = ("partial_profit_available", "partial_loss_available", "breakeven_available")


@attrs.frozen(kw_only=True)
class Ping:
    """What ``listen_*_ping`` listeners receive on every live tick / backtest candle."""

    symbol: str
    strategy_name: str
    exchange_name: str
    current_price: float
    signal: Any
    backtest: bool
    timestamp: int


@attrs.frozen(kw_only=True)
class LevelEvent:
    """A partial-profit/loss level (10 … 100 % of the way to TP/SL) or breakeven became available."""

    symbol: str
    strategy_name: str
    level: int
    current_price: float
    signal: Any
    backtest: bool
    timestamp: int


async def ping(inst: StrategyInstance, stream: str, when: int, price: float, row: SignalRow | None) -> None:
    ping = Ping(
        symbol=inst.symbol,
        strategy_name=inst.strategy.name,
        exchange_name=inst.exchange_name,
        current_price=price,
        signal=view_of(row) if row is not None else None,
        backtest=inst.backtest,
        timestamp=when,
    )
    with entered(inst.context(when)):
        await events.emit(stream, ping)


async def levels(inst: StrategyInstance, row: SignalRow, o: Observation, when: int) -> None:
    if not any(events.has_listeners(s, inst.strategy) for s in LEVEL_STREAMS):
        return
    levels = inst.state.levels if inst.state.levels.signal_id == row.id else Levels(signal_id=row.id)
    to_tp, to_sl = machine.progress(row, o.vwap)
    new_profit = [lv for lv in range(10, 101, 10) if to_tp >= lv and lv not in levels.profit]
    new_loss = [lv for lv in range(10, 101, 10) if to_sl >= lv and lv not in levels.loss]
    cfg = inst.cfg
    threshold = 2 * (cfg.percent_slippage + cfg.percent_fee) + cfg.breakeven_threshold
    entry = pnl_math.effective_entry(row)
    moved = (o.vwap - entry) / entry * 100 * (1 if row.is_long else -1)
    breakeven_now = not levels.breakeven and moved >= threshold
    if not (new_profit or new_loss or breakeven_now):
        return
    updated = attrs.evolve(
        levels,
        profit=tuple(sorted((*levels.profit, *new_profit))),
        loss=tuple(sorted((*levels.loss, *new_loss))),
        breakeven=levels.breakeven or breakeven_now,
    )
    inst._commit(attrs.evolve(inst.state, levels=updated))
    view = view_of(row)
    announcements = [
        *(("partial_profit_available", lv) for lv in new_profit),
        *(("partial_loss_available", lv) for lv in new_loss),
        *((("breakeven_available", 0),) if breakeven_now else ()),
    ]
    with entered(inst.context(when)):
        for stream, lv in announcements:
            await events.emit(
                stream,
                LevelEvent(
                    symbol=inst.symbol,
                    strategy_name=inst.strategy.name,
                    level=lv,
                    current_price=o.vwap,
                    signal=view,
                    backtest=inst.backtest,
                    timestamp=when,
                ),
            )
