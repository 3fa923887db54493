"""The optimiser on one year of 1-minute candles, serial vs process (and ray), side by side in one run.

The 100-point grid fast 5..50 step 5 × slow 20..200 step 20 (fast < slow) of ``smacross-array`` (the array
form of the demo) over the year of ``benchmarks/_common.py``, read through the candle store. Each side is a
separate process: ``single`` (one plain ``Backtest.run``: the memory of one backtest), ``serial``,
``process`` (``--jobs 2``) and ``ray`` (``num_cpus=2``, when btkit-ray is installed; its cluster start is
timed apart). Every side checks that its ranking equals the serial one. Prints trials/s, the peak RSS of the
driver and of the largest worker, and the ratios against serial measured in the same run.
Usage: ``uv run python benchmarks/optimize.py [--quick] [--jobs 2]`` (``--quick``: one month, 12 points).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from typing import Any

from _common import EXCHANGE, FRAME_END, FRAME_START, HERE, STORE_ROOT, SYMBOL, peak_rss_mb, require_data

FULL = (["fast=5:50:5", "slow=20:200:20"], FRAME_START, FRAME_END)


def _space(quick: bool) -> tuple[list[str], Any, Any]:
    if not quick:
        return FULL
    from datetime import timedelta

    return ["fast=5:20:5", "slow=20:60:20"], FRAME_START, FRAME_START + timedelta(days=30)


def children_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kb / 1024


def memory_mb() -> dict[str, float]:
    """This process's proportional (Pss: shared pages split between their users) and private memory."""
    out = {"pss": 0.0, "private": 0.0}
    try:
        with open("/proc/self/smaps_rollup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, rest = line.partition(":")
        if key == "Pss":
            out["pss"] = int(rest.split()[0]) / 1024
        elif key in ("Private_Clean", "Private_Dirty"):
            out["private"] += int(rest.split()[0]) / 1024
    return out


def probe(shared: Any, item: Any) -> dict[str, Any]:
    import os

    return {"pid": os.getpid(), **memory_mb()}


def cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def side(name: str, quick: bool, jobs: int) -> dict[str, Any]:
    import btkit
    from btkit.store import store_exchange

    spec = store_exchange(EXCHANGE, STORE_ROOT)
    btkit.add_exchange(EXCHANGE, spec.get_candles)
    params, start, end = _space(quick)
    out: dict[str, Any] = {"side": name}
    if name == "single":
        btkit.add_frame("one", start, end)
        t = time.perf_counter()
        n = sum(
            1 for _ in btkit.Backtest.run(SYMBOL, strategy="smacross-array", exchange=EXCHANGE, frame="one")
        )
        out.update(seconds=time.perf_counter() - t, results=n, rss_mb=peak_rss_mb(), mem=memory_mb())
        return out
    executor = name
    if name == "ray":
        import ray

        from btkit_ray.executor import _without_uv_runtime_env

        t = time.perf_counter()
        undo = _without_uv_runtime_env(ray)  # workers start from this interpreter, not a `uv run` each
        try:
            ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        finally:
            undo()
        out["cluster_start_s"] = time.perf_counter() - t
    from btkit.context import datetime_to_ms
    from btkit.research.study import Study

    t = time.perf_counter()
    cpu0 = cpu_s()
    study = Study(
        strategy="smacross-array",
        symbol=SYMBOL,
        exchange=EXCHANGE,
        start_ms=datetime_to_ms(start),
        end_ms=datetime_to_ms(end),
        executor=executor,
        jobs=jobs,
    )
    out["load_s"] = time.perf_counter() - t
    result = btkit.optimize(
        "smacross-array",
        study=study,
        report=False,
        params=params,
        constraint="fast < slow",
        start=start,
        end=end,
        symbol=SYMBOL,
        exchange=EXCHANGE,
        executor=executor,
        jobs=jobs,
    )
    seconds = time.perf_counter() - t
    workers = {
        m["pid"]: m for _, m in study.executor.map(probe, list(range(4 * jobs))) if isinstance(m, dict)
    }
    study.close()
    out["cpu_s"] = cpu_s() - cpu0
    out["worker_mem"] = (
        max(workers.values(), key=lambda m: m["pss"]) if name != "serial" and workers else None
    )
    failed = [r for r in result.records if r.status != "ok"]
    out.update(
        trials=len(result.records),
        failed=len(failed),
        seconds=seconds,
        trials_per_s=len(result.records) / seconds,
        rss_mb=peak_rss_mb(),
        worker_rss_mb=children_rss_mb() if name == "process" else None,
        ranking=[r.index for r in result.ranked],
        best=result.best.params if result.best else None,
    )
    if failed:
        out["first_error"] = failed[0].error
    return out


def run_side(name: str, quick: bool, jobs: int) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "optimize.py"), "--side", name, "--jobs", str(jobs)] + (
        ["--quick"] if quick else []
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    if proc.returncode != 0:
        sys.exit(f"side {name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1].removeprefix("RESULT "))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one month and 12 grid points")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--side", help=argparse.SUPPRESS)
    args = ap.parse_args()
    require_data()
    if args.side:
        print("RESULT " + json.dumps(side(args.side, args.quick, args.jobs)))
        return
    sides = ["single", "serial", "process"] + (["ray"] if importlib.util.find_spec("btkit_ray") else [])
    res = {name: run_side(name, args.quick, args.jobs) for name in sides}
    single, serial = res["single"], res["serial"]
    print(f"one backtest: {single['seconds']:.2f} s, peak RSS {single['rss_mb']:.0f} MB")
    head = ("side", "trials", "seconds", "trials/s", "vs serial", "RSS MB", "worker MB", "worker/one")
    print("{:<8} {:>6} {:>8} {:>9} {:>9} {:>7} {:>9} {:>10}  same ranking".format(*head))
    for name in sides[1:]:
        r = res[name]
        worker = r.get("worker_rss_mb")
        ratio_mem = f"{worker / single['rss_mb']:.2f}" if worker else ""
        print(
            f"{name:<8} {r['trials']:>6} {r['seconds']:>8.2f} {r['trials_per_s']:>9.2f} "
            f"{r['trials_per_s'] / serial['trials_per_s']:>8.2f}x {r['rss_mb']:>7.0f} "
            f"{(f'{worker:.0f}' if worker else ''):>9} {ratio_mem:>10}  {r['ranking'] == serial['ranking']}"
            + (
                f"  (cluster start {r['cluster_start_s']:.1f} s, not counted)"
                if "cluster_start_s" in r
                else ""
            )
        )
        if r.get("failed"):
            print(f"  {r['failed']} failed trial(s): {r.get('first_error')}")
    print(f"best: {serial['best']}")
    one = single["mem"]
    print(f"memory of one backtest process: Pss {one['pss']:.0f} MB, private {one['private']:.0f} MB")
    for name in sides[1:]:
        r = res[name]
        w = r.get("worker_mem")
        cpu = f"CPU {r['cpu_s'] / r['trials']:.2f} s/trial (all processes), candles loaded in {r['load_s']:.2f} s"
        if w:
            ratio = w["pss"] / one["pss"] if one["pss"] else float("nan")
            cpu += f"; a worker: Pss {w['pss']:.0f} MB ({ratio:.2f}x one backtest), private {w['private']:.0f} MB"
        print(f"{name}: {cpu}")
    print(
        "RESULT "
        + json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "ranking"} for k, v in res.items()})
    )
    if any(res[n]["ranking"] != serial["ranking"] for n in sides[1:]):
        sys.exit("the rankings differ between executors")


if __name__ == "__main__":
    main()
