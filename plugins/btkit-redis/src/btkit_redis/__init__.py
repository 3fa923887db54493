"""btkit-redis: a persistence backend plugin storing live state in Redis.

Select it with ``[persistence] backend = "redis"`` and ``url = "redis://host:6379/0"`` (or the
environment variable ``BTKIT__PERSISTENCE__URL``), or ``btkit live --persistence redis``.

redis-py is imported only when the backend is used: every ``btkit`` start imports this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from btkit.components import PersistenceBackendSpec
from btkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from btkit_redis.backend import RedisBackend

__version__ = "0.2.0"
btkit_api = ">=1,<2"  # the btkit plugin API versions this plugin supports (btkit.PLUGIN_API_VERSION)

__all__ = ["RedisBackend", "btkit_persistence_backends", "redact_url"]


def __getattr__(name: str) -> Any:
    if name in ("RedisBackend", "redact_url"):
        from btkit_redis import backend

        return getattr(backend, name)
    raise AttributeError(name)


def _make(**options: Any) -> RedisBackend:
    from btkit_redis.backend import RedisBackend

    return RedisBackend(**options)


@hookimpl
def btkit_persistence_backends() -> list[PersistenceBackendSpec]:
    return [PersistenceBackendSpec(name="redis", factory=_make, dist="btkit-redis")]
