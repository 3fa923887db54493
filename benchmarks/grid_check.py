"""Grid check: the smacross rules over a 90-point parameter grid, btkit against the reference loop.

For every combination of SMA(fast) × SMA(slow) on 15-minute candles, fast ∈ 5, 10, … 50 and slow ∈ 20,
40, … 200 with fast < slow (90 combinations), the year of 1-minute candles (``_common.py``) runs through
``btkit.Backtest.run`` (the exchange ``btkit.store.store_exchange`` over the generated store) and through
the independent per-minute reference loop of the lifecycle rules (``tests/reference/reference_loop.py``,
which does not import btkit). Every event — scheduled/opened/closed/cancelled, open and close time, close
reason, prices and pnl to 1e-9 — must be the same; the script prints where they differ and exits 1.

The frame starts three days after the data (SMA(200) of 15-minute candles needs 201 closed candles).
``--quick`` checks three combinations (10/30, 15/20, 15/60) over January, in a few seconds.
``--data DIR`` reads (and on first use writes) the candles in ``DIR`` instead of ``benchmarks/out``.
Usage: ``uv run python benchmarks/grid_check.py [--quick] [--data DIR]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    COST,
    DATA_START,
    EXCHANGE,
    FRAME_END,
    HERE,
    INTERVAL_MS,
    LIFETIME_MIN,
    MINUTE_MS,
    N_CANDLES,
    OUT,
    SEED,
    SL_PERCENT,
    SYMBOL,
    TP_PERCENT,
    ms,
)

sys.path.insert(0, str(HERE.parent / "tests" / "reference"))
from reference_loop import Order, Rules, differences, events_of_results, run_reference

GRID = [(f, s) for f in range(5, 55, 5) for s in range(20, 220, 20) if f < s]
QUICK = [(10, 30), (15, 20), (15, 60)]
GRID_START = DATA_START + timedelta(days=3)
QUICK_END = datetime(2023, 2, 1, tzinfo=UTC)


def ensure_data(root: Path) -> np.ndarray:
    """The year of seeded candles in ``root`` (the layout generate.py writes), generated when missing."""
    npy = root / "candles-1m.npy"
    if not npy.is_file():
        from btkit.defaults.sim_exchange import SimExchange
        from btkit.store import CandleStore

        arr = np.array(SimExchange(SEED).minutes(SYMBOL, ms(DATA_START), N_CANDLES))
        root.mkdir(parents=True, exist_ok=True)
        np.save(npy, arr)
        CandleStore(root / "data").write(EXCHANGE, SYMBOL, "1m", arr)
    return np.load(npy)


def run_btkit(combos: list[tuple[int, int]], root: Path, end: datetime) -> dict[tuple[int, int], Any]:
    import btkit
    from btkit.defaults.smacross import crossed_up, long_bracket
    from btkit.store import store_exchange

    btkit.add_exchange(EXCHANGE, store_exchange(EXCHANGE, root / "data").get_candles)
    btkit.add_frame("grid", GRID_START, end, interval="1m")
    out = {}
    for fast, slow in combos:

        def get_signal(symbol: str, when: datetime, price: float, fast: int = fast, slow: int = slow) -> Any:
            candles = btkit.get_candles(symbol, "15m", slow + 1)
            if not crossed_up(candles.close, fast, slow):
                return None
            return {**long_bracket(price), "minute_estimated_time": LIFETIME_MIN, "cost": COST}

        name = f"grid-{fast}-{slow}"
        btkit.add_strategy(name, get_signal, interval="15m")
        out[(fast, slow)] = events_of_results(
            btkit.Backtest.run(SYMBOL, strategy=name, exchange=EXCHANGE, frame="grid")
        )
    return out


def reference_decide(rows: list[list[float]], fast: int, slow: int) -> Any:
    first = int(rows[0][0])

    def decide(when: int, price: float) -> Order | None:
        bucket = when // INTERVAL_MS * INTERVAL_MS
        # closes of the slow+1 closed 15-minute candles before the bucket: their last 1-minute closes
        tail = [rows[(bucket - j * INTERVAL_MS - first) // MINUTE_MS - 1][4] for j in range(slow, -1, -1)]
        fast_now = sum(tail[-fast:]) / fast
        slow_now = sum(tail[-slow:]) / slow
        fast_prev = sum(tail[-fast - 1 : -1]) / fast
        slow_prev = sum(tail[-slow - 1 : -1]) / slow
        if not (fast_prev <= slow_prev and fast_now > slow_now):
            return None
        return Order(
            id="",
            position="long",
            take_profit=price * (1 + TP_PERCENT / 100),
            stop_loss=price * (1 - SL_PERCENT / 100),
            minute_estimated_time=LIFETIME_MIN,
        )

    return decide


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 combinations over January")
    ap.add_argument(
        "--data", type=Path, default=OUT, help="directory of the candles (default benchmarks/out)"
    )
    args = ap.parse_args()
    combos, end = (QUICK, QUICK_END) if args.quick else (GRID, FRAME_END)
    arr = ensure_data(args.data)
    rows = arr.tolist()

    t0 = time.perf_counter()
    got = run_btkit(combos, args.data, end)
    t_btkit = time.perf_counter() - t0

    rules = Rules(frame_start=ms(GRID_START), frame_end=ms(end), interval_ms=INTERVAL_MS)
    t0 = time.perf_counter()
    expected = {c: run_reference(rows, reference_decide(rows, *c), rules) for c in combos}
    t_ref = time.perf_counter() - t0

    agree, trades = 0, 0
    for combo in combos:
        ref = [dict(e, id="") for e in expected[combo]]  # btkit draws random ids; the reference has none
        mine = [dict(e, id="") for e in got[combo]]
        n_ref = sum(e["action"] == "closed" for e in ref)
        n_bt = sum(e["action"] == "closed" for e in mine)
        trades += n_ref
        diff = differences(ref, mine)
        if diff:
            print(f"fast {combo[0]} / slow {combo[1]}: reference {n_ref} trades, btkit {n_bt}")
            for line in diff[:5]:
                print(f"    {line}")
        else:
            agree += 1
    print(
        f"{agree} of {len(combos)} combinations agree trade for trade ({trades} trades) · "
        f"btkit {t_btkit:.1f} s · reference {t_ref:.1f} s"
    )
    return 0 if agree == len(combos) else 1


if __name__ == "__main__":
    sys.exit(main())
