"""The position-management rules of btkit.lifecycle.management: what is accepted and what is rejected.

A rejection must leave nothing changed (the rules are pure: the input row is never touched) and carry a
reason a person can act on.
"""

from __future__ import annotations

import math

import attrs
import pytest

from btkit.config import EngineConfig
from btkit.lifecycle import management as rules
from btkit.lifecycle import pnl as pnl_math
from btkit.model import Entry, SignalRow

T0 = 1_704_067_200_000
MIN = 60_000
CFG = EngineConfig()


def row(
    side: str = "long",
    *,
    entries: tuple[float, ...] = (100.0,),
    tp: float | None = None,
    sl: float | None = None,
) -> SignalRow:
    tp = tp if tp is not None else (110.0 if side == "long" else 90.0)
    sl = sl if sl is not None else (90.0 if side == "long" else 110.0)
    return SignalRow(
        id="s1",
        symbol="TST",
        strategy_name="s",
        exchange_name="x",
        frame_name="",
        position=side,  # type: ignore[arg-type]
        price_open=entries[0],
        price_take_profit=tp,
        price_stop_loss=sl,
        minute_estimated_time=600,
        cost=100.0,
        note="",
        scheduled_at=T0,
        pending_at=T0,
        entries=tuple(Entry(p, 100.0, T0 + i * MIN) for i, p in enumerate(entries)),
    )


def rejected(outcome: rules.Outcome, *words: str) -> str:
    assert isinstance(outcome, rules.Rejection), f"expected a rejection, got {outcome!r}"
    assert not outcome
    for w in words:
        assert w in outcome.reason, outcome.reason
    return outcome.reason


# ---------------------------------------------------------------- averaging in
def test_averaging_up_is_rejected_long_and_short() -> None:
    long = row("long", entries=(100.0, 95.0), sl=80.0)
    rejected(rules.average_buy(long, 100.0, price=96.0, when=T0, cfg=CFG), "averaging up", "lowest entry 95")
    rejected(rules.average_buy(long, 100.0, price=95.0, when=T0, cfg=CFG), "averaging up")  # equal: not below
    assert isinstance(rules.average_buy(long, 100.0, price=94.9, when=T0, cfg=CFG), SignalRow)
    short = row("short", entries=(100.0, 105.0), sl=120.0)
    out = rules.average_buy(short, 100.0, price=104.0, when=T0, cfg=CFG)
    rejected(out, "averaging up", "highest entry 105")
    assert isinstance(rules.average_buy(short, 100.0, price=105.5, when=T0, cfg=CFG), SignalRow)


def test_averaging_below_the_effective_entry_but_above_the_lowest_entry_is_rejected() -> None:
    # entries 100 and 80: effective 88.9 — 85 is below the effective entry but above the lowest entry 80
    r = row("long", entries=(100.0, 80.0), sl=70.0)
    rejected(rules.average_buy(r, 100.0, price=85.0, when=T0, cfg=CFG), "lowest entry 80")


def test_average_buy_through_the_stop_or_bad_cost_is_rejected() -> None:
    r = row("long", sl=90.0)
    rejected(rules.average_buy(r, 100.0, price=89.0, when=T0, cfg=CFG), "stop-loss")
    rejected(rules.average_buy(r, 0.0, price=95.0, when=T0, cfg=CFG), "cost")
    rejected(rules.average_buy(r, math.inf, price=95.0, when=T0, cfg=CFG), "cost")
    with pytest.raises(TypeError, match="cost must be a number"):
        rules.average_buy(r, "100", price=95.0, when=T0, cfg=CFG)  # type: ignore[arg-type]


# ---------------------------------------------------------------- partials
def test_partial_profit_in_loss_is_rejected() -> None:
    r = row("long")
    rejected(rules.partial_close(r, "profit", 30, price=99.0, when=T0, cfg=CFG), "in profit")
    rejected(rules.partial_close(r, "profit", 30, price=100.0, when=T0, cfg=CFG), "in profit")  # flat
    s = row("short")
    rejected(rules.partial_close(s, "profit", 30, price=101.0, when=T0, cfg=CFG), "in profit")
    assert isinstance(rules.partial_close(s, "profit", 30, price=99.0, when=T0, cfg=CFG), SignalRow)


def test_partial_loss_in_profit_is_rejected() -> None:
    r = row("long")
    rejected(rules.partial_close(r, "loss", 30, price=101.0, when=T0, cfg=CFG), "in loss")
    assert isinstance(rules.partial_close(r, "loss", 30, price=99.0, when=T0, cfg=CFG), SignalRow)


def test_partial_at_or_through_tp_or_sl_is_rejected() -> None:
    r = row("long", tp=110.0, sl=90.0)
    rejected(rules.partial_close(r, "profit", 30, price=110.0, when=T0, cfg=CFG), "take-profit")
    rejected(rules.partial_close(r, "loss", 30, price=90.0, when=T0, cfg=CFG), "stop-loss")
    # the effective (trailed) levels count
    trailed = attrs.evolve(r, trailing_take_profit=105.0)
    rejected(rules.partial_close(trailed, "profit", 30, price=106.0, when=T0, cfg=CFG), "take-profit")


@pytest.mark.parametrize("percent", [0, -5, 100.0001, 150, math.nan, math.inf])
def test_partial_percent_out_of_range_is_rejected(percent: float) -> None:
    rejected(rules.partial_close(row(), "profit", percent, price=105.0, when=T0, cfg=CFG), "percent")


def test_partial_beyond_what_remains_is_rejected_after_a_full_close() -> None:
    r = row()
    done = rules.partial_close(r, "profit", 100, price=105.0, when=T0, cfg=CFG)
    assert isinstance(done, SignalRow)
    assert pnl_math.remaining_cost(done) == 0.0
    rejected(rules.partial_close(done, "profit", 1, price=105.0, when=T0 + MIN, cfg=CFG), "already closed")
    rejected(rules.average_buy(done, 100.0, price=95.0, when=T0 + MIN, cfg=CFG), "already closed")
    rejected(rules.trailing_stop(done, -5, price=105.0, when=T0 + MIN, cfg=CFG), "already closed")


def test_the_input_row_is_never_changed() -> None:
    r = row()
    snapshot = attrs.asdict(r)
    rules.partial_close(r, "profit", 50, price=105.0, when=T0, cfg=CFG)
    rules.average_buy(r, 100.0, price=95.0, when=T0, cfg=CFG)
    rules.trailing_stop(r, -5, price=102.0, when=T0, cfg=CFG)
    rules.breakeven(r, price=102.0, when=T0, cfg=CFG)
    assert attrs.asdict(r) == snapshot


def test_no_open_position_is_rejected() -> None:
    rejected(rules.partial_close(None, "profit", 10, price=100.0, when=T0, cfg=CFG), "no open position")
    scheduled = attrs.evolve(row(), pending_at=None, entries=())
    rejected(rules.breakeven(scheduled, price=110.0, when=T0, cfg=CFG), "no open position")


# ---------------------------------------------------------------- trailing
def test_trailing_that_does_not_improve_is_rejected() -> None:
    r = row("long", tp=120.0, sl=90.0)
    first = rules.trailing_stop(r, -5, price=102.0, when=T0, cfg=CFG)  # SL 95
    assert isinstance(first, SignalRow)
    # −3 → 97 would be higher: accepted; −4 after −5 → 96 also higher; +1 after → 91 lower: rejected
    rejected(rules.trailing_stop(first, 1, price=102.0, when=T0, cfg=CFG), "does not improve")
    rejected(rules.trailing_stop(first, -5, price=102.0, when=T0, cfg=CFG), "does not improve")  # equal
    better = rules.trailing_stop(first, -7, price=102.0, when=T0, cfg=CFG)  # 97
    assert isinstance(better, SignalRow) and better.stop_loss == pytest.approx(97.0)
    # short: SL 110 → −5 → 105; −2 → 108 is worse for a short
    s = row("short", tp=80.0, sl=110.0)
    s1 = rules.trailing_stop(s, -5, price=98.0, when=T0, cfg=CFG)
    assert isinstance(s1, SignalRow)
    rejected(rules.trailing_stop(s1, -2, price=98.0, when=T0, cfg=CFG), "does not improve")


def test_breakeven_counts_as_the_current_trailing_stop() -> None:
    r = row("long", tp=120.0, sl=90.0)
    be = rules.breakeven(r, price=103.0, when=T0, cfg=CFG)
    assert isinstance(be, SignalRow) and be.stop_loss == 100.0
    rejected(rules.trailing_stop(be, -5, price=103.0, when=T0, cfg=CFG), "does not improve")  # 95 < 100
    assert isinstance(rules.trailing_stop(be, -11, price=103.0, when=T0, cfg=CFG), SignalRow)  # 101


def test_trailing_stop_must_stay_below_the_price_and_the_target() -> None:
    r = row("long", tp=120.0, sl=90.0)
    # −12 → distance −2 % → SL 102: above a price of 101
    rejected(rules.trailing_stop(r, -12, price=101.0, when=T0, cfg=CFG), "current price")
    # −31 → SL 121 above the take-profit (and the price 125 is through TP anyway)
    rejected(rules.trailing_stop(r, -31, price=125.0, when=T0, cfg=CFG), "take-profit")
    rejected(rules.trailing_stop(r, 95, price=101.0, when=T0, cfg=CFG), "price > 0")
    rejected(rules.trailing_stop(r, math.nan, price=101.0, when=T0, cfg=CFG), "finite")


def test_first_trailing_move_may_loosen() -> None:
    # as in backtest-kit, the first move is measured against nothing: +5 → SL 85
    r = row("long", tp=120.0, sl=90.0)
    out = rules.trailing_stop(r, 5, price=101.0, when=T0, cfg=CFG)
    assert isinstance(out, SignalRow) and out.stop_loss == pytest.approx(85.0)


def test_trailing_take_rules() -> None:
    r = row("long", tp=110.0, sl=90.0)
    # −9 → TP 101: below a price of 102
    rejected(rules.trailing_take(r, -9, price=102.0, when=T0, cfg=CFG), "current price")
    t = rules.trailing_take(r, -3, price=102.0, when=T0, cfg=CFG)
    assert isinstance(t, SignalRow) and t.take_profit == pytest.approx(107.0)
    rejected(rules.trailing_take(t, -1, price=102.0, when=T0, cfg=CFG), "not closer")
    # TP must stay beyond the (trailed) stop
    tight = attrs.evolve(r, trailing_stop_loss=101.5)
    rejected(rules.trailing_take(tight, -8.6, price=101.0, when=T0, cfg=CFG), "stop-loss")


def test_breakeven_rejections() -> None:
    r = row("long", tp=120.0, sl=90.0)
    rejected(rules.breakeven(r, price=100.3, when=T0, cfg=CFG), "breakeven needs 0.6 %")
    rejected(rules.breakeven(r, price=97.0, when=T0, cfg=CFG), "breakeven needs")
    # a stop already above the entry has nothing to gain
    locked = attrs.evolve(r, trailing_stop_loss=101.0)
    rejected(rules.breakeven(locked, price=105.0, when=T0, cfg=CFG), "already at or beyond")


def test_numpy_numbers_are_numbers_and_strings_are_not() -> None:
    import numpy as np

    out = rules.partial_close(row(), "profit", np.int64(30), price=np.float64(105.0), when=T0, cfg=CFG)
    assert isinstance(out, SignalRow) and out.partials[0].percent == 30.0
    assert isinstance(out.partials[0].percent, float)
    with pytest.raises(TypeError, match="percent must be a number"):
        rules.partial_close(row(), "profit", "30", price=105.0, when=T0, cfg=CFG)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="percent_shift must be a number"):
        rules.trailing_stop(row(), True, price=105.0, when=T0, cfg=CFG)
