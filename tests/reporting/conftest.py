"""One real ``btkit backtest --report html,md,png --export csv,json`` subprocess per test worker (three
days of the offline demo); tests open what it wrote (report_helpers: the CLI, Chromium)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from report_helpers import SHORT, Run, btkit_cli


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    cwd = tmp_path_factory.mktemp("demo")
    out = btkit_cli(cwd, "backtest", "--timerange", SHORT, "--report", "html,md,png", "--export", "csv,json")
    assert out.returncode == 0, out.stderr[-2000:]
    return Run(cwd, out)
