"""PnL reference values of 20-pnl-stats.md §1: the pure formula, and the same numbers out of a backtest."""

from __future__ import annotations

import pytest
from core_helpers import flat, long, run, short, walk_to

import btkit
from btkit.lifecycle.pnl import position_pnl, simple_pnl_percent

LONG_100_110 = 9.570439560
SHORT_100_90 = 9.629639640
ROUND_TRIP = -0.399600400  # the spec's round trip is a long one
# a short round trip costs a little more with the same formula: O = 100·(1−s) = 99.9, C = 100.1,
# raw = −0.2002…, fees = 0.1·(1 + 100.1/99.9) → −0.400400400
SHORT_ROUND_TRIP = -0.400400400


@pytest.mark.parametrize(
    ("position", "entry", "close", "expected"),
    [
        ("long", 100.0, 110.0, LONG_100_110),
        ("short", 100.0, 90.0, SHORT_100_90),
        ("long", 100.0, 100.0, ROUND_TRIP),
        ("short", 100.0, 100.0, SHORT_ROUND_TRIP),
    ],
)
def test_simple_pnl_reference_values(position: str, entry: float, close: float, expected: float) -> None:
    got = simple_pnl_percent(position, entry, close, slippage_pct=0.1, fee_pct=0.1)
    assert got == pytest.approx(expected, abs=5e-10)


def test_pnl_scales_with_price_not_with_its_level() -> None:
    a = simple_pnl_percent("long", 100.0, 110.0, slippage_pct=0.1, fee_pct=0.1)
    b = simple_pnl_percent("long", 43_000.0, 47_300.0, slippage_pct=0.1, fee_pct=0.1)
    assert a == pytest.approx(b, abs=1e-9)


def test_no_costs_is_the_plain_return() -> None:
    assert simple_pnl_percent("long", 100.0, 110.0, slippage_pct=0, fee_pct=0) == pytest.approx(10.0)
    assert simple_pnl_percent("short", 100.0, 90.0, slippage_pct=0, fee_pct=0) == pytest.approx(10.0)


def test_costs_always_work_against_the_trader() -> None:
    for position, close in (("long", 103.0), ("short", 97.0), ("long", 97.0), ("short", 103.0)):
        free = simple_pnl_percent(position, 100.0, close, slippage_pct=0, fee_pct=0)
        assert simple_pnl_percent(position, 100.0, close, slippage_pct=0.1, fee_pct=0.1) < free


# ---------------------------------------------------------------- through Backtest.run
def test_long_100_to_110_through_a_backtest() -> None:
    arr = walk_to(flat(60), 15, [150.0] * 5)  # VWAP from exactly 100 to far above 110
    out = run(arr, {10: long(minute_estimated_time=30)})
    opened, closed = out.of(btkit.Opened)[0], out.closed()
    assert opened.signal.price_open == 100.0
    assert closed.close_reason == "take_profit"
    assert (closed.pnl.price_open, closed.pnl.price_close) == (100.0, 110.0)
    assert closed.pnl.pnl_percentage == pytest.approx(LONG_100_110, abs=5e-10)
    assert closed.pnl.pnl_entries == 100.0
    assert closed.pnl.pnl_cost == pytest.approx(LONG_100_110 / 100 * 100.0, abs=5e-10)


def test_short_100_to_90_through_a_backtest() -> None:
    arr = walk_to(flat(60), 15, [50.0] * 5)
    closed = run(arr, {10: short(minute_estimated_time=30)}).closed()
    assert closed.close_reason == "take_profit"
    assert (closed.pnl.price_open, closed.pnl.price_close) == (100.0, 90.0)
    assert closed.pnl.pnl_percentage == pytest.approx(SHORT_100_90, abs=5e-10)


@pytest.mark.parametrize("position", ["long", "short"])
def test_round_trip_through_a_backtest(position: str) -> None:
    sig = long(minute_estimated_time=5) if position == "long" else short(minute_estimated_time=5)
    closed = run(flat(60), {10: sig}).closed()
    assert (closed.close_reason, closed.pnl.price_close) == ("time_expired", 100.0)
    expected = ROUND_TRIP if position == "long" else SHORT_ROUND_TRIP
    assert closed.pnl.pnl_percentage == pytest.approx(expected, abs=5e-10)


def test_cost_scales_pnl_cost_not_pnl_percentage() -> None:
    arr = walk_to(flat(60), 15, [150.0] * 5)
    closed = run(arr, {10: long(minute_estimated_time=30, cost=250.0)}).closed()
    assert closed.pnl.pnl_percentage == pytest.approx(LONG_100_110, abs=5e-10)
    assert closed.pnl.pnl_entries == 250.0
    assert closed.pnl.pnl_cost == pytest.approx(LONG_100_110 * 2.5, abs=5e-9)


def test_config_costs_reach_the_backtest() -> None:
    btkit.set_config(percent_slippage=0, percent_fee=0, min_takeprofit_distance_percent=0.5)
    arr = walk_to(flat(60), 15, [150.0] * 5)
    closed = run(arr, {10: long(minute_estimated_time=30)}).closed()
    assert closed.pnl.pnl_percentage == pytest.approx(10.0, abs=1e-12)


def test_position_pnl_of_a_single_entry_equals_the_simple_formula() -> None:
    arr = walk_to(flat(60), 15, [150.0] * 5)
    out = run(arr, {10: long(minute_estimated_time=30)})
    row_view = out.closed().signal
    assert len(row_view.entries) == 1 and not row_view.partials
    # the record the engine kept reproduces the same pnl through the general (DCA/partials) math
    from btkit.model import SignalRow

    row = SignalRow(
        id=row_view.id,
        symbol="X",
        strategy_name="s",
        exchange_name="mem",
        frame_name="f",
        position=row_view.position,
        price_open=row_view.price_open,
        price_take_profit=row_view.price_take_profit,
        price_stop_loss=row_view.price_stop_loss,
        minute_estimated_time=row_view.minute_estimated_time,
        cost=row_view.cost,
        note="",
        scheduled_at=row_view.scheduled_at,
        pending_at=row_view.pending_at,
        entries=row_view.entries,
    )
    general = position_pnl(row, 110.0, slippage_pct=0.1, fee_pct=0.1)
    assert general.pnl_percentage == pytest.approx(LONG_100_110, abs=5e-10)
