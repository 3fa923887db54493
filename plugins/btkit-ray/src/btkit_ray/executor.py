"""The ``ray`` executor: each item is a ``ray.remote`` task; the shared payload is ``ray.put`` once.

Cluster choice, in ``start``:

- Ray already initialised in this process (a notebook, a test fixture, a user's own ``ray.init``): use it
  as it is and never shut it down.
- Otherwise ``ray.init(address=options.address or $RAY_ADDRESS)``: with an address, connect to that
  existing cluster (``jobs`` then caps how many tasks are in flight at once); without one, start a local
  cluster with ``num_cpus=jobs`` (all cores when ``jobs`` is None). ``close`` shuts down only a cluster
  this executor started or connected to.

Workers import btkit and its plugins from their own node's environment: on a local cluster that is the
driver's own venv; on a multi-node cluster the same distributions must be installed on every node.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from btkit.errors import ConfigError
from btkit.research.executors import ExecutorOptions, TaskError, call_task

__all__ = ["RayExecutor", "TaskFailed", "import_ray"]

log = logging.getLogger("btkit.ray")
ADDRESS_ENV = "RAY_ADDRESS"


#: the failure record every executor returns for a task that raised (btkit.research.executors.TaskError)
TaskFailed = TaskError


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a dependency of this distribution
        raise ConfigError(f"the ray executor needs Ray ({exc}); run: pip install btkit-ray") from None
    return ray


UV_HOOK = "RAY_ENABLE_UV_RUN_RUNTIME_ENV"


def _nothing() -> None:
    return None


def _without_uv_runtime_env(ray: Any) -> Callable[[], None]:
    """Under ``uv run`` Ray >= 2.43 re-creates the driver's uv project in every worker (``uv run`` per
    worker, the working directory zipped and uploaded) — slow, and needless on a local cluster whose
    workers start from this very interpreter. Turn that hook off for our ``ray.init`` unless the user
    set ``RAY_ENABLE_UV_RUN_RUNTIME_ENV`` themselves; return the undo."""
    consts = getattr(getattr(ray, "_private", None), "ray_constants", None)
    if UV_HOOK in os.environ or consts is None or not hasattr(consts, UV_HOOK):
        return _nothing
    before = getattr(consts, UV_HOOK)
    setattr(consts, UV_HOOK, False)
    return lambda: setattr(consts, UV_HOOK, before)


def _run_item(fn: Callable[[Mapping[str, Any], Any], Any], shared: Mapping[str, Any], item: Any) -> Any:
    """The body of every task (in a worker): ``fn(shared, item)``; an exception becomes a record.

    Ray workers install uvloop's event-loop policy. A backtest drives its own loop with hundreds of
    ``run_until_complete`` calls and thousands of small tasks and no I/O, where uvloop costs more per call
    than the standard loop (21 µs against 10 µs per ``run_until_complete`` measured in a worker here; a
    year's trial ran ~25 % slower than in a process-pool worker). The task runs under the standard policy
    and Ray's is put back afterwards.
    """
    ray_policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_STANDARD_POLICY)
    try:
        return call_task(fn, shared, item)
    finally:
        asyncio.set_event_loop_policy(ray_policy)


_STANDARD_POLICY = asyncio.DefaultEventLoopPolicy()


class RayExecutor:
    """Run ``fn(shared, item)`` as Ray tasks; yield ``(index, result)`` as each task finishes."""

    name = "ray"
    local_candles = True  # the columns themselves: put once in the object store, read zero-copy by tasks

    def __init__(self, options: ExecutorOptions | None = None) -> None:
        self.options = options or ExecutorOptions()
        jobs = self.options.jobs
        if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
            raise ConfigError(f"--jobs must be a whole number >= 1, got {jobs!r}")
        self.address: str | None = self.options.address or os.environ.get(ADDRESS_ENV) or None
        self.started_cluster = False  # True when start() called ray.init (close() then shuts it down)
        self.start_seconds = 0.0  # time spent in ray.init (0 when Ray was already initialised)
        self.put_seconds = 0.0  # time spent putting the shared payload in the object store
        self._ray: Any = None
        self._shared_ref: Any = None
        self._task: Any = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, shared: Mapping[str, Any]) -> None:
        ray = self._ray = import_ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,  # worker output would interleave with the driver's tables
                "logging_level": logging.WARNING,
                "configure_logging": True,
            }
            if self.address:
                kwargs["address"] = self.address
                undo = _nothing
            else:
                kwargs["num_cpus"] = self.options.jobs
                undo = _without_uv_runtime_env(ray)
            t0 = time.perf_counter()
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise ConfigError(
                    f"cannot connect to the Ray cluster at {self.address!r} ({exc}); start it with "
                    "`ray start --head --port=6379`, fix --ray-address / RAY_ADDRESS, or, for a cluster "
                    "with token authentication, set RAY_AUTH_MODE=token and its token (docs/ray.md)"
                ) from None
            finally:
                undo()
            self.start_seconds = time.perf_counter() - t0
            self.started_cluster = True
            where = (
                f"connected to the Ray cluster at {self.address}"
                if self.address
                else "started a local Ray cluster"
            )
            log.info("ray: %s with %d CPUs in %.2f s", where, self.cpus(), self.start_seconds)
        t0 = time.perf_counter()
        self._shared_ref = ray.put(dict(shared))
        self.put_seconds = time.perf_counter() - t0
        self._task = ray.remote(_run_item)

    def cpus(self) -> int:
        """The CPUs of the cluster in use."""
        return int(self._ray.cluster_resources().get("CPU", 1)) if self._ray is not None else 0

    def close(self) -> None:
        ray = self._ray
        self._shared_ref = None
        self._task = None
        if ray is not None and self.started_cluster and ray.is_initialized():
            ray.shutdown()
        self.started_cluster = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ work
    def _window(self) -> int:
        """How many tasks may be in flight: ``jobs`` on a cluster this run did not size, else 2 × CPUs
        (Ray's own scheduler then keeps every CPU busy with no gap between tasks)."""
        cpus = max(self.cpus(), 1)
        jobs = self.options.jobs
        if jobs is not None and (self.address or not self.started_cluster):
            return jobs
        return 2 * (jobs or cpus)

    def map(
        self, fn: Callable[[Mapping[str, Any], Any], Any], items: Iterable[Any]
    ) -> Iterator[tuple[int, Any]]:
        if self._task is None:
            raise RuntimeError("RayExecutor.map called before start()")
        ray = self._ray
        fn_ref = ray.put(fn)  # pickled once, not once per task
        pending: dict[Any, int] = {}
        source = enumerate(items)
        window = self._window()
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    nxt = next(source, None)
                    if nxt is None:
                        exhausted = True
                        break
                    index, item = nxt
                    pending[self._task.remote(fn_ref, self._shared_ref, item)] = index
                if not pending:
                    return
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    index = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # the worker died, or the task could not run at all
                        result = TaskError.of(exc)
                    yield index, result
        finally:
            for ref in pending:  # the consumer stopped early (Ctrl-C, break): stop what is still queued
                ray.cancel(ref)
