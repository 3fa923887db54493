"""Intrabar ambiguity (docs/checks.md): trades whose closing candle reached both the stop and the target.

A 1-minute candle only tells its open, high, low and close — not whether the high or the low came first.
When the candle that closed a trade reached both the stop-loss and the take-profit level, the result of the
trade depends on an ordering the data cannot show. The engine decides such a candle pessimistically (the
stop is checked first). This module flags those trades and re-prices them under three orderings:

* pessimistic — the stop first (what the engine did);
* optimistic — the target first;
* adaptive — the extreme nearer the candle's open first (a long's target is its high, its stop its low).

and reports how many trades and how much pnl / Sharpe ratio hinge on it, as a range next to the headline.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import attrs

from btkit.lifecycle import pnl as pnl_math
from btkit.model import MINUTE_MS, Closed

__all__ = [
    "ORDERINGS",
    "AmbiguousTrade",
    "IntrabarReport",
    "analyse",
    "analyse_with_exchange",
    "markdown_lines",
    "report_section",
]

ORDERINGS = ("pessimistic", "optimistic", "adaptive")
Candle = tuple[float, float, float, float]  # open, high, low, close of the closing 1m candle


@attrs.frozen(kw_only=True)
class AmbiguousTrade:
    closed: Closed
    candle: Candle
    prices: dict[str, float]  # ordering → close price
    pnl: dict[str, float]  # ordering → pnl percent
    pnl_cost: dict[str, float]  # ordering → pnl in dollars


@attrs.frozen(kw_only=True)
class Figures:
    total_pnl: float
    total_pnl_cost: float
    sharpe: float | None


@attrs.frozen(kw_only=True)
class IntrabarReport:
    trades: int
    ambiguous: tuple[AmbiguousTrade, ...]
    headline: Figures
    orderings: dict[str, Figures]
    missing: int = 0  # trades whose closing candle the exchange did not give

    @property
    def pnl_range(self) -> tuple[float, float]:
        values = [f.total_pnl for f in self.orderings.values()]
        return min(values), max(values)


def _row_of(closed: Closed) -> Any:
    s = closed.signal  # a SignalView: the fields the pnl math reads
    return SimpleNamespace(
        entries=s.entries,
        partials=s.partials,
        position=s.position,
        multiplier=s.multiplier,
        price_open=s.original_price_open,
        cost=s.cost,
        scheduled_at=s.scheduled_at,
    )


def ordering_price(closed: Closed, candle: Candle, ordering: str) -> float:
    """The close price of a trade whose closing candle reached both levels, under ``ordering``."""
    s = closed.signal
    tp, sl = s.price_take_profit, s.price_stop_loss
    if ordering == "pessimistic":
        return sl
    if ordering == "optimistic":
        return tp
    o, h, lo, _c = candle
    high_first = abs(h - o) <= abs(o - lo)
    target_is_high = s.position == "long"
    return tp if high_first == target_is_high else sl


def both_reached(closed: Closed, candle: Candle) -> bool:
    s = closed.signal
    _o, h, lo, _c = candle
    if s.position == "long":
        return lo <= s.price_stop_loss and h >= s.price_take_profit
    return h >= s.price_stop_loss and lo <= s.price_take_profit


def _figures(closed: Sequence[Closed], slippage_pct: float, fee_pct: float) -> Figures:
    from btkit.stats import compute_statistics

    st = compute_statistics(list(closed), slippage_pct=slippage_pct, fee_pct=fee_pct)
    return Figures(total_pnl=st.total_pnl, total_pnl_cost=st.total_pnl_cost, sharpe=st.sharpe_ratio)


def analyse(
    closed: Sequence[Closed],
    closing_candle: Callable[[Closed], Candle | None],
    *,
    slippage_pct: float,
    fee_pct: float,
) -> IntrabarReport:
    """Flag and re-price the ambiguous trades; ``closing_candle(c)`` gives the 1m candle observed at the
    close (the one opening at ``close_timestamp − 1m``), or None when unknown."""
    ambiguous: list[AmbiguousTrade] = []
    missing = 0
    repriced: dict[str, list[Closed]] = {o: [] for o in ORDERINGS}
    for c in closed:
        candle = closing_candle(c)
        if candle is None:
            missing += 1
        if candle is None or not both_reached(c, candle):
            for o in ORDERINGS:
                repriced[o].append(c)
            continue
        row = _row_of(c)
        prices, pnls, costs = {}, {}, {}
        for o in ORDERINGS:
            price = ordering_price(c, candle, o)
            p = pnl_math.position_pnl(row, price, slippage_pct=slippage_pct, fee_pct=fee_pct)
            prices[o], pnls[o], costs[o] = price, p.pnl_percentage, p.pnl_cost
            reason = "take_profit" if price == c.signal.price_take_profit else "stop_loss"
            repriced[o].append(attrs.evolve(c, pnl=p, current_price=price, close_reason=reason))
        ambiguous.append(AmbiguousTrade(closed=c, candle=candle, prices=prices, pnl=pnls, pnl_cost=costs))
    return IntrabarReport(
        trades=len(closed),
        ambiguous=tuple(ambiguous),
        headline=_figures(closed, slippage_pct, fee_pct),
        orderings={o: _figures(repriced[o], slippage_pct, fee_pct) for o in ORDERINGS},
        missing=missing,
    )


async def _closing_candles(exchange: str, closed: Sequence[Closed]) -> dict[tuple[str, int], Candle]:
    from btkit.config import get_config
    from btkit.market import Market
    from btkit.plugins import collect_components, get_plugin_manager

    spec = collect_components(get_plugin_manager()).get("exchange", exchange)
    market = Market(spec, get_config(), backtest=True)
    out: dict[tuple[str, int], Candle] = {}
    for c in sorted(closed, key=lambda r: r.close_timestamp):
        start = c.close_timestamp - MINUTE_MS
        try:
            _ts, o, h, lo, cl, _v = await market.arrays(c.symbol, "1m", start, 1)
        except Exception:
            continue
        out[(c.symbol, c.close_timestamp)] = (float(o[0]), float(h[0]), float(lo[0]), float(cl[0]))
    close = spec.close
    if close is not None:
        res = close()
        if asyncio.iscoroutine(res):
            await res
    return out


def _run(coro_factory: Callable[[], Any]) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro_factory())
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from inside a running loop
        return pool.submit(lambda: asyncio.run(coro_factory())).result()


def analyse_with_exchange(
    closed: Sequence[Closed], exchange: str, *, slippage_pct: float, fee_pct: float
) -> IntrabarReport:
    """:func:`analyse` with the closing candles read from the registered ``exchange``."""
    candles = _run(lambda: _closing_candles(exchange, closed))
    return analyse(
        closed,
        lambda c: candles.get((c.symbol, c.close_timestamp)),
        slippage_pct=slippage_pct,
        fee_pct=fee_pct,
    )


def _fmt(v: float | None, digits: int = 2, suffix: str = "") -> str:
    return "N/A" if v is None or not math.isfinite(v) else f"{v:.{digits}f}{suffix}"


def markdown_lines(report: IntrabarReport, *, max_rows: int = 50) -> list[str]:
    """The "Intrabar ambiguity" section: the range next to the headline, then the trades."""
    n = len(report.ambiguous)
    lo, hi = report.pnl_range
    h = report.headline
    lines = [
        f"{n} of {report.trades} closed trade(s) closed on a candle that reached both the stop and the target; "
        "the engine took the stop first (pessimistic).",
        "",
        "| ordering | total pnl | pnl $ | sharpe |",
        "|---|---:|---:|---:|",
        f"| headline (engine) | {_fmt(h.total_pnl, 2, '%')} | {_fmt(h.total_pnl_cost)} | {_fmt(h.sharpe, 3)} |",
    ]
    for o in ORDERINGS:
        f = report.orderings[o]
        lines.append(
            f"| {o} | {_fmt(f.total_pnl, 2, '%')} | {_fmt(f.total_pnl_cost)} | {_fmt(f.sharpe, 3)} |"
        )
    lines += ["", f"Total pnl range over the orderings: {_fmt(lo, 2, '%')} … {_fmt(hi, 2, '%')}."]
    if report.missing:
        lines.append(
            f"{report.missing} trade(s) not checked: the exchange did not give their closing candle."
        )
    if n:
        from datetime import UTC, datetime

        lines += [
            "",
            "| closed (UTC) | position | open | high | low | close | stop | target | pnl pess. | pnl opt. | pnl adapt. |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for a in report.ambiguous[:max_rows]:
            c, s = a.closed, a.closed.signal
            when = datetime.fromtimestamp(c.close_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            o, hi_, lo_, cl = a.candle
            lines.append(
                f"| {when} | {s.position} | {o:.8g} | {hi_:.8g} | {lo_:.8g} | {cl:.8g} | {s.price_stop_loss:.8g} | "
                f"{s.price_take_profit:.8g} | {a.pnl['pessimistic']:.3f}% | {a.pnl['optimistic']:.3f}% | "
                f"{a.pnl['adaptive']:.3f}% |"
            )
        if n > max_rows:
            lines.append(f"… and {n - max_rows} more.")
    return lines


def report_section(stats: Any, *, exchange: str, mode: str) -> dict[str, str]:
    """The backtest report's "Intrabar ambiguity" section (nothing for live reports, no trades, or an
    exchange that is not registered in this process)."""
    if mode != "backtest" or not stats.closed:
        return {}
    try:
        report = analyse_with_exchange(
            stats.closed, exchange, slippage_pct=stats.slippage_pct, fee_pct=stats.fee_pct
        )
    except Exception:  # the report must not fail because candles are unavailable here
        return {}
    return {"Intrabar ambiguity": "\n".join(markdown_lines(report))}
