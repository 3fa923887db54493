"""btkit-ray: a research executor running trials as Ray tasks (``--executor ray``).

Ray is imported only when the executor starts: every ``btkit`` start imports the plugin module
(``btkit_ray.plugin``), and that must stay cheap.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

__all__ = ["RayExecutor", "TaskFailed"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from btkit_ray import executor

        return getattr(executor, name)
    raise AttributeError(name)
