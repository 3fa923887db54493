"""Position commands through ``Backtest.run``: partial closes, trailing, breakeven, DCA and leverage.

Candles are hand-built 1-minute candles from T0 (2024-01-01 00:00 UTC) with closes on straight lines
between way-points; candle ``i`` is observed at minute ``i+1`` with the VWAP of candles ``i−4 … i``. The
frame starts at minute 10, where the strategy opens (the VWAP of the flat candles 5–9 is exactly 100).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import numpy as np
import pytest

import btkit
from btkit import commands
from btkit.errors import BtkitError
from btkit.lifecycle import pnl as pnl_math
from btkit.model import Entry, SignalRow, view_of
from btkit.testing import btkit_clean, candle_exchange  # noqa: F401  (fixtures)
from btkit.testing.exchange import candles_from_prices, memory_exchange

M = 60_000
T0_DT = datetime(2024, 1, 1, tzinfo=UTC)
T0 = int(T0_DT.timestamp() * 1000)


def ms(minute: float) -> int:
    return T0 + round(minute * M)


def path(points: Sequence[tuple[int, float]], n: int) -> list[float]:
    """``n`` closes along straight lines through ``(minute, price)`` way-points, flat after the last."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return [float(v) for v in np.interp(np.arange(n), xs, ys)]


def run_backtest(
    prices: Sequence[float],
    signals: dict[int, dict[str, Any]],
    *,
    start: int = 10,
    end: int | None = None,
    spread: float = 0.0,
    callbacks: Any = None,
) -> tuple[list[Any], list[Any]]:
    """Register exchange ``mem`` (symbol ``TST``), strategy ``pm`` and frame ``f``; run; (results, errors)."""
    arr = candles_from_prices(T0, list(prices), spread=spread)
    btkit.add_exchange("mem", memory_exchange("mem", {"TST": arr}).get_candles)

    def get_signal(symbol: str, when: datetime, current_price: float) -> Any:
        minute = (int(when.timestamp() * 1000) - T0) // M
        return signals.get(minute)

    btkit.add_strategy("pm", get_signal, callbacks=callbacks)
    last = len(prices) - 2 if end is None else end
    btkit.add_frame("f", T0_DT + timedelta(minutes=start), T0_DT + timedelta(minutes=last))
    errors: list[Any] = []
    unsubscribe = btkit.listen_error(errors.append)
    try:
        results = list(btkit.Backtest.run("TST", strategy="pm", exchange="mem", frame="f"))
    finally:
        unsubscribe()
    return results, errors


def long(tp: float = 110.0, sl: float = 90.0, **kw: Any) -> dict[str, Any]:
    return {
        "position": "long",
        "price_take_profit": tp,
        "price_stop_loss": sl,
        "minute_estimated_time": 600,
        **kw,
    }


def short(tp: float = 90.0, sl: float = 110.0, **kw: Any) -> dict[str, Any]:
    return {
        "position": "short",
        "price_take_profit": tp,
        "price_stop_loss": sl,
        "minute_estimated_time": 600,
        **kw,
    }


def closes(results: list[Any]) -> list[Any]:
    return [r for r in results if isinstance(r, btkit.Closed)]


def only_close(results: list[Any], errors: list[Any]) -> Any:
    found = closes(results)
    assert len(found) == 1, f"expected one close, got {[r.action for r in results]}; errors: {errors}"
    return found[0]


def row_of(closed: Any) -> SignalRow:
    """The position as the pnl math sees it, rebuilt from the closed result's view."""
    v = closed.signal
    return SignalRow(
        id=v.id,
        symbol=closed.symbol,
        strategy_name=closed.strategy_name,
        exchange_name=closed.exchange_name,
        frame_name=closed.frame_name,
        position=v.position,
        price_open=v.original_price_open,
        price_take_profit=v.original_price_take_profit,
        price_stop_loss=v.original_price_stop_loss,
        minute_estimated_time=v.minute_estimated_time,
        cost=v.entries[0].cost,
        note=v.note,
        scheduled_at=v.scheduled_at,
        pending_at=v.pending_at,
        multiplier=v.multiplier,
        isolated=v.isolated,
        entries=v.entries,
        partials=v.partials,
    )


@pytest.fixture(autouse=True)
def _clean(btkit_clean: None) -> Iterator[None]:  # noqa: F811
    yield


def on_ping(fn: Callable[[Any], None]) -> None:
    btkit.listen_active_ping(fn)


# ---------------------------------------------------------------- DCA + partial + trailing in one trade
def test_dca_partial_and_trailing_stop_in_one_backtest() -> None:
    # 100 flat, down to 94 at minute 30, up to 106 at minute 70, down to 95 at minute 100
    prices = path([(0, 100), (10, 100), (30, 94), (70, 106), (100, 95)], 160)
    log: list[tuple[str, int, bool]] = []

    def manage(p: Any) -> None:
        s = p.signal
        if p.current_price <= min(e.price for e in s.entries) * 0.97 and len(s.entries) < 3:
            log.append(("dca", p.timestamp, commands.commit_average_buy(p.symbol)))
        pct = commands.get_position_pnl_percent(p.symbol)
        assert pct is not None
        if pct >= 2 and not s.partials:
            log.append(("partial", p.timestamp, commands.commit_partial_profit(p.symbol, 30)))
        if pct >= 3:
            # keep the stop 1.5 % under the price: shift = wanted distance − original distance
            entry, sl0 = s.price_open, s.original_price_stop_loss
            wanted = (entry - p.current_price * 0.985) / entry * 100
            if commands.commit_trailing_stop(p.symbol, wanted - (entry - sl0) / entry * 100):
                log.append(("trail", p.timestamp, True))

    on_ping(manage)
    results, errors = run_backtest(prices, {10: long(tp=120.0, sl=85.0)})
    closed = only_close(results, errors)
    assert errors == []
    v = closed.signal
    # one DCA at the first VWAP ≤ 97 (entries 100 and ~97), the second never reaches 0.97·97 = 94.09
    assert [kind for kind, _, ok in log if kind == "dca"] == ["dca"]
    assert len(v.entries) == 2 and v.entries[0].price == 100.0
    assert v.entries[1].price <= 97.0 and v.entries[1].price > 96.0
    dca_ts = next(t for kind, t, _ in log if kind == "dca")
    assert v.entries[1].timestamp == dca_ts  # applied on the tick that asked for it
    # one partial of 30 % at +2 %, with the cost basis of both entries (200 $)
    assert len(v.partials) == 1
    part = v.partials[0]
    assert (part.kind, part.percent, part.entry_count_at_close) == ("profit", 30.0, 2)
    assert part.cost_basis_at_close == pytest.approx(200.0)
    assert part.timestamp == next(t for kind, t, _ in log if kind == "partial")
    # the trailing stop closed it: stop_loss at exactly the last accepted trailing level, above the entry
    trails = [t for kind, t, _ in log if kind == "trail"]
    assert len(trails) > 3
    assert closed.close_reason == "stop_loss"
    assert v.price_stop_loss == closed.pnl.price_close
    assert v.price_stop_loss > v.price_open
    assert v.original_price_stop_loss == 85.0
    # pnl: the pnl module over the same entries and partials (weights 0.3 at the partial price, 0.7 at SL)
    cfg = btkit.get_config()
    expected = pnl_math.position_pnl(
        row_of(closed), closed.pnl.price_close, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee
    )
    assert closed.pnl == expected
    assert closed.pnl.pnl_entries == 200.0
    assert closed.pnl.pnl_percentage > 0


# ---------------------------------------------------------------- 100 % partial
def test_full_partial_closes_on_the_next_tick_with_reason_closed() -> None:
    prices = path([(0, 100), (10, 100), (40, 104)], 80)
    asked: list[int] = []

    def manage(p: Any) -> None:
        if not p.signal.partials and p.current_price > 102:
            assert commands.commit_partial_profit(p.symbol, 100)
            asked.append(p.timestamp)

    on_ping(manage)
    results, errors = run_backtest(prices, {10: long()})
    closed = only_close(results, errors)
    assert closed.close_reason == "closed"
    assert closed.close_timestamp == asked[0] + M  # the next tick
    assert len(asked) == 1
    v = closed.signal
    assert [p.percent for p in v.partials] == [100.0]
    # all of it went out at the partial's price: the §1 formula at that price
    cfg = btkit.get_config()
    expected = pnl_math.simple_pnl_percent(
        "long", 100.0, v.partials[0].current_price, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee
    )
    assert closed.pnl.pnl_percentage == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- rejections change nothing
def test_rejected_commands_return_false_and_change_nothing() -> None:
    prices = path([(0, 100), (10, 100), (20, 98), (40, 103), (60, 80)], 100)
    answers: dict[str, list[bool]] = {}

    def note(name: str, ok: bool) -> None:
        answers.setdefault(name, []).append(ok)

    def manage(p: Any) -> None:
        price = p.current_price
        if price < 99.5:
            note("partial profit in loss", commands.commit_partial_profit(p.symbol, 10))
            note("average up", commands.commit_average_buy(p.symbol) if price > 100 else False)
            note("breakeven in loss", commands.commit_breakeven(p.symbol))
        if price > 100.5:
            note("average up", commands.commit_average_buy(p.symbol))
            note("partial loss in profit", commands.commit_partial_loss(p.symbol, 10))
            note("partial over 100", commands.commit_partial_profit(p.symbol, 150))
            note("partial zero", commands.commit_partial_profit(p.symbol, 0))
            note("trailing through price", commands.commit_trailing_stop(p.symbol, -20))

    on_ping(manage)
    results, errors = run_backtest(prices, {10: long(tp=110.0, sl=90.0)})
    closed = only_close(results, errors)
    assert set(answers) == {
        "partial profit in loss",
        "average up",
        "breakeven in loss",
        "partial loss in profit",
        "partial over 100",
        "partial zero",
        "trailing through price",
    }
    assert all(ok is False for oks in answers.values() for ok in oks), answers
    v = closed.signal
    assert len(v.entries) == 1 and v.partials == ()
    assert (v.price_stop_loss, v.price_take_profit) == (90.0, 110.0)
    assert closed.close_reason == "stop_loss" and closed.pnl.price_close == 90.0


def test_non_improving_trailing_is_rejected() -> None:
    prices = path([(0, 100), (10, 100), (30, 104), (60, 90)], 90)
    answers: list[tuple[float, bool]] = []

    def manage(p: Any) -> None:
        if p.current_price > 102 and len(answers) < 3:
            for shift in (-5, -3, -7):  # SL 95 (accepted), 97 vs 95 … see below
                answers.append((shift, commands.commit_trailing_stop(p.symbol, shift)))

    on_ping(manage)
    results, errors = run_backtest(prices, {10: long(tp=110.0, sl=90.0)})
    # distance 10 % + shift: −5 → SL 95 accepted; −3 → 93 is lower than 95: rejected; −7 → 97: accepted
    assert answers == [(-5, True), (-3, False), (-7, True)]
    closed = only_close(results, errors)
    assert closed.close_reason == "stop_loss"
    assert closed.pnl.price_close == pytest.approx(97.0, rel=1e-15)
    assert closed.signal.price_stop_loss == pytest.approx(97.0, rel=1e-15)


def test_commands_queued_in_one_tick_see_each_other() -> None:
    prices = path([(0, 100), (10, 100), (20, 96), (40, 104)], 80)
    answers: dict[str, list[bool]] = {"dca": [], "partial": []}

    def manage(p: Any) -> None:
        if p.current_price < 97 and len(p.signal.entries) == 1 and not answers["dca"]:
            # the second buy at the same price is not below the (queued) lowest entry any more
            answers["dca"] = [commands.commit_average_buy(p.symbol), commands.commit_average_buy(p.symbol)]
        if p.current_price > 101 and not p.signal.partials and not answers["partial"]:
            answers["partial"] = [
                commands.commit_partial_profit(p.symbol, 50),
                commands.commit_partial_profit(p.symbol, 50),
            ]
            # queries show the position as it is now: the partials apply when the listener returns
            assert commands.get_total_percent_closed(p.symbol) == 0.0

    on_ping(manage)
    results, errors = run_backtest(prices, {10: long(tp=110.0, sl=90.0)})
    closed = only_close(results, errors)
    assert answers == {"dca": [True, False], "partial": [True, True]}
    v = closed.signal
    assert len(v.entries) == 2
    # 50 % then 50 % of the rest: 75 % closed, 25 % left
    assert [p.percent for p in v.partials] == [50.0, 50.0]
    assert v.partials[1].cost_basis_at_close == pytest.approx(100.0)
    assert pnl_math.percent_closed(row_of(closed)) == pytest.approx(75.0)


# ---------------------------------------------------------------- where commands may be called
def test_commands_need_an_execution_context() -> None:
    with pytest.raises(BtkitError, match="no execution context"):
        commands.commit_partial_profit("TST", 10)


def test_commands_without_an_open_position_return_false() -> None:
    seen: list[bool] = []
    prices = [100.0] * 40

    def idle(p: Any) -> None:
        if not seen:
            seen.extend(
                [
                    commands.commit_partial_profit(p.symbol, 10),
                    commands.commit_average_buy(p.symbol),
                    commands.commit_trailing_stop(p.symbol, -1),
                    commands.commit_trailing_take(p.symbol, -1),
                    commands.commit_breakeven(p.symbol),
                ]
            )

    with_context: list[Any] = []
    btkit.listen_idle_ping(idle)
    btkit.listen_idle_ping(lambda p: with_context.append(commands.get_pending_signal(p.symbol)))
    _, errors = run_backtest(prices, {}, end=20)
    assert seen == [False] * 5
    assert with_context and all(x is None for x in with_context)
    assert errors == []


def test_on_active_callback_commands_apply_in_the_same_tick() -> None:
    prices = path([(0, 100), (10, 100), (30, 104), (60, 90)], 90)
    asked: list[int] = []

    def on_active(result: Any) -> None:
        if result.current_price > 102 and not asked:
            assert commands.commit_breakeven(result.symbol)
            asked.append(result.timestamp)

    results, errors = run_backtest(prices, {10: long(tp=110.0, sl=90.0)}, callbacks={"on_active": on_active})
    closed = only_close(results, errors)
    assert closed.close_reason == "stop_loss"
    assert closed.pnl.price_close == 100.0  # breakeven: the stop at the entry
    # the first candle whose low reaches 100 after the breakeven tick closes it
    assert closed.close_timestamp > asked[0]


def test_command_from_the_opened_callback_applies_on_the_next_candle() -> None:
    # price only rises a little, then falls to 92: the stop that closes it is the trailed 95, not 90.
    # No per-candle listener exists: the queued command alone switches the backtest to the per-candle path.
    prices = path([(0, 100), (10, 100), (20, 101), (50, 92)], 80)
    answers: list[bool] = []

    def on_opened(result: Any) -> None:
        answers.append(commands.commit_trailing_stop(result.symbol, -5))

    results, errors = run_backtest(prices, {10: long(tp=110.0, sl=90.0)}, callbacks={"on_opened": on_opened})
    assert answers == [True]
    closed = only_close(results, errors)
    assert (closed.close_reason, closed.pnl.price_close) == ("stop_loss", pytest.approx(95.0))


def test_partial_loss_and_trailing_take_on_a_short() -> None:
    # short at 100 (TP 90, SL 110): up to 103 (partial loss 50 %), down to 95 (trailing take −3 → TP 93)
    prices = path([(0, 100), (10, 100), (20, 103), (40, 95), (70, 92)], 100)
    log: list[tuple[str, bool]] = []

    def manage(p: Any) -> None:
        s = p.signal
        if p.current_price > 102 and not s.partials:
            log.append(("loss", commands.commit_partial_loss(p.symbol, 50)))
        if p.current_price < 96 and s.price_take_profit == 90.0:
            log.append(("take", commands.commit_trailing_take(p.symbol, -3)))

    on_ping(manage)
    results, errors = run_backtest(prices, {10: short(tp=90.0, sl=110.0)})
    closed = only_close(results, errors)
    assert log == [("loss", True), ("take", True)]
    v = closed.signal
    assert v.partials[0].kind == "loss" and v.partials[0].current_price > 102
    assert closed.close_reason == "take_profit"
    assert closed.pnl.price_close == pytest.approx(93.0)
    assert v.original_price_take_profit == 90.0


# ---------------------------------------------------------------- leverage / isolated margin
@pytest.mark.parametrize(("side", "liq"), [("long", 90.37075113), ("short", 109.57084873)])
def test_liquidation_closes_at_exactly_the_liquidation_price(side: str, liq: float) -> None:
    # 10× from 100: the price walks 3 % against the position (SL 15 % away never matters)
    far = 85.0 if side == "long" else 115.0
    prices = path([(0, 100), (10, 100), (40, far)], 80)
    sig = (
        long(tp=120.0, sl=85.0, multiplier=10) if side == "long" else short(tp=80.0, sl=115.0, multiplier=10)
    )
    results, errors = run_backtest(prices, {10: sig})
    closed = only_close(results, errors)
    assert closed.close_reason == "liquidation"
    cfg = btkit.get_config()
    exact = pnl_math.liquidation_price(
        row_of(closed), slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee
    )
    assert closed.pnl.price_close == exact
    assert exact == pytest.approx(liq, abs=5e-9)
    assert closed.pnl.pnl_percentage == pytest.approx(-100.0, abs=1e-9)
    assert closed.signal.multiplier == 10.0 and closed.signal.isolated is True


def test_cross_margin_has_no_liquidation_and_stops_at_the_stop() -> None:
    prices = path([(0, 100), (10, 100), (40, 80)], 80)
    results, errors = run_backtest(prices, {10: long(tp=120.0, sl=85.0, multiplier=10, isolated=False)})
    closed = only_close(results, errors)
    assert (closed.close_reason, closed.pnl.price_close) == ("stop_loss", 85.0)
    # (raw − fees)·10 at 85: below −100 % on cross margin
    assert closed.pnl.pnl_percentage < -100


def test_dca_moves_the_liquidation_price() -> None:
    # 6× from 100: alone, liquidation near 83.6; a DCA of 100 $ at ~96.4 lowers the effective entry to
    # ~98.2 and the liquidation price to ~82.0; the walk to 79 liquidates at the new level (SL 81 is further)
    prices = path([(0, 100), (10, 100), (20, 96), (60, 79)], 100)

    def manage(p: Any) -> None:
        if p.current_price < 96.5 and len(p.signal.entries) == 1:
            commands.commit_average_buy(p.symbol, 100.0)

    on_ping(manage)
    results, errors = run_backtest(prices, {10: long(tp=120.0, sl=81.0, multiplier=6)})
    closed = only_close(results, errors)
    cfg = btkit.get_config()
    costs = {"slippage_pct": cfg.percent_slippage, "fee_pct": cfg.percent_fee}
    row = row_of(closed)
    assert len(row.entries) == 2
    before = pnl_math.liquidation_price(attrs.evolve(row, entries=row.entries[:1]), **costs)
    after = pnl_math.liquidation_price(row, **costs)
    assert before is not None and after is not None
    assert 83 < before < 84 and 81 < after < 83
    assert (closed.close_reason, closed.pnl.price_close) == ("liquidation", after)
    assert closed.pnl.pnl_percentage == pytest.approx(-100.0, abs=1e-9)


def test_view_of_a_managed_row_shows_effective_and_original_prices() -> None:
    row = SignalRow(
        id="a",
        symbol="TST",
        strategy_name="s",
        exchange_name="x",
        frame_name="",
        position="long",
        price_open=100.0,
        price_take_profit=110.0,
        price_stop_loss=90.0,
        minute_estimated_time=60,
        cost=100.0,
        note="",
        scheduled_at=T0,
        pending_at=T0,
        trailing_stop_loss=95.0,
        trailing_take_profit=107.0,
    )
    row = attrs.evolve(row, entries=(Entry(100.0, 100.0, T0), Entry(80.0, 100.0, T0 + M)))
    v = view_of(row)
    assert v.price_open == pytest.approx(88.88888888888889)
    assert (v.original_price_open, v.price_stop_loss, v.original_price_stop_loss) == (100.0, 95.0, 90.0)
    assert (v.price_take_profit, v.original_price_take_profit) == (107.0, 110.0)
    assert v.cost == 200.0


def test_report_of_a_managed_backtest_shows_entries_partials_and_leverage(tmp_path: Any) -> None:
    prices = path([(0, 100), (10, 100), (30, 94), (70, 106), (100, 95)], 160)

    def manage(p: Any) -> None:
        s = p.signal
        if p.current_price <= min(e.price for e in s.entries) * 0.97 and len(s.entries) < 3:
            commands.commit_average_buy(p.symbol)
        if p.current_price > 101 and not s.partials:
            commands.commit_partial_profit(p.symbol, 30)
        if p.current_price > 103:
            commands.commit_breakeven(p.symbol)

    on_ping(manage)
    results, errors = run_backtest(prices, {10: long(tp=120.0, sl=85.0, multiplier=3)})
    closed = only_close(results, errors)
    report = btkit.Backtest.dump("TST", strategy="pm", exchange="mem", frame="f", path=tmp_path).read_text()
    v = closed.signal
    assert "## DCA entries" in report and "## Partial closes" in report
    assert "Adjusted prices (original vs effective)" in report
    signal_row = next(line for line in report.splitlines() if line.startswith(f"| {v.id} |"))
    cells = [c.strip() for c in signal_row.strip("|").split("|")]
    # … | Multiplier | Margin | Entries | Partials |
    assert cells[-4:] == ["3x", "isolated", "2", "1"]
