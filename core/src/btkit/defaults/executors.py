"""The built-in research executors (``serial``, ``process``) as an ordinary plugin (docs/executors.md)."""

from __future__ import annotations

from btkit.hookspecs import hookimpl
from btkit.research.executors import ExecutorSpec, builtin_executors


@hookimpl
def btkit_executors() -> list[ExecutorSpec]:
    return builtin_executors()
