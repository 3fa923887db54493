"""Signal validation (10-lifecycle.md §6) and coercion of what get_signal returns."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from btkit.config import EngineConfig
from btkit.errors import SignalValidationError
from btkit.lifecycle.validation import coerce_signal, validate
from btkit.model import Signal

CFG = EngineConfig()


def sig(position: str = "long", tp: float = 110.0, sl: float = 90.0, **kw: Any) -> Signal:
    return Signal(position=position, price_take_profit=tp, price_stop_loss=sl, **kw)  # type: ignore[arg-type]


def check(
    signal: Signal,
    *,
    price_open: float = 100.0,
    current: float = 100.0,
    now: bool = True,
    cfg: EngineConfig = CFG,
) -> None:
    validate(signal, price_open=price_open, current_price=current, opens_now=now, cfg=cfg)


# ---------------------------------------------------------------- valid signals
@pytest.mark.parametrize(
    "signal",
    [
        sig("long", 110.0, 90.0),
        sig("short", 90.0, 110.0),
        sig("long", 100.5, 99.5),  # exactly the minimum distances
        sig("long", 150.0, 80.0),  # exactly the maximum stop distance
        sig("long", 110.0, 90.0, minute_estimated_time=1440),
    ],
)
def test_valid_signals_pass(signal: Signal) -> None:
    check(signal)


# ---------------------------------------------------------------- every rule, with its reason
@pytest.mark.parametrize(
    ("signal", "kw", "reason"),
    [
        (sig("long", 100.0, 90.0), {}, "take-profit 100.0 must be above the entry 100.0"),
        (sig("long", 110.0, 100.0), {}, "stop-loss 100.0 must be below the entry 100.0"),
        (sig("short", 110.0, 120.0), {}, "take-profit 110.0 must be below the entry"),
        (sig("short", 90.0, 95.0), {}, "stop-loss 95.0 must be above the entry"),
        (sig("long", 100.49, 90.0), {}, "min_takeprofit_distance_percent=0.5"),
        (sig("short", 90.0, 100.49), {}, "min_stoploss_distance_percent=0.5"),
        (sig("long", 110.0, 79.99), {}, "max_stoploss_distance_percent=20"),
        (sig("short", 90.0, 120.01), {}, "max_stoploss_distance_percent=20"),
        (
            sig("long", 110.0, 90.0, minute_estimated_time=1441),
            {},
            "exceeds max_signal_lifetime_minutes=1440",
        ),
        (sig("long", 110.0, 90.0), {"current": 111.0}, "would close immediately"),
        (sig("long", 110.0, 90.0), {"current": 90.0}, "would close immediately"),
        (sig("short", 90.0, 110.0), {"current": 90.0}, "would close immediately"),
    ],
)
def test_each_rule_rejects_with_a_clear_reason(signal: Signal, kw: dict[str, Any], reason: str) -> None:
    with pytest.raises(SignalValidationError) as info:
        check(signal, **kw)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_scheduled_signals_are_checked_against_price_open_not_the_current_price() -> None:
    # resting long entry at 95 while the market is at 100: TP/SL sides are relative to 95 …
    check(sig("long", 100.0, 90.0, price_open=95.0), price_open=95.0, current=100.0, now=False)
    # … and the "would close immediately" test does not apply to an entry that has not filled
    check(sig("long", 99.0, 90.0, price_open=95.0), price_open=95.0, current=100.0, now=False)
    with pytest.raises(SignalValidationError, match=r"take-profit 94\.0 must be above the entry 95\.0"):
        check(sig("long", 94.0, 90.0, price_open=95.0), price_open=95.0, current=100.0, now=False)


@pytest.mark.parametrize(
    ("name", "value", "bad"),
    [
        ("min_takeprofit_distance_percent", 0, sig("long", 100.01, 90.0)),
        ("min_stoploss_distance_percent", 0, sig("long", 110.0, 99.99)),
        ("max_stoploss_distance_percent", 0, sig("long", 110.0, 1.0)),
    ],
)
def test_a_zero_constant_turns_its_check_off(name: str, value: float, bad: Signal) -> None:
    with pytest.raises(SignalValidationError):
        check(bad)
    check(bad, cfg=EngineConfig(**{name: value}))


def test_an_infinite_lifetime_limit_accepts_any_lifetime() -> None:
    check(sig(minute_estimated_time=10**7), cfg=EngineConfig(max_signal_lifetime_minutes=math.inf))


def test_a_bracket_at_exactly_the_limit_is_not_refused_for_a_rounding_bit() -> None:
    # at 0.7, a stop of 0.7·(1 − 20/100) computes as 20.000000000000004 % away: still within a 20 % limit
    assert abs(0.7 * (1 - 20 / 100) - 0.7) / 0.7 * 100 > 20
    check(sig("long", 0.71, 0.7 * (1 - 20 / 100)), price_open=0.7, current=0.7)


@given(
    position=st.sampled_from(["long", "short"]),
    tp_pct=st.floats(0.5, 50.0),
    sl_pct=st.floats(0.5, 20.0),
    price=st.floats(1e-4, 1e6),
)
def test_brackets_within_the_limits_always_pass(
    position: str, tp_pct: float, sl_pct: float, price: float
) -> None:
    sign = 1 if position == "long" else -1
    tp = price * (1 + sign * (tp_pct + 1e-6) / 100)
    sl = price * (1 - sign * min(sl_pct + 1e-6, 19.99999) / 100)  # inside [min, max], off the edges
    check(sig(position, tp, sl), price_open=price, current=price)


# ---------------------------------------------------------------- coercion
def test_a_signal_or_a_dict_is_accepted() -> None:
    s = sig()
    assert coerce_signal(s) is s
    d = coerce_signal({"position": "short", "price_take_profit": 90.0, "price_stop_loss": 110.0, "note": "n"})
    assert (d.position, d.price_take_profit, d.price_stop_loss, d.note) == ("short", 90.0, 110.0, "n")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"position": "long", "price_take_profit": 110.0, "stop_loss": 90.0}, "unknown field(s) stop_loss"),
        ({"position": "long", "price_take_profit": 110.0}, "price_stop_loss"),
        ({"position": "up", "price_take_profit": 110.0, "price_stop_loss": 90.0}, "up"),
        ({"position": "long", "price_take_profit": math.nan, "price_stop_loss": 90.0}, "price_take_profit"),
        ({"position": "long", "price_take_profit": 110.0, "price_stop_loss": -math.inf}, "price_stop_loss"),
        ({"position": "long", "price_take_profit": 110.0, "price_stop_loss": 0.0}, "price_stop_loss"),
        ({"position": "long", "price_take_profit": 110.0, "price_stop_loss": 90.0, "cost": -5}, "cost"),
        (
            {"position": "long", "price_take_profit": 110.0, "price_stop_loss": 90.0, "price_open": math.nan},
            "price_open",
        ),
        (
            {
                "position": "long",
                "price_take_profit": 110.0,
                "price_stop_loss": 90.0,
                "minute_estimated_time": 0,
            },
            "minute_estimated_time",
        ),
        (
            {
                "position": "long",
                "price_take_profit": 110.0,
                "price_stop_loss": 90.0,
                "minute_estimated_time": 2.5,
            },
            "minute_estimated_time",
        ),
        ("long", "get_signal returned str"),
        (42, "get_signal returned int"),
        ([("position", "long")], "get_signal returned list"),
    ],
)
def test_anything_else_is_a_clear_validation_error(raw: Any, reason: str) -> None:
    with pytest.raises(SignalValidationError) as info:
        coerce_signal(raw)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)
