"""Results that work with both ``for`` and ``async for``.

``async for`` runs the engine in the caller's event loop. ``for`` drives a private event loop in the
calling thread, or — when the calling thread already runs a loop (a notebook, an agent framework) — in
a helper thread, handing results over through a queue.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_DONE = object()


class ResultStream(Generic[T]):
    def __init__(self, factory: Callable[[], AsyncIterator[T]]) -> None:
        self._factory = factory

    def __aiter__(self) -> AsyncIterator[T]:
        return self._factory()

    def __iter__(self) -> Iterator[T]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._iter_here()
        return self._iter_threaded()

    def _iter_here(self) -> Iterator[T]:
        loop = asyncio.new_event_loop()
        agen = self._factory()
        try:
            while True:
                try:
                    yield loop.run_until_complete(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            try:
                loop.run_until_complete(agen.aclose())  # type: ignore[attr-defined]
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def _iter_threaded(self) -> Iterator[T]:
        q: queue.Queue[Any] = queue.Queue(maxsize=64)
        stop = threading.Event()

        def pump() -> None:
            try:
                for item in self._iter_here():
                    while not stop.is_set():
                        try:
                            q.put((True, item), timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as exc:
                q.put((False, exc))
                return
            q.put((True, _DONE))

        worker = threading.Thread(target=pump, name="btkit-stream", daemon=True)
        worker.start()
        try:
            while True:
                ok, item = q.get()
                if not ok:
                    raise item
                if item is _DONE:
                    return
                yield item
        finally:
            stop.set()

    def collect(self) -> list[T]:
        return list(self)
