"""The optimiser on one year of 1-minute candles, serial vs process (and ray), side by side in one run.

The 100-point grid fast 5..50 step 5 × slow 20..200 step 20 (fast < slow: 90 points) of ``smacross-array``
(the array form of the demo) over the year of ``benchmarks/_common.py``, read through the candle store. Each
side is a separate process: ``single`` (one plain ``Backtest.run``: the memory of one backtest), ``serial``,
``process`` (``--jobs 2``) and ``ray`` (``num_cpus=2``, when btkit-ray is installed). Every side checks that
its ranking equals the serial one.

Timing: a side's seconds are the candle load (the Study: fetch, share) plus the trials. Ray's cluster start
(``ray.init``) and the first tasks that start its workers and import btkit (warm-up) are timed apart, as
is the process pool's fork (warm-up). Memory: each worker reports its own peak RSS (``ru_maxrss``: every
resident page it had mapped, the shared candles it touched and the pages inherited at fork included, so
shared pages are counted in full in every worker); the ratio is that peak over the peak RSS of the
``single`` process. Pss (shared pages split between their users) is printed beside it. CPU seconds per
trial are split into the driver's and the workers' (load-independent where wall times are not).
Usage: ``uv run python benchmarks/optimize.py [--quick] [--jobs 2]`` (``--quick``: one month, 12 points).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
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


def memory_mb() -> dict[str, float]:
    """This process's Rss, proportional (Pss: shared pages split between their users) and private memory."""
    out = {"rss": 0.0, "pss": 0.0, "private": 0.0}
    try:
        with open("/proc/self/smaps_rollup") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return out
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            out[key.lower()] = int(rest.split()[0]) / 1024
        elif key in ("Private_Clean", "Private_Dirty"):
            out["private"] += int(rest.split()[0]) / 1024
    return out


def own_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def probe(shared: Any, item: Any) -> dict[str, Any]:
    """A worker's own figures: pid, peak RSS, current memory, CPU seconds so far."""
    time.sleep(0.2)  # keep this worker busy so the next probes land on the other workers
    return {"pid": os.getpid(), "peak_rss": peak_rss_mb(), "cpu_s": own_cpu_s(), **memory_mb()}


def probe_workers(study: Any, jobs: int) -> dict[int, dict[str, Any]]:
    return {m["pid"]: m for _, m in study.executor.map(probe, list(range(4 * jobs))) if isinstance(m, dict)}


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
    study = Study(
        strategy="smacross-array",
        symbol=SYMBOL,
        exchange=EXCHANGE,
        start_ms=datetime_to_ms(start),
        end_ms=datetime_to_ms(end),
        executor=name,
        jobs=jobs,
    )
    out["load_s"] = time.perf_counter() - t
    idle: dict[int, dict[str, Any]] = {}
    if name != "serial":
        t = time.perf_counter()
        idle = probe_workers(study, jobs)  # starts the workers (fork / Ray worker processes + imports)
        out["warm_s"] = time.perf_counter() - t - 0.2 * 4  # the probes' own sleeps
    cpu0 = own_cpu_s()
    t = time.perf_counter()
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
        executor=name,
        jobs=jobs,
    )
    trials_s = time.perf_counter() - t
    driver_cpu = own_cpu_s() - cpu0
    after = probe_workers(study, jobs) if name != "serial" else {}
    study.close()
    n = len(result.records)
    failed = [r for r in result.records if r.status != "ok"]
    out.update(
        trials=n,
        failed=len(failed),
        trials_s=trials_s,
        seconds=out["load_s"] + trials_s,
        trials_per_s=n / (out["load_s"] + trials_s),
        rss_mb=peak_rss_mb(),
        driver_cpu_per_trial=driver_cpu / n,
        ranking=[r.index for r in result.ranked],
        best=result.best.params if result.best else None,
    )
    if after:
        worker_cpu = sum(m["cpu_s"] - idle.get(pid, {}).get("cpu_s", 0.0) for pid, m in after.items())
        peak = max(after.values(), key=lambda m: m["peak_rss"])
        out.update(
            workers=len(after),
            worker_cpu_per_trial=worker_cpu / n,
            worker_peak_rss_mb=peak["peak_rss"],
            worker_pss_mb=max(m["pss"] for m in after.values()),
            worker_private_mb=max(m["private"] for m in after.values()),
            idle_worker_rss_mb=max(m["rss"] for m in idle.values()) if idle else None,
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
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    sides = ["single", "serial", "process"] + (["ray"] if importlib.util.find_spec("btkit_ray") else [])
    res = {name: run_side(name, args.quick, args.jobs) for name in sides}
    single, serial = res["single"], res["serial"]
    one = single["rss_mb"]
    print(f"one backtest: {single['seconds']:.2f} s, peak RSS {one:.0f} MB (Pss {single['mem']['pss']:.0f} MB)")
    one_pss = single["mem"]["pss"]
    head = ("side", "trials", "load s", "trials s", "trials/s", "vs serial", "worker peak RSS", "/ one", "Pss / one")
    print("{:<8} {:>6} {:>7} {:>8} {:>9} {:>9} {:>15} {:>6} {:>9}  same ranking".format(*head))
    for name in sides[1:]:
        r = res[name]
        worker = r.get("worker_peak_rss_mb")
        pss = r.get("worker_pss_mb")
        print(
            f"{name:<8} {r['trials']:>6} {r['load_s']:>7.2f} {r['trials_s']:>8.2f} {r['trials_per_s']:>9.2f} "
            f"{r['trials_per_s'] / serial['trials_per_s']:>8.2f}x "
            f"{(f'{worker:.0f} MB' if worker else ''):>15} {(f'{worker / one:.2f}' if worker else ''):>6}"
            f" {(f'{pss / one_pss:.2f}' if pss else ''):>9}"
            f"  {r['ranking'] == serial['ranking']}"
        )
        if r.get("failed"):
            print(f"  {r['failed']} failed trial(s): {r.get('first_error')}")
    print(f"best: {serial['best']}")
    for name in sides[1:]:
        r = res[name]
        line = f"{name}: driver peak RSS {r['rss_mb']:.0f} MB, CPU per trial: driver {r['driver_cpu_per_trial']:.3f} s"
        if "worker_cpu_per_trial" in r:
            line += (
                f", workers {r['worker_cpu_per_trial']:.3f} s; {r['workers']} workers, warm-up {r['warm_s']:.2f} s;"
                f" a worker: peak RSS {r['worker_peak_rss_mb']:.0f} MB, Pss {r['worker_pss_mb']:.0f} MB,"
                f" private {r['worker_private_mb']:.0f} MB; idle worker RSS {r['idle_worker_rss_mb']:.0f} MB"
            )
        if "cluster_start_s" in r:
            line += f"; cluster start {r['cluster_start_s']:.1f} s (not counted)"
        print(line)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        "RESULT "
        + json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "ranking"} for k, v in res.items()})
    )
    if any(res[n]["ranking"] != serial["ranking"] for n in sides[1:]):
        sys.exit("the rankings differ between executors")


if __name__ == "__main__":
    main()
