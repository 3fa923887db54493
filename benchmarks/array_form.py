"""One year of smacross three ways, side by side in one run: the array form, the per-tick form, plain Python.

Each side is a separate process (interpreter start-up, imports and data loading included, as in
``benchmarks/run.py``): ``smacross-array`` (``populate`` once over the year, the lifecycle fed only at the bars
that request a signal), ``smacross`` (``get_signal`` on every 15-minute bucket) and the plain-Python loop
``baseline_plain.py``. The three trade lists are compared trade by trade, and each btkit side reports where
its time goes (start-up, the array function, the rest of the run). Ratios are against the plain baseline
measured in the same run. Usage: ``uv run python benchmarks/array_form.py [--repeat N]``.
"""

from __future__ import annotations

import time

T_PROCESS = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from _common import (  # noqa: E402
    EXCHANGE,
    FRAME_END,
    FRAME_NAME,
    FRAME_START,
    HERE,
    NPY,
    OUT,
    STORE_ROOT,
    SYMBOL,
    emit,
    frame_minutes,
    peak_rss_mb,
    require_data,
    write_trades,
)

# (strategy, timerange) of the look-ahead timings; rsi-bb's 300-bar warm-up needs data before its start
LOOKAHEAD = (
    ("smacross-array", "20230102-20231229"),
    ("smacross", "20230102-20231229"),
    ("rsi-bb", "20230105-20231229"),
)
CORE_ONLY = {"BTKIT_LOAD_PLUGINS": ""}  # both strategies ship with the core: no entry point is needed


def side(strategy: str) -> dict[str, Any]:
    """One btkit side, in this process: the full path (default plugin, store exchange, Backtest.run)."""
    import btkit
    from btkit.engine import arrays
    from btkit.model import Closed
    from btkit.store import store_exchange

    t_import = time.perf_counter()
    spec = store_exchange(EXCHANGE, STORE_ROOT)
    btkit.add_exchange(EXCHANGE, spec.get_candles)
    btkit.add_frame(FRAME_NAME, FRAME_START, FRAME_END, interval="1m")
    populate_s = 0.0
    original = arrays.evaluate

    def timed(*a: Any, **kw: Any) -> Any:
        nonlocal populate_s
        t = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            populate_s += time.perf_counter() - t

    arrays.evaluate = timed  # measure the array function (and its validation) apart from the rest
    trades: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for result in btkit.Backtest.run(SYMBOL, strategy=strategy, exchange=EXCHANGE, frame=FRAME_NAME):
        if isinstance(result, Closed):
            trades.append(
                {
                    "pending_at": result.signal.pending_at,
                    "close_timestamp": result.close_timestamp,
                    "reason": result.close_reason,
                    "price_open": result.pnl.price_open,
                    "price_close": result.pnl.price_close,
                    "pnl_percentage": result.pnl.pnl_percentage,
                    "pnl_cost": result.pnl.pnl_cost,
                }
            )
    run_s = time.perf_counter() - t0
    write_trades(strategy, trades)
    return {
        "impl": strategy,
        "startup_s": t_import - T_PROCESS,
        "run_s": run_s,
        "populate_s": populate_s,
        "engine_s": run_s - populate_s,
        "frame_candles": frame_minutes(),
        "candles_per_s": frame_minutes() / run_s,
        "peak_rss_mb": peak_rss_mb(),
        "trades": len(trades),
        "total_pnl_percent": sum(t["pnl_percentage"] for t in trades),
    }


def run_process(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        env={**os.environ, **(env or {})},
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{' '.join(args)} failed with exit code {proc.returncode}")
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    out["process_wall_s"] = wall
    return out


def compare(a_name: str, b_name: str) -> list[str]:
    a = json.loads((OUT / f"trades-{a_name}.json").read_text())
    b = json.loads((OUT / f"trades-{b_name}.json").read_text())
    problems: list[str] = []
    if len(a) != len(b):
        problems.append(f"trade count differs: {a_name} {len(a)} vs {b_name} {len(b)}")
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        for key in ("pending_at", "close_timestamp", "reason"):
            if x[key] != y[key]:
                problems.append(f"trade {i}: {key} {a_name} {x[key]} vs {b_name} {y[key]}")
                break
        else:
            for key in ("price_open", "price_close", "pnl_percentage"):
                if abs(x[key] - y[key]) > 1e-9 * max(1.0, abs(y[key])):
                    problems.append(f"trade {i}: {key} {a_name} {x[key]!r} vs {b_name} {y[key]!r}")
                    break
        if len(problems) >= 10:
            break
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="run each side N times and keep the fastest")
    ap.add_argument("--side", help=argparse.SUPPRESS)  # internal: run one btkit side in this process
    args = ap.parse_args()
    if args.side:
        require_data()
        emit(side(args.side))
        return
    if not NPY.is_file():
        subprocess.run([sys.executable, str(HERE / "generate.py")], check=True, cwd=HERE.parent)
    me = str(HERE / "array_form.py")
    sides = (
        ("array", [me, "--side", "smacross-array"], CORE_ONLY),
        ("per-tick", [me, "--side", "smacross"], CORE_ONLY),
        ("plain", [str(HERE / "baseline_plain.py")], None),
    )
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for name, argv, env in sides:
            r = run_process(argv, env)
            if name not in best or r["process_wall_s"] < best[name]["process_wall_s"]:
                best[name] = r
    ar, pt, pl = best["array"], best["per-tick"], best["plain"]
    print(f"\n{frame_minutes():,} one-minute candles in the frame (BTCUSDT, smacross, 15m decisions)\n")
    line = "| {:30} | {:>10} | {:>10} | {:>10} | {:>12} | {:>15} |"
    print(line.format("", "array", "per-tick", "plain", "array/plain", "per-tick/plain"))
    print("|" + "|".join("-" * (w + 2) for w in (30, 10, 10, 10, 12, 15)) + "|")
    rows = [
        ("process wall time (s)", "process_wall_s", "{:.2f}", True),
        ("in-process run (s)", "run_s", "{:.2f}", True),
        ("  of which array function (s)", "populate_s", "{:.3f}", False),
        ("imports + plugins (s)", "startup_s", "{:.2f}", False),
        ("candles / s", "candles_per_s", "{:,.0f}", True),
        ("peak RSS (MB)", "peak_rss_mb", "{:.0f}", True),
        ("trades", "trades", "{}", False),
        ("total pnl (%)", "total_pnl_percent", "{:.6f}", False),
    ]
    for label, key, fmt, ratio in rows:
        cells = [fmt.format(d[key]) if key in d else "" for d in (ar, pt, pl)]
        ra = f"{ar[key] / pl[key]:.2f}x" if ratio and key in pl and pl[key] else ""
        rp = f"{pt[key] / pl[key]:.2f}x" if ratio and key in pl and pl[key] else ""
        print(line.format(label, *cells, ra, rp))
    print(
        f"\nwhere the array side's time goes: start-up {ar['startup_s']:.2f} s, array function "
        f"{ar['populate_s']:.3f} s, engine (ticks at requesting bars, fast-path trade resolution, data) "
        f"{ar['engine_s']:.2f} s; the rest of the process ({ar['process_wall_s'] - ar['startup_s'] - ar['run_s']:.2f} s) "
        "is the interpreter and exit"
    )
    print("\nbtkit check lookahead over the year (whole process; target: under a minute on 2 cores):")
    for strategy, timerange in LOOKAHEAD:
        t = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "btkit.cli",
                "check",
                "lookahead",
                "--strategy",
                strategy,
                "--offline",
                "--data-dir",
                str(STORE_ROOT),
                "--exchange",
                EXCHANGE,
                "--timerange",
                timerange,
                "--dump-dir",
                str(OUT / "dump"),
            ],
            capture_output=True,
            text=True,
            cwd=HERE.parent,
        )
        wall = time.perf_counter() - t
        summary = (proc.stdout.strip().splitlines() or [proc.stderr.strip()])[0]
        print(f"  {wall:6.1f} s  exit {proc.returncode}  {summary}")
    problems = compare("smacross-array", "smacross") + compare("smacross-array", "baseline")
    print()
    if problems:
        print("DISAGREEMENT:")
        for p in problems:
            print("  " + p)
        raise SystemExit(1)
    verdict = "faster" if ar["process_wall_s"] < pl["process_wall_s"] else "NOT faster"
    print(
        f"array form, per-tick form and the plain baseline agree on all {ar['trades']} trades; the array form "
        f"is {verdict} than the plain-Python loop ({pl['process_wall_s'] / ar['process_wall_s']:.2f}x)."
    )


if __name__ == "__main__":
    main()
