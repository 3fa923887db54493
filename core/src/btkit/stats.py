"""Statistics over closed signals (20-pnl-stats.md §5).

Everything is computed over **all** closed signals given (no truncation). Percent values are in percent
units (0.1 means 0.1 %). A value that is undefined for the data at hand (too few trades, a zero divisor, a
span too short to annualise) is ``None`` — never NaN or infinity. docs/statistics.md lists every field
with its formula.
"""

from __future__ import annotations

import math
import statistics as pystats
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from btkit.lifecycle.pnl import position_pnl
from btkit.model import Closed, SignalRow

MIN_TRADES_FOR_RATIOS = 10
"""Closes needed before std_dev, sharpe, sortino, certainty ratio and expectancy are reported."""
MIN_SPAN_DAYS_FOR_ANNUAL = 14.0
"""Span (first open → last close) needed before annualised figures are reported."""
DAY_MS = 86_400_000
MINUTE_MS = 60_000
DAYS_PER_YEAR = 365.0

K = TypeVar("K", bound=Hashable)


# ---------------------------------------------------------------- safe math
def _finite(x: float | None) -> float | None:
    """``x`` as a float, or None when it is None, NaN or infinite."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _div(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either side is undefined or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    try:
        return _finite(a / b)
    except (OverflowError, ZeroDivisionError):
        return None


def _mean(xs: Sequence[float]) -> float | None:
    return _finite(math.fsum(xs) / len(xs)) if xs else None


# ---------------------------------------------------------------- per-trade helpers
def opened_at(c: Closed) -> int:
    """When the position opened (``pending_at``), falling back to ``scheduled_at``; ms UTC."""
    view = c.signal
    if view is None:
        return c.close_timestamp
    return view.pending_at if view.pending_at is not None else view.scheduled_at


def duration_ms(c: Closed) -> int:
    """Time the position was open, in ms (never negative)."""
    return max(0, c.close_timestamp - opened_at(c))


def signal_row_of(c: Closed) -> SignalRow:
    """Rebuild the SignalRow a closed result describes, so the pnl module can mark it at any price.

    The view carries effective prices; entries and partials are what the pnl math replays, so the row
    reproduces the same pnl (checked in the tests against ``Closed.pnl``).
    """
    v = c.signal
    if v is None:
        raise ValueError(f"closed result of {c.symbol}/{c.strategy_name} has no signal; cannot mark it")
    return SignalRow(
        id=v.id,
        symbol=c.symbol,
        strategy_name=c.strategy_name,
        exchange_name=c.exchange_name,
        frame_name=c.frame_name,
        position=v.position,
        price_open=v.price_open,
        price_take_profit=v.price_take_profit,
        price_stop_loss=v.price_stop_loss,
        minute_estimated_time=v.minute_estimated_time,
        cost=v.cost,
        note=v.note,
        scheduled_at=v.scheduled_at,
        pending_at=v.pending_at,
        multiplier=v.multiplier,
        isolated=v.isolated,
        entries=v.entries,
        partials=v.partials,
    )


def mark_pnl(c: Closed, price: float | None, *, slippage_pct: float, fee_pct: float) -> float | None:
    """Pnl % of the position (all its entries and partials) had the remainder closed at ``price``.

    None when ``price`` is None. Uses :func:`btkit.lifecycle.pnl.position_pnl`, so slippage, fees,
    DCA, partials and leverage are exactly those of the real close.
    """
    if price is None or c.signal is None:
        return None
    row = signal_row_of(c)
    return _finite(position_pnl(row, price, slippage_pct=slippage_pct, fee_pct=fee_pct).pnl_percentage)


def peak_pnl(c: Closed, *, slippage_pct: float = 0.1, fee_pct: float = 0.1) -> float | None:
    """Pnl % at the most favourable price seen while open (``price_best``); None when unknown."""
    return mark_pnl(c, c.price_best, slippage_pct=slippage_pct, fee_pct=fee_pct)


def drawdown_pnl(c: Closed, *, slippage_pct: float = 0.1, fee_pct: float = 0.1) -> float | None:
    """Pnl % at the most adverse price seen while open (``price_worst``); None when unknown."""
    return mark_pnl(c, c.price_worst, slippage_pct=slippage_pct, fee_pct=fee_pct)


def trade_markdown(c: Closed, *, slippage_pct: float, fee_pct: float) -> float:
    """How far (≤ 0, ≥ −100) the trade took equity down before it closed, in percent.

    ``min(0, pnl at price_worst, final pnl)``: the final pnl is included because a trade that closes at
    a loss was at least that far down; the floor of −100 % is the whole stake (a liquidation).
    """
    worst = drawdown_pnl(c, slippage_pct=slippage_pct, fee_pct=fee_pct)
    dd = min(0.0, c.pnl.pnl_percentage, worst if worst is not None else 0.0)
    return max(-100.0, dd)


def chronological(closed: Iterable[Closed]) -> list[Closed]:
    """Closed results oldest first by close time (stable for equal close times)."""
    return sorted(closed, key=lambda c: c.close_timestamp)


# ---------------------------------------------------------------- the record
SERIES_FIELDS: tuple[str, ...] = ("equity_curve", "closed", "event_list")


@attrs.frozen(kw_only=True)
class Statistics:
    """Statistics of one set of closed signals; see docs/statistics.md for every formula.

    ``closed`` is newest first; ``equity_curve`` is ``(timestamp_ms, equity)`` points, oldest first,
    equity 1.0 = the starting capital.
    """

    total_signals: int = 0
    win_count: int = 0
    loss_count: int = 0
    win_rate: float | None = None
    avg_pnl: float | None = None
    total_pnl: float = 0.0
    median_pnl: float | None = None
    avg_win: float | None = None
    avg_loss: float | None = None
    best_trade: float | None = None
    worst_trade: float | None = None
    total_pnl_cost: float = 0.0
    # ≥ 10 closes
    std_dev: float | None = None
    sharpe_ratio: float | None = None
    sortino_ratio: float | None = None
    certainty_ratio: float | None = None
    expectancy: float | None = None
    # ≥ 10 closes and span ≥ 14 days
    trades_per_year: float | None = None
    annualized_sharpe_ratio: float | None = None
    expected_yearly_returns: float | None = None
    calmar_ratio: float | None = None
    # equity curve
    total_return: float | None = None
    max_drawdown: float | None = None
    recovery_factor: float | None = None
    profit_factor: float | None = None
    # time
    avg_duration_minutes: float | None = None
    avg_win_duration_minutes: float | None = None
    avg_loss_duration_minutes: float | None = None
    exposure_minutes: float | None = None
    exposure_pct: float | None = None
    span_days: float | None = None
    first_timestamp: int | None = None
    last_timestamp: int | None = None
    # streaks and sides
    max_consecutive_wins: int = 0
    max_consecutive_losses: int = 0
    long_count: int = 0
    short_count: int = 0
    long_pnl: float = 0.0
    short_pnl: float = 0.0
    long_win_rate: float | None = None
    short_win_rate: float | None = None
    # inputs and series
    slippage_pct: float = 0.1
    fee_pct: float = 0.1
    equity_curve: tuple[tuple[int, float], ...] = ()
    closed: tuple[Closed, ...] = ()
    event_list: tuple[Any, ...] = ()
    """Live only: every tick event (idle, opened, active, closed) for dashboards; the live engine fills it
    with ``attrs.evolve(stats, event_list=...)``. Empty for backtests."""

    @property
    def total_closed(self) -> int:
        """Alias of ``total_signals`` (the name live statistics use)."""
        return self.total_signals

    def scalars(self) -> dict[str, int | float | None]:
        """Every scalar field by name, in declaration order (no curve, no trades) — JSON-ready."""
        return {
            a.name: getattr(self, a.name) for a in attrs.fields(type(self)) if a.name not in SERIES_FIELDS
        }


# ---------------------------------------------------------------- computation
def _equity_curve(
    chrono: Sequence[Closed], start_ts: int, *, slippage_pct: float, fee_pct: float
) -> tuple[tuple[tuple[int, float], ...], float]:
    """Compound every trade onto equity 1.0; each trade first marks equity down by its max drawdown.

    Returns (curve, max_drawdown %). Equity never goes below 0 (a −100 % trade wipes it out).
    """
    equity = 1.0
    peak = 1.0
    max_dd = 0.0
    points: list[tuple[int, float]] = [(start_ts, 1.0)]

    def visit(ts: int, value: float) -> None:
        nonlocal peak, max_dd
        points.append((ts, value))
        if value > peak:
            peak = value
        elif peak > 0:
            max_dd = max(max_dd, (peak - value) / peak * 100.0)

    for c in chrono:
        pnl = c.pnl.pnl_percentage
        dd = trade_markdown(c, slippage_pct=slippage_pct, fee_pct=fee_pct)
        if dd < 0 and dd < pnl:
            visit(c.close_timestamp, max(0.0, equity * (1.0 + dd / 100.0)))
        equity = max(0.0, equity * (1.0 + pnl / 100.0))
        visit(c.close_timestamp, equity)
    return tuple(points), max_dd


def _streaks(pnls: Sequence[float]) -> tuple[int, int]:
    """Longest runs of pnl > 0 and pnl < 0 (a zero-pnl trade ends both)."""
    best_w = best_l = run_w = run_l = 0
    for p in pnls:
        run_w = run_w + 1 if p > 0 else 0
        run_l = run_l + 1 if p < 0 else 0
        best_w = max(best_w, run_w)
        best_l = max(best_l, run_l)
    return best_w, best_l


def _union_ms(intervals: Iterable[tuple[int, int]]) -> int:
    """Total length of the union of [start, end] intervals."""
    total = 0
    cur_s: int | None = None
    cur_e = 0
    for s, e in sorted(intervals):
        if cur_s is None or s > cur_e:
            if cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_s is not None:
        total += cur_e - cur_s
    return total


def _win_rate(pnls: Sequence[float]) -> float | None:
    w = sum(1 for p in pnls if p > 0)
    lo = sum(1 for p in pnls if p < 0)
    return _div(w * 100.0, w + lo)


def compute_statistics(
    closed: Sequence[Closed], *, slippage_pct: float = 0.1, fee_pct: float = 0.1
) -> Statistics:
    """Statistics over all of ``closed`` (any order).

    ``slippage_pct`` / ``fee_pct`` are used to mark each trade at its best and worst price (peaks and
    drawdowns); the trades' own pnl is taken as recorded in ``Closed.pnl``.
    """
    for c in closed:
        if not isinstance(c, Closed):
            raise TypeError(f"compute_statistics takes Closed results, got {type(c).__name__}")
    chrono = chronological(closed)
    n = len(chrono)
    newest_first = tuple(reversed(chrono))
    base: dict[str, Any] = {"slippage_pct": slippage_pct, "fee_pct": fee_pct, "closed": newest_first}
    if n == 0:
        return Statistics(**base)

    pnls = [c.pnl.pnl_percentage for c in chrono]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    avg_pnl = _mean(pnls)
    avg_win = _mean(wins)
    avg_loss = _mean(losses)
    total_pnl = math.fsum(pnls)

    # --- dispersion ratios (≥ 10 closes)
    std_dev = sharpe = sortino = certainty = expectancy = None
    if n >= MIN_TRADES_FOR_RATIOS:
        std_dev = _finite(pystats.stdev(pnls))
        sharpe = _div(avg_pnl, std_dev)
        downside = _finite(math.sqrt(math.fsum(min(0.0, p) ** 2 for p in pnls) / n))
        sortino = _div(avg_pnl, downside)
        certainty = _div(avg_win, abs(avg_loss)) if avg_win is not None and avg_loss is not None else None
        decided = len(wins) + len(losses)
        if decided:
            p_win = len(wins) / decided
            expectancy = _finite(p_win * (avg_win or 0.0) + (1.0 - p_win) * (avg_loss or 0.0))

    # --- time
    starts = [opened_at(c) for c in chrono]
    first_ts = min(starts)
    last_ts = max(c.close_timestamp for c in chrono)
    span_ms = max(0, last_ts - first_ts)
    span_days = span_ms / DAY_MS
    durations = [duration_ms(c) / MINUTE_MS for c in chrono]
    exposure_ms = _union_ms((opened_at(c), max(opened_at(c), c.close_timestamp)) for c in chrono)

    # --- equity
    curve, max_dd = _equity_curve(chrono, first_ts, slippage_pct=slippage_pct, fee_pct=fee_pct)
    total_return = _finite((curve[-1][1] - 1.0) * 100.0)

    # --- annualised (≥ 10 closes and span ≥ 14 days)
    tpy = ann_sharpe = yearly = calmar = None
    if n >= MIN_TRADES_FOR_RATIOS and span_days >= MIN_SPAN_DAYS_FOR_ANNUAL:
        tpy = _div(n * DAYS_PER_YEAR, span_days)
        if sharpe is not None and tpy is not None:
            ann_sharpe = _finite(sharpe * math.sqrt(tpy))
        if avg_pnl is not None and tpy is not None:
            yearly = _finite(avg_pnl * tpy)
        calmar = _div(yearly, max_dd)

    sum_losses = math.fsum(losses)
    longs = [c for c in chrono if c.signal is not None and c.signal.position == "long"]
    shorts = [c for c in chrono if c.signal is not None and c.signal.position == "short"]
    max_w, max_l = _streaks(pnls)

    return Statistics(
        total_signals=n,
        win_count=len(wins),
        loss_count=len(losses),
        win_rate=_win_rate(pnls),
        avg_pnl=avg_pnl,
        total_pnl=total_pnl,
        median_pnl=_finite(pystats.median(pnls)),
        avg_win=avg_win,
        avg_loss=avg_loss,
        best_trade=max(pnls),
        worst_trade=min(pnls),
        total_pnl_cost=math.fsum(c.pnl.pnl_cost for c in chrono),
        std_dev=std_dev,
        sharpe_ratio=sharpe,
        sortino_ratio=sortino,
        certainty_ratio=certainty,
        expectancy=expectancy,
        trades_per_year=tpy,
        annualized_sharpe_ratio=ann_sharpe,
        expected_yearly_returns=yearly,
        calmar_ratio=calmar,
        total_return=total_return,
        max_drawdown=max_dd,
        recovery_factor=_div(total_return, max_dd),
        profit_factor=_div(math.fsum(wins), abs(sum_losses)),
        avg_duration_minutes=_mean(durations),
        avg_win_duration_minutes=_mean([d for d, p in zip(durations, pnls, strict=True) if p > 0]),
        avg_loss_duration_minutes=_mean([d for d, p in zip(durations, pnls, strict=True) if p < 0]),
        exposure_minutes=exposure_ms / MINUTE_MS,
        exposure_pct=_div(exposure_ms * 100.0, span_ms),
        span_days=span_days,
        first_timestamp=first_ts,
        last_timestamp=last_ts,
        max_consecutive_wins=max_w,
        max_consecutive_losses=max_l,
        long_count=len(longs),
        short_count=len(shorts),
        long_pnl=math.fsum(c.pnl.pnl_percentage for c in longs),
        short_pnl=math.fsum(c.pnl.pnl_percentage for c in shorts),
        long_win_rate=_win_rate([c.pnl.pnl_percentage for c in longs]),
        short_win_rate=_win_rate([c.pnl.pnl_percentage for c in shorts]),
        equity_curve=curve,
        **base,
    )


def group_closed(closed: Iterable[Closed]) -> dict[tuple[str, str], list[Closed]]:
    """Closed results grouped by ``(symbol, strategy_name)``, in first-seen order."""
    groups: dict[tuple[str, str], list[Closed]] = {}
    for c in closed:
        groups.setdefault((c.symbol, c.strategy_name), []).append(c)
    return groups


@attrs.frozen(kw_only=True)
class Aggregate:
    """Statistics per group (e.g. per symbol × strategy) and over every group together."""

    groups: dict[Any, Statistics]
    overall: Statistics


def aggregate(
    groups: Mapping[K, Sequence[Closed]],
    *,
    slippage_pct: float = 0.1,
    fee_pct: float = 0.1,
) -> Aggregate:
    """Statistics of each group plus ``overall`` over all their closes together.

    The overall equity curve compounds every trade in close-time order, as if one account took them
    all one after another.
    """
    per = {k: compute_statistics(v, slippage_pct=slippage_pct, fee_pct=fee_pct) for k, v in groups.items()}
    everything = [c for v in groups.values() for c in v]
    overall = compute_statistics(everything, slippage_pct=slippage_pct, fee_pct=fee_pct)
    return Aggregate(groups=per, overall=overall)
