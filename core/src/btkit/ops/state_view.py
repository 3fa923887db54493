"""A read-only, consistent snapshot of the persisted live state, on every persistence backend.

The backend is opened without the live lock (``open(exclusive=False)``) and never written to: a document
that does not parse is reported, never quarantined. Each document is written whole by the live process
(temp file + rename, a SQLite transaction, a Redis MULTI); a snapshot is read twice and taken only when
both reads agree, so a reader never sees half of a state change that spans documents (a close writes the
history before it removes the position).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import attrs

from btkit import serde
from btkit.errors import PersistenceError
from btkit.model import Closed, SignalRow

log = logging.getLogger("btkit.ops")

DOMAINS_READ = ("signal", "schedule", "strategy", "history", "risk", "wallet")
SNAPSHOT_TRIES = 8


@attrs.frozen
class Snapshot:
    """Every document of the state at one moment: ``docs[domain][key] = document``."""

    docs: dict[str, dict[tuple[str, ...], Any]]
    consistent: bool

    def rows(self, domain: str) -> list[tuple[tuple[str, ...], SignalRow]]:
        from btkit.persist.state import _SignalDoc

        out = []
        for key, doc in sorted(self.docs.get(domain, {}).items()):
            body = serde.from_document(doc, where=f"{domain} {'/'.join(key)}")
            row = serde.structure(body, _SignalDoc, where=f"{domain} {'/'.join(key)}").row
            if row is not None:
                out.append((key, row))
        return out

    def closed(self) -> list[Closed]:
        from btkit.persist.state import _HistoryDoc

        out: list[Closed] = []
        for key, doc in sorted(self.docs.get("history", {}).items()):
            body = serde.from_document(doc, where=f"history {'/'.join(key)}")
            out += serde.structure(body, _HistoryDoc, where=f"history {'/'.join(key)}").closed
        return sorted(out, key=lambda c: c.close_timestamp)

    def risk(self) -> dict[str, list[dict[str, Any]]]:
        from btkit.persist.state import _RiskDoc

        out = {}
        for key, doc in sorted(self.docs.get("risk", {}).items()):
            body = serde.from_document(doc, where=f"risk {'/'.join(key)}")
            positions = serde.structure(body, _RiskDoc, where=f"risk {'/'.join(key)}").positions
            out[key[0]] = [serde.unstructure(p) for p in positions]
        return out

    def wallet_balance(self) -> float | None:
        from btkit.accounting.wallet import WalletDoc

        for key, doc in self.docs.get("wallet", {}).items():
            body = serde.from_document(doc, where=f"wallet {'/'.join(key)}")
            return float(serde.structure(body, WalletDoc, where="wallet").balance)
        return None

    def last_tick(self) -> int | None:
        from btkit.engine.state import StrategyState

        ticks = []
        for key, doc in self.docs.get("strategy", {}).items():
            body = serde.from_document(doc, where=f"strategy {'/'.join(key)}")
            st = serde.structure(body, StrategyState, where="strategy")
            if st.last_tick is not None:
                ticks.append(st.last_tick)
        return max(ticks, default=None)


class StateReader:
    """Holds one backend opened without the lock; :meth:`snapshot` reads a consistent copy."""

    def __init__(self, open_backend: Callable[[], Any], name: str) -> None:
        self._open_backend = open_backend
        self.name = name
        self._backend: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._backend is None:
            backend = self._open_backend()
            backend.open(exclusive=False)
            self._backend = backend
        return self._backend

    def _read_all(self) -> dict[str, dict[tuple[str, ...], Any]]:
        backend = self._get()
        docs: dict[str, dict[tuple[str, ...], Any]] = {}
        for domain in DOMAINS_READ:
            table = docs[domain] = {}
            for key in backend.keys(domain):
                doc = backend.read(domain, tuple(key))
                if doc is not None:
                    table[tuple(key)] = doc
        return docs

    def snapshot(self) -> Snapshot:
        with self._lock:
            try:
                last = self._read_all()
                for _ in range(SNAPSHOT_TRIES):
                    again = self._read_all()
                    if again == last:
                        return Snapshot(again, True)
                    last = again
                return Snapshot(last, False)
            except PersistenceError:
                self.close()  # reopen on the next request (a restarted Redis, say)
                raise

    def close(self) -> None:
        if self._backend is not None:
            try:
                self._backend.close()
            finally:
                self._backend = None


def reader_for(backend_name: str, options: dict[str, Any]) -> StateReader:
    """A reader of the configured backend (``file``, ``sqlite``, ``redis`` or any plugin's)."""
    from btkit.plugins import collect_components, get_plugin_manager, require_loaded

    pm = get_plugin_manager()
    spec = collect_components(pm).get("persistence", backend_name)
    require_loaded(pm, spec.dist)
    return StateReader(lambda: spec.factory(**options), backend_name)
