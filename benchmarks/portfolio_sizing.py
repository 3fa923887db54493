"""Portfolio accounting cost: N symbols × M months as one lockstep portfolio with one wallet and sizing
(``risk:2``, shared funds) against the same symbols as separate vectorised ``Backtest.run`` calls —
measured side by side in one process, printed as ratios (target ≤ 1.3×).

    uv run python benchmarks/portfolio_sizing.py [--symbols 20] [--months 12] [--repeat 1]

Times are CPU seconds of this process (``time.process_time``; they hold on a busy machine, wall time does
not), best of ``--repeat``, the sides interleaved. Rows: the separate runs with the default sizing and with
the same sizing (each symbol its own wallet); the lockstep loop with the default sizing; the portfolio
with one wallet whose funds bind (refused signals are asked again at the next minute, as in every
backtest, so it makes more decisions — the ``decisions`` column counts ``get_signal`` calls); the same
sizing on a wallet that never binds. Also times the portfolio view (hourly mark-to-market equity curve,
statistics, heat table) built after the run from the trades and hourly closes.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import btkit
from btkit.accounting.wallet import WALLET, reset_wallet
from btkit.engine.accounts import backtest_portfolio
from btkit.engine.backtest import _rejections
from btkit.engine.instance import GET_SIGNAL_CALLS
from btkit.model import Closed

BASES = [
    "BTC",
    "ETH",
    "SOL",
    "BNB",
    "XRP",
    "ADA",
    "DOGE",
    "AVAX",
    "DOT",
    "LINK",
    "MATIC",
    "LTC",
    "TRX",
    "ATOM",
    "UNI",
    "ETC",
    "XLM",
    "NEAR",
    "FIL",
    "APT",
    "ARB",
    "OP",
    "INJ",
    "SUI",
    "SEI",
    "TIA",
    "AAVE",
    "MKR",
    "RUNE",
    "ALGO",
]


Side = tuple[str, Callable[[], Any], dict[str, Any]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--months", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=1, help="run every side N times, keep the fastest")
    args = ap.parse_args()
    symbols = [f"{b}USDT" for b in BASES[: args.symbols]]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=30 * args.months)
    btkit.add_frame("bench", start, end)
    kw = {"strategy": "smacross", "exchange": "sim", "frame": "bench"}
    candles = len(symbols) * int((end - start).total_seconds() // 60)

    def separate() -> list[Any]:
        return [r for s in symbols for r in btkit.Backtest.run(s, **kw)]

    def portfolio() -> Any:
        return btkit.Backtest.run_portfolio(symbols, **kw)

    default = {"balance": 10_000.0, "sizing": "fixed"}
    binding = {"balance": 100_000.0, "sizing": "risk:2", "max_percent": 10}
    loose = {"balance": 100_000_000.0, "sizing": "risk:2", "max_percent": 10, "max_size": 1_000_000.0}
    sides: list[Side] = [
        ("separate Backtest.run, default sizing", separate, default),
        ("separate Backtest.run, risk:2 (own wallets)", separate, binding),
        ("run_portfolio, default sizing (lockstep)", portfolio, default),
        ("run_portfolio, one wallet, risk:2", portfolio, binding),
        ("run_portfolio, risk:2, wallet never binds", portfolio, loose),
    ]
    btkit.set_wallet(**default)
    for s in symbols:  # warm imports and the sim's generator for every symbol (both sides read the same data)
        list(btkit.Backtest.run(s, **kw))
    best: dict[str, tuple[float, float, int, int, int]] = {}
    view_s = 0.0
    view = None
    for _ in range(args.repeat):
        for name, make, wallet in sides:
            reset_wallet()
            btkit.set_wallet(**wallet)
            GET_SIGNAL_CALLS.clear()
            cpu, wall = time.process_time(), time.perf_counter()
            n = sum(1 for r in make() if isinstance(r, Closed))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            refused = {
                id(r)
                for s in symbols
                for r in _rejections.get((s, *kw.values()), [])  # type: ignore[arg-type]
                if r.risk_name == WALLET
            }
            row = (cpu, wall, n, GET_SIGNAL_CALLS["smacross"], len(refused))
            if name not in best or cpu < best[name][0]:
                best[name] = row
            if wallet is binding and make is portfolio:
                t = time.process_time()
                view = backtest_portfolio(symbols, **kw)
                view_s = time.process_time() - t
    base = best[sides[0][0]][0]
    same = best[sides[1][0]][0]
    print(f"{len(symbols)} symbols × {args.months} months = {candles:,} one-minute candles")
    print(f"CPU seconds, best of {args.repeat}\n")
    print(
        f"| {'run':<44} | CPU (s) | wall (s) | trades | decisions | refused | vs separate | vs same sizing |"
    )
    print(f"|{'-' * 46}|---------|----------|--------|-----------|---------|-------------|----------------|")
    for name, _make, _wallet in sides:
        cpu, wall, n, decisions, refused = best[name]
        print(
            f"| {name:<44} | {cpu:7.2f} | {wall:8.2f} | {n:6d} | {decisions:9,d} | {refused:7,d} "
            f"| {cpu / base:10.2f}x | {cpu / same:13.2f}x |"
        )
    print(f"| {'portfolio view (curve, stats, heat)':<44} | {view_s:7.2f} | {'':8} | {'':6} | {'':9} | {'':7} "
          f"| {view_s / base:10.2f}x | {'':14} |")  # fmt: skip
    lock = best[sides[2][0]][0]
    port = best[sides[3][0]]
    print(
        f"\naccounting on top of the lockstep loop: {port[0] / lock:.2f}x; the binding wallet asks "
        f"{port[3] / best[sides[0][0]][3]:.2f}x the decisions of the separate runs"
    )
    if view is not None:
        print(f"curve points: {len(view.curve.time):,}; final equity {view.stats.final_equity:,.2f}")


if __name__ == "__main__":
    main()
