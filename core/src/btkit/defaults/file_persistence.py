"""Default plugin: the file persistence backend (``[persistence] backend = "file"``)."""

from __future__ import annotations

from btkit.components import PersistenceBackendSpec
from btkit.hookspecs import hookimpl
from btkit.persist.file import FileBackend


@hookimpl
def btkit_persistence_backends() -> list[PersistenceBackendSpec]:
    return [PersistenceBackendSpec(name="file", factory=FileBackend, dist="btkit")]
