"""``PersistSignalAdapter.use(MyAdapter)``: the backtest-kit-shaped in-code adapter for the signal document."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

import btkit
from btkit.testing.exchange import candles_from_prices

START = 1_704_067_200_000


class JsonSignalAdapter:
    """Keeps the open position in one JSON file per (strategy, symbol); async on purpose."""

    root: ClassVar[Path]
    log: ClassVar[list[tuple[str, str, Any]]] = []

    def __init__(self, symbol: str, strategy_name: str, exchange_name: str) -> None:
        self.path = self.root / f"{strategy_name}-{symbol}.json"
        self.log.append(("init", f"{symbol}/{strategy_name}/{exchange_name}", None))

    async def wait_for_init(self, initial: bool) -> None:
        await asyncio.sleep(0)

    def read_signal_data(self) -> Any:
        return json.loads(self.path.read_text()) if self.path.exists() else None

    async def write_signal_data(self, row: Any) -> None:
        self.log.append(("write", self.path.name, None if row is None else row["id"]))
        self.path.write_text(json.dumps(row))


def test_the_signal_document_goes_to_the_adapter_and_comes_back_after_a_restart(
    tmp_path: Path, btkit_clean: None
) -> None:
    closes = np.concatenate([np.full(30, 100.0), np.linspace(100, 100.5, 600)])  # a slow climb, no TP yet
    btkit.add_exchange("mem", lambda s, i, since, limit: _serve(closes, i, since, limit))
    btkit.add_strategy(
        "once",
        lambda s, w, p: btkit.Signal(
            id="only-one", position="long", price_take_profit=p * 1.05, price_stop_loss=p * 0.95
        ),
        interval="1h",
    )
    JsonSignalAdapter.root = tmp_path
    JsonSignalAdapter.log.clear()
    btkit.PersistSignalAdapter.use(JsonSignalAdapter)
    btkit.use_persistence("file", root=str(tmp_path / "dump"))
    clock = btkit.ReplayClock(START + 10 * 60_000, end=START + 40 * 60_000)
    opened = [
        r
        for r in btkit.Live.run("TEST", strategy="once", exchange="mem", clock=clock)
        if r.action == "opened"
    ]
    assert len(opened) == 1
    stored = json.loads((tmp_path / "once-TEST.json").read_text())
    assert stored["id"] == "only-one" and stored["pending_at"] is not None
    assert not (tmp_path / "dump" / "signal").exists() or not any(
        (tmp_path / "dump" / "signal").rglob("*.json")
    )
    assert ("init", "TEST/once/mem", None) in JsonSignalAdapter.log
    # a restarted process reads the position back through the adapter and does not open again
    btkit.Live.shutdown()
    clock = btkit.ReplayClock(START + 41 * 60_000, end=START + 60 * 60_000)
    again = [r.action for r in btkit.Live.run("TEST", strategy="once", exchange="mem", clock=clock)]
    assert "opened" not in again


def _serve(closes: np.ndarray, interval: str, since: Any, limit: int) -> np.ndarray:
    arr = candles_from_prices(START, closes)
    from btkit import candles as ca
    from btkit.components import interval_ms

    if interval != "1m":
        arr = ca.resample(arr, interval_ms(interval))
    i = int(np.searchsorted(arr[:, 0], since.timestamp() * 1000))
    return arr[i : i + limit]
