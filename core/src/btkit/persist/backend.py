"""The persistence backend protocol every backend plugin implements (file, SQLite, Redis, ...).

Documents are JSON objects (``dict``) addressed by a *domain* (``signal``, ``schedule``, ``strategy``,
``risk``, ``levels``, ``history``) and a *key* (a tuple of strings such as ``(strategy, symbol)``).
Backends store and return documents; the engine owns their schema (``btkit.serde``) and calls
:meth:`Backend.quarantine` when a stored document fails validation.

A backend must:
- make :meth:`write` durable before it returns, and raise :class:`btkit.errors.PersistenceError`
  (changing nothing it can roll back) if not; validate every key and document of a batch before
  writing any (a NaN or a NUL in a key refuses the whole batch); never retry a failed ``fsync``;
- apply a batch atomically if it can (``atomic_batches = True``); otherwise each document atomically
  (old or new after a crash, never a mix);
- raise :class:`btkit.errors.CorruptStateError` from :meth:`read` for an unparseable document, after
  moving it aside (never return it as missing);
- in :meth:`open` with ``exclusive=True``, refuse (``StateLockedError``) when another process holds
  the same store, with a lock that a killed process does not leave blocking a restart forever;
- encode every key part with :func:`btkit.persist.keys.encode_part`, be safe to call from several
  threads, and do no I/O in its constructor (``open`` does).
``btkit.testing.PersistenceContract`` is the contract suite that every backend must pass;
docs/writing-a-persistence-backend.md explains it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import attrs

DOMAINS = ("signal", "schedule", "strategy", "risk", "levels", "history", "wallet")  # wallet: issue 12
Key = tuple[str, ...]


@attrs.frozen
class Change:
    """One document write (``document`` set) or delete (``document is None``)."""

    domain: str
    key: Key
    document: dict[str, Any] | None


@runtime_checkable
class Backend(Protocol):
    name: str
    atomic_batches: bool

    def open(self, *, exclusive: bool = False) -> None:
        """Create the store if needed, clean leftovers, and (exclusive) take the process-wide lock."""

    def close(self) -> None:
        """Release locks and connections. Idempotent."""

    def read(self, domain: str, key: Key) -> dict[str, Any] | None:
        """The stored document or None. Unparseable → quarantine, then ``CorruptStateError``."""

    def write(self, changes: Sequence[Change]) -> None:
        """Durably apply all changes (atomically as a batch where supported) or raise."""

    def keys(self, domain: str) -> list[Key]:
        """Every key stored in ``domain``."""

    def quarantine(self, domain: str, key: Key, reason: str) -> str:
        """Move a bad document aside (keep its bytes for the operator); return where it went."""

#: what a reader without the lock says of a corrupt document: only the owner moves it aside
LEFT_IN_PLACE = (
    "left in place: only the process holding the state's lock (btkit live/paper) moves a corrupt document "
    "aside — start it, or inspect the document"
)
