"""Bad input never crashes the host: a raising strategy, invalid signals, broken exchange data, gaps.

Errors are one clear line on ``listen_error``; a strategy error or an invalid signal is "no signal" and the
run goes on; unusable candle data ends the run with one :class:`btkit.CandleDataError`, an error event and
a done event, and the process carries on with the next run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from core_helpers import dt, flat, long, ms, run, short

import btkit
from btkit.store import CandleStore, import_file, store_exchange
from btkit.testing.exchange import memory_exchange

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
GAPPED = SHARED_DATA / "gapped-1m-sample.json"


# ---------------------------------------------------------------- a raising strategy
def test_get_signal_raising_is_reported_and_the_run_continues() -> None:
    def answer(minute: float, price: float) -> Any:
        if minute < 13:
            raise RuntimeError(f"indicator broke at {minute:g}")
        return long(minute_estimated_time=5) if minute == 13 else None

    out = run(flat(60), answer)
    assert [m for m, _ in out.calls][:4] == [10, 11, 12, 13]
    raised = [e for e in out.errors if isinstance(e.error, RuntimeError)]
    assert [str(e.error) for e in raised] == [
        "indicator broke at 10",
        "indicator broke at 11",
        "indicator broke at 12",
    ]
    assert all("get_signal" in e.where and "X" in e.where for e in raised)
    assert out.actions == ["opened", "closed"]
    assert out.of(btkit.Opened)[0].timestamp == ms(13)
    assert out.done[0].error is None


def test_an_async_get_signal_raising_is_reported_too() -> None:
    calls: list[int] = []

    async def get_signal(symbol: str, when: datetime, price: float) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("not ready")
        return long(tp=price * 1.02, sl=price * 0.98, minute_estimated_time=5) if len(calls) == 2 else None

    btkit.add_exchange("mem", memory_exchange("mem", {"X": flat(60)}).get_candles)
    btkit.add_strategy("a", get_signal)
    btkit.add_frame("f", dt(10), dt(40))
    errors: list[Any] = []
    btkit.listen_error(errors.append)
    results = list(btkit.Backtest.run("X", strategy="a", exchange="mem", frame="f"))
    assert [type(e.error).__name__ for e in errors] == ["ValueError"]
    assert [r.action for r in results] == ["opened", "closed"]


# ---------------------------------------------------------------- invalid signals
INVALID: list[tuple[str, Callable[[float], Any], str]] = [
    ("tp-wrong-side-long", lambda p: long(tp=95.0), "take-profit 95.0 must be above the entry"),
    ("tp-wrong-side-short", lambda p: short(tp=105.0), "take-profit 105.0 must be below the entry"),
    ("sl-wrong-side", lambda p: long(sl=101.0), "stop-loss 101.0 must be below the entry"),
    ("nan-price", lambda p: long(tp=math.nan), "price_take_profit"),
    ("inf-price", lambda p: long(sl=math.inf), "price_stop_loss"),
    ("negative-price", lambda p: long(sl=-1.0), "price_stop_loss"),
    (
        "unknown-key",
        lambda p: {"position": "long", "take_profit": 110.0, "price_stop_loss": 90.0},
        "take_profit",
    ),
    ("missing-key", lambda p: {"position": "long", "price_take_profit": 110.0}, "price_stop_loss"),
    ("bad-position", lambda p: {**long(), "position": "sideways"}, "sideways"),
    ("too-close-tp", lambda p: long(tp=100.3), "min_takeprofit_distance_percent"),
    ("too-close-sl", lambda p: long(sl=99.8), "min_stoploss_distance_percent"),
    ("sl-beyond-20-percent", lambda p: long(sl=75.0), "max_stoploss_distance_percent"),
    ("lifetime-too-long", lambda p: long(minute_estimated_time=1441), "max_signal_lifetime_minutes"),
    ("lifetime-zero", lambda p: long(minute_estimated_time=0), "minute_estimated_time"),
    ("would-close-now", lambda p: long(price_open=104.0, tp=110.0, sl=101.0), "would close immediately"),
    ("scheduled-open-outside", lambda p: long(price_open=95.0, tp=94.0, sl=90.0), "take-profit 94.0"),
    ("not-a-signal", lambda p: "buy!", "get_signal returned str"),
]


@pytest.mark.parametrize(("case", "make", "reason"), INVALID, ids=[c[0] for c in INVALID])
def test_an_invalid_signal_is_rejected_with_its_reason_and_nothing_opens(
    case: str, make: Callable[[float], Any], reason: str
) -> None:
    out = run(flat(40), lambda minute, price: make(price) if minute == 10 else None, end=30)
    assert out.results == []
    assert len(out.errors) == 1, out.errors
    event = out.errors[0]
    assert isinstance(event.error, btkit.SignalValidationError)
    text = str(event.error)
    assert reason in text
    assert "\n" not in text and "Traceback" not in text
    assert "X" in event.where
    assert out.done[0].error is None


def test_after_an_invalid_signal_a_valid_one_still_opens() -> None:
    out = run(flat(60), {10: long(tp=95.0), 11: long(minute_estimated_time=5)})
    assert len(out.errors) == 1
    assert out.actions == ["opened", "closed"]


# ---------------------------------------------------------------- broken exchange data
def corrupt(kind: str) -> Callable[[str, str, datetime, int], Any]:
    clean = memory_exchange("clean", {"X": flat(200)}).get_candles

    def get_candles(symbol: str, interval: str, since: datetime, limit: int) -> Any:
        arr = np.array(clean(symbol, interval, since, limit))
        if kind == "nan":
            arr[len(arr) // 2, 4] = np.nan
        elif kind == "unsorted":
            arr[[3, 4]] = arr[[4, 3]]
        elif kind == "duplicated-conflicting":
            arr = np.insert(arr, 5, arr[4] + [0, 0, 1, 0, 1, 0], axis=0)
        elif kind == "gapped":
            arr = np.delete(arr, 7, axis=0)
        elif kind == "short":  # the exchange stops at minute 30 though the frame needs more
            arr = arr[arr[:, 0] < ms(30)]
        elif kind == "zero-price":
            arr[6, 3] = 0.0
        elif kind == "high-below-low":
            arr[6, 2] = 50.0
        elif kind == "near-zero-price":
            arr[6, 3] = 0.0001
        elif kind == "negative-volume":
            arr[6, 5] = -1.0
        elif kind == "not-candles":
            return [{"time": 1, "price": 2}]
        elif kind == "raises":
            raise ConnectionError("exchange down")
        return arr

    return get_candles


BROKEN = [
    ("nan", "non-finite value"),
    ("unsorted", "unsorted candles"),
    ("duplicated-conflicting", "conflicting duplicate candles"),
    ("gapped", "candles are missing from 2024-01-01 00:12 UTC"),
    ("short", "insufficient candle data"),
    ("zero-price", "price <= 0 (o=100.0, h=100.0, l=0.0, c=100.0)"),
    ("high-below-low", "high 50.0 < low 100.0"),
    ("near-zero-price", "below reference/1000"),
    ("negative-volume", "negative volume"),
    ("not-candles", "cannot read candles"),
    ("raises", "get_candles failed 3 times (ConnectionError: exchange down)"),
]


@pytest.mark.parametrize(("kind", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_exchange_data_ends_the_run_with_one_clear_candle_data_error(kind: str, message: str) -> None:
    btkit.set_config(get_candles_retry_delay_ms=0)
    btkit.add_exchange("bad", corrupt(kind))
    btkit.add_strategy("s", lambda symbol, when, p: long(tp=p * 1.02, sl=p * 0.98, minute_estimated_time=10))
    btkit.add_frame("f", dt(10), dt(150))
    errors: list[Any] = []
    done: list[Any] = []
    btkit.listen_error(errors.append)
    btkit.listen_done_backtest(done.append)
    with pytest.raises(btkit.CandleDataError) as info:
        list(btkit.Backtest.run("X", strategy="s", exchange="bad", frame="f"))
    text = str(info.value)
    assert message in text
    assert "\n" not in text
    assert [e.error for e in errors] == [info.value]  # reported once, on listen_error
    assert len(done) == 1 and done[0].error is info.value
    # the host process carries on: the next run in the same process works
    btkit.add_exchange("good", corrupt("none"))
    results = list(btkit.Backtest.run("X", strategy="s", exchange="good", frame="f"))
    assert results and isinstance(results[-1], btkit.Closed)


@pytest.mark.parametrize("kind", ["identical-duplicates", "tuples"])
def test_harmless_exchange_quirks_give_the_same_backtest(kind: str) -> None:
    data = flat(300)
    rng = np.random.default_rng(3)
    data[:, 4] = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, len(data))))
    data[:, 1] = np.concatenate(([100.0], data[:-1, 4]))
    data[:, 2] = np.maximum(data[:, 1], data[:, 4]) * 1.002
    data[:, 3] = np.minimum(data[:, 1], data[:, 4]) * 0.998
    clean = memory_exchange("clean", {"X": data}).get_candles

    def quirky(symbol: str, interval: str, since: datetime, limit: int) -> Any:
        arr = clean(symbol, interval, since, limit)
        if kind == "identical-duplicates":
            return np.repeat(arr, 2, axis=0)
        return [tuple(float(x) for x in row) for row in arr]  # plain tuples instead of an array

    def strategy(symbol: str, when: datetime, p: float) -> Any:
        return long(tp=p * 1.01, sl=p * 0.99, minute_estimated_time=20)

    btkit.add_strategy("s", strategy)
    btkit.add_frame("f", dt(10), dt(280))
    btkit.add_exchange("clean", clean)
    btkit.add_exchange("quirky", quirky)
    errors: list[Any] = []
    btkit.listen_error(errors.append)
    expected = list(btkit.Backtest.run("X", strategy="s", exchange="clean", frame="f"))
    got = list(btkit.Backtest.run("X", strategy="s", exchange="quirky", frame="f"))
    assert not errors

    def key(r: Any) -> tuple[Any, ...]:
        return (
            r.action,
            r.timestamp,
            r.signal.price_open,
            getattr(r, "close_reason", None),
            getattr(r, "pnl", None),
        )

    assert len(expected) > 10
    assert [key(r) for r in got] == [key(r) for r in expected]


# ---------------------------------------------------------------- the real gapped sample
@pytest.fixture
def gapped_store(tmp_path: Path) -> tuple[CandleStore, np.ndarray]:
    if not GAPPED.is_file():
        pytest.skip(f"real data sample {GAPPED.name} not found (needs ../shared/data next to the repository)")
    store = CandleStore(tmp_path / "data")
    import_file(GAPPED, "sample", "PAIR", "1m", store)
    raw = np.array(json.loads(GAPPED.read_text()), dtype=np.float64)
    return store, raw


def gapped_strategy(symbol: str, when: datetime, p: float) -> Any:
    return long(tp=p * 1.01, sl=p * 0.99, minute_estimated_time=30) if when.minute % 30 == 0 else None


def test_the_real_gapped_sample_errors_clearly_on_its_first_gap(
    gapped_store: tuple[CandleStore, np.ndarray],
) -> None:
    store, raw = gapped_store
    ts = raw[:, 0].astype(np.int64)
    first_gap = int(ts[np.argmax(np.diff(ts) > 60_000)]) + 60_000
    btkit.add_exchange("sample", store_exchange("sample", store=store, gaps="reject").get_candles)
    btkit.add_strategy("g", gapped_strategy)
    start = datetime.fromtimestamp((int(ts[0]) + 5 * 60_000) / 1000, UTC)
    end = datetime.fromtimestamp(int(ts[-1] - 60_000) / 1000, UTC)
    btkit.add_frame("all", start, end)
    errors: list[Any] = []
    done: list[Any] = []
    btkit.listen_error(errors.append)
    btkit.listen_done_backtest(done.append)
    with pytest.raises(btkit.CandleDataError) as info:
        list(btkit.Backtest.run("PAIR", strategy="g", exchange="sample", frame="all"))
    first_gap_text = datetime.fromtimestamp(first_gap / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")  # ISO (issue 11)
    assert first_gap_text in str(info.value)
    assert "gaps='fill'" in str(info.value)
    assert len(done) == 1 and done[0].error is info.value and len(errors) == 1


def test_the_real_gapped_sample_runs_with_gaps_filled(gapped_store: tuple[CandleStore, np.ndarray]) -> None:
    store, raw = gapped_store
    ts = raw[:, 0].astype(np.int64)
    btkit.add_exchange("sample", store_exchange("sample", store=store, gaps="fill").get_candles)
    btkit.add_strategy("g", gapped_strategy)
    start = datetime.fromtimestamp((int(ts[0]) + 5 * 60_000) / 1000, UTC)
    # the frame ends an hour before the data: positions still open at the end need no candle past it
    # (see test_a_frame_ending_at_the_end_of_stored_data_force_closes for the case that does)
    end = datetime.fromtimestamp(int(ts[-1] - 60 * 60_000) / 1000, UTC)
    btkit.add_frame("all", start, end)
    errors: list[Any] = []
    btkit.listen_error(errors.append)
    results = list(btkit.Backtest.run("PAIR", strategy="g", exchange="sample", frame="all"))
    assert not errors
    closed = [r for r in results if isinstance(r, btkit.Closed)]
    assert len(closed) > 100
    assert {r.close_reason for r in closed} <= {"take_profit", "stop_loss", "time_expired"}
    for r in closed:
        if r.close_reason == "take_profit":
            assert r.pnl.price_close == r.signal.price_take_profit
        elif r.close_reason == "stop_loss":
            assert r.pnl.price_close == r.signal.price_stop_loss


def test_an_exchange_returning_fewer_candles_than_asked_is_taken_at_its_word() -> None:
    """A short page means "no more data": the run ends with a clear error, never with different trades."""
    clean = memory_exchange("clean", {"X": flat(300)}).get_candles
    btkit.add_exchange(
        "capped", lambda symbol, interval, since, limit: clean(symbol, interval, since, limit)[:7]
    )
    btkit.add_strategy("s", lambda symbol, when, p: long(tp=p * 1.01, sl=p * 0.99, minute_estimated_time=20))
    btkit.add_frame("f", dt(10), dt(280))
    with pytest.raises(btkit.InsufficientDataError, match="insufficient candle data"):
        list(btkit.Backtest.run("X", strategy="s", exchange="capped", frame="f"))


def test_a_frame_ending_at_the_end_of_stored_data_force_closes(tmp_path: Path) -> None:
    store = CandleStore(tmp_path / "data")
    store.write("stored", "X", "1m", flat(120))
    btkit.add_exchange("stored", store_exchange("stored", store=store).get_candles)
    btkit.add_strategy(
        "s", lambda symbol, when, p: long(tp=p * 1.05, sl=p * 0.95) if when == dt(100) else None
    )
    btkit.add_frame("f", dt(10), dt(118))  # candle 119, the last stored one, forces the close
    results = list(btkit.Backtest.run("X", strategy="s", exchange="stored", frame="f"))
    assert [r.action for r in results] == ["opened", "closed"]
    assert results[-1].close_reason == "time_expired" and results[-1].close_timestamp == ms(120)
