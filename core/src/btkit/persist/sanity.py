"""Sense checks of loaded live state: the rules a signal obeys when it is created, applied again to what
comes back from disk (issue 10 #6).

A document can be strict JSON of the right shape and still be nonsense: a long whose take-profit is
below its stop (closed at once), a leverage of 1e308 (every tick fails), ETHUSDT's position copied
under BTCUSDT's key (closed at ETH's price), a time in the year 10^19 (every report crashes). Each
``check_*`` raises :class:`ValueError` naming the field and the rule; the store quarantines the
document. Histories are checked with the same rules before they are written.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from btkit.model import Closed, SignalRow, SignalView

#: Timestamps (ms UTC) a live document may hold: 2000-01-01 … 2200-01-01.
MIN_TIMESTAMP_MS = 946_684_800_000
MAX_TIMESTAMP_MS = 7_258_118_400_000
#: Largest price or cost (in quote currency) btkit accepts in state.
MAX_AMOUNT = 1e12
#: Largest leverage multiplier.
MAX_MULTIPLIER = 1000.0
#: Longest lifetime of a signal, in minutes (100 years).
MAX_LIFETIME_MINUTES = 100 * 366 * 24 * 60


def _number(name: str, value: Any, *, upper: float = MAX_AMOUNT, positive: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if abs(value) > upper:
        raise ValueError(f"{name} is {value!r}, beyond the largest accepted {upper:g}")


def _time(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be integer milliseconds UTC, got {value!r}")
    if not MIN_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS:
        raise ValueError(f"{name}={value} is not a time between the years 2000 and 2200 (ms UTC)")


def _owner(what: str, symbol: str, strategy: str, key: tuple[str, ...]) -> None:
    if len(key) == 2 and (strategy, symbol) != (key[0], key[1]):
        raise ValueError(
            f"{what} belongs to strategy {strategy!r} on {symbol!r}, but is stored under "
            f"{key[0]!r} on {key[1]!r} (a document copied under another key?)"
        )


def _sides(what: str, position: str, entry: float, tp: float, sl: float, *, effective: bool) -> None:
    if position == "long":
        if not sl < tp:
            raise ValueError(f"{what}: a long's take-profit {tp} must be above its stop-loss {sl}")
        if not effective and not sl < entry < tp:
            raise ValueError(f"{what}: a long must have stop-loss {sl} < entry {entry} < take-profit {tp}")
    else:
        if not tp < sl:
            raise ValueError(f"{what}: a short's take-profit {tp} must be below its stop-loss {sl}")
        if not effective and not tp < entry < sl:
            raise ValueError(f"{what}: a short must have take-profit {tp} < entry {entry} < stop-loss {sl}")


def _common(what: str, v: SignalRow | SignalView, tp: float, sl: float) -> None:
    for name in ("price_open", "price_take_profit", "price_stop_loss", "cost"):
        _number(f"{what}.{name}", getattr(v, name))
    _number(f"{what}.multiplier", v.multiplier, upper=MAX_MULTIPLIER)
    if v.minute_estimated_time is not None and v.minute_estimated_time > MAX_LIFETIME_MINUTES:
        raise ValueError(f"{what}.minute_estimated_time={v.minute_estimated_time} is more than 100 years")
    _time(f"{what}.scheduled_at", v.scheduled_at)
    _time(f"{what}.pending_at", v.pending_at)
    if v.pending_at is not None and v.pending_at < v.scheduled_at:
        raise ValueError(f"{what}: opened at {v.pending_at}, before it was created at {v.scheduled_at}")
    for i, e in enumerate(v.entries):
        _number(f"{what}.entries[{i}].price", e.price)
        _number(f"{what}.entries[{i}].cost", e.cost)
        _time(f"{what}.entries[{i}].timestamp", e.timestamp)
    for i, p in enumerate(v.partials):
        _number(f"{what}.partials[{i}].percent", p.percent, upper=100.0)
        _number(f"{what}.partials[{i}].current_price", p.current_price)
        _time(f"{what}.partials[{i}].timestamp", p.timestamp)
    _number(f"{what} effective take-profit", tp)
    _number(f"{what} effective stop-loss", sl)


def check_row(row: SignalRow, key: tuple[str, ...], what: str = "position") -> None:
    """A scheduled or open position as loaded: owner, sides of TP/SL, bounded numbers and times."""
    _owner(what, row.symbol, row.strategy_name, key)
    _common(what, row, row.take_profit, row.stop_loss)
    for name in ("trailing_take_profit", "trailing_stop_loss", "price_best", "price_worst"):
        value = getattr(row, name)
        if value is not None:
            _number(f"{what}.{name}", value)
    _sides(what, row.position, row.price_open, row.price_take_profit, row.price_stop_loss, effective=False)
    _sides(what, row.position, row.price_open, row.take_profit, row.stop_loss, effective=True)


def check_closed(closed: Closed, key: tuple[str, ...], what: str = "closed trade") -> None:
    """One closed trade of a history: owner, times, bounded numbers (what every report relies on)."""
    what = f"{what} {closed.signal.id if closed.signal is not None else '?'}"
    _owner(what, closed.symbol, closed.strategy_name, key)
    if closed.signal is None:
        raise ValueError(f"{what} has no signal")
    v = closed.signal
    _common(what, v, v.price_take_profit, v.price_stop_loss)
    _number(f"{what}.current_price", closed.current_price)
    _time(f"{what}.timestamp", closed.timestamp)
    _time(f"{what}.close_timestamp", closed.close_timestamp)
    _number(f"{what}.pnl.pnl_percentage", closed.pnl.pnl_percentage, upper=1e9, positive=False)
    _number(f"{what}.pnl.pnl_cost", closed.pnl.pnl_cost, upper=MAX_AMOUNT, positive=False)
    opened = v.pending_at if v.pending_at is not None else v.scheduled_at
    if closed.close_timestamp < opened:
        raise ValueError(f"{what}: closed at {closed.close_timestamp}, before it opened at {opened}")


def check_history(closed: Iterable[Closed], key: tuple[str, ...]) -> None:
    for c in closed:
        check_closed(c, key)


def check_strategy_state(state: Any, key: tuple[str, ...]) -> None:
    """The strategy document: bounded times, and the row of an intent in flight like a position."""
    _time("last_tick", state.last_tick)
    _time("last_bucket", state.last_bucket)
    intent = state.intent
    if intent is not None:
        check_row(intent.row, key, what=f"intent {intent.action} row")
        if intent.signal_id != intent.row.id:
            raise ValueError(f"intent for signal {intent.signal_id!r} carries the row of {intent.row.id!r}")
        if intent.price is not None:
            _number("intent.price", intent.price)
        _time("intent.time", intent.time)


def check_risk_positions(positions: Iterable[Any]) -> None:
    for i, p in enumerate(positions):
        _number(f"positions[{i}].price_open", p.price_open)
        _time(f"positions[{i}].since", p.since)
        _time(f"positions[{i}].expires_at", p.expires_at)
