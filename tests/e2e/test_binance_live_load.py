"""Load: 50 symbols live in one process against the fake Binance USD-M server, rate limiter on.

The run is ``benchmarks/live_binance_load.py``'s (all 50 enter in the same minute, are checked every
minute, and are closed by the engine at take-profit in the same minute). The broker's ccxt limiter runs
at a 10 ms unit here (ccxt's own Binance unit is 50 ms) to keep the suite quick; the candle client uses
ccxt's unit. At ccxt's unit the benchmark measured the entry and exit minutes at about 35 s for 50
symbols (see the benchmark's output); the bound asserted here is the one that matters: every minute's
ticks of all 50 symbols end within the minute.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "live_binance_load.py"


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("live_binance_load", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fifty_symbols_enter_are_checked_and_close_each_minute_within_the_minute(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_benchmark()
    result = bench.run_load(50, tmp_path, rate_limit_ms=10)
    with capsys.disabled():
        print(f"\n[load] {result.line()}")

    assert result.errors == ()
    assert result.opened == 50
    assert result.closed == Counter({"take_profit": 50})
    assert sorted(result.minutes) == list(range(bench.LAST_MINUTE + 1))  # every minute, in lockstep
    assert max(result.minutes.values()) < 60.0  # generous: each minute's ticks end within the minute
    # each symbol: one entry, one stop-loss, one take-profit, one close; no client id sent twice
    assert result.placements == 4 * 50 and result.max_per_client_id == 1
    assert result.positions_left == 0
