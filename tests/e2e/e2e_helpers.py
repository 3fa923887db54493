"""Shared pieces of the end-to-end tests: a live run with the ``binance-futures`` exchange and broker
against :class:`btkit_binance_futures.testing.FakeBinanceFutures`, driven by a replay clock.

The candles the fake serves for BTCUSDT (:func:`script_rows`) make one trade: the strategy goes long at
minute 3, the price climbs, and the candle of minute 6 spikes (its high and its volume pull the engine's
VWAP above the take-profit while it closes below it). The fake's mark price follows the replay: before
the engine ticks a minute, the mark is moved to the close of the candle before that minute
(:class:`SteppedReplayClock` calls ``before_minute``), so the entry fills at the mark, the protective
orders never trigger on the fake, and the engine itself closes at take-profit with a reduce-only order.

Also used by ``live_child.py`` (a separate process) and ``benchmarks/live_binance_load.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from btkit.engine.clock import ReplayClock
from btkit.model import MINUTE_MS

T0 = 1_709_251_200_000  # 2024-03-01 00:00 UTC: the replay's first minute
HISTORY = 10  # candles served before T0 (the VWAP needs the last five)
SIGNAL_MINUTE = 3  # the strategy signals at T0 + 3 min
SPIKE_MINUTE = 6  # the candle opening at T0 + 6 min spikes through the take-profit
LAST_MINUTE = 9  # the replay's last minute (T0 + 9 min)
STRATEGY = "e2e-tp"
SYMBOL = "BTCUSDT"
SIGNAL_ID = "e2e-btc-1"
COST = 1000.0
TAKE_PROFIT = 51_000.0
STOP_LOSS = 49_000.0

# (open, high, low, close, volume) per minute index relative to T0; flat before and after
FLAT = (50_000.0, 50_020.0, 49_990.0, 50_000.0, 10.0)
MOVES: dict[int, tuple[float, float, float, float, float]] = {
    3: (50_000.0, 50_210.0, 49_990.0, 50_200.0, 10.0),
    4: (50_200.0, 50_410.0, 50_190.0, 50_400.0, 10.0),
    5: (50_400.0, 50_610.0, 50_390.0, 50_600.0, 10.0),
    SPIKE_MINUTE: (50_600.0, 52_000.0, 50_600.0, 50_900.0, 1_000.0),
}
AFTER = (50_900.0, 50_920.0, 50_890.0, 50_900.0, 10.0)


def minute(index: int) -> int:
    return T0 + index * MINUTE_MS


Bar = tuple[float, float, float, float, float]


def candle(index: int, overrides: dict[int, Bar] | None = None) -> Bar:
    if overrides and index in overrides:
        return overrides[index]
    if index in MOVES:
        return MOVES[index]
    return AFTER if index > SPIKE_MINUTE else FLAT


def script_rows(
    last_index: int = LAST_MINUTE + 5, overrides: dict[int, Bar] | None = None
) -> list[list[Any]]:
    """Binance-style kline rows ``[open_ms, "o", "h", "l", "c", "v"]`` from T0 − HISTORY minutes
    (``overrides``: other bars for some minutes)."""
    return [[minute(i), *(f"{x:.2f}" for x in candle(i, overrides))] for i in range(-HISTORY, last_index + 1)]


def mark_before(when: int, overrides: dict[int, Bar] | None = None) -> float:
    """The fake's mark price while the engine ticks ``when``: the close of the candle before it."""
    return candle((when - T0) // MINUTE_MS - 1, overrides)[3]


def get_signal(symbol: str, when: Any, current_price: float) -> dict[str, Any] | None:
    """One long on BTCUSDT at T0 + SIGNAL_MINUTE (a market-like entry at the engine's price)."""
    if symbol != SYMBOL or int(when.timestamp() * 1000) != minute(SIGNAL_MINUTE):
        return None
    return {
        "id": SIGNAL_ID,
        "position": "long",
        "price_take_profit": TAKE_PROFIT,
        "price_stop_loss": STOP_LOSS,
        "cost": COST,
        "minute_estimated_time": 120,
    }


def broker_options(url: str, **extra: Any) -> dict[str, Any]:
    """The broker table a user would write for a rehearsal against ``url``. ccxt's rate limiter stays on;
    its unit is 5 ms instead of Binance's 50 ms (start-up reads weigh 40 units each) so the functional
    tests stay quick — the load test and benchmark pass ``rate_limit_ms=None`` for ccxt's own unit."""
    options: dict[str, Any] = {
        "api_base_url": url,
        "entry_timeout_seconds": 5.0,
        "poll_interval_seconds": 0.05,
        "retry_delay_seconds": 0.02,
        "request_timeout_ms": 5000,
        "rate_limit_ms": 5,
    }
    options.update(extra)
    return {k: v for k, v in options.items() if v is not None}


def write_btkit_toml(directory: Path, url: str, *, broker: bool = False, **options: Any) -> Path:
    """``btkit.toml`` pointing the ``binance-futures`` exchange (and, with ``broker``, the broker) at the
    fake. The exchange reads ``[exchange.binance-futures]`` from ./btkit.toml at first use, so the runs
    using it must have ``directory`` as their working directory."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"refusing to point a test at {url}: only the local fake is allowed")
    lines = []
    if broker:
        lines += ["[broker]", 'name = "binance-futures"']
        for key, value in broker_options(url, **options).items():
            lines.append(f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"')
        lines.append("")
    lines += ["[exchange.binance-futures]", f'api_base_url = "{url}"', "timeout_ms = 5000", ""]
    path = directory / "btkit.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class SteppedReplayClock(ReplayClock):
    """A :class:`btkit.ReplayClock` (as fast as the machine allows) that calls ``before_minute(when)``
    once per minute, before any run ticks it, and records when each minute was handed out and when
    the last run was done with it (:meth:`durations`).

    ``before_minute`` runs synchronously on the live loop: no run ticks while it runs."""

    def __init__(self, start: int, *, end: int, before_minute: Callable[[int], None] | None = None) -> None:
        super().__init__(start, end=end)
        self.before_minute = before_minute
        self.handed: dict[int, float] = {}
        self.finished: dict[int, float] = {}

    async def next_tick(self, pid: int, last: int | None, stop: Any = None) -> int | None:
        if last is not None and last in self.handed:
            self.finished[last] = max(self.finished.get(last, 0.0), time.perf_counter())
        when = await super().next_tick(pid, last, stop)
        if when is not None and when not in self.handed:
            if self.before_minute is not None:
                self.before_minute(when)
            self.handed[when] = time.perf_counter()
        return when

    def durations(self) -> dict[int, float]:
        """Seconds from handing a minute out to the last run finishing it, per minute."""
        return {m: self.finished[m] - t for m, t in sorted(self.handed.items()) if m in self.finished}
