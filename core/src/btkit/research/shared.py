"""Candles loaded once by the driver and shared with every worker (docs/executors.md).

The driver fetches the candles a research run needs from the real exchange (validated, through the same
:class:`btkit.market.Market` paging as a backtest) and lays each ``(symbol, interval)`` out once as
columns (:class:`CandleColumns`: int64 open times and a ``(5, n)`` float64 block of open, high, low, close,
volume). For the ``process`` executor the columns go into one ``multiprocessing.shared_memory`` block per
``(symbol, interval)`` and the workers receive only the block names; a worker maps the blocks read-only
(no copy). For ``serial`` (and for ``ray``, which ``ray.put``\\ s them once into its object store) the
columns themselves travel. Either way a worker serves them through an in-process exchange
``shared:<exchange>`` whose ``get_candles`` is a :class:`SharedSource`: the engine's Market takes the
whole columns as its cache (views, never copied per trial; see ``btkit.market.ColumnSource``); any other
interval is aggregated from the 1-minute candles with :func:`btkit.candles.resample` (how the simulated
exchange and the candle store build them).
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

__all__ = [
    "CandleColumns",
    "CandleHandles",
    "SharedCandles",
    "SharedSource",
    "attach",
    "fetch_candles",
    "shared_exchange",
    "to_columns",
]

MINUTE_MS = 60_000


@attrs.frozen(kw_only=True, eq=False)
class CandleColumns:
    """Validated candles of one ``(symbol, interval)`` as read-only columns: ``ts`` (int64 open times, ms)
    and ``values`` (``(5, n)`` float64: open, high, low, close, volume; each row contiguous)."""

    ts: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def columns(self) -> tuple[np.ndarray, ...]:
        """``(ts, open, high, low, close, volume)``: views, no copy."""
        return (self.ts, *self.values)

    def rows(self, i: int, j: int) -> np.ndarray:
        """Rows ``[i, j)`` as an ``(m, 6)`` float64 candle array (a copy: what ``get_candles`` returns)."""
        out = np.empty((max(0, min(j, len(self.ts)) - i), 6), dtype=np.float64)
        out[:, 0] = self.ts[i : i + len(out)]
        out[:, 1:] = self.values[:, i : i + len(out)].T
        return out


def to_columns(arr: np.ndarray) -> CandleColumns:
    """An ``(n, 6)`` candle array as fresh read-only :class:`CandleColumns` (one copy, in the driver)."""
    ts = np.ascontiguousarray(arr[:, 0], dtype=np.int64)
    values = np.ascontiguousarray(arr[:, 1:6].T, dtype=np.float64)
    ts.flags.writeable = False
    values.flags.writeable = False
    return CandleColumns(ts=ts, values=values)


@attrs.frozen(kw_only=True)
class CandleHandles:
    """What workers receive: per ``(symbol, interval)`` the shared-memory block name and row count; or the
    columns themselves (``local``: the serial executor, or what Ray puts in its object store)."""

    exchange: str
    blocks: tuple[tuple[str, str, str, int], ...] = ()  # (symbol, interval, block name, rows)
    local: Mapping[tuple[str, str], CandleColumns] | None = attrs.field(default=None, eq=False)


def fetch_candles(
    exchange: str, symbol: str, intervals: Sequence[str], start_ms: int, stop_ms: int
) -> dict[tuple[str, str], CandleColumns]:
    """The candles of every interval opening in ``[start_ms, stop_ms)`` as the exchange gives them
    (validated and gap-checked like a backtest's), as columns."""
    from btkit.config import get_config
    from btkit.market import Market
    from btkit.plugins import collect_components, get_plugin_manager

    spec = collect_components(get_plugin_manager()).get("exchange", exchange)
    market = Market(spec, get_config(), backtest=True)

    async def load() -> dict[tuple[str, str], CandleColumns]:
        out: dict[tuple[str, str], CandleColumns] = {}
        for iv in dict.fromkeys(intervals):
            step = interval_ms(iv)
            first = (start_ms // step) * step
            out[(symbol, iv)] = to_columns(await market._fetch(symbol, iv, first, stop_ms))
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
    """The driver's side: owns the shared-memory blocks until :meth:`close`. Block layout per
    ``(symbol, interval)`` of ``n`` rows: ``n`` int64 open times, then ``5 × n`` float64 (open, high, low,
    close, volume), so every column a worker reads is a contiguous view of the block."""

    def __init__(self, exchange: str, columns: Mapping[tuple[str, str], CandleColumns]) -> None:
        self.exchange = exchange
        self._blocks: list[shared_memory.SharedMemory] = []
        blocks = []
        try:
            for (symbol, iv), cols in columns.items():
                n = len(cols)
                shm = shared_memory.SharedMemory(create=True, size=max(1, 48 * n))
                self._blocks.append(shm)
                ts, values = _views(shm.buf, n)
                ts[:] = cols.ts
                values[:] = cols.values
                del ts, values
                shm.close()  # unmapped here: forked workers do not inherit a second mapping of the block
                blocks.append((symbol, iv, shm.name, n))
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


def _views(buf: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    ts = np.ndarray((n,), dtype=np.int64, buffer=buf, offset=0)
    values = np.ndarray((5, n), dtype=np.float64, buffer=buf, offset=8 * n)
    return ts, values


_ATTACHED: dict[str, tuple[shared_memory.SharedMemory, CandleColumns]] = {}


def _attach_block(name: str, rows: int) -> CandleColumns:
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
    ts, values = _views(shm.buf, rows)
    ts.flags.writeable = False
    values.flags.writeable = False
    cols = CandleColumns(ts=ts, values=values)
    _ATTACHED[name] = (shm, cols)
    return cols


def attach(handles: CandleHandles) -> dict[tuple[str, str], CandleColumns]:
    """The columns behind ``handles`` (shared memory: mapped read-only, once per process; no copy)."""
    if handles.local is not None:
        return dict(handles.local)
    return {(sym, iv): _attach_block(name, rows) for sym, iv, name, rows in handles.blocks}


class SharedSource:
    """``get_candles`` of the ``shared:<exchange>`` exchange, and its whole columns for the engine.

    Called like any ``get_candles``, it returns ``(n, 6)`` arrays (held intervals sliced, others resampled
    from 1m). :meth:`candle_columns` is the :class:`btkit.market.ColumnSource` side: the Market of every
    backtest in this worker takes these validated columns as its cache as they are (views of the shared
    block), so a trial neither fetches page by page nor copies a candle.
    """

    def __init__(self, columns: Mapping[tuple[str, str], CandleColumns]) -> None:
        self._columns = dict(columns)

    def candle_columns(self, symbol: str, interval: str) -> tuple[np.ndarray, ...] | None:
        cols = self._columns.get((symbol, interval))
        return cols.columns() if cols is not None and len(cols) else None

    def __call__(self, symbol: str, interval: str, since: datetime, limit: int) -> np.ndarray:
        start = int(since.timestamp() * 1000)
        cols = self._columns.get((symbol, interval))
        if cols is not None:
            i = int(np.searchsorted(cols.ts, start, side="left"))
            return cols.rows(i, i + limit)
        base = self._columns.get((symbol, "1m"))
        if base is None:
            raise CandleDataError(f"shared candles hold no {symbol} (the research run loaded other symbols)")
        step = interval_ms(interval)
        first = -(-start // step) * step
        i = int(np.searchsorted(base.ts, first, side="left"))
        return resample(base.rows(i, i + limit * (step // MINUTE_MS)), step)


def shared_exchange(handles: CandleHandles) -> Any:
    """An :class:`~btkit.components.ExchangeSpec` named ``shared:<exchange>`` serving the shared candles."""
    from btkit.components import ExchangeSpec

    return ExchangeSpec(name=f"shared:{handles.exchange}", get_candles=SharedSource(attach(handles)))
