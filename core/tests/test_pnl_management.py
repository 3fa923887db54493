"""The position-management money math (20-pnl-stats.md §1b–§4) against hand-computed values.

Every expected value is worked out in the comment next to it from the spec's formulas, with the default
costs: slippage s = 0.1 % (factor 0.001), fee f = 0.1 (percent units). Nothing here calls a helper that
the code under test also uses to build its answer, except to construct the position.
"""

from __future__ import annotations

import math

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from btkit.config import EngineConfig
from btkit.lifecycle import management as rules
from btkit.lifecycle import pnl as pnl_math
from btkit.model import Entry, SignalRow

T0 = 1_704_067_200_000
MIN = 60_000
CFG = EngineConfig()
COSTS = {"slippage_pct": 0.1, "fee_pct": 0.1}


def position(
    side: str = "long",
    entries: tuple[tuple[float, float], ...] = ((100.0, 100.0),),
    tp: float | None = None,
    sl: float | None = None,
    multiplier: float = 1.0,
) -> SignalRow:
    first = entries[0][0]
    if tp is None:
        tp = first * (1.2 if side == "long" else 0.8)
    if sl is None:
        sl = first * (0.85 if side == "long" else 1.15)
    return SignalRow(
        id="sig-1",
        symbol="TST",
        strategy_name="s",
        exchange_name="x",
        frame_name="",
        position=side,  # type: ignore[arg-type]
        price_open=first,
        price_take_profit=tp,
        price_stop_loss=sl,
        minute_estimated_time=1440,
        cost=entries[0][1],
        note="",
        scheduled_at=T0,
        pending_at=T0,
        multiplier=multiplier,
        entries=tuple(Entry(p, c, T0 + i * MIN) for i, (p, c) in enumerate(entries)),
    )


def accepted(outcome: rules.Outcome) -> SignalRow:
    assert isinstance(outcome, SignalRow), outcome
    return outcome


# ---------------------------------------------------------------- §2 effective entry
def test_effective_entry_two_equal_dollar_entries() -> None:
    # Σcost / Σ(cost/price) = 200 / (100/100 + 100/80) = 200 / 2.25 = 88.888…
    row = position(entries=((100.0, 100.0), (80.0, 100.0)))
    assert pnl_math.effective_entry(row) == pytest.approx(88.88888888888889, rel=1e-15)


def test_effective_entry_weighted_by_dollars() -> None:
    # 300 / (100/100 + 200/80) = 300 / 3.5 = 85.714285714…
    row = position(entries=((100.0, 100.0), (80.0, 200.0)))
    assert pnl_math.effective_entry(row) == pytest.approx(85.71428571428571, rel=1e-15)


def test_average_buy_rule_moves_the_effective_entry_and_keeps_tp_sl() -> None:
    row = position(entries=((100.0, 100.0),), tp=120.0, sl=70.0)
    out = accepted(rules.average_buy(row, 200.0, price=80.0, when=T0 + 5 * MIN, cfg=CFG))
    # the same 300 / 3.5 as above
    assert pnl_math.effective_entry(out) == pytest.approx(85.71428571428571, rel=1e-15)
    assert (out.take_profit, out.stop_loss) == (120.0, 70.0)
    # the default cost is position_entry_cost (100 $): 200 / (1 + 1.25) = 88.888…
    out2 = accepted(rules.average_buy(row, None, price=80.0, when=T0 + 5 * MIN, cfg=CFG))
    assert out2.entries[-1].cost == 100.0
    assert pnl_math.effective_entry(out2) == pytest.approx(88.88888888888889, rel=1e-15)


# ---------------------------------------------------------------- §1 reference values
def test_single_entry_reference_values() -> None:
    # long 100→110: O = 100.1, C = 109.89, raw = 9.79/100.1·100 = 9.780219780…,
    # fees = 0.1·(1 + 109.89/100.1) = 0.209780219…, pnl = 9.570439560…
    long = pnl_math.position_pnl(position("long"), 110.0, **COSTS)
    assert long.pnl_percentage == pytest.approx(9.570439560, abs=1e-9)
    assert long.pnl_cost == pytest.approx(9.570439560 / 100 * 100, abs=1e-9)
    # short 100→90: O = 99.9, C = 90.09, raw = 9.81/99.9·100 = 9.819819…, fees = 0.1·(1 + 90.09/99.9)
    short = pnl_math.position_pnl(position("short"), 90.0, **COSTS)
    assert short.pnl_percentage == pytest.approx(9.629639640, abs=1e-9)
    # round trip at the same price: raw = (99.9 − 100.1)/100.1·100 = −0.1998…, fees = 0.1·(1 + 99.9/100.1)
    flat = pnl_math.position_pnl(position("long"), 100.0, **COSTS)
    assert flat.pnl_percentage == pytest.approx(-0.399600400, abs=1e-9)


# ---------------------------------------------------------------- §3 partials
def test_partials_are_shares_of_the_remaining_position() -> None:
    row = position()
    row = accepted(rules.partial_close(row, "profit", 30, price=105.0, when=T0 + MIN, cfg=CFG))
    row = accepted(rules.partial_close(row, "profit", 40, price=106.0, when=T0 + 2 * MIN, cfg=CFG))
    # 100 % · 0.7 · 0.6 = 42 % remains, 58 % closed
    assert pnl_math.remaining_cost(row) == pytest.approx(42.0, rel=1e-12)
    assert pnl_math.percent_closed(row) == pytest.approx(58.0, rel=1e-12)
    # cost basis snapshots: 100 $ before the first, 70 $ before the second
    assert [p.cost_basis_at_close for p in row.partials] == pytest.approx([100.0, 70.0])
    assert [p.entry_count_at_close for p in row.partials] == [1, 1]
    # a partial does not move the effective entry of the remainder
    assert pnl_math.effective_entry(row) == 100.0


def test_pnl_with_one_partial() -> None:
    # $100 @100, 50 % closed at 110, the rest at 120. invested = 100.
    row = accepted(rules.partial_close(position(), "profit", 50, price=110.0, when=T0 + MIN, cfg=CFG))
    pnl = pnl_math.position_pnl(row, 120.0, **COSTS)
    # leg 1: w1 = 0.5·100/100 = 0.5, O = 100.1, C1 = 110·0.999 = 109.89, raw1 = 9.79/100.1·100
    # rest:  w  = 0.5,             O = 100.1, C  = 120·0.999 = 119.88, raw  = 19.78/100.1·100
    # fees = 0.1 + 0.1·0.5·109.89/100.1 + 0.1·0.5·119.88/100.1
    raw1 = 9.79 / 100.1 * 100
    raw = 19.78 / 100.1 * 100
    fees = 0.1 + 0.1 * 0.5 * 109.89 / 100.1 + 0.1 * 0.5 * 119.88 / 100.1
    expected = 0.5 * raw1 + 0.5 * raw - fees
    assert expected == pytest.approx(14.555459540, abs=1e-9)
    assert pnl.pnl_percentage == pytest.approx(expected, abs=1e-12)
    assert pnl.pnl_entries == 100.0
    assert pnl.pnl_cost == pytest.approx(expected / 100 * 100, abs=1e-12)


def test_pnl_dca_after_a_partial() -> None:
    # $100 @100; 50 % closed at 105 (basis 100 → 50 $, units 1 → 0.5); then $100 @90
    # (basis 150 $, units 0.5 + 100/90 = 1.6111…, effective entry 150/1.6111… = 93.103448275…);
    # the rest closes at 100. invested = 200.
    row = position(tp=130.0, sl=85.0)
    row = accepted(rules.partial_close(row, "profit", 50, price=105.0, when=T0 + MIN, cfg=CFG))
    row = accepted(rules.average_buy(row, 100.0, price=90.0, when=T0 + 2 * MIN, cfg=CFG))
    entry_rest = 150 / (0.5 + 100 / 90)
    assert entry_rest == pytest.approx(93.10344827586206, rel=1e-14)
    assert pnl_math.effective_entry(row) == pytest.approx(entry_rest, rel=1e-14)
    assert pnl_math.remaining_cost(row) == pytest.approx(150.0, rel=1e-14)
    # 50 of 200 invested dollars closed = 25 %
    assert pnl_math.percent_closed(row) == pytest.approx(25.0, rel=1e-12)
    pnl = pnl_math.position_pnl(row, 100.0, **COSTS)
    # leg 1: w1 = 0.5·100/200 = 0.25, O1 = 100.1, C1 = 105·0.999 = 104.895, raw1 = 4.795/100.1·100
    # rest:  w  = 150/200 = 0.75, O = entry_rest·1.001, C = 99.9, raw = (C − O)/O·100
    # fees = 0.1 + 0.1·0.25·C1/O1 + 0.1·0.75·C/O
    o1, c1 = 100.1, 104.895
    o, c = entry_rest * 1.001, 99.9
    fees = 0.1 + 0.1 * 0.25 * c1 / o1 + 0.1 * 0.75 * c / o
    expected = 0.25 * (c1 - o1) / o1 * 100 + 0.75 * (c - o) / o * 100 - fees
    # ≈ 0.25·4.7902 + 0.75·7.1935 − (0.1 + 0.0262 + 0.0804) = 6.38557
    assert expected == pytest.approx(6.385565684, abs=1e-8)
    assert pnl.pnl_percentage == pytest.approx(expected, abs=1e-12)
    assert pnl.pnl_entries == 200.0
    assert pnl.price_open == pytest.approx(entry_rest, rel=1e-14)


def test_pnl_partial_after_dca_uses_the_averaged_entry() -> None:
    # $100 @100 and $100 @80 (E = 88.888…), 50 % closed at 95, rest at 100. invested 200.
    row = position(entries=((100.0, 100.0), (80.0, 100.0)), tp=120.0, sl=75.0)
    row = accepted(rules.partial_close(row, "profit", 50, price=95.0, when=T0 + 5 * MIN, cfg=CFG))
    assert row.partials[0].entry_count_at_close == 2
    assert row.partials[0].cost_basis_at_close == pytest.approx(200.0)
    e = 200 / 2.25
    o = e * 1.001
    c1, c = 95 * 0.999, 100 * 0.999
    # w1 = 0.5·200/200 = 0.5; w_rest = 0.5; both legs open at E
    fees = 0.1 + 0.1 * 0.5 * c1 / o + 0.1 * 0.5 * c / o
    expected = 0.5 * (c1 - o) / o * 100 + 0.5 * (c - o) / o * 100 - fees
    # ≈ 0.5·6.6613 + 0.5·12.2758 − (0.1 + 0.0533 + 0.0561) = 9.25888
    assert expected == pytest.approx(9.258875812, abs=1e-8)
    pnl = pnl_math.position_pnl(row, 100.0, **COSTS)
    assert pnl.pnl_percentage == pytest.approx(expected, abs=1e-12)


def test_full_partial_leaves_nothing_and_pnl_ignores_the_close_price() -> None:
    row = accepted(rules.partial_close(position(), "profit", 100, price=110.0, when=T0 + MIN, cfg=CFG))
    assert pnl_math.remaining_cost(row) == 0.0
    assert pnl_math.percent_closed(row) == 100.0
    # the whole position went out at 110: the §1 reference value 9.570439560
    for close in (50.0, 110.0, 500.0):
        pct = pnl_math.position_pnl(row, close, **COSTS).pnl_percentage
        assert pct == pytest.approx(9.570439560, abs=1e-9)


# ---------------------------------------------------------------- §1b leverage
@pytest.mark.parametrize(("side", "expected"), [("long", 90.37075113), ("short", 109.57084873)])
def test_liquidation_price_at_ten_x(side: str, expected: float) -> None:
    row = position(side, multiplier=10.0)
    liq = pnl_math.liquidation_price(row, **COSTS)
    assert liq == pytest.approx(expected, abs=5e-9)
    # at that price the full pnl formula is −100 %
    assert pnl_math.position_pnl(row, liq, **COSTS).pnl_percentage == pytest.approx(-100.0, abs=1e-9)


def test_leveraged_pnl_is_the_plain_pnl_times_the_multiplier() -> None:
    # (raw − fees)·10 with the §1 reference value: 95.70439560 %, $95.70 on $100
    pnl = pnl_math.position_pnl(position("long", multiplier=10.0), 110.0, **COSTS)
    assert pnl.pnl_percentage == pytest.approx(95.70439560, abs=1e-8)
    assert pnl.pnl_cost == pytest.approx(95.70439560, abs=1e-8)


def test_liquidation_moves_with_dca_and_partials() -> None:
    row = position("long", entries=((100.0, 100.0),), multiplier=10.0, sl=80.0)
    before = pnl_math.liquidation_price(row, **COSTS)
    dca = accepted(rules.average_buy(row, 100.0, price=95.0, when=T0 + MIN, cfg=CFG))
    after = pnl_math.liquidation_price(dca, **COSTS)
    assert after is not None and before is not None and after < before  # a lower entry: further away
    assert pnl_math.position_pnl(dca, after, **COSTS).pnl_percentage == pytest.approx(-100.0, abs=1e-9)
    part = accepted(rules.partial_close(dca, "loss", 50, price=96.0, when=T0 + 2 * MIN, cfg=CFG))
    liq = pnl_math.liquidation_price(part, **COSTS)
    assert liq is not None
    assert pnl_math.position_pnl(part, liq, **COSTS).pnl_percentage == pytest.approx(-100.0, abs=1e-9)
    assert pnl_math.liquidation_price(attrs.evolve(row, isolated=False), **COSTS) is None


# ---------------------------------------------------------------- §4 trailing and breakeven
def test_trailing_stop_reference_example() -> None:
    # long entry 100, SL 90: distance 10 %, shift −5 → 5 % → SL = 100·0.95 = 95
    row = position("long", tp=120.0, sl=90.0)
    out = accepted(rules.trailing_stop(row, -5, price=102.0, when=T0 + MIN, cfg=CFG))
    assert out.stop_loss == pytest.approx(95.0, rel=1e-15)
    assert out.price_stop_loss == 90.0  # the original stays
    # short mirror: entry 100, SL 110, shift −5 → 105
    short = position("short", tp=80.0, sl=110.0)
    out = accepted(rules.trailing_stop(short, -5, price=98.0, when=T0, cfg=CFG))
    assert out.stop_loss == pytest.approx(105.0)


def test_trailing_stop_is_measured_from_the_current_effective_entry() -> None:
    # entries $100 @100 + $100 @80 → E = 88.888…; original SL 75 → d0 = (E − 75)/E·100 = 15.625 %;
    # shift −5 → d = 10.625 % → SL = E·(1 − 0.10625) = 79.444… (= 75 + E·5/100)
    row = position("long", entries=((100.0, 100.0), (80.0, 100.0)), tp=120.0, sl=75.0)
    e = 200 / 2.25
    assert (e - 75) / e * 100 == pytest.approx(15.625)
    out = accepted(rules.trailing_stop(row, -5, price=90.0, when=T0, cfg=CFG))
    assert out.stop_loss == pytest.approx(e * (1 - 0.10625), rel=1e-14)
    assert out.stop_loss == pytest.approx(79.44444444444444, rel=1e-14)


def test_trailing_take_reference_example() -> None:
    # long entry 100, TP 110: distance 10 %, shift −3 → 7 % → TP 107; a later +2 (TP 112) is further: rejected
    row = position("long", tp=110.0, sl=90.0)
    out = accepted(rules.trailing_take(row, -3, price=102.0, when=T0, cfg=CFG))
    assert out.take_profit == pytest.approx(107.0)
    assert isinstance(rules.trailing_take(out, 2, price=102.0, when=T0, cfg=CFG), rules.Rejection)
    # −5 → 105 is closer: accepted
    closer = accepted(rules.trailing_take(out, -5, price=102.0, when=T0, cfg=CFG))
    assert closer.take_profit == pytest.approx(105.0)
    # short: entry 100, TP 90, shift −3 → 93
    short = position("short", tp=90.0, sl=110.0)
    short_out = accepted(rules.trailing_take(short, -3, price=98.0, when=T0, cfg=CFG))
    assert short_out.take_profit == pytest.approx(93.0)


def test_breakeven_threshold_default_and_configured() -> None:
    # threshold = 2·(0.1 + 0.1) + 0.2 = 0.6 % above the effective entry 100 → price ≥ 100.6
    assert rules.breakeven_threshold_percent(CFG) == pytest.approx(0.6)
    row = position("long", tp=120.0, sl=90.0)
    assert isinstance(rules.breakeven(row, price=100.59, when=T0, cfg=CFG), rules.Rejection)
    out = accepted(rules.breakeven(row, price=100.61, when=T0, cfg=CFG))
    assert out.stop_loss == 100.0 and out.breakeven
    # a second breakeven has nothing to move: rejected
    assert isinstance(rules.breakeven(out, price=105.0, when=T0, cfg=CFG), rules.Rejection)
    # threshold 0.5 → 2·0.2 + 0.5 = 0.9 %: 100.85 is too early, 100.95 is enough
    cfg = attrs.evolve(CFG, breakeven_threshold=0.5)
    assert isinstance(rules.breakeven(row, price=100.85, when=T0, cfg=cfg), rules.Rejection)
    assert accepted(rules.breakeven(row, price=100.95, when=T0, cfg=cfg)).stop_loss == 100.0
    # short: entry 100 → price ≤ 99.4
    short = position("short", tp=80.0, sl=110.0)
    assert isinstance(rules.breakeven(short, price=99.41, when=T0, cfg=CFG), rules.Rejection)
    assert accepted(rules.breakeven(short, price=99.39, when=T0, cfg=CFG)).stop_loss == 100.0


def test_breakeven_after_dca_sets_the_stop_to_the_effective_entry() -> None:
    row = position("long", entries=((100.0, 100.0), (80.0, 100.0)), tp=120.0, sl=75.0)
    e = 200 / 2.25
    assert isinstance(rules.breakeven(row, price=e * 1.005, when=T0, cfg=CFG), rules.Rejection)
    out = accepted(rules.breakeven(row, price=e * 1.007, when=T0, cfg=CFG))
    assert out.stop_loss == pytest.approx(e, rel=1e-15)
    # closing at the breakeven stop is a round trip at the same price: −0.3996004 %
    pct = pnl_math.position_pnl(out, out.stop_loss, **COSTS).pnl_percentage
    assert pct == pytest.approx(-0.399600400, abs=1e-9)


# ---------------------------------------------------------------- properties
_op = st.one_of(
    st.tuples(st.just("dca"), st.floats(0.5, 0.999), st.floats(1.0, 1000.0)),
    st.tuples(st.just("partial"), st.floats(0.01, 100.0), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from(["long", "short"]),
    first_cost=st.floats(1.0, 1000.0),
    ops=st.lists(_op, max_size=12),
)
def test_random_sequences_keep_the_books_balanced(side: str, first_cost: float, ops: list) -> None:
    row = position(
        side,
        entries=((100.0, first_cost),),
        tp=1e6 if side == "long" else 1e-6,
        sl=1e-6 if side == "long" else 1e6,
    )
    when = T0
    for op in ops:
        when += MIN
        entry = pnl_math.effective_entry(row)
        if op[0] == "dca":
            lowest = min(e.price for e in row.entries)
            highest = max(e.price for e in row.entries)
            price = lowest * op[1] if side == "long" else highest / op[1]
            out = rules.average_buy(row, op[2], price=price, when=when, cfg=CFG)
        else:
            in_profit = op[2]
            up = 1.01 if in_profit == (side == "long") else 0.99
            kind = "profit" if in_profit else "loss"
            out = rules.partial_close(row, kind, op[1], price=entry * up, when=when, cfg=CFG)
        if isinstance(out, SignalRow):
            row = out
        else:
            assert pnl_math.remaining_cost(row) <= rules.EPSILON_COST or op[0] == "partial"
        invested = sum(e.cost for e in row.entries)
        closed = sum(p.percent / 100 * p.cost_basis_at_close for p in row.partials)
        remaining = pnl_math.remaining_cost(row)
        assert closed <= invested * (1 + 1e-9)
        assert remaining + closed == pytest.approx(invested, rel=1e-9)
        prices = [e.price for e in row.entries]
        effective = pnl_math.effective_entry(row)
        assert min(prices) * (1 - 1e-12) <= effective <= max(prices) * (1 + 1e-12)
        pnl = pnl_math.position_pnl(row, 100.0, **COSTS)
        assert math.isfinite(pnl.pnl_percentage)
        assert pnl.pnl_entries == pytest.approx(invested)


@settings(max_examples=200, deadline=None)
@given(percents=st.lists(st.floats(0.01, 100.0), min_size=1, max_size=8))
def test_closed_share_is_one_minus_the_product_of_what_stayed(percents: list[float]) -> None:
    row = position("long", tp=1e6, sl=1e-6)
    for i, p in enumerate(percents):
        out = rules.partial_close(row, "profit", p, price=101.0, when=T0 + (i + 1) * MIN, cfg=CFG)
        if isinstance(out, rules.Rejection):  # only once nothing remains
            assert pnl_math.remaining_cost(row) <= rules.EPSILON_COST
            break
        row = out
    kept = math.prod(1 - p.percent / 100 for p in row.partials)
    assert pnl_math.percent_closed(row) == pytest.approx((1 - kept) * 100, abs=1e-9)
