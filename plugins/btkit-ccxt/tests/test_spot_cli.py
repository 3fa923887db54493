"""`btkit live --broker ccxt:binance` as a user runs it (the CLI in a subprocess, a replay day) against the
fake spot exchange through real ccxt: signal → market buy → native stop-loss → engine exit → sell, booked
at the exchange's fill prices in the printed summary and the report."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from btkit_ccxt.testing import FakeSpotExchange, fake_spot_env

STRATEGY = """
import btkit

def get_signal(symbol, when, current_price):
    if when.hour == 0 and when.minute == 15:
        return btkit.Signal(position="long", price_take_profit=current_price * 1.005,
                            price_stop_loss=current_price * 0.97, minute_estimated_time=600, cost=100)
    return None

btkit.add_strategy("spot-once", get_signal, interval="1m")
"""


@pytest.mark.slow
def test_btkit_live_on_spot_through_the_cli_books_the_exchange_fills(
    fake_spot: FakeSpotExchange, tmp_path: Path
) -> None:
    fake = fake_spot
    (tmp_path / "strat.py").write_text(STRATEGY, encoding="utf-8")
    (tmp_path / "btkit.toml").write_text(
        f"""[broker]
name = "ccxt:binance"
api_base_url = "{fake.url}"
entry_order_type = "market"
poll_interval_seconds = 0.05
retry_delay_seconds = 0.01

[exchange."ccxt:binance"]
api_base_url = "{fake.url}"
options = {{ fetchMarkets = {{ types = ["spot"] }}, fetchMargins = false }}
""",
        encoding="utf-8",
    )
    argv = ["live", "--broker", "ccxt:binance", "--exchange", "ccxt:binance", "--symbol", "BTC/USDT"]
    argv += ["--strategy-file", "strat.py", "--replay-from", "20240102", "--replay-to", "20240103"]
    done = subprocess.run(
        [sys.executable, "-m", "btkit.cli", *argv, "--speed", "100000", "--dump-dir", "dump"],
        cwd=tmp_path,
        env=fake_spot_env(fake, os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    kinds = [(o["type"], o["side"], o["status"]) for o in fake.orders()]
    assert kinds == [("MARKET", "BUY", "FILLED"), ("STOP_LOSS", "SELL", "CANCELED"), ("MARKET", "SELL", "FILLED")]
    buy, sell = fake.fills()[0], fake.fills()[-1]
    assert (buy.side, sell.side) == ("BUY", "SELL")
    lines = done.stdout.splitlines()
    opened = [line for line in lines if " BTC/USDT opened @ " in line]
    closed = [line for line in lines if " BTC/USDT closed @ " in line]
    assert len(opened) == 1 and len(closed) == 1, done.stdout
    assert float(opened[0].split(" opened @ ")[1].split()[0]) == float(buy.price)  # the buy's fill
    assert float(closed[0].split(" closed @ ")[1].split()[0]) == float(sell.price)  # the sell's fill
    # pnl from the two fills (bought and sold at the same fake price): only fees and slippage, 0.1 % each
    # way each; at the signal's candle price it would be about -2 %
    pnl = float(closed[0].split("pnl ")[1].rstrip("%"))
    expected = ((float(sell.price) * 0.998) / (float(buy.price) * 1.002) - 1) * 100
    assert abs(pnl - expected) < 0.01, (pnl, expected)
    assert "stop-loss native" in done.stderr
    reports = list((tmp_path / "dump").rglob("*spot-once*.md"))
    assert reports and "BTC/USDT" in reports[0].read_text(encoding="utf-8")
