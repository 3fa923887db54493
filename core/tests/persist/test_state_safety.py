"""Issue 10: the state directory cannot be reached twice, escaped or poisoned (file backend)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from btkit.errors import CorruptStateError, PersistenceError, StateLockedError
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


# ---------------------------------------------------------------- #11: no symlink is followed under the state root
def _outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    return out


def _untouched(out: Path) -> None:
    assert sorted(p.name for p in out.rglob("*")) == ["precious.txt"]
    assert (out / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("where", ["signal/smacross", "history", "live", "quarantine"])
def test_a_symlinked_directory_inside_the_state_root_is_refused_at_open(tmp_path: Path, where: str) -> None:
    root, out = tmp_path / "dump", _outside(tmp_path)
    (root / where).parent.mkdir(parents=True, exist_ok=True)
    (root / where).symlink_to(out, target_is_directory=True)
    backend = FileBackend(root)
    with pytest.raises(PersistenceError, match="symlink inside the state directory") as err:
        backend.open(exclusive=True)
    assert "\n" not in str(err.value) and where.split("/")[-1] in str(err.value)
    backend.close()
    _untouched(out)


def test_a_symlinked_directory_planted_while_running_gets_no_write(tmp_path: Path) -> None:
    root, out = tmp_path / "dump", _outside(tmp_path)
    backend = FileBackend(root)
    backend.open(exclusive=True)
    try:
        (root / "signal" / "smacross").symlink_to(out, target_is_directory=True)
        with pytest.raises(PersistenceError, match="symlink"):
            backend.write([Change("signal", ("smacross", "BTCUSDT"), {"v": 1})])
        with pytest.raises(PersistenceError, match="symlink"):
            backend.read("signal", ("smacross", "BTCUSDT"))
        with pytest.raises(PersistenceError, match="symlink"):
            backend.write([Change("signal", ("smacross", "BTCUSDT"), None)])
    finally:
        backend.close()
    _untouched(out)


def test_a_symlink_where_a_document_belongs_is_quarantined_not_followed(tmp_path: Path) -> None:
    root, out = tmp_path / "dump", _outside(tmp_path)
    backend = FileBackend(root)
    backend.open(exclusive=True)
    try:
        backend.write([Change("signal", ("smacross", "ETHUSDT"), {"v": 1})])
        doc = root / "signal" / "smacross" / "BTCUSDT.json"
        doc.symlink_to(out / "precious.txt")
        with pytest.raises(CorruptStateError, match="symlink"):
            backend.read("signal", ("smacross", "BTCUSDT"))
        assert not doc.is_symlink() and not doc.exists()
        backend.write([Change("signal", ("smacross", "BTCUSDT"), {"v": 2})])
        assert backend.read("signal", ("smacross", "BTCUSDT")) == {"v": 2}
    finally:
        backend.close()
    _untouched(out)
    # the quarantined link stays as found and does not keep the next start from opening
    again = FileBackend(root)
    again.open(exclusive=True)
    again.close()


def test_a_fifo_where_a_document_belongs_does_not_hang_the_read(tmp_path: Path) -> None:
    root = tmp_path / "dump"
    backend = FileBackend(root)
    backend.open(exclusive=True)
    try:
        (root / "signal" / "smacross").mkdir()
        os.mkfifo(root / "signal" / "smacross" / "BTCUSDT.json")
        with pytest.raises(CorruptStateError, match="not a regular file"):
            backend.read("signal", ("smacross", "BTCUSDT"))
    finally:
        backend.close()
