"""One scenario per lifecycle rule (10-lifecycle.md §3–§5), each driven through ``btkit.Backtest.run``.

Candles are hand-built: flat at 100 with volume 1 unless a test changes one. The frame starts at minute
10, so the first decision (VWAP of candles 5–9 = 100) opens at ``pending_at`` = minute 10 and the first
candle examined for the new position is candle 10, observed at minute 11.
"""

from __future__ import annotations

import pytest
from core_helpers import flat, long, minute_of, ms, run, setc, short, vwap_at, walk_to

import btkit
from btkit.lifecycle.pnl import simple_pnl_percent


def pnl(position: str, entry: float, close: float) -> float:
    cfg = btkit.get_config()
    return simple_pnl_percent(
        position, entry, close, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee
    )


@pytest.fixture(params=["fast-path", "per-candle"])
def path(request: pytest.FixtureRequest) -> str:
    """Run a scenario both ways: the vectorised fast path, and candle by candle (ping listeners force it)."""
    if request.param == "per-candle":
        btkit.listen_active_ping(lambda ping: None)
        btkit.listen_schedule_ping(lambda ping: None)
    return str(request.param)


# ---------------------------------------------------------------- expiry → stop-loss → take-profit
def monster(arr, minute: int, position: str):  # type: ignore[no-untyped-def]
    """A heavy candle that touches the stop and drags the VWAP through the take-profit."""
    if position == "long":  # low 80 ≤ SL 90; typical 143 with volume 1000 → VWAP ≈ 143 ≥ TP 110
        return setc(arr, minute, open=100, high=200, low=80, close=150, volume=1000)
    return setc(arr, minute, open=100, high=120, low=20, close=40, volume=1000)  # high ≥ SL 110, VWAP ≈ 60


@pytest.mark.parametrize("position", ["long", "short"])
def test_expiry_is_checked_before_stop_and_take_profit(position: str, path: str) -> None:
    arr = monster(flat(80), 29, position)  # candle 29 is observed at minute 30 = pending_at + 20
    sig = long(minute_estimated_time=20) if position == "long" else short(minute_estimated_time=20)
    out = run(arr, {10: sig})
    closed = out.closed()
    assert closed.close_reason == "time_expired"
    assert closed.close_timestamp == ms(30)
    assert closed.pnl.price_close == pytest.approx(vwap_at(arr, ms(30)), rel=1e-12)


@pytest.mark.parametrize("position", ["long", "short"])
def test_stop_loss_is_checked_before_take_profit(position: str, path: str) -> None:
    arr = monster(flat(80), 20, position)  # same candle, lifetime not reached
    sig = long(minute_estimated_time=60) if position == "long" else short(minute_estimated_time=60)
    closed = run(arr, {10: sig}).closed()
    assert (closed.close_reason, closed.close_timestamp) == ("stop_loss", ms(21))
    assert closed.pnl.price_close == (90.0 if position == "long" else 110.0)


@pytest.mark.parametrize("position", ["long", "short"])
def test_take_profit_when_the_stop_is_not_touched(position: str, path: str) -> None:
    arr = monster(flat(80), 20, position)
    if position == "long":
        setc(arr, 20, low=95)
    else:
        setc(arr, 20, high=105)
    sig = long(minute_estimated_time=60) if position == "long" else short(minute_estimated_time=60)
    closed = run(arr, {10: sig}).closed()
    assert (closed.close_reason, closed.close_timestamp) == ("take_profit", ms(21))
    assert closed.pnl.price_close == (110.0 if position == "long" else 90.0)


# ---------------------------------------------------------------- scheduled entries
def test_schedule_timeout_is_checked_before_price_tests(path: str) -> None:
    btkit.set_config(schedule_await_minutes=10)
    arr = setc(flat(60), 19, low=85)  # candle 19 is observed at minute 20 = scheduled_at + 10 …
    out = run(arr, {10: long(price_open=95)})  # … and touches both the entry and the stop-loss
    assert out.actions == ["scheduled", "cancelled"]
    cancelled = out.of(btkit.Cancelled)[0]
    assert (cancelled.reason, cancelled.close_timestamp) == ("timeout", ms(20))


def test_schedule_still_activates_one_candle_before_the_timeout() -> None:
    btkit.set_config(schedule_await_minutes=10)
    arr = setc(flat(60), 18, low=94)
    out = run(arr, {10: long(price_open=95, minute_estimated_time=5)})
    assert out.actions[:2] == ["scheduled", "opened"]
    assert out.of(btkit.Opened)[0].signal.pending_at == ms(19)


@pytest.mark.parametrize(
    ("position", "touch", "expected"),
    [
        ("long", {"low": 85}, "price_reject"),  # through price_open 95 and SL 90 on one candle
        ("long", {"low": 93}, "opened"),
        ("short", {"high": 115}, "price_reject"),  # through price_open 105 and SL 110
        ("short", {"high": 107}, "opened"),
    ],
)
def test_stop_loss_beats_activation_on_one_candle(
    position: str, touch: dict[str, float], expected: str, path: str
) -> None:
    arr = setc(flat(60), 12, **touch)
    sig = long(price_open=95) if position == "long" else short(price_open=105)
    sig["minute_estimated_time"] = 5
    out = run(arr, {10: sig})
    assert out.actions[0] == "scheduled"
    if expected == "price_reject":
        assert out.actions[:2] == ["scheduled", "cancelled"]
        cancelled = out.of(btkit.Cancelled)[0]
        assert (cancelled.reason, cancelled.close_timestamp) == ("price_reject", ms(13))
        assert not out.of(btkit.Opened)
    else:
        opened = out.of(btkit.Opened)[0]
        assert opened.signal.pending_at == ms(13)


@pytest.mark.parametrize("position", ["long", "short"])
def test_scheduled_entry_fills_at_price_open_not_at_the_vwap(position: str, path: str) -> None:
    if position == "long":
        arr = setc(flat(60), 12, low=94)  # a wick through 95; the VWAP stays near 99.6
        sig = long(price_open=95, minute_estimated_time=5)
    else:
        arr = setc(flat(60), 12, high=106)
        sig = short(price_open=105, minute_estimated_time=5)
    out = run(arr, {10: sig})
    opened = out.of(btkit.Opened)[0]
    assert opened.signal.price_open == sig["price_open"]
    assert opened.current_price == pytest.approx(vwap_at(arr, ms(13)))
    assert opened.current_price != sig["price_open"]
    closed = out.closed()
    assert closed.pnl.price_open == sig["price_open"]
    expected = pnl(position, sig["price_open"], closed.pnl.price_close)
    assert closed.pnl.pnl_percentage == pytest.approx(expected)


def test_lifetime_counts_from_activation_not_from_scheduling(path: str) -> None:
    arr = setc(flat(90), 30, low=94)  # activates on candle 30, observed at minute 31
    out = run(arr, {10: long(price_open=95, minute_estimated_time=20)})
    assert out.actions == ["scheduled", "opened", "closed"]
    scheduled, opened, closed = out.results
    assert scheduled.signal.scheduled_at == ms(10)
    assert opened.signal.pending_at == ms(31)
    assert closed.close_reason == "time_expired"
    assert closed.close_timestamp == ms(31 + 20)  # not ms(10 + 20)


# ---------------------------------------------------------------- the opening tick
def test_take_profit_and_stop_loss_are_never_evaluated_on_the_opening_tick(path: str) -> None:
    # candle 9 (the last one closed at the decision, minute 10) wicks through the stop-loss
    arr = setc(flat(60), 9, low=80)
    out = run(arr, {10: long(minute_estimated_time=20)})
    assert out.of(btkit.Opened)[0].current_price == pytest.approx(vwap_at(arr, ms(10)))
    closed = out.closed()
    assert (closed.close_reason, closed.close_timestamp) == ("time_expired", ms(30))


def test_the_first_candle_examined_is_the_one_opening_at_pending_at(path: str) -> None:
    arr = setc(flat(60), 10, low=80)  # the candle that opens at pending_at
    closed = run(arr, {10: long(minute_estimated_time=20)}).closed()
    assert (closed.close_reason, closed.close_timestamp) == ("stop_loss", ms(11))


# ---------------------------------------------------------------- exact fills, VWAP and touch
@pytest.mark.parametrize("position", ["long", "short"])
def test_stop_loss_fills_at_exactly_the_stop_level(position: str, path: str) -> None:
    if position == "long":
        arr = setc(flat(60), 15, low=50)  # far through SL 90
        sig = long(minute_estimated_time=30)
    else:
        arr = setc(flat(60), 15, high=150)
        sig = short(minute_estimated_time=30)
    closed = run(arr, {10: sig}).closed()
    assert closed.close_reason == "stop_loss"
    assert closed.pnl.price_close == sig["price_stop_loss"]
    assert closed.pnl.pnl_percentage == pytest.approx(pnl(position, 100.0, sig["price_stop_loss"]), abs=1e-9)


@pytest.mark.parametrize("position", ["long", "short"])
def test_take_profit_fills_at_exactly_the_take_profit_level(position: str, path: str) -> None:
    target = 150.0 if position == "long" else 50.0  # the VWAP overshoots TP before it is observed
    arr = walk_to(flat(60), 15, [target] * 5)
    sig = long(minute_estimated_time=30) if position == "long" else short(minute_estimated_time=30)
    closed = run(arr, {10: sig}).closed()
    assert closed.close_reason == "take_profit"
    vwap = vwap_at(arr, closed.close_timestamp)
    assert (vwap > 110.0) if position == "long" else (vwap < 90.0)
    assert closed.pnl.price_close == sig["price_take_profit"]


@pytest.mark.parametrize("position", ["long", "short"])
def test_a_thin_wick_through_take_profit_does_not_close(position: str, path: str) -> None:
    # volume 1: the VWAP only moves to ≈ 103 (≈ 97 for the short)
    arr = setc(flat(60), 15, high=150) if position == "long" else setc(flat(60), 15, low=50)
    sig = long(minute_estimated_time=20) if position == "long" else short(minute_estimated_time=20)
    closed = run(arr, {10: sig}).closed()
    assert closed.close_reason == "time_expired"


def test_a_heavy_candle_through_take_profit_closes() -> None:
    arr = setc(flat(60), 15, high=150, volume=1000)  # the same wick with the volume behind it
    closed = run(arr, {10: long(minute_estimated_time=20)}).closed()
    assert (closed.close_reason, closed.close_timestamp) == ("take_profit", ms(16))


@pytest.mark.parametrize("position", ["long", "short"])
def test_stop_loss_fires_on_a_touch_while_the_vwap_stays_far_away(position: str) -> None:
    arr = setc(flat(60), 15, low=89.9) if position == "long" else setc(flat(60), 15, high=110.1)
    sig = long(minute_estimated_time=20) if position == "long" else short(minute_estimated_time=20)
    closed = run(arr, {10: sig}).closed()
    assert (closed.close_reason, closed.close_timestamp) == ("stop_loss", ms(16))
    assert 99.0 < vwap_at(arr, ms(16)) < 101.0


# ---------------------------------------------------------------- interval throttle
@pytest.mark.parametrize("per_tick", [False, True], ids=["driver-skips", "every-tick"])
@pytest.mark.parametrize(("interval", "start"), [("5m", 10), ("5m", 12), ("15m", 7 + 5)])
def test_get_signal_is_called_once_per_interval_bucket(interval: str, start: int, per_tick: bool) -> None:
    if per_tick:  # an idle-ping listener makes the driver tick every frame timestamp
        btkit.listen_idle_ping(lambda ping: None)
    step = {"5m": 5, "15m": 15}[interval]
    out = run(flat(120), lambda minute, price: None, start=start, end=100, interval=interval)
    minutes = [m for m, _ in out.calls]
    expected = [start, *range((start // step + 1) * step, 101, step)]
    assert minutes == expected  # a None answer consumed each bucket


@pytest.mark.parametrize("per_tick", [False, True], ids=["driver-skips", "every-tick"])
def test_a_risk_rejected_signal_releases_the_bucket_so_the_next_tick_retries(per_tick: bool) -> None:
    if per_tick:
        btkit.listen_idle_ping(lambda ping: None)
    verdicts = ["not yet"]

    def validation(payload: object) -> str | None:
        return verdicts.pop(0) if verdicts else None

    btkit.add_risk("once", validation)
    rejected: list[object] = []
    btkit.listen_risk(rejected.append)
    out = run(flat(60), lambda minute, price: long(minute_estimated_time=5), interval="5m", risk="once")
    assert len(rejected) == 1
    assert [m for m, _ in out.calls][:2] == [10, 11]  # same 5m bucket: retried on the next tick
    assert out.of(btkit.Opened)[0].signal.pending_at == ms(11)


def test_an_invalid_signal_consumes_the_bucket() -> None:
    out = run(flat(60), lambda minute, price: long(tp=90.0), interval="5m", end=30)  # TP on the wrong side
    assert [m for m, _ in out.calls] == [10, 15, 20, 25, 30]
    assert not out.results
    assert len(out.errors) == 5


# ---------------------------------------------------------------- whipsaw guard
def test_a_signal_with_the_id_of_the_last_opened_one_is_ignored() -> None:
    ids = iter(["a", "a", "a", "b", "a"])

    def answer(minute: float, price: float) -> object:
        name = next(ids, None)
        return None if name is None else long(minute_estimated_time=3, id=name)

    out = run(flat(60), answer)
    assert [r.signal.id for r in out.of(btkit.Opened)] == ["a", "b", "a"]
    assert len(out.calls) >= 5


# ---------------------------------------------------------------- frame end
def test_frame_end_forces_an_open_position_to_time_expired(path: str) -> None:
    out = run(flat(80), {10: long(minute_estimated_time=1000)}, end=40)
    closed = out.closed()
    assert closed.close_reason == "time_expired"
    # forced by the first candle opening after frame_end (candle 41, observed at minute 42)
    assert closed.close_timestamp == ms(42)
    assert closed.pnl.price_close == pytest.approx(vwap_at(flat(80), ms(42)))


def test_frame_end_forces_a_scheduled_signal_to_timeout(path: str) -> None:
    out = run(flat(80), {10: long(price_open=95)}, end=40)
    assert out.actions == ["scheduled", "cancelled"]
    cancelled = out.of(btkit.Cancelled)[0]
    assert (cancelled.reason, cancelled.close_timestamp) == ("timeout", ms(42))


def test_no_signal_is_asked_for_after_the_frame_end() -> None:
    out = run(flat(80), lambda minute, price: None, end=40)
    assert max(m for m, _ in out.calls) == 40
    assert out.done and out.done[0].error is None


# ---------------------------------------------------------------- insufficient data
def test_data_ending_before_the_signal_resolves_is_an_insufficient_data_error() -> None:
    sig = long(minute_estimated_time=1000)
    out = run(flat(60), {10: sig}, end=200, expect_error=btkit.InsufficientDataError)
    assert "insufficient candle data" in str(out.raised)
    assert "X" in str(out.raised)
    assert out.of(btkit.Opened) and not out.of(btkit.Closed)  # never a silent close
    assert len(out.done) == 1 and out.done[0].error is out.raised
    assert any(e.error is out.raised for e in out.errors)


def test_no_vwap_window_before_the_first_tick_is_an_insufficient_data_error() -> None:
    out = run(flat(60), {2: long()}, start=2, expect_error=btkit.InsufficientDataError)
    assert "insufficient candle data" in str(out.raised)
    assert "\n" not in str(out.raised)
    assert not out.results


def test_a_scheduled_signal_without_data_to_decide_is_an_insufficient_data_error() -> None:
    out = run(flat(60), {10: long(price_open=95)}, end=300, expect_error=btkit.InsufficientDataError)
    assert out.actions == ["scheduled"]
    assert "insufficient candle data" in str(out.raised)


# ---------------------------------------------------------------- entry price when already reached
@pytest.mark.parametrize(("position", "price_open"), [("long", 101.0), ("short", 99.0)])
def test_price_open_already_reached_opens_now_at_price_open(position: str, price_open: float) -> None:
    sig = (
        long(price_open=price_open, minute_estimated_time=5)
        if position == "long"
        else short(price_open=price_open, minute_estimated_time=5)
    )
    out = run(flat(60), {10: sig})
    assert out.actions[0] == "opened"
    opened = out.of(btkit.Opened)[0]
    assert opened.signal.price_open == price_open  # not the VWAP (100)
    assert opened.signal.pending_at == opened.signal.scheduled_at == ms(10)
    closed = out.closed()
    assert closed.pnl.price_open == price_open
    assert closed.pnl.pnl_percentage == pytest.approx(pnl(position, price_open, closed.pnl.price_close))


def test_results_carry_the_run_identity() -> None:
    out = run(flat(60), {10: long(minute_estimated_time=5)})
    for r in out.results:
        identity = (r.symbol, r.strategy_name, r.exchange_name, r.frame_name, r.backtest)
        assert identity == ("X", "s", "mem", "f", True)
    assert minute_of(out.closed().close_timestamp) == 15


def test_a_single_entry_keeps_its_fill_price_bit_for_bit() -> None:
    # the effective entry of one entry is that entry's price; a harmonic mean cost/(cost/price) is not
    # always bit-identical to it (here it is one ulp off), so results must not compute it that way
    price_open = 98.63330694699061
    assert 100.0 / (100.0 / price_open) != price_open
    out = run(flat(60), {10: short(price_open=price_open, minute_estimated_time=5)})
    opened, closed = out.of(btkit.Opened)[0], out.closed()
    assert opened.signal.price_open == price_open
    assert closed.signal.price_open == price_open
    assert closed.pnl.price_open == price_open
    assert closed.pnl.pnl_percentage == pytest.approx(
        pnl("short", price_open, closed.pnl.price_close), abs=1e-12
    )


# opened at 15 with a 5-minute lifetime → closed at 20. Close, then decide, within one instant: 20 opens a
# bucket of a 1m or 5m strategy, so it is asked at 20 itself, after the close; a 15m strategy used its
# bucket [15, 30) for the open and is asked at 30, the next bucket's first instant
@pytest.mark.parametrize(("interval", "next_call"), [("1m", 20), ("5m", 20), ("15m", 30)])
def test_after_a_close_the_strategy_is_asked_at_the_close_instant_when_it_opens_a_fresh_bucket(
    interval: str, next_call: int
) -> None:
    out = run(
        flat(60), lambda minute, price: long(minute_estimated_time=5), start=15, end=45, interval=interval
    )
    assert out.of(btkit.Closed)[0].close_timestamp == ms(20)
    assert [m for m, _ in out.calls][:2] == [15, next_call]


# A 15m strategy opens at 15 (its bucket [15, 30) is used). The signal ends at minute `end` by expiry, a user
# close, a timeout of the resting entry or a user cancel. Close, then decide, within one instant, wherever
# the instant falls in its bucket (backtest-kit's throttle): when the bucket of `end` was not asked yet —
# every minute of [30, 45) and 45 itself — the strategy is asked at `end`; inside [15, 30) at 30.
@pytest.mark.parametrize("how", ["expiry", "user close", "timeout", "user cancel"])
@pytest.mark.parametrize("end", [17, 29, 30, 31, 37, 44, 45])
def test_a_signal_ending_anywhere_in_an_unasked_bucket_is_followed_by_that_bucket_decision(
    how: str, end: int
) -> None:
    if how == "expiry":
        signal = long(minute_estimated_time=end - 15)
    elif how == "user close":
        signal = long(minute_estimated_time=100)
        btkit.listen_active_ping(
            lambda p: btkit.commit_close_pending(p.symbol) if p.timestamp == ms(end - 1) else None
        )
    else:  # a resting entry that never fills on the flat candles
        signal = long(price_open=99.5, minute_estimated_time=100)
        if how == "timeout":
            btkit.set_config(schedule_await_minutes=end - 15)
        else:
            btkit.listen_schedule_ping(
                lambda p: btkit.commit_cancel_scheduled(p.symbol) if p.timestamp == ms(end - 1) else None
            )
    out = run(flat(90), {15: signal}, start=15, end=80, interval="15m")
    ended = out.results[1]
    reason = {"expiry": "time_expired", "user close": "closed", "timeout": "timeout", "user cancel": "user"}
    got = getattr(ended, "close_reason", None) or ended.reason
    assert (got, ended.close_timestamp) == (reason[how], ms(end))
    assert [m for m, _ in out.calls][:2] == [15, end if end >= 30 else 30]


# ---------------------------------------------------------------- user requests from result listeners
def test_a_close_requested_by_the_opened_listener_closes_on_the_next_tick(path: str) -> None:
    """As live: ``commit_close_pending`` from a listener of the "opened" result closes the position at the
    next minute with reason ``closed`` — the fast path must not resolve it by TP/SL/expiry instead."""
    asked: list[bool] = []
    btkit.listen_signal_backtest(
        lambda r: asked.append(btkit.commit_close_pending(r.symbol)) if r.action == "opened" else None
    )
    closed = run(flat(60), {10: long(minute_estimated_time=20)}).closed()
    assert asked == [True]
    assert (closed.close_reason, closed.close_timestamp) == ("closed", ms(11))


def test_a_cancel_requested_by_the_scheduled_listener_cancels_on_the_next_tick(path: str) -> None:
    asked: list[bool] = []
    btkit.listen_signal_backtest(
        lambda r: asked.append(btkit.commit_cancel_scheduled(r.symbol)) if r.action == "scheduled" else None
    )
    out = run(flat(60), {10: long(price_open=99.5, minute_estimated_time=20)})
    assert asked == [True] and out.actions == ["scheduled", "cancelled"]
    cancelled = out.of(btkit.Cancelled)[0]
    assert (cancelled.reason, cancelled.close_timestamp) == ("user", ms(11))
