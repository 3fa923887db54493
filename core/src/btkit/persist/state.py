"""The engine's state store: instance state ⇄ documents, written through the persistence hooks.

``MemoryStore`` (backtest) keeps nothing and writes nothing. ``BackendStore`` (live) turns every state
change into one batch of document changes — only the documents that changed — and writes it through
``btkit_persist_write`` *before* the change counts as done. Reads are structured strictly; a document
that does not validate is quarantined and the load fails loudly (never treated as empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from btkit import serde
from btkit.engine.state import InstanceState, Levels, StrategyState
from btkit.errors import CorruptStateError, PersistenceError
from btkit.model import Closed, SignalRow
from btkit.persist import sanity
from btkit.persist.backend import Backend, Change, Key
from btkit.risk import ActivePosition

InstanceKey = tuple[str, str]  # (strategy_name, symbol)


@attrs.frozen
class _SignalDoc:
    row: SignalRow | None


@attrs.frozen
class _HistoryDoc:
    closed: tuple[Closed, ...]


@attrs.frozen
class _RiskDoc:
    positions: tuple[ActivePosition, ...]


def state_changes(key: InstanceKey, old: InstanceState, new: InstanceState) -> list[Change]:
    """Document changes that turn ``old`` into ``new`` (only the documents that differ)."""
    out: list[Change] = []
    k: Key = key
    # Order matters for backends whose batches are not atomic (a crash keeps a prefix): the resting
    # entry goes before the position, so an activation cut short never leaves both on disk (the
    # activate intent still holds the row and is retried).
    if new.scheduled != old.scheduled:
        out.append(Change("schedule", k, serde.to_document(serde.unstructure(_SignalDoc(new.scheduled)))))
    if new.pending != old.pending:
        out.append(Change("signal", k, serde.to_document(serde.unstructure(_SignalDoc(new.pending)))))
    if new.strategy != old.strategy:
        out.append(Change("strategy", k, serde.to_document(serde.unstructure(new.strategy))))
    if new.levels != old.levels:
        out.append(Change("levels", k, serde.to_document(serde.unstructure(new.levels))))
    return out


class MemoryStore:
    """Backtests: nothing is persisted."""

    persistent = False

    async def load(self, key: InstanceKey, exchange_name: str = "") -> tuple[InstanceState, list[Closed]]:
        return InstanceState(), []

    def save(self, changes: Sequence[Change]) -> None:
        return None

    def load_risk(self, name: str) -> list[ActivePosition]:
        return []

    def history_change(self, key: InstanceKey, closed: Sequence[Closed]) -> Change | None:
        return None

    def risk_change(self, name: str, positions: Sequence[ActivePosition]) -> Change | None:
        return None


class BackendStore:
    """Live: documents in the selected backend, written through the persistence hooks."""

    persistent = True

    def __init__(self, pm: Any, backend: Backend) -> None:
        from btkit.persist.adapter import PersistSignalAdapter, SignalAdapters

        self.pm = pm
        self.backend = backend
        adapter = PersistSignalAdapter.adapter
        self.signal_adapters = SignalAdapters(adapter) if adapter is not None else None

    def _read(self, domain: str, key: Key) -> Any:
        from btkit.defaults.runtime import ABSENT

        if domain == "signal" and self.signal_adapters is not None and key in self.signal_adapters.instances:
            row = self.signal_adapters.read(key)
            return None if row is None else serde.to_document({"row": row})

        doc = self.pm.hook.btkit_persist_read(backend=self.backend, domain=domain, key=key)
        return None if doc is ABSENT else doc

    def _structured(self, domain: str, key: Key, cls: type, *, where: str) -> Any:
        try:
            doc = self._read(domain, key)
        except PersistenceError:
            raise  # CorruptStateError (already quarantined by the backend) or an I/O error
        except (RecursionError, ValueError, TypeError, UnicodeError, MemoryError) as exc:
            # a backend that let an unreadable document through: corrupt all the same, never "transient"
            exc = CorruptStateError(f"{where}: unreadable document ({type(exc).__name__}: {str(exc)[:200]})")
            moved = self.backend.quarantine(domain, key, str(exc))
            raise CorruptStateError(f"{exc}; moved aside to {moved}") from None
        if doc is None:
            return None
        try:
            body = serde.from_document(doc, where=where)
            return serde.structure(body, cls, where=where)
        except CorruptStateError as exc:
            moved = self.backend.quarantine(domain, key, str(exc))
            raise CorruptStateError(
                f"{exc}; moved aside to {moved}. Trading on this symbol stays stopped until you inspect it "
                "and restart"
            ) from None

    def _sane(self, domain: str, key: Key, value: Any, check: Any, *, where: str) -> Any:
        """Apply a :mod:`btkit.persist.sanity` check to a structured document; quarantine it if it
        makes no sense (the same rules as creating a signal)."""
        if value is None:
            return None
        try:
            check(value)
        except ValueError as exc:
            moved = self.backend.quarantine(domain, key, f"{where}: {exc}")
            raise CorruptStateError(
                f"{where}: invalid document ({exc}); moved aside to {moved}. Trading on this symbol stays "
                "stopped until you inspect it and restart"
            ) from None
        return value

    async def load(self, key: InstanceKey, exchange_name: str = "") -> tuple[InstanceState, list[Closed]]:
        return self.load_sync(key, exchange_name)

    def load_sync(self, key: InstanceKey, exchange_name: str = "") -> tuple[InstanceState, list[Closed]]:
        name = "/".join(key)
        if self.signal_adapters is not None:
            self.signal_adapters.open(key, exchange_name)
        sig = self._structured("signal", key, _SignalDoc, where=f"signal state of {name}")
        self._sane(
            "signal", key, sig and sig.row, lambda r: sanity.check_row(r, key), where=f"signal of {name}"
        )
        sch = self._structured("schedule", key, _SignalDoc, where=f"schedule state of {name}")
        self._sane(
            "schedule", key, sch and sch.row, lambda r: sanity.check_row(r, key), where=f"schedule of {name}"
        )
        strat = self._structured("strategy", key, StrategyState, where=f"strategy state of {name}")
        self._sane(
            "strategy",
            key,
            strat,
            lambda st: sanity.check_strategy_state(st, key),
            where=f"strategy state of {name}",
        )
        levels = self._structured("levels", key, Levels, where=f"levels of {name}")
        hist = self._load_history(key)
        state = InstanceState(
            pending=sig.row if sig else None,
            scheduled=sch.row if sch else None,
            strategy=strat or StrategyState(),
            levels=levels or Levels(),
        )
        if state.pending is not None and state.scheduled is not None:
            raise CorruptStateError(
                f"state of {name} holds both an open position and a scheduled entry; inspect the dump "
                "directory and remove the stale one"
            )
        return state, list(hist.closed) if hist else []

    def _load_history(self, key: InstanceKey) -> _HistoryDoc | None:
        where = f"history of {'/'.join(key)}"
        hist = self._structured("history", key, _HistoryDoc, where=where)
        return self._sane("history", key, hist, lambda h: sanity.check_history(h.closed, key), where=where)

    def load_history(self, key: InstanceKey) -> list[Closed]:
        hist = self._load_history(key)
        return list(hist.closed) if hist else []

    def load_risk(self, name: str) -> list[ActivePosition]:
        where = f"risk positions of {name}"
        doc = self._structured("risk", (name,), _RiskDoc, where=where)
        self._sane("risk", (name,), doc, lambda d: sanity.check_risk_positions(d.positions), where=where)
        return list(doc.positions) if doc else []

    def save(self, changes: Sequence[Change]) -> None:
        if self.signal_adapters is None:
            self._write(changes)
            return
        # the signal document goes to the in-code adapter at its place in the batch: the engine orders
        # batches so that a crash between any two documents is recoverable (e.g. history before a close)
        segment: list[Change] = []
        for c in changes:
            if c.domain != "signal":
                segment.append(c)
                continue
            self._write(segment)
            segment = []
            self.signal_adapters.write(c.key, None if c.document is None else c.document.get("row"))
        self._write(segment)

    def _write(self, changes: Sequence[Change]) -> None:
        if not changes:
            return
        try:
            self.pm.hook.btkit_persist_write(backend=self.backend, changes=list(changes))
        except PersistenceError:
            raise
        except Exception as exc:
            raise PersistenceError(
                f"state write failed ({type(exc).__name__}: {exc}); the change was not applied"
            ) from exc

    def forget(self, key: InstanceKey) -> int:
        """Delete every document of one instance (operator tool); returns how many existed."""
        from btkit.persist.backend import DOMAINS

        n = 0
        for domain in DOMAINS:
            if domain == "risk":
                continue
            if self._read(domain, key) is not None or key in self.backend.keys(domain):
                self.pm.hook.btkit_persist_delete(backend=self.backend, domain=domain, key=key)
                n += 1
        return n

    def history_change(self, key: InstanceKey, closed: Sequence[Closed]) -> Change:
        """The history document with ``closed`` (the last one new): checked before it is written, so a
        trade no report could read never reaches the disk (the earlier ones were checked already)."""
        if closed:
            try:
                sanity.check_closed(closed[-1], key)
            except ValueError as exc:
                raise PersistenceError(
                    f"refusing to write the history of {'/'.join(key)}: {exc}; the change did not happen"
                ) from None
        return Change("history", key, serde.to_document(serde.unstructure(_HistoryDoc(tuple(closed)))))

    def risk_change(self, name: str, positions: Sequence[ActivePosition]) -> Change:
        return Change("risk", (name,), serde.to_document(serde.unstructure(_RiskDoc(tuple(positions)))))


def risk_changes(store: Any, book: Any, names: Sequence[str]) -> list[Change]:
    out = []
    for name in names:
        change = store.risk_change(name, book.snapshot(name))
        if change is not None:
            out.append(change)
    return out


StoreLike = MemoryStore | BackendStore
