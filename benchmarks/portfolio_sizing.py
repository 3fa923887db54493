"""Portfolio accounting cost: N symbols × M months as one lockstep portfolio with a wallet and sizing
(``risk:2``, shared funds) against the same symbols as separate vectorised ``Backtest.run`` calls with
the default sizing — measured side by side in one process, printed as a ratio (target ≤ 1.3×). The
lockstep portfolio with the default sizing is timed too, so the wallet's own share is visible.

    uv run python benchmarks/portfolio_sizing.py [--symbols 20] [--months 12]

Also times the portfolio view (hourly mark-to-market equity curve, statistics, heat table) built after
the run from the trades and hourly closes.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import btkit
from btkit.engine.accounts import backtest_portfolio
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--months", type=int, default=12)
    args = ap.parse_args()
    symbols = [f"{b}USDT" for b in BASES[: args.symbols]]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=30 * args.months)
    btkit.add_frame("bench", start, end)
    kw = {"strategy": "smacross", "exchange": "sim", "frame": "bench"}
    candles = len(symbols) * int((end - start).total_seconds() // 60)

    def timed(make: object) -> tuple[float, int]:
        t = time.perf_counter()
        n = sum(1 for r in make() if isinstance(r, Closed))  # type: ignore[operator]
        return time.perf_counter() - t, n

    btkit.set_wallet(balance=10_000.0, sizing="fixed")
    for s in symbols:  # warm imports and the sim's generator for every symbol (both sides read the same data)
        list(btkit.Backtest.run(s, strategy="smacross", exchange="sim", frame="bench"))
    base_s, base_n = timed(lambda: [r for s in symbols for r in btkit.Backtest.run(s, **kw)])
    lock_s, lock_n = timed(lambda: btkit.Backtest.run_portfolio(symbols, **kw))  # the lockstep loop alone
    btkit.set_wallet(balance=100_000.0, sizing="risk:2", max_percent=10)
    port_s, port_n = timed(lambda: btkit.Backtest.run_portfolio(symbols, **kw))
    t = time.perf_counter()
    view = backtest_portfolio(symbols, **kw)
    view_s = time.perf_counter() - t
    print(f"{len(symbols)} symbols × {args.months} months = {candles:,} one-minute candles\n")
    print(f"| {'run':<44} | wall (s) | trades | vs separate |")
    print(f"|{'-' * 46}|----------|--------|-------------|")
    print(f"| {'separate Backtest.run, default sizing':<44} | {base_s:8.2f} | {base_n:6d} | {1:10.2f}x |")
    lock = f"| {'run_portfolio, default sizing (lockstep)':<44} | {lock_s:8.2f} | {lock_n:6d} |"
    print(f"{lock} {lock_s / base_s:10.2f}x |")
    print(
        f"| {'run_portfolio, one wallet, risk:2':<44} | {port_s:8.2f} | {port_n:6d} | {port_s / base_s:10.2f}x |"
    )
    print(
        f"| {'portfolio view (curve, stats, heat)':<44} | {view_s:8.2f} | {'':6} | {view_s / base_s:10.2f}x |"
    )
    print(
        f"\naccounting on top of the lockstep loop: {port_s / lock_s:.2f}x (sizing changes which trades happen)"
    )
    print(f"\ncurve points: {len(view.curve.time):,}; final equity {view.stats.final_equity:,.2f}")


if __name__ == "__main__":
    main()
