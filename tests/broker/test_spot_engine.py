"""The live engine with the ccxt spot broker (``ccxt:binance``) against the fake spot exchange.

The engine ticks minute by minute over scripted candles (broker_helpers.Engine); the broker talks to
:class:`btkit_ccxt.testing.FakeSpotExchange` through real ccxt. What the exchange filled is what the
Closed signal, its pnl, the persisted history, the statistics and the report show.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from broker_helpers import path

from btkit import Closed, Opened, Signal
from btkit.engine import live
from btkit.lifecycle.pnl import position_pnl
from btkit.model import Active
from btkit.reporting.markdown import render_markdown
from btkit.stats import compute_statistics
from btkit_ccxt.spot import CcxtSpotBroker
from btkit_ccxt.testing import FakeSpotExchange, spot_client_options

LONG = Signal(position="long", price_take_profit=52500.0, price_stop_loss=47500.0, id="e1")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSpotExchange]:
    with FakeSpotExchange() as f:
        monkeypatch.setenv("BINANCE_API_KEY", f.api_key)
        monkeypatch.setenv("BINANCE_API_SECRET", f.api_secret)
        live.SETTINGS.broker_timeout_seconds = 30.0
        yield f


def spot(fake: FakeSpotExchange, **options: Any) -> CcxtSpotBroker:
    return CcxtSpotBroker("binance", **spot_client_options(fake, **options))


def finish(e: Any, broker: CcxtSpotBroker) -> None:
    e.loop.run_until_complete(broker.close())


def test_stop_filled_on_the_exchange_is_booked_at_its_fill(engine: Any, fake: FakeSpotExchange) -> None:
    broker = spot(fake)
    e = engine(broker, prices=path((50000, 60)), signals=[LONG, None])
    try:
        opened = e.tick()
        assert isinstance(opened, Opened)
        assert isinstance(e.tick(), Active)
        assert [o["type"] for o in fake.orders()] == ["LIMIT", "STOP_LOSS"]  # native stop on the exchange
        fake.set_price("46800")  # the candles still say 50000; the exchange's stop sells at 46800
        closed = e.tick()
        assert isinstance(closed, Closed) and closed.close_reason == "stop_loss"
        sell = fake.fills("BTCUSDT")[-1]
        assert sell.side == "SELL" and closed.pnl.price_close == float(sell.price) == 46800.0
        assert closed.close_timestamp == sell.time or closed.close_timestamp == e.last_tick
        assert not [
            r
            for r in fake.requests_to("/api/v3/order", "POST")
            if r.params.get("side") == "SELL" and r.params.get("type") == "MARKET"
        ]  # no close order: the stop already sold
        row = e.inst.history[-1]
        assert row.pnl == closed.pnl
        assert closed.pnl.pnl_percentage < -6.0  # the 50000 candle would have booked about -0.4 %
        saved = e.persisted().history[-1]
        assert saved.pnl == closed.pnl and saved.close_reason == "stop_loss"
        stats = compute_statistics([saved])
        assert stats.total_pnl == pytest.approx(closed.pnl.pnl_percentage)
        report = render_markdown("spot", stats)
        assert "46,800" in report or "46800" in report
    finally:
        finish(e, broker)


def test_emulated_stop_fires_on_the_tick_after_the_price_crosses(engine: Any, fake: FakeSpotExchange) -> None:
    broker = spot(fake, protection="emulated")
    prices = path((50000, 8), (47000, 30))
    e = engine(broker, prices=prices, signals=[LONG, None])
    try:
        assert isinstance(e.tick(), Opened)
        assert [o["type"] for o in fake.orders()] == ["LIMIT"]  # nothing resting on the exchange
        fake.set_price("47100")  # where the exchange's book is when the engine sells
        seen = []
        while True:
            result = e.tick()
            seen.append(result)
            if isinstance(result, Closed):
                break
            assert len(seen) < 20
        closed = seen[-1]
        assert isinstance(closed, Closed) and closed.close_reason == "stop_loss"
        # the first candle below the stop closes at minute 8 + 5 warm-up candles; the engine sees it on the
        # next tick and sells at once
        first_below = next(i for i, p in enumerate(prices) if p < LONG.price_stop_loss)
        assert closed.close_timestamp == e.last_tick
        assert all(isinstance(r, Active) for r in seen[:-1])
        assert (e.last_tick - 1_704_067_200_000) // 60_000 == first_below + 1
        assert closed.pnl.price_close == 47100.0  # the sell's fill, not the 47000 candle
        row = e.persisted().history[-1]
        expected = position_pnl(_row(e), 47100.0, slippage_pct=0.1, fee_pct=0.1)
        assert row.pnl.pnl_percentage == pytest.approx(expected.pnl_percentage)
    finally:
        finish(e, broker)


def _row(e: Any) -> Any:
    from btkit.stats import signal_row_of

    return signal_row_of(e.inst.history[-1])
