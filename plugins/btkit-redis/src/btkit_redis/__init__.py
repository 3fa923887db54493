"""btkit-redis: a persistence backend plugin storing live state in Redis.

Select it with ``[persistence] backend = "redis"`` and ``url = "redis://host:6379/0"`` (or the
environment variable ``BTKIT__PERSISTENCE__URL``), or ``btkit live --persistence redis``.
"""

from __future__ import annotations

from btkit.components import PersistenceBackendSpec
from btkit.hookspecs import hookimpl

from btkit_redis.backend import RedisBackend, redact_url

__all__ = ["RedisBackend", "btkit_persistence_backends", "redact_url"]


@hookimpl
def btkit_persistence_backends() -> list[PersistenceBackendSpec]:
    return [PersistenceBackendSpec(name="redis", factory=RedisBackend, dist="btkit-redis")]
