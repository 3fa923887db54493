"""Issue 6 from the command line: ``btkit paper`` on each backend selected by config, and
``btkit persistence copy`` moving live state between backends (then ``btkit report`` reads it)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from btkit_redis.testing import REDIS_SERVER, RedisServer

REPLAY = ["--replay-from", "20240105", "--replay-to", "20240107"]


def btkit(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "btkit.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def write_config(path: Path, persistence: str) -> Path:
    path.write_text(
        '[run]\nstrategy = "smacross"\nexchange = "sim"\nsymbol = ["BTCUSDT", "ETHUSDT"]\n\n' + persistence
    )
    return path


def closed_in_history(out: str) -> int:
    return sum(
        int(line.split(": ")[1].split()[0]) for line in out.splitlines() if " closed, total pnl" in line
    )


def test_paper_on_sqlite_selected_by_config_then_copied_to_files(tmp_path: Path) -> None:
    db = tmp_path / "state" / "bot.sqlite3"
    db.parent.mkdir()
    cfg = write_config(tmp_path / "btkit.toml", f'[persistence]\nbackend = "sqlite"\npath = "{db}"\n')
    done = btkit(
        "paper", "--config", str(cfg), *REPLAY, "--dump-dir", str(tmp_path / "reports"), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert not db.exists()  # a replay keeps its state apart (issue 11), in its own database per range
    db = tmp_path / "state" / "replay" / "20240105-20240107" / "bot.sqlite3"
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables, "no schema in the sqlite file"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not (tmp_path / "reports" / "signal").exists()  # state went to sqlite, not to files
    closed = closed_in_history(done.stdout)
    assert closed > 0, done.stdout

    copied = btkit(
        "persistence", "copy", "--from", "sqlite", "--to", "file",
        "--from-option", f"path={db}", "--to-option", f"root={tmp_path / 'files'}", cwd=tmp_path,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    assert int(copied.stdout.split()[1]) >= 6  # signal/schedule/strategy/history … of two symbols
    # run where no btkit.toml selects sqlite, so the report reads the copied files
    report = btkit("report", "--dump-dir", str(tmp_path / "files"), cwd=tmp_path / "files")
    assert report.returncode == 0, report.stderr
    assert closed_in_history(report.stdout) == closed  # the same history, read from the file backend


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not on PATH (apt-get install redis-server)")
def test_paper_on_redis_selected_by_environment(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        cfg = write_config(tmp_path / "btkit.toml", '[persistence]\nbackend = "redis"\nbot = "cli-test"\n')
        env = {"BTKIT__PERSISTENCE__URL": server.url}
        done = btkit(
            "paper", "--config", str(cfg), *REPLAY, "--dump-dir", str(tmp_path / "r"), cwd=tmp_path, env=env
        )
        assert done.returncode == 0, done.stderr
        with server.client() as client:
            keys = [k.decode() for k in client.keys("btkit:cli-test-replay-20240105-20240107:*")]
            assert not client.keys("btkit:cli-test:*")  # wall-clock state untouched by the rehearsal
        assert any(":history:" in k for k in keys) and any(":signal:" in k for k in keys), keys
    finally:
        server.kill()


def test_an_uninstalled_backend_names_the_package_to_install(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "btkit.toml", '[persistence]\nbackend = "redis"\n')
    env = {"BTKIT_DISABLE_PLUGINS": "btkit-redis"}  # as if only btkit were installed
    done = btkit("paper", "--config", str(cfg), *REPLAY, cwd=tmp_path, env=env)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("btkit: error:") and "pip install btkit-redis" in lines[-1]
    assert "Traceback" not in done.stderr
