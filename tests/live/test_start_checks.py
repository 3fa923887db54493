"""Issue 10 #8 and #14: every path a live run writes is checked before it trades; a report that cannot
be written says where; a symbol with a newline is never printed raw."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

import btkit
from btkit.errors import BtkitError, ConfigError
from btkit.persist.paths import check_paths, live_run_paths

LONG_STRATEGY = "s" * 120  # the longest key part the state accepts
LONG_SYMBOL = "X" * 120

STRATEGY_FILE = """
import btkit
from btkit.defaults.sim_exchange import SimExchange

sim = SimExchange()
btkit.add_exchange("anysim", lambda symbol, interval, since, limit: sim.get_candles("BTCUSDT", interval, since, limit))


def get_signal(symbol, when, price):
    if (int(when.timestamp()) // 60) % 10:
        return None
    return {"position": "long", "price_take_profit": price * 1.01, "price_stop_loss": price * 0.99,
            "minute_estimated_time": 20}


btkit.add_strategy(STRATEGY, get_signal)
"""


def paper(tmp_path: Path, strategy: str, symbol: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "strategy.py").write_text(STRATEGY_FILE.replace("STRATEGY", repr(strategy)))
    cmd = [
        sys.executable,
        "-m",
        "btkit.cli",
        "paper",
        "--strategy-file",
        "strategy.py",
        "--strategy",
        strategy,
    ]
    cmd += ["--exchange", "anysim", "--symbol", symbol, "--dump-dir", str(tmp_path / "dump")]
    cmd += ["--replay-from", "202402011000", "--replay-to", "202402011130"]
    return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_a_report_name_too_long_for_the_filesystem_is_refused_before_trading(tmp_path: Path) -> None:
    done = paper(tmp_path, LONG_STRATEGY, LONG_SYMBOL)
    assert done.returncode == 2, (done.stdout[-500:], done.stderr[-1500:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "bytes; the filesystem allows" in lines[0] and "nothing was traded" in lines[0]
    assert " opened @ " not in done.stdout
    assert not (tmp_path / "dump" / "signal").exists()  # nothing of the state was even created


def test_the_paths_of_an_ordinary_run_pass_and_each_long_part_is_caught(tmp_path: Path) -> None:
    ok = live_run_paths(
        report_dir=tmp_path / "live",
        symbols=["BTC/USDT:USDT"],
        strategy="smacross",
        exchange="sim",
        state_root=tmp_path / "dump",
    )
    check_paths(ok)
    assert any(p.name.endswith(".md") for p in ok) and any(p.name.endswith(".lock") for p in ok)
    with pytest.raises(ConfigError, match="a name of"):
        check_paths([tmp_path / ("x" * 256)])
    with pytest.raises(ConfigError, match="a path of"):
        check_paths([tmp_path.joinpath(*(["y" * 200] * 25))])


def test_a_report_that_cannot_be_written_names_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from btkit.reporting import files as report_module

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report_module, "_atomic_write", full)
    btkit.use_persistence("file", root=str(tmp_path / "dump"))
    target = tmp_path / "reports"
    with pytest.raises(BtkitError) as err:
        btkit.Live.dump("BTCUSDT", strategy="smacross", exchange="sim", path=target)
    message = str(err.value)
    assert str(target) in message and "ENOSPC" in message and "\n" not in message


def test_a_symbol_with_a_newline_is_printed_escaped(tmp_path: Path) -> None:
    done = paper(tmp_path, "nl", "BTC\nUSDT")
    assert done.returncode == 0, done.stderr[-1500:]
    assert "BTC\\nUSDT" in done.stdout and " opened @ " in done.stdout
    assert not [line for line in done.stdout.splitlines() if line.startswith("USDT")], done.stdout
