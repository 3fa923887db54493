"""Shared by the report tests: the CLI as a subprocess, its report paths, and headless Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHORT = "20240101-20240104"


def btkit_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BTKIT") and k != "NO_COLOR"}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "btkit.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=180,
    )


class Run:
    def __init__(self, cwd: Path, out: subprocess.CompletedProcess[str]) -> None:
        self.cwd, self.stdout, self.stderr = cwd, out.stdout, out.stderr
        paths = [
            Path(ln.split("report: ", 1)[1]) for ln in out.stdout.splitlines() if ln.startswith("report: ")
        ]
        self.paths = [(cwd / p).resolve() for p in paths]

    def one(self, suffix: str) -> Path:
        found = [p for p in self.paths if p.suffix == suffix]
        assert len(found) == 1, (suffix, self.paths)
        return found[0]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed; .ci/run installs the Debian package")
    return exe


def run_chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Headless Chromium; its stderr carries every console message (``INFO:CONSOLE``) of the page."""
    cmd = [
        chromium(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={cwd / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
