"""Portfolio-wide risk in live mode, through the real live runner (replay clock, file persistence):
strategies and symbols naming one profile share its slots; check-and-reserve is atomic; a rejection
frees the interval so the next tick asks again; risk slots survive a restart."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from btkit import (
    Closed,
    Live,
    Opened,
    ReplayClock,
    Signal,
    add_risk,
    add_strategy,
    listen_risk,
    listen_signal_live,
    use_persistence,
)
from btkit.model import MINUTE_MS
from btkit.persist.file import FileBackend
from btkit.persist.state import BackendStore
from btkit.plugins import get_plugin_manager
from btkit.risk import RiskRejection, max_positions
from btkit.testing.exchange import candles_from_prices

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
EX = "prices"


def flat_then_up() -> Any:
    """100 for 8 minutes, then 104: a long with TP +2 % opened at 100 closes a few minutes later."""
    return candles_from_prices(T0, [100.0] * 8 + [104.0] * 80)


def strategy(name: str, *, together: threading.Barrier | None = None, risk: str = "one") -> None:
    """A strategy that wants a long on every tick (one id per symbol, so it opens at most once).

    With ``together``, its first get_signal waits until every strategy sharing the barrier asked too:
    they reach the risk check on the same tick."""
    asked: set[str] = set()

    def get_signal(symbol: str, when: Any, price: float) -> Signal:
        if together is not None and symbol not in asked:
            asked.add(symbol)
            together.wait(30)
        return Signal(
            position="long",
            price_take_profit=price * 1.02,
            price_stop_loss=price * 0.98,
            id=f"{name}-{symbol}",
        )

    add_strategy(name, get_signal, risk=risk)


class Recorder:
    def __init__(self) -> None:
        self.opened: list[Opened] = []
        self.closed: list[Closed] = []
        self.rejected: list[RiskRejection] = []
        listen_signal_live(self._signal)
        listen_risk(self.rejected.append)

    def _signal(self, r: Any) -> None:
        if isinstance(r, Opened):
            self.opened.append(r)
        elif isinstance(r, Closed):
            self.closed.append(r)


def run_live(participants: list[tuple[str, str]], minutes: int, start: int = 5) -> None:
    """Every (strategy, symbol) as ``Live.background`` on ONE replay clock, until the replay ends."""
    clock = ReplayClock(T0 + start * MINUTE_MS, end=T0 + (start + minutes) * MINUTE_MS)
    handles = [
        Live.background(symbol, strategy=name, exchange=EX, clock=clock) for name, symbol in participants
    ]
    for h in handles:
        assert h.join(60), "live replay did not finish"
        assert h.error is None, h.error
    Live.shutdown()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    root = tmp_path / "state"
    use_persistence("file", root=str(root))
    return root


@pytest.mark.parametrize(
    "participants",
    [[("a", "BTCUSDT"), ("b", "BTCUSDT")], [("a", "BTCUSDT"), ("a", "ETHUSDT")]],
    ids=["two-strategies-one-symbol", "one-strategy-two-symbols"],
)
def test_max_one_position_shared_by_concurrent_starts_opens_exactly_one(
    candle_exchange: Any, state_dir: Path, participants: list[tuple[str, str]]
) -> None:
    candle_exchange(EX, {"BTCUSDT": flat_then_up(), "ETHUSDT": flat_then_up()})
    add_risk("one", max_positions(1))
    together = threading.Barrier(len(participants))
    for name in {n for n, _ in participants}:
        strategy(name, together=together)
    rec = Recorder()

    run_live(participants, minutes=1)  # both ask on the first tick, under one risk profile

    assert len(rec.opened) == 1
    assert len(rec.rejected) >= 1
    first = rec.rejected[0]
    assert first.timestamp == rec.opened[0].timestamp  # the same tick
    assert (first.risk_name, first.active_position_count) == ("one", 1)
    assert first.note == "max 1 concurrent position(s) reached (1 active)"
    assert (first.strategy_name, first.symbol) != (rec.opened[0].strategy_name, rec.opened[0].symbol)


def test_rejected_strategy_opens_on_the_tick_after_the_slot_is_released(
    candle_exchange: Any, state_dir: Path
) -> None:
    candle_exchange(EX, {"BTCUSDT": flat_then_up()})
    add_risk("one", max_positions(1))
    together = threading.Barrier(2)
    strategy("a", together=together)
    strategy("b", together=together)
    rec = Recorder()

    run_live([("a", "BTCUSDT"), ("b", "BTCUSDT")], minutes=20)

    winner, loser = rec.opened[0], rec.opened[1]
    assert len(rec.opened) == 2 and winner.strategy_name != loser.strategy_name
    closed = next(c for c in rec.closed if c.strategy_name == winner.strategy_name)
    # rejected on every tick while the winner held the slot, asked again each time (the interval is freed)
    waits = [r.timestamp for r in rec.rejected if r.strategy_name == loser.strategy_name]
    assert waits == list(range(winner.timestamp, waits[-1] + 1, MINUTE_MS))
    assert closed.close_timestamp <= loser.timestamp <= closed.close_timestamp + MINUTE_MS
    assert waits[-1] in (closed.close_timestamp - MINUTE_MS, closed.close_timestamp)


def test_risk_slots_are_restored_after_a_restart(candle_exchange: Any, state_dir: Path) -> None:
    candle_exchange(EX, {"BTCUSDT": candles_from_prices(T0, [100.0] * 200)})  # flat: nothing closes
    add_risk("one", max_positions(1))
    strategy("a")
    strategy("b")
    rec = Recorder()

    run_live([("a", "BTCUSDT")], minutes=2)  # a opens and stays open; the process ends
    assert [o.strategy_name for o in rec.opened] == ["a"]
    assert risk_slots_on_disk(state_dir, "one") == [("a", "BTCUSDT", "a-BTCUSDT")]

    run_live([("b", "BTCUSDT")], minutes=3, start=10)  # a new process runs only b

    assert [o.strategy_name for o in rec.opened] == ["a"]
    assert len(rec.rejected) == 4 and all(r.strategy_name == "b" for r in rec.rejected)
    assert rec.rejected[0].active_position_count == 1


def test_without_the_persisted_slot_the_other_strategy_opens(candle_exchange: Any, state_dir: Path) -> None:
    """The control of the restart test: the same second run on a fresh state directory opens."""
    candle_exchange(EX, {"BTCUSDT": candles_from_prices(T0, [100.0] * 200)})
    add_risk("one", max_positions(1))
    strategy("b")
    rec = Recorder()
    run_live([("b", "BTCUSDT")], minutes=3, start=10)
    assert [o.strategy_name for o in rec.opened] == ["b"] and rec.rejected == []


def test_scheduled_entry_holds_its_slot_while_it_waits(candle_exchange: Any, state_dir: Path) -> None:
    candle_exchange(EX, {"BTCUSDT": candles_from_prices(T0, [100.0] * 200)})
    add_risk("one", max_positions(1))
    resting = Signal(
        position="long", price_open=95.0, price_take_profit=99.0, price_stop_loss=93.0, id="rest"
    )
    add_strategy("a", lambda s, w, p: resting, risk="one")  # never fills: the price stays at 100
    strategy("b")
    rec = Recorder()
    seen: list[Any] = []
    listen_signal_live(seen.append)
    run_live([("a", "BTCUSDT")], minutes=1)
    run_live([("b", "BTCUSDT")], minutes=2, start=7)
    assert [type(r).__name__ for r in seen][:1] == ["Scheduled"]
    assert rec.opened == [] and len(rec.rejected) == 3


def risk_slots_on_disk(root: Path, name: str) -> list[tuple[str, str, str]]:
    backend = FileBackend(root)
    backend.open(exclusive=False)
    try:
        positions = BackendStore(get_plugin_manager(entrypoints=False), backend).load_risk(name)
    finally:
        backend.close()
    return [(p.strategy_name, p.symbol, p.signal_id) for p in positions]
