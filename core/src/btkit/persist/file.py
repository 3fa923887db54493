"""The default persistence backend: one JSON file per document under a state directory.

Layout: ``<root>/<domain>/<enc(part0)>/.../<enc(last)>.json`` where ``enc`` is
:func:`btkit.persist.keys.encode_part` (so ``BTC/USDT:USDT`` stays one path component and ``..`` is
just a name). Next to each document lives its per-document lock file ``.<enc(last)>.lock``; the
process-wide lock is ``<root>/.btkit-live.lock``; quarantined documents go to ``<root>/quarantine/``.

Every document is replaced atomically (temp file in the same directory, mode 0600 → write → fsync →
``os.replace`` → fsync the directory): after a crash at any instant a document is the old or the new
version, never a mix. A *batch* of changes is **not** atomic (``atomic_batches = False``): each
document is, in order, so a crash in the middle of a batch can leave the first documents new and the
rest old. Choose ``btkit-sqlite`` or ``btkit-redis`` when that matters.

The module also holds the strict JSON codec every first-party backend uses (:func:`dump_document`,
:func:`load_document`) and :func:`check_domain`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import filelock

from btkit.errors import CorruptStateError, PersistenceError, StateLockedError
from btkit.persist.backend import DOMAINS, LEFT_IN_PLACE, Change, Key
from btkit.persist.keys import decode_part, encode_key, encode_part

log = logging.getLogger("btkit.persist")

#: Names that can never be a domain: the file backend keeps quarantined documents under
#: ``<root>/quarantine`` and the Redis backend keeps its lock at ``<prefix>:<bot>:lock``.
RESERVED_DOMAINS = frozenset({"quarantine", "lock"})
QUARANTINE_DIR = "quarantine"
DIR_LOCK_NAME = ".btkit-live.lock"
TMP_SUFFIX = ".btkit-tmp"
DOC_SUFFIX = ".json"
DIR_MODE = 0o700
FILE_MODE = 0o600
DOC_LOCK_TIMEOUT_S = 30.0
#: Largest stored document (bytes) any first-party backend writes or reads: a bigger one is refused
#: on write and quarantined on read without being parsed (a hostile 200 MB document must not take
#: minutes to reject). A history of ~25 000 closed trades fits.
MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
#: Deepest nesting of objects/arrays a stored document may have (btkit's own documents use < 10).
MAX_DOCUMENT_DEPTH = 64
#: Longest encoded key part the file backend stores: a file name is at most 255 bytes and the temp,
#: lock and quarantine names add up to 40 characters to it. ASCII names of up to
#: ``MAX_PART_CHARS`` (120) always fit; very long non-ASCII names (``é`` encodes to 6 characters) may not.
MAX_ENCODED_PART = 200


# ============================================================ strict JSON codec (shared by backends)
def describe(domain: str, key: Key) -> str:
    """A one-line, unambiguous name for a document in messages (``repr`` escapes newlines)."""
    return f"{domain} {tuple(key)!r}"


def check_domain(domain: str) -> str:
    """Return ``domain`` if it is a usable domain name, else raise :class:`PersistenceError`.

    A domain is a non-empty name of ASCII letters, digits, ``_`` and ``-`` (so it needs no encoding)
    and not one of :data:`RESERVED_DOMAINS`.
    """
    if (
        not isinstance(domain, str)
        or not domain
        or encode_part(domain) != domain
        or domain in RESERVED_DOMAINS
    ):
        raise PersistenceError(
            f"invalid state domain {domain!r}: use letters, digits, '_' or '-', and not "
            f"{' or '.join(sorted(RESERVED_DOMAINS))}"
        )
    return domain


def dump_document(domain: str, key: Key, document: Any) -> bytes:
    """Serialise one document as strict UTF-8 JSON; refuse anything that would not read back equal.

    Raises :class:`PersistenceError` for a non-dict, NaN/Infinity, or an unserialisable value.
    """
    if not isinstance(document, dict):
        raise PersistenceError(
            f"state document {describe(domain, key)} must be a JSON object (dict), got "
            f"{type(document).__name__}; nothing was written"
        )
    try:
        text = json.dumps(document, allow_nan=False, ensure_ascii=False, sort_keys=True, indent=1)
        data = (text + "\n").encode("utf-8")
        _check_depth(document)
    except RecursionError:
        raise PersistenceError(
            f"state document {describe(domain, key)} is nested too deeply to store (more than "
            f"{MAX_DOCUMENT_DEPTH} levels); nothing was written"
        ) from None
    except ValueError as exc:  # NaN/inf ("Out of range float values"), circular reference, surrogates
        raise PersistenceError(
            f"state document {describe(domain, key)} is not strict JSON ({exc}); NaN and infinity are "
            "refused — fix the value that produced it; nothing was written"
        ) from None
    except TypeError as exc:
        raise PersistenceError(
            f"state document {describe(domain, key)} is not JSON-serialisable ({exc}); nothing was written"
        ) from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise PersistenceError(
            f"state document {describe(domain, key)} is {len(data)} bytes, more than the "
            f"{MAX_DOCUMENT_BYTES} a backend stores; nothing was written"
        )
    return data


def _check_depth(document: Any) -> None:
    """Raise ``RecursionError`` when ``document`` nests deeper than :data:`MAX_DOCUMENT_DEPTH`
    (iteratively: the check itself never hits the interpreter's recursion limit)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DOCUMENT_DEPTH:
            raise RecursionError(f"nested more than {MAX_DOCUMENT_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))


def oversized_reason(size: int) -> str | None:
    """The quarantine reason for a stored document of ``size`` bytes, or None when it may be read."""
    if size > MAX_DOCUMENT_BYTES:
        return f"{size} bytes, larger than the {MAX_DOCUMENT_BYTES} bytes a state document may have"
    return None


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed in a state document")


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} overflows to infinity")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate key {name!r}")
        out[name] = value
    return out


def load_document(raw: bytes | str) -> dict[str, Any]:
    """Parse a stored document strictly: at most :data:`MAX_DOCUMENT_BYTES`, UTF-8, JSON, an object at
    the top, at most :data:`MAX_DOCUMENT_DEPTH` levels deep, no NaN/Infinity, no number that overflows
    to infinity, no duplicate keys. Raises ``ValueError`` saying why (never ``RecursionError``)."""
    reason = oversized_reason(len(raw))
    if reason is not None:
        raise ValueError(reason)
    text = bytes(raw).decode("utf-8") if isinstance(raw, bytes | bytearray | memoryview) else raw
    try:
        doc = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_strict_float,
            object_pairs_hook=_no_duplicates,
        )
        _check_depth(doc)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DOCUMENT_DEPTH} levels deep") from None
    if not isinstance(doc, dict):
        raise ValueError(f"top-level value is a {type(doc).__name__}, not an object")
    return doc


def utc_stamp() -> str:
    """A sortable UTC timestamp with microseconds for quarantine names."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _strerror(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc) or type(exc).__name__
    return f"{text} ({name})" if name else text


# ============================================================ the backend
def symlink_message(link: Path, root: Path) -> str:
    return (
        f"{link} is a symlink inside the state directory {root}; btkit never follows symlinks there "
        "(writes could land outside it) — replace it with the real directory or file"
    )


def make_private_dirs(directory: Path, *, on_created: Callable[[Path], None] | None = None) -> None:
    """Create ``directory`` and its missing parents with mode 0700 (existing ones are left as they are)."""
    missing: list[Path] = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for new in reversed(missing):
        try:
            os.mkdir(new, DIR_MODE)
        except FileExistsError:
            if not new.is_dir():
                raise
            continue
        os.chmod(new, DIR_MODE)  # the umask may have removed bits; never add any beyond 0700
        if on_created is not None:
            on_created(new)


class FileBackend:
    """One JSON file per document under ``root`` (default ``./dump``). See the module docstring.

    ``path`` is accepted as an alias of ``root`` so ``[persistence] path = "..."`` works for every
    first-party backend.
    """

    name = "file"
    atomic_batches = False

    def __init__(
        self, root: str | os.PathLike[str] = "./dump", *, path: str | os.PathLike[str] | None = None
    ):
        self.root = Path(path if path is not None else root).absolute()
        self._guard = threading.Lock()
        self._doc_locks: dict[Path, filelock.FileLock] = {}
        self._dir_lock: filelock.FileLock | None = None
        self._open = False

    def __repr__(self) -> str:
        return f"FileBackend(root={str(self.root)!r})"

    # ------------------------------------------------------------ lifecycle
    def open(self, *, exclusive: bool = False) -> None:
        """Create ``root`` and the domain directories (0700), and delete orphan temp files.

        With ``exclusive=True`` take the process-wide lock on ``root`` (non-blocking) or raise
        :class:`StateLockedError`. A non-exclusive open only cleans temp files when nobody holds it.
        """
        if self._open and (not exclusive or self._dir_lock is not None):
            return
        try:
            self._mkdirs(self.root)
            self._scan_symlinks()
            for domain in DOMAINS:
                self._mkdirs(self.root / domain)
        except OSError as exc:
            raise PersistenceError(
                f"cannot create state directory {self.root}: {_strerror(exc)}; "
                "check the path and its permissions"
            ) from None
        mode = stat.S_IMODE(self.root.stat().st_mode)
        if mode & 0o077:
            log.warning(
                "state directory %s has mode %o and is accessible to other users; run `chmod 700 %s`",
                self.root,
                mode,
                self.root,
            )
        lock = filelock.FileLock(self.root / DIR_LOCK_NAME, mode=FILE_MODE)
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            if exclusive:
                raise StateLockedError(
                    f"another btkit live process owns {self.root}; stop it or use another --dump-dir"
                ) from None
            # A live process owns the directory; its temp files are in flight, not orphans.
        except OSError as exc:
            raise PersistenceError(f"cannot lock state directory {self.root}: {_strerror(exc)}") from None
        else:
            try:
                self._remove_orphans()
            finally:
                if exclusive:
                    self._dir_lock = lock
                else:
                    lock.release()
        self._open = True

    def close(self) -> None:
        """Release the process-wide lock. Idempotent."""
        with self._guard:
            if self._dir_lock is not None:
                with contextlib.suppress(OSError):
                    self._dir_lock.release(force=True)
                self._dir_lock = None
            self._doc_locks.clear()
            self._open = False

    # ------------------------------------------------------------ protocol
    def read(self, domain: str, key: Key) -> dict[str, Any] | None:
        self._require_open()
        path = self._path(domain, key)
        reason = None
        try:  # no-follow (a planted symlink is not read through), non-blocking (nor is a planted FIFO)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise PersistenceError(
                    f"cannot read state document {path}: {_strerror(exc)}; check the disk and permissions"
                ) from None
            reason = "a symlink stands where the document file belongs (btkit never follows symlinks there)"
        else:
            try:
                reason, raw = self._read_fd(fd)
            except OSError as exc:
                raise PersistenceError(
                    f"cannot read state document {path}: {_strerror(exc)}; check the disk and permissions"
                ) from None
            finally:
                os.close(fd)
            if reason is None:
                try:
                    return load_document(raw)
                except ValueError as exc:
                    reason = f"not a valid JSON object: {exc}"
        if self._dir_lock is None:  # a reader (btkit serve, report) never moves the owner's documents
            raise CorruptStateError(f"state document {path} is corrupt ({reason}); {LEFT_IN_PLACE}")
        where = self.quarantine(domain, key, reason)
        raise CorruptStateError(
            f"state document {path} is corrupt ({reason}); it was moved to {where} — inspect it "
            "(restore it or accept losing that state) before restarting"
        )

    @staticmethod
    def _read_fd(fd: int) -> tuple[str | None, bytes]:
        """(why the open file cannot be a document, or None; its bytes) — the size is checked first."""
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return "a directory stands where the document file belongs", b""
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file", b""
        too_big = oversized_reason(st.st_size)
        if too_big is not None:
            return too_big, b""
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_DOCUMENT_BYTES:  # grew while being read
                return oversized_reason(sum(map(len, chunks))), b""
        return None, b"".join(chunks)

    def write(self, changes: Sequence[Change]) -> None:
        """Apply ``changes`` in order, each document atomically and durably.

        Every key and document is validated before anything touches the disk, so a bad change (NaN,
        NUL in a key, ...) refuses the whole batch. An I/O failure raises :class:`PersistenceError`
        leaving that document as it was; earlier documents of the batch stay written (not atomic).
        """
        self._require_open()
        prepared: list[tuple[Change, Path, bytes | None]] = []
        for change in changes:
            path = self._path(change.domain, change.key)
            data = (
                None if change.document is None else dump_document(change.domain, change.key, change.document)
            )
            prepared.append((change, path, data))
        for change, path, data in prepared:
            if data is None:
                self._delete(change, path)
            else:
                self._replace(change, path, data)

    def keys(self, domain: str) -> list[Key]:
        self._require_open()
        base = self.root / check_domain(domain)
        out: list[Key] = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel = Path(dirpath).relative_to(base).parts
            names = [n for n in filenames if n.endswith(DOC_SUFFIX) and not n.startswith(".")]
            # A directory named like a document is listed too, so reading it quarantines it.
            names += [n for n in dirnames if n.endswith(DOC_SUFFIX) and not n.startswith(".")]
            dirnames[:] = [n for n in dirnames if not n.startswith(".") and not n.endswith(DOC_SUFFIX)]
            for name in names:
                parts = (*rel, name[: -len(DOC_SUFFIX)])
                try:
                    key = tuple(decode_part(p) for p in parts)
                    ok = encode_key(key) == parts
                except (ValueError, PersistenceError):
                    ok = False
                if ok:
                    out.append(key)
                else:
                    log.warning("ignoring stray file %s in the state directory", Path(dirpath) / name)
        return out

    def quarantine(self, domain: str, key: Key, reason: str) -> str:
        """Move the document (file or whatever stands at its path) to
        ``<root>/quarantine/<domain>/.../<enc(last)>.<UTC timestamp>.json`` with a ``.reason`` file
        next to it, log an ERROR, and return the new path."""
        self._require_open()
        path = self._path(domain, key)
        rel = path.relative_to(self.root)
        dest = (
            self.root / QUARANTINE_DIR / rel.parent / f"{path.stem}.{utc_stamp()}{secrets.token_hex(2)}.json"
        )
        self._refuse_symlinks(dest.parent)
        missing = PersistenceError(f"no state document {describe(domain, key)} to quarantine at {path}")
        if not os.path.lexists(path):
            raise missing
        with self._doc_lock(path):
            if not os.path.lexists(path):
                raise missing
            try:
                self._mkdirs(dest.parent)
                os.rename(path, dest)
                self._fsync_dir(path.parent)
                self._fsync_dir(dest.parent)
            except OSError as exc:
                raise PersistenceError(
                    f"cannot move corrupt state document {path} aside: {_strerror(exc)}; move it away by hand"
                ) from None
        with contextlib.suppress(OSError):
            fd = os.open(f"{dest}.reason", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f"{describe(domain, key)}: {reason}\n")
        log.error("quarantined state document %s to %s: %s", path, dest, reason)
        return str(dest)

    # ------------------------------------------------------------ internals
    def _require_open(self) -> None:
        if not self._open:
            raise PersistenceError(f"file persistence backend at {self.root} is not open; call open() first")

    def _path(self, domain: str, key: Key) -> Path:
        check_domain(domain)
        enc = encode_key(tuple(key))
        for part, encoded in zip(key, enc, strict=True):
            if len(encoded) > MAX_ENCODED_PART:
                raise PersistenceError(
                    f"state key part {part!r} encodes to {len(encoded)} characters, more than the file "
                    f"backend's {MAX_ENCODED_PART}; use a shorter name"
                )
        path = self.root.joinpath(domain, *enc[:-1], enc[-1] + DOC_SUFFIX)
        self._refuse_symlinks(path.parent)
        return path

    def _refuse_symlinks(self, directory: Path) -> None:
        """Raise when a directory between the state root and ``directory`` is a symlink: btkit never
        follows one under its state root (a planted link must not send writes outside it)."""
        current = self.root
        for part in directory.relative_to(self.root).parts:
            current = current / part
            try:
                st = os.lstat(current)
            except FileNotFoundError:
                return  # created by btkit (never through a link) when written
            except OSError as exc:
                raise PersistenceError(f"cannot inspect {current}: {_strerror(exc)}") from None
            if stat.S_ISLNK(st.st_mode):
                raise PersistenceError(symlink_message(current, self.root))

    def _scan_symlinks(self) -> None:
        """At open: refuse a state directory that holds a symlink anywhere below its root."""
        quarantine = self.root / QUARANTINE_DIR
        for dirpath, dirnames, filenames in os.walk(self.root):
            # a symlink that stood where a document belonged is kept in quarantine as found
            inside_quarantine = Path(dirpath) == quarantine or quarantine in Path(dirpath).parents
            for name in (*dirnames, *(() if inside_quarantine else filenames)):
                if os.path.islink(os.path.join(dirpath, name)):
                    raise PersistenceError(symlink_message(Path(dirpath) / name, self.root))

    @contextlib.contextmanager
    def _doc_lock(self, path: Path) -> Iterator[None]:
        """The inter-process (and inter-thread) lock of one document; its file sits next to it."""
        with self._guard:
            lock = self._doc_locks.get(path)
            if lock is None:
                lock_path = path.parent / f".{path.name[: -len(DOC_SUFFIX)]}.lock"
                lock = self._doc_locks[path] = filelock.FileLock(lock_path, mode=FILE_MODE)
        try:
            lock.acquire(timeout=DOC_LOCK_TIMEOUT_S)
        except filelock.Timeout:
            raise PersistenceError(
                f"state document {path} stayed locked for {DOC_LOCK_TIMEOUT_S:.0f} s by another process; "
                "the change did not happen — check for a stuck btkit process"
            ) from None
        except OSError as exc:
            raise PersistenceError(f"cannot lock state document {path}: {_strerror(exc)}") from None
        try:
            yield
        finally:
            lock.release()

    def _replace(self, change: Change, path: Path, data: bytes) -> None:
        where = describe(change.domain, change.key)
        try:
            self._mkdirs(path.parent)
        except OSError as exc:
            raise PersistenceError(
                f"cannot create directory for state document {where} in {path.parent}: {_strerror(exc)}; "
                "the change did not happen"
            ) from None
        with self._doc_lock(path):
            if path.is_dir() and not path.is_symlink():
                self.quarantine(
                    change.domain, change.key, "a directory stood where the document file belongs"
                )
            tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}"
            try:
                fd = os.open(
                    tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, FILE_MODE
                )
                try:
                    view = memoryview(data)
                    while view:  # raw os.write: nothing is buffered in user space, so no flush is needed
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)  # never retried: after a failed fsync the page cache cannot be trusted
                finally:
                    os.close(fd)
                os.replace(tmp, path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise PersistenceError(
                    f"could not write state document {where} to {path}: {_strerror(exc)}; the change did "
                    "not happen and the previous document is intact — fix the disk (space, permissions) "
                    "and restart"
                ) from None
            try:
                self._fsync_dir(path.parent)
            except OSError as exc:
                raise PersistenceError(
                    f"could not fsync directory {path.parent} after writing {where}: {_strerror(exc)}; the "
                    "new document may not survive a power loss — the disk is failing, stop and check it"
                ) from None

    def _delete(self, change: Change, path: Path) -> None:
        if not path.parent.is_dir():
            return
        where = describe(change.domain, change.key)
        with self._doc_lock(path):
            if path.is_dir() and not path.is_symlink():
                self.quarantine(
                    change.domain, change.key, "a directory stood where the document file belongs"
                )
                return
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise PersistenceError(
                    f"could not delete state document {where} at {path}: {_strerror(exc)}; "
                    "the change did not happen"
                ) from None
            try:
                self._fsync_dir(path.parent)
            except OSError as exc:
                raise PersistenceError(
                    f"could not fsync directory {path.parent} after deleting {where}: {_strerror(exc)}; the "
                    "deletion may not survive a power loss — the disk is failing, stop and check it"
                ) from None

    @staticmethod
    def _fsync_dir(directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _mkdirs(self, directory: Path) -> None:
        """Create ``directory`` and missing parents with mode 0700, fsyncing each new entry's parent."""
        make_private_dirs(directory, on_created=lambda new: self._fsync_dir(new.parent))

    def _remove_orphans(self) -> None:
        """Delete temp files left by a process that died between creating and renaming them."""
        removed = 0
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root and QUARANTINE_DIR in dirnames:
                dirnames.remove(QUARANTINE_DIR)
            for name in filenames:
                if name.startswith(".") and name.endswith(TMP_SUFFIX):
                    try:
                        os.unlink(Path(dirpath) / name)
                        removed += 1
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        log.warning("cannot delete orphan temp file %s: %s", Path(dirpath) / name, exc)
        if removed:
            log.info("removed %d orphan temp file(s) from %s", removed, self.root)
