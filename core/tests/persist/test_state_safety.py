"""Issue 10: the state directory cannot be reached twice, escaped or poisoned (file backend)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from btkit.errors import StateLockedError
from btkit.persist.backend import Change
from btkit.persist.file import FileBackend


# ---------------------------------------------------------------- #2: one lock per state, whatever the path
@pytest.mark.parametrize("alias", ["symlink", "dotdot", "relative"])
def test_one_live_owner_per_state_directory_whatever_the_path(
    tmp_path: Path, alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "dump"
    owner = FileBackend(root)
    owner.open(exclusive=True)
    try:
        if alias == "symlink":
            (tmp_path / "link").symlink_to(root, target_is_directory=True)
            other = tmp_path / "link"
        elif alias == "dotdot":
            (tmp_path / "sub").mkdir()
            other = tmp_path / "sub" / ".." / "dump"
        else:
            monkeypatch.chdir(tmp_path)
            other = Path("dump")
        second = FileBackend(other)
        with pytest.raises(StateLockedError, match="another btkit live process owns"):
            second.open(exclusive=True)
        second.close()
    finally:
        owner.close()


# ---------------------------------------------------------------- #5: every command that reads state
def test_persistence_copy_of_a_deeply_nested_document_exits_4_and_writes_nothing(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    backend = FileBackend(src)
    backend.open()
    backend.write([Change("signal", ("smacross", "ETHUSDT"), {"v": 1})])
    backend.close()
    bad = src / "signal" / "smacross" / "BTCUSDT.json"
    bad.write_bytes(b'{"v": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    cmd = [sys.executable, "-m", "btkit.cli", "persistence", "copy", "--from", "file", "--from-option"]
    cmd += [f"root={src}", "--to", "file", "--to-option", f"root={dst}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 4, (done.stdout, done.stderr)
    last = done.stderr.strip().splitlines()[-1]  # after the quarantine's own ERROR log line
    assert last.startswith("btkit: error:") and "BTCUSDT" in last and "quarantine" in last, done.stderr
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    assert not bad.exists() and list((src / "quarantine").rglob("BTCUSDT*.json"))
    assert not [p for p in dst.rglob("*.json")]
