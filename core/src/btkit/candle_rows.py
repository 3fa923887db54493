"""Strict checks of a candle file a person brings (``btkit data import``): every row is read as user
input, and the first row that breaks a rule is refused with its row number and the rule.

The engine's own validation (:func:`btkit.candles.validate`) accepts what an exchange plausibly sends;
a file is held to more: JSON numbers only (no strings, no booleans), whole-millisecond timestamps in a
sane range (a microsecond timestamp would read as the year 55970), open and close inside [low, high],
strictly ascending timestamps on the interval's grid (a repeated row is named, not merged), and prices
and volumes below absurd bounds (``1e308`` turns every pnl into ``inf``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from btkit.candles import COLUMNS
from btkit.errors import CandleDataError

EARLIEST_MS = 1_230_768_000_000  # 2009-01-01: no market data of interest is older
MAX_PRICE = 1e12
MAX_VOLUME = 1e18
_NAMES = ("timestamp", "open", "high", "low", "close", "volume")


def _iso(ms: float) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{float(ms):.0f} ms, out of any calendar"


def _r(value: Any) -> str:
    return repr(float(value))


def _values(item: Any, number: int, source: str) -> Sequence[Any]:
    if isinstance(item, Mapping):
        missing = [name for name in COLUMNS if name not in item]
        if missing:
            raise CandleDataError(f"{source} row {number}: missing {', '.join(missing)}; fix the file")
        return [item[name] for name in COLUMNS]
    if isinstance(item, list) and len(item) == 6:
        return item
    raise CandleDataError(
        f"{source} row {number}: expected [timestamp, open, high, low, close, volume] or an object with "
        "those keys; fix the file"
    )


def check_file_rows(data: Sequence[Any], step_ms: int, source: str) -> np.ndarray:
    """The rows of a candle file as an ``(n, 6)`` float64 array, or :class:`CandleDataError` naming the
    first bad row (1-based) and the rule it breaks."""
    rows = []
    for number, item in enumerate(data, start=1):
        values = _values(item, number, source)
        for name, value in zip(_NAMES, values, strict=True):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CandleDataError(
                    f"{source} row {number}: {name} is {value!r}, not a number; values must be JSON numbers"
                )
            if not math.isfinite(value):
                raise CandleDataError(f"{source} row {number}: {name} is {value!r}; values must be finite")
        rows.append(values)
    if not rows:
        return np.empty((0, 6), dtype=np.float64)
    arr = np.array(rows, dtype=np.float64)
    ts, o, h, lo, c, v = (arr[:, i] for i in range(6))
    latest = time.time() * 1000 + 86_400_000
    checks: list[tuple[np.ndarray, Any]] = [
        (
            ts > 1e14,
            lambda i: (
                f"timestamp {ts[i]:.0f} is past the year 5000: looks like micro- or "
                "nanoseconds; timestamps must be milliseconds since 1970"
            ),
        ),
        (ts != np.floor(ts), lambda i: f"timestamp {_r(ts[i])} is not a whole millisecond"),
        (ts < EARLIEST_MS, lambda i: f"timestamp {ts[i]:.0f} ({_iso(ts[i])}) is before 2009-01-01"),
        (ts > latest, lambda i: f"timestamp {ts[i]:.0f} ({_iso(ts[i])}) is in the future"),
        ((arr[:, 1:5] <= 0).any(axis=1), lambda i: "a price is <= 0"),
        ((arr[:, 1:5] > MAX_PRICE).any(axis=1), lambda i: f"a price is above {MAX_PRICE:g}"),
        ((v < 0) | (v > MAX_VOLUME), lambda i: f"volume {_r(v[i])} is negative or above {MAX_VOLUME:g}"),
        (h < lo, lambda i: f"high {_r(h[i])} is below low {_r(lo[i])}"),
        ((o > h) | (c > h), lambda i: f"open {_r(o[i])} or close {_r(c[i])} is above high {_r(h[i])}"),
        ((o < lo) | (c < lo), lambda i: f"open {_r(o[i])} or close {_r(c[i])} is below low {_r(lo[i])}"),
        (
            ts % step_ms != 0,
            lambda i: f"timestamp {_iso(ts[i])} is not on the {step_ms // 60_000}-minute grid",
        ),
    ]
    for bad, rule in checks:
        if bad.any():
            i = int(np.argmax(bad))
            raise CandleDataError(f"{source} row {i + 1}: {rule(i)}; fix the file")
    step = np.diff(ts)
    if (step <= 0).any():
        i = int(np.argmax(step <= 0)) + 1
        what = "repeats the timestamp of" if step[i - 1] == 0 else "is earlier than"
        raise CandleDataError(
            f"{source} row {i + 1}: {_iso(ts[i])} {what} row {i}; rows must be in strictly ascending time"
        )
    return arr
