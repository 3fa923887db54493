"""btkit-sqlite: a persistence backend plugin storing live state in one SQLite database.

Select it with ``[persistence] backend = "sqlite"`` (``path = "./dump/btkit.sqlite3"``) or
``btkit live --persistence sqlite``.
"""

from __future__ import annotations

from btkit.components import PersistenceBackendSpec
from btkit.hookspecs import hookimpl
from btkit_sqlite.backend import MIGRATIONS, SCHEMA_VERSION, SqliteBackend

__version__ = "0.2.0"
btkit_api = ">=1,<2"  # the btkit plugin API versions this plugin supports (btkit.PLUGIN_API_VERSION)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SqliteBackend", "btkit_persistence_backends"]


@hookimpl
def btkit_persistence_backends() -> list[PersistenceBackendSpec]:
    return [PersistenceBackendSpec(name="sqlite", factory=SqliteBackend, dist="btkit-sqlite")]
