"""Portfolio backtest cost: several symbols in lockstep (``Backtest.run_portfolio``, shared risk) against
the same symbols as separate vectorised ``Backtest.run`` calls, measured side by side in one process.

    uv run python benchmarks/portfolio.py [--months 2] [--symbols BTCUSDT ETHUSDT SOLUSDT]

Prints wall time, candles per second and trades for: separate runs (the baseline), the portfolio with no
binding limit (which must give the same trades), and the portfolio under a shared "max 1 position".
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import btkit
from btkit.model import Closed
from btkit.risk import max_positions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--months", type=int, default=2)
    ap.add_argument("--symbols", nargs="+", default=["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    args = ap.parse_args()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=30 * args.months)
    btkit.add_frame("bench", start, end)
    btkit.add_risk("one", [max_positions(1)])
    btkit.add_risk("many", [max_positions(len(args.symbols))])
    candles = len(args.symbols) * int((end - start).total_seconds() // 60)

    def timed(make: object) -> tuple[float, list[Closed]]:
        t = time.perf_counter()
        closed = [r for r in make() if isinstance(r, Closed)]  # type: ignore[operator]
        return time.perf_counter() - t, closed

    kw = {"strategy": "smacross", "exchange": "sim", "frame": "bench"}
    timed(lambda: btkit.Backtest.run(args.symbols[0], **kw))  # warm the candle cache and imports

    def portfolio(risk: str) -> object:
        return btkit.Backtest.run_portfolio(args.symbols, risks=(risk,), **kw)

    rows = [
        ("separate Backtest.run (baseline)", timed(lambda: [r for s in args.symbols for r in btkit.Backtest.run(s, **kw)])),
        ("run_portfolio, limit not binding", timed(lambda: portfolio("many"))),
        ("run_portfolio, shared max 1", timed(lambda: portfolio("one"))),
    ]  # fmt: skip
    base_s, base_closed = rows[0][1]
    same = sorted((c.symbol, c.close_timestamp) for c in rows[1][1][1]) == sorted(
        (c.symbol, c.close_timestamp) for c in base_closed
    )
    print(f"{len(args.symbols)} symbols × {args.months} months = {candles:,} one-minute candles\n")
    print(f"| {'run':<34} | wall (s) | candles/s | trades | vs baseline |")
    print(f"|{'-' * 36}|----------|-----------|--------|-------------|")
    for name, (secs, closed) in rows:
        print(
            f"| {name:<34} | {secs:8.2f} | {candles / secs:9,.0f} | {len(closed):6d} | {secs / base_s:10.2f}x |"
        )
    print(f"\nnon-binding portfolio gives the baseline's trades: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
