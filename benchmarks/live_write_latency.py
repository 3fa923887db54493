"""Write latency of the file persistence backend: one signal document (temp file, write, fsync,
os.replace, fsync of the directory), and the four-document batch a live open commits.

    uv run python benchmarks/live_write_latency.py [--n 500] [--dir PATH]

``--dir`` should be on the disk the bot will use (the default is a temporary directory; /tmp may be a
RAM disk where fsync is free). Prints median, p90, p99 and max in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from btkit import serde
from btkit.config import EngineConfig
from btkit.engine.state import Levels, StrategyState
from btkit.lifecycle import machine
from btkit.model import Signal
from btkit.persist.backend import Change
from btkit.persist.file import FileBackend

MINUTE_MS = 60_000


def signal_document(i: int) -> dict:
    row = machine.build_row(
        Signal(
            position="long",
            price_take_profit=41_000.0 + i,
            price_stop_loss=39_000.0,
            minute_estimated_time=60,
        ),
        symbol="BTC/USDT:USDT",
        strategy_name="bench",
        exchange_name="binance",
        frame_name="",
        when=1_706_745_600_000 + i * MINUTE_MS,
        current_price=40_000.0,
        cfg=EngineConfig(),
    )
    return serde.to_document({"row": serde.unstructure(row)})


def percentiles(samples: list[float]) -> str:
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return (
        f"median {statistics.median(s):.2f} ms, p90 {pick(0.90):.2f} ms, p99 {pick(0.99):.2f} ms, "
        f"max {s[-1]:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--dir", help="state directory to benchmark in (default: a temporary directory)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        backend = FileBackend(Path(tmp) / "state")
        backend.open(exclusive=True)
        key = ("bench", "BTC/USDT:USDT")
        docs = [signal_document(i) for i in range(args.n)]
        size = len(str(docs[0]))
        single: list[float] = []
        for doc in docs:
            t0 = time.perf_counter()
            backend.write([Change("signal", key, doc)])
            single.append((time.perf_counter() - t0) * 1000)
        batch: list[float] = []
        for i, doc in enumerate(docs):
            strategy = serde.to_document(
                serde.unstructure(StrategyState(last_bucket=i * MINUTE_MS, last_tick=i))
            )
            levels = serde.to_document(serde.unstructure(Levels(signal_id=str(i))))
            risk = {"schema_version": 1, "positions": []}
            t0 = time.perf_counter()
            backend.write(
                [
                    Change("signal", key, doc),
                    Change("strategy", key, strategy),
                    Change("levels", key, levels),
                    Change("risk", ("*",), risk),
                ]
            )
            batch.append((time.perf_counter() - t0) * 1000)
        backend.close()
        fs = os.statvfs(tmp)
    print(f"file backend, {args.n} writes each, directory {tmp} (block size {fs.f_bsize})")
    print(f"  one signal document (~{size} bytes): {percentiles(single)}")
    print(f"  open commit, 4 documents:           {percentiles(batch)}")


if __name__ == "__main__":
    main()
