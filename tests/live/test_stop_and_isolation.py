"""Graceful stop, many symbols in one process, isolation from a failing exchange, and the wall clock."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import btkit
from btkit.defaults.sim_exchange import SimExchange

START = 1_706_745_600_000  # 2024-02-01 00:00 UTC
M = 60_000


class RecordingBroker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def on_signal_open_commit(self, p: Any) -> bool:
        self.calls.append(("open" if p.type == "open" else "schedule", p.signal_id, p.when))
        return True

    def on_signal_close_commit(self, p: Any) -> bool:
        self.calls.append(("close", p.signal_id, p.when))
        return True

    def on_signal_cancel_commit(self, p: Any) -> bool:
        self.calls.append(("cancel", p.signal_id, p.when))
        return True


def live_setup(tmp_path: Path, get_signal: Any) -> RecordingBroker:
    btkit.use_persistence("file", root=str(tmp_path / "dump"))
    broker = RecordingBroker()
    btkit.Broker.use_adapter(broker)
    btkit.Broker.enable()
    btkit.add_strategy("s", get_signal)
    return broker


# ---------------------------------------------------------------- graceful stop
def test_stop_with_an_open_position_monitors_it_to_its_close_then_ends(tmp_path: Path) -> None:
    calls: list[int] = []

    def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any]:
        calls.append(int(when.timestamp() * 1000))
        return {
            "position": "long",
            "price_take_profit": price * 1.1,
            "price_stop_loss": price * 0.9,
            "minute_estimated_time": 15,
        }

    broker = live_setup(tmp_path, get_signal)
    holder: dict[str, Any] = {}
    stopped_at: list[int] = []

    def on_result(result: Any) -> None:
        if isinstance(result, btkit.Opened) and not stopped_at:
            holder["ready"].wait(10)
            holder["handle"].stop()
            stopped_at.append(result.timestamp)

    holder["ready"] = threading.Event()
    btkit.listen_signal_live(on_result)
    handle = btkit.Live.background(
        "BTCUSDT", strategy="s", exchange="sim", clock=btkit.ReplayClock(START + 3 * M, end=START + 300 * M)
    )
    holder["handle"] = handle
    holder["ready"].set()
    assert handle.join(60) and handle.error is None
    events = list(handle.event_list)
    opened_at = stopped_at[0]
    closed = [e for e in events if isinstance(e, btkit.Closed)]
    assert [c.close_reason for c in closed] == ["time_expired"]  # never abandoned: ran to its expiry
    assert closed[0].timestamp == opened_at + 15 * M
    assert all(e.timestamp > opened_at for e in events[1:])
    assert [type(e).__name__ for e in events[1:-2]] == ["Active"] * 14
    assert isinstance(events[-1], btkit.Idle) and events[-1].timestamp == closed[0].timestamp + M  # then ends
    assert calls == [opened_at]  # no signal asked for after the stop
    assert [c[0] for c in broker.calls] == ["open", "close"]


def test_stop_with_a_resting_entry_cancels_it_on_the_next_tick(tmp_path: Path) -> None:
    def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any]:
        entry = price * 0.9  # far below: never fills in this replay
        return {
            "position": "long",
            "price_open": entry,
            "price_take_profit": entry * 1.1,
            "price_stop_loss": entry * 0.95,
            "minute_estimated_time": 60,
        }

    broker = live_setup(tmp_path, get_signal)
    box: dict[str, Any] = {"ready": threading.Event()}

    def on_result(result: Any) -> None:
        if isinstance(result, btkit.Scheduled) and "at" not in box:
            box["ready"].wait(10)
            box["handle"].stop()
            box["at"] = result.timestamp

    btkit.listen_signal_live(on_result)
    handle = btkit.Live.background(
        "BTCUSDT", strategy="s", exchange="sim", clock=btkit.ReplayClock(START + 3 * M, end=START + 300 * M)
    )
    box["handle"] = handle
    box["ready"].set()
    assert handle.join(60) and handle.error is None
    events = list(handle.event_list)
    cancelled = [e for e in events if isinstance(e, btkit.Cancelled)]
    assert len(cancelled) == 1 and cancelled[0].reason == "user" and cancelled[0].timestamp == box["at"] + M
    assert [c[0] for c in broker.calls] == ["schedule", "cancel"]
    assert events[-1].timestamp == box["at"] + 2 * M  # the idle tick after the cancel ends the loop


# ---------------------------------------------------------------- many symbols, one broken exchange
SYMBOLS = [f"S{i:02d}USDT" for i in range(20)]


def test_twenty_symbols_trade_while_one_symbols_exchange_fails_on_every_call(tmp_path: Path) -> None:
    sim = SimExchange()

    def get_candles(symbol: str, interval: str, since: datetime, limit: int) -> Any:
        if symbol == "BROKEN":
            raise ConnectionError("exchange unreachable for BROKEN")
        return sim.get_candles(symbol, interval, since, limit)

    btkit.add_exchange("flaky", get_candles)
    btkit.set_config(get_candles_retry_delay_ms=0)

    def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
        if int(when.timestamp()) // 60 % 10:
            return None
        return {
            "position": "long",
            "price_take_profit": price * 1.01,
            "price_stop_loss": price * 0.99,
            "minute_estimated_time": 5,
        }

    live_setup(tmp_path, get_signal)
    errors: list[Any] = []
    btkit.listen_error(errors.append)
    minutes = 60
    clock = btkit.ReplayClock(START, end=START + (minutes - 1) * M)
    handles = {
        s: btkit.Live.background(s, strategy="s", exchange="flaky", clock=clock) for s in ["BROKEN", *SYMBOLS]
    }
    for h in handles.values():
        assert h.join(120)
    broken = [e for e in errors if "BROKEN" in e.where]
    assert len(broken) == minutes  # reported on every minute and retried: the loop kept running
    assert all(not e.fatal and "unreachable" in str(e.error.__cause__ or e.error) for e in broken)
    assert len(errors) == len(broken)
    for s in SYMBOLS:
        h = handles[s]
        assert h.error is None
        # every minute ticked (a close at a bucket's first instant adds the decision taken at that instant)
        assert sorted({e.timestamp for e in h.event_list}) == [START + i * M for i in range(minutes)]
        same_instant = sum(
            isinstance(a, (btkit.Closed, btkit.Cancelled)) and b.timestamp == a.timestamp
            for a, b in itertools.pairwise(h.event_list)
        )
        assert len(h.event_list) == minutes + same_instant
        assert sum(isinstance(e, btkit.Closed) for e in h.event_list) >= 5, s


def test_a_slow_synchronous_exchange_of_one_symbol_does_not_hold_up_the_others(tmp_path: Path) -> None:
    """SLOW's candle calls wait until FAST has asked for a signal; if SLOW blocked the event loop, FAST
    could never tick and SLOW would wait for its timeout."""
    sim = SimExchange()
    fast_ticked = threading.Event()
    waited_out: list[int] = []

    def get_candles(symbol: str, interval: str, since: datetime, limit: int) -> Any:
        if symbol == "SLOW" and not fast_ticked.is_set() and not fast_ticked.wait(5):
            waited_out.append(1)
        return sim.get_candles(symbol, interval, since, limit)

    btkit.add_exchange("mixed", get_candles)

    def get_signal(symbol: str, when: datetime, price: float) -> None:
        if symbol == "FAST":
            fast_ticked.set()

    live_setup(tmp_path, get_signal)
    clock = btkit.ReplayClock(START, end=START + 2 * M)
    handles = [
        btkit.Live.background(s, strategy="s", exchange="mixed", clock=clock) for s in ("SLOW", "FAST")
    ]
    for h in handles:
        assert h.join(60)
    assert fast_ticked.is_set()
    assert not waited_out, "a slow synchronous exchange of one symbol held up the others' ticks"


# ---------------------------------------------------------------- the real wall clock
@pytest.mark.slow
def test_the_wall_clock_ticks_now_and_then_at_the_next_minute_boundary(tmp_path: Path) -> None:
    seen: list[tuple[int, float]] = []

    def get_signal(symbol: str, when: datetime, price: float) -> None:
        seen.append((int(when.timestamp() * 1000), time.time()))

    live_setup(tmp_path, get_signal)
    clock = btkit.WallClock(delay_seconds=0, poll_seconds=0.2)
    handle = btkit.Live.background("BTCUSDT", strategy="s", exchange="sim", clock=clock)
    try:
        deadline = time.time() + 65
        while len(seen) < 2 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        handle.kill()
        handle.join(10)
    assert len(seen) >= 2, f"no second tick within 65 s: {seen}"
    (first, first_at), (second, second_at) = seen[:2]
    assert first == (int(first_at * 1000) // M) * M  # the first tick is the current minute, at once
    assert second == first + M  # then exactly one tick per minute…
    assert second_at >= second / 1000  # …never before its boundary…
    assert second_at - second / 1000 < 30  # …and promptly after it (a generous bound for loaded CI)
    assert handle.error is None
