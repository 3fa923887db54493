"""``btkit backtest`` as a real subprocess in a temporary working directory (offline: the simulated
exchange and the smacross demo strategy from its installed package)."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SHORT = "20240101-20240104"  # three days of the demo: enough for trades, quick to run


def btkit_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BTKIT")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "btkit.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def report_paths(stdout: str) -> list[Path]:
    return [Path(line.split("report: ", 1)[1]) for line in stdout.splitlines() if line.startswith("report: ")]


def test_backtest_runs_the_demo_and_writes_the_report(tmp_path: Path) -> None:
    out = btkit_cli(tmp_path, "backtest", "--timerange", SHORT, "--export", "csv")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "backtest smacross on sim BTCUSDT 2024-01-01" in out.stdout
    assert "BTCUSDT" in out.stdout and "win rate" in out.stdout  # the summary table
    paths = report_paths(out.stdout)
    md = [p for p in paths if p.suffix == ".md"]
    exported = [p for p in paths if p.suffix == ".csv"]
    assert len(md) == 1 and len(exported) == 1
    report = (tmp_path / md[0]).resolve()
    assert report.is_file() and report.is_relative_to(tmp_path.resolve() / "dump" / "backtest")
    assert report.name.startswith("BTCUSDT_smacross_sim_")
    text = report.read_text(encoding="utf-8")
    assert text.startswith("# Backtest BTCUSDT") and "Closed signals" in text
    assert report.with_suffix(".html").is_file()  # default --report html,md
    assert not report.with_suffix(".png").exists()  # png only when asked
    with (tmp_path / exported[0]).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "the demo made no trades in three days"
    for directory in (tmp_path / "dump", tmp_path / "dump" / "backtest"):  # a later `btkit paper` keeps
        assert directory.stat().st_mode & 0o777 == 0o700  # its state here: private from the start


DIP = """
import btkit
from helper_levels import TAKE_PROFIT  # a module beside the strategy file


def get_signal(symbol, when, current_price):
    c = btkit.get_candles(symbol, "5m", 12)
    if c.close[-1] < c.close.min() * 1.001:
        return btkit.Signal(
            position="long",
            price_take_profit=current_price * TAKE_PROFIT,
            price_stop_loss=current_price * 0.995,
            minute_estimated_time=120,
        )


btkit.add_strategy("dip", get_signal, interval="5m")

if __name__ == "__main__":
    raise SystemExit("the file is imported as a module, not run as a script")
"""


@pytest.mark.parametrize("verb", ["backtest", "paper"])
def test_a_strategy_in_a_plain_script_runs_through_strategy_file(tmp_path: Path, verb: str) -> None:
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "dip.py").write_text(DIP, encoding="utf-8")
    (tmp_path / "strategies" / "helper_levels.py").write_text("TAKE_PROFIT = 1.01\n", encoding="utf-8")
    when = (
        ["--timerange", SHORT]
        if verb == "backtest"
        else ["--replay-from", "20240101", "--replay-to", "20240102"]
    )
    out = btkit_cli(tmp_path, verb, "--strategy-file", "strategies/dip.py", "--strategy", "dip", *when)
    assert out.returncode == 0, out.stderr
    assert "error" not in out.stderr.lower() and "Traceback" not in out.stderr
    # backtest prints "report: <path>", paper "BTCUSDT: n closed, total pnl …; report: <path>"
    reports = [Path(line.rsplit("report: ", 1)[1]) for line in out.stdout.splitlines() if "report: " in line]
    reports = [p for p in reports if p.suffix == ".md"]
    assert reports and "_dip_sim_" in reports[0].name, out.stdout
    assert "Closed signals" in (tmp_path / reports[0]).read_text(encoding="utf-8")


def test_a_strategy_file_that_fails_to_import_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import btkit\nraise ValueError('no API key in this file')\n")
    out = btkit_cli(tmp_path, "backtest", "--strategy-file", "broken.py", "--strategy", "broken")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "btkit: error: strategy file broken.py failed to import (ValueError: no API key in this file); "
        "fix it and run again"
    ]


@pytest.mark.parametrize(
    ("args", "codes", "says"),
    [
        (["backtest", "--timerange", "2024x"], {2}, "timerange"),
        (["backtest", "--timerange", "20240301-20240101"], {2}, "end must be after the start"),
        (["backtest", "--timerange", SHORT, "--strategy", "no-such-strategy"], {2}, "no-such-strategy"),
        (["backtest", "--timerange", SHORT, "--exchange", "no-such-exchange"], {2}, "no-such-exchange"),
        (["backtest", "--config", "missing.toml"], {2}, "missing.toml"),
        (["backtest", "--strategy-file", "missing.py"], {2}, "strategy file missing.py does not exist"),
        (["backtest", "--symbol", "BTCUSDT", "--symbol", "BTCUSDT"], {2}, "symbol BTCUSDT is given twice"),
    ],
    ids=[
        "bad-timerange",
        "reversed-timerange",
        "unknown-strategy",
        "unknown-exchange",
        "missing-config",
        "missing-strategy-file",
        "repeated-symbol",
    ],
)
def test_usage_errors_are_one_line_without_a_traceback(
    tmp_path: Path, args: list[str], codes: set[int], says: str
) -> None:
    out = btkit_cli(tmp_path, *args)
    assert out.returncode in codes, (out.returncode, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("btkit: error:")]
    assert len(errors) == 1 and says in errors[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "dump").exists()


def test_an_invalid_engine_constant_in_btkit_toml_exits_2(tmp_path: Path) -> None:
    (tmp_path / "btkit.toml").write_text("[engine]\npercent_fee = -1\n", encoding="utf-8")
    out = btkit_cli(tmp_path, "backtest", "--timerange", SHORT)
    assert out.returncode == 2
    assert "percent_fee" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("toml", "env", "says"),
    [
        ('[run]\nsymbols = ["ETHUSDT"]\n', {}, "unknown key 'symbols' in [run]"),
        ("[exchange]\nofline = true\n", {}, "unknown key 'ofline' in [exchange]"),
        ("", {"BTKIT__RUN__TIME_RANGE": SHORT}, "unknown key 'time_range' in [run]"),
        ("[live]\nspeed = 60\n", {}, "unknown section [live]"),
    ],
    ids=["run-typo", "exchange-typo", "environment-typo", "unknown-section"],
)
def test_a_misspelt_setting_is_an_error_never_a_silent_default(
    tmp_path: Path, toml: str, env: dict[str, str], says: str
) -> None:
    (tmp_path / "btkit.toml").write_text(toml, encoding="utf-8")
    for verb in ("backtest", "paper"):
        out = btkit_cli(tmp_path, verb, env=env)
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().count("\n") == 0 and says in out.stderr, out.stderr
    assert not (tmp_path / "dump").exists()


def test_run_dump_dir_from_btkit_toml_holds_backtest_reports_and_live_state(tmp_path: Path) -> None:
    (tmp_path / "btkit.toml").write_text('[run]\ndump_dir = "bot"\n', encoding="utf-8")
    out = btkit_cli(tmp_path, "backtest", "--timerange", SHORT)
    assert out.returncode == 0, out.stderr
    out = btkit_cli(tmp_path, "paper", "--replay-from", "20240101", "--replay-to", "20240102")
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "bot" / "backtest").glob("*.md")) and list(
        (tmp_path / "bot" / "live").glob("*.md")
    )
    # the live state went there as well, the replay's apart from wall-clock state (issue 11)
    assert (tmp_path / "bot" / "replay" / "20240101-20240102" / "strategy").is_dir()
    assert not (tmp_path / "bot" / "strategy").exists()
    assert not (tmp_path / "dump").exists()


def test_precedence_is_cli_over_environment_over_file(tmp_path: Path) -> None:
    (tmp_path / "btkit.toml").write_text(
        '[run]\nstrategy = "no-such-strategy"\ntimerange = "20240101-20240301"\n[engine]\npercent_fee = -1\n',
        encoding="utf-8",
    )
    # the environment repairs the engine constant and the timerange; the command line names the strategy
    env = {"BTKIT__ENGINE__PERCENT_FEE": "0.05", "BTKIT__RUN__TIMERANGE": SHORT}
    out = btkit_cli(tmp_path, "backtest", "--strategy", "smacross", env=env)
    assert out.returncode == 0, out.stderr
    assert "backtest smacross on sim BTCUSDT 2024-01-01 → 2024-01-04" in out.stdout
    report = next(p for p in report_paths(out.stdout) if p.suffix == ".md")
    assert "| Fee per fill | 0.05% |" in (tmp_path / report).read_text(encoding="utf-8")


def test_several_symbols_sharing_a_risk_profile_backtest_as_one_portfolio(tmp_path: Path) -> None:
    """examples/btkit.toml: three symbols, `max_positions = 1` across them. The backtest runs them in
    lockstep, so at no instant do two symbols hold a position (the exported trades prove it)."""
    example = Path(__file__).resolve().parents[2] / "examples" / "btkit.toml"
    out = btkit_cli(
        tmp_path, "backtest", "--config", str(example), "--timerange", "20240101-20240115", "--export", "json"
    )
    assert out.returncode == 0, out.stderr
    trades = []
    for path in report_paths(out.stdout):
        if path.suffix == ".json":
            trades += json.loads((tmp_path / path).read_text(encoding="utf-8"))
        else:
            assert "Risk rejections" in (tmp_path / path).read_text(encoding="utf-8")
    assert len({t["symbol"] for t in trades}) == 3 and len(trades) >= 10
    held = sorted((t["opened_at"], t["closed_at"]) for t in trades)
    assert all(nxt[0] >= prev[1] for prev, nxt in itertools.pairwise(held)), "two positions at once"
    assert "portfolio: 3 symbols share risk profiles" in out.stdout
