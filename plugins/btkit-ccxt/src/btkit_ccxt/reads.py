"""Account-wide reads shared by every symbol that asks in the same moment.

A broker trading many symbols asks the same account-wide question once per symbol and tick (positions,
open orders, balances). :class:`SharedRead` answers all of them with one request: a read in flight is
joined by every caller for which it is fresh enough — it started after that caller's own last write
(an order sent, cancelled or looked up on one of its keys: :meth:`SharedRead.touched`), so a caller always
sees the effect of what it did itself. A read not sent yet is joined by anyone (it will be sent after their
writes). A finished read is never reused: the next ask starts a new one. The first caller of a new read
waits ``gather_seconds`` before sending it, so that the symbols of one tick, which reach this point
within a few milliseconds of each other, share it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedRead(Generic[T]):
    """One account-wide read (``fetch``) shared by concurrent callers; see the module docs."""

    def __init__(self, fetch: Callable[[], Awaitable[T]], *, gather_seconds: float = 0.05) -> None:
        self._fetch = fetch
        self.gather_seconds = gather_seconds
        self._task: asyncio.Future[T] | None = None
        self._task_seq: int | None = None  # when the read in flight was sent (None: not sent yet)
        self._seq = 0
        self._wrote: dict[str, int] = {}
        self.reads = 0  # requests started
        self.asks = 0  # callers served

    def touched(self, keys: Iterable[str]) -> None:
        """The caller wrote (or read back) something on ``keys``: later asks for them need a newer read."""
        self._seq += 1
        for key in keys:
            self._wrote[key] = self._seq

    async def _run(self) -> T:
        if self.gather_seconds > 0:
            await asyncio.sleep(self.gather_seconds)
        self._seq += 1
        self._task_seq = self._seq
        return await self._fetch()

    async def get(self, key: str) -> T:
        """The account-wide answer, at least as new as the last :meth:`touched` of ``key``."""
        self.asks += 1
        task = self._task
        sent = self._task_seq
        if task is None or task.done() or (sent is not None and sent <= self._wrote.get(key, -1)):
            self._task_seq = None
            self.reads += 1
            task = self._task = asyncio.ensure_future(self._run())
        return await asyncio.shield(task)
