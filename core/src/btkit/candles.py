"""The one home of candle-array helpers: conversion, validation, de-duplication, gaps, resampling, VWAP.

Everything here works on ``(n, 6)`` float64 arrays with columns ``[timestamp, open, high, low, close,
volume]`` (timestamp = open time in ms UTC; float64 holds every millisecond timestamp exactly). All
functions are vectorised with numpy because the engine's hot path calls them on every fetch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from btkit.errors import CandleDataError

__all__ = [
    "COLUMNS",
    "dedupe_sorted",
    "empty",
    "fill_gaps",
    "find_gaps",
    "resample",
    "rolling_vwap",
    "to_array",
    "validate",
    "vwap",
]

COLUMNS: tuple[str, ...] = ("timestamp", "open", "high", "low", "close", "volume")
TS, OPEN, HIGH, LOW, CLOSE, VOLUME = range(6)
MINUTE_MS = 60_000
REFERENCE_DIVISOR = 1000.0
"""A price below ``reference / REFERENCE_DIVISOR`` is an unfinished exchange candle, not a price."""


def empty() -> np.ndarray:
    """An empty ``(0, 6)`` candle array."""
    return np.empty((0, 6), dtype=np.float64)


def _fmt_ts(ts: float) -> str:
    """A timestamp for messages: ms and its UTC time."""
    if not np.isfinite(ts):
        return repr(float(ts))
    try:
        iso = datetime.fromtimestamp(ts / 1000.0, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return f"{int(ts)}"
    return f"{int(ts)} ({iso})"


# ---------------------------------------------------------------- conversion
def _row_of(item: Any) -> tuple[float, float, float, float, float, float]:
    if isinstance(item, Mapping):
        return (
            item["timestamp"],
            item["open"],
            item["high"],
            item["low"],
            item["close"],
            item["volume"],
        )
    if hasattr(item, "timestamp") and hasattr(item, "close"):
        return (item.timestamp, item.open, item.high, item.low, item.close, item.volume)
    ts, o, h, lo, c, v = item  # tuple / list / row of an array
    return (ts, o, h, lo, c, v)


def to_array(rows: Any) -> np.ndarray:
    """Candles as a fresh-or-shared ``(n, 6)`` float64 array.

    Accepts an ``(n, 6)`` array, a :class:`btkit.Candles` (numpy columns), or any iterable of
    :class:`btkit.Candle` objects, dicts ``{timestamp, open, high, low, close, volume}`` or
    ``(ts, o, h, l, c, v)`` tuples/lists. Raises :class:`CandleDataError` for anything else.
    """
    if isinstance(rows, np.ndarray):
        if rows.ndim == 2 and rows.shape[1] == 6:
            return np.asarray(rows, dtype=np.float64)
        if rows.size == 0:
            return empty()
        raise CandleDataError(f"candle array must have shape (n, 6), got {rows.shape}")
    cols = getattr(rows, "timestamp", None)
    if isinstance(cols, np.ndarray):  # btkit.Candles: numpy columns
        return np.column_stack(
            [np.asarray(getattr(rows, name), dtype=np.float64) for name in COLUMNS]
        ).reshape(-1, 6)
    if rows is None:
        raise CandleDataError("exchange returned None instead of candles; return an empty list for none")
    if not isinstance(rows, Iterable):
        raise CandleDataError(f"candles must be a sequence or an (n, 6) array, got {type(rows).__name__}")
    try:
        data = [_row_of(item) for item in rows]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CandleDataError(
            f"cannot read candles ({type(exc).__name__}: {exc}); give Candle objects, dicts with "
            "timestamp/open/high/low/close/volume, or (ts, o, h, l, c, v) tuples"
        ) from None
    if not data:
        return empty()
    try:
        return np.array(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CandleDataError(f"candle values must be numbers: {exc}") from None


# ---------------------------------------------------------------- validation
def validate(arr: np.ndarray, *, source: str) -> None:
    """Raise :class:`CandleDataError` (one line: source, first bad timestamp, what is wrong) unless every
    candle is finite, has prices > 0, volume ≥ 0, high ≥ low and no OHLC price below reference/1000,
    where reference is the median of all OHLC values (the mean when there are fewer than 5 candles)."""
    n = len(arr)
    if n == 0:
        return
    finite = np.isfinite(arr).all(axis=1)
    prices = arr[:, OPEN : CLOSE + 1]
    nonpos = (prices <= 0).any(axis=1)
    negvol = arr[:, VOLUME] < 0
    inverted = arr[:, HIGH] < arr[:, LOW]
    simple_bad = ~finite | nonpos | negvol | inverted
    if simple_bad.any():
        i = int(np.argmax(simple_bad))
        row = arr[i].tolist()  # Python floats: messages show 50.0, not np.float64(50.0)
        if not finite[i]:
            what = f"non-finite value {[float(x) for x in row]}"
        elif nonpos[i]:
            what = f"price <= 0 (o={row[OPEN]!r}, h={row[HIGH]!r}, l={row[LOW]!r}, c={row[CLOSE]!r})"
        elif negvol[i]:
            what = f"negative volume {row[VOLUME]!r}"
        else:
            what = f"high {row[HIGH]!r} < low {row[LOW]!r}"
        raise CandleDataError(
            f"{source}: bad candle at {_fmt_ts(row[TS])}: {what}; fix or re-download the data"
        )
    lowest = float(prices.min())
    if lowest * REFERENCE_DIVISOR >= float(prices.max()):
        return  # the reference (median or mean) is at most the highest price: nothing can be below it/1000
    reference = float(np.median(prices)) if n >= 5 else float(prices.mean())
    floor = reference / REFERENCE_DIVISOR
    tiny = (prices < floor).any(axis=1)
    if tiny.any():
        i = int(np.argmax(tiny))
        low = float(prices[i].min())
        raise CandleDataError(
            f"{source}: bad candle at {_fmt_ts(arr[i, TS])}: price {low!r} is below reference/1000 "
            f"(reference {reference:.8g}), likely an unfinished exchange candle; re-fetch the data"
        )


def dedupe_sorted(arr: np.ndarray, *, source: str) -> np.ndarray:
    """De-duplicate candles by timestamp: identical duplicates are dropped, conflicting ones raise.

    Input must already be sorted by timestamp; unsorted input raises :class:`CandleDataError` ("unsorted")
    rather than being silently reordered.
    """
    if len(arr) < 2:
        return arr
    ts = arr[:, TS]
    d = np.diff(ts)
    if (d > 0).all():
        return arr
    back = d < 0
    if back.any():
        i = int(np.argmax(back)) + 1
        raise CandleDataError(
            f"{source}: unsorted candles: {_fmt_ts(ts[i])} comes after {_fmt_ts(ts[i - 1])}; "
            "the exchange must return candles in ascending time order"
        )
    dup = d == 0  # dup[i]: row i+1 repeats row i
    same = (arr[1:] == arr[:-1]).all(axis=1)
    conflict = dup & ~same
    if conflict.any():
        i = int(np.argmax(conflict)) + 1
        raise CandleDataError(
            f"{source}: conflicting duplicate candles at {_fmt_ts(ts[i])}: {[float(x) for x in arr[i - 1]]} "
            f"vs {[float(x) for x in arr[i]]}; re-download the data"
        )
    keep = np.concatenate(([True], ~dup))
    return arr[keep]


# ---------------------------------------------------------------- gaps
def find_gaps(arr: np.ndarray, step_ms: int) -> list[tuple[int, int]]:
    """Missing runs between consecutive candles: ``[(first_missing_open_ms, missing_count), …]``."""
    if len(arr) < 2:
        return []
    ts = arr[:, TS].astype(np.int64)
    d = np.diff(ts)
    idx = np.flatnonzero(d > step_ms)
    if not len(idx):
        return []
    starts = ts[idx] + step_ms
    counts = d[idx] // step_ms - 1 + (d[idx] % step_ms > 0)
    return [(int(s), int(c)) for s, c in zip(starts, counts, strict=True)]


def fill_gaps(arr: np.ndarray, step_ms: int) -> np.ndarray:
    """Explicit forward fill: each missing candle is ``o=h=l=c=previous close`` with volume 0.

    Input must be sorted, de-duplicated and aligned to ``step_ms`` relative to its first candle.
    """
    if len(arr) < 2:
        return arr
    ts = arr[:, TS].astype(np.int64)
    first = int(ts[0])
    pos = (ts - first) // step_ms
    if ((ts - first) % step_ms).any():
        i = int(np.argmax((ts - first) % step_ms != 0))
        raise CandleDataError(
            f"cannot fill gaps: candle {_fmt_ts(ts[i])} is not on the {step_ms} ms grid starting at "
            f"{_fmt_ts(first)}"
        )
    total = int(pos[-1]) + 1
    if total == len(arr):
        return arr
    out = np.empty((total, 6), dtype=np.float64)
    out[:, TS] = first + np.arange(total, dtype=np.int64) * step_ms
    # for every grid slot: index of the last real candle at or before it
    marker = np.zeros(total, dtype=np.int64)
    marker[pos] = np.arange(len(arr))
    is_real = np.zeros(total, dtype=bool)
    is_real[pos] = True
    src = np.maximum.accumulate(np.where(is_real, marker, 0))
    prev_close = arr[src, CLOSE]
    out[:, OPEN : CLOSE + 1] = prev_close[:, None]
    out[:, VOLUME] = 0.0
    out[pos] = arr
    return out


# ---------------------------------------------------------------- resampling
def resample(arr_1m: np.ndarray, interval_ms: int, *, base_ms: int = MINUTE_MS) -> np.ndarray:
    """Aggregate base candles (1m by default) into aligned buckets of ``interval_ms``.

    A bucket opens at a multiple of ``interval_ms`` (UTC epoch) and is kept only when complete (all
    ``interval_ms / base_ms`` candles present): first open, max high, min low, last close, sum volume.
    Input must be sorted and de-duplicated.
    """
    if interval_ms % base_ms:
        raise CandleDataError(f"cannot resample {base_ms} ms candles into {interval_ms} ms buckets")
    k = interval_ms // base_ms
    if k == 1 or len(arr_1m) == 0:
        return arr_1m
    ts = arr_1m[:, TS].astype(np.int64)
    bucket = ts - ts % interval_ms
    # fast path: contiguous, complete and aligned data → a reshape
    n = len(arr_1m)
    if n % k == 0 and ts[0] == bucket[0] and int(ts[-1]) - int(ts[0]) == (n - 1) * base_ms:
        blocks = arr_1m.reshape(n // k, k, 6)
        out = np.empty((n // k, 6), dtype=np.float64)
        out[:, TS] = blocks[:, 0, TS]
        out[:, OPEN] = blocks[:, 0, OPEN]
        out[:, HIGH] = blocks[:, :, HIGH].max(axis=1)
        out[:, LOW] = blocks[:, :, LOW].min(axis=1)
        out[:, CLOSE] = blocks[:, -1, CLOSE]
        out[:, VOLUME] = blocks[:, :, VOLUME].sum(axis=1)
        return out
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [n]))
    counts = ends - starts
    out = np.empty((len(starts), 6), dtype=np.float64)
    out[:, TS] = bucket[starts]
    out[:, OPEN] = arr_1m[starts, OPEN]
    out[:, HIGH] = np.maximum.reduceat(arr_1m[:, HIGH], starts)
    out[:, LOW] = np.minimum.reduceat(arr_1m[:, LOW], starts)
    out[:, CLOSE] = arr_1m[ends - 1, CLOSE]
    out[:, VOLUME] = np.add.reduceat(arr_1m[:, VOLUME], starts)
    return out[counts == k]


# ---------------------------------------------------------------- VWAP
_SHIFT_SUM_MAX_WINDOW = 32


def vwap(high: Any, low: Any, close: Any, volume: Any) -> float:
    """Σ(typical·volume)/Σvolume with typical = (h+l+c)/3; the mean of the closes when Σvolume is 0.

    Up to 32 candles the sums run left to right in plain floats — for the engine's 5-candle window this
    is several times faster than numpy's per-call overhead, and it is the same summation order as
    :func:`rolling_vwap`, so both give bit-identical values for the same window.
    """
    n = len(close)
    if n == 0:
        raise CandleDataError("cannot compute VWAP of zero candles")
    if n <= _SHIFT_SUM_MAX_WINDOW:
        hs = high.tolist() if isinstance(high, np.ndarray) else [float(x) for x in high]
        ls = low.tolist() if isinstance(low, np.ndarray) else [float(x) for x in low]
        cs = close.tolist() if isinstance(close, np.ndarray) else [float(x) for x in close]
        vs = volume.tolist() if isinstance(volume, np.ndarray) else [float(x) for x in volume]
        pv = 0.0
        total = 0.0
        for h_, l_, c_, v_ in zip(hs, ls, cs, vs, strict=True):
            pv += (h_ + l_ + c_) / 3.0 * v_
            total += v_
        if total <= 0.0:
            acc = 0.0
            for c_ in cs:
                acc += c_
            return acc / n
        return pv / total
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    v = np.asarray(volume, dtype=np.float64)
    total = float(v.sum())
    if total <= 0.0:
        return float(c.mean())
    typical = (h + lo + c) / 3.0
    return float((typical * v).sum() / total)


def _window_sums(x: np.ndarray, window: int) -> np.ndarray:
    """Sums of every length-``window`` run of ``x`` (length ``n - window + 1``)."""
    m = len(x) - window + 1
    if window <= _SHIFT_SUM_MAX_WINDOW:
        # a handful of vector adds: faster than cumsum for small windows and free of cancellation
        acc = x[0:m].copy()
        for k in range(1, window):
            acc += x[k : k + m]
        return acc
    cs = np.concatenate(([0.0], np.cumsum(x)))
    return cs[window:] - cs[:-window]


def rolling_vwap(high: Any, low: Any, close: Any, volume: Any, window: int) -> np.ndarray:
    """VWAP of every window of ``window`` consecutive candles, aligned to the window's last candle.

    Returns an array of the input's length ``n``: ``out[i]`` is ``vwap`` of candles ``[i-window+1 .. i]``
    for ``i ≥ window-1``; ``out[i]`` is NaN for the first ``window-1`` indices (no full window yet).
    Windows with zero total volume get the mean of their closes, as in :func:`vwap`.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    h = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    c = np.asarray(close, dtype=np.float64)
    v = np.asarray(volume, dtype=np.float64)
    n = len(c)
    out = np.full(n, np.nan, dtype=np.float64)
    if n < window:
        return out
    pv = (h + lo + c) / 3.0 * v
    sv = _window_sums(v, window)
    spv = _window_sums(pv, window)
    # a window is zero-volume when it has no positive volume (exact integer counts, no cancellation)
    zero = _window_sums((v > 0).astype(np.float64), window) < 0.5
    if zero.any():
        sc = _window_sums(c, window)
        with np.errstate(invalid="ignore", divide="ignore"):
            res = np.where(zero, sc / window, spv / np.where(zero, 1.0, sv))
    else:
        res = spv / sv
    out[window - 1 :] = res
    return out
