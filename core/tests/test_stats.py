"""Statistics over hand-built Closed results (20-pnl-stats.md §5).

Every expected number below is worked out by hand in the comment next to it; the fixed-pnl trades use
round pnl values so the arithmetic can be followed on paper.
"""

from __future__ import annotations

import math
import random

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btkit.lifecycle.pnl import position_pnl
from btkit.model import Closed, Entry, Partial, Pnl, SignalRow, view_of
from btkit.stats import (
    Statistics,
    aggregate,
    compute_statistics,
    drawdown_pnl,
    group_closed,
    peak_pnl,
    signal_row_of,
)

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
MIN = 60_000
DAY = 86_400_000
FEES = {"slippage_pct": 0.1, "fee_pct": 0.1}
_ids = iter(range(1, 1_000_000))


def make_closed(
    *,
    pnl_pct: float | None = None,
    position: str = "long",
    entry: float = 100.0,
    close: float | None = None,
    opened: int = T0,
    minutes: int = 60,
    cost: float = 100.0,
    best: float | None = None,
    worst: float | None = None,
    multiplier: float = 1.0,
    isolated: bool = True,
    entries: tuple[Entry, ...] | None = None,
    partials: tuple[Partial, ...] = (),
    symbol: str = "BTC/USDT",
    strategy: str = "s1",
    reason: str | None = None,
    sid: str | None = None,
) -> Closed:
    """A Closed result built by hand.

    With ``pnl_pct`` the pnl is that number exactly (close price derived for display only); without it
    the pnl comes from the real pnl module for a close at ``close``.
    """
    if close is None:
        close = entry * max(0.001, 1 + (pnl_pct or 0.0) / 100.0)
    if entries is None:
        entries = (Entry(entry, cost, opened),)
    row = SignalRow(
        id=sid or f"sig-{next(_ids)}",
        symbol=symbol,
        strategy_name=strategy,
        exchange_name="ex",
        frame_name="fr",
        position=position,  # type: ignore[arg-type]
        price_open=entries[0].price,
        price_take_profit=entry * (1.1 if position == "long" else 0.9),
        price_stop_loss=entry * (0.9 if position == "long" else 1.1),
        minute_estimated_time=None,
        cost=entries[0].cost,
        note="",
        scheduled_at=opened,
        pending_at=opened,
        multiplier=multiplier,
        isolated=isolated,
        entries=entries,
        partials=partials,
    )
    if pnl_pct is None:
        pnl = position_pnl(row, close, **FEES)
    else:
        invested = sum(e.cost for e in entries)
        pnl = Pnl(
            pnl_percentage=pnl_pct,
            pnl_cost=pnl_pct / 100 * invested,
            pnl_entries=invested,
            price_open=entry,
            price_close=close,
        )
    if reason is None:
        reason = "take_profit" if pnl.pnl_percentage > 0 else "stop_loss"
    close_ts = opened + minutes * MIN
    return Closed(
        symbol=symbol,
        strategy_name=strategy,
        exchange_name="ex",
        frame_name="fr",
        backtest=True,
        timestamp=close_ts,
        current_price=close,
        signal=view_of(row),
        close_reason=reason,  # type: ignore[arg-type]
        close_timestamp=close_ts,
        pnl=pnl,
        price_best=best,
        price_worst=worst,
    )


# The ten-trade set used by several tests. Trade i opens at T0 + 2·i days.
# Winners last 60 min, losers 120 min, the break-even trade 30 min.
TEN = [2.0, -1.0, 3.0, -2.0, 4.0, 1.0, -1.0, 0.0, 5.0, -3.0]


def ten_trades() -> list[Closed]:
    out = []
    for i, p in enumerate(TEN):
        minutes = 60 if p > 0 else 120 if p < 0 else 30
        out.append(make_closed(pnl_pct=p, opened=T0 + i * 2 * DAY, minutes=minutes))
    return out


def test_ten_trades_basic_counts_and_averages() -> None:
    s = compute_statistics(ten_trades())
    # wins 2,3,4,1,5 (5); losses -1,-2,-1,-3 (4); one 0 which is neither
    assert (s.total_signals, s.total_closed, s.win_count, s.loss_count) == (10, 10, 5, 4)
    # win rate = 5 / (5+4) · 100 = 55.5…
    assert s.win_rate == pytest.approx(500 / 9, abs=1e-12)
    # Σ = 15 − 7 = 8; avg = 0.8
    assert s.total_pnl == pytest.approx(8.0, abs=1e-12)
    assert s.avg_pnl == pytest.approx(0.8, abs=1e-12)
    # sorted: -3 -2 -1 -1 0 1 2 3 4 5 → median (0+1)/2 = 0.5
    assert s.median_pnl == 0.5
    # avg win 15/5 = 3, avg loss -7/4 = -1.75
    assert s.avg_win == 3.0
    assert s.avg_loss == -1.75
    assert (s.best_trade, s.worst_trade) == (5.0, -3.0)
    # $100 per trade → pnl_cost = pnl % → Σ $8
    assert s.total_pnl_cost == pytest.approx(8.0, abs=1e-12)
    # profit factor = 15 / 7
    assert s.profit_factor == pytest.approx(15 / 7, abs=1e-12)
    # order 2,-1,3,-2,4,1,-1,0,5,-3: longest win run is [4,1] = 2; no two losses in a row
    assert (s.max_consecutive_wins, s.max_consecutive_losses) == (2, 1)
    assert (s.long_count, s.short_count, s.long_pnl, s.short_pnl) == (10, 0, pytest.approx(8.0), 0.0)
    assert s.long_win_rate == pytest.approx(500 / 9)
    assert s.short_win_rate is None


def test_ten_trades_dispersion_ratios() -> None:
    s = compute_statistics(ten_trades())
    # Σx² = 4+1+9+4+16+1+1+0+25+9 = 70; Σ(x−0.8)² = 70 − 10·0.64 = 63.6; sample var = 63.6/9
    assert s.std_dev == pytest.approx(math.sqrt(63.6 / 9), rel=1e-12)
    assert s.std_dev == pytest.approx(2.6583202716502514, rel=1e-12)
    # sharpe = 0.8 / 2.65832… = 0.300942…
    assert s.sharpe_ratio == pytest.approx(0.3009419175453115, rel=1e-12)
    # downside deviation = √((1+4+1+9)/10) = √1.5; sortino = 0.8/√1.5 = 0.653197…
    assert s.sortino_ratio == pytest.approx(0.8 / math.sqrt(1.5), rel=1e-12)
    # certainty = avg win / |avg loss| = 3 / 1.75
    assert s.certainty_ratio == pytest.approx(3 / 1.75, rel=1e-12)
    # expectancy = 5/9·3 + 4/9·(−1.75) = 15/9 − 7/9 = 8/9
    assert s.expectancy == pytest.approx(8 / 9, rel=1e-12)


def test_ten_trades_time_and_annualised() -> None:
    s = compute_statistics(ten_trades())
    # avg duration = (5·60 + 4·120 + 30)/10 = 81 min; winners 60; losers 120
    assert s.avg_duration_minutes == 81.0
    assert s.avg_win_duration_minutes == 60.0
    assert s.avg_loss_duration_minutes == 120.0
    # first open T0; last trade opens at day 18 and lasts 120 min → span 18 d 2 h = 18.083… days
    assert s.first_timestamp == T0
    assert s.last_timestamp == T0 + 18 * DAY + 120 * MIN
    assert s.span_days == pytest.approx(18 + 2 / 24, rel=1e-12)
    # no overlap: exposure 810 min of 26 040 min (18 d 2 h) = 3.1106…%
    assert s.exposure_minutes == 810.0
    assert s.exposure_pct == pytest.approx(810 / 26_040 * 100, rel=1e-12)
    # trades/year = 10·365/18.0833 = 201.843…; ann. sharpe = 0.300942·√201.843 = 4.27553…
    assert s.trades_per_year == pytest.approx(201.84331797235023, rel=1e-12)
    assert s.annualized_sharpe_ratio == pytest.approx(4.275529154644236, rel=1e-12)
    # expected yearly return = avg pnl · trades/year = 0.8 · 201.843 = 161.4747 %
    assert s.expected_yearly_returns == pytest.approx(161.4746543778802, rel=1e-12)
    # calmar = 161.4747 / max drawdown 3 %
    assert s.calmar_ratio == pytest.approx(161.4746543778802 / 3, rel=1e-9)


def test_ten_trades_equity_curve() -> None:
    s = compute_statistics(ten_trades())
    # no price_worst: a losing trade's trough is its close, so one point per trade plus the start.
    # 1 ·1.02 ·0.99 ·1.03 ·0.98 ·1.04 ·1.01 ·0.99 ·1.00 ·1.05 ·0.97 = 1.079567017690281
    assert len(s.equity_curve) == 11
    assert s.equity_curve[0] == (T0, 1.0)
    assert s.equity_curve[1] == (T0 + 60 * MIN, pytest.approx(1.02))
    assert s.equity_curve[2][1] == pytest.approx(1.0098, rel=1e-12)
    assert s.equity_curve[-1][1] == pytest.approx(1.079567017690281, rel=1e-12)
    assert s.total_return == pytest.approx(7.9567017690281, rel=1e-9)
    # drawdowns from running peaks: 1 %, 2 % (1.040094 → 1.01929212), 1 %, then 3 % from 1.11296 → max 3 %
    assert s.max_drawdown == pytest.approx(3.0, rel=1e-12)
    # recovery factor = total return / max drawdown = 7.9567 / 3
    assert s.recovery_factor == pytest.approx(7.9567017690281 / 3, rel=1e-9)


def test_drawdown_marks_equity_down_before_the_pnl() -> None:
    # long @100, worst 90, closes at 110, default 0.1 % slippage and fee:
    #   mark at 90: O = 100.1, C = 89.91, raw = (89.91−100.1)/100.1·100 = −10.17982018 %,
    #   fees = 0.1·(1 + 89.91/100.1) = 0.18982018 % → −10.36964036 %
    #   close at 110 (spec reference): 9.570439560 %
    c = make_closed(close=110.0, best=112.0, worst=90.0)
    assert c.pnl.pnl_percentage == pytest.approx(9.570439560, abs=1e-9)
    assert drawdown_pnl(c) == pytest.approx(-10.369640359640359, abs=1e-12)
    s = compute_statistics([c])
    # curve: start 1.0 → trough 1 − 0.1036964036 → final 1.0957043956
    eq = [e for _, e in s.equity_curve]
    assert eq == [1.0, pytest.approx(0.8963035964035964), pytest.approx(1.0957043956043957)]
    assert s.max_drawdown == pytest.approx(10.369640359640359, rel=1e-12)
    # a single close: ratios need 10, so they are None
    assert s.std_dev is None and s.sharpe_ratio is None and s.annualized_sharpe_ratio is None


def test_peak_pnl_matches_spec_reference_and_short() -> None:
    # long 100 → best 110 = 9.570439560 %; short 100 → best 90 = 9.629639640 % (spec §1)
    long_ = make_closed(close=105.0, best=110.0)
    short = make_closed(position="short", close=95.0, best=90.0)
    assert peak_pnl(long_) == pytest.approx(9.570439560, abs=1e-9)
    assert peak_pnl(short) == pytest.approx(9.629639640, abs=1e-9)
    assert peak_pnl(make_closed(close=105.0)) is None
    assert drawdown_pnl(make_closed(close=105.0)) is None


def test_signal_row_of_reproduces_recorded_pnl_with_dca_partials_and_leverage() -> None:
    # DCA $100 @100 and $200 @80 (effective 85.714…), a 30 % partial at 95, 5× leverage, close at 98.
    entries = (Entry(100.0, 100.0, T0), Entry(80.0, 200.0, T0 + 10 * MIN))
    partials = (Partial("profit", 30.0, 95.0, 300.0, 2, T0 + 20 * MIN),)
    c = make_closed(entry=100.0, close=98.0, entries=entries, partials=partials, multiplier=5.0, minutes=60)
    assert c.signal is not None
    assert c.signal.price_open == pytest.approx(85.714285714, abs=1e-9)
    row = signal_row_of(c)
    again = position_pnl(row, 98.0, **FEES)
    assert again.pnl_percentage == pytest.approx(c.pnl.pnl_percentage, rel=1e-12)
    assert again.pnl_entries == 300.0


def test_liquidation_wipes_equity_and_later_trades_stay_at_zero() -> None:
    # 10× isolated long @100; the spec's liquidation price 90.37075113 gives pnl −100 % exactly.
    liq = make_closed(close=90.37075113, multiplier=10.0, reason="liquidation", opened=T0)
    assert liq.pnl.pnl_percentage == pytest.approx(-100.0, abs=1e-6)
    after = make_closed(pnl_pct=50.0, opened=T0 + DAY)
    s = compute_statistics([after, liq])
    assert s.equity_curve[-1][1] == pytest.approx(0.0, abs=1e-8)
    assert s.max_drawdown == pytest.approx(100.0, abs=1e-6)
    assert s.total_return == pytest.approx(-100.0, abs=1e-6)
    # recovery = −100 / 100
    assert s.recovery_factor == pytest.approx(-1.0, abs=1e-6)


def test_cross_margin_loss_beyond_100_percent_floors_equity_at_zero() -> None:
    # 10× cross long @100 closed at 85: pnl ≈ −152 % (no liquidation on cross); equity stops at 0
    c = make_closed(close=85.0, multiplier=10.0, isolated=False)
    assert c.pnl.pnl_percentage < -100
    s = compute_statistics([c])
    assert min(e for _, e in s.equity_curve) == 0.0
    assert s.max_drawdown == 100.0


def test_empty_input_is_all_none_or_zero() -> None:
    s = compute_statistics([])
    assert s.total_signals == 0 and s.win_count == 0 and s.loss_count == 0
    assert s.win_rate is None and s.avg_pnl is None and s.median_pnl is None
    assert s.max_drawdown is None and s.equity_curve == () and s.closed == ()
    assert s.total_pnl == 0.0


def test_undefined_values_are_none() -> None:
    # ten identical winners: std 0 → sharpe None; no losses → certainty, profit factor, sortino None;
    # all within 14 days → no annualised figures; no loss → recovery defined only if a drawdown exists
    same = [make_closed(pnl_pct=1.0, opened=T0 + i * DAY) for i in range(10)]
    s = compute_statistics(same)
    assert s.std_dev == 0.0
    assert s.sharpe_ratio is None
    assert s.sortino_ratio is None
    assert s.certainty_ratio is None
    assert s.profit_factor is None
    assert s.loss_count == 0 and s.win_rate == 100.0
    assert s.span_days is not None and s.span_days < 14
    assert s.trades_per_year is None and s.annualized_sharpe_ratio is None
    assert s.expected_yearly_returns is None and s.calmar_ratio is None
    assert s.max_drawdown == 0.0 and s.recovery_factor is None
    # only break-even trades: no win rate
    flat = compute_statistics([make_closed(pnl_pct=0.0, opened=T0 + i * MIN) for i in range(3)])
    assert flat.win_rate is None and flat.win_count == 0 and flat.loss_count == 0


def test_nine_closes_have_no_ratios_ten_do() -> None:
    nine = compute_statistics(ten_trades()[:9])
    assert nine.std_dev is None and nine.sharpe_ratio is None and nine.expectancy is None
    assert nine.avg_pnl is not None
    assert compute_statistics(ten_trades()).std_dev is not None


def test_span_just_below_14_days_is_not_annualised() -> None:
    trades = [make_closed(pnl_pct=(-1) ** i * (i + 1), opened=T0 + i * MIN) for i in range(9)]
    last = make_closed(pnl_pct=1.0, opened=T0 + 14 * DAY - 61 * MIN, minutes=60)  # closes at 14 d − 1 min
    s = compute_statistics([*trades, last])
    assert s.sharpe_ratio is not None
    assert s.annualized_sharpe_ratio is None
    later = attrs.evolve(last, close_timestamp=T0 + 14 * DAY)  # exactly 14 days
    assert compute_statistics([*trades, later]).annualized_sharpe_ratio is not None


def test_closed_is_newest_first_whatever_the_input_order() -> None:
    trades = ten_trades()
    shuffled = trades[:]
    random.Random(7).shuffle(shuffled)
    s = compute_statistics(shuffled)
    assert [c.signal.id for c in s.closed] == [c.signal.id for c in reversed(trades)]  # type: ignore[union-attr]
    # the streaks follow close time, not the input order
    assert (s.max_consecutive_wins, s.max_consecutive_losses) == (2, 1)


def test_exposure_counts_overlapping_positions_once() -> None:
    a = make_closed(pnl_pct=1.0, opened=T0, minutes=60, symbol="A")
    b = make_closed(pnl_pct=1.0, opened=T0 + 30 * MIN, minutes=60, symbol="B")
    s = compute_statistics([a, b])
    # union of [0,60] and [30,90] = 90 min over a 90-min span
    assert s.exposure_minutes == 90.0
    assert s.exposure_pct == 100.0


def test_long_short_split() -> None:
    trades = [
        make_closed(pnl_pct=2.0, position="long"),
        make_closed(pnl_pct=-1.0, position="short", opened=T0 + DAY),
        make_closed(pnl_pct=3.0, position="short", opened=T0 + 2 * DAY),
    ]
    s = compute_statistics(trades)
    assert (s.long_count, s.short_count) == (1, 2)
    assert (s.long_pnl, s.short_pnl) == (2.0, 2.0)
    assert s.short_win_rate == 50.0


def test_aggregate_per_symbol_strategy_and_overall() -> None:
    a = [make_closed(pnl_pct=2.0, symbol="BTC/USDT", opened=T0 + i * DAY) for i in range(3)]
    b = [make_closed(pnl_pct=-1.0, symbol="ETH/USDT", strategy="s2", opened=T0 + i * DAY) for i in range(2)]
    groups = group_closed([*a, *b])
    assert list(groups) == [("BTC/USDT", "s1"), ("ETH/USDT", "s2")]
    agg = aggregate(groups)
    assert agg.groups[("BTC/USDT", "s1")].total_pnl == 6.0
    assert agg.groups[("ETH/USDT", "s2")].total_pnl == -2.0
    assert agg.overall.total_signals == 5
    # overall: 6 − 2 = 4; win rate 3/5
    assert agg.overall.total_pnl == pytest.approx(4.0)
    assert agg.overall.win_rate == pytest.approx(60.0)
    assert isinstance(agg.overall, Statistics)


def test_rejects_non_closed_input() -> None:
    with pytest.raises(TypeError, match="Closed results"):
        compute_statistics([object()])  # type: ignore[list-item]


def test_scalars_have_no_series() -> None:
    d = compute_statistics(ten_trades()).scalars()
    assert "equity_curve" not in d and "closed" not in d and "event_list" not in d
    assert d["total_signals"] == 10 and "max_drawdown" in d


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(-100, 300, allow_nan=False),
            st.integers(0, 40 * 24 * 60),
            st.integers(0, 3000),
            st.sampled_from(["long", "short"]),
        ),
        max_size=25,
    )
)
def test_never_nan_or_inf(rows: list[tuple[float, int, int, str]]) -> None:
    trades = [
        make_closed(pnl_pct=p, opened=T0 + start * MIN, minutes=max(1, dur), position=pos, worst=50.0)
        for p, start, dur, pos in rows
    ]
    s = compute_statistics(trades)
    for name, value in s.scalars().items():
        if isinstance(value, float):
            assert math.isfinite(value), name
    for _, e in s.equity_curve:
        assert math.isfinite(e) and e >= 0


def test_break_even_trade_ends_both_streaks() -> None:
    # close order: +1, 0, +1, +1, −1, 0, −1 → longest win run 2 (the 0 splits 1|1,1), loss run 1
    pnls = [1.0, 0.0, 1.0, 1.0, -1.0, 0.0, -1.0]
    s = compute_statistics([make_closed(pnl_pct=p, opened=T0 + i * DAY) for i, p in enumerate(pnls)])
    assert (s.max_consecutive_wins, s.max_consecutive_losses) == (2, 1)
