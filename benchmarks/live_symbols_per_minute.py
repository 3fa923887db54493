"""How many symbols one live process ticks within 5 s of the minute boundary.

N symbols run in one process on one replay clock (speed None) with the file persistence backend, the
paper broker and an in-memory exchange (the same three days of sim candles for every symbol, so the
exchange costs next to nothing; ``--exchange sim`` uses the simulated exchange, whose day cache holds
512 symbol-days) — the live runner exactly as ``btkit paper`` runs it — and a
strategy with a 1-minute interval that is asked for a signal on every idle minute (one state write per
symbol per minute) and opens a short position every 4 minutes (intent, broker, commit, close). The clock
records the wall time of every minute advance: a minute's duration is the time from the first tick of
the minute to the last one, i.e. what the wall clock would need after the boundary. The first minutes
(state loading, candle cache warm-up) are skipped.

    uv run python benchmarks/live_symbols_per_minute.py [--symbols 10,50,100,200,400] [--minutes 12]

With the wall clock's default ``delay_seconds=2`` a minute must take ≤ 3 s to end within 5 s of the
boundary.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import btkit
from btkit.defaults.sim_exchange import SimExchange
from btkit.engine import live
from btkit.registry import CODE
from btkit.testing import memory_exchange, reset_btkit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "live"))
import crash_child

START = 1_706_745_600_000
MINUTE_MS = 60_000
DAY_MS = 86_400_000
WARMUP_MINUTES = 2
BUDGET_S = 3.0  # 5 s after the boundary minus the wall clock's default 2 s delay


class TimedReplayClock(btkit.ReplayClock):
    """A replay clock that records the wall time at which each minute ended."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ended: list[float] = []

    def _maybe_advance(self) -> None:
        before = self.current
        super()._maybe_advance()
        if self.current != before:
            self.ended.append(time.perf_counter())


def measure(n: int, minutes: int, exchange: str) -> list[float]:
    reset_btkit()
    symbols = [f"SYM{i:04d}USDT" for i in range(n)]
    if exchange == "memory":
        candles = SimExchange().minutes("BTCUSDT", START - 2 * DAY_MS, 3 * 1440)
        CODE.exchanges["memory"] = memory_exchange("memory", dict.fromkeys(symbols, candles))
    with tempfile.TemporaryDirectory() as tmp:
        btkit.set_config(**crash_child.ENGINE_CONFIG)
        btkit.use_persistence("file", root=str(Path(tmp) / "dump"))
        btkit.add_strategy("bench", crash_child.get_signal, interval="1m")
        clock = TimedReplayClock(START, end=START + (minutes - 1) * MINUTE_MS)
        handles = [
            btkit.Live.background(s, strategy="bench", exchange=exchange, clock=clock) for s in symbols
        ]
        for h in handles:
            h.join()
        errors = [h.error for h in handles if h.error is not None]
        live.Live.shutdown()
        if errors:
            raise SystemExit(f"{len(errors)} runs failed, e.g. {errors[0]}")
    ends = clock.ended
    return [b - a for a, b in zip(ends[WARMUP_MINUTES:], ends[WARMUP_MINUTES + 1 :], strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="10,50,100,200,400")
    parser.add_argument("--minutes", type=int, default=12)
    parser.add_argument("--exchange", choices=("memory", "sim"), default="memory")
    args = parser.parse_args()
    print(f"exchange {args.exchange}, {args.minutes} replayed minutes, file persistence, paper broker")
    print(
        f"{'symbols':>8} {'median minute':>14} {'worst minute':>13} {'per symbol':>11}  within {BUDGET_S:g} s?"
    )
    best = 0
    for n in (int(x) for x in args.symbols.split(",")):
        durations = measure(n, args.minutes, args.exchange)
        med, worst = statistics.median(durations), max(durations)
        ok = worst <= BUDGET_S
        best = max(best, n) if ok else best
        print(f"{n:>8} {med:>12.3f} s {worst:>11.3f} s {med / n * 1000:>8.2f} ms  {'yes' if ok else 'no'}")
    print(f"largest tested count that ticks within 5 s of the boundary (2 s delay + {BUDGET_S:g} s): {best}")


if __name__ == "__main__":
    main()
