"""``btkit optimize`` end to end in a real subprocess: the ranked table, one CSV row per trial with a column
per parameter, the heatmap and the best trial's report; bad input is one line and exit 2; a SIGKILLed run
resumes with --resume to the same table without running a finished trial twice."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import TIMERANGE, btkit_cli

GRID = ("--param", "fast=5:15:5", "--param", "slow=20:40:20")


def _rows(tmp_path: Path) -> list[dict[str, str]]:
    (run,) = (tmp_path / "dump" / "optimize").iterdir()
    return list(csv.DictReader((run / "trials.csv").open()))


def test_prints_the_table_and_writes_csv_heatmap_and_report(tmp_path: Path) -> None:
    out = btkit_cli(
        "optimize", "--strategy", "smacross-array", *GRID, "--constraint", "fast < slow", "--timerange", TIMERANGE,
        "--executor", "process", "--jobs", "2", "--metric", "total_pnl", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "rank  trial  fast  slow" in out.stdout
    rows = _rows(tmp_path)
    assert len(rows) == 6 and {"fast", "slow", "sharpe_ratio", "total_pnl", "status"} <= set(rows[0])
    best = min(rows, key=lambda r: int(r["rank"]))
    assert float(best["total_pnl"]) == max(float(r["total_pnl"]) for r in rows)
    (run,) = (tmp_path / "dump" / "optimize").iterdir()
    png = run / "heatmap-fast-slow.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = next(run.glob("BTCUSDT_smacross-array_*.md")).read_text()
    assert f"| fast | {best['fast']} |" in report and f"| slow | {best['slow']} |" in report


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--param", "speed=1:3"), "no parameter 'speed'"),
        (("--param", "fast=30:10:5"), "range is empty"),
        (
            ("--param", "fast=5:10:5", "--param", "slow=20:40:20", "--constraint", "fast > slow"),
            "no parameter combination",
        ),
        (("--param", "fast=5:10:5", "--metric", "sharpe_ration"), "unknown metric 'sharpe_ration'"),
        (("--param", "fast=5:90:5"), "outside 5..50"),
        (("--param", "fast=5:10:5", "--constraint", "fats < slow"), "names 'fats'"),
        (("--param", "fast=5:10:5", "--method", "annealing"), "unknown method"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], words: str, capsys: pytest.CaptureFixture[str], btkit_clean: None
) -> None:
    from btkit.cli import main

    code = main(["optimize", *args, "--timerange", "20240101-20240102", "--dump-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("btkit: error:") and words in lines[0], lines


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    args = [
        "optimize", "--strategy", "smacross-array", "--param", "fast=5:27:2",
        "--timerange", TIMERANGE, "--no-progress",
    ]  # fmt: skip
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    killed.mkdir()
    whole.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "btkit.cli", *args], cwd=killed, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    jsonl = None
    while time.monotonic() < deadline:
        found = (
            list((killed / "dump" / "optimize").glob("*/trials.jsonl")) if (killed / "dump").exists() else []
        )
        if found and sum('"kind": "trial"' in line for line in found[0].read_text().splitlines()) >= 3:
            jsonl = found[0]
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert jsonl is not None, "the run stored no trials in time"
    kept = [json.loads(line) for line in jsonl.read_text().splitlines() if '"kind": "trial"' in line]
    assert 3 <= len(kept) < 12
    resumed = btkit_cli(*args, "--resume", cwd=killed)
    assert resumed.returncode == 0, resumed.stderr
    assert f"12 trial(s) ({12 - len(kept)} run now)" in resumed.stdout
    docs = [json.loads(line) for line in jsonl.read_text().splitlines()]
    indexes = [d["index"] for d in docs if d["kind"] == "trial"]
    assert sorted(indexes) == list(range(12))  # every trial once: none ran twice
    full = btkit_cli(*args, cwd=whole)
    assert full.returncode == 0, full.stderr

    def table(out: str) -> list[str]:
        lines = out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("rank"))
        end = next(i for i, line in enumerate(lines) if line.startswith("trials: "))
        return lines[start:end]

    assert table(resumed.stdout) == table(full.stdout)
    assert _rows(killed) == _rows(whole)


def test_ctrl_c_keeps_the_finished_trials(tmp_path: Path) -> None:
    args = [
        "optimize", "--strategy", "smacross-array", "--param", "fast=5:27:2", "--timerange", TIMERANGE,
        "--executor", "process", "--jobs", "2", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "btkit.cli", *args], cwd=tmp_path, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = list(tmp_path.glob("dump/optimize/*/trials.jsonl"))
        if found and sum('"kind": "trial"' in line for line in found[0].read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole process group
    out, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert proc.returncode == 130, err
    assert "continue with --resume" in out
    rows = _rows(tmp_path)
    assert 2 <= len(rows) < 12 and all(r["status"] == "ok" for r in rows)
