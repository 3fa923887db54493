"""The real Binance BTCUSDT 1m sample (../shared/data, 1,980 candles) through a backtest.

A strategy opens every 30 minutes (alternating long and short, ±0.6 % brackets, 2 h lifetime). Checked:
closes at exactly TP / SL or at the VWAP of the observation, never two positions at once, pnl equal to the
§1 formula, and the vectorised fast path giving exactly what the per-candle tick gives.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import btkit
from btkit import candles as ca
from btkit.lifecycle.pnl import simple_pnl_percent
from btkit.testing import reset_btkit
from btkit.testing.exchange import memory_exchange

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "binance-btcusdt-1m-sample.json"
M = 60_000


@pytest.fixture(scope="module")
def candles() -> np.ndarray:
    if not SAMPLE.is_file():
        pytest.skip(f"real data sample {SAMPLE.name} not found (needs ../shared/data next to the repository)")
    return ca.to_array(json.loads(SAMPLE.read_text()))


def every_30_minutes(symbol: str, when: datetime, price: float) -> Any:
    if when.minute % 30:
        return None
    long = (when.hour * 60 + when.minute) // 30 % 2 == 0
    sign = 1 if long else -1
    return btkit.Signal(
        position="long" if long else "short",
        price_take_profit=price * (1 + sign * 0.006),
        price_stop_loss=price * (1 - sign * 0.006),
        minute_estimated_time=120,
    )


def backtest(data: np.ndarray, *, per_candle: bool = False) -> tuple[list[Any], list[tuple[int, float]]]:
    btkit.add_exchange("binance-sample", memory_exchange("binance-sample", {"BTCUSDT": data}).get_candles)
    calls: list[tuple[int, float]] = []

    def strategy(symbol: str, when: datetime, price: float) -> Any:
        calls.append((int(when.timestamp() * 1000), price))
        return every_30_minutes(symbol, when, price)

    btkit.add_strategy("every30", strategy)
    first, last = int(data[0, 0]), int(data[-1, 0])
    btkit.add_frame(
        "sample",
        datetime.fromtimestamp((first + 5 * M) / 1000, UTC),
        datetime.fromtimestamp((last - 2 * M) / 1000, UTC),
    )
    unsubscribe = btkit.listen_active_ping(lambda ping: None) if per_candle else None
    errors: list[Any] = []
    btkit.listen_error(errors.append)
    try:
        results = list(
            btkit.Backtest.run("BTCUSDT", strategy="every30", exchange="binance-sample", frame="sample")
        )
    finally:
        if unsubscribe is not None:
            unsubscribe()
    assert not errors, errors
    return results, calls


def vwap_at(data: np.ndarray, t: int) -> float:
    i = int((t - data[0, 0]) // M)
    rows = data[i - 5 : i]
    return ca.vwap(rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5])


def test_invariants_over_the_real_btcusdt_sample(candles: np.ndarray) -> None:
    results, calls = backtest(candles)
    opened = [r for r in results if isinstance(r, btkit.Opened)]
    closed = [r for r in results if isinstance(r, btkit.Closed)]
    assert [r.action for r in results] == ["opened", "closed"] * len(closed)  # never two at once
    assert len(closed) > 10
    assert {r.close_reason for r in closed} >= {"take_profit", "stop_loss"}
    cfg = btkit.get_config()
    for o, c in zip(opened, closed, strict=True):
        s = c.signal
        assert s.id == o.signal.id and s.pending_at == o.timestamp
        assert datetime.fromtimestamp(o.timestamp / 1000, UTC).minute % 30 == 0
        assert s.price_open == o.current_price == vwap_at(candles, o.timestamp)
        assert o.timestamp < c.close_timestamp <= o.timestamp + 120 * M
        price = c.pnl.price_close
        if c.close_reason == "take_profit":
            assert price == s.price_take_profit
        elif c.close_reason == "stop_loss":
            assert price == s.price_stop_loss
        else:
            frame_end = int(candles[-1, 0]) - 2 * M  # a candle after it forces the last position out
            assert c.close_reason == "time_expired"
            assert c.close_timestamp in (o.timestamp + 120 * M, frame_end + 2 * M)
            assert price == vwap_at(candles, c.close_timestamp)
        expected = simple_pnl_percent(
            s.position, s.price_open, price, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee
        )
        assert c.pnl.pnl_percentage == pytest.approx(expected, abs=1e-9)
    # get_signal was only asked while nothing was open
    for o, c in zip(opened, closed, strict=True):
        assert not [t for t, _ in calls if o.timestamp < t < c.close_timestamp]
    stats = btkit.Backtest.get_data("BTCUSDT", strategy="every30", exchange="binance-sample", frame="sample")
    assert stats.total_signals == len(closed)
    assert stats.total_pnl == pytest.approx(sum(c.pnl.pnl_percentage for c in closed), abs=1e-9)


def test_the_fast_path_equals_the_per_candle_tick_on_real_data(candles: np.ndarray) -> None:
    fast, fast_calls = backtest(candles)
    reset_btkit()
    slow, slow_calls = backtest(candles, per_candle=True)

    def key(r: Any) -> tuple[Any, ...]:
        return (
            r.action,
            r.timestamp,
            r.signal.price_open,
            getattr(r, "close_reason", None),
            getattr(r, "close_timestamp", None),
            getattr(r, "pnl", None),
        )

    assert [key(r) for r in slow] == [key(r) for r in fast]
    assert slow_calls == fast_calls
