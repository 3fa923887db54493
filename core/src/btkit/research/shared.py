"""Candles loaded once by the driver and shared with every worker (docs/executors.md).

The driver fetches the candles a research run needs from the real exchange (validated, through the same
:class:`btkit.market.Market` paging as a backtest), copies each ``(n, 6)`` array into one
``multiprocessing.shared_memory`` block, and sends only the block names to the workers. A worker attaches
to the blocks (no copy) and serves them through an in-process exchange ``shared:<exchange>``: the intervals
fetched by the driver as they are, any other interval aggregated from the 1-minute candles with
:func:`btkit.candles.resample` (how the simulated exchange and the candle store build them).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime
from multiprocessing import shared_memory
from typing import Any

import attrs
import numpy as np

from btkit.candles import resample
from btkit.components import interval_ms
from btkit.errors import CandleDataError

__all__ = ["CandleHandles", "SharedCandles", "attach", "fetch_candles", "shared_exchange"]

MINUTE_MS = 60_000


@attrs.frozen(kw_only=True)
class CandleHandles:
    """What workers receive: per ``(symbol, interval)`` the shared-memory block name and row count; or, for
    the in-process serial executor, the arrays themselves (``local``)."""

    exchange: str
    blocks: tuple[tuple[str, str, str, int], ...] = ()  # (symbol, interval, block name, rows)
    local: Mapping[tuple[str, str], np.ndarray] | None = attrs.field(default=None, eq=False)


def fetch_candles(
    exchange: str, symbol: str, intervals: Sequence[str], start_ms: int, stop_ms: int
) -> dict[tuple[str, str], np.ndarray]:
    """The candles of every interval opening in ``[start_ms, stop_ms)`` as the exchange gives them."""
    from btkit.config import get_config
    from btkit.market import Market
    from btkit.plugins import collect_components, get_plugin_manager

    spec = collect_components(get_plugin_manager()).get("exchange", exchange)
    market = Market(spec, get_config(), backtest=True)

    async def load() -> dict[tuple[str, str], np.ndarray]:
        out: dict[tuple[str, str], np.ndarray] = {}
        for iv in dict.fromkeys(intervals):
            step = interval_ms(iv)
            first = (start_ms // step) * step
            out[(symbol, iv)] = await market._fetch(symbol, iv, first, stop_ms)
        close = spec.close
        if close is not None:
            res = close()
            if asyncio.iscoroutine(res):
                await res
        return out

    arrays = asyncio.run(load())
    if not len(arrays.get((symbol, "1m"), ())):
        raise CandleDataError(f"exchange {exchange} has no 1m candles of {symbol} for this research range")
    return arrays


class SharedCandles:
    """The driver's side: owns the shared-memory blocks until :meth:`close`."""

    def __init__(self, exchange: str, arrays: Mapping[tuple[str, str], np.ndarray]) -> None:
        self.exchange = exchange
        self._blocks: list[shared_memory.SharedMemory] = []
        blocks = []
        try:
            for (symbol, iv), arr in arrays.items():
                arr = np.ascontiguousarray(arr, dtype=np.float64)
                shm = shared_memory.SharedMemory(create=True, size=max(1, arr.nbytes))
                self._blocks.append(shm)
                view = np.ndarray(arr.shape, dtype=np.float64, buffer=shm.buf)
                view[:] = arr
                del view
                shm.close()  # unmapped here: forked workers do not inherit a second mapping of the block
                blocks.append((symbol, iv, shm.name, int(arr.shape[0])))
        except BaseException:
            self.close()
            raise
        self.handles = CandleHandles(exchange=exchange, blocks=tuple(blocks))
        self.nbytes = sum(int(r) * 48 for *_, r in blocks)

    def close(self) -> None:
        for shm in self._blocks:
            try:
                shm.close()
                shm.unlink()  # by name: works on a closed block
            except FileNotFoundError:
                pass
        self._blocks = []


_ATTACHED: dict[str, tuple[shared_memory.SharedMemory, np.ndarray]] = {}


def _attach_block(name: str, rows: int) -> np.ndarray:
    hit = _ATTACHED.get(name)
    if hit is not None:
        return hit[1]
    if sys.version_info >= (3, 13):
        shm = shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
    else:
        from multiprocessing import resource_tracker

        # the driver owns the block: attaching must not register it with a resource tracker (which would
        # unlink it when this worker exits, or forget the driver's own registration)
        register = resource_tracker.register
        resource_tracker.register = lambda *a, **k: None  # type: ignore[assignment]
        try:
            shm = shared_memory.SharedMemory(name=name)
        finally:
            resource_tracker.register = register  # type: ignore[assignment]
    arr = np.ndarray((rows, 6), dtype=np.float64, buffer=shm.buf)
    arr.flags.writeable = False
    _ATTACHED[name] = (shm, arr)
    return arr


def attach(handles: CandleHandles) -> dict[tuple[str, str], np.ndarray]:
    """The arrays behind ``handles`` (shared memory, read-only, attached once per process)."""
    if handles.local is not None:
        return dict(handles.local)
    return {(sym, iv): _attach_block(name, rows) for sym, iv, name, rows in handles.blocks}


def _slice(arr: np.ndarray, start: int, limit: int) -> np.ndarray:
    ts = arr[:, 0]
    i = int(np.searchsorted(ts, start, side="left"))
    return arr[i : i + limit]


def shared_exchange(handles: CandleHandles) -> Any:
    """An :class:`~btkit.components.ExchangeSpec` named ``shared:<exchange>`` serving the shared candles."""
    from btkit.components import ExchangeSpec

    arrays = attach(handles)

    def get_candles(symbol: str, interval: str, since: datetime, limit: int) -> np.ndarray:
        start = int(since.timestamp() * 1000)
        arr = arrays.get((symbol, interval))
        if arr is not None:
            return _slice(arr, start, limit)
        base = arrays.get((symbol, "1m"))
        if base is None:
            raise CandleDataError(f"shared candles hold no {symbol} (the research run loaded other symbols)")
        step = interval_ms(interval)
        first = -(-start // step) * step
        rows = _slice(base, first, limit * (step // MINUTE_MS))
        return resample(np.array(rows), step)

    return ExchangeSpec(name=f"shared:{handles.exchange}", get_candles=get_candles)
