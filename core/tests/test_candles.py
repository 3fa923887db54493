"""btkit.candles: conversion, validation, de-duplication, gaps, resampling and VWAP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btkit import candles as ca
from btkit.errors import CandleDataError
from btkit.model import Candle, Candles

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
M = 60_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def make(n: int, *, start: int = T0, step: int = M, price: float = 100.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = price * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    o = np.concatenate(([price], c[:-1]))
    h = np.maximum(o, c) * (1 + rng.uniform(0, 0.001, n))
    lo = np.minimum(o, c) * (1 - rng.uniform(0, 0.001, n))
    v = rng.uniform(1, 10, n)
    ts = start + np.arange(n) * step
    return np.column_stack([ts, o, h, lo, c, v]).astype(np.float64)


# ---------------------------------------------------------------- to_array
def test_to_array_accepts_every_shape() -> None:
    arr = make(4)
    rows = [tuple(float(x) for x in r) for r in arr]
    as_candles = [Candle(int(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]
    as_dicts = [dict(zip(ca.COLUMNS, r, strict=True)) for r in rows]
    as_lists = [list(r) for r in rows]
    cols = Candles(*(arr[:, k] for k in range(6)))
    for shape in (arr, rows, as_candles, as_dicts, as_lists, cols):
        out = ca.to_array(shape)
        assert out.shape == (4, 6) and out.dtype == np.float64
        np.testing.assert_array_equal(out, arr)


def test_to_array_empty_and_bad_input() -> None:
    assert ca.to_array([]).shape == (0, 6)
    with pytest.raises(CandleDataError, match="shape"):
        ca.to_array(np.zeros((3, 5)))
    with pytest.raises(CandleDataError, match="timestamp/open"):
        ca.to_array([{"timestamp": 1, "open": 2}])
    with pytest.raises(CandleDataError, match="None"):
        ca.to_array(None)


# ---------------------------------------------------------------- validate
def test_validate_accepts_good_candles() -> None:
    ca.validate(make(100), source="test")
    ca.validate(ca.empty(), source="test")


@pytest.mark.parametrize(
    ("col", "value", "what"),
    [
        (ca.CLOSE, float("nan"), "non-finite"),
        (ca.HIGH, float("inf"), "non-finite"),
        (ca.OPEN, 0.0, "price <= 0"),
        (ca.LOW, -1.0, "price <= 0"),
        (ca.VOLUME, -0.5, "negative volume"),
    ],
)
def test_validate_names_source_first_bad_timestamp_and_problem(col: int, value: float, what: str) -> None:
    arr = make(20)
    arr[7, col] = value
    arr[12, col] = value  # only the first one is named
    with pytest.raises(CandleDataError) as err:
        ca.validate(arr, source="binance BTCUSDT 1m")
    msg = str(err.value)
    assert "binance BTCUSDT 1m" in msg and str(T0 + 7 * M) in msg and what in msg
    assert "\n" not in msg


def test_validate_high_below_low() -> None:
    arr = make(10)
    arr[3, ca.HIGH], arr[3, ca.LOW] = arr[3, ca.LOW], arr[3, ca.HIGH] + 1
    with pytest.raises(CandleDataError, match=rf"{T0 + 3 * M}.*high .* < low"):
        ca.validate(arr, source="x")


def test_validate_rejects_prices_below_reference_over_1000() -> None:
    arr = make(50, price=40_000.0)
    arr[30, ca.LOW] = 39.0  # 40000/1000 = 40: an unfinished-candle price
    with pytest.raises(CandleDataError, match=rf"{T0 + 30 * M}.*reference/1000"):
        ca.validate(arr, source="x")
    arr[30, ca.LOW] = 41.0  # above the floor: a (wild) wick, but a price
    ca.validate(arr, source="x")


def test_reference_is_the_median_not_the_mean() -> None:
    # one absurd high would drag the mean (and the floor) up and reject normal candles; the median does not
    arr = make(50, price=100.0)
    arr[10, ca.HIGH] = 1e9
    ca.validate(arr, source="x")


def test_reference_is_the_mean_below_five_candles() -> None:
    arr = make(4, price=100.0)
    arr[:, ca.OPEN : ca.CLOSE + 1] = 100.0
    arr[0, ca.HIGH] = 10_000_000.0  # mean of 16 values ≈ 625k → floor ≈ 625 > 100: rejected
    with pytest.raises(CandleDataError, match="reference/1000"):
        ca.validate(arr, source="x")
    five = np.concatenate([arr, make(1, start=T0 + 4 * M)])
    five[4, ca.OPEN : ca.CLOSE + 1] = 100.0
    ca.validate(five, source="x")  # with 5 candles the median (100) is used: accepted


# ---------------------------------------------------------------- dedupe_sorted
def test_dedupe_drops_identical_duplicates() -> None:
    arr = make(5)
    doubled = np.insert(arr, [2, 4], arr[[1, 3]], axis=0)
    out = ca.dedupe_sorted(doubled, source="x")
    np.testing.assert_array_equal(out, arr)


def test_dedupe_returns_clean_input_unchanged() -> None:
    arr = make(5)
    assert ca.dedupe_sorted(arr, source="x") is arr


def test_dedupe_rejects_conflicting_duplicates() -> None:
    arr = make(5)
    other = arr[2].copy()
    other[ca.CLOSE] += 1
    bad = np.insert(arr, 3, other, axis=0)
    with pytest.raises(CandleDataError, match=rf"conflicting duplicate.*{T0 + 2 * M}"):
        ca.dedupe_sorted(bad, source="x")


def test_dedupe_rejects_unsorted_input_instead_of_sorting() -> None:
    arr = make(5)[[0, 1, 3, 2, 4]]
    with pytest.raises(CandleDataError, match=rf"unsorted.*{T0 + 2 * M}"):
        ca.dedupe_sorted(arr, source="x")


# ---------------------------------------------------------------- gaps
def test_find_and_fill_gaps() -> None:
    arr = make(10)
    holed = np.delete(arr, [3, 4, 7], axis=0)
    assert ca.find_gaps(holed, M) == [(T0 + 3 * M, 2), (T0 + 7 * M, 1)]
    assert ca.find_gaps(arr, M) == []
    filled = ca.fill_gaps(holed, M)
    assert len(filled) == 10
    np.testing.assert_array_equal(filled[:, ca.TS], arr[:, ca.TS])
    for i in (3, 4):
        assert list(filled[i, 1:5]) == [arr[2, ca.CLOSE]] * 4 and filled[i, ca.VOLUME] == 0
    assert list(filled[7, 1:5]) == [arr[6, ca.CLOSE]] * 4
    kept = [0, 1, 2, 5, 6, 8, 9]
    np.testing.assert_array_equal(filled[kept], arr[kept])
    assert ca.find_gaps(filled, M) == []


def test_fill_gaps_rejects_off_grid_timestamps() -> None:
    arr = make(4)
    arr[2, ca.TS] += 1
    with pytest.raises(CandleDataError, match="not on the"):
        ca.fill_gaps(arr, M)


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data (real candle samples, not in the repo)")
def test_gapped_real_sample_fill_is_explicit() -> None:
    rows = json.loads((SHARED / "gapped-1m-sample.json").read_text())
    arr = ca.dedupe_sorted(ca.to_array(rows), source="gapped")
    ca.validate(arr, source="gapped")
    gaps = ca.find_gaps(arr, M)
    assert len(gaps) == 538 and max(c for _, c in gaps) <= 8
    filled = ca.fill_gaps(arr, M)
    assert len(filled) == len(arr) + sum(c for _, c in gaps)
    assert ca.find_gaps(filled, M) == []
    fabricated = ~np.isin(filled[:, ca.TS], arr[:, ca.TS])
    assert (filled[fabricated, ca.VOLUME] == 0).all()
    ca.validate(filled, source="filled")


# ---------------------------------------------------------------- resample
def naive_resample(arr: np.ndarray, interval: int) -> np.ndarray:
    buckets: dict[int, list[np.ndarray]] = {}
    for r in arr:
        buckets.setdefault(int(r[0]) // interval * interval, []).append(r)
    out = []
    for b, rows in sorted(buckets.items()):
        if len(rows) != interval // M:
            continue
        high = max(r[2] for r in rows)
        low = min(r[3] for r in rows)
        out.append([b, rows[0][1], high, low, rows[-1][4], sum(r[5] for r in rows)])
    return np.array(out, dtype=np.float64).reshape(-1, 6)


@pytest.mark.parametrize("interval", [3 * M, 5 * M, 15 * M, 60 * M])
def test_resample_contiguous_and_unaligned(interval: int) -> None:
    arr = make(600, start=T0 + 2 * M)  # starts mid-bucket: the first bucket is incomplete
    out = ca.resample(arr, interval)
    np.testing.assert_allclose(out, naive_resample(arr, interval), rtol=1e-13)
    assert (out[:, ca.TS] % interval == 0).all()
    aligned = make(600)
    np.testing.assert_allclose(ca.resample(aligned, interval), naive_resample(aligned, interval), rtol=1e-13)


def test_resample_drops_incomplete_buckets() -> None:
    arr = np.delete(make(60), 20, axis=0)
    out = ca.resample(arr, 15 * M)
    assert list(out[:, ca.TS]) == [T0, T0 + 30 * M, T0 + 45 * M]
    np.testing.assert_allclose(out, naive_resample(arr, 15 * M), rtol=1e-13)


# ---------------------------------------------------------------- VWAP
def test_vwap_definition() -> None:
    h, lo, c, v = [3.0, 6.0], [1.0, 3.0], [2.0, 6.0], [1.0, 3.0]
    # typical 2 and 5 → (2·1 + 5·3) / 4
    assert ca.vwap(h, lo, c, v) == pytest.approx(17 / 4)
    assert ca.vwap(h, lo, c, [0.0, 0.0]) == pytest.approx(4.0)  # mean of closes
    with pytest.raises(CandleDataError):
        ca.vwap([], [], [], [])


def _check_rolling(arr: np.ndarray, window: int) -> None:
    h, lo, c, v = (arr[:, k] for k in (ca.HIGH, ca.LOW, ca.CLOSE, ca.VOLUME))
    out = ca.rolling_vwap(h, lo, c, v, window)
    assert out.shape == (len(arr),)
    assert np.isnan(out[: window - 1]).all()
    for i in range(window - 1, len(arr)):
        s = slice(i - window + 1, i + 1)
        assert out[i] == pytest.approx(ca.vwap(h[s], lo[s], c[s], v[s]), rel=1e-9, abs=0), i


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 80),
    window=st.sampled_from([1, 2, 5, 7, 33, 50]),
    zero_share=st.floats(0, 1),
    seed=st.integers(0, 10_000),
)
def test_rolling_vwap_matches_vwap_on_every_window(n: int, window: int, zero_share: float, seed: int) -> None:
    arr = make(n, seed=seed)
    rng = np.random.default_rng(seed + 1)
    arr[rng.random(n) < zero_share, ca.VOLUME] = 0.0
    _check_rolling(arr, window)


def test_small_windows_are_bit_identical_to_vwap() -> None:
    # the engine opens at vwap() and scans with rolling_vwap(): the same window must give the same float
    arr = make(500, price=40_000.0, seed=3)
    arr[::7, ca.VOLUME] = 0.0
    h, lo, c, v = (arr[:, k] for k in (ca.HIGH, ca.LOW, ca.CLOSE, ca.VOLUME))
    for window in (1, 5, 20):
        out = ca.rolling_vwap(h, lo, c, v, window)
        for i in range(window - 1, len(arr)):
            s = slice(i - window + 1, i + 1)
            assert out[i] == ca.vwap(h[s], lo[s], c[s], v[s])
    # lists and arrays give the same answer, large inputs take the numpy path
    as_lists = ca.vwap(list(h[:5]), list(lo[:5]), list(c[:5]), list(v[:5]))
    assert as_lists == ca.vwap(h[:5], lo[:5], c[:5], v[:5])
    assert ca.vwap(h, lo, c, v) == pytest.approx(float(((h + lo + c) / 3 * v).sum() / v.sum()), rel=1e-12)


def test_rolling_vwap_zero_volume_window_after_big_volumes() -> None:
    # cumsum path (window > 32): a zero-volume window after huge volumes must still be the mean of closes
    arr = make(200, price=40_000.0)
    arr[:100, ca.VOLUME] = 1e9
    arr[100:, ca.VOLUME] = 0.0
    _check_rolling(arr, 40)
    _check_rolling(arr, 5)


def test_rolling_vwap_short_input_and_bad_window() -> None:
    assert np.isnan(ca.rolling_vwap([1.0], [1.0], [1.0], [1.0], 5)).all()
    with pytest.raises(ValueError):
        ca.rolling_vwap([1.0], [1.0], [1.0], [1.0], 0)
