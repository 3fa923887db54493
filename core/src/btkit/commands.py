"""Position commands and queries for user code (get_signal, callbacks, listeners), symbol first.

Commands validate against the current state and either return False (nothing changed) or True; the
effect is applied by the engine — on the next tick for close/cancel requests (10-lifecycle.md §4), or
right after the calling listener returns for the position-management commands — through the broker
transaction in live mode.
"""

from __future__ import annotations

from typing import Any

import attrs

from btkit.context import current
from btkit.engine.instance import StrategyInstance
from btkit.errors import BtkitError
from btkit.lifecycle import pnl as pnl_math
from btkit.model import Entry, SignalView, view_of


def _instance(symbol: str) -> StrategyInstance:
    ctx = current()
    inst: StrategyInstance = ctx.instance
    if symbol == inst.symbol:
        return inst
    other = inst.run.find(symbol, inst.strategy.name)
    if other is None:
        raise BtkitError(f"strategy {inst.strategy.name} does not run on {symbol} in this run")
    return other


def _defer(inst: StrategyInstance, command: str) -> None:
    """Record the request durably (live) before reporting success: it survives a crash."""
    st = inst.state.strategy
    if command not in st.deferred:
        inst._commit(attrs.evolve(inst.state, strategy=attrs.evolve(st, deferred=(*st.deferred, command))))


def commit_close_pending(symbol: str) -> bool:
    """Close the open position on the next tick (reason ``closed``). False when nothing is open."""
    inst = _instance(symbol)
    if inst.state.pending is None:
        return False
    _defer(inst, "close_pending")
    return True


def commit_cancel_scheduled(symbol: str) -> bool:
    """Cancel the resting entry on the next tick (reason ``user``). False when nothing is scheduled."""
    inst = _instance(symbol)
    if inst.state.scheduled is None:
        return False
    _defer(inst, "cancel_scheduled")
    return True


def get_pending_signal(symbol: str) -> SignalView | None:
    row = _instance(symbol).state.pending
    return view_of(row) if row is not None else None


def get_scheduled_signal(symbol: str) -> SignalView | None:
    row = _instance(symbol).state.scheduled
    return view_of(row) if row is not None else None


def get_position_entries(symbol: str) -> tuple[Entry, ...]:
    row = _instance(symbol).state.pending
    return row.entries if row is not None else ()


def get_position_effective_price(symbol: str) -> float | None:
    row = _instance(symbol).state.pending
    return pnl_math.effective_entry(row) if row is not None else None


def _mark(symbol: str) -> Any:
    inst = _instance(symbol)
    row = inst.state.pending
    if row is None:
        return None
    from btkit.market import get_average_price

    price = get_average_price(symbol)
    cfg = inst.cfg
    return pnl_math.position_pnl(row, price, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee)


def get_position_pnl_percent(symbol: str) -> float | None:
    mark = _mark(symbol)
    return mark.pnl_percentage if mark is not None else None


def get_position_pnl_cost(symbol: str) -> float | None:
    mark = _mark(symbol)
    return mark.pnl_cost if mark is not None else None


def get_total_percent_closed(symbol: str) -> float:
    row = _instance(symbol).state.pending
    return pnl_math.percent_closed(row) if row is not None else 0.0
