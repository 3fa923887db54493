"""An in-memory exchange fed from candle arrays: for tests and for backtests over data you already hold."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np

from btkit import candles as ca
from btkit.components import ExchangeSpec, interval_ms
from btkit.context import datetime_to_ms
from btkit.errors import CandleDataError
from btkit.model import MINUTE_MS


def memory_exchange(name: str, arrays: Mapping[str, np.ndarray]) -> ExchangeSpec:
    """``arrays[symbol]`` is an ``(n, 6)`` array of 1-minute candles ``[ts, o, h, l, c, v]`` (sorted).

    It serves them as they are — gaps, NaNs and all — so tests can see how the engine treats bad data.
    """
    data = {sym: np.asarray(arr, dtype=np.float64) for sym, arr in arrays.items()}
    resampled: dict[tuple[str, str], np.ndarray] = {}

    def get_candles(symbol: str, interval: str, since: datetime, limit: int) -> np.ndarray:
        if symbol not in data:
            raise CandleDataError(f"exchange {name} has no symbol {symbol!r}")
        arr = data[symbol]
        if interval != "1m":
            key = (symbol, interval)
            if key not in resampled:
                resampled[key] = ca.resample(arr, interval_ms(interval))
            arr = resampled[key]
        start = datetime_to_ms(since)
        i = int(np.searchsorted(arr[:, 0], start, side="left")) if len(arr) else 0
        return arr[i : i + limit]

    return ExchangeSpec(name=name, get_candles=get_candles)


def candles_from_prices(
    start_ms: int, closes: list[float] | np.ndarray, *, spread: float = 0.0, volume: float = 1.0
) -> np.ndarray:
    """1m candles with the given closes (open = previous close, high/low = max/min ± spread·price)."""
    c = np.asarray(closes, dtype=np.float64)
    o = np.concatenate(([c[0]], c[:-1]))
    h = np.maximum(o, c) * (1 + spread)
    lo = np.minimum(o, c) * (1 - spread)
    ts = start_ms + np.arange(len(c), dtype=np.float64) * MINUTE_MS
    return np.column_stack([ts, o, h, lo, c, np.full(len(c), volume)])
