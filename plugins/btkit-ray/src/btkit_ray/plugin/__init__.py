"""The ``btkit`` entry point of btkit-ray: offers the ``ray`` executor through ``btkit_executors``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from btkit.hookspecs import hookimpl
from btkit.research.executors import ExecutorOptions, ExecutorSpec

if TYPE_CHECKING:
    from btkit_ray.executor import RayExecutor

btkit_api = ">=1,<2"  # the btkit plugin API versions this plugin supports (btkit.PLUGIN_API_VERSION)

DESCRIPTION = "Ray tasks: a local cluster, or an existing one via --ray-address / RAY_ADDRESS"


def make_executor(options: ExecutorOptions) -> RayExecutor:
    from btkit_ray.executor import RayExecutor

    return RayExecutor(options)


@hookimpl
def btkit_executors() -> list[ExecutorSpec]:
    return [ExecutorSpec(name="ray", factory=make_executor, description=DESCRIPTION, dist="btkit-ray")]
