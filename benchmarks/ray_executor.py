"""The smacross grid, serial loop vs the btkit-ray executor on a local Ray cluster, side by side in one run.

Every trial is a real ``btkit.Backtest.run`` of the smacross rule (``btkit.defaults.smacross.crossed_up``,
its bracket, lifetime and cost) at one ``(fast, slow)`` point of the issue-14 grid — fast 5..50 step 5 ×
slow 20..200 step 20, ``fast < slow`` (90 points) — over one year of seeded 1-minute candles
(``benchmarks/out/candles-1m.npy``; ``generate.py`` writes it). The candles are loaded once: the serial side
holds them in this process, the Ray side ``ray.put``\\ s them once and every task reads them zero-copy from
the object store. The Ray side's cluster start (``ray.init(num_cpus=2)``) is timed apart from its trials.
Both trade lists are compared trial by trial; any difference is printed and the exit code is 1.

Usage: ``uv run python benchmarks/ray_executor.py [--trials N] [--cpus 2]``
(``--trials`` takes the first N grid points, for a quick look).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from _common import DATA_START, FRAME_END, NPY, SYMBOL, emit, peak_rss_mb, require_data

# slow=200 on 15m candles needs 201 buckets (~2.1 days) of history before the first decision
FRAME_START = DATA_START + timedelta(days=3)


def grid() -> list[tuple[int, int]]:
    return [(f, s) for f in range(5, 51, 5) for s in range(20, 201, 20) if f < s]


def trial(shared: Mapping[str, Any], params: tuple[int, int]) -> dict[str, Any]:
    """One real backtest at ``(fast, slow)``; self-contained (it runs in Ray workers as well)."""
    import resource as res

    import btkit
    from btkit.defaults import smacross as sc
    from btkit.model import Closed
    from btkit.testing.exchange import memory_exchange

    fast, slow = params
    symbol = shared["symbol"]
    cpu0 = time.process_time()

    def get_signal(sym: str, when: datetime, current_price: float) -> dict[str, Any] | None:
        candles = btkit.get_candles(sym, sc.INTERVAL, slow + 1)
        if not sc.crossed_up(candles.close, fast, slow):
            return None
        return {**sc.long_bracket(current_price), "minute_estimated_time": sc.LIFETIME_MINUTES, "cost": sc.COST}

    name = f"smacross-{fast}-{slow}"
    btkit.add_exchange("mem", memory_exchange("mem", shared["candles"]).get_candles)
    btkit.add_strategy(name, get_signal, interval=sc.INTERVAL)
    btkit.add_frame("year", shared["start"], shared["end"])
    trades = [
        (r.signal.pending_at, r.close_timestamp, r.close_reason, r.pnl.price_open, r.pnl.price_close,
         r.pnl.pnl_percentage)
        for r in btkit.Backtest.run(symbol, strategy=name, exchange="mem", frame="year")
        if isinstance(r, Closed)
    ]
    from btkit.engine import backtest

    backtest._results.clear()  # a long-lived worker must not keep every trial's results
    return {"trades": trades, "pid": os.getpid(), "rss_mb": res.getrusage(res.RUSAGE_SELF).ru_maxrss / 1024,
            "pss_mb": pss_mb(), "cpu_s": time.process_time() - cpu0}


def pss_mb() -> float:
    """Proportional set size (shared pages split between the processes mapping them); Linux, else 0."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def warm_up(shared: Mapping[str, Any], _: int) -> dict[str, Any]:
    """Import btkit in a worker (its first task would pay for it otherwise) and report the idle memory."""
    import resource as res
    import time as tm

    import btkit
    import btkit.testing.exchange  # noqa: F401

    tm.sleep(0.5)  # keep the worker busy so the next warm-up task lands on another one
    return {"pid": os.getpid(), "rss_mb": res.getrusage(res.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=None, help="the first N grid points (default: all 90)")
    ap.add_argument("--cpus", type=int, default=2, help="num_cpus of the local Ray cluster (default 2)")
    args = ap.parse_args()
    require_data()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    points = grid()[: args.trials]
    candles = np.load(NPY)
    shared = {"symbol": SYMBOL, "candles": {SYMBOL: candles}, "start": FRAME_START, "end": FRAME_END}
    print(f"{len(points)} trials, {len(candles):,} candles ({candles.nbytes / 1e6:.1f} MB), "
          f"frame {FRAME_START:%Y-%m-%d}..{FRAME_END:%Y-%m-%d}", flush=True)

    base_rss = peak_rss_mb()
    load = os.getloadavg()[0]
    if load > 2.5:
        print(f"note: load average {load:.1f} on this machine; the ratios are not meaningful", flush=True)
    t = time.perf_counter()
    first = trial(shared, points[0])
    one_rss = peak_rss_mb()  # this process after one backtest: the "single backtest" memory
    serial = [first, *(trial(shared, p) for p in points[1:])]
    serial_s = time.perf_counter() - t
    serial_rss = peak_rss_mb()
    print(f"serial: {serial_s:.1f} s", flush=True)

    from btkit.research.executors import ExecutorOptions
    from btkit_ray import RayExecutor, TaskFailed

    ex = RayExecutor(ExecutorOptions(jobs=args.cpus))
    ex.start(shared)
    t = time.perf_counter()
    idle = dict(ex.map(warm_up, range(ex.cpus())))
    warm_s = time.perf_counter() - t
    print(f"ray: cluster of {ex.cpus()} CPUs started in {ex.start_seconds:.1f} s, workers warmed up in "
          f"{warm_s:.1f} s (shared payload put in {ex.put_seconds:.2f} s)", flush=True)
    try:
        t = time.perf_counter()
        results = dict(ex.map(trial, points))
        ray_s = time.perf_counter() - t
    finally:
        ex.close()
    failed = {i: r for i, r in results.items() if isinstance(r, TaskFailed)}
    if failed:
        for i, r in list(failed.items())[:5]:
            print(f"trial {points[i]} failed on ray: {r.error}", file=sys.stderr)
        return 1
    differ = [points[i] for i, r in enumerate(serial) if results[i]["trades"] != r["trades"]]
    for p in differ[:10]:
        print(f"trial fast={p[0]} slow={p[1]}: ray trades differ from the serial loop", file=sys.stderr)
    worker_rss = max(r["rss_mb"] for r in results.values())
    idle_rss = max(r["rss_mb"] for r in idle.values())
    summary = {
        "trials": len(points),
        "trades_total": sum(len(r["trades"]) for r in serial),
        "serial_s": serial_s,
        "serial_trials_per_s": len(points) / serial_s,
        "ray_cluster_start_s": ex.start_seconds,
        "ray_s": ray_s,
        "ray_trials_per_s": len(points) / ray_s,
        "ray_vs_serial": serial_s / ray_s,
        "ray_warmup_s": warm_s,
        "ray_incl_start_vs_serial": serial_s / (ray_s + ex.start_seconds + warm_s),
        "ray_workers": len({r["pid"] for r in results.values()}),
        # CPU seconds per trial, independent of how busy the machine is: equal means no per-trial overhead
        "serial_cpu_per_trial_s": sum(r["cpu_s"] for r in serial) / len(serial),
        "ray_cpu_per_trial_s": sum(r["cpu_s"] for r in results.values()) / len(results),
        "rss_before_mb": base_rss,
        "rss_one_backtest_mb": one_rss,
        "rss_serial_peak_mb": serial_rss,
        "rss_ray_worker_peak_mb": worker_rss,
        "worker_vs_one_backtest": worker_rss / one_rss,
        "rss_ray_worker_idle_mb": idle_rss,
        # what a backtest adds to its process: in a Ray worker (over its idle ray+btkit) vs in this one
        "added_by_trial_worker_mb": worker_rss - idle_rss,
        "added_by_trial_here_mb": one_rss - base_rss,
        "pss_ray_worker_max_mb": max(r["pss_mb"] for r in results.values()),
        "loadavg_1m_end": os.getloadavg()[0],
        "identical_trials": len(points) - len(differ),
        "driver_rss_self_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    emit(summary)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
