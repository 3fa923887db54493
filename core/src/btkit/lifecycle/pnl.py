"""The one home of the money math (20-pnl-stats.md): slippage, fees, DCA, partials, leverage.

Percent values are in percent units. A position is a sequence of events (entries and partial closes)
replayed over a running *basis* (dollars still invested) and *units* (Σ cost/price, i.e. quantity):
- an entry adds ``cost`` to basis and ``cost/price`` to units, so the effective entry ``basis/units`` is
  the cost-weighted harmonic mean of the entry prices;
- a partial of ``p`` % closes ``p`` % of what remains: basis and units both shrink by ``p/100``, so the
  effective entry of the remainder is unchanged by the partial itself (it changes with later DCA).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import attrs

from btkit.model import Entry, Partial, Pnl, SignalRow


def leg_prices(position: str, entry: float, close: float, slippage_pct: float) -> tuple[float, float]:
    """Slipped open/close prices (O, C) of one leg: slippage always works against the trader."""
    s = slippage_pct / 100.0
    if position == "long":
        return entry * (1 + s), close * (1 - s)
    return entry * (1 - s), close * (1 + s)


def leg_raw(position: str, o: float, c: float) -> float:
    """Raw return of one leg in percent, before fees."""
    return (c - o) / o * 100.0 if position == "long" else (o - c) / o * 100.0


def simple_pnl_percent(
    position: str, entry: float, close: float, *, slippage_pct: float, fee_pct: float, multiplier: float = 1.0
) -> float:
    """§1: one entry, full close. ``(raw − f·(1 + C/O)) · multiplier``."""
    o, c = leg_prices(position, entry, close, slippage_pct)
    return (leg_raw(position, o, c) - fee_pct * (1 + c / o)) * multiplier


def _uniform_price(entries: tuple[Entry, ...]) -> float | None:
    """The fill price when every entry filled at the same price (always so for one entry), else None.

    Mathematically that is the effective entry, but ``Σcost / Σ(cost/price)`` in floats can land one ulp
    away from it; returning the price itself keeps a single-entry position's entry bit-exact.
    """
    if not entries:
        return None
    price = entries[0].price
    return price if all(e.price == price for e in entries) else None


def effective_entry_of(entries: Iterable[Entry]) -> float:
    """Cost-weighted harmonic mean ``Σcost / Σ(cost/price)`` of entries (ignores partials)."""
    entries = tuple(entries)
    uniform = _uniform_price(entries)
    if uniform is not None:
        return uniform
    cost = units = 0.0
    for e in entries:
        cost += e.cost
        units += e.cost / e.price
    return cost / units


def _replay(row: SignalRow) -> tuple[float, float, list[tuple[Partial, float, float]]]:
    """Replay entries and partials in order. Returns (basis, units, [(partial, basis_before, entry)])."""
    entries = sorted(row.entries, key=lambda e: e.timestamp)
    partials = sorted(row.partials, key=lambda p: p.timestamp)
    basis = units = 0.0
    legs: list[tuple[Partial, float, float]] = []
    ei = 0
    for p in partials:
        while ei < len(entries) and ei < p.entry_count_at_close:
            basis += entries[ei].cost
            units += entries[ei].cost / entries[ei].price
            ei += 1
        keep = 1.0 - p.percent / 100.0
        legs.append((p, basis, basis / units))
        basis *= keep
        units *= keep
    for e in entries[ei:]:
        basis += e.cost
        units += e.cost / e.price
    return basis, units, legs


def total_invested(row: SignalRow) -> float:
    return sum(e.cost for e in row.entries) if row.entries else row.cost


def effective_entry(row: SignalRow) -> float:
    """Effective entry of what is still open (DCA-weighted, unchanged by partials themselves)."""
    if not row.entries:
        return row.price_open
    uniform = _uniform_price(row.entries)  # partials never move the entry of what remains
    if uniform is not None:
        return uniform
    basis, units, _ = _replay(row)
    if units <= 0 or basis <= 0:  # everything closed: the entry of the last leg
        return effective_entry_of(row.entries)
    return basis / units


def remaining_cost(row: SignalRow) -> float:
    """Dollars still invested (total invested minus the cost basis closed by partials)."""
    if not row.entries:
        return row.cost
    return _replay(row)[0]


def percent_closed(row: SignalRow) -> float:
    """Share of the invested dollars already closed by partials, 0–100."""
    invested = total_invested(row)
    return 0.0 if invested <= 0 else max(0.0, min(100.0, (1 - remaining_cost(row) / invested) * 100.0))


def position_pnl(row: SignalRow, close_price: float, *, slippage_pct: float, fee_pct: float) -> Pnl:
    """Full pnl of a position closed (or marked) at ``close_price``: §1, §1b, §2 and §3 together."""
    invested = total_invested(row)
    if not row.entries:  # a row that never filled (used for marks only)
        entries: tuple[Entry, ...] = (Entry(row.price_open, row.cost, row.scheduled_at),)
        row_for_math = attrs.evolve(row, entries=entries)
    else:
        row_for_math = row
    basis, units, legs = _replay(row_for_math)
    uniform = _uniform_price(row_for_math.entries)
    pos = row.position
    total = 0.0
    fees = fee_pct  # entry fee, once
    for p, basis_before, entry in legs:
        entry = uniform if uniform is not None else entry
        w = (p.percent / 100.0 * basis_before) / invested
        o, c = leg_prices(pos, entry, p.current_price, slippage_pct)
        total += w * leg_raw(pos, o, c)
        fees += fee_pct * w * c / o
    w_rem = basis / invested
    if uniform is not None:
        rem_entry = uniform
    else:
        rem_entry = basis / units if units > 0 and basis > 0 else effective_entry_of(row_for_math.entries)
    if w_rem > 0:
        o, c = leg_prices(pos, rem_entry, close_price, slippage_pct)
        total += w_rem * leg_raw(pos, o, c)
        fees += fee_pct * w_rem * c / o
    pct = (total - fees) * row.multiplier
    return Pnl(
        pnl_percentage=pct,
        pnl_cost=pct / 100.0 * invested,
        pnl_entries=invested,
        price_open=rem_entry,
        price_close=close_price,
    )


def liquidation_price(row: SignalRow, *, slippage_pct: float, fee_pct: float) -> float | None:
    """Isolated margin only: the close price at which the full pnl formula equals −100 %.

    pnl is linear in the close price, so it is solved from two evaluations. None on cross margin, when
    the slope is ~0, or when the solution is not a positive finite number.
    """
    if not row.isolated:
        return None
    entry = effective_entry(row)
    p1, p2 = entry, entry * 2.0
    y1 = position_pnl(row, p1, slippage_pct=slippage_pct, fee_pct=fee_pct).pnl_percentage
    y2 = position_pnl(row, p2, slippage_pct=slippage_pct, fee_pct=fee_pct).pnl_percentage
    slope = (y2 - y1) / (p2 - p1)
    if abs(slope) < 1e-12:
        return None
    price = p1 + (-100.0 - y1) / slope
    if not math.isfinite(price) or price <= 0:
        return None
    return price
