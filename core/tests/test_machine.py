"""The pure lifecycle functions (btkit.lifecycle.machine): one-step decisions, row building, stop level,
and the property that the vectorised scans equal stepping the one-step decisions candle by candle."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btkit.config import EngineConfig
from btkit.errors import SignalValidationError
from btkit.lifecycle import machine
from btkit.lifecycle.machine import (
    ActivateDecision,
    CancelDecision,
    CloseDecision,
    Observation,
    decide_pending,
    decide_scheduled,
    scan_pending,
    scan_scheduled,
)
from btkit.model import Signal, SignalRow

M = 60_000
T = 1_704_067_200_000  # 2024-01-01 00:00 UTC
CFG = EngineConfig()


def row(position: str = "long", *, scheduled: bool = False, **kw: object) -> SignalRow:
    long = position == "long"
    base: dict[str, object] = dict(
        id="r",
        symbol="X",
        strategy_name="s",
        exchange_name="e",
        frame_name="f",
        position=position,
        price_open=(95.0 if long else 105.0) if scheduled else 100.0,
        price_take_profit=110.0 if long else 90.0,
        price_stop_loss=90.0 if long else 110.0,
        minute_estimated_time=60,
        cost=100.0,
        note="",
        scheduled_at=T,
    )
    base.update(kw)
    r = SignalRow(**base)  # type: ignore[arg-type]
    return r if scheduled else machine.activate(r, r.price_open, int(base.get("pending_at", T)))  # type: ignore[arg-type]


def obs(minute: int, vwap: float = 100.0, low: float = 100.0, high: float = 100.0) -> Observation:
    return Observation(T + minute * M, vwap, low, high)


# ---------------------------------------------------------------- decide_pending
def test_pending_holds_while_nothing_is_reached() -> None:
    assert decide_pending(row(), obs(1, 105, 91, 109), CFG) is None


def test_expiry_comes_first_and_closes_at_the_vwap() -> None:
    d = decide_pending(row(minute_estimated_time=10), obs(10, vwap=150, low=50, high=200), CFG)
    assert d == CloseDecision("time_expired", 150, T + 10 * M)
    assert decide_pending(row(minute_estimated_time=10), obs(9), CFG) is None


def test_stop_by_touch_comes_before_take_profit_and_fills_at_the_level() -> None:
    assert decide_pending(row(), obs(3, vwap=150, low=50), CFG) == CloseDecision("stop_loss", 90.0, T + 3 * M)
    assert decide_pending(row("short"), obs(3, vwap=50, high=150), CFG) == CloseDecision(
        "stop_loss", 110.0, T + 3 * M
    )


def test_take_profit_by_vwap_fills_at_the_level() -> None:
    assert decide_pending(row(), obs(3, vwap=111, high=200), CFG) == CloseDecision(
        "take_profit", 110.0, T + 3 * M
    )
    assert decide_pending(row(), obs(3, vwap=109.99, high=200), CFG) is None  # the wick alone is not profit
    assert decide_pending(row("short"), obs(3, vwap=89, low=1), CFG) == CloseDecision(
        "take_profit", 90.0, T + 3 * M
    )


def test_every_comparison_is_inclusive() -> None:
    assert decide_pending(row(), obs(2, low=90.0), CFG).reason == "stop_loss"  # type: ignore[union-attr]
    assert decide_pending(row(), obs(2, vwap=110.0), CFG).reason == "take_profit"  # type: ignore[union-attr]
    assert decide_pending(row("short"), obs(2, high=110.0), CFG).reason == "stop_loss"  # type: ignore[union-attr]
    assert decide_pending(row("short"), obs(2, vwap=90.0), CFG).reason == "take_profit"  # type: ignore[union-attr]


def test_lifetime_counts_from_pending_at() -> None:
    r = row(minute_estimated_time=10, pending_at=T + 30 * M)
    assert decide_pending(r, obs(39), CFG) is None
    assert decide_pending(r, obs(40), CFG).reason == "time_expired"  # type: ignore[union-attr]


def test_no_lifetime_never_expires() -> None:
    assert decide_pending(row(minute_estimated_time=None), obs(10**6), CFG) is None


def test_frame_end_forces_time_expired_on_the_first_candle_after_it() -> None:
    end = T + 20 * M
    assert decide_pending(row(), obs(21), CFG, frame_end=end) is None  # candle 20 opens at frame_end
    assert decide_pending(row(), obs(22), CFG, frame_end=end) == CloseDecision(
        "time_expired", 100.0, T + 22 * M
    )


def test_effective_levels_are_used() -> None:
    r = attrs.evolve(row(), trailing_stop_loss=99.0, trailing_take_profit=102.0)
    assert decide_pending(r, obs(1, low=99.0), CFG) == CloseDecision("stop_loss", 99.0, T + M)
    assert decide_pending(r, obs(1, vwap=102.0), CFG) == CloseDecision("take_profit", 102.0, T + M)


def test_leverage_on_isolated_margin_stops_at_the_liquidation_price() -> None:
    r = row(multiplier=10.0, price_stop_loss=85.0)
    level, reason = machine.stop_level(r, CFG)
    assert reason == "liquidation"
    assert level == pytest.approx(90.37075113, abs=1e-8)
    d = decide_pending(r, obs(1, low=90.3), CFG)
    assert d is not None and (d.reason, d.price) == ("liquidation", level)
    short = row("short", multiplier=10.0, price_stop_loss=115.0)
    assert machine.stop_level(short, CFG)[0] == pytest.approx(109.57084873, abs=1e-8)
    cross = row(multiplier=10.0, price_stop_loss=85.0, isolated=False)
    assert machine.stop_level(cross, CFG) == (85.0, "stop_loss")
    near_sl = row(multiplier=10.0, price_stop_loss=95.0)  # SL closer than the liquidation price
    assert machine.stop_level(near_sl, CFG) == (95.0, "stop_loss")


# ---------------------------------------------------------------- decide_scheduled
def test_scheduled_waits_above_the_entry() -> None:
    assert decide_scheduled(row(scheduled=True), obs(1, low=95.01), CFG) is None


def test_scheduled_timeout_comes_before_price_tests() -> None:
    cfg = EngineConfig(schedule_await_minutes=10)
    assert decide_scheduled(row(scheduled=True), obs(10, vwap=99, low=50), cfg) == CancelDecision(
        "timeout", 99, T + 10 * M
    )
    assert decide_scheduled(row(scheduled=True), obs(9, low=94), cfg) == ActivateDecision(95.0, T + 9 * M)


def test_stop_loss_beats_activation() -> None:
    assert decide_scheduled(row(scheduled=True), obs(1, low=90.0), CFG) == CancelDecision(
        "price_reject", 90.0, T + M
    )
    assert decide_scheduled(row("short", scheduled=True), obs(1, high=110.0), CFG) == CancelDecision(
        "price_reject", 110.0, T + M
    )


def test_activation_by_touch_fills_at_price_open() -> None:
    assert decide_scheduled(row(scheduled=True), obs(1, vwap=99, low=95.0), CFG) == ActivateDecision(
        95.0, T + M
    )
    assert decide_scheduled(row("short", scheduled=True), obs(1, high=105.0), CFG) == ActivateDecision(
        105.0, T + M
    )


def test_scheduled_frame_end_is_a_timeout() -> None:
    d = decide_scheduled(row(scheduled=True), obs(22), CFG, frame_end=T + 20 * M)
    assert isinstance(d, CancelDecision) and d.reason == "timeout"


# ---------------------------------------------------------------- build_row
def sig(position: str, tp: float, sl: float, **kw: object) -> Signal:
    return Signal(position=position, price_take_profit=tp, price_stop_loss=sl, **kw)  # type: ignore[arg-type]


def build(signal: Signal, price: float = 100.0, cfg: EngineConfig = CFG) -> SignalRow:
    return machine.build_row(
        signal,
        symbol="X",
        strategy_name="s",
        exchange_name="e",
        frame_name="f",
        when=T,
        current_price=price,
        cfg=cfg,
    )


def test_build_row_without_price_open_opens_at_the_current_price() -> None:
    r = build(sig("long", 110.0, 90.0), price=100.5)
    assert (r.price_open, r.pending_at, r.scheduled_at) == (100.5, T, T)
    assert r.entries[0].price == 100.5 and r.entries[0].cost == 100.0
    assert (r.minute_estimated_time, r.cost, r.multiplier, r.isolated) == (1440, 100.0, 1.0, True)
    assert r.id  # a random id


@pytest.mark.parametrize(
    ("position", "price_open", "tp", "sl"), [("long", 101.0, 110.0, 90.0), ("short", 99.0, 90.0, 110.0)]
)
def test_build_row_with_price_open_already_reached_opens_at_price_open(
    position: str, price_open: float, tp: float, sl: float
) -> None:
    r = build(sig(position, tp, sl, price_open=price_open))
    assert (r.price_open, r.pending_at) == (price_open, T)


@pytest.mark.parametrize(
    ("position", "price_open", "tp", "sl"), [("long", 95.0, 110.0, 90.0), ("short", 105.0, 90.0, 110.0)]
)
def test_build_row_with_price_open_not_reached_is_scheduled(
    position: str, price_open: float, tp: float, sl: float
) -> None:
    r = build(sig(position, tp, sl, price_open=price_open, id="mine", cost=50.0, minute_estimated_time=7))
    assert (r.price_open, r.pending_at, r.entries) == (price_open, None, ())
    assert (r.id, r.cost, r.minute_estimated_time) == ("mine", 50.0, 7)


def test_build_row_rejects_an_invalid_signal() -> None:
    with pytest.raises(SignalValidationError, match="take-profit"):
        build(sig("long", 99.0, 90.0))


def test_build_row_with_infinite_lifetime_stores_none() -> None:
    r = build(sig("long", 110.0, 90.0), cfg=EngineConfig(max_signal_lifetime_minutes=math.inf))
    assert r.minute_estimated_time is None


def test_progress_toward_take_profit_and_stop_loss() -> None:
    assert machine.progress(row(), 105.0) == (50.0, 0.0)
    assert machine.progress(row(), 95.0) == (0.0, 50.0)
    assert machine.progress(row(), 200.0) == (100.0, 0.0)
    assert machine.progress(row("short"), 95.0) == (50.0, 0.0)


def test_extremes_merge_with_what_the_row_saw() -> None:
    r = attrs.evolve(row(), price_best=104.0, price_worst=97.0)
    assert machine.extremes(r, np.array([98.0, 99.0]), np.array([103.0, 106.0])) == (106.0, 97.0)
    s = attrs.evolve(row("short"), price_best=96.0, price_worst=103.0)
    assert machine.extremes(s, np.array([95.0]), np.array([101.0])) == (95.0, 103.0)


# ---------------------------------------------------------------- the fast path equals stepping
LEVELS = [
    50.0,
    80.0,
    85.0,
    89.99,
    90.0,
    90.01,
    90.37,
    95.0,
    97.0,
    100.0,
    103.0,
    105.0,
    109.57,
    109.99,
    110.0,
    110.01,
    115.0,
    120.0,
    150.0,
]


@st.composite
def candle_arrays(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(0, 40))
    lows, highs, vwaps = [], [], []
    for _ in range(n):
        a, b = sorted((draw(st.sampled_from(LEVELS)), draw(st.sampled_from(LEVELS))))
        lows.append(a)
        highs.append(b)
        vwaps.append(draw(st.sampled_from(LEVELS)))
    ts = T + np.arange(n, dtype=np.int64) * M
    return (
        ts,
        np.array(vwaps, dtype=np.float64),
        np.array(lows, dtype=np.float64),
        np.array(highs, dtype=np.float64),
    )


def step_pending(r: SignalRow, ts, vw, lo, hi, cfg, frame_end):  # type: ignore[no-untyped-def]
    for i in range(len(ts)):
        d = decide_pending(
            r, Observation(int(ts[i]) + M, float(vw[i]), float(lo[i]), float(hi[i])), cfg, frame_end
        )
        if d is not None:
            return i, d
    return None


def step_scheduled(r: SignalRow, ts, vw, lo, hi, cfg, frame_end):  # type: ignore[no-untyped-def]
    for i in range(len(ts)):
        d = decide_scheduled(
            r, Observation(int(ts[i]) + M, float(vw[i]), float(lo[i]), float(hi[i])), cfg, frame_end
        )
        if d is not None:
            return i, d
    return None


frame_ends = st.one_of(st.none(), st.integers(-2, 45).map(lambda k: T + k * M))


@settings(max_examples=300, deadline=None)
@given(
    arrays=candle_arrays(),
    position=st.sampled_from(["long", "short"]),
    lifetime=st.one_of(st.none(), st.integers(1, 50)),
    pending_offset=st.integers(-5, 5),
    leverage=st.sampled_from([(1.0, True), (10.0, True), (30.0, True), (10.0, False)]),
    trailing=st.booleans(),
    frame_end=frame_ends,
)
def test_scan_pending_equals_stepping_decide_pending(
    arrays,
    position,
    lifetime,
    pending_offset,
    leverage,
    trailing,
    frame_end,  # type: ignore[no-untyped-def]
) -> None:
    ts, vw, lo, hi = arrays
    multiplier, isolated = leverage
    r = row(
        position,
        minute_estimated_time=lifetime,
        pending_at=T + pending_offset * M,
        multiplier=multiplier,
        isolated=isolated,
        scheduled_at=T + min(pending_offset, 0) * M,
    )
    if trailing:
        long = position == "long"
        r = attrs.evolve(
            r, trailing_stop_loss=95.0 if long else 105.0, trailing_take_profit=105.0 if long else 95.0
        )
    expected = step_pending(r, ts, vw, lo, hi, CFG, frame_end)
    assert scan_pending(r, ts, vw, lo, hi, CFG, frame_end) == expected


@settings(max_examples=300, deadline=None)
@given(
    arrays=candle_arrays(),
    position=st.sampled_from(["long", "short"]),
    scheduled_offset=st.integers(-10, 3),
    await_minutes=st.integers(1, 50),
    frame_end=frame_ends,
)
def test_scan_scheduled_equals_stepping_decide_scheduled(
    arrays,
    position,
    scheduled_offset,
    await_minutes,
    frame_end,  # type: ignore[no-untyped-def]
) -> None:
    ts, vw, lo, hi = arrays
    cfg = EngineConfig(schedule_await_minutes=await_minutes)
    r = row(position, scheduled=True, scheduled_at=T + scheduled_offset * M)
    expected = step_scheduled(r, ts, vw, lo, hi, cfg, frame_end)
    assert scan_scheduled(r, ts, vw, lo, hi, cfg, frame_end) == expected
