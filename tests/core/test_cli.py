"""``btkit backtest`` as a real subprocess in a temporary working directory (offline: the simulated
exchange and the smacross demo strategy from its installed package)."""

from __future__ import annotations

import csv
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
    assert report.with_suffix(".png").is_file()
    with (tmp_path / exported[0]).open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows, "the demo made no trades in three days"


@pytest.mark.parametrize(
    ("args", "codes", "says"),
    [
        (["backtest", "--timerange", "2024x"], {2}, "timerange"),
        (["backtest", "--timerange", "20240301-20240101"], {2}, "end must be after the start"),
        (["backtest", "--timerange", SHORT, "--strategy", "no-such-strategy"], {1, 2}, "no-such-strategy"),
        (["backtest", "--timerange", SHORT, "--exchange", "no-such-exchange"], {1, 2}, "no-such-exchange"),
        (["backtest", "--config", "missing.toml"], {2}, "missing.toml"),
    ],
    ids=["bad-timerange", "reversed-timerange", "unknown-strategy", "unknown-exchange", "missing-config"],
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
