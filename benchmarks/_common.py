"""Shared settings of the benchmark scripts (one year of seeded synthetic 1-minute candles)."""

from __future__ import annotations

import json
import resource
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
NPY = OUT / "candles-1m.npy"  # the plain (n, 6) array the baseline reads
STORE_ROOT = OUT / "data"  # the btkit candle store layout: data/<exchange>/<symbol>/1m.npy
EXCHANGE = "bench"  # store_exchange name
SYMBOL = "BTCUSDT"
SEED = 42
N_CANDLES = 525_600  # one year of minutes
DATA_START = datetime(2023, 1, 1, tzinfo=UTC)
FRAME_NAME = "bench-year"
FRAME_START = datetime(2023, 1, 2, tzinfo=UTC)  # a day of history for SMA(30) of 15m and the VWAP
FRAME_END = datetime(2023, 12, 29, tzinfo=UTC)  # leaves > 1440 minutes of data after the last decision
MINUTE_MS = 60_000

# the strategy's rules, repeated by the plain baseline
FAST, SLOW, INTERVAL_MS = 10, 30, 15 * MINUTE_MS
TP_PERCENT, SL_PERCENT, LIFETIME_MIN, COST = 2.0, 1.0, 1440, 100.0
SLIPPAGE_PERCENT, FEE_PERCENT, VWAP_CANDLES = 0.1, 0.1, 5


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def frame_minutes() -> int:
    return (ms(FRAME_END) - ms(FRAME_START)) // MINUTE_MS + 1


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 1024 / 1024


def require_data() -> None:
    if not NPY.is_file():
        where = NPY.relative_to(HERE.parent)
        sys.exit(f"no benchmark data at {where}; run: uv run python benchmarks/generate.py")


def write_trades(name: str, trades: list[dict[str, Any]]) -> Path:
    path = OUT / f"trades-{name}.json"
    path.write_text(json.dumps(trades, indent=0))
    return path


def emit(summary: dict[str, Any]) -> None:
    """Human-readable lines, then one machine-readable JSON line (run.py reads the last line)."""
    for k, v in summary.items():
        print(f"{k:>16}: {v:,.3f}" if isinstance(v, float) else f"{k:>16}: {v}")
    print("RESULT " + json.dumps(summary))
