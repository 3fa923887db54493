"""Portfolio statistics of a run in money, from its mark-to-market equity curve, and the heat table.

Daily figures use the equity at each 00:00 UTC inside the run (the curve's last value at or before it):
daily returns ``r_d = E_d / E_{d−1} − 1``; volatility ``std(r)·√365``; Sharpe ``mean(r)/std(r)·√365``;
Sortino ``mean(r)/√mean(min(r,0)²)·√365``; CAGR ``(E_end/E_start)^(365/days) − 1``; Calmar
``CAGR / max drawdown %``. Drawdowns are measured on the marked curve (money and % of the running peak).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np

from btkit.accounting.equity import DAY_MS, EquityCurve, Holding
from btkit.model import Closed

DAYS_PER_YEAR = 365.0
MIN_DAYS_FOR_ANNUAL = 14.0
"""Days of curve needed before CAGR, volatility, Sharpe, Sortino and Calmar are reported."""


def _f(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


@attrs.frozen(kw_only=True)
class PortfolioStats:
    """Money figures of one run (``None`` where undefined)."""

    currency: str
    starting_balance: float
    final_equity: float
    net_profit: float
    total_return_pct: float
    fees: float
    trades: int
    win_rate: float | None
    max_drawdown: float
    max_drawdown_pct: float
    cagr_pct: float | None
    volatility_pct: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None
    exposure_pct: float | None
    max_concurrent: int
    refused: int = 0
    days: float = 0.0


@attrs.frozen(kw_only=True)
class HeatRow:
    """One symbol of the heat table (backtest-kit's Heat report)."""

    symbol: str
    trades: int
    pnl: float
    win_rate: float | None
    sharpe: float | None
    max_drawdown: float
    max_drawdown_pct: float


def daily_equity(curve: EquityCurve) -> np.ndarray:
    """Equity at the start, at every 00:00 UTC inside the curve, and at the end."""
    t, e = curve.time, curve.equity
    if not len(t):
        return np.asarray([curve.balance])
    days = np.arange((int(t[0]) // DAY_MS + 1) * DAY_MS, int(t[-1]), DAY_MS, dtype=np.int64)
    idx = np.searchsorted(t, days, side="right") - 1
    return np.concatenate([[e[0]], e[idx], [e[-1]]])


def drawdown(equity: np.ndarray) -> tuple[float, float]:
    """(max drawdown in money, in % of the running peak)."""
    if not len(equity):
        return 0.0, 0.0
    peak = np.maximum.accumulate(equity)
    dd = peak - equity
    pct = np.where(peak > 0, dd / np.where(peak > 0, peak, 1.0) * 100.0, 0.0)
    return float(dd.max()), float(pct.max())


def _union(intervals: Sequence[tuple[int, int]]) -> int:
    total, cur_s, cur_e = 0, None, 0
    for s, e in sorted(intervals):
        if cur_s is None or s > cur_e:
            if cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + (cur_e - cur_s if cur_s is not None else 0)


def max_concurrent(holdings: Sequence[Holding], end: int) -> int:
    """Most positions held at one instant (a close at t frees its slot before an open at t)."""
    events = sorted(
        [(h.opened, 1) for h in holdings]
        + [(h.closed if h.closed is not None else end + 1, -1) for h in holdings],
        key=lambda x: (x[0], x[1]),
    )
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def portfolio_stats(
    curve: EquityCurve, holdings: Sequence[Holding], *, currency: str, fees: float = 0.0, refused: int = 0
) -> PortfolioStats:
    e0 = curve.balance
    final = float(curve.equity[-1]) if len(curve.equity) else e0
    span_ms = int(curve.time[-1] - curve.time[0]) if len(curve.time) else 0
    days = span_ms / DAY_MS
    daily = daily_equity(curve)
    rets = daily[1:] / daily[:-1] - 1.0 if len(daily) > 1 and np.all(daily[:-1] > 0) else np.asarray([])
    cagr = vol = sharpe = sortino = calmar = None
    dd_money, dd_pct = drawdown(curve.equity)
    if days >= MIN_DAYS_FOR_ANNUAL and len(rets) >= 2:
        cagr = _f(((final / e0) ** (DAYS_PER_YEAR / days) - 1.0) * 100.0) if final > 0 else -100.0
        sd = float(np.std(rets, ddof=1))
        vol = _f(sd * math.sqrt(DAYS_PER_YEAR) * 100.0)
        sharpe = _f(float(np.mean(rets)) / sd * math.sqrt(DAYS_PER_YEAR)) if sd > 0 else None
        down = math.sqrt(float(np.mean(np.minimum(rets, 0.0) ** 2)))
        sortino = _f(float(np.mean(rets)) / down * math.sqrt(DAYS_PER_YEAR)) if down > 0 else None
        calmar = _f(cagr / dd_pct) if cagr is not None and dd_pct > 0 else None
    done = [h for h in holdings if h.closed is not None]
    wins = sum(1 for h in done if h.net_pnl > 0)
    losses = sum(1 for h in done if h.net_pnl < 0)
    end = int(curve.time[-1]) if len(curve.time) else 0
    exposure = _union([(h.opened, h.closed if h.closed is not None else end) for h in holdings])
    return PortfolioStats(
        currency=currency,
        starting_balance=e0,
        final_equity=final,
        net_profit=final - e0,
        total_return_pct=max(-100.0, (final / e0 - 1.0) * 100.0),
        fees=fees,
        trades=len(done),
        win_rate=wins * 100.0 / (wins + losses) if wins + losses else None,
        max_drawdown=dd_money,
        max_drawdown_pct=min(100.0, dd_pct),
        cagr_pct=cagr,
        volatility_pct=vol,
        sharpe=sharpe,
        sortino=sortino,
        calmar=calmar,
        exposure_pct=exposure * 100.0 / span_ms if span_ms else None,
        max_concurrent=max_concurrent(holdings, end),
        refused=refused,
        days=days,
    )


def heat_rows(closed: Sequence[Closed], *, balance: float) -> list[HeatRow]:
    """Per symbol: trades, pnl (money), win rate, per-trade Sharpe (mean/std of pnl %, ≥ 2 trades) and
    the max drawdown of the symbol's realised pnl in money and in % of ``balance`` + its running peak."""
    by: dict[str, list[Closed]] = {}
    for c in sorted(closed, key=lambda c: c.close_timestamp):
        by.setdefault(c.symbol, []).append(c)
    rows = []
    for symbol, cs in by.items():
        money = np.asarray([c.pnl.pnl_cost for c in cs])
        pct = np.asarray([c.pnl.pnl_percentage for c in cs])
        wins, losses = int((pct > 0).sum()), int((pct < 0).sum())
        sd = float(np.std(pct, ddof=1)) if len(pct) >= 2 else 0.0
        dd_money, dd_pct = drawdown(balance + np.concatenate([[0.0], np.cumsum(money)]))
        rows.append(
            HeatRow(
                symbol=symbol,
                trades=len(cs),
                pnl=math.fsum(money.tolist()),
                win_rate=wins * 100.0 / (wins + losses) if wins + losses else None,
                sharpe=_f(float(pct.mean()) / sd) if sd > 0 else None,
                max_drawdown=dd_money,
                max_drawdown_pct=dd_pct,
            )
        )
    return sorted(rows, key=lambda r: r.pnl, reverse=True)
