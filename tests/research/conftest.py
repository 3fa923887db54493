"""Shared pieces of the research tests: a short sim range, a clean btkit, the CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

START, END = "20240101", "20240115"  # two weeks of the simulated exchange: ~20 trades per trial
TIMERANGE = f"{START}-{END}"


@pytest.fixture
def clean(btkit_clean: None) -> Iterator[None]:
    from btkit.research import walker

    walker.WALKERS.clear()
    walker._DATA.clear()
    yield
    walker.WALKERS.clear()
    walker._DATA.clear()


def btkit_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``btkit ARGS`` in a real subprocess (this interpreter), no progress bar noise."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "btkit.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
