"""Issue 12 item 4 from the command line: ``btkit paper`` with a wallet ends with the money view of
the run (the persisted trades and open positions, from the persisted balance), like ``btkit backtest``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def money(out: str, label: str) -> float:
    match = re.search(rf"^{re.escape(label)}\s+(-?[\d,]+\.\d+) USDT", out, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{out}"
    return float(match.group(1).replace(",", ""))


def test_a_paper_replay_with_a_balance_prints_its_equity_in_money(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTKIT")}
    cmd = [sys.executable, "-m", "btkit.cli", "paper", "--replay-from", "20240101", "--replay-to", "20240103"]
    cmd += ["--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--balance", "10000", "--sizing", "percent:20"]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    closed = sum(int(m) for m in re.findall(r"^\w+: (\d+) closed", out.stdout, re.MULTILINE))
    assert closed > 0
    assert money(out.stdout, "Starting balance") == 10_000.0
    final, net = money(out.stdout, "Final equity"), money(out.stdout, "Net profit")
    assert abs(final - 10_000.0 - net) < 0.011
    trades = re.search(r"^Trades\s+(\d+)", out.stdout, re.MULTILINE)
    assert trades and int(trades.group(1)) == closed
    assert "CAGR" in out.stdout and "Exposure" in out.stdout
