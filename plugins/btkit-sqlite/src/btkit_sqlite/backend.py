"""SQLite persistence backend: every live state document in one SQLite database (stdlib ``sqlite3``).

- WAL journal with ``synchronous=FULL``: a committed write survives a process crash *and* a power
  loss (the WAL is fsynced on every commit).
- One transaction per :meth:`SqliteBackend.write`: a batch is applied entirely or not at all
  (``atomic_batches = True``), also when the process is killed in the middle of it.
- One connection shared by all threads of the process, serialised by a lock.
- ``schema_version`` table and explicit, ordered migrations (:data:`MIGRATIONS`), run in one
  transaction at :meth:`SqliteBackend.open`.
- Exclusive open: one lock per database *file*, whatever the path it is reached through: the path
  is resolved (symlinks), a ``filelock`` is taken on ``<resolved path>.lock`` and an exclusive
  ``flock`` on the database file itself, which hard links share (both released by the OS when the
  process dies). A database file with several hard links is refused: SQLite keeps its WAL next to
  the *name*, so two names of one file are two WALs (a corrupt database).
- Quarantine: the row moves, bytes untouched, to the ``quarantine`` table.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import filelock

from btkit.errors import CorruptStateError, PersistenceError, StateLockedError
from btkit.persist.backend import LEFT_IN_PLACE, Change, Key
from btkit.persist.file import (
    MAX_DOCUMENT_BYTES,
    check_domain,
    describe,
    dump_document,
    load_document,
    make_private_dirs,
    oversized_reason,
    utc_stamp,
)
from btkit.persist.keys import decode_part, encode_key

log = logging.getLogger("btkit.persist.sqlite")

FILE_MODE = 0o600


# ============================================================ schema and migrations
def _migrate_to_1(conn: sqlite3.Connection) -> None:
    """The documents table: one JSON text per (domain, encoded key)."""
    conn.execute(
        "CREATE TABLE documents ("
        " domain TEXT NOT NULL,"
        " key TEXT NOT NULL,"  # encoded parts joined by '/', which encoded parts never contain
        " body TEXT NOT NULL,"
        " PRIMARY KEY (domain, key)"
        ") WITHOUT ROWID"
    )


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """Quarantine table; last-update time of each document (ms UTC, 0 = before this version)."""
    conn.execute(
        "CREATE TABLE quarantine ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " domain TEXT NOT NULL,"
        " key TEXT NOT NULL,"
        " body BLOB,"
        " reason TEXT NOT NULL,"
        " quarantined_at TEXT NOT NULL"
        ")"
    )
    conn.execute("ALTER TABLE documents ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0")


#: Ordered migrations: ``(version, function)``. A database at version ``n`` runs every migration
#: with a higher version, in order, in one transaction. Never edit a released migration; add one.
MIGRATIONS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (1, _migrate_to_1),
    (2, _migrate_to_2),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _key_text(key: Key) -> str:
    return "/".join(encode_key(tuple(key)))


# ============================================================ the backend
class SqliteBackend:
    """Live state in one SQLite database at ``path`` (default ``./dump/btkit.sqlite3``)."""

    name = "sqlite"
    atomic_batches = True

    def __init__(
        self, path: str | os.PathLike[str] = "./dump/btkit.sqlite3", *, busy_timeout: float | str = 10.0
    ):
        self.path = Path(path).absolute()
        try:  # options may arrive as strings from the command line
            self.busy_timeout = float(busy_timeout)
        except ValueError:
            raise PersistenceError(
                f"sqlite option busy_timeout={busy_timeout!r} must be a number of seconds"
            ) from None
        self._mutex = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._file_lock: filelock.FileLock | None = None
        self._identity_fd: int | None = None  # flock on the database file itself (its inode)

    def __repr__(self) -> str:
        return f"SqliteBackend(path={str(self.path)!r})"

    # ------------------------------------------------------------ lifecycle
    def open(self, *, exclusive: bool = False) -> None:
        """Create the database (0600, in a 0700 directory when it creates one), run migrations,
        and with ``exclusive=True`` take the lock on ``<path>.lock`` or raise ``StateLockedError``."""
        with self._mutex:
            if self._conn is not None and (not exclusive or self._file_lock is not None):
                return
            try:
                make_private_dirs(self.path.parent)
            except OSError as exc:
                raise PersistenceError(
                    f"cannot create directory {self.path.parent} for the sqlite state database: "
                    f"{exc.strerror or exc}; check the path and its permissions"
                ) from None
            self.path = self.path.resolve()  # a symlink and its target are one database
            if exclusive:
                self._lock_exclusive()
            if self._conn is None:
                try:
                    self._conn = self._connect()
                except BaseException:
                    self._release_lock()
                    raise

    def close(self) -> None:
        """Close the connection and release the lock. Idempotent."""
        with self._mutex:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
            self._release_lock()

    # ------------------------------------------------------------ protocol
    def read(self, domain: str, key: Key) -> dict[str, Any] | None:
        check_domain(domain)
        text_key = _key_text(key)
        with self._mutex:  # re-entrant: the quarantine below moves exactly the row just read
            with self._cursor("read") as conn:
                row = conn.execute(  # the size first: a huge body is refused unread
                    "SELECT CASE WHEN length(CAST(body AS BLOB)) > ? THEN NULL ELSE CAST(body AS BLOB) END, "
                    "length(CAST(body AS BLOB)) FROM documents WHERE domain = ? AND key = ?",
                    (MAX_DOCUMENT_BYTES, domain, text_key),
                ).fetchone()
            if row is None:
                return None
            too_big = oversized_reason(int(row[1] or 0))
            if too_big is not None:
                reason = too_big
            else:
                try:
                    return load_document(row[0])
                except ValueError as exc:
                    reason = f"not a valid JSON object: {exc}"
            if self._file_lock is None:  # a reader (btkit serve, report) never moves the owner's documents
                raise CorruptStateError(
                    f"state document {describe(domain, key)} in {self.path} is corrupt ({reason}); {LEFT_IN_PLACE}"
                )
            where = self.quarantine(domain, key, reason)
        raise CorruptStateError(
            f"state document {describe(domain, key)} in {self.path} is corrupt ({reason}); it was moved "
            f"to {where} — inspect it (restore it or accept losing that state) before restarting"
        )

    def write(self, changes: Sequence[Change]) -> None:
        """Apply all ``changes`` in one transaction (all or nothing), committed durably."""
        prepared: list[tuple[str, str, str | None]] = []
        for change in changes:
            check_domain(change.domain)
            text_key = _key_text(change.key)
            body = (
                None
                if change.document is None
                else dump_document(change.domain, change.key, change.document).decode("utf-8")
            )
            prepared.append((change.domain, text_key, body))
        if not prepared:
            return
        now_ms = time.time_ns() // 1_000_000
        with self._transaction("write") as conn:
            for domain, text_key, body in prepared:
                if body is None:
                    conn.execute("DELETE FROM documents WHERE domain = ? AND key = ?", (domain, text_key))
                else:
                    conn.execute(
                        "INSERT INTO documents (domain, key, body, updated_at) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (domain, key) DO UPDATE SET body = excluded.body, "
                        "updated_at = excluded.updated_at",
                        (domain, text_key, body, now_ms),
                    )

    def keys(self, domain: str) -> list[Key]:
        check_domain(domain)
        with self._cursor("list") as conn:
            rows = conn.execute(
                "SELECT key FROM documents WHERE domain = ? ORDER BY key", (domain,)
            ).fetchall()
        out: list[Key] = []
        for (text_key,) in rows:
            parts = tuple(str(text_key).split("/"))
            try:
                key = tuple(decode_part(p) for p in parts)
                ok = encode_key(key) == parts
            except (ValueError, PersistenceError):
                ok = False
            if ok:
                out.append(key)
            else:
                log.warning("ignoring row with malformed key %r in %s domain %s", text_key, self.path, domain)
        return out

    def quarantine(self, domain: str, key: Key, reason: str) -> str:
        """Move the row to the ``quarantine`` table (bytes untouched), log an ERROR, return
        ``<path>#quarantine/<id>``."""
        check_domain(domain)
        text_key = _key_text(key)
        with self._transaction("quarantine") as conn:
            row = conn.execute(
                "SELECT CAST(body AS BLOB) FROM documents WHERE domain = ? AND key = ?", (domain, text_key)
            ).fetchone()
            if row is None:
                raise PersistenceError(
                    f"no state document {describe(domain, key)} in {self.path} to quarantine"
                )
            cur = conn.execute(
                "INSERT INTO quarantine (domain, key, body, reason, quarantined_at) VALUES (?, ?, ?, ?, ?)",
                (domain, text_key, row[0], reason, utc_stamp()),
            )
            conn.execute("DELETE FROM documents WHERE domain = ? AND key = ?", (domain, text_key))
            where = f"{self.path}#quarantine/{cur.lastrowid}"
        log.error("quarantined state document %s to %s: %s", describe(domain, key), where, reason)
        return where

    # ------------------------------------------------------------ internals
    def _connect(self) -> sqlite3.Connection:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            os.close(fd)
        except OSError as exc:
            raise PersistenceError(
                f"cannot create sqlite state database {self.path}: {exc.strerror or exc}; check the path"
            ) from None
        mode = stat.S_IMODE(self.path.stat().st_mode)
        if mode & 0o077:
            log.warning("state database %s has mode %o; run `chmod 600 %s`", self.path, mode, self.path)
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            journal = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(journal).lower() != "wal":
                raise PersistenceError(
                    f"sqlite state database {self.path} cannot use WAL (journal_mode={journal}); "
                    "put it on a local filesystem"
                )
            conn.execute("PRAGMA synchronous=FULL")
            self._migrate(conn)
            return conn
        except sqlite3.DatabaseError as exc:
            if conn is not None:
                conn.close()
            raise PersistenceError(
                f"{self.path} is not a usable sqlite state database ({exc}); "
                "move it aside or restore a backup"
            ) from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = int(row[0]) if row and row[0] is not None else 0
            if current > SCHEMA_VERSION:
                raise PersistenceError(
                    f"sqlite state database {self.path} has schema version {current}, newer than this "
                    f"btkit-sqlite supports ({SCHEMA_VERSION}); upgrade btkit-sqlite"
                )
            for version, migration in MIGRATIONS:
                if version > current:
                    migration(conn)
                    log.info("migrated sqlite state database %s to schema version %d", self.path, version)
            if current < SCHEMA_VERSION:
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _lock_exclusive(self) -> None:
        if self._file_lock is not None:
            return
        lock = filelock.FileLock(f"{self.path}.lock", mode=FILE_MODE)
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            raise StateLockedError(
                f"another btkit live process owns {self.path}; stop it or use another sqlite path"
            ) from None
        except OSError as exc:
            raise PersistenceError(f"cannot lock {self.path}.lock: {exc.strerror or exc}") from None
        try:
            self._identity_fd = self._lock_identity()
        except BaseException:
            with contextlib.suppress(OSError):
                lock.release(force=True)
            raise
        self._file_lock = lock

    def _lock_identity(self) -> int:
        """``flock`` the database file itself: one lock per file (inode), whatever name reaches it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE)
        except OSError as exc:
            raise PersistenceError(
                f"cannot open sqlite state database {self.path}: {exc.strerror or exc}; check the path"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateLockedError(
                f"another btkit live process owns the database file {self.path} (reached through another "
                "path: a link to the same file); stop it or use another sqlite path"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise PersistenceError(f"cannot lock {self.path}: {exc.strerror or exc}") from None
        links = os.fstat(fd).st_nlink
        if links > 1:
            os.close(fd)
            raise PersistenceError(
                f"sqlite state database {self.path} has {links} hard links: another name reaches the same "
                "file (and SQLite would keep a second WAL for it); remove the other links and restart"
            )
        return fd

    def _release_lock(self) -> None:
        if self._identity_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._identity_fd)  # drops the flock
            self._identity_fd = None
        if self._file_lock is not None:
            with contextlib.suppress(OSError):
                self._file_lock.release(force=True)
            self._file_lock = None

    @contextlib.contextmanager
    def _cursor(self, what: str) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            if self._conn is None:
                raise PersistenceError(
                    f"sqlite persistence backend {self.path} is not open; call open() first"
                )
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise PersistenceError(
                    f"sqlite {what} on {self.path} failed: {exc}; check the disk and the database file"
                ) from None

    @contextlib.contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; any error rolls back and raises ``PersistenceError``."""
        with self._mutex:
            if self._conn is None:
                raise PersistenceError(
                    f"sqlite persistence backend {self.path} is not open; call open() first"
                )
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise PersistenceError(
                        f"sqlite {what} on {self.path} failed: {exc}; the change did not happen"
                    ) from None
                raise
