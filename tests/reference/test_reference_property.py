"""Property: over random candle paths, strategy parameters and signal timings, ``Backtest.run`` and a live
replay give exactly the events of the independent per-minute reference loop (``reference_loop.py``).

The strategies decide on the exact minute they are asked (a hash of the minute, or an SMA crossover of the
strategy-interval candles), with lifetimes of a few minutes, so closes land on every minute of a bucket and
an off-by-one in the close-then-decide rule changes which signal is taken. Resting entries time out, are
rejected or fill; longs and shorts; frames of 1 and 5 minutes.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference_loop import MINUTE_MS, Order, Rules, differences, events_of_results, run_reference

import btkit
from btkit.testing import memory_exchange, reset_btkit

T0 = int(datetime(2024, 5, 1, tzinfo=UTC).timestamp() * 1000)
INTERVALS = {"1m": 1, "3m": 3, "5m": 5, "15m": 15, "30m": 30}


@dataclass(frozen=True)
class Case:
    seed: int
    vol: float  # per-minute volatility of the path
    kind: str  # "hash" or "sma"
    interval: str
    frame_step: int  # minutes
    every: int  # hash kind: one minute in `every` signals
    fast: int
    slow: int
    tp_pct: float
    sl_pct: float
    met_max: int  # lifetimes 1..met_max minutes
    rest_every: int  # one signal in `rest_every` is a resting entry
    await_min: int  # schedule_await_minutes
    minutes: int  # minutes of signals in the frame


def path(case: Case, n: int) -> np.ndarray:
    rng = np.random.default_rng(case.seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, case.vol, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    wick = np.abs(rng.normal(0.0, case.vol, (2, n)))
    high = np.maximum(open_, close) * (1 + wick[0])
    low = np.minimum(open_, close) * (1 - wick[1])
    volume = rng.uniform(0.5, 3.0, n) * (rng.random(n) > 0.1)  # some candles trade nothing
    ts = T0 + np.arange(n, dtype=np.float64) * MINUTE_MS
    return np.column_stack([ts, open_, high, low, close, volume])


def warmup_minutes(case: Case) -> int:
    return (case.slow + 2) * INTERVALS[case.interval] + 10


def order_for(case: Case, when: int, price: float, closes: list[float] | None) -> Order | None:
    """The strategy both sides run: btkit through ``get_signal``, the reference through ``decide``."""
    minute = when // MINUTE_MS
    h = int.from_bytes(hashlib.sha256(f"{case.seed}:{minute}".encode()).digest()[:8], "big")
    if when >= T0 + (warmup_minutes(case) + case.minutes) * MINUTE_MS:
        return None  # signals stop so that everything resolves before the frame (and the replay) ends
    if case.kind == "hash":
        if h % case.every:
            return None
        long = (h >> 8) % 2 == 0
    else:
        assert closes is not None
        tail = closes[-case.slow - 1 :]
        f_now, s_now = sum(tail[-case.fast :]) / case.fast, sum(tail[-case.slow :]) / case.slow
        f_prev = sum(tail[-case.fast - 1 : -1]) / case.fast
        s_prev = sum(tail[-case.slow - 1 : -1]) / case.slow
        if f_prev <= s_prev and f_now > s_now:
            long = True
        elif f_prev >= s_prev and f_now < s_now:
            long = False
        else:
            return None
    met = 1 + (h >> 16) % case.met_max
    entry, price_open = price, None
    if (h >> 24) % case.rest_every == 0:  # a resting entry a little better than the market
        entry = price * (1 - 0.002 if long else 1 + 0.002)
        price_open = entry
    tp, sl = case.tp_pct / 100, case.sl_pct / 100
    return Order(
        id=f"s{minute}",
        position="long" if long else "short",
        take_profit=entry * (1 + tp if long else 1 - tp),
        stop_loss=entry * (1 - sl if long else 1 + sl),
        minute_estimated_time=met,
        price_open=price_open,
    )


def setup(case: Case) -> tuple[np.ndarray, int, int]:
    """Register exchange, strategy and frame; return the candles and the frame's first and last ms."""
    start = T0 + warmup_minutes(case) * MINUTE_MS
    end = start + (case.minutes + case.await_min + case.met_max + 20) * MINUTE_MS
    arr = path(case, (end - T0) // MINUTE_MS + 200)
    btkit.add_exchange("ref", memory_exchange("ref", {"X": arr}).get_candles)
    btkit.set_config(schedule_await_minutes=case.await_min)

    def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
        closes = None
        if case.kind == "sma":
            closes = btkit.get_candles(symbol, case.interval, case.slow + 1).close.tolist()
        order = order_for(case, int(when.timestamp() * 1000), price, closes)
        if order is None:
            return None
        out: dict[str, Any] = {
            "id": order.id,
            "position": order.position,
            "price_take_profit": order.take_profit,
            "price_stop_loss": order.stop_loss,
            "minute_estimated_time": order.minute_estimated_time,
        }
        if order.price_open is not None:
            out["price_open"] = order.price_open
        return out

    btkit.add_strategy("ref", get_signal, interval=case.interval)
    btkit.add_frame(
        "ref",
        datetime.fromtimestamp(start / 1000, UTC),
        datetime.fromtimestamp(end / 1000, UTC),
        interval=f"{case.frame_step}m",
    )
    return arr, start, end


def reference(case: Case, arr: np.ndarray, start: int, end: int) -> list[dict[str, Any]]:
    rows = arr.tolist()
    step = INTERVALS[case.interval] * MINUTE_MS

    def decide(when: int, price: float) -> Order | None:
        closes = None
        if case.kind == "sma":  # closes of the slow+1 interval candles before the bucket
            bucket = when // step * step
            last = [(bucket - j * step - T0) // MINUTE_MS - 1 for j in range(case.slow, -1, -1)]
            closes = [rows[k][4] for k in last]
        return order_for(case, when, price, closes)

    rules = Rules(
        frame_start=start,
        frame_end=end,
        interval_ms=step,
        frame_step_ms=case.frame_step * MINUTE_MS,
        schedule_await_minutes=case.await_min,
    )
    return run_reference(rows, decide, rules)


cases = st.builds(
    Case,
    seed=st.integers(0, 2**31),
    vol=st.sampled_from([0.0008, 0.002, 0.004]),
    kind=st.sampled_from(["hash", "hash", "sma"]),
    interval=st.sampled_from(list(INTERVALS)),
    frame_step=st.sampled_from([1, 1, 5]),
    every=st.integers(1, 4),
    fast=st.integers(2, 5),
    slow=st.integers(6, 12),
    tp_pct=st.floats(0.6, 2.0),
    sl_pct=st.floats(0.6, 2.0),
    met_max=st.integers(3, 40),
    rest_every=st.integers(1, 5),
    await_min=st.sampled_from([5, 17, 120]),
    minutes=st.integers(60, 240),
)


def check(expected: list[dict[str, Any]], got: list[dict[str, Any]], what: str) -> None:
    diff = differences(expected, got)
    assert not diff, f"{what} differs from the reference loop:\n" + "\n".join(diff[:10])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases)
def test_backtest_gives_the_reference_events(case: Case) -> None:
    reset_btkit()
    try:
        arr, start, end = setup(case)
        expected = reference(case, arr, start, end)
        got = events_of_results(btkit.Backtest.run("X", strategy="ref", exchange="ref", frame="ref"))
        check(expected, got, "Backtest.run")
    finally:
        reset_btkit()


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases.filter(lambda c: c.frame_step == 1).map(lambda c: Case(**{**c.__dict__, "minutes": 90})))
def test_live_replay_gives_the_reference_events(case: Case) -> None:
    reset_btkit()
    try:
        arr, start, end = setup(case)
        expected = reference(case, arr, start, end)
        with tempfile.TemporaryDirectory() as root:
            btkit.use_persistence("file", root=root)
            results: list[Any] = []
            btkit.listen_signal_live(results.append)
            clock = btkit.ReplayClock(start, end=end)
            handle = btkit.Live.background("X", strategy="ref", exchange="ref", clock=clock)
            assert handle.join(60)
            assert handle.error is None
            check(expected, events_of_results(results), "the live replay")
    finally:
        reset_btkit()
