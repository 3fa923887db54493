"""Run the benchmark: generate the data if needed, then btkit and the plain baseline as separate processes.

Whole-process wall time is measured from outside (interpreter start-up, imports and data loading included);
each script also reports its own in-process run time, candles/s, peak RSS, trades and total pnl. The two
trade lists are compared trade by trade: any difference is printed precisely (it may be an engine bug).
Usage: ``uv run python benchmarks/run.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from _common import HERE, NPY, OUT

ONLY_SMACROSS = {"BTKIT_LOAD_PLUGINS": ""}  # smacross ships with the core: no entry point is needed


def run_script(name: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(HERE / name)],
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        env={**os.environ, **(env or {})},
    )
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{name} failed with exit code {proc.returncode}")
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    out["process_wall_s"] = wall
    return out


def compare_trades() -> list[str]:
    """The trades of the last btkit run against the baseline's, trade by trade."""
    a = json.loads((OUT / "trades-btkit.json").read_text())
    b = json.loads((OUT / "trades-baseline.json").read_text())
    problems: list[str] = []
    if len(a) != len(b):
        problems.append(f"trade count differs: btkit {len(a)} vs baseline {len(b)}")
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        for key in ("pending_at", "close_timestamp", "reason"):
            if x[key] != y[key]:
                problems.append(f"trade {i}: {key} btkit {x[key]} vs baseline {y[key]}")
                problems.append(f"    btkit    {x}\n    baseline {y}")
                break
        else:
            for key in ("price_open", "price_close", "pnl_percentage"):
                if abs(x[key] - y[key]) > 1e-9 * max(1.0, abs(y[key])):
                    problems.append(f"trade {i}: {key} btkit {x[key]!r} vs baseline {y[key]!r}")
                    break
        if len(problems) >= 10:
            break
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="run each side N times and keep the fastest")
    args = ap.parse_args()
    if not NPY.is_file():
        subprocess.run([sys.executable, str(HERE / "generate.py")], check=True, cwd=HERE.parent)
    sides = (
        ("btkit", "bench_btkit.py", None),
        ("btkit-1", "bench_btkit.py", ONLY_SMACROSS),
        ("baseline", "baseline_plain.py", None),
    )
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for name, script, env in sides:
            r = run_script(script, env)
            if name not in best or r["process_wall_s"] < best[name]["process_wall_s"]:
                best[name] = r
    bt, b1, bl = best["btkit"], best["btkit-1"], best["baseline"]
    rows = [
        ("process wall time (s)", "process_wall_s", "{:.2f}"),
        ("in-process run (s)", "run_s", "{:.2f}"),
        ("imports + plugins (s)", "startup_s", "{:.2f}"),
        ("candles / s", "candles_per_s", "{:,.0f}"),
        ("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
        ("trades", "trades", "{}"),
        ("total pnl (%)", "total_pnl_percent", "{:.6f}"),
        ("total pnl ($)", "total_pnl_cost", "{:.6f}"),
    ]
    print(f"\n{bt['frame_candles']:,} one-minute candles in the frame (BTCUSDT, smacross, 15m decisions)")
    print("btkit: every installed plugin loaded (the whole workspace)")
    print("btkit-1: no entry-point plugin at all (BTKIT_LOAD_PLUGINS= ; smacross is a core default)\n")
    line = "| {:24} | {:>12} | {:>12} | {:>12} | {:>11} | {:>13} |"
    print(line.format("", "btkit", "btkit-1", "plain Python", "btkit/plain", "btkit-1/plain"))
    print("|" + "|".join("-" * (w + 2) for w in (24, 12, 12, 12, 11, 13)) + "|")
    for label, key, fmt in rows:
        x, x1, y = bt[key], b1[key], bl[key]
        show_ratio = isinstance(y, float) and y and key not in ("trades",) and "pnl" not in key
        r = f"{x / y:.2f}x" if show_ratio else ""
        r1 = f"{x1 / y:.2f}x" if show_ratio else ""
        print(line.format(label, fmt.format(x), fmt.format(x1), fmt.format(y), r, r1))
    if (bt["trades"], bt["total_pnl_percent"]) != (b1["trades"], b1["total_pnl_percent"]):
        print("btkit runs with and without the other plugins differ: trades or pnl changed")
        raise SystemExit(1)
    problems = compare_trades()
    print()
    if problems:
        print("DISAGREEMENT between btkit and the plain baseline:")
        for p in problems:
            print("  " + p)
        raise SystemExit(1)
    print(f"btkit and the plain baseline agree on all {bt['trades']} trades (times, reasons, prices, pnl).")


if __name__ == "__main__":
    main()
