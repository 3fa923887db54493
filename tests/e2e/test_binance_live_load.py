"""Load: 50 symbols live in one process against the fake Binance USD-M server, rate limiter on.

The run is ``benchmarks/live_binance_load.py``'s "after" mode (all 50 enter in the same minute, are
checked every minute, and are closed by the engine at take-profit in the same minute) against a fake that
enforces Binance's budgets, with btkit's process-wide limiter. Asserted: Binance never refused a request
(no 429, no 418), and issue 16's bounds — an entry minute of 50 symbols within 15 s, every other minute
within 5 s (the benchmark measures about 1–3 s and 0.2–1.6 s on the shared machine).
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
    result = bench.run_load(50, tmp_path)
    with capsys.disabled():
        print(f"\n[load] {result.line()}")

    assert result.errors == ()
    assert result.opened == 50
    assert result.closed == Counter({"take_profit": 50})
    assert sorted(result.minutes) == list(range(bench.LAST_MINUTE + 1))  # every minute, in lockstep
    assert result.refused == (0, 0)  # no 429, no 418: the limiter kept every burst inside the budget
    assert result.minutes[bench.OPEN_MINUTE] <= 15.0
    assert max(s for m, s in result.minutes.items() if m != bench.OPEN_MINUTE) <= 5.0
    # each symbol: one entry, one stop-loss, one take-profit, one close; no client id sent twice
    assert result.placements == 4 * 50 and result.max_per_client_id == 1
    assert result.positions_left == 0
