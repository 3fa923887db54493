"""Look-ahead (10-lifecycle.md §1): inside get_signal, ``get_candles`` returns exactly ``limit`` closed
candles ``[aligned − limit·step, aligned)`` for every interval, never the one still forming at ``when``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pytest
from core_helpers import T0, M, dt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import btkit
from btkit import candles as ca
from btkit.components import INTERVAL_MS
from btkit.testing import reset_btkit
from btkit.testing.exchange import memory_exchange

DAYS = 62
MAX_LIMIT = 30


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    """62 days of 1m candles: a seeded random walk with wicks and volume."""
    rng = np.random.default_rng(7)
    n = DAYS * 1440
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.exponential(0.0005, n))
    low = np.minimum(open_, close) * (1 - rng.exponential(0.0005, n))
    ts = T0 + np.arange(n, dtype=np.float64) * M
    return np.column_stack([ts, open_, high, low, close, rng.lognormal(0, 1, n)])


@pytest.fixture(scope="module")
def resampled(data: np.ndarray) -> dict[str, np.ndarray]:
    return {name: ca.resample(data, step) for name, step in INTERVAL_MS.items()}


def backtest_one_tick(data: np.ndarray, minute: int, ask: Any) -> Any:
    """Run a one-timestamp backtest at ``minute``; ``ask()`` runs inside get_signal; return what it gave."""
    reset_btkit()
    btkit.add_exchange("mem", memory_exchange("mem", {"X": data}).get_candles)
    seen: list[Any] = []

    def get_signal(symbol: str, when: datetime, price: float) -> None:
        seen.append((when, ask()))

    btkit.add_strategy("peek", get_signal)
    btkit.add_frame("one", dt(minute), dt(minute))
    errors: list[Any] = []
    btkit.listen_error(errors.append)
    assert list(btkit.Backtest.run("X", strategy="peek", exchange="mem", frame="one")) == []
    assert not errors, errors
    assert len(seen) == 1
    when, got = seen[0]
    assert int(when.timestamp() * 1000) == T0 + minute * M
    return got


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(minute=st.integers(MAX_LIMIT * 1440 + 1, (DAYS - 1) * 1440), limit=st.integers(1, MAX_LIMIT))
def test_get_candles_inside_get_signal_is_exact_and_closed(
    data: np.ndarray, resampled: dict[str, np.ndarray], minute: int, limit: int
) -> None:
    got = backtest_one_tick(
        data, minute, lambda: {name: btkit.get_candles("X", name, limit) for name in INTERVAL_MS}
    )
    when = T0 + minute * M
    for name, step in INTERVAL_MS.items():
        candles = got[name]
        aligned = (when // step) * step
        assert len(candles) == limit, name
        assert int(candles.timestamp[0]) == aligned - limit * step, name
        assert int(candles.timestamp[-1]) == aligned - step, name
        assert np.all(np.diff(candles.timestamp) == step), name
        assert int(candles.timestamp[-1]) + step <= when, f"{name}: the forming candle was returned"
        # and they are the exchange's candles, unchanged
        src = resampled[name]
        i = int(np.searchsorted(src[:, 0], aligned - limit * step))
        expected = src[i : i + limit]
        np.testing.assert_array_equal(candles.close, expected[:, 4], err_msg=name)
        np.testing.assert_array_equal(candles.high, expected[:, 2], err_msg=name)
        np.testing.assert_array_equal(candles.volume, expected[:, 5], err_msg=name)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(minute=st.integers(10, (DAYS - 1) * 1440))
def test_get_average_price_uses_the_five_closed_minutes(data: np.ndarray, minute: int) -> None:
    def ask() -> tuple[float, datetime, str]:
        return btkit.get_average_price("X"), btkit.get_date(), btkit.get_mode()

    price, date, mode = backtest_one_tick(data, minute, ask)
    rows = data[minute - 5 : minute]
    assert price == ca.vwap(rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5])
    assert date == dt(minute)
    assert mode == "backtest"


def test_get_candles_asking_before_the_data_is_an_error_not_a_short_list(data: np.ndarray) -> None:
    failures: list[BaseException] = []

    def ask() -> None:
        try:
            btkit.get_candles("X", "1h", 48)  # only 24 hours of data before minute 1440
        except btkit.CandleDataError as exc:
            failures.append(exc)

    backtest_one_tick(data, 1440, ask)
    assert len(failures) == 1
    assert "insufficient candle data" in str(failures[0])


def test_get_candles_outside_any_run_says_where_to_call_it() -> None:
    with pytest.raises(btkit.BtkitError, match="no execution context"):
        btkit.get_candles("X", "1m", 5)


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_get_candles_rejects_a_limit_that_is_not_a_whole_number(data: np.ndarray, limit: Any) -> None:
    failures: list[BaseException] = []

    def ask() -> None:
        try:
            btkit.get_candles("X", "1m", limit)
        except (ValueError, btkit.BtkitError) as exc:
            failures.append(exc)

    backtest_one_tick(data, 100, ask)
    assert len(failures) == 1
