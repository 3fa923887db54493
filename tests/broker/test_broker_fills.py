"""Real fill prices: what a broker reports the exchange did is what the engine books.

A broker may return an ``ExchangeFill`` (entry or exit filled at a price other than the candle's), and
``on_active_check`` may raise ``OrderDeletedError(fill=...)`` when the exchange closed the position (its
stop or take-profit filled, or it filled while the bot was down). The Closed signal, its pnl and the
persisted history then carry the exchange's price, time and reason — not the current candle price.
"""

from __future__ import annotations

from typing import Any

import pytest
from broker_helpers import CLOSE, T0, ScriptedBroker, path

from btkit import Closed, Opened, Signal
from btkit.broker_payloads import ExchangeFill
from btkit.engine import live
from btkit.errors import OrderDeletedError
from btkit.model import MINUTE_MS, Active

LONG = Signal(position="long", price_take_profit=110.0, price_stop_loss=90.0, id="f1")


@pytest.fixture(autouse=True)
def _fast(btkit_clean: None) -> None:
    live.SETTINGS.broker_timeout_seconds = 5.0


class FillingBroker(ScriptedBroker):
    """Entries fill at ``entry``; a close fills at ``exit``; once ``gone`` is set the exchange has closed
    the position at ``gone`` (price, time, reason)."""

    def __init__(self, entry: float | None = None, exit: float | None = None) -> None:
        super().__init__()
        self.entry, self.exit = entry, exit
        self.gone: ExchangeFill | None = None

    async def on_signal_open_commit(self, p: Any) -> Any:
        await super().on_signal_open_commit(p)
        return ExchangeFill(price=self.entry, time=p.when) if self.entry else True

    async def on_signal_close_commit(self, p: Any) -> Any:
        await super().on_signal_close_commit(p)
        return ExchangeFill(price=self.exit, time=p.when) if self.exit else True

    def on_active_check(self, p: Any) -> bool:
        if self.gone is not None:
            raise OrderDeletedError("the take-profit filled on the exchange", fill=self.gone)
        return True


def test_exchange_side_close_is_booked_at_the_exchange_fill(engine: Any) -> None:
    broker = FillingBroker()
    e = engine(broker, prices=path((100, 60)), signals=[LONG, None])
    opened = e.tick()
    assert isinstance(opened, Opened) and opened.signal is not None
    assert isinstance(e.tick(), Active)
    fill_time = e.when - MINUTE_MS // 2  # between the last tick and this one
    broker.gone = ExchangeFill(price=110.7, time=fill_time, reason="take_profit")
    closed = e.tick()
    assert isinstance(closed, Closed)
    assert closed.close_reason == "take_profit"
    assert closed.pnl.price_close == pytest.approx(110.7)
    assert closed.pnl.pnl_percentage > 10.0  # the candle (100) would have booked a loss of the fees
    assert closed.close_timestamp == fill_time
    assert broker.calls_of(CLOSE) == []  # nothing left to close on the exchange
    saved = e.persisted().history[-1]
    assert saved.pnl == closed.pnl and saved.close_reason == "take_profit"


def test_exchange_close_without_a_fill_falls_back_to_the_candle(engine: Any) -> None:
    broker = FillingBroker()
    e = engine(broker, prices=path((100, 60)), signals=[LONG, None])
    e.tick(), e.tick()

    def gone(p: Any) -> bool:
        raise OrderDeletedError("closed by hand")

    broker.on_active_check = gone  # type: ignore[method-assign]
    closed = e.tick()
    assert isinstance(closed, Closed) and closed.close_reason == "closed"
    assert closed.pnl.price_close == pytest.approx(100.0)


def test_entry_and_exit_fills_replace_the_decision_prices(engine: Any) -> None:
    broker = FillingBroker(entry=100.6, exit=111.2)
    e = engine(broker, prices=path((100, 8), (112, 60)), signals=[LONG, None])
    opened = e.tick()
    assert isinstance(opened, Opened) and opened.signal is not None
    assert opened.signal.price_open == pytest.approx(100.6)
    assert e.inst.state.pending is not None and e.inst.state.pending.price_open == pytest.approx(100.6)
    closed = e.tick_until(lambda r: isinstance(r, Closed))
    assert isinstance(closed, Closed) and closed.close_reason == "take_profit"
    assert closed.pnl.price_open == pytest.approx(100.6)
    assert closed.pnl.price_close == pytest.approx(111.2)
    assert e.persisted().history[-1].pnl == closed.pnl
    assert closed.close_timestamp >= T0
