"""Candle access for the engine and for user code, with the look-ahead rules of 10-lifecycle.md §1.

One :class:`Market` per (run, exchange). It fetches through the exchange's ``get_candles`` in pages of
``max_candles_per_request`` with retries, de-duplicates and validates every page, keeps a contiguous
cache per (symbol, interval), and serves exact half-open windows ``[since, aligned)``: the candle still
forming at ``when`` is never returned, a wrong count or a gap is an error, never a short list.

In a backtest, an exchange whose ``get_candles`` is a :class:`ColumnSource` (the research workers' shared
candles) hands over its whole, already validated columns: they become the cache as they are (read-only
views, never copied per run) and nothing is fetched page by page.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from btkit import candles as ca
from btkit.components import ExchangeSpec, interval_ms
from btkit.config import EngineConfig
from btkit.context import current, ms_to_datetime
from btkit.errors import CandleDataError, InsufficientDataError
from btkit.lifecycle.machine import Observation
from btkit.model import MINUTE_MS, Candles

log = logging.getLogger("btkit.market")

BACKTEST_PREFETCH = 50_000  # minutes of candles fetched ahead on a backtest cache miss
MIN_PREFETCH = 500  # candles of a higher interval fetched ahead at least
BACKTEST_KEEP_BEHIND = 20_000  # candles kept before the requested start when a backtest segment grows


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: int) -> str:
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M UTC")


@runtime_checkable
class ColumnSource(Protocol):
    """A ``get_candles`` that also holds whole, validated, gap-free candle columns (backtests only).

    ``candle_columns(symbol, interval)`` returns ``(ts, open, high, low, close, volume)`` — ``ts`` int64 open
    times one ``interval`` apart, the others float64, all of one length and read-only — or None when it
    holds no such columns (the Market then fetches through ``get_candles`` as usual)."""

    def candle_columns(self, symbol: str, interval: str) -> tuple[np.ndarray, ...] | None: ...


class _Segment:
    """A contiguous run of candles of one (symbol, interval): columns as read-only arrays."""

    __slots__ = ("close", "end", "high", "low", "open", "start", "ts", "volume")

    def __init__(self, arr: np.ndarray, step: int) -> None:
        ts = arr[:, 0].astype(np.int64)
        cols = [np.ascontiguousarray(arr[:, k]) for k in range(1, 6)]
        for c in (ts, *cols):
            c.flags.writeable = False
        self._set(ts, cols, step)

    def _set(self, ts: np.ndarray, cols: list[np.ndarray], step: int) -> None:
        self.ts = ts
        self.open, self.high, self.low, self.close, self.volume = cols
        self.start = int(ts[0])
        self.end = self.start + len(ts) * step  # exclusive

    @classmethod
    def of_columns(cls, columns: tuple[np.ndarray, ...], step: int) -> _Segment:
        """A segment over ``(ts, o, h, l, c, v)`` as they are: read-only views, no copy."""
        seg = cls.__new__(cls)
        ts, *cols = (c.view() for c in columns)
        for c in (ts, *cols):
            c.flags.writeable = False
        seg._set(ts, cols, step)
        return seg

    def as_array(self) -> np.ndarray:
        return np.column_stack(
            [self.ts.astype(np.float64), self.open, self.high, self.low, self.close, self.volume]
        )


class Market:
    """Cached, validated, look-ahead-safe candle access to one exchange."""

    def __init__(
        self,
        spec: ExchangeSpec,
        cfg: EngineConfig,
        *,
        backtest: bool,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.spec = spec
        self.cfg = cfg
        self.backtest = backtest
        self.now_ms = now_ms
        self._segments: dict[tuple[str, str], _Segment] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        source = spec.get_candles
        self._columns = source if backtest and isinstance(source, ColumnSource) else None

    # ------------------------------------------------------------ fetching
    async def _call(self, symbol: str, interval: str, since: int, limit: int) -> np.ndarray:
        source = f"exchange {self.spec.name} {symbol} {interval}"
        tries = self.cfg.get_candles_retry_count
        fetch = self.spec.get_candles
        since_dt = ms_to_datetime(since)
        # live: a slow synchronous exchange runs in a thread so it cannot hold up the other symbols' ticks
        threaded = not self.backtest and not inspect.iscoroutinefunction(fetch)
        if threaded:
            asyncio.get_running_loop()  # driven inline by sync user code: fail here, not as an exchange fault
        for attempt in range(1, tries + 1):
            try:
                if threaded:
                    out = await asyncio.to_thread(fetch, symbol, interval, since_dt, limit)
                else:
                    out = fetch(symbol, interval, since_dt, limit)
                if inspect.isawaitable(out):
                    out = await out
                arr = ca.to_array(out if out is not None else [])
                arr = ca.dedupe_sorted(arr, source=source)
                ca.validate(arr, source=source)
                return arr
            except CandleDataError:
                raise
            except Exception as exc:
                if attempt == tries:
                    raise CandleDataError(
                        f"{source}: get_candles failed {tries} times ({type(exc).__name__}: {exc}); "
                        "check the exchange or raise get_candles_retry_count"
                    ) from exc
                log.warning("%s: get_candles failed (%s), retry %d/%d", source, exc, attempt, tries - 1)
                await asyncio.sleep(self.cfg.get_candles_retry_delay_ms / 1000)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch(self, symbol: str, interval: str, start: int, stop: int) -> np.ndarray:
        """Candles opening in ``[start, stop)``, paginated; contiguous from the first one returned."""
        step = interval_ms(interval)
        pages: list[np.ndarray] = []
        cursor = start
        per_request = self.cfg.max_candles_per_request
        while cursor < stop:
            want = min(per_request, (stop - cursor) // step)
            arr = await self._call(symbol, interval, cursor, want)
            if len(arr):
                arr = arr[(arr[:, 0] >= cursor) & (arr[:, 0] < stop)]
            if not len(arr):
                break
            ts = arr[:, 0].astype(np.int64)
            expected_first = cursor if pages else int(ts[0])
            if int(ts[0]) != expected_first or np.any(np.diff(ts) != step):
                gaps = ca.find_gaps(arr, step)
                missing = expected_first if int(ts[0]) != expected_first else gaps[0][0]
                raise CandleDataError(
                    f"exchange {self.spec.name} {symbol} {interval}: candles are missing from {_iso(missing)}"
                    " (a gap in the exchange's data); backtest another range or fill the gap explicitly "
                    "(btkit data download / store gaps='fill')"
                )
            pages.append(arr)
            cursor = int(ts[-1]) + step
            if len(arr) < want:
                break
        return np.concatenate(pages) if pages else ca.empty()

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _adopt(self, symbol: str, interval: str, step: int) -> _Segment | None:
        """The source's whole columns of (symbol, interval) as the cache (backtest, ColumnSource only)."""
        assert self._columns is not None
        cols = self._columns.candle_columns(symbol, interval)
        if cols is None or not len(cols[0]):
            return None
        horizon = (self.now_ms() // step) * step  # never the forming candle, as when fetching
        n = int(np.searchsorted(cols[0], horizon, side="left"))
        if not n:
            return None
        seg = _Segment.of_columns(tuple(c[:n] for c in cols), step)
        self._segments[(symbol, interval)] = seg
        return seg

    async def _ensure(self, symbol: str, interval: str, since: int, count: int) -> _Segment | None:
        step = interval_ms(interval)
        key = (symbol, interval)
        stop = since + count * step
        seg = self._segments.get(key)
        if seg is None and self._columns is not None:
            seg = self._adopt(symbol, interval, step)
        if seg is not None and seg.start <= since and stop <= seg.end:
            return seg
        async with self._lock(key):
            seg = self._segments.get(key)
            if seg is not None and seg.start <= since and stop <= seg.end:
                return seg
            horizon = (self.now_ms() // step) * step  # never ask for the forming candle
            if seg is not None and seg.start <= since <= seg.end:
                fetch_from = seg.end  # extend the tail only
            else:
                fetch_from = since
                seg = None
            fetch_to = stop
            if self.backtest:
                # ahead by a span of time, not a count of candles: 50,000 15m candles would be 520
                # days of data the run may never reach (at least MIN_PREFETCH candles of any interval)
                ahead = max(BACKTEST_PREFETCH * MINUTE_MS, MIN_PREFETCH * step)
                fetch_to = max(stop, fetch_from + ahead)
            fetch_to = min(fetch_to, horizon)
            if fetch_to <= fetch_from:
                return seg
            fresh = await self._fetch(symbol, interval, fetch_from, fetch_to)
            if not len(fresh):
                return seg
            if seg is not None and int(fresh[0, 0]) == seg.end:
                old = seg.as_array()
                if self.backtest:  # time only moves forward: keep a bounded tail, not the whole history
                    old = old[old[:, 0] >= since - BACKTEST_KEEP_BEHIND * step]
                merged = np.concatenate([old, fresh])
            else:
                merged = fresh
            seg = _Segment(merged, step)
            self._segments[key] = seg
            return seg

    # ------------------------------------------------------------ exact ranges
    async def arrays(
        self, symbol: str, interval: str, since: int, count: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Exactly ``count`` candles opening at ``since, since+step, …`` as column arrays, or an error."""
        step = interval_ms(interval)
        seg = self._segments.get((symbol, interval))
        if seg is not None and seg.start <= since and since + count * step <= seg.end and not since % step:
            i = (since - seg.start) // step  # cache hit: no coroutine round-trip
            j = i + count
            return seg.ts[i:j], seg.open[i:j], seg.high[i:j], seg.low[i:j], seg.close[i:j], seg.volume[i:j]
        if since % step:
            raise CandleDataError(
                f"{interval} candles open on multiples of {step} ms; {since} is not aligned"
            )
        seg = await self._ensure(symbol, interval, since, count)
        if seg is None or since < seg.start or since + count * step > seg.end:
            have = (
                0
                if seg is None
                else max(0, (min(seg.end, since + count * step) - max(seg.start, since)) // step)
            )
            raise InsufficientDataError(
                f"insufficient candle data: exchange {self.spec.name} has {have} of {count} {interval} candles "
                f"for {symbol} from {_iso(since)}; choose a range the exchange covers"
            )
        i = (since - seg.start) // step
        j = i + count
        return seg.ts[i:j], seg.open[i:j], seg.high[i:j], seg.low[i:j], seg.close[i:j], seg.volume[i:j]

    async def window(self, symbol: str, interval: str, when: int, limit: int) -> Candles:
        """The ``limit`` closed candles before ``when``: open times ``[aligned − limit·step, aligned)``."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number >= 1, got {limit!r}")
        step = interval_ms(interval)
        aligned = (when // step) * step
        return Candles(*await self.arrays(symbol, interval, aligned - limit * step, limit))

    async def vwap(self, symbol: str, when: int) -> float:
        """The engine's current price: VWAP of the last ``avg_price_candles_count`` closed 1m candles."""
        n = self.cfg.avg_price_candles_count
        aligned = (when // MINUTE_MS) * MINUTE_MS
        _, _, h, lo, c, v = await self.arrays(symbol, "1m", aligned - n * MINUTE_MS, n)
        return ca.vwap(h, lo, c, v)

    async def observation(self, symbol: str, when: int) -> Observation:
        """What a tick at ``when`` sees: VWAP of the last closed candles and the last one's low/high."""
        n = self.cfg.avg_price_candles_count
        aligned = (when // MINUTE_MS) * MINUTE_MS
        _, _, h, lo, c, v = await self.arrays(symbol, "1m", aligned - n * MINUTE_MS, n)
        return Observation(when, ca.vwap(h, lo, c, v), float(lo[-1]), float(h[-1]))

    async def block(self, symbol: str, start: int, count: int) -> tuple[np.ndarray, ...]:
        """Up to ``count`` 1m candles from ``start`` (fewer when the exchange has no more): the fast path."""
        seg = await self._ensure(symbol, "1m", start, count)
        if seg is None or start < seg.start or start >= seg.end:
            return tuple(np.empty(0) for _ in range(6))
        i = (start - seg.start) // MINUTE_MS
        j = min(i + count, len(seg.ts))
        return seg.ts[i:j], seg.open[i:j], seg.high[i:j], seg.low[i:j], seg.close[i:j], seg.volume[i:j]


# ---------------------------------------------------------------- user-facing functions
def _market_of_context() -> tuple[Market, int, asyncio.AbstractEventLoop | None]:
    ctx = current()
    return ctx.instance.market, ctx.when, getattr(ctx.instance, "loop", None)


class _NeedsLoop(Exception):
    pass


def _drive_inline(coro: Any) -> Any:
    """Run a coroutine that does not suspend (a cache hit) without an event loop round-trip."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    except (
        RuntimeError
    ) as exc:  # it asked for the running loop (to_thread, an async client) before suspending
        if "event loop" not in str(exc):
            raise
        raise _NeedsLoop from None
    coro.close()
    raise _NeedsLoop


def _sync(make: Callable[[], Any], loop: asyncio.AbstractEventLoop | None) -> Any:
    """Serve sync user code (a ``def`` get_signal or listener).

    Cache hits return at once. A miss needs the engine's loop: from a worker thread (live runs sync
    strategies in threads) the coroutine is sent to that loop; on the loop's own thread it runs on a
    helper thread with a private loop (sync exchanges only — async exchanges need async strategies).
    """
    try:
        return _drive_inline(make())
    except _NeedsLoop:
        pass
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is None and loop is not None and loop.is_running():
        return asyncio.run_coroutine_threadsafe(make(), loop).result()
    import concurrent.futures
    import contextvars

    ctx = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(ctx.run, asyncio.run, _wrap(make)).result()


async def _wrap(make: Callable[[], Any]) -> Any:
    return await make()


def get_candles(symbol: str, interval: str, limit: int) -> Candles:
    """The ``limit`` closed candles of ``interval`` before the ambient time (never the forming one)."""
    market, when, loop = _market_of_context()
    return _sync(lambda: market.window(symbol, interval, when, limit), loop)


def get_average_price(symbol: str) -> float:
    """VWAP of the last ``avg_price_candles_count`` closed 1-minute candles at the ambient time."""
    market, when, loop = _market_of_context()
    return _sync(lambda: market.vwap(symbol, when), loop)
