"""The local candle store: candles on disk so backtests run offline and repeatably.

Layout: ``<root>/<exchange>/<symbol>/<interval>.npy``, one ``(n, 6)`` float64 array per (exchange, symbol,
interval), sorted by open time with no duplicates (exchange and symbol names encoded with
:func:`btkit.persist.keys.encode_part`, so ``BTC/USDT:USDT`` is one safe directory name). Every write merges
with what is stored and atomically replaces the file under a file lock.

- :class:`CandleStore` — ``write`` / ``read`` / ``coverage``.
- :func:`download` (and :func:`download_async`) — fetch a time range through any exchange's ``get_candles``
  into the store: resumable (only the missing ranges are fetched), every batch validated, gaps reported,
  nothing fabricated.
- :func:`import_file` — load a JSON candle file (objects or ``[ts, o, h, l, c, v]`` arrays).
- :func:`store_exchange` — an :class:`ExchangeSpec` that serves ``get_candles`` from the store, so any
  backtest can run on stored data; windows with missing candles are rejected unless ``gaps="fill"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
from filelock import FileLock

from btkit.candle_rows import check_file_rows
from btkit.candles import (
    TS,
    dedupe_sorted,
    empty,
    fill_gaps,
    find_gaps,
    resample,
    to_array,
    validate,
)
from btkit.components import ExchangeSpec, interval_ms
from btkit.context import iso
from btkit.errors import CandleDataError, PersistenceError
from btkit.persist.keys import decode_part, encode_part

__all__ = [
    "CandleStore",
    "DownloadProgress",
    "download",
    "download_async",
    "import_file",
    "store_exchange",
]

MINUTE_MS = 60_000
GapPolicy = Literal["reject", "fill"]


def _fmt(ms: int | float) -> str:
    return iso(ms)


def download_hint(source: str, symbol: str, interval: str, start_ms: int, end_ms: int) -> str:
    """A ``btkit data download`` command that works when pasted: whole UTC days covering the window."""
    day = 86_400_000
    first = datetime.fromtimestamp((start_ms // day) * day / 1000, tz=UTC)
    last = datetime.fromtimestamp((-(-end_ms // day)) * day / 1000, tz=UTC)
    if last <= first:
        last = datetime.fromtimestamp(first.timestamp() + 86_400, tz=UTC)
    return (
        f"btkit data download --exchange {source} --symbol {symbol} --interval {interval} "
        f"--timerange {first:%Y%m%d}-{last:%Y%m%d}"
    )


def _enc(kind: str, value: str) -> str:
    try:
        return encode_part(value)
    except PersistenceError as exc:
        raise CandleDataError(f"candle store: bad {kind} name: {exc}") from None


def _check_aligned(arr: np.ndarray, step: int, source: str) -> None:
    if len(arr) and (arr[:, TS].astype(np.int64) % step).any():
        i = int(np.argmax(arr[:, TS].astype(np.int64) % step != 0))
        raise CandleDataError(
            f"{source}: candle {_fmt(arr[i, TS])} does not open on the {step // MINUTE_MS}-minute grid; "
            "check the interval"
        )


def _sorted_rows(arr: np.ndarray) -> np.ndarray:
    if len(arr) > 1 and (np.diff(arr[:, TS]) < 0).any():
        return arr[np.argsort(arr[:, TS], kind="stable")]
    return arr


class CandleStore:
    """Candles per (exchange, symbol, interval) as ``.npy`` files under ``root``."""

    def __init__(self, root: str | os.PathLike[str] = "./data") -> None:
        self.root = Path(root)
        self._cache: dict[Path, tuple[tuple[int, int], np.ndarray]] = {}
        self._paths: dict[tuple[str, str, str], Path] = {}

    def __repr__(self) -> str:
        return f"CandleStore({str(self.root)!r})"

    # ------------------------------------------------------------ paths
    def path(self, exchange: str, symbol: str, interval: str) -> Path:
        """Where the candles of (exchange, symbol, interval) live."""
        key = (exchange, symbol, interval)
        path = self._paths.get(key)
        if path is None:
            interval_ms(interval)
            path = self.root / _enc("exchange", exchange) / _enc("symbol", symbol) / f"{interval}.npy"
            self._paths[key] = path
        return path

    def entries(self) -> list[tuple[str, str, str]]:
        """Every stored (exchange, symbol, interval), sorted."""
        out: list[tuple[str, str, str]] = []
        if not self.root.is_dir():
            return out
        for f in self.root.glob("*/*/*.npy"):
            out.append((decode_part(f.parent.parent.name), decode_part(f.parent.name), f.stem))
        return sorted(out)

    # ------------------------------------------------------------ read
    def _load(self, path: Path) -> np.ndarray:
        try:
            st = path.stat()
        except FileNotFoundError:
            self._cache.pop(path, None)
            return empty()
        sig = (st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == sig:
            return hit[1]
        try:
            # mapped, not read: the pages are the OS's file cache, shared by every process reading the file
            # and not inherited as private memory by forked workers (files are replaced atomically, never
            # rewritten in place, so a mapping stays valid)
            arr = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise CandleDataError(
                f"candle store file {path} is unreadable ({exc}); delete it and download again"
            ) from None
        if arr.ndim != 2 or arr.shape[1] != 6 or arr.dtype != np.float64:
            raise CandleDataError(
                f"candle store file {path} has shape {arr.shape} {arr.dtype}, expected (n, 6) float64; "
                "delete it and download again"
            )
        arr.setflags(write=False)
        self._cache[path] = (sig, arr)
        return arr

    def read(
        self,
        exchange: str,
        symbol: str,
        interval: str,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> np.ndarray:
        """Stored candles opening in ``[start_ms, end_ms)`` (either bound optional), as a read-only
        ``(n, 6)`` array (empty when nothing is stored)."""
        arr = self._load(self.path(exchange, symbol, interval))
        if start_ms is None and end_ms is None:
            return arr
        ts = arr[:, TS]
        lo = 0 if start_ms is None else int(np.searchsorted(ts, start_ms, side="left"))
        hi = len(arr) if end_ms is None else int(np.searchsorted(ts, end_ms, side="left"))
        return arr[lo:hi]

    def coverage(
        self, exchange: str, symbol: str, interval: str
    ) -> tuple[int | None, int | None, list[tuple[int, int]]]:
        """``(first_open_ms, last_open_ms, gaps)`` of what is stored; gaps as ``[(missing_from_ms,
        missing_count), …]``. ``(None, None, [])`` when nothing is stored."""
        arr = self.read(exchange, symbol, interval)
        if not len(arr):
            return None, None, []
        return int(arr[0, TS]), int(arr[-1, TS]), find_gaps(arr, interval_ms(interval))

    # ------------------------------------------------------------ write
    def write(
        self,
        exchange: str,
        symbol: str,
        interval: str,
        arr: Any,
        *,
        on_conflict: Literal["error", "replace"] = "error",
    ) -> int:
        """Merge candles into the store (validated, sorted, de-duplicated; atomic replace of the file).

        A stored candle and a new one with the same open time but different values are a conflict:
        ``on_conflict="error"`` raises :class:`CandleDataError` and changes nothing; ``"replace"`` keeps
        the new one. Returns the number of candles that were not stored before.
        """
        source = f"{exchange} {symbol} {interval}"
        new = _sorted_rows(to_array(arr))
        if not len(new):
            return 0
        new = dedupe_sorted(new, source=source)
        validate(new, source=source)
        _check_aligned(new, interval_ms(interval), source)
        path = self.path(exchange, symbol, interval)
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            old = self._load(path)
            before = len(old)
            if before:
                both = np.concatenate((old, new)) if on_conflict == "error" else np.concatenate((new, old))
                order = np.argsort(both[:, TS], kind="stable")
                both = both[order]
                if on_conflict == "replace":
                    keep = np.concatenate(([True], np.diff(both[:, TS]) != 0))
                    merged = both[keep]
                else:
                    merged = dedupe_sorted(both, source=f"{source} (stored vs new)")
            else:
                merged = new
            added = len(merged) - before
            if added == 0 and on_conflict == "error":
                return 0
            self._atomic_save(path, np.ascontiguousarray(merged, dtype=np.float64))
        return added

    def _atomic_save(self, path: Path, arr: np.ndarray) -> None:
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), 0o644)  # mkstemp makes 0600; candle files are not secrets
                np.save(fh, arr, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._cache.pop(path, None)


# ---------------------------------------------------------------- download
@attrs.frozen
class DownloadProgress:
    """Reported to ``on_progress`` after every batch and once at the end (``finished=True``).

    ``done``/``total``: candle slots of the requested range handled so far / in all; ``new``: candles newly
    stored; ``gaps``: at the end, the ranges the exchange had no candles for ``[(from_ms, count), …]``.
    """

    symbol: str
    interval: str
    done: int
    total: int
    new: int
    cursor_ms: int
    finished: bool = False
    gaps: tuple[tuple[int, int], ...] = ()


def _missing_runs(have: np.ndarray, start: int, end: int, step: int) -> list[tuple[int, int]]:
    """Runs ``(from_ms, count)`` of grid slots in ``[start, end)`` not present in sorted ``have``."""
    total = (end - start) // step
    if total <= 0:
        return []
    if not len(have):
        return [(start, total)]
    ts = have.astype(np.int64)
    bounds = np.concatenate(([start - step], ts, [end]))
    d = np.diff(bounds)
    idx = np.flatnonzero(d > step)
    return [(int(bounds[i] + step), int(d[i] // step - 1)) for i in idx]


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


async def download_async(
    spec: ExchangeSpec,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int,
    *,
    store: CandleStore,
    batch: int = 1000,
    on_progress: Callable[[DownloadProgress], Any] | None = None,
    retries: int | None = None,
    retry_delay_ms: int | None = None,
    flush_every: int = 100_000,
    close_exchange: bool = False,
    clock: Callable[[], float] = time.time,
) -> int:
    """The async form of :func:`download` (use it inside a running event loop)."""
    from btkit.config import get_config

    cfg = get_config()
    tries = cfg.get_candles_retry_count if retries is None else max(1, retries)
    delay = (cfg.get_candles_retry_delay_ms if retry_delay_ms is None else retry_delay_ms) / 1000.0
    if batch < 1:
        raise CandleDataError(f"download batch must be >= 1, got {batch}")
    step = interval_ms(interval)
    start = -(-int(start_ms) // step) * step
    last_finished_end = (int(clock() * 1000) // step) * step  # the candle opening here is still forming
    end = min(int(end_ms) // step * step, last_finished_end)
    source = f"{spec.name} {symbol} {interval}"
    total = max(0, (end - start) // step)
    have = store.read(spec.name, symbol, interval, start, end)[:, TS]
    runs = _missing_runs(have, start, end, step)
    done = total - sum(c for _, c in runs)
    new_total = 0
    pending: list[np.ndarray] = []
    pending_n = 0

    def flush() -> None:
        nonlocal new_total, pending, pending_n
        if pending:
            chunk = np.concatenate(pending)
            pending, pending_n = [], 0
            new_total += store.write(spec.name, symbol, interval, chunk)

    async def fetch(since: int, limit: int) -> np.ndarray:
        last_exc: BaseException | None = None
        for attempt in range(tries):
            try:
                got = await _maybe_await(
                    spec.get_candles(symbol, interval, datetime.fromtimestamp(since / 1000, tz=UTC), limit)
                )
                return to_array(got)
            except CandleDataError:
                raise
            except Exception as exc:  # network faults of any exchange plugin: retry, then fail loudly
                last_exc = exc
                if attempt + 1 < tries:
                    await asyncio.sleep(delay)
        raise CandleDataError(
            f"{source}: fetching candles from {_fmt(since)} failed {tries} times "
            f"({type(last_exc).__name__}: {last_exc}); try again later (the download resumes)"
        ) from last_exc

    try:
        ri = 0
        covered_to = start  # every slot before this was fetched (or already stored)
        while ri < len(runs):
            run_from, run_count = runs[ri]
            run_end = run_from + run_count * step
            cursor = max(run_from, covered_to)
            if cursor >= run_end:
                ri += 1
                continue
            limit = min(batch, (end - cursor) // step)
            got = await fetch(cursor, limit)
            window_end = cursor + limit * step
            if len(got):
                got = got[(got[:, TS] >= cursor) & (got[:, TS] < window_end)]
            got = dedupe_sorted(got, source=f"{source} batch from {_fmt(cursor)}")
            validate(got, source=f"{source} batch from {_fmt(cursor)}")
            _check_aligned(got, step, source)
            # the exchange answers up to its own page size: advance to just past its last candle, or over the
            # whole window when it had nothing (a gap on the exchange; never filled in)
            covered_to = int(got[-1, TS]) + step if len(got) and len(got) < limit else window_end
            if len(got):
                pending.append(got)
                pending_n += len(got)
            if pending_n >= flush_every:
                flush()
            while ri < len(runs) and runs[ri][0] + runs[ri][1] * step <= covered_to:
                done += runs[ri][1]
                ri += 1
            if on_progress is not None:
                partial = 0
                if ri < len(runs) and covered_to > runs[ri][0]:
                    partial = (covered_to - runs[ri][0]) // step
                progress = DownloadProgress(
                    symbol, interval, done + partial, total, new_total + pending_n, covered_to
                )
                await _maybe_await(on_progress(progress))
        flush()
    finally:
        try:
            flush()
        finally:
            if close_exchange and spec.close is not None:
                await _maybe_await(spec.close())
    stored = store.read(spec.name, symbol, interval, start, end)[:, TS]
    gaps = tuple(_missing_runs(stored, start, end, step))
    if on_progress is not None:
        await _maybe_await(
            on_progress(DownloadProgress(symbol, interval, total, total, new_total, end, True, gaps))
        )
    return new_total


def download(
    spec: ExchangeSpec,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int,
    *,
    store: CandleStore,
    batch: int = 1000,
    on_progress: Callable[[DownloadProgress], Any] | None = None,
    retries: int | None = None,
    retry_delay_ms: int | None = None,
    flush_every: int = 100_000,
    close_exchange: bool = False,
    clock: Callable[[], float] = time.time,
) -> int:
    """Download candles opening in ``[start_ms, end_ms)`` through ``spec.get_candles`` into ``store``.

    Resumable: only ranges the store does not have are fetched, and what was fetched is flushed to disk
    every ``flush_every`` candles and when the download stops for any reason. Candles not yet finished
    (the one opening at the current ``interval`` boundary and later) are never stored. ``get_candles`` may
    be sync or async (one event loop serves the whole download; ``close_exchange=True`` also awaits
    ``spec.close()`` in it). Every batch is de-duplicated and validated; failures are retried
    (``get_candles_retry_count`` times by default). Ranges the exchange has no candles for stay missing —
    they are reported in the final :class:`DownloadProgress` (``gaps``) and by
    :meth:`CandleStore.coverage`, never fabricated. Returns the number of candles newly stored.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("download() was called inside a running event loop; await download_async()")
    return asyncio.run(
        download_async(
            spec,
            symbol,
            interval,
            start_ms,
            end_ms,
            store=store,
            batch=batch,
            on_progress=on_progress,
            retries=retries,
            retry_delay_ms=retry_delay_ms,
            flush_every=flush_every,
            close_exchange=close_exchange,
            clock=clock,
        )
    )


# ---------------------------------------------------------------- import
def import_file(
    path: str | os.PathLike[str],
    exchange: str,
    symbol: str,
    interval: str,
    store: CandleStore,
    *,
    on_conflict: Literal["error", "replace"] = "error",
) -> int:
    """Import a JSON candle file into the store: a list of objects ``{timestamp, open, high, low, close,
    volume}`` or of arrays ``[ts, o, h, l, c, v]`` (the two shapes exchanges and tools export). The file
    must be in ascending time order. Returns the number of candles newly stored."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise CandleDataError(f"cannot read candle file {p}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise CandleDataError(f"candle file {p} is not valid JSON: {exc}") from None
    if isinstance(data, dict):  # {"candles": [...]} / {"data": [...]} wrappers
        for key in ("candles", "data", "ohlcv"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise CandleDataError(f"candle file {p} must hold a JSON list of candles")
    source = f"{p.name}"
    arr = check_file_rows(data, interval_ms(interval), source)  # a person's file: every row is user input
    validate(arr, source=source)
    return store.write(exchange, symbol, interval, arr, on_conflict=on_conflict)


# ---------------------------------------------------------------- the store as an exchange
class _StoreExchange:
    def __init__(self, source: str, store: CandleStore, gaps: GapPolicy) -> None:
        if gaps not in ("reject", "fill"):
            raise CandleDataError(f"gaps must be 'reject' or 'fill', got {gaps!r}")
        self.source = source
        self.store = store
        self.gaps = gaps

    def _stored_interval(self, symbol: str, interval: str) -> str | None:
        if self.store.path(self.source, symbol, interval).exists():
            return interval
        if self.store.path(self.source, symbol, "1m").exists():
            return "1m"
        return None

    def get_candles(self, symbol: str, interval: str, since: datetime, limit: int) -> np.ndarray:
        step = interval_ms(interval)
        since_ms = round(since.timestamp() * 1000) if isinstance(since, datetime) else int(since)
        start = -(-since_ms // step) * step
        if limit <= 0:
            return empty()
        base = self._stored_interval(symbol, interval)
        if base is None:
            also = "" if interval == "1m" else " or 1m"
            raise CandleDataError(
                f"store {self.source!r} has no {interval}{also} candles for {symbol} under "
                f"{self.store.root}; run `{download_hint(self.source, symbol, '1m', start, start + limit * step)}`"
            )
        base_step = interval_ms(base)
        end = start + limit * step
        arr = self._window(symbol, base, base_step, start, end)
        if base != interval:
            arr = resample(arr, step, base_ms=base_step)
        return arr

    def _window(self, symbol: str, base: str, step: int, start: int, end: int) -> np.ndarray:
        """Stored candles of ``base`` in ``[start, end)``: contiguous from ``start``; cut after the last
        stored candle (like an exchange at "now"); interior or leading holes rejected or filled."""
        full = self.store.read(self.source, symbol, base)
        ts = full[:, TS]
        lo = int(np.searchsorted(ts, start, side="left"))
        hi = int(np.searchsorted(ts, end, side="left"))
        arr = full[lo:hi]
        n = hi - lo
        if n and ts[lo] == start and ts[hi - 1] == start + (n - 1) * step:
            return arr  # sorted + unique + both ends on the grid → no hole
        last_stored = int(ts[-1]) if len(ts) else None
        if last_stored is None:
            raise CandleDataError(
                f"store {self.source!r} has no {base} candles for {symbol}; "
                f"run `{download_hint(self.source, symbol, base, start, end)}`"
            )
        if last_stored < start:
            return full[:0]  # past the end of the stored data: nothing more, like an exchange at "now"
        if self.gaps == "fill":
            with_prev = full[max(lo - 1, 0) : hi]  # the candle before the window carries its close in
            filled = fill_gaps(with_prev, step)
            filled = filled[filled[:, TS] >= start]
            if len(filled) and filled[0, TS] == start:
                return filled
        first_missing = start if not n or ts[lo] != start else self._first_hole(arr, step)
        hint = " or use gaps='fill' to forward-fill them" if self.gaps == "reject" else ""
        raise CandleDataError(
            f"store {self.source!r} {symbol} {base}: missing candle at {_fmt(first_missing)}; "
            f"run `{download_hint(self.source, symbol, base, first_missing, end)}`{hint}"
        )

    @staticmethod
    def _first_hole(arr: np.ndarray, step: int) -> int:
        d = np.diff(arr[:, TS])
        i = int(np.argmax(d > step))
        return int(arr[i, TS]) + step


def store_exchange(
    source: str,
    root: str | os.PathLike[str] = "./data",
    *,
    gaps: GapPolicy = "reject",
    name: str | None = None,
    store: CandleStore | None = None,
) -> ExchangeSpec:
    """An exchange named ``source`` (or ``name``) that serves ``get_candles`` from the candles stored for
    exchange ``source`` under ``root``.

    Intervals that are not stored are aggregated from stored 1m candles (complete buckets only). A window
    is served only when every candle in it is stored; a window running past the end of the stored data is
    cut there (like an exchange at "now"). Missing candles raise :class:`CandleDataError` naming the first
    one, unless ``gaps="fill"``: then they are forward-filled explicitly (o=h=l=c=previous close, volume 0).
    """
    ex = _StoreExchange(source, store if store is not None else CandleStore(root), gaps)
    return ExchangeSpec(name=name or source, get_candles=ex.get_candles, dist="btkit")
