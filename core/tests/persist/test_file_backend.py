"""The file backend: the shared contract suite plus file-specific behaviour (layout, permissions,
orphan temp files, strict reads, fault injection)."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from btkit.errors import CorruptStateError, PersistenceError
from btkit.persist.backend import DOMAINS, Change, Key
from btkit.persist.file import DIR_LOCK_NAME, QUARANTINE_DIR, FileBackend
from btkit.persist.keys import encode_key
from btkit.testing.persistence_contract import HOSTILE_PARTS, PersistenceContract


def doc_path(root: Path, domain: str, key: Key) -> Path:
    enc = encode_key(key)
    return root.joinpath(domain, *enc[:-1], enc[-1] + ".json")


class TestFileBackendContract(PersistenceContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> Callable[[], FileBackend]:
        return lambda: FileBackend(tmp_path / "dump")

    @pytest.fixture
    def corrupt_document(self, tmp_path: Path) -> Callable[[str, Key], None]:
        def corrupt(domain: str, key: Key) -> None:
            doc_path(tmp_path / "dump", domain, key).write_bytes(b'{"v": 1, "torn')

        return corrupt

    @pytest.fixture
    def raw_document(self, tmp_path: Path) -> Callable[[str, Key, bytes], None]:
        def store(domain: str, key: Key, raw: bytes) -> None:
            doc_path(tmp_path / "dump", domain, key).write_bytes(raw)

        return store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "dump"


@pytest.fixture
def backend(root: Path) -> Iterator[FileBackend]:
    b = FileBackend(root)
    b.open(exclusive=True)
    yield b
    b.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".btkit-tmp")]


# ---------------------------------------------------------------- layout
def test_documents_live_at_the_documented_paths(backend: FileBackend, root: Path) -> None:
    backend.write([Change("signal", ("smacross", "BTC/USDT:USDT"), {"v": 1})])
    path = root / "signal" / "smacross" / "BTC%2FUSDT%3AUSDT.json"
    assert json.loads(path.read_text("utf-8")) == {"v": 1}
    assert path.read_text("utf-8").endswith("\n")


def test_hostile_keys_never_escape_the_state_directory(
    tmp_path: Path, backend: FileBackend, root: Path
) -> None:
    for part in HOSTILE_PARTS:
        backend.write([Change("signal", (part, part), {"p": part}), Change("signal", (part,), {"p": part})])
    outside = {p for p in tmp_path.rglob("*") if root not in p.parents and p != root}
    assert outside == set()
    assert {p.name for p in root.iterdir()} == {*DOMAINS, DIR_LOCK_NAME}
    for path in (root / "signal").rglob("*.json"):
        assert path.relative_to(root / "signal").parts[0] not in (".", "..")
    assert len(backend.keys("signal")) == 2 * len(HOSTILE_PARTS)


def test_stray_files_are_ignored_by_keys(
    backend: FileBackend, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend.write([Change("signal", ("s", "A"), {"v": 1})])
    (root / "signal" / "README.txt").write_text("notes")
    (root / "signal" / "bad name.json").write_text("{}")
    (root / "signal" / "s" / ".hidden.json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        assert backend.keys("signal") == [("s", "A")]
    assert "bad name.json" in caplog.text


@pytest.mark.parametrize("domain", ["quarantine", "lock", "../x", "", "a/b"])
def test_reserved_and_unsafe_domains_are_refused(backend: FileBackend, domain: str) -> None:
    with pytest.raises(PersistenceError, match="invalid state domain"):
        backend.write([Change(domain, ("s",), {"v": 1})])


def test_very_long_non_ascii_part_is_refused_clearly(backend: FileBackend) -> None:
    with pytest.raises(PersistenceError, match="use a shorter name"):
        backend.write([Change("signal", ("s", "é" * 100), {"v": 1})])
    assert backend.keys("signal") == []


def test_path_is_an_alias_of_root(root: Path) -> None:
    b = FileBackend(path=root)
    b.open()
    b.write([Change("signal", ("s",), {"v": 1})])
    b.close()
    assert (root / "signal" / "s.json").is_file()


def test_use_before_open_is_an_error(root: Path) -> None:
    with pytest.raises(PersistenceError, match="not open"):
        FileBackend(root).read("signal", ("s",))


# ---------------------------------------------------------------- permissions
def test_directories_are_0700_and_files_0600_whatever_the_umask(root: Path) -> None:
    old = os.umask(0)
    try:
        b = FileBackend(root / "deeper")
        b.open(exclusive=True)
        b.write([Change("signal", ("s", "BTC/USDT"), {"v": 1})])
        b.quarantine("signal", ("s", "BTC/USDT"), "test")
        b.write([Change("signal", ("s", "BTC/USDT"), {"v": 2})])
        b.close()
    finally:
        os.umask(old)
    assert mode(root) == 0o700
    for path in root.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert mode(path) == expected, f"{path} has mode {mode(path):o}"


def test_a_loose_existing_state_directory_is_reported(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    b = FileBackend(root)
    with caplog.at_level(logging.WARNING):
        b.open()
    b.close()
    assert "chmod 700" in caplog.text


# ---------------------------------------------------------------- orphan temp files
def test_open_deletes_orphan_temp_files(root: Path) -> None:
    b = FileBackend(root)
    b.open()
    b.write([Change("signal", ("s", "A"), {"v": 1})])
    b.close()
    orphan = root / "signal" / "s" / ".A.json.0123456789ab.btkit-tmp"
    orphan.write_text('{"v": 2, "half')
    kept = root / QUARANTINE_DIR / "signal" / ".x.btkit-tmp"
    kept.parent.mkdir(parents=True)
    kept.write_text("evidence")
    b.open(exclusive=True)
    try:
        assert not orphan.exists()
        assert kept.exists()
        assert b.read("signal", ("s", "A")) == {"v": 1}
    finally:
        b.close()


def test_non_exclusive_open_leaves_temp_files_of_a_running_owner(root: Path, backend: FileBackend) -> None:
    (root / "signal" / ".A.json.0123456789ab.btkit-tmp").write_text("in flight")
    reader = FileBackend(root)
    reader.open()
    reader.close()
    assert len(leftovers(root)) == 1


# ---------------------------------------------------------------- strict reads and quarantine
@pytest.mark.parametrize(
    "raw",
    [
        b'{"v": 1, "torn',
        b"",
        b'{"price": NaN}',
        b'{"price": Infinity}',
        b'{"price": -Infinity}',
        b'{"price": 1e999}',
        b'{"a": 1, "a": 2}',
        b"[1, 2]",
        b"null",
        b'{"s": "\xff\xfe"}',
    ],
    ids=["torn", "empty", "nan", "inf", "-inf", "overflow", "duplicate", "list", "null", "not-utf8"],
)
def test_unparseable_documents_are_quarantined_with_their_bytes(
    backend: FileBackend, root: Path, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    key = ("s", "BTC/USDT:USDT")
    backend.write([Change("signal", key, {"v": 1})])
    path = doc_path(root, "signal", key)
    path.write_bytes(raw)
    with caplog.at_level(logging.ERROR), pytest.raises(CorruptStateError) as err:
        backend.read("signal", key)
    message = str(err.value)
    assert str(path) in message and "inspect" in message
    moved = list((root / QUARANTINE_DIR / "signal" / "s").glob("BTC%2FUSDT%3AUSDT.*.json"))
    assert len(moved) == 1 and moved[0].read_bytes() == raw
    assert str(moved[0]) in message
    assert Path(f"{moved[0]}.reason").read_text("utf-8").startswith("signal ('s', 'BTC/USDT:USDT'): ")
    assert mode(moved[0]) == 0o600
    assert not path.exists()
    assert any(r.levelno == logging.ERROR and r.name.startswith("btkit") for r in caplog.records)


def test_a_directory_in_place_of_a_document_is_listed_then_quarantined(
    backend: FileBackend, root: Path
) -> None:
    weird = root / "signal" / "s" / "X.json"
    weird.mkdir(parents=True)
    (weird / "inside").write_text("keep me")
    assert backend.keys("signal") == [("s", "X")]
    with pytest.raises(CorruptStateError, match="directory"):
        backend.read("signal", ("s", "X"))
    moved = list((root / QUARANTINE_DIR / "signal" / "s").glob("X.*.json"))
    assert len(moved) == 1 and (moved[0] / "inside").read_text() == "keep me"
    assert backend.read("signal", ("s", "X")) is None


def test_writing_over_a_directory_quarantines_it_first(backend: FileBackend, root: Path) -> None:
    (root / "signal" / "s" / "X.json").mkdir(parents=True)
    backend.write([Change("signal", ("s", "X"), {"v": 1})])
    assert backend.read("signal", ("s", "X")) == {"v": 1}
    assert len(list((root / QUARANTINE_DIR).rglob("X.*.json"))) == 1


def test_written_json_is_strict(backend: FileBackend, root: Path) -> None:
    backend.write([Change("signal", ("s",), {"b": 1.5, "a": "ü", "n": None})])
    text = (root / "signal" / "s.json").read_text("utf-8")
    assert json.loads(text) == {"a": "ü", "b": 1.5, "n": None}
    assert text.index('"a"') < text.index('"b"')  # sorted keys: stable, diffable files


# ---------------------------------------------------------------- fault injection
KEY = ("s", "BTCUSDT")


def _failing(
    real: Callable[..., object], err: int, calls: list[int], fail_on: int = 1
) -> Callable[..., object]:
    def fake(*args: object) -> object:
        calls.append(1)
        if len(calls) == fail_on:
            raise OSError(err, os.strerror(err))
        return real(*args)

    return fake


@pytest.mark.parametrize("err", [errno.EIO, errno.ENOSPC])
@pytest.mark.parametrize("target", ["write", "fsync", "replace", "close"])
def test_failed_write_fsync_or_replace_leaves_the_old_document(
    backend: FileBackend, root: Path, monkeypatch: pytest.MonkeyPatch, target: str, err: int
) -> None:
    backend.write([Change("signal", KEY, {"v": "old"})])
    calls: list[int] = []
    monkeypatch.setattr(os, target, _failing(getattr(os, target), err, calls))
    with pytest.raises(PersistenceError) as exc:
        backend.write([Change("signal", KEY, {"v": "new", "pad": "x" * 5000})])
    monkeypatch.undo()
    message = str(exc.value)
    assert "\n" not in message and "did not happen" in message and errno.errorcode[err] in message
    assert backend.read("signal", KEY) == {"v": "old"}
    assert leftovers(root) == []
    backend.write([Change("signal", KEY, {"v": "after"})])  # the backend still works afterwards
    assert backend.read("signal", KEY) == {"v": "after"}


def test_a_failed_fsync_is_never_retried(backend: FileBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend.write([Change("signal", KEY, {"v": "old"})])
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", _failing(os.fsync, errno.EIO, calls))
    with pytest.raises(PersistenceError):
        backend.write([Change("signal", KEY, {"v": "new"})])
    assert len(calls) == 1


def test_partial_write_then_failure_leaves_the_old_document(
    backend: FileBackend, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend.write([Change("signal", KEY, {"v": "old"})])
    real_write = os.write
    calls: list[int] = []

    def short_then_enospc(fd: int, data: bytes) -> int:
        calls.append(1)
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_enospc)
    with pytest.raises(PersistenceError, match="ENOSPC"):
        backend.write([Change("signal", KEY, {"v": "new"})])
    monkeypatch.undo()
    assert len(calls) == 2
    assert backend.read("signal", KEY) == {"v": "old"}
    assert leftovers(root) == []


def test_failed_directory_fsync_is_reported(backend: FileBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend.write([Change("signal", KEY, {"v": "old"})])
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", _failing(os.fsync, errno.EIO, calls, fail_on=2))
    with pytest.raises(PersistenceError, match="power loss"):
        backend.write([Change("signal", KEY, {"v": "new"})])


def test_batch_stops_at_the_first_failure(backend: FileBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not atomic across documents: documents before the failure are written, the rest are not."""
    assert backend.atomic_batches is False
    calls: list[int] = []
    monkeypatch.setattr(os, "replace", _failing(os.replace, errno.EIO, calls, fail_on=2))
    with pytest.raises(PersistenceError):
        backend.write([Change("signal", (s,), {"v": 1}) for s in ("A", "B", "C")])
    monkeypatch.undo()
    assert backend.keys("signal") == [("A",)]


def test_failed_delete_keeps_the_document(backend: FileBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    backend.write([Change("signal", KEY, {"v": "old"})])
    monkeypatch.setattr(os, "unlink", _failing(os.unlink, errno.EIO, []))
    with pytest.raises(PersistenceError, match="did not happen"):
        backend.write([Change("signal", KEY, None)])
    monkeypatch.undo()
    assert backend.read("signal", KEY) == {"v": "old"}


def test_uncreatable_state_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(PersistenceError, match=r"cannot create state directory .*check the path"):
        FileBackend(tmp_path / "a-file" / "dump").open()
