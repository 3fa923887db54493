"""Write one year (525,600) of seeded synthetic 1-minute candles to benchmarks/out/.

- ``out/candles-1m.npy``: the plain ``(n, 6)`` float64 array ``[ts, o, h, l, c, v]`` (the baseline reads it);
- ``out/data/bench/BTCUSDT/1m.npy``: the same candles in btkit's candle-store layout, so btkit reads them
  through ``btkit.store.store_exchange("bench", "benchmarks/out/data")``.

The candles come from btkit's simulated exchange (seed ``SEED``): deterministic, BTC-like volatility, wicks
and volume. Usage: ``uv run python benchmarks/generate.py [--force]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import DATA_START, EXCHANGE, N_CANDLES, NPY, OUT, SEED, STORE_ROOT, SYMBOL, ms


def generate(force: bool = False) -> None:
    from btkit.defaults.sim_exchange import SimExchange
    from btkit.store import CandleStore

    if NPY.is_file() and not force:
        print(f"{NPY} exists (use --force to regenerate)")
        return
    t = time.perf_counter()
    arr = np.array(SimExchange(SEED).minutes(SYMBOL, ms(DATA_START), N_CANDLES))
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(NPY, arr)
    store = CandleStore(STORE_ROOT)
    path = store.path(EXCHANGE, SYMBOL, "1m")
    if path.exists():
        path.unlink()
    store.write(EXCHANGE, SYMBOL, "1m", arr)
    print(f"wrote {len(arr):,} candles to {NPY} and {path} in {time.perf_counter() - t:.2f}s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="regenerate even if the files exist")
    generate(ap.parse_args().force)
