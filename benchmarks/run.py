"""Run the benchmark: generate the data if needed, then btkit and the plain baseline as separate processes.

Whole-process wall time is measured from outside (interpreter start-up, imports and data loading included);
each script also reports its own in-process run time, candles/s, peak RSS, trades and total pnl. The two
trade lists are compared trade by trade: any difference is printed precisely (it may be an engine bug).
Usage: ``uv run python benchmarks/run.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from _common import HERE, NPY, OUT


def run_script(name: str) -> dict[str, Any]:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / name)], capture_output=True, text=True, cwd=HERE.parent)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{name} failed with exit code {proc.returncode}")
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    out["process_wall_s"] = wall
    return out


def compare_trades() -> list[str]:
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
    best: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeat):
        for name, script in (("btkit", "bench_btkit.py"), ("baseline", "baseline_plain.py")):
            r = run_script(script)
            if name not in best or r["process_wall_s"] < best[name]["process_wall_s"]:
                best[name] = r
    bt, bl = best["btkit"], best["baseline"]
    rows = [
        ("process wall time (s)", "process_wall_s", "{:.2f}"),
        ("in-process run (s)", "run_s", "{:.2f}"),
        ("start-up + imports (s)", "startup_s", "{:.2f}"),
        ("candles / s", "candles_per_s", "{:,.0f}"),
        ("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
        ("trades", "trades", "{}"),
        ("total pnl (%)", "total_pnl_percent", "{:.6f}"),
        ("total pnl ($)", "total_pnl_cost", "{:.6f}"),
    ]
    print(f"\n{bt['frame_candles']:,} one-minute candles in the frame (BTCUSDT, smacross, 15m decisions)\n")
    print(f"| {'':24} | {'btkit':>14} | {'plain Python':>14} | {'btkit / plain':>13} |")
    print(f"|{'-' * 26}|{'-' * 16}|{'-' * 16}|{'-' * 15}|")
    for label, key, fmt in rows:
        x, y = bt[key], bl[key]
        ratio = f"{x / y:.2f}x" if isinstance(x, (int, float)) and y and key not in ("trades",) else ""
        print(f"| {label:24} | {fmt.format(x):>14} | {fmt.format(y):>14} | {ratio:>13} |")
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
