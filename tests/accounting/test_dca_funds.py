"""DCA keeps working with sized positions: each added entry locks its margin, and one that costs more than
is free is refused (the position unchanged), never shrunk."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

import btkit
from btkit.model import Closed
from btkit.testing.exchange import candles_from_prices

DAY = datetime(2024, 1, 3, tzinfo=UTC)
T0 = int(DAY.timestamp() * 1000)


def test_dca_entries_need_free_funds(candle_exchange: Any) -> None:
    closes = 100.0 * np.exp(-0.0005 * np.arange(3 * 1440, dtype=np.float64))  # a steady fall: DCA is allowed
    candle_exchange("down", {"X": candles_from_prices(T0 - 1440 * 60_000, closes)})
    btkit.set_wallet(balance=1_000.0, sizing="percent:60")
    opened = {"n": 0}

    def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
        if opened["n"]:
            return None
        opened["n"] += 1
        return {
            "position": "long",
            "price_take_profit": price * 1.05,
            "price_stop_loss": price * 0.85,
            "minute_estimated_time": 60,
        }

    def on_active(result: Any) -> None:
        btkit.commit_average_buy("X", cost=150.0)

    errors: list[str] = []
    btkit.listen_error(lambda e: errors.append(str(e.error)))
    btkit.add_strategy("dca-funds", get_signal, interval="1m", callbacks={"on_active": on_active})
    btkit.add_frame("f", DAY, datetime(2024, 1, 4, tzinfo=UTC))
    results = list(btkit.Backtest.run("X", strategy="dca-funds", exchange="down", frame="f"))
    closed = [r for r in results if isinstance(r, Closed)]
    assert len(closed) == 1
    entries = closed[0].signal.entries
    # 600 (60 % of 1,000) + two DCA entries of 150 = 900; a third would need 150 with 100 free
    assert [e.cost for e in entries] == [600.0, 150.0, 150.0]
    assert math.isclose(closed[0].pnl.pnl_entries, 900.0)
    refused = [e for e in errors if "insufficient funds: cost 150.00 exceeds free balance 100.00" in e]
    assert refused
