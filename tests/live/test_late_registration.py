"""Issue 10 #13: components registered after a live session started are found by it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import btkit

START = 1_706_745_600_000  # 2024-02-01 00:00 UTC
M = 60_000


def every(minutes: int) -> Any:
    def get_signal(symbol: str, when: Any, price: float) -> dict[str, Any] | None:
        if (int(when.timestamp()) // 60) % minutes:
            return None
        return {
            "position": "long",
            "price_take_profit": price * 1.01,
            "price_stop_loss": price * 0.99,
            "minute_estimated_time": 20,
        }

    return get_signal


def test_a_strategy_and_a_risk_registered_while_a_session_runs_can_be_started_in_it(tmp_path: Path) -> None:
    btkit.use_persistence("file", root=str(tmp_path / "dump"))
    btkit.add_strategy("A", every(7))
    clock = btkit.ReplayClock(START, end=START + 90 * M)
    first = btkit.Live.background("BTCUSDT", strategy="A", exchange="sim", clock=clock)
    # registered after the session started (an agent loop adding strategies one after another)
    seen: list[str] = []
    btkit.add_risk("late-book", lambda payload: seen.append(payload.symbol))
    btkit.add_strategy("B", every(5), risk="late-book")
    second = btkit.Live.background("ETHUSDT", strategy="B", exchange="sim", clock=clock)
    assert first.join(60) and second.join(60)
    assert first.error is None and second.error is None, (first.error, second.error)
    assert any(isinstance(r, btkit.Closed) for r in second.event_list)
    assert seen and set(seen) == {"ETHUSDT"}  # the late risk profile was consulted
    btkit.Live.shutdown()
