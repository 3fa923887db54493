"""btkit-sqlite: the shared contract suite, real SIGKILL crashes mid-batch, real transaction
failures, migrations, permissions and registration."""

from __future__ import annotations

import os
import random
import select
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pluggy
import pytest

import btkit_sqlite
from btkit import hookspecs
from btkit.errors import CorruptStateError, PersistenceError, StateLockedError
from btkit.persist.backend import DOMAINS, Change, Key
from btkit.persist.copy import copy_state
from btkit.persist.file import FileBackend
from btkit.persist.keys import encode_key
from btkit.testing.persistence_contract import HOSTILE_PARTS, SAMPLE, PersistenceContract
from btkit_sqlite import SCHEMA_VERSION, SqliteBackend


def raw(path: Path) -> sqlite3.Connection:
    """A separate, plain connection: the test looks at the database behind the backend's back."""
    return sqlite3.connect(path, isolation_level=None)


class TestSqliteBackendContract(PersistenceContract):
    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> Callable[[], SqliteBackend]:
        return lambda: SqliteBackend(tmp_path / "state" / "btkit.sqlite3")

    @pytest.fixture
    def corrupt_document(self, tmp_path: Path) -> Callable[[str, Key], None]:
        def corrupt(domain: str, key: Key) -> None:
            with raw(tmp_path / "state" / "btkit.sqlite3") as conn:
                n = conn.execute(
                    "UPDATE documents SET body = ? WHERE domain = ? AND key = ?",
                    (b'{"v": 1, "torn\xff', domain, "/".join(encode_key(key))),
                ).rowcount
            assert n == 1

        return corrupt

    @pytest.fixture
    def raw_document(self, tmp_path: Path) -> Callable[[str, Key, bytes], None]:
        def store(domain: str, key: Key, raw: bytes) -> None:
            with sqlite3.connect(tmp_path / "state" / "btkit.sqlite3", isolation_level=None) as conn:
                conn.execute(
                    "INSERT OR REPLACE INTO documents (domain, key, body) VALUES (?, ?, ?)",
                    (domain, "/".join(encode_key(key)), raw),
                )

        return store


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "dump" / "btkit.sqlite3"


@pytest.fixture
def backend(db: Path) -> Iterator[SqliteBackend]:
    b = SqliteBackend(db)
    b.open(exclusive=True)
    yield b
    b.close()


# ---------------------------------------------------------------- storage settings
def test_wal_full_sync_and_schema_version(backend: SqliteBackend, db: Path) -> None:
    backend.write([Change("signal", ("s",), {"v": 1})])
    with raw(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert backend._conn is not None
    assert backend._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        b = SqliteBackend(tmp_path / "new" / "btkit.sqlite3")
        b.open(exclusive=True)
        b.write([Change("signal", ("s",), {"v": 1})])
        created = sorted((tmp_path / "new").iterdir())
        assert {p.name for p in created} >= {"btkit.sqlite3", "btkit.sqlite3-wal", "btkit.sqlite3.lock"}
        for p in created:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
        b.close()
    finally:
        os.umask(old)


def test_registered_as_sqlite() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(btkit_sqlite)
    pm.check_pending()
    [[spec]] = pm.hook.btkit_persistence_backends()
    assert (spec.name, spec.factory, spec.dist) == ("sqlite", SqliteBackend, "btkit-sqlite")


def test_not_a_database_is_a_clear_error(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(PersistenceError, match="not a usable sqlite state database"):
        SqliteBackend(db).open()


# ---------------------------------------------------------------- atomic batches
def test_a_failing_change_rolls_back_the_whole_batch(backend: SqliteBackend, db: Path) -> None:
    backend.write([Change("signal", ("s", "A"), {"v": "old"}), Change("signal", ("s", "GONE"), {"v": 1})])
    with raw(db) as conn:  # a real failure inside SQLite, half-way through the transaction
        conn.execute(
            "CREATE TRIGGER boom BEFORE INSERT ON documents WHEN NEW.key = 's/BOOM' "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    with pytest.raises(PersistenceError, match=r"disk on fire.*did not happen"):
        backend.write(
            [
                Change("signal", ("s", "A"), {"v": "new"}),
                Change("signal", ("s", "GONE"), None),
                Change("signal", ("s", "NEW"), {"v": 2}),
                Change("signal", ("s", "BOOM"), {"v": 3}),
            ]
        )
    assert backend.read("signal", ("s", "A")) == {"v": "old"}
    assert sorted(backend.keys("signal")) == [("s", "A"), ("s", "GONE")]
    backend.write([Change("signal", ("s", "A"), {"v": "after"})])  # the connection is still usable
    assert backend.read("signal", ("s", "A")) == {"v": "after"}


def drain(rfd: int) -> bytes:
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    return b"".join(chunks)


def document(batch: int, i: int) -> dict[str, object]:
    return {"batch": batch, "i": i, "pad": "y" * ((batch * 7919 + i * 131) % 3000)}


BATCH_KEYS = [("smacross", f"SYM{i}/USDT:USDT") for i in range(6)]


@pytest.mark.slow
def test_sigkill_mid_batch_never_leaves_a_torn_batch(db: Path) -> None:
    rng = random.Random(7)
    last = 0
    for _round in range(40):
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            code = 3
            try:
                os.close(rfd)
                b = SqliteBackend(db)
                b.open(exclusive=True)
                doc = b.read("signal", BATCH_KEYS[0])
                n = 0 if doc is None else int(doc["batch"])
                while True:
                    n += 1
                    changes = [Change("signal", k, document(n, i)) for i, k in enumerate(BATCH_KEYS)]
                    # odd batches also delete the risk document, even ones write it: part of the batch
                    changes.append(Change("risk", ("r",), None if n % 2 else {"batch": n}))
                    b.write(changes)
                    os.write(wfd, n.to_bytes(8, "little"))
            finally:
                os._exit(code)
        os.close(wfd)
        ready, _, _ = select.select([rfd], [], [], 20)
        assert ready, "child never committed a batch"
        select.select([], [], [], rng.uniform(0.0, 0.01))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), f"child ended with {status}"
        acks = drain(rfd)
        acked = int.from_bytes(acks[-8:], "little")

        b = SqliteBackend(db)
        b.open(exclusive=True)  # the dead child's lock does not block
        try:
            docs = [b.read("signal", k) for k in BATCH_KEYS]
            n = docs[0]["batch"] if docs[0] else -1
            assert docs == [document(n, i) for i in range(len(BATCH_KEYS))], "torn batch"
            assert b.read("risk", ("r",)) == (None if n % 2 else {"batch": n}), "torn batch"
            assert acked <= n <= acked + 1 and n >= last
            last = n
        finally:
            b.close()
    with raw(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    print(f"40 SIGKILL rounds, {last} batches of 7 changes committed, none torn")


CHILD_OWNER = textwrap.dedent(
    """
    import sys
    from btkit_sqlite import SqliteBackend
    b = SqliteBackend(sys.argv[1])
    b.open(exclusive=True)
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_a_second_process_is_refused(db: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", CHILD_OWNER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        with pytest.raises(StateLockedError, match="another btkit live process owns"):
            SqliteBackend(db).open(exclusive=True)
    finally:
        owner.kill()
        owner.wait()
    b = SqliteBackend(db)
    b.open(exclusive=True)
    b.close()


@pytest.mark.parametrize("alias", ["symlink", "symlinked-dir", "hardlink", "dotdot"])
def test_one_lock_per_database_file_whatever_the_path(tmp_path: Path, db: Path, alias: str) -> None:
    """Issue 10 #2: a second process reaching the same database through another path (a symlink, a
    hard link, a symlinked directory, a path with ``..``) is refused like one using the same path."""
    owner = subprocess.Popen(
        [sys.executable, "-c", CHILD_OWNER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        other = tmp_path / "elsewhere"
        other.mkdir()
        if alias == "symlink":
            path = other / "link.sqlite3"
            path.symlink_to(db)
        elif alias == "symlinked-dir":
            (other / "dir").symlink_to(db.parent, target_is_directory=True)
            path = other / "dir" / db.name
        elif alias == "hardlink":
            path = other / "hard.sqlite3"
            os.link(db, path)
        else:
            path = other / ".." / db.parent.name / db.name
        second = SqliteBackend(path)
        with pytest.raises(StateLockedError, match="another btkit live process owns") as err:
            second.open(exclusive=True)
        assert "\n" not in str(err.value)
        second.close()
    finally:
        owner.kill()
        owner.wait()
    if alias == "hardlink":  # two names are two WALs for SQLite: refused even without a second process
        with pytest.raises(PersistenceError, match="hard links"):
            SqliteBackend(db).open(exclusive=True)
        path.unlink()
    b = SqliteBackend(db)
    b.open(exclusive=True)
    b.close()


# ---------------------------------------------------------------- migrations
def make_v1_database(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    with raw(db) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        conn.execute(
            "CREATE TABLE documents (domain TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, "
            "PRIMARY KEY (domain, key)) WITHOUT ROWID"
        )
        conn.execute(
            "INSERT INTO documents VALUES ('signal', 'smacross/BTC%2FUSDT', '{\"v\": 1}'), "
            "('signal', 'smacross/BAD', '{\"torn')"
        )


def test_version_1_database_is_migrated_and_keeps_its_data(db: Path) -> None:
    make_v1_database(db)
    b = SqliteBackend(db)
    b.open(exclusive=True)
    try:
        assert b.read("signal", ("smacross", "BTC/USDT")) == {"v": 1}
        with pytest.raises(CorruptStateError):  # needs the quarantine table added by migration 2
            b.read("signal", ("smacross", "BAD"))
        b.write([Change("signal", ("smacross", "ETH"), {"v": 2})])
    finally:
        b.close()
    with raw(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        rows = dict(conn.execute("SELECT key, updated_at FROM documents").fetchall())
        assert rows["smacross/BTC%2FUSDT"] == 0 and rows["smacross/ETH"] > 0
        assert conn.execute("SELECT domain, key, body FROM quarantine").fetchall() == [
            ("signal", "smacross/BAD", b'{"torn')
        ]


def test_fresh_database_runs_every_migration(db: Path) -> None:
    b = SqliteBackend(db)
    b.open()
    b.close()
    with raw(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"schema_version", "documents", "quarantine"} <= tables
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    b.open()  # opening again runs nothing and changes nothing
    b.close()


def test_newer_schema_is_refused(db: Path) -> None:
    SqliteBackend(db).open()
    with raw(db) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 5,))
    with pytest.raises(PersistenceError, match="upgrade btkit-sqlite"):
        SqliteBackend(db).open()


# ---------------------------------------------------------------- quarantine, copy
def test_quarantine_keeps_the_exact_bytes(backend: SqliteBackend, db: Path) -> None:
    backend.write([Change("schedule", ("s", "X"), {"v": 1})])
    with raw(db) as conn:
        conn.execute("UPDATE documents SET body = ? WHERE key = 's/X'", (b"\xff\x00garbage",))
    with pytest.raises(CorruptStateError) as err:
        backend.read("schedule", ("s", "X"))
    assert f"{db}#quarantine/" in str(err.value)
    with raw(db) as conn:
        assert conn.execute("SELECT body, reason FROM quarantine").fetchone()[0] == b"\xff\x00garbage"


def test_copy_file_to_sqlite_and_back(tmp_path: Path, backend: SqliteBackend) -> None:
    src = FileBackend(tmp_path / "files")
    src.open()
    docs = [Change(d, ("s", p), {**SAMPLE, "p": p}) for d in DOMAINS for p in HOSTILE_PARTS]
    src.write(docs)
    assert copy_state(src, backend) == len(docs)
    back = FileBackend(tmp_path / "back")
    back.open(exclusive=True)
    assert copy_state(backend, back) == len(docs)
    for c in docs:
        assert back.read(c.domain, c.key) == c.document
    src.close()
    back.close()
