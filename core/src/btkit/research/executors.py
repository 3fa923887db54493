"""Executors run research trials; plugins offer them by name through the ``btkit_executors`` hook."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import attrs


@attrs.frozen(kw_only=True)
class ExecutorOptions:
    jobs: int | None = None
    address: str | None = None


@attrs.frozen(kw_only=True)
class ExecutorSpec:
    name: str
    factory: Callable[[ExecutorOptions], Executor]
    description: str = ""
    dist: str = "<code>"


class Executor(Protocol):
    name: str

    def start(self, shared: Mapping[str, Any]) -> None: ...  # payload sent to workers once

    # fn(shared, item) in a worker; yields (index, result) as each finishes; an exception in fn is returned
    # as a result record, not raised
    def map(self, fn: Callable[[Mapping[str, Any], Any], Any], items: Any) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...
