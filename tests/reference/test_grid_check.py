"""``benchmarks/grid_check.py --quick`` as a real subprocess: btkit and the reference loop agree on the
smacross grid's quick combinations (15/20 among them, which lost a trade before close-then-decide held
anywhere inside a bucket), and the script says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_grid_check_quick_agrees_trade_for_trade(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "grid_check.py"), "--quick", "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("3 of 3 combinations agree trade for trade"), proc.stdout
    trades = int(last.split("(")[1].split(" trades")[0])
    assert trades > 50  # the month really trades
    assert (tmp_path / "candles-1m.npy").is_file()  # the data was written where asked, not in the repo
