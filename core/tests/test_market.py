"""btkit.market.Market: exact half-open windows, no forming candle, pagination, retries, validation, cache."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btkit import candles as ca
from btkit.components import INTERVAL_MS, ExchangeSpec
from btkit.config import EngineConfig
from btkit.context import datetime_to_ms
from btkit.errors import CandleDataError, InsufficientDataError
from btkit.market import Market
from btkit.testing.exchange import memory_exchange

M = 60_000
T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
DAYS = 40


def random_candles(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * 1.001
    low = np.minimum(open_, close) * 0.999
    ts = T0 + np.arange(n, dtype=np.float64) * M
    return np.column_stack([ts, open_, high, low, close, rng.uniform(0.5, 2.0, n)])


DATA = random_candles(DAYS * 1440)
RESAMPLED = {name: ca.resample(DATA, step) for name, step in INTERVAL_MS.items()}
SERVE = memory_exchange("mem", {"X": DATA})


class Recorder:
    """An exchange that records each request and can misbehave on purpose."""

    def __init__(self, data: np.ndarray = DATA, *, forming_at: int | None = None, fail: int = 0) -> None:
        self.inner = memory_exchange("rec", {"X": data}).get_candles
        self.calls: list[tuple[str, int, int]] = []
        self.forming_at = forming_at
        self.fail = fail

    def __call__(self, symbol: str, interval: str, since: datetime, limit: int) -> Any:
        self.calls.append((interval, datetime_to_ms(since), limit))
        if self.fail:
            self.fail -= 1
            raise TimeoutError("exchange timed out")
        if self.forming_at is not None:  # a live exchange sends everything up to now, forming candle included
            start = datetime_to_ms(since)
            return np.array(self.inner(symbol, interval, since, (self.forming_at - start) // M + 1))
        return np.array(self.inner(symbol, interval, since, limit))


def market(
    get_candles: Any = SERVE.get_candles, *, backtest: bool = True, now: int | None = None, **cfg: Any
) -> Market:
    spec = ExchangeSpec(name="mem", get_candles=get_candles)
    now_ms = (lambda: now) if now is not None else (lambda: T0 + DAYS * 1440 * M + M)
    return Market(spec, EngineConfig(**cfg), backtest=backtest, now_ms=now_ms)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# ---------------------------------------------------------------- exact windows
@settings(max_examples=60, deadline=None)
@given(
    when=st.integers(T0 + 31 * 86_400_000, T0 + (DAYS - 1) * 86_400_000),
    limit=st.integers(1, 30),
    interval=st.sampled_from(sorted(INTERVAL_MS)),
    backtest=st.booleans(),
)
def test_window_is_exactly_limit_closed_candles_before_when(
    when: int, limit: int, interval: str, backtest: bool
) -> None:
    step = INTERVAL_MS[interval]
    m = market(backtest=backtest, now=when)  # live: "now" is when; the forming candle is never fetched
    candles = run(m.window("X", interval, when, limit))
    aligned = when // step * step
    assert len(candles) == limit
    assert int(candles.timestamp[0]) == aligned - limit * step
    assert int(candles.timestamp[-1]) == aligned - step
    assert int(candles.timestamp[-1]) + step <= when
    src = RESAMPLED[interval]
    i = int(np.searchsorted(src[:, 0], aligned - limit * step))
    np.testing.assert_array_equal(candles.close, src[i : i + limit, 4])


@settings(max_examples=30, deadline=None)
@given(when=st.integers(T0 + 86_400_000, T0 + (DAYS - 1) * 86_400_000), limit=st.integers(1, 50))
def test_a_live_exchange_sending_the_forming_candle_never_leaks_it(when: int, limit: int) -> None:
    aligned = when // M * M
    rec = Recorder(forming_at=aligned)
    m = market(rec, backtest=False, now=when)
    candles = run(m.window("X", "1m", when, limit))
    assert len(candles) == limit and int(candles.timestamp[-1]) == aligned - M
    assert all(since + lim * M <= aligned for _, since, lim in rec.calls), "asked for the forming candle"
    # and a later window at the next minute gets the now-closed candle with its final values
    m.now_ms = lambda: when + M
    later = run(m.window("X", "1m", when + M, limit))
    assert int(later.timestamp[-1]) == aligned
    np.testing.assert_array_equal(
        later.close, DATA[(aligned - T0) // M - limit + 1 : (aligned - T0) // M + 1, 4]
    )


def test_vwap_and_observation_use_the_last_five_closed_minutes() -> None:
    m = market()
    when = T0 + 1000 * M + 30_000  # half a minute into candle 1000: it is still forming
    rows = DATA[995:1000]
    expected = ca.vwap(rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5])
    assert run(m.vwap("X", when)) == expected
    obs = run(m.observation("X", when))
    assert (obs.time, obs.vwap, obs.low, obs.high) == (when, expected, DATA[999, 3], DATA[999, 2])


def test_vwap_of_zero_volume_minutes_is_the_mean_close() -> None:
    data = DATA[:100].copy()
    data[:, 5] = 0.0
    m = market(memory_exchange("z", {"X": data}).get_candles)
    assert run(m.vwap("X", T0 + 50 * M)) == pytest.approx(data[45:50, 4].mean(), rel=1e-15)


# ---------------------------------------------------------------- errors, never short lists
def test_a_window_before_the_data_is_an_insufficient_data_error() -> None:
    with pytest.raises(InsufficientDataError, match="has 3 of 10 1m candles"):
        run(market().window("X", "1m", T0 + 3 * M, 10))


def test_a_window_after_the_data_is_an_insufficient_data_error() -> None:
    with pytest.raises(InsufficientDataError, match="insufficient candle data"):
        run(market().window("X", "1h", T0 + (DAYS + 5) * 86_400_000, 3))


def test_unaligned_ranges_are_refused() -> None:
    with pytest.raises(CandleDataError, match="not aligned"):
        run(market().arrays("X", "5m", T0 + M, 3))


@pytest.mark.parametrize("limit", [0, -1, 1.5, True, "5"])
def test_limit_must_be_a_whole_number(limit: Any) -> None:
    with pytest.raises(ValueError, match="limit"):
        run(market().window("X", "1m", T0 + 100 * M, limit))


def test_a_gap_in_the_exchange_data_is_an_error_naming_the_first_missing_candle() -> None:
    gapped = np.delete(DATA[:300], [120, 121], axis=0)
    m = market(memory_exchange("g", {"X": gapped}).get_candles)
    with pytest.raises(CandleDataError, match="missing from 2024-01-01 02:00 UTC"):
        run(m.window("X", "1m", T0 + 200 * M, 150))


# ---------------------------------------------------------------- fetching
def test_fetches_are_paginated_at_max_candles_per_request() -> None:
    rec = Recorder()
    m = market(rec, backtest=False, now=T0 + 500 * M, max_candles_per_request=7)
    candles = run(m.window("X", "1m", T0 + 500 * M, 30))
    assert len(candles) == 30
    assert [lim for _, _, lim in rec.calls] == [7, 7, 7, 7, 2]
    assert [since for _, since, _ in rec.calls] == [T0 + (470 + 7 * k) * M for k in range(5)]


def test_a_cached_window_is_not_fetched_again() -> None:
    rec = Recorder()
    m = market(rec)
    first = run(m.window("X", "1m", T0 + 500 * M, 30))
    fetched = len(rec.calls)

    async def again() -> Any:
        return [await m.window("X", "1m", T0 + (500 + k) * M, 30) for k in range(10)]

    later = run(again())
    assert len(rec.calls) == fetched  # the backtest prefetch covered all of them
    np.testing.assert_array_equal(later[0].close, first.close)


def test_failures_are_retried_then_reported_as_one_candle_data_error() -> None:
    rec = Recorder(fail=2)
    m = market(rec, backtest=False, now=T0 + 500 * M, get_candles_retry_delay_ms=0)
    assert len(run(m.window("X", "1m", T0 + 500 * M, 5))) == 5
    assert len(rec.calls) == 3
    rec = Recorder(fail=3)
    with pytest.raises(
        CandleDataError, match=r"get_candles failed 3 times \(TimeoutError: exchange timed out\)"
    ):
        run(
            market(rec, backtest=False, now=T0 + 500 * M, get_candles_retry_delay_ms=0).window(
                "X", "1m", T0 + 500 * M, 5
            )
        )
    assert len(rec.calls) == 3


def test_an_async_exchange_is_awaited() -> None:
    async def get_candles(symbol: str, interval: str, since: datetime, limit: int) -> Any:
        await asyncio.sleep(0)
        return [tuple(row) for row in SERVE.get_candles(symbol, interval, since, limit)]

    candles = run(market(get_candles).window("X", "15m", T0 + 86_400_000, 4))
    np.testing.assert_array_equal(candles.timestamp, T0 + 86_400_000 - np.arange(4, 0, -1) * 900_000)


def test_identical_duplicates_are_dropped_and_conflicting_ones_refused() -> None:
    dup = np.insert(DATA[:200], 50, DATA[49], axis=0)
    candles = run(market(memory_exchange("d", {"X": dup}).get_candles).window("X", "1m", T0 + 100 * M, 60))
    np.testing.assert_array_equal(candles.timestamp, T0 + np.arange(40, 100) * M)
    bad = np.insert(DATA[:200], 50, DATA[49] + [0, 0, 0, 0, 1, 0], axis=0)
    with pytest.raises(CandleDataError, match="conflicting duplicate"):
        run(market(memory_exchange("d", {"X": bad}).get_candles).window("X", "1m", T0 + 100 * M, 60))


def test_candles_are_served_read_only() -> None:
    candles = run(market().window("X", "1m", T0 + 100 * M, 10))
    with pytest.raises(ValueError):
        candles.close[0] = 1.0
