"""Position management in live mode: the same managed strategy as a backtest, restarts, broker calls.

A managed strategy (one long trade with a DCA ladder, partial profits, breakeven and a trailing stop;
one short trade with a partial loss, breakeven and a trailing take) runs over hand-built candles:
- through ``Backtest.run`` over a frame, and
- through ``Live.run`` with a ``ReplayClock`` over the same minutes, with real file persistence and the
  broker gate,
and both must give the same opens, closes, pnl, entries, partials and level events. A live run stopped
mid-position and restarted from its state directory must continue exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import btkit
from btkit import commands
from btkit.broker_payloads import client_order_id
from btkit.errors import OrderTransientError
from btkit.testing.exchange import candles_from_prices, memory_exchange

M = 60_000
T0_DT = datetime(2024, 1, 1, tzinfo=UTC)
T0 = int(T0_DT.timestamp() * 1000)
START, END = 10, 330

# long at 100 (TP 120, SL 85): down to 93 (two DCA buys), up to 106 (partials, breakeven, trailing),
# back to 95 (the trailing stop closes it); short at 95 (TP 86, SL 104) from minute 200: up to 97.5
# (partial loss), down to 92 (breakeven, trailing take), down to 88 (the trailed take-profit)
WAYPOINTS = [
    (0, 100),
    (10, 100),
    (30, 94),
    (40, 93),
    (80, 106),
    (110, 95),
    (200, 95),
    (215, 97.5),
    (240, 92),
    (270, 88),
]
SIGNALS = {
    START: {
        "position": "long",
        "price_take_profit": 120.0,
        "price_stop_loss": 85.0,
        "minute_estimated_time": 600,
    },
    200: {
        "position": "short",
        "price_take_profit": 86.0,
        "price_stop_loss": 104.0,
        "minute_estimated_time": 600,
    },
}


def ms(minute: float) -> int:
    return T0 + round(minute * M)


def prices() -> list[float]:
    xs, ys = zip(*WAYPOINTS, strict=True)
    return [float(v) for v in np.interp(np.arange(END + 20), xs, ys)]


class Journal:
    """What the managed strategy did and saw, per run."""

    def __init__(self) -> None:
        self.commands: list[tuple[int, str, bool]] = []
        self.levels: list[tuple[str, int, int]] = []
        self.pings: list[Any] = []

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


def manage(journal: Journal, p: Any) -> None:
    """The managed strategy's active-ping listener: uses only engine queries, so it survives restarts."""
    if p.strategy_name != "pm":
        return
    journal.pings.append(p)
    s, sym, price = p.signal, p.symbol, p.current_price

    def do(name: str, ok: bool) -> None:
        journal.commands.append((p.timestamp, name, ok))

    pct = commands.get_position_pnl_percent(sym)
    assert pct is not None
    if s.position == "long":
        if price <= min(e.price for e in s.entries) * 0.97 and len(s.entries) < 3:
            do("average_buy", commands.commit_average_buy(sym))
        if pct >= 2 and not s.partials:
            do("partial_profit", commands.commit_partial_profit(sym, 30))
        elif pct >= 4 and len(s.partials) == 1:
            do("partial_profit", commands.commit_partial_profit(sym, 40))
        if pct >= 1 and not s.price_stop_loss >= s.price_open:
            do("breakeven", commands.commit_breakeven(sym))
        if pct >= 3:
            entry, sl0 = s.price_open, s.original_price_stop_loss
            wanted = (entry - price * 0.985) / entry * 100
            if commands.commit_trailing_stop(sym, wanted - (entry - sl0) / entry * 100):
                do("trailing_stop", True)
    else:
        if pct <= -1.5 and not s.partials:
            do("partial_loss", commands.commit_partial_loss(sym, 50))
        if pct >= 1 and s.price_stop_loss > s.price_open:
            do("breakeven", commands.commit_breakeven(sym))
        if price < 93 and s.price_take_profit == s.original_price_take_profit:
            do("trailing_take", commands.commit_trailing_take(sym, -3))


@pytest.fixture
def journal(btkit_clean: None) -> Iterator[Journal]:
    arr = candles_from_prices(T0, prices(), spread=0.0005)
    btkit.add_exchange("mem", memory_exchange("mem", {"TST": arr}).get_candles)

    def get_signal(symbol: str, when: datetime, current_price: float) -> Any:
        return SIGNALS.get((int(when.timestamp() * 1000) - T0) // M)

    btkit.add_strategy("pm", get_signal)
    btkit.add_frame("f", T0_DT + timedelta(minutes=START), T0_DT + timedelta(minutes=END))
    j = Journal()
    btkit.listen_active_ping(lambda p: manage(j, p))
    # level events (signal ids are random per run, so a level is identified by kind, level and time)
    btkit.listen_partial_profit_available(lambda e: j.levels.append(("profit", e.level, e.timestamp)))
    btkit.listen_partial_loss_available(lambda e: j.levels.append(("loss", e.level, e.timestamp)))
    btkit.listen_breakeven_available(lambda e: j.levels.append(("breakeven", e.level, e.timestamp)))
    yield j


def backtest() -> list[Any]:
    return list(btkit.Backtest.run("TST", strategy="pm", exchange="mem", frame="f"))


def live(root: Path, start: int = START, end: int = END) -> list[Any]:
    btkit.use_persistence("file", root=str(root))
    clock = btkit.ReplayClock(ms(start), end=ms(end))
    out = list(btkit.Live.run("TST", strategy="pm", exchange="mem", clock=clock))
    settle_session()
    return out


def settle_session() -> None:
    """Stop the live session (it also closes itself once its last run ended) before the next one starts."""
    btkit.Live.shutdown()


def summary(results: list[Any]) -> list[tuple[Any, ...]]:
    """What must agree between the modes (signal ids are random per run and are left out)."""
    out = []
    for r in results:
        v = r.signal
        base = (
            r.action,
            r.timestamp,
            r.current_price,
            v.position,
            v.price_open,
            v.price_take_profit,
            v.price_stop_loss,
            v.entries,
            v.partials,
        )
        if isinstance(r, btkit.Closed):
            base += (r.close_reason, r.close_timestamp, r.pnl)
        out.append(base)
    return out


def errors_of(run: Any) -> list[Any]:
    errors: list[Any] = []
    unsubscribe = btkit.listen_error(errors.append)
    try:
        run()
    finally:
        unsubscribe()
    return errors


# ---------------------------------------------------------------- backtest == live
def test_managed_strategy_backtest_and_live_replay_agree(journal: Journal, tmp_path: Path) -> None:
    bt = backtest()
    bt_commands, bt_levels = list(journal.commands), list(journal.levels)
    journal.reset()
    lv = live(tmp_path / "state")
    assert summary(lv) == summary(bt)
    assert journal.commands == bt_commands
    assert journal.levels == bt_levels
    # the scenario really exercised everything it claims to
    done = {name for _, name, ok in bt_commands if ok}
    assert done == {
        "average_buy",
        "partial_profit",
        "breakeven",
        "trailing_stop",
        "partial_loss",
        "trailing_take",
    }
    closes = [r for r in bt if isinstance(r, btkit.Closed)]
    assert [(c.signal.position, c.close_reason) for c in closes] == [
        ("long", "stop_loss"),
        ("short", "take_profit"),
    ]
    long_, short_ = closes
    assert len(long_.signal.entries) == 3
    assert [p.percent for p in long_.signal.partials] == [30.0, 40.0]
    assert long_.pnl.price_close == long_.signal.price_stop_loss > long_.signal.price_open
    assert [p.kind for p in short_.signal.partials] == ["loss"]
    assert short_.signal.price_take_profit == pytest.approx(short_.pnl.price_close)
    assert short_.signal.price_take_profit > 86.0
    assert {kind for kind, *_ in bt_levels} == {"profit", "loss", "breakeven"}


# ---------------------------------------------------------------- restart mid-position
def test_live_restart_restores_entries_partials_trailing_and_levels(journal: Journal, tmp_path: Path) -> None:
    bt = backtest()
    bt_levels = list(journal.levels)
    bt_pings = {p.timestamp: p.signal for p in journal.pings}
    trails = [t for t, name, ok in journal.commands if name == "trailing_stop" and ok]
    first_close = next(r for r in bt if isinstance(r, btkit.Closed)).close_timestamp
    cut = (trails[1] - T0) // M  # after two DCA buys, a partial and two trailing moves; still open
    assert ms(cut) < first_close
    journal.reset()
    state = tmp_path / "state"
    part1 = live(state, START, cut)
    last = journal.pings[-1].signal
    assert journal.pings[-1].timestamp == ms(cut)
    assert len(last.entries) == 3 and last.partials and last.price_stop_loss > last.original_price_stop_loss
    pings_before = len(journal.pings)
    # a new session on the same state directory continues from the next minute
    part2 = live(state, cut + 1, END)
    first = journal.pings[pings_before]
    assert first.timestamp == ms(cut + 1)
    # what the strategy sees after the restart is what the uninterrupted backtest saw at that minute:
    # entries, partials, the trailing stop moved on the last tick before the stop, the effective entry
    expected = bt_pings[ms(cut + 1)]
    assert first.signal.id == last.id
    assert (first.signal.entries, first.signal.partials) == (expected.entries, expected.partials)
    assert first.signal.price_stop_loss == expected.price_stop_loss > last.price_stop_loss
    assert first.signal.price_open == expected.price_open
    # levels already announced are not announced again; together they are the backtest's
    assert journal.levels == bt_levels
    assert summary(part1 + part2) == summary(bt)


# ---------------------------------------------------------------- broker calls
class RecordingBroker:
    """Confirms everything and records every call (method, payload)."""

    def __init__(self, fail: dict[str, int] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.fail = dict(fail or {})

    def _record(self, method: str, p: Any) -> bool:
        self.calls.append((method, p))
        if self.fail.get(method, 0) > 0:
            self.fail[method] -= 1
            raise OrderTransientError(f"{method}: exchange timeout")
        return True

    def on_signal_open_commit(self, p: Any) -> bool:
        return self._record("on_signal_open_commit", p)

    def on_signal_close_commit(self, p: Any) -> bool:
        return self._record("on_signal_close_commit", p)

    def on_partial_profit_commit(self, p: Any) -> bool:
        return self._record("on_partial_profit_commit", p)

    def on_partial_loss_commit(self, p: Any) -> bool:
        return self._record("on_partial_loss_commit", p)

    def on_trailing_stop_commit(self, p: Any) -> bool:
        return self._record("on_trailing_stop_commit", p)

    def on_trailing_take_commit(self, p: Any) -> bool:
        return self._record("on_trailing_take_commit", p)

    def on_breakeven_commit(self, p: Any) -> bool:
        return self._record("on_breakeven_commit", p)

    def on_average_buy_commit(self, p: Any) -> bool:
        return self._record("on_average_buy_commit", p)


def test_broker_gets_one_call_per_command_with_its_payload(journal: Journal, tmp_path: Path) -> None:
    broker = RecordingBroker()
    btkit.Broker.use_adapter(broker)
    btkit.Broker.enable()
    results = live(tmp_path / "state")
    closes = [r for r in results if isinstance(r, btkit.Closed)]
    assert len(closes) == 2
    by_method: dict[str, list[Any]] = {}
    for method, p in broker.calls:
        by_method.setdefault(method, []).append(p)
    long_, short_ = closes
    lv, sv = long_.signal, short_.signal
    # DCA: one call per added entry, the entry's cost and price, ids dca2 and dca3
    dca = by_method["on_average_buy_commit"]
    assert [(p.cost, p.current_price, p.when) for p in dca] == [
        (e.cost, e.price, e.timestamp) for e in lv.entries[1:]
    ]
    assert [p.client_order_id for p in dca] == [
        client_order_id(lv.id, "dca2"),
        client_order_id(lv.id, "dca3"),
    ]
    # partial profits: percent of the remaining and the dollars that go out (30 % of 300 $, 40 % of 210 $)
    pp = by_method["on_partial_profit_commit"]
    assert [(p.percent_to_close, p.cost) for p in pp] == [
        (30.0, pytest.approx(90.0)),
        (40.0, pytest.approx(84.0)),
    ]
    assert [p.current_price for p in pp] == [q.current_price for q in lv.partials]
    assert [p.client_order_id for p in pp] == [
        client_order_id(lv.id, "partial1"),
        client_order_id(lv.id, "partial2"),
    ]
    pl = by_method["on_partial_loss_commit"]
    assert [(p.signal_id, p.percent_to_close, p.position) for p in pl] == [(sv.id, 50.0, "short")]
    # breakeven: the new stop is the effective entry of the moment
    be = by_method["on_breakeven_commit"]
    assert {p.signal_id for p in be} == {lv.id, sv.id}
    assert all(p.client_order_id == client_order_id(p.signal_id, "breakeven") for p in be)
    # trailing: the last stop sent is the one that closed the long; the take sent is the one that closed the short
    ts = [p for p in by_method["on_trailing_stop_commit"] if p.signal_id == lv.id]
    assert ts[-1].new_stop_loss_price == lv.price_stop_loss == long_.pnl.price_close
    assert len({p.client_order_id for p in ts}) == len(ts)  # one id per move
    tt = by_method["on_trailing_take_commit"]
    assert [p.new_take_profit_price for p in tt] == [sv.price_take_profit]
    assert all(p.attempt == 1 and p.strategy_name == "pm" and p.symbol == "TST" for _, p in broker.calls)


def test_broker_failure_changes_nothing_and_the_retry_uses_the_same_order_id(
    journal: Journal, tmp_path: Path
) -> None:
    broker = RecordingBroker(fail={"on_partial_profit_commit": 2})
    btkit.Broker.use_adapter(broker)
    btkit.Broker.enable()
    errors: list[Any] = []
    btkit.listen_error(errors.append)
    results = live(tmp_path / "state")
    long_ = next(r for r in results if isinstance(r, btkit.Closed))
    attempts = [p for m, p in broker.calls if m == "on_partial_profit_commit"]
    # two refused attempts on two ticks, then confirmed; the strategy asked again because nothing changed
    first_ids = {p.client_order_id for p in attempts[:3]}
    assert first_ids == {client_order_id(long_.signal.id, "partial1")}
    assert [p.when for p in attempts[:3]] == sorted({p.when for p in attempts[:3]})
    assert long_.signal.partials[0].timestamp == attempts[2].when
    asked = [(t, ok) for t, name, ok in journal.commands if name == "partial_profit"]
    assert [ok for _, ok in asked[:3]] == [True, True, True]
    failures = [e for e in errors if "on_partial_profit_commit" in e.where]
    assert len(failures) == 2
    assert all("unchanged" in e.where and isinstance(e.error, OrderTransientError) for e in failures)


# ---------------------------------------------------------------- the contrib example strategies
@pytest.mark.parametrize(
    ("strategy", "start", "end"),
    [
        ("partials-trailing", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)),
        ("dca-ladder", datetime(2024, 2, 12, tzinfo=UTC), datetime(2024, 2, 14, tzinfo=UTC)),
    ],
)
def test_contrib_strategies_agree_between_backtest_and_live_replay(
    btkit_clean: None,
    tmp_path: Path,
    strategy: str,
    start: datetime,
    end: datetime,
) -> None:
    # the example packages manage positions from their on_active callback (not from listeners)
    btkit.add_frame("w", start, end)
    bt = list(btkit.Backtest.run("BTCUSDT", strategy=strategy, exchange="sim", frame="w"))
    btkit.use_persistence("file", root=str(tmp_path / "state"))
    clock = btkit.ReplayClock(start, end=end)
    lv = list(btkit.Live.run("BTCUSDT", strategy=strategy, exchange="sim", clock=clock))
    settle_session()
    managed = [
        r for r in lv if isinstance(r, btkit.Closed) and (r.signal.partials or len(r.signal.entries) > 1)
    ]
    assert managed, f"no managed trade in this window: {[r.action for r in lv]}"
    # the backtest closes what is still open at the frame's end; the replay just stops: compare what both saw
    assert summary(lv) == summary(bt[: len(lv)])
