"""A live run through the real ccxt client against the fake Binance USD-M server, end to end.

Exchange and broker are both ``binance-futures``, selected as a user selects them; the run is driven by a
replay clock over the candles the fake serves, and the fake's mark price follows the replay.
"""

from __future__ import annotations

from collections import Counter
from decimal import ROUND_DOWN, Decimal
from pathlib import Path

import pytest
from e2e_helpers import (
    COST,
    LAST_MINUTE,
    SIGNAL_ID,
    SIGNAL_MINUTE,
    SPIKE_MINUTE,
    STOP_LOSS,
    STRATEGY,
    SYMBOL,
    T0,
    TAKE_PROFIT,
    SteppedReplayClock,
    broker_options,
    get_signal,
    mark_before,
    minute,
    script_rows,
    write_btkit_toml,
)

import btkit
from btkit import candles as ca
from btkit.broker_payloads import client_order_id
from btkit.engine import live
from btkit.model import Closed, Opened
from btkit_binance_futures.testing import FakeBinanceFutures, protection_in_order

EXCHANGE = "binance-futures"


def configure(fake: FakeBinanceFutures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What a user does: btkit.toml for the exchange, the broker selected with its options, state on disk."""
    monkeypatch.chdir(tmp_path)
    write_btkit_toml(tmp_path, fake.url)
    live.SETTINGS.broker = "binance-futures"
    live.SETTINGS.broker_options = broker_options(fake.url)
    dump = tmp_path / "dump"
    btkit.use_persistence("file", root=str(dump))
    btkit.add_strategy(STRATEGY, get_signal, interval="1m")
    return dump


def test_the_script_spikes_through_the_take_profit_on_the_engine_price_only() -> None:
    """The candle script does what the e2e tests rely on: the engine's VWAP at the minute after the
    spike is above the take-profit while every close (the fake's mark) stays between stop and target."""
    rows = script_rows()
    arr = ca.to_array([[r[0], *map(float, r[1:])] for r in rows])
    after_spike = minute(SPIKE_MINUTE + 1)
    window = arr[(arr[:, 0] >= after_spike - 5 * 60_000) & (arr[:, 0] < after_spike)]
    assert ca.vwap(window[:, 2], window[:, 3], window[:, 4], window[:, 5]) >= TAKE_PROFIT
    before = arr[(arr[:, 0] >= after_spike - 6 * 60_000) & (arr[:, 0] < after_spike - 60_000)]
    assert ca.vwap(before[:, 2], before[:, 3], before[:, 4], before[:, 5]) < TAKE_PROFIT
    assert all(STOP_LOSS < mark_before(minute(i)) < TAKE_PROFIT for i in range(LAST_MINUTE + 1))


def test_signal_entry_protection_take_profit_close_and_report(
    binance_keys: FakeBinanceFutures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = binance_keys
    fake.set_klines(SYMBOL, "1m", script_rows())
    configure(fake, tmp_path, monkeypatch)
    positions: dict[int, Decimal] = {}

    def before_minute(when: int) -> None:
        positions[when] = fake.position(SYMBOL)  # what the exchange holds as the minute starts
        fake.set_price(mark_before(when), SYMBOL)

    clock = SteppedReplayClock(T0, end=minute(LAST_MINUTE), before_minute=before_minute)
    results = list(btkit.Live.run(SYMBOL, strategy=STRATEGY, exchange=EXCHANGE, clock=clock))

    assert [type(r) for r in results] == [Opened, Closed]
    opened, closed = results
    assert opened.timestamp == minute(SIGNAL_MINUTE)
    assert isinstance(closed, Closed)
    assert closed.close_reason == "take_profit"
    assert closed.timestamp == minute(SPIKE_MINUTE + 1)

    # the orders the fake accepted, in order: entry, stop-loss, take-profit, the engine's close
    log = protection_in_order(fake.orders_log)  # SL and TP leave at once, in either order
    assert [(o.kind, o.type, o.side, o.reduce_only) for o in log] == [
        ("order", "LIMIT", "BUY", False),
        ("algo", "STOP_MARKET", "SELL", True),
        ("algo", "TAKE_PROFIT_MARKET", "SELL", True),
        ("order", "MARKET", "SELL", True),
    ]
    entry, stop, take, close = log
    assert entry.client_id == client_order_id(SIGNAL_ID, "open")
    assert close.client_id == client_order_id(SIGNAL_ID, "close")
    assert all(n == 1 for n in Counter(o.client_id for o in log).values())  # one placement per id
    # a limit at the engine's price (truncated to the 0.1 tick), sized cost / price (truncated to 0.001);
    # the position is booked at the exchange's fill, not at the limit (issue 16: real fill prices)
    entry_price = Decimal(entry.price or "0")
    entry_order = next(o for o in fake.orders(SYMBOL) if o["clientOrderId"] == entry.client_id)
    assert Decimal(str(opened.signal.price_open)) == Decimal(entry_order["avgPrice"]) <= entry_price
    assert entry_price == entry_price.quantize(Decimal("0.1"), ROUND_DOWN)
    sized = (Decimal(str(COST)) / entry_price).quantize(Decimal("0.001"), ROUND_DOWN)
    filled = Decimal(entry_order["executedQty"])
    assert filled == Decimal(entry.quantity) == sized > 0
    assert Decimal(stop.quantity) == Decimal(take.quantity) == Decimal(close.quantity) == filled
    assert Decimal(stop.trigger_price or "0") == Decimal(str(STOP_LOSS))
    assert Decimal(take.trigger_price or "0") == Decimal(str(TAKE_PROFIT))

    # the position lived exactly between the open and the close; flat and clean at the end
    held = [m for m, amount in positions.items() if amount != 0]
    assert held == [minute(i) for i in range(SIGNAL_MINUTE + 1, SPIKE_MINUTE + 2)]
    assert fake.position(SYMBOL) == 0
    assert fake.algo_orders(open_only=True) == []
    assert [o["status"] for o in fake.orders(SYMBOL)] == ["FILLED", "FILLED"]

    report = btkit.Live.dump(SYMBOL, strategy=STRATEGY, exchange=EXCHANGE, path=tmp_path / "reports")
    text = report.read_text(encoding="utf-8")
    assert report.is_file() and "take_profit" in text and SYMBOL in text


def test_the_exchange_take_profit_fires_first_the_engine_closes_and_nothing_stays_on_the_book(
    binance_keys: FakeBinanceFutures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The price runs through the take-profit within a minute: Binance's TAKE_PROFIT_MARKET fills before
    the engine's (lagging) VWAP gets there. The engine's next check finds the position gone and closes
    the signal (reason ``closed``); the bot's stop-loss must not be left behind on the book, where it
    would later cut into the next position on the symbol."""
    fake = binance_keys
    through = {SPIKE_MINUTE: (50_600.0, 51_150.0, 50_590.0, 51_100.0, 10.0)}  # closes above the target
    fake.set_klines(SYMBOL, "1m", script_rows(overrides=through))
    configure(fake, tmp_path, monkeypatch)

    clock = SteppedReplayClock(
        T0,
        end=minute(LAST_MINUTE),
        before_minute=lambda when: fake.set_price(mark_before(when, through), SYMBOL),
    )
    results = list(btkit.Live.run(SYMBOL, strategy=STRATEGY, exchange=EXCHANGE, clock=clock))

    assert [type(r) for r in results] == [Opened, Closed]
    closed = results[1]
    # the exchange's take-profit closed it: the engine books that fill (reason, price) when it finds the
    # position gone (issue 16: real fill prices), at the minute it looks
    assert isinstance(closed, Closed) and closed.close_reason == "take_profit"
    assert closed.timestamp == minute(SPIKE_MINUTE + 1)
    assert closed.pnl.price_close >= TAKE_PROFIT
    assert [(o.type, o.client_id.startswith("btk")) for o in protection_in_order(fake.orders_log)] == [
        ("LIMIT", True),
        ("STOP_MARKET", True),
        ("TAKE_PROFIT_MARKET", True),
    ]
    take = next(a for a in fake.algo_orders() if a["orderType"] == "TAKE_PROFIT_MARKET")
    assert take["algoStatus"] == "FINISHED"  # Binance's take-profit closed the position
    assert fake.position(SYMBOL) == 0
    assert fake.algo_orders(open_only=True) == []  # the stop-loss went with it


def test_a_sync_strategy_reads_candles_from_the_ccxt_exchange_in_live_mode(
    fake_binance: FakeBinanceFutures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``btkit paper --exchange binance-futures --strategy smacross`` does: a plain ``def``
    get_signal (run in a worker thread) asks for candles the engine has not cached yet."""
    fake_binance.set_klines(SYMBOL, "1m", script_rows())
    monkeypatch.chdir(tmp_path)
    write_btkit_toml(tmp_path, fake_binance.url)
    btkit.use_persistence("file", root=str(tmp_path / "dump"))
    seen: list[int] = []
    errors: list[str] = []

    def get_signal(symbol: str, when: object, current_price: float) -> None:
        seen.append(len(btkit.get_candles(symbol, "1m", 8)))

    btkit.add_strategy("sync-reader", get_signal, interval="1m")
    btkit.listen_error(lambda event: errors.append(str(event)))
    clock = btkit.ReplayClock(T0, end=minute(2))
    assert list(btkit.Live.run(SYMBOL, strategy="sync-reader", exchange=EXCHANGE, clock=clock)) == []
    assert errors == []
    assert seen == [8, 8, 8]
