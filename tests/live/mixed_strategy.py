"""A deterministic strategy for parity tests: on hashed 5-minute buckets, a long or a short, at market or as
a resting entry (which fills, times out or is rejected), each with its own id; over three sim symbols."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import attrs

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
