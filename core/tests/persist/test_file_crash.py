"""Real processes against the file backend: SIGKILL at random instants, a second live process on the
same directory, and a real write failure from the kernel (file size limit → EFBIG)."""

from __future__ import annotations

import os
import random
import resource
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from btkit.errors import PersistenceError, StateLockedError
from btkit.persist.backend import Change
from btkit.persist.file import FileBackend

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")

KEY = ("smacross", "BTC/USDT:USDT")


def document(version: int) -> dict[str, object]:
    # sizes vary a lot between versions, so a torn or mixed file would not parse or not match
    return {"version": version, "pad": "x" * ((version * 7919) % 6000), "tail": version}


def fork_child(body: Callable[[int], None]) -> tuple[int, int]:
    """Fork a child running ``body(write_fd)``; return (pid, read_fd). The child never returns."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(rfd)
            body(wfd)
        except BaseException:
            code = 3
        os._exit(code)
    os.close(wfd)
    return pid, rfd


def read_acks(rfd: int, *, first_timeout: float = 20.0) -> bool:
    ready, _, _ = select.select([rfd], [], [], first_timeout)
    return bool(ready)


def drain(rfd: int) -> bytes:
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    return b"".join(chunks)


def rewrite_forever(root: Path) -> Callable[[int], None]:
    def body(wfd: int) -> None:
        b = FileBackend(root)
        b.open(exclusive=True)
        current = b.read("signal", KEY)
        version = 0 if current is None else int(current["version"])
        while True:
            version += 1
            b.write([Change("signal", KEY, document(version))])
            os.write(wfd, version.to_bytes(8, "little"))

    return body


@pytest.mark.slow
def test_sigkill_at_random_instants_never_leaves_a_torn_document(tmp_path: Path) -> None:
    root = tmp_path / "dump"
    rng = random.Random(20240101)
    orphans_seen = 0
    last_version = 0
    for _round in range(50):
        pid, rfd = fork_child(rewrite_forever(root))
        assert read_acks(rfd), "child never wrote its first document"
        # kill somewhere in the middle of a later write: each write is ~1 ms of syscalls
        select.select([], [], [], rng.uniform(0.0, 0.006))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child ended with {status}"
        acks = drain(rfd)
        acked = int.from_bytes(acks[-8:], "little") if len(acks) >= 8 else last_version
        orphans_seen += any(p.name.endswith(".btkit-tmp") for p in root.rglob("*"))

        b = FileBackend(root)
        b.open(exclusive=True)  # the dead child's lock is gone with it
        try:
            doc = b.read("signal", KEY)
            assert doc is not None
            version = doc["version"]
            assert doc == document(version), "document is a mix of two versions"
            # every acknowledged write survived; at most the one in flight went further
            assert acked <= version <= acked + 1
            assert version >= last_version
            last_version = version
            assert not any(p.name.endswith(".btkit-tmp") for p in root.rglob("*"))
            assert not (root / "quarantine").exists()
        finally:
            b.close()
    assert last_version >= 50
    print(
        f"50 SIGKILL rounds, {last_version} versions written, "
        f"orphan temp files cleaned in {orphans_seen} rounds"
    )


CHILD_OWNER = textwrap.dedent(
    """
    import sys
    from btkit.persist.file import FileBackend
    b = FileBackend(sys.argv[1])
    b.open(exclusive=True)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_a_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "dump"
    owner = subprocess.Popen(
        [sys.executable, "-c", CHILD_OWNER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline().strip() == "ready"
        b = FileBackend(root)
        with pytest.raises(StateLockedError) as err:
            b.open(exclusive=True)
        assert str(err.value) == (
            f"another btkit live process owns {root}; stop it or use another --dump-dir"
        )
        reader = FileBackend(root)  # reports and `persistence copy` may still read
        reader.open()
        reader.close()
    finally:
        owner.kill()  # SIGKILL: the owner cannot clean up, the kernel drops its lock
        owner.wait()
    b = FileBackend(root)
    b.open(exclusive=True)
    b.close()


def test_a_real_write_failure_from_the_kernel_keeps_the_old_document(tmp_path: Path) -> None:
    root = tmp_path / "dump"
    b = FileBackend(root)
    b.open()
    b.write([Change("signal", KEY, {"v": "old"})])
    b.close()

    def body(wfd: int) -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, hard))  # files may not grow past 2000 bytes
        child = FileBackend(root)
        child.open(exclusive=True)
        try:
            child.write([Change("signal", KEY, {"v": "new", "pad": "x" * 10_000})])
        except PersistenceError as exc:
            os.write(wfd, str(exc).encode())
            return
        os.write(wfd, b"WROTE")

    pid, rfd = fork_child(body)
    _, status = os.waitpid(pid, 0)
    message = drain(rfd).decode()
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert "EFBIG" in message and "did not happen" in message
    b = FileBackend(root)
    b.open()
    try:
        assert b.read("signal", KEY) == {"v": "old"}
        assert not any(p.name.endswith(".btkit-tmp") for p in root.rglob("*"))
    finally:
        b.close()
