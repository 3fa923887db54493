"""Executors: where research tasks (optimiser trials, walker runs) run (docs/executors.md).

An executor is offered by a plugin through the ``btkit_executors`` hook as an :class:`ExecutorSpec`; the
built-ins ``serial`` (in this process) and ``process`` (a stdlib process pool) come from the default plugin
``btkit.defaults.executors``; ``btkit-ray`` adds ``ray``. Protocol:

* ``start(shared)`` — the picklable payload every task needs (candles in shared memory, the strategy name,
  the frame …), sent to the workers once;
* ``map(fn, items)`` — calls the module-level ``fn(shared, item)`` in a worker for every item and yields
  ``(index, result)`` as each finishes, in any order. An exception inside ``fn`` comes back as a
  :class:`TaskError` result, it is never raised out of ``map``;
* ``close()`` — stop the workers, free what ``start`` took.

An executor may set ``local_candles = True``: it then receives the candle columns themselves in
``shared["candles"]`` (it runs in this process, or ships them itself, e.g. one ``ray.put``) instead of the
names of shared-memory blocks on this machine.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol

import attrs

from btkit.errors import ConfigError

__all__ = [
    "Executor",
    "ExecutorOptions",
    "ExecutorSpec",
    "ProcessExecutor",
    "SerialExecutor",
    "TaskError",
    "builtin_executors",
    "call_task",
    "get_executor",
]


@attrs.frozen(kw_only=True)
class ExecutorOptions:
    jobs: int | None = None  # worker count; None = os.cpu_count()
    address: str | None = None  # cluster address (ray); None = local


@attrs.frozen(kw_only=True)
class ExecutorSpec:
    name: str
    factory: Callable[[ExecutorOptions], Executor]
    description: str = ""
    dist: str = "<code>"


class Executor(Protocol):
    name: str

    def start(self, shared: Mapping[str, Any]) -> None: ...

    def map(
        self, fn: Callable[[Mapping[str, Any], Any], Any], items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...


@attrs.frozen(kw_only=True)
class TaskError:
    """A task that raised: the exception's type name, message and formatted traceback (picklable)."""

    type: str
    message: str
    traceback: str = ""

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"

    @classmethod
    def of(cls, exc: BaseException) -> TaskError:
        return cls(
            type=type(exc).__name__, message=str(exc), traceback="".join(traceback.format_exception(exc))
        )


def call_task(fn: Callable[[Mapping[str, Any], Any], Any], shared: Mapping[str, Any], item: Any) -> Any:
    """``fn(shared, item)``, or a :class:`TaskError` if it raised (what every executor returns per task)."""
    try:
        return fn(shared, item)
    except Exception as exc:
        return TaskError.of(exc)


def _jobs(options: ExecutorOptions) -> int:
    jobs = options.jobs if options.jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    return jobs


class SerialExecutor:
    """Every task in this process, one after another, in order (the reference the others must equal)."""

    name = "serial"
    local_candles = True

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        self.shared: Mapping[str, Any] = {}

    def start(self, shared: Mapping[str, Any]) -> None:
        self.shared = shared

    def map(
        self, fn: Callable[[Mapping[str, Any], Any], Any], items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        for i, item in enumerate(items):
            yield i, call_task(fn, self.shared, item)

    def close(self) -> None:
        self.shared = {}


# ---------------------------------------------------------------- process pool
_WORKER_SHARED: Mapping[str, Any] = {}


def _init_worker(shared: Mapping[str, Any]) -> None:
    import signal

    global _WORKER_SHARED
    _WORKER_SHARED = shared
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C is the driver's: it stops the pool and keeps results


def _run_in_worker(fn: Callable[[Mapping[str, Any], Any], Any], item: Any) -> Any:
    return call_task(fn, _WORKER_SHARED, item)


def _context() -> Any:
    import multiprocessing

    # fork where the platform has it: workers inherit the in-process registrations (add_strategy in a
    # script, --strategy-file) and start in milliseconds; candles still go through shared memory
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


class ProcessExecutor:
    """A stdlib process pool of ``jobs`` workers. ``shared`` is handed to each worker once (its initializer);
    large arrays in it should be shared-memory handles (``btkit.research.shared``), never the data."""

    name = "process"

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        self.jobs = _jobs(options or ExecutorOptions())
        self.pool: ProcessPoolExecutor | None = None
        self.shared: Mapping[str, Any] = {}

    def start(self, shared: Mapping[str, Any]) -> None:
        self.shared = shared
        self.pool = ProcessPoolExecutor(
            max_workers=self.jobs, mp_context=_context(), initializer=_init_worker, initargs=(shared,)
        )

    def map(
        self, fn: Callable[[Mapping[str, Any], Any], Any], items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        if self.pool is None:
            raise RuntimeError("ProcessExecutor.map before start()")
        todo = iter(enumerate(items))
        running: dict[Future[Any], int] = {}

        def submit() -> bool:
            nxt = next(todo, None)
            if nxt is None:
                return False
            assert self.pool is not None
            running[self.pool.submit(_run_in_worker, fn, nxt[1])] = nxt[0]
            return True

        for _ in range(self.jobs * 2):  # a short queue: Ctrl-C does not leave hundreds of tasks behind
            if not submit():
                break
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    index = running.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as exc:  # the worker died (BrokenProcessPool) or did not pickle
                        result = TaskError.of(exc)
                    yield index, result
                    submit()
        finally:
            for fut in running:
                fut.cancel()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


def builtin_executors() -> list[ExecutorSpec]:
    return [
        ExecutorSpec(
            name="serial",
            factory=SerialExecutor,
            description="in this process, one task at a time",
            dist="btkit",
        ),
        ExecutorSpec(
            name="process",
            factory=ProcessExecutor,
            description="a local process pool (--jobs workers), candles in shared memory",
            dist="btkit",
        ),
    ]


HINTS = {"ray": "pip install btkit-ray"}


def get_executor(name: str, options: ExecutorOptions | None = None, pm: Any = None) -> Executor:
    """The executor ``name`` from every ``btkit_executors`` implementation; an unknown name is a
    :class:`ConfigError` (``ray`` without its plugin says ``pip install btkit-ray``)."""
    from btkit.plugins import get_plugin_manager

    pm = pm if pm is not None else get_plugin_manager()
    specs: dict[str, ExecutorSpec] = {}
    for records in pm.hook.btkit_executors():
        for spec in records or ():
            if isinstance(spec, ExecutorSpec):
                specs.setdefault(spec.name, spec)
    spec = specs.get(name)
    if spec is None:
        hint = HINTS.get(name)
        if hint:
            raise ConfigError(f"executor {name!r} is not installed; {hint}")
        raise ConfigError(f"no executor named {name!r} (known: {', '.join(sorted(specs)) or 'none'})")
    return spec.factory(options or ExecutorOptions())
