"""The portfolio view of a run: curve + statistics + per-symbol rows, as data, markdown and terminal text.

``portfolio_view`` gathers everything; ``markdown_sections`` gives the report's sections (issue 15's HTML
report uses the same :class:`PortfolioView` data); ``terminal_lines`` is what ``btkit backtest`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs
import numpy as np

from btkit.accounting.equity import EquityCurve, Holding, Prices, equity_curve, positions_of
from btkit.accounting.portfolio import HeatRow, PortfolioStats, heat_rows, portfolio_stats
from btkit.accounting.wallet import fee_of
from btkit.model import Closed, SignalRow


@attrs.frozen(kw_only=True)
class SymbolRow:
    symbol: str
    trades: int
    win_rate: float | None
    pnl: float
    fees: float


@attrs.frozen(kw_only=True)
class PortfolioView:
    stats: PortfolioStats
    curve: EquityCurve
    symbols: tuple[SymbolRow, ...]
    total: SymbolRow
    heat: tuple[HeatRow, ...]
    holdings: tuple[Holding, ...]


def _row(symbol: str, cs: Sequence[Closed], fees: float) -> SymbolRow:
    wins = sum(1 for c in cs if c.pnl.pnl_percentage > 0)
    losses = sum(1 for c in cs if c.pnl.pnl_percentage < 0)
    return SymbolRow(
        symbol=symbol,
        trades=len(cs),
        win_rate=wins * 100.0 / (wins + losses) if wins + losses else None,
        pnl=math.fsum(c.pnl.pnl_cost for c in cs),
        fees=fees,
    )


def portfolio_view(
    closed: Sequence[Closed],
    prices: Mapping[str, Prices],
    *,
    balance: float,
    currency: str,
    start: int,
    end: int,
    slippage_pct: float,
    fee_pct: float,
    symbols: Sequence[str] = (),
    open_rows: Sequence[SignalRow] = (),
    refused: int = 0,
) -> PortfolioView:
    holdings = positions_of(closed, open_rows)
    curve = equity_curve(
        holdings, prices, balance=balance, start=start, end=end, slippage_pct=slippage_pct, fee_pct=fee_pct
    )
    fees_of = {id(c): fee_of(c, slippage_pct=slippage_pct, fee_pct=fee_pct)[1] for c in closed}
    order = list(dict.fromkeys([*symbols, *(c.symbol for c in closed)]))
    rows = tuple(
        _row(
            s,
            [c for c in closed if c.symbol == s],
            math.fsum(fees_of[id(c)] for c in closed if c.symbol == s),
        )
        for s in order
    )
    total_fees = math.fsum(fees_of.values())
    stats = portfolio_stats(curve, holdings, currency=currency, fees=total_fees, refused=refused)
    return PortfolioView(
        stats=stats,
        curve=curve,
        symbols=rows,
        total=_row("total", closed, total_fees),
        heat=tuple(heat_rows(closed, balance=balance)),
        holdings=tuple(holdings),
    )


# ---------------------------------------------------------------- formatting
def money(x: float | None, cur: str = "") -> str:
    if x is None:
        return "N/A"
    return f"{x:,.2f}" + (f" {cur}" if cur else "")


def pct(x: float | None, signed: bool = True) -> str:
    if x is None:
        return "N/A"
    return f"{x:+.2f}%" if signed else f"{x:.2f}%"


def num(x: float | None) -> str:
    return "N/A" if x is None else f"{x:.3f}"


def summary_pairs(s: PortfolioStats) -> list[tuple[str, str]]:
    """The portfolio figures, compounded return first."""
    c = s.currency
    return [
        ("Compounded return", pct(s.total_return_pct)),
        ("Starting balance", money(s.starting_balance, c)),
        ("Final equity", money(s.final_equity, c)),
        ("Net profit", money(s.net_profit, c)),
        ("Fees paid", money(s.fees, c)),
        ("CAGR", pct(s.cagr_pct)),
        ("Max drawdown", f"{money(s.max_drawdown, c)} ({pct(s.max_drawdown_pct, signed=False)})"),
        ("Volatility (annualised, daily)", pct(s.volatility_pct, signed=False)),
        ("Sharpe (daily equity)", num(s.sharpe)),
        ("Sortino (daily equity)", num(s.sortino)),
        ("Calmar", num(s.calmar)),
        ("Exposure", pct(s.exposure_pct, signed=False)),
        ("Max concurrent positions", str(s.max_concurrent)),
        ("Trades", str(s.trades)),
        ("Signals refused by the wallet", str(s.refused)),
    ]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    marks = {"l": "---", "r": "---:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks[a] for a in align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def printable(name: str) -> str:
    """A symbol as one printable cell: a newline or control character is shown escaped, never raw."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def _symbol_cells(r: SymbolRow, cur: str) -> list[str]:
    return [printable(r.symbol), str(r.trades), pct(r.win_rate, signed=False), money(r.pnl, cur), money(r.fees, cur)]


def curve_points(curve: EquityCurve, max_points: int = 60) -> list[tuple[int, float]]:
    """At most ``max_points`` (time, equity) points spread over the curve (first and last kept)."""
    n = len(curve.time)
    spread = np.unique(np.linspace(0, n - 1, max_points).round().astype(int))
    idx = np.arange(n) if n <= max_points else spread
    return [(int(curve.time[i]), float(curve.equity[i])) for i in idx]


def markdown_sections(view: PortfolioView, *, equity_image: str | None = None) -> dict[str, str]:
    """``{"Portfolio": …, "Per symbol (money)": …, "Heat": …, "Portfolio equity curve": …}``."""
    from datetime import UTC, datetime

    s = view.stats
    cur = s.currency
    portfolio = _md_table(("Metric", "Value"), [list(p) for p in summary_pairs(s)], "lr")
    per = _md_table(
        ("Symbol", "Trades", "Win rate", f"PnL ({cur})", f"Fees ({cur})"),
        [
            *(_symbol_cells(r, "") for r in view.symbols),
            [f"**{c}**" for c in _symbol_cells(view.total, "")],
        ],
        "lrrrr",
    )
    heat = _md_table(
        ("Symbol", "Trades", f"PnL ({cur})", "Win rate", "Sharpe (per trade)", f"Max DD ({cur})", "Max DD %"),
        [
            [
                h.symbol,
                str(h.trades),
                money(h.pnl),
                pct(h.win_rate, signed=False),
                num(h.sharpe),
                money(h.max_drawdown),
                pct(h.max_drawdown_pct, signed=False),
            ]
            for h in view.heat
        ]
        or [["—", "0", "0.00", "N/A", "N/A", "0.00", "0.00%"]],
        "lrrrrrr",
    )
    points = _md_table(
        ("Time (UTC)", f"Equity ({cur})"),
        [
            [datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%d %H:%M"), money(e)]
            for t, e in curve_points(view.curve)
        ],
        "lr",
    )
    note = (
        "Marked to market hourly at the close (open positions valued with fees and slippage as if closed "
        f"then), from {money(s.starting_balance, cur)}; {len(view.curve.time)} points."
    )
    image = f"![Portfolio equity]({equity_image})\n\n" if equity_image else ""
    return {
        "Portfolio": portfolio,
        "Per symbol (money)": per,
        "Heat (per symbol)": heat,
        "Portfolio equity curve": f"{image}{note}\n\n{points}",
    }


def terminal_lines(view: PortfolioView) -> list[str]:
    """Per-symbol rows and a totals row in money, then the portfolio figures."""
    cur = view.stats.currency
    header = ["symbol", "trades", "win rate", f"pnl {cur}", f"fees {cur}"]
    table = [header, *(_symbol_cells(r, "") for r in view.symbols), _symbol_cells(view.total, "")]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    out = [line(table[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in table[1:-1]]
    out += ["  ".join("-" * w for w in widths), line(table[-1]), ""]
    pairs = summary_pairs(view.stats)
    w = max(len(k) for k, _ in pairs)
    out += [f"{k.ljust(w)}  {v}" for k, v in pairs]
    return out


def curve_csv(curve: EquityCurve) -> str:
    """The whole curve as CSV: time (ms and ISO UTC), equity, realised, unrealised, open positions."""
    from datetime import UTC, datetime

    lines = ["time_ms,time_utc,equity,realised,unrealised,open_positions"]
    for i in range(len(curve.time)):
        t = int(curve.time[i])
        iso = datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(
            f"{t},{iso},{curve.equity[i]:.6f},{curve.realised[i]:.6f},{curve.unrealised[i]:.6f},"
            f"{int(curve.open_positions[i])}"
        )
    return "\n".join(lines) + "\n"
