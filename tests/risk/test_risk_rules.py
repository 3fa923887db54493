"""Risk rules and the risk hooks, shown through backtests (risk applies there exactly as live):
``add_risk`` validations in order, a raising validation, the ``btkit_risk_check`` hook (every
plugin must allow), the ``btkit_risks`` registry, the ``btkit_risk_rejected`` observer, the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from btkit import Backtest, Closed, Opened, Signal, add_frame, add_risk, add_strategy, hookimpl, listen_risk
from btkit.components import RiskSpec
from btkit.errors import UnknownComponentError
from btkit.risk import RiskPayload, RiskRejection
from btkit.testing.exchange import candles_from_prices

T0 = 1_704_067_200_000
EX, SYM = "prices", "BTCUSDT"


@pytest.fixture(autouse=True)
def market(candle_exchange: Any) -> None:
    """100 for 30 minutes then 104: every long with TP +2 % opened in the first half closes at TP."""
    candle_exchange(EX, {SYM: candles_from_prices(T0, [100.0] * 30 + [104.0] * 60)})
    add_frame("f", "2024-01-01 00:05", "2024-01-01 00:20")


def offers(*signals: Signal | None) -> Any:
    """get_signal returning ``signals`` one per call (then nothing)."""
    queue = list(signals)
    return lambda symbol, when, price: queue.pop(0) if queue else None


def long(rr: float, id: str) -> Signal:
    """A long at the current price (100) with reward/risk ``rr`` (stop 2 % below)."""
    return Signal(position="long", price_take_profit=100 + 2 * rr, price_stop_loss=98.0, id=id)


def backtest(strategy: str = "s") -> list[Any]:
    return list(Backtest.run(SYM, strategy=strategy, exchange=EX, frame="f"))


def reward_risk_at_least(ratio: float) -> Any:
    def rule(p: RiskPayload) -> str | None:
        s = p.current_signal
        assert s.price_open is not None  # the candidate's entry defaults to the current price
        rr = (s.price_take_profit - s.price_open) / (s.price_open - s.price_stop_loss)
        return None if rr >= ratio else f"R/R {rr:.2f} below {ratio:g}"

    return rule


def test_risk_applies_in_backtests(tmp_path: Path) -> None:
    add_risk("rr2", [reward_risk_at_least(2)])
    add_strategy("s", offers(long(1, "weak"), long(2, "good")), risk="rr2")
    rejected: list[RiskRejection] = []
    listen_risk(rejected.append)

    results = backtest()

    assert [(type(r), r.signal.id) for r in results] == [(Opened, "good"), (Closed, "good")]
    assert [(r.risk_name, r.note, r.signal.id) for r in rejected] == [("rr2", "R/R 1.00 below 2", "weak")]
    assert rejected[0].timestamp == T0 + 5 * 60_000
    report = Backtest.dump(SYM, strategy="s", exchange=EX, frame="f", path=tmp_path)
    text = report.read_text(encoding="utf-8")
    assert "Risk rejections" in text and "R/R 1.00 below 2" in text


def test_a_raising_validation_rejects_with_its_message_as_the_note() -> None:
    def margin_check(p: RiskPayload) -> None:
        raise RuntimeError("margin endpoint unavailable")

    add_risk("margin", margin_check)
    add_strategy("s", offers(long(2, "x")), risk="margin")
    rejected: list[RiskRejection] = []
    listen_risk(rejected.append)
    assert backtest() == []
    assert [r.note for r in rejected] == ["margin endpoint unavailable"]


def test_validations_run_in_order_and_the_first_rejection_wins() -> None:
    called: list[str] = []

    def first(p: RiskPayload) -> str | None:
        called.append("first")
        return None

    def second(p: RiskPayload) -> str:
        called.append("second")
        return "second says no"

    def third(p: RiskPayload) -> str:
        called.append("third")
        return "third says no"

    add_risk("chain", [first, second, third])
    add_strategy("s", offers(long(2, "x")), risk="chain")
    rejected: list[RiskRejection] = []
    listen_risk(rejected.append)
    assert backtest() == []
    assert called == ["first", "second"]
    assert [r.note for r in rejected] == ["second says no"]


def test_every_risk_check_plugin_must_allow(btkit_plugin: Any) -> None:
    """An early "ok" never hides a later "no": all btkit_risk_check results are collected."""

    class Allows:
        @hookimpl(tryfirst=True)
        def btkit_risk_check(self, payload: RiskPayload) -> str | None:
            return None

    class Vetoes:
        @hookimpl
        def btkit_risk_check(self, payload: RiskPayload) -> str | None:
            return "symbol on the operator's block list" if payload.symbol == SYM else None

    btkit_plugin(Allows())
    btkit_plugin(Vetoes())
    add_strategy("s", offers(long(2, "x")))  # no profile named: the hook still sees every candidate
    rejected: list[RiskRejection] = []
    listen_risk(rejected.append)
    assert backtest() == []
    assert [(r.risk_name, r.note) for r in rejected] == [("*", "symbol on the operator's block list")]


def test_a_raising_risk_check_plugin_rejects(btkit_plugin: Any) -> None:
    class Broken:
        @hookimpl
        def btkit_risk_check(self, payload: RiskPayload) -> str | None:
            raise LookupError("exposure service timed out")

    btkit_plugin(Broken())
    add_strategy("s", offers(long(2, "x")))
    rejected: list[RiskRejection] = []
    listen_risk(rejected.append)
    assert backtest() == []
    assert [r.note for r in rejected] == ["exposure service timed out"]


def test_risk_profile_from_a_plugin_and_the_rejected_observer(btkit_plugin: Any) -> None:
    seen: list[tuple[str, str, int]] = []

    class Plugin:
        @hookimpl
        def btkit_risks(self) -> list[RiskSpec]:
            return [RiskSpec(name="rr3", validations=[reward_risk_at_least(3)], dist="test-risk")]

        @hookimpl
        def btkit_risk_rejected(self, payload: RiskRejection, note: str) -> None:
            seen.append((payload.risk_name, note, payload.active_position_count))

    btkit_plugin(Plugin())
    add_strategy("s", offers(long(2, "x"), long(3, "y")), risk="rr3")
    results = backtest()
    assert [r.signal.id for r in results] == ["y", "y"]
    assert seen == [("rr3", "R/R 2.00 below 3", 0)]


def test_payload_describes_the_candidate_and_the_portfolio() -> None:
    payloads: list[RiskPayload] = []

    def look(p: RiskPayload) -> None:
        payloads.append(p)

    add_risk("look", look)
    add_strategy("s", offers(long(2, "x")), risk="look")
    backtest()
    first = payloads[0]
    assert (first.risk_name, first.symbol, first.strategy_name, first.exchange_name) == ("look", SYM, "s", EX)
    assert first.current_signal.price_open == first.current_price == 100.0
    assert first.timestamp == T0 + 5 * 60_000
    assert (first.active_position_count, first.active_positions) == (0, ())


def test_unknown_risk_profile_is_a_clear_error() -> None:
    add_strategy("s", offers(long(2, "x")), risk="nope")
    with pytest.raises(UnknownComponentError, match="no risk named 'nope'"):
        backtest()
