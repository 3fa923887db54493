"""``PersistSignalAdapter.use(MyAdapter)``: a one-off, in-code adapter for the *signal* document.

The backtest-kit shape: ``MyAdapter(symbol, strategy_name, exchange_name)`` with ``wait_for_init(initial)``,
``read_signal_data()`` and ``write_signal_data(row)`` — each sync or async. ``row`` is the open position as
a JSON object (the same shape the file backend stores under ``"row"``) or None when nothing is open. The
other documents (schedule, strategy state, risk, history) stay on the selected backend. For a complete
backend, write a persistence plugin instead (docs/writing-a-persistence-backend.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
from typing import Any

from btkit.errors import PersistenceError


def call_blocking(fn: Any, *args: Any) -> Any:
    """Call a sync or async function and wait for its result, also from inside a running event loop."""
    out = fn(*args)
    if not inspect.isawaitable(out):
        return out

    async def wait() -> Any:
        return await out

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, wait()).result()


class PersistSignalAdapter:
    """Select an in-code adapter class for the signal document of live runs (None: back to the backend)."""

    adapter: type | None = None

    @classmethod
    def use(cls, adapter: type | None) -> None:
        if adapter is not None:
            missing = [m for m in ("read_signal_data", "write_signal_data") if not hasattr(adapter, m)]
            if missing:
                raise PersistenceError(f"signal adapter {adapter!r} lacks {', '.join(missing)}; see the docs")
        cls.adapter = adapter


class SignalAdapters:
    """One adapter instance per (strategy, symbol), created at load time with its exchange name."""

    def __init__(self, adapter_cls: type) -> None:
        self.cls = adapter_cls
        self.instances: dict[tuple[str, ...], Any] = {}

    def open(self, key: tuple[str, ...], exchange_name: str) -> Any:
        inst = self.instances.get(key)
        if inst is None:
            strategy, symbol = key
            inst = self.cls(symbol, strategy, exchange_name)
            init = getattr(inst, "wait_for_init", None)
            if init is not None:
                call_blocking(init, True)
            self.instances[key] = inst
        return inst

    def read(self, key: tuple[str, ...]) -> Any:
        return call_blocking(self.instances[key].read_signal_data)

    def write(self, key: tuple[str, ...], row: Any) -> None:
        adapter = self.instances.get(key)
        if adapter is None:
            raise PersistenceError(f"signal adapter for {'/'.join(key)} written before it was loaded")
        call_blocking(adapter.write_signal_data, row)
