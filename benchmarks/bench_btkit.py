"""The smacross strategy over one year of 1-minute candles through the FULL btkit path.

- the strategy is the core's default plugin ``btkit.defaults.smacross`` (registered like any plugin);
- the exchange is ``btkit.store.store_exchange`` over the generated candle store (``generate.py``);
- ``btkit.add_frame`` + ``btkit.Backtest.run(symbol, strategy=..., exchange=..., frame=...)``.

Prints wall time, candles/s, peak RSS, trades and total pnl; writes the trades to out/trades-btkit.json.
``--profile`` runs under cProfile and prints the top 25 functions by cumulative time.
Usage: ``uv run python benchmarks/bench_btkit.py [--profile]``.
"""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
from typing import Any  # noqa: E402

from _common import (  # noqa: E402
    EXCHANGE,
    FRAME_END,
    FRAME_NAME,
    FRAME_START,
    STORE_ROOT,
    SYMBOL,
    emit,
    frame_minutes,
    peak_rss_mb,
    require_data,
    write_trades,
)


def run() -> dict[str, Any]:
    import btkit
    from btkit.model import Closed
    from btkit.plugins import collect_components, get_plugin_manager
    from btkit.store import store_exchange

    strategy = collect_components(get_plugin_manager()).get("strategy", "smacross")
    t_import = time.perf_counter()  # imports and plugin discovery (entry points loaded once per process)
    if strategy.dist != "btkit":
        raise SystemExit(f"smacross came from {strategy.dist!r}, not the core's default plugin")
    spec = store_exchange(EXCHANGE, STORE_ROOT)
    btkit.add_exchange(EXCHANGE, spec.get_candles)
    btkit.add_frame(FRAME_NAME, FRAME_START, FRAME_END, interval="1m")

    trades: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for result in btkit.Backtest.run(SYMBOL, strategy="smacross", exchange=EXCHANGE, frame=FRAME_NAME):
        if isinstance(result, Closed):
            trades.append(
                {
                    "pending_at": result.signal.pending_at,
                    "close_timestamp": result.close_timestamp,
                    "reason": result.close_reason,
                    "price_open": result.pnl.price_open,
                    "price_close": result.pnl.price_close,
                    "pnl_percentage": result.pnl.pnl_percentage,
                    "pnl_cost": result.pnl.pnl_cost,
                }
            )
    run_s = time.perf_counter() - t0
    write_trades("btkit", trades)
    return {
        "impl": "btkit",
        "startup_s": t_import - T_PROCESS,
        "run_s": run_s,
        "wall_in_process_s": time.perf_counter() - T_PROCESS,
        "frame_candles": frame_minutes(),
        "candles_per_s": frame_minutes() / run_s,
        "peak_rss_mb": peak_rss_mb(),
        "trades": len(trades),
        "total_pnl_percent": sum(t["pnl_percentage"] for t in trades),
        "total_pnl_cost": sum(t["pnl_cost"] for t in trades),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="store_true", help="cProfile the run; print the top 25 (cumulative)")
    args = ap.parse_args()
    require_data()
    if args.profile:
        prof = cProfile.Profile()
        summary = prof.runcall(run)
        stats = pstats.Stats(prof)
        stats.sort_stats("cumulative").print_stats(25)
        stats.sort_stats("tottime").print_stats(25)
    else:
        summary = run()
    emit(summary)


if __name__ == "__main__":
    main()
