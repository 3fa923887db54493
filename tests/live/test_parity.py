"""Backtest/live parity: the same strategy over the same sim candles through ``Backtest.run`` and
through the live runner on a replay clock (file persistence, paper broker, three symbols in lockstep)
gives the very same results: signals, prices, close reasons, timestamps and pnl, scheduled entries
included."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

import btkit

START = datetime(2024, 3, 4, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
M = 60_000
SIGNAL_MINUTES = 2 * 1440  # two days of signals…
END_MS = START_MS + SIGNAL_MINUTES * M + 600 * M  # …and time for the last ones to resolve
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOL/USDT:USDT")
ACTIONS = ("scheduled", "opened", "closed", "cancelled")


def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
    """On some 5-minute buckets: a long or short, now or as a resting entry, with its own id."""
    minute = int(when.timestamp()) // 60
    if minute * M >= START_MS + SIGNAL_MINUTES * M:
        return None
    h = int.from_bytes(hashlib.sha256(f"{symbol}{minute}".encode()).digest()[:4], "big")
    if h % 3:
        return None
    long = h % 2 == 0
    width = 0.006 + (h % 5) * 0.001
    entry = price
    signal: dict[str, Any] = {
        "position": "long" if long else "short",
        "id": f"{symbol}@{minute}",
        "minute_estimated_time": 30 + h % 90,
    }
    if h % 7 == 0:  # a resting entry: fills, times out or is rejected
        entry = price * (1 - 0.001 if long else 1 + 0.001)
        signal["price_open"] = entry
    signal["price_take_profit"] = entry * (1 + width if long else 1 - width)
    signal["price_stop_loss"] = entry * (1 - width if long else 1 + width)
    return signal


def comparable(result: Any) -> dict[str, Any]:
    d = attrs.asdict(result)
    d.pop("frame_name")
    d.pop("backtest")
    d["action"] = result.action
    return d


def test_backtest_and_live_replay_give_identical_results(tmp_path: Path) -> None:
    btkit.add_strategy("parity", get_signal, interval="5m")
    btkit.add_frame("parity", START, datetime.fromtimestamp(END_MS / 1000, UTC))
    backtest = {
        s: [comparable(r) for r in btkit.Backtest.run(s, strategy="parity", exchange="sim", frame="parity")]
        for s in SYMBOLS
    }

    btkit.use_persistence("file", root=str(tmp_path / "dump"))
    live: dict[str, list[dict[str, Any]]] = {s: [] for s in SYMBOLS}
    btkit.listen_signal_live(lambda r: live[r.symbol].append(comparable(r)) if r.action in ACTIONS else None)
    clock = btkit.ReplayClock(START_MS, end=END_MS)
    handles = [btkit.Live.background(s, strategy="parity", exchange="sim", clock=clock) for s in SYMBOLS]
    for h in handles:
        assert h.join(300)
        assert h.error is None

    for s in SYMBOLS:
        actions = [r["action"] for r in backtest[s]]
        assert actions.count("closed") >= 10 and "scheduled" in actions, (s, actions)
        assert "cancelled" in actions or s != "BTCUSDT"
        assert len(live[s]) == len(backtest[s]), (s, len(live[s]), len(backtest[s]))
        for b, lv in zip(backtest[s], live[s], strict=True):
            assert lv == b
    # and the live history on disk says the same
    stats = btkit.Live.get_data("BTCUSDT", strategy="parity", exchange="sim")
    bt_stats = btkit.Backtest.get_data("BTCUSDT", strategy="parity", exchange="sim", frame="parity")
    assert stats.total_signals == bt_stats.total_signals
    assert stats.total_pnl == bt_stats.total_pnl
