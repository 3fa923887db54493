"""One mark-to-market equity curve in money for a whole run, computed after it with numpy.

Inputs are the run's closed trades (any symbols and strategies), the open positions (live) and the
symbols' prices sampled at least hourly. At every sample time ``t``:

    equity(t) = balance + Σ pnl of trades closed at or before t            (realised, fees paid)
                        + Σ pnl of positions open at t, marked at the last price known at t

A position is marked with the engine's own pnl formula (``btkit.lifecycle.pnl.position_pnl``: slippage,
both fees, DCA entries and partial closes made by then, leverage) — the pnl it would book if closed at
that price. Between its entries and partials a position's pnl is linear in the price, so each piece is
evaluated for all its samples at once. When the last trade has closed, equity is exactly
``balance + Σ recorded pnl``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from btkit.lifecycle.pnl import position_pnl
from btkit.model import Closed, SignalRow

HOUR_MS = 3_600_000
DAY_MS = 86_400_000


@attrs.frozen(kw_only=True)
class Prices:
    """Prices of one symbol: ``close[i]`` is the last price known at ``time[i]`` (ms, ascending)."""

    time: np.ndarray
    close: np.ndarray

    def at(self, times: np.ndarray) -> np.ndarray:
        """The last price known at each of ``times`` (NaN before the first sample)."""
        idx = np.searchsorted(self.time, times, side="right") - 1
        out = (
            self.close[np.clip(idx, 0, max(len(self.close) - 1, 0))].astype(np.float64)
            if len(self.close)
            else (np.full(len(times), np.nan))
        )
        return np.where(idx >= 0, out, np.nan)


@attrs.frozen(kw_only=True)
class EquityCurve:
    """``equity[i]`` (money) at ``time[i]``; ``open_positions[i]`` held then; ``unrealised[i]`` their marks."""

    time: np.ndarray
    equity: np.ndarray
    realised: np.ndarray
    unrealised: np.ndarray
    open_positions: np.ndarray
    balance: float


@attrs.frozen(kw_only=True)
class Holding:
    """A position to mark: its row as closed (or as it is now), when it opened and when it closed."""

    row: SignalRow
    symbol: str
    opened: int
    closed: int | None  # None: still open
    net_pnl: float = 0.0  # the recorded pnl (money) when closed


def positions_of(closed: Sequence[Closed], open_rows: Sequence[SignalRow] = ()) -> list[Holding]:
    from btkit.stats import opened_at, signal_row_of

    out = [
        Holding(
            row=signal_row_of(c),
            symbol=c.symbol,
            opened=opened_at(c),
            closed=c.close_timestamp,
            net_pnl=c.pnl.pnl_cost,
        )
        for c in closed
        if c.signal is not None
    ]
    for row in open_rows:
        if row.pending_at is not None:
            out.append(Holding(row=row, symbol=row.symbol, opened=row.pending_at, closed=None))
    return out


def sample_times(start: int, end: int, positions: Sequence[Holding], step: int = HOUR_MS) -> np.ndarray:
    """The hourly grid from ``start`` to ``end`` plus every open and close instant."""
    first = (start // step) * step
    grid = np.arange(first, end + 1, step, dtype=np.int64)
    events = [p.opened for p in positions] + [p.closed for p in positions if p.closed is not None]
    times = np.concatenate([grid, np.asarray(events, dtype=np.int64)])
    times = times[(times >= start) & (times <= end)] if len(times) else times
    return np.unique(np.concatenate([times, np.asarray([start, end], dtype=np.int64)]))


def _row_at(row: SignalRow, t: int) -> SignalRow:
    entries = tuple(e for e in row.entries if e.timestamp <= t)
    partials = tuple(p for p in row.partials if p.timestamp <= t)
    if entries == row.entries and partials == row.partials:
        return row
    return attrs.evolve(row, entries=entries or row.entries[:1], partials=partials)


def mark(
    pos: Holding, times: np.ndarray, prices: np.ndarray, *, slippage_pct: float, fee_pct: float
) -> np.ndarray:
    """Pnl (money) of ``pos`` closed at ``prices[i]`` at ``times[i]`` (times within its life, ascending)."""
    out = np.empty(len(times), dtype=np.float64)
    if not len(times):
        return out
    cuts = sorted({e.timestamp for e in pos.row.entries[1:]} | {p.timestamp for p in pos.row.partials})
    bounds = np.searchsorted(times, np.asarray(cuts, dtype=np.int64), side="left") if cuts else []
    edges = [0, *[int(b) for b in bounds], len(times)]
    for lo, hi in itertools.pairwise(edges):
        if hi <= lo:
            continue
        row = _row_at(pos.row, int(times[lo]))
        p1 = row.entries[0].price if row.entries else row.price_open
        p2 = p1 * 2.0
        y1 = position_pnl(row, p1, slippage_pct=slippage_pct, fee_pct=fee_pct).pnl_cost
        y2 = position_pnl(row, p2, slippage_pct=slippage_pct, fee_pct=fee_pct).pnl_cost
        slope = (y2 - y1) / (p2 - p1)
        out[lo:hi] = y1 + slope * (prices[lo:hi] - p1)
    return out


def equity_curve(
    positions: Sequence[Holding],
    prices: Mapping[str, Prices],
    *,
    balance: float,
    start: int,
    end: int,
    slippage_pct: float,
    fee_pct: float,
    step: int = HOUR_MS,
) -> EquityCurve:
    """The portfolio equity curve (see the module docstring) sampled on :func:`sample_times`."""
    times = sample_times(start, end, positions, step)
    n = len(times)
    realised = np.zeros(n)
    unrealised = np.zeros(n)
    held = np.zeros(n, dtype=np.int64)
    done = sorted((p for p in positions if p.closed is not None), key=lambda p: p.closed or 0)
    if done:
        close_t = np.asarray([p.closed for p in done], dtype=np.int64)
        cum = np.cumsum([p.net_pnl for p in done])
        k = np.searchsorted(close_t, times, side="right")
        realised = np.where(k > 0, cum[np.maximum(k - 1, 0)], 0.0)
        # the last point equals balance + Σ pnl exactly (fsum, not a running float sum)
        if k[-1] == len(done):
            realised[k == len(done)] = math.fsum(p.net_pnl for p in done)
    for pos in positions:
        lo = int(np.searchsorted(times, pos.opened, side="left"))
        hi = n if pos.closed is None else int(np.searchsorted(times, pos.closed, side="left"))
        if hi <= lo:
            continue
        t = times[lo:hi]
        series = prices.get(pos.symbol)
        p = series.at(t) if series is not None else np.full(len(t), np.nan)
        if series is not None:  # a sample older than the entry is no price of the position: use the entry
            known = np.searchsorted(series.time, t, side="right") - 1
            seen = np.where(known >= 0, series.time[np.clip(known, 0, len(series.time) - 1)], -1)
            p = np.where(seen < pos.opened, np.nan, p)
        entry = pos.row.entries[0].price if pos.row.entries else pos.row.price_open
        p = np.where(np.isnan(p), entry, p)
        unrealised[lo:hi] += mark(pos, t, p, slippage_pct=slippage_pct, fee_pct=fee_pct)
        held[lo:hi] += 1
    return EquityCurve(
        time=times,
        equity=balance + realised + unrealised,
        realised=realised,
        unrealised=unrealised,
        open_positions=held,
        balance=balance,
    )


async def fetch_prices(
    exchange: str, symbols: Sequence[str], start: int, end: int, step: int = HOUR_MS
) -> dict[str, Prices]:
    """Hourly closes of ``symbols`` from ``exchange`` over ``[start, end]`` (1h candles, or 1m ones
    sampled hourly when the exchange has no 1h): ``close`` at ``time`` = candle open + its length."""
    from btkit.config import get_config
    from btkit.market import Market
    from btkit.plugins import collect_components, get_plugin_manager

    spec = collect_components(get_plugin_manager()).get("exchange", exchange)
    market = Market(spec, get_config(), backtest=True)
    out: dict[str, Prices] = {}
    first = (start // step) * step - step
    count = max(1, (end - first) // step + 1)
    for symbol in symbols:
        try:
            ts, _o, _h, _l, c, _v = await market.arrays(symbol, "1h", first, count)
            out[symbol] = Prices(time=np.asarray(ts, dtype=np.int64) + step, close=np.asarray(c, dtype=float))
            continue
        except Exception:  # fall back to 1m candles
            pass
        try:
            ts, _o, _h, _l, c, _v = await market.block(symbol, first, (end - first) // 60_000 + 1)
        except Exception:  # no prices: positions are marked at their entry
            continue
        t = np.asarray(ts, dtype=np.int64) + 60_000
        keep = (t % step == 0) | (np.arange(len(t)) == len(t) - 1)
        out[symbol] = Prices(time=t[keep], close=np.asarray(c, dtype=float)[keep])
    try:
        close = spec.close
        if close is not None:
            res = close()
            if hasattr(res, "__await__"):
                await res
    except Exception:
        pass
    return out
