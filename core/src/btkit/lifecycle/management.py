"""Position management rules (20-pnl-stats.md §2–§4) as pure functions — no I/O, no engine state.

Each rule takes an open position (a pending :class:`SignalRow`), the engine configuration, the current
price (the VWAP the engine uses for everything else) and the decision time, and returns either the row
as it is after the change, or a :class:`Rejection` saying why nothing may change. The command functions
of :mod:`btkit.commands` call these twice: once when user code asks (to answer True/False at once) and
again right before the change is applied (after the broker confirmed it in live mode).

Money math (effective entry, remaining dollars, pnl) comes from :mod:`btkit.lifecycle.pnl` only.

Rules in short (long positions; shorts are mirrored):
- partial profit: price above the effective entry and below the take-profit; partial loss: price
  below the effective entry and above the stop-loss; ``0 < percent ≤ 100`` of what remains; the dollars
  closed never exceed the dollars invested;
- trailing stop: ``d = (E − SL₀)/E·100 + shift`` (``SL₀`` the original stop, ``E`` the current effective
  entry), new stop ``E·(1 − d/100)``; it must be below the price and the take-profit, and higher than an
  earlier trailing stop (the first move is measured against nothing, as in backtest-kit);
- trailing take mirrors it on the original take-profit; a later move must bring the target closer;
- breakeven: once the price is ``2·(slippage+fee) + breakeven_threshold`` % beyond the effective entry,
  the stop moves to the effective entry (if it is not there or beyond already);
- average buy (DCA): only below the lowest entry so far, above the stop and below the target; TP and SL
  stay where they are.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal

import attrs

from btkit.config import EngineConfig
from btkit.lifecycle import pnl as pnl_math
from btkit.model import Entry, Partial, SignalRow

EPSILON_COST = 1e-9  # dollars: below this nothing remains open


@attrs.frozen(slots=True)
class Rejection:
    """Why a position command may not change the position (the command returns False)."""

    reason: str

    def __bool__(self) -> bool:  # a rejection is falsy, so `if outcome:` reads naturally
        return False


Outcome = SignalRow | Rejection


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars are Real too
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def _open_checks(row: SignalRow | None, price: float) -> Rejection | None:
    if row is None or row.pending_at is None or not row.entries:
        return Rejection("no open position")
    if not math.isfinite(price) or price <= 0:
        return Rejection(f"current price {price!r} is not a finite price > 0")
    if pnl_math.remaining_cost(row) <= EPSILON_COST:
        return Rejection("the whole position is already closed by partials; it closes on the next tick")
    return None


def _beyond(row: SignalRow, a: float, b: float) -> bool:
    """``a`` is strictly on the profit side of ``b`` (long: above; short: below)."""
    return a > b if row.is_long else a < b


def breakeven_threshold_percent(cfg: EngineConfig) -> float:
    """How far (in %) the price must have moved in profit before breakeven is allowed."""
    return 2 * (cfg.percent_slippage + cfg.percent_fee) + cfg.breakeven_threshold


def moved_percent(row: SignalRow, price: float) -> float:
    """Signed move of ``price`` from the effective entry in %, positive in the position's favour."""
    entry = pnl_math.effective_entry(row)
    move = (price - entry) / entry * 100.0
    return move if row.is_long else -move


def closed_cost(row: SignalRow) -> float:
    """Dollars of cost basis already closed by partials."""
    return pnl_math.total_invested(row) - pnl_math.remaining_cost(row)


# ---------------------------------------------------------------- partial closes (§3)
def partial_close(
    row: SignalRow | None,
    kind: Literal["profit", "loss"],
    percent: float,
    *,
    price: float,
    when: int,
    cfg: EngineConfig,
) -> Outcome:
    """Close ``percent`` % of the *remaining* position at ``price`` (recorded with its cost basis)."""
    percent = _number("percent", percent)
    bad = _open_checks(row, price)
    if bad is not None:
        return bad
    assert row is not None
    if not math.isfinite(percent) or percent <= 0 or percent > 100:
        return Rejection(f"percent must be > 0 and <= 100 (of the remaining position), got {percent!r}")
    entry = pnl_math.effective_entry(row)
    if kind == "profit":
        if not _beyond(row, price, entry):
            return Rejection(f"partial profit needs the price in profit: {price:g} vs entry {entry:g}")
        if not _beyond(row, row.take_profit, price):
            return Rejection(f"price {price:g} is at or through the take-profit {row.take_profit:g}")
    elif kind == "loss":
        if not _beyond(row, entry, price):
            return Rejection(f"partial loss needs the price in loss: {price:g} vs entry {entry:g}")
        if not _beyond(row, price, row.stop_loss):
            return Rejection(f"price {price:g} is at or through the stop-loss {row.stop_loss:g}")
    else:
        raise ValueError(f"kind must be 'profit' or 'loss', got {kind!r}")
    remaining = pnl_math.remaining_cost(row)
    invested = pnl_math.total_invested(row)
    if closed_cost(row) + percent / 100.0 * remaining > invested * (1 + 1e-12):
        return Rejection("the dollars closed would exceed the dollars invested")
    part = Partial(
        kind=kind,
        percent=percent,
        current_price=price,
        cost_basis_at_close=remaining,
        entry_count_at_close=len(row.entries),
        timestamp=when,
    )
    return attrs.evolve(row, partials=(*row.partials, part))


# ---------------------------------------------------------------- trailing (§4)
def trailing_stop_price(row: SignalRow, percent_shift: float) -> float:
    """``E·(1 ∓ d/100)`` with ``d`` = the original stop's distance from the effective entry + shift."""
    entry = pnl_math.effective_entry(row)
    sign = 1.0 if row.is_long else -1.0
    distance = sign * (entry - row.price_stop_loss) / entry * 100.0 + percent_shift
    return entry * (1 - sign * distance / 100.0)


def trailing_take_price(row: SignalRow, percent_shift: float) -> float:
    """``E·(1 ± d/100)`` with ``d`` = the original take-profit's distance from the effective entry + shift."""
    entry = pnl_math.effective_entry(row)
    sign = 1.0 if row.is_long else -1.0
    distance = sign * (row.price_take_profit - entry) / entry * 100.0 + percent_shift
    return entry * (1 + sign * distance / 100.0)


def trailing_stop(
    row: SignalRow | None, percent_shift: float, *, price: float, when: int, cfg: EngineConfig
) -> Outcome:
    """Move the stop by ``percent_shift`` relative to the original stop distance (negative tightens)."""
    shift = _number("percent_shift", percent_shift)
    bad = _open_checks(row, price)
    if bad is not None:
        return bad
    assert row is not None
    if not math.isfinite(shift):
        return Rejection(f"percent_shift must be finite, got {shift!r}")
    new = trailing_stop_price(row, shift)
    if not math.isfinite(new) or new <= 0:
        return Rejection(f"the new stop-loss {new:g} is not a price > 0")
    if not _beyond(row, price, new):
        return Rejection(f"the new stop-loss {new:g} is not on the safe side of the current price {price:g}")
    if not _beyond(row, row.take_profit, new):
        return Rejection(f"the new stop-loss {new:g} is beyond the take-profit {row.take_profit:g}")
    current = row.trailing_stop_loss
    if current is not None and not _beyond(row, new, current):
        return Rejection(f"the new stop-loss {new:g} does not improve on the current one {current:g}")
    return attrs.evolve(row, trailing_stop_loss=new)


def trailing_take(
    row: SignalRow | None, percent_shift: float, *, price: float, when: int, cfg: EngineConfig
) -> Outcome:
    """Move the take-profit by ``percent_shift`` relative to the original distance (negative: closer)."""
    shift = _number("percent_shift", percent_shift)
    bad = _open_checks(row, price)
    if bad is not None:
        return bad
    assert row is not None
    if not math.isfinite(shift):
        return Rejection(f"percent_shift must be finite, got {shift!r}")
    new = trailing_take_price(row, shift)
    if not math.isfinite(new) or new <= 0:
        return Rejection(f"the new take-profit {new:g} is not a price > 0")
    if not _beyond(row, new, price):
        return Rejection(f"the new take-profit {new:g} is not beyond the current price {price:g}")
    if not _beyond(row, new, row.stop_loss):
        return Rejection(f"the new take-profit {new:g} is not beyond the stop-loss {row.stop_loss:g}")
    current = row.trailing_take_profit
    if current is not None and not _beyond(row, current, new):
        return Rejection(f"the new take-profit {new:g} is not closer than the current one {current:g}")
    return attrs.evolve(row, trailing_take_profit=new)


# ---------------------------------------------------------------- breakeven (§4)
def breakeven(row: SignalRow | None, *, price: float, when: int, cfg: EngineConfig) -> Outcome:
    """Move the stop to the effective entry once the price moved far enough in profit."""
    bad = _open_checks(row, price)
    if bad is not None:
        return bad
    assert row is not None
    entry = pnl_math.effective_entry(row)
    threshold = breakeven_threshold_percent(cfg)
    moved = moved_percent(row, price)
    if moved < threshold:
        return Rejection(f"price moved {moved:.4g} % in profit; breakeven needs {threshold:g} %")
    if not _beyond(row, entry, row.stop_loss):
        return Rejection(f"the stop-loss {row.stop_loss:g} is already at or beyond the entry {entry:g}")
    if not _beyond(row, price, entry) or not _beyond(row, row.take_profit, entry):
        return Rejection(f"the effective entry {entry:g} is not between the price and the take-profit")
    return attrs.evolve(row, trailing_stop_loss=entry, breakeven=True)


# ---------------------------------------------------------------- averaging in (§2)
def average_buy(
    row: SignalRow | None, cost: float | None, *, price: float, when: int, cfg: EngineConfig
) -> Outcome:
    """Add an entry of ``cost`` dollars at ``price`` (default ``position_entry_cost``); TP/SL stay."""
    amount = cfg.position_entry_cost if cost is None else _number("cost", cost)
    bad = _open_checks(row, price)
    if bad is not None:
        return bad
    assert row is not None
    if not math.isfinite(amount) or amount <= 0:
        return Rejection(f"cost must be a finite number of dollars > 0, got {amount!r}")
    if row.is_long:
        lowest = min(e.price for e in row.entries)
        if not price < lowest:
            return Rejection(f"averaging up rejected: {price:g} is not below the lowest entry {lowest:g}")
    else:
        highest = max(e.price for e in row.entries)
        if not price > highest:
            return Rejection(f"averaging up rejected: {price:g} is not above the highest entry {highest:g}")
    if not _beyond(row, price, row.stop_loss):
        return Rejection(f"price {price:g} is at or through the stop-loss {row.stop_loss:g}")
    if not _beyond(row, row.take_profit, price):
        return Rejection(f"price {price:g} is at or through the take-profit {row.take_profit:g}")
    return attrs.evolve(row, entries=(*row.entries, Entry(price, amount, when)))


__all__ = [
    "EPSILON_COST",
    "Outcome",
    "Rejection",
    "average_buy",
    "breakeven",
    "breakeven_threshold_percent",
    "closed_cost",
    "moved_percent",
    "partial_close",
    "trailing_stop",
    "trailing_stop_price",
    "trailing_take",
    "trailing_take_price",
]
