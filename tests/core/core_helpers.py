"""Hand-built candles and a small harness that runs one strategy through ``btkit.Backtest.run``.

Everything is in minutes from ``T0`` (2024-01-01 00:00 UTC): candle ``i`` opens at ``T0 + i·1m``; the
backtest observes it at ``T0 + (i+1)·1m`` (the instant it closed) with the VWAP of candles ``i−4 … i``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import numpy as np

import btkit
from btkit import candles as ca
from btkit.testing.exchange import memory_exchange

M = 60_000
T0_DT = datetime(2024, 1, 1, tzinfo=UTC)
T0 = int(T0_DT.timestamp() * 1000)


def ms(minute: float) -> int:
    """Milliseconds of ``T0 + minute``."""
    return T0 + round(minute * M)


def dt(minute: float) -> datetime:
    return T0_DT + timedelta(minutes=minute)


def minute_of(ts_ms: int) -> float:
    return (ts_ms - T0) / M


def flat(n: int, price: float = 100.0, volume: float = 1.0) -> np.ndarray:
    """``n`` 1-minute candles from T0 with o=h=l=c=``price``."""
    ts = T0 + np.arange(n, dtype=np.float64) * M
    p = np.full(n, float(price))
    return np.column_stack([ts, p, p, p, p, np.full(n, float(volume))])


def setc(
    arr: np.ndarray,
    minute: int,
    *,
    open: float | None = None,
    high: float | None = None,
    low: float | None = None,
    close: float | None = None,
    volume: float | None = None,
) -> np.ndarray:
    """Change candle ``minute`` in place (high/low widen to cover open/close); returns ``arr``."""
    row = arr[minute]
    for col, value in ((1, open), (2, high), (3, low), (4, close), (5, volume)):
        if value is not None:
            row[col] = value
    row[2] = max(row[1:5])
    row[3] = min(row[1:5])
    return arr


def walk_to(arr: np.ndarray, first: int, closes: list[float]) -> np.ndarray:
    """Candles ``first, first+1, …`` close at ``closes`` (each opens at the previous close)."""
    prev = float(arr[first - 1, 4]) if first else float(closes[0])
    for k, c in enumerate(closes):
        i = first + k
        arr[i, 1] = prev
        arr[i, 4] = c
        arr[i, 2] = max(prev, c)
        arr[i, 3] = min(prev, c)
        prev = c
    if first + len(closes) < len(arr):  # the following candles continue flat at the last close
        rest = slice(first + len(closes), len(arr))
        arr[rest, 1:5] = prev
    return arr


def vwap_at(arr: np.ndarray, obs_ms: int, window: int = 5) -> float:
    """The VWAP an observation at ``obs_ms`` sees: candles opening ``obs−window·1m … obs−1m``."""
    i = int((obs_ms - T0) // M)
    rows = arr[i - window : i]
    assert len(rows) == window, f"no full VWAP window before minute {i}"
    return ca.vwap(rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5])


@attrs.define
class Outcome:
    results: list[Any]
    errors: list[Any]
    done: list[Any]
    calls: list[tuple[float, float]]  # (minute of when, current_price) of every get_signal call
    raised: BaseException | None = None

    def of(self, cls: type) -> list[Any]:
        return [r for r in self.results if isinstance(r, cls)]

    @property
    def actions(self) -> list[str]:
        return [r.action for r in self.results]

    def closed(self) -> Any:
        found = self.of(btkit.Closed)
        assert len(found) == 1, f"expected one close, got {self.actions}; errors: {self.errors}"
        return found[0]


Answer = Callable[[float, float], Any] | Mapping[float, Any] | list[Any]


def run(
    arr: np.ndarray | Mapping[str, np.ndarray],
    answer: Answer,
    *,
    start: float = 10,
    end: float | None = None,
    interval: str = "1m",
    frame_interval: str = "1m",
    risk: str | None = None,
    symbol: str = "X",
    expect_error: type[BaseException] | None = None,
) -> Outcome:
    """Run strategy ``s`` on exchange ``mem`` over frame minutes ``start … end`` and collect everything.

    ``answer`` is the strategy: a function ``(minute, current_price) -> signal``, a mapping minute →
    signal (None elsewhere), or a list answered call by call (None once exhausted).
    """
    data = arr if isinstance(arr, Mapping) else {symbol: arr}
    spec = memory_exchange("mem", data)
    btkit.add_exchange("mem", spec.get_candles)
    calls: list[tuple[float, float]] = []

    def get_signal(sym: str, when: datetime, current_price: float) -> Any:
        minute = minute_of(int(when.timestamp() * 1000))
        calls.append((minute, current_price))
        if callable(answer):
            return answer(minute, current_price)
        if isinstance(answer, list):
            return answer[len(calls) - 1] if len(calls) <= len(answer) else None
        return answer.get(minute)

    btkit.add_strategy("s", get_signal, interval=interval, risk=risk)
    last = len(next(iter(data.values()))) - 2 if end is None else end
    btkit.add_frame("f", dt(start), dt(last), interval=frame_interval)
    errors: list[Any] = []
    done: list[Any] = []
    unsubscribe = [btkit.listen_error(errors.append), btkit.listen_done_backtest(done.append)]
    results: list[Any] = []
    raised: BaseException | None = None
    try:
        for r in btkit.Backtest.run(symbol, strategy="s", exchange="mem", frame="f"):
            results.append(r)
    except Exception as exc:
        if expect_error is None or not isinstance(exc, expect_error):
            raise
        raised = exc
    finally:
        for u in unsubscribe:
            u()
    if expect_error is not None and raised is None:
        actions = [r.action for r in results]
        raise AssertionError(f"expected {expect_error.__name__}, the run ended with {actions}")
    return Outcome(results, errors, done, calls, raised)


def long(tp: float = 110.0, sl: float = 90.0, **kw: Any) -> dict[str, Any]:
    return {"position": "long", "price_take_profit": tp, "price_stop_loss": sl, **kw}


def short(tp: float = 90.0, sl: float = 110.0, **kw: Any) -> dict[str, Any]:
    return {"position": "short", "price_take_profit": tp, "price_stop_loss": sl, **kw}
