"""The Binance USD-M broker through the real ccxt client against the fake server: the normal flows."""

from __future__ import annotations

import asyncio
from collections import Counter
from decimal import Decimal

import attrs
import pytest

from btkit.broker_payloads import ExchangeFill, client_order_id
from btkit.errors import ConfigError, OrderDeletedError, OrderRejectedError, OrderTransientError
from btkit_binance_futures import BinanceFuturesBroker
from btkit_binance_futures.testing import FakeBinanceFutures, broker_for, commit_payload, protection_in_order
from btkit_binance_futures.testing import run_scenario as run

ORDER = "/fapi/v1/order"
ALGO = "/fapi/v1/algoOrder"


def confirmed(out: object) -> bool:
    """A confirmed broker call: True, or the exchange's fill (an ``ExchangeFill``) for entries and exits."""
    return out is True or isinstance(out, ExchangeFill)


def algos(fake: FakeBinanceFutures) -> list[tuple[str, str, str]]:
    return sorted(
        (a["orderType"], a["quantity"], a["triggerPrice"]) for a in fake.algo_orders(open_only=True)
    )


def assert_one_order_per_client_id(fake: FakeBinanceFutures) -> None:
    counts = Counter(o.client_id for o in fake.orders_log)
    assert all(n == 1 for n in counts.values()), counts


def test_open_places_the_entry_then_reduce_only_protection(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)
    p = commit_payload("open")
    assert confirmed(run(broker, lambda: broker.on_signal_open_commit(p)))
    entry, sl, tp = protection_in_order(fake.orders_log)
    assert (entry.kind, entry.client_id, entry.type, entry.side, entry.quantity, entry.price) == (
        "order",
        p.client_order_id,
        "LIMIT",
        "BUY",
        "0.02",
        "50000",
    )
    assert (sl.type, sl.side, sl.quantity, sl.trigger_price, sl.reduce_only) == (
        "STOP_MARKET",
        "SELL",
        "0.02",
        "49000",
        True,
    )
    assert (tp.type, tp.side, tp.quantity, tp.trigger_price, tp.reduce_only) == (
        "TAKE_PROFIT_MARKET",
        "SELL",
        "0.02",
        "52000",
        True,
    )
    assert fake.position("BTCUSDT") == Decimal("0.02")


def test_a_resting_limit_entry_is_polled_until_the_price_fills_it(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake, entry_timeout_seconds=10)
    p = commit_payload("open", price_open=49900.0, price_stop_loss=49000.0)

    async def scenario() -> bool:
        async def move_price_once_placed() -> None:
            while fake.order_count(p.client_order_id) == 0:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # a few polls see it open
            fake.set_price(49850)

        mover = asyncio.create_task(asyncio.wait_for(move_price_once_placed(), 10))
        result = await broker.on_signal_open_commit(p)
        await mover
        return result

    assert confirmed(run(broker, scenario))
    polls = [
        r for r in fake.requests_to(ORDER, "GET") if r.params.get("origClientOrderId") == p.client_order_id
    ]
    assert len(polls) >= 3  # looked up before sending, then polled while open
    assert fake.orders(symbol="BTCUSDT")[0]["status"] == "FILLED"
    assert algos(fake) == [("STOP_MARKET", "0.02", "49000"), ("TAKE_PROFIT_MARKET", "0.02", "52000")]


def test_entry_timeout_cancels_and_the_retry_uses_a_fresh_round_id(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake, entry_timeout_seconds=0.3)
    first = commit_payload("open", price_open=49000.0, price_stop_loss=48000.0)

    async def scenario() -> None:
        with pytest.raises(
            OrderTransientError, match=r"not filled within 0\.3s; cancelled; the engine retries"
        ):
            await broker.on_signal_open_commit(first)
        assert fake.orders()[0]["status"] == "CANCELED"
        fake.set_price(48990)  # now a new limit at 49000 is marketable
        retry = commit_payload("open", price_open=49000.0, price_stop_loss=48000.0, attempt=2)
        assert confirmed(await broker.on_signal_open_commit(retry))

    run(broker, scenario)
    entries = [o for o in fake.orders_log if o.kind == "order"]
    assert len(entries) == 2 and entries[0].client_id == first.client_order_id
    assert entries[1].client_id != first.client_order_id and entries[1].client_id.startswith("btk")
    assert fake.position("BTCUSDT") == Decimal("0.02")
    assert_one_order_per_client_id(fake)


def test_timeout_after_a_partial_fill_closes_the_partial(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake, entry_timeout_seconds=0.3)
    p = commit_payload("open")
    fake.inject(ORDER, "partial_fill", method="POST", fraction="0.5")
    with pytest.raises(OrderTransientError, match=r"cancelled and the partial fill of 0\.01 closed"):
        run(broker, lambda: broker.on_signal_open_commit(p))
    _entry, flatten = fake.orders_log
    assert (flatten.type, flatten.side, flatten.quantity, flatten.reduce_only) == (
        "MARKET",
        "SELL",
        "0.01",
        True,
    )
    assert fake.position("BTCUSDT") == 0
    assert fake.algo_orders() == []  # never protected a position that is being abandoned


def test_partial_fill_of_a_market_entry_is_protected_at_the_filled_size(
    binance_keys: FakeBinanceFutures,
) -> None:
    fake = binance_keys
    broker = broker_for(fake, entry_order_type="market")
    fake.inject(ORDER, "partial_fill", method="POST", fraction="0.4")
    assert confirmed(run(broker, lambda: broker.on_signal_open_commit(commit_payload("open"))))
    assert fake.orders()[0]["status"] == "EXPIRED" and fake.orders()[0]["executedQty"] == "0.008"
    assert fake.position("BTCUSDT") == Decimal("0.008")
    assert algos(fake) == [("STOP_MARKET", "0.008", "49000"), ("TAKE_PROFIT_MARKET", "0.008", "52000")]


def test_a_limit_entry_filled_in_parts_is_protected_at_the_total(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake, entry_timeout_seconds=10)
    p = commit_payload("open")
    fake.inject(ORDER, "partial_fill", method="POST", fraction="0.5")

    async def scenario() -> bool:
        async def release() -> None:
            while not fake.orders() or fake.orders()[0]["status"] != "PARTIALLY_FILLED":
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.15)
            fake.lift_fill_caps()

        task = asyncio.create_task(asyncio.wait_for(release(), 10))
        result = await broker.on_signal_open_commit(p)
        await task
        return result

    assert confirmed(run(broker, scenario))
    assert fake.position("BTCUSDT") == Decimal("0.02")
    assert algos(fake) == [("STOP_MARKET", "0.02", "49000"), ("TAKE_PROFIT_MARKET", "0.02", "52000")]


def test_quantities_and_prices_are_truncated_to_step_and_tick(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    fake.set_price("33333.3")
    broker = broker_for(fake)
    p = commit_payload("open", price_open=33333.37, price_stop_loss=32999.99, price_take_profit=34000.06)
    assert confirmed(run(broker, lambda: broker.on_signal_open_commit(p)))
    entry, *protection = fake.orders_log
    by_type = {o.type: o for o in protection}  # SL and TP leave at once, in either order
    sl, tp = by_type["STOP_MARKET"], by_type["TAKE_PROFIT_MARKET"]
    assert (entry.quantity, entry.price) == ("0.03", "33333.3")  # 1000/33333.3 = 0.030000003 → 0.03
    assert (sl.trigger_price, tp.trigger_price) == ("32999.9", "34000")


def test_below_min_notional_is_rejected_before_sending(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)
    with pytest.raises(
        OrderRejectedError,
        match=r"notional 50\.0000 USDT \(cost 60\.0 x 1\.0\) is below Binance's minimum notional 100",
    ):
        run(broker, lambda: broker.on_signal_open_commit(commit_payload("open", cost=60.0)))
    assert fake.requests_to(ORDER, "POST") == []


def test_close_is_reduce_only_and_cleans_up_protection(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)

    async def scenario() -> None:
        await broker.on_signal_open_commit(commit_payload("open"))
        assert confirmed(await broker.on_signal_close_commit(commit_payload("close")))

    run(broker, scenario)
    close = fake.orders_log[-1]
    assert (close.type, close.side, close.quantity, close.reduce_only) == ("MARKET", "SELL", "0.02", True)
    assert fake.position("BTCUSDT") == 0
    assert fake.algo_orders(open_only=True) == []


def test_close_after_the_stop_already_fired_confirms_without_an_order(
    binance_keys: FakeBinanceFutures,
) -> None:
    fake = binance_keys
    broker = broker_for(fake)

    async def scenario() -> None:
        await broker.on_signal_open_commit(commit_payload("open"))
        fake.set_price(48900)  # the stop-loss triggers on the exchange
        assert fake.position("BTCUSDT") == 0
        with pytest.raises(OrderDeletedError, match="position is gone"):
            await broker.on_active_check(commit_payload("open"))
        assert confirmed(
            await broker.on_signal_close_commit(commit_payload("close", close_reason="stop_loss"))
        )

    run(broker, scenario)
    assert [o.kind for o in fake.orders_log] == ["order", "algo", "algo"]
    assert fake.algo_orders(open_only=True) == []  # the take-profit leftover was cancelled


def test_partial_close_resizes_the_protection(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)

    async def scenario() -> None:
        await broker.on_signal_open_commit(commit_payload("open"))
        assert await broker.on_partial_profit_commit(commit_payload("partial_profit", percent_to_close=25.0))

    run(broker, scenario)
    assert fake.position("BTCUSDT") == Decimal("0.015")
    assert algos(fake) == [("STOP_MARKET", "0.015", "49000"), ("TAKE_PROFIT_MARKET", "0.015", "52000")]


def test_partial_below_min_quantity_is_rejected(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)

    async def scenario() -> None:
        await broker.on_signal_open_commit(commit_payload("open"))
        with pytest.raises(OrderRejectedError, match=r"below the minimum quantity 0\.001; nothing closed"):
            await broker.on_partial_loss_commit(commit_payload("partial_loss", percent_to_close=1.0))

    run(broker, scenario)
    assert fake.position("BTCUSDT") == Decimal("0.02")


def test_trailing_and_breakeven_move_only_the_stop(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)

    async def scenario() -> None:
        await broker.on_signal_open_commit(commit_payload("open"))
        await broker.on_trailing_stop_commit(commit_payload("trailing_stop", new_stop_loss_price=49500.0))
        await broker.on_trailing_stop_commit(commit_payload("trailing_stop", new_stop_loss_price=49700.0))
        fake.set_price(50500)
        await broker.on_breakeven_commit(commit_payload("breakeven", new_stop_loss_price=50000.0))
        await broker.on_trailing_take_commit(commit_payload("trailing_take", new_take_profit_price=53000.0))

    run(broker, scenario)
    assert algos(fake) == [("STOP_MARKET", "0.02", "50000"), ("TAKE_PROFIT_MARKET", "0.02", "53000")]
    stops = [o for o in fake.orders_log if o.type == "STOP_MARKET"]
    assert [s.trigger_price for s in stops] == ["49000", "49500", "49700", "50000"]
    assert len([o for o in fake.orders_log if o.type == "TAKE_PROFIT_MARKET"]) == 2
    assert_one_order_per_client_id(fake)


def test_average_buy_adds_and_resizes_protection(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)

    async def scenario() -> None:
        await broker.on_signal_open_commit(commit_payload("open"))
        fake.set_price(49500)
        await broker.on_average_buy_commit(commit_payload("average_buy", current_price=49500.0, cost=495.0))

    run(broker, scenario)
    assert fake.position("BTCUSDT") == Decimal("0.03")
    assert algos(fake) == [("STOP_MARKET", "0.03", "49000"), ("TAKE_PROFIT_MARKET", "0.03", "52000")]


def test_active_check_repairs_missing_protection(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)

    async def scenario() -> None:
        await broker.on_signal_open_commit(commit_payload("open"))
        client = await broker.client()
        for a in fake.algo_orders(open_only=True):  # someone cancels the stop by hand
            if a["orderType"] == "STOP_MARKET":
                await client.cancel_order(
                    None, "BTC/USDT:USDT", {"clientAlgoId": a["clientAlgoId"], "trigger": True}
                )
        assert await broker.on_active_check(commit_payload("open")) is True

    run(broker, scenario)
    assert algos(fake) == [("STOP_MARKET", "0.02", "49000"), ("TAKE_PROFIT_MARKET", "0.02", "52000")]


def test_a_resting_entry_rests_on_the_book_and_the_activation_adopts_it(
    binance_keys: FakeBinanceFutures,
) -> None:
    fake = binance_keys
    broker = broker_for(fake)
    rest = commit_payload("open", type="schedule", price_open=49500.0)
    rest = attrs.evolve(rest, client_order_id=client_order_id("signal-1", "schedule"))

    async def scenario() -> None:
        assert confirmed(await broker.on_signal_open_commit(rest))
        assert await broker.on_schedule_check(rest) is True
        fake.set_price(49400)  # the resting limit fills on the exchange …
        assert await broker.on_schedule_check(rest) is True  # … and is protected at once
        assert algos(fake) == [("STOP_MARKET", "0.02", "49000"), ("TAKE_PROFIT_MARKET", "0.02", "52000")]
        # the engine activates the signal: the open adopts the filled resting order
        assert confirmed(await broker.on_signal_open_commit(commit_payload("open", price_open=49500.0)))

    run(broker, scenario)
    entries = [o for o in fake.orders_log if o.kind == "order"]
    assert [(o.client_id, o.type, o.price) for o in entries] == [(rest.client_order_id, "LIMIT", "49500")]
    assert fake.position("BTCUSDT") == Decimal("0.02")
    assert_one_order_per_client_id(fake)


def test_cancelling_a_resting_entry(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)
    rest = commit_payload("open", type="schedule", price_open=49500.0)
    rest = attrs.evolve(rest, client_order_id=client_order_id("signal-1", "schedule"))

    async def scenario() -> None:
        await broker.on_signal_open_commit(rest)
        assert await broker.on_signal_cancel_commit(commit_payload("cancel")) is True
        assert await broker.on_signal_cancel_commit(commit_payload("cancel", attempt=2)) is True
        with pytest.raises(OrderDeletedError, match=r"no longer on Binance \(CANCELED"):
            await broker.on_schedule_check(rest)

    run(broker, scenario)
    assert [o["status"] for o in fake.orders()] == ["CANCELED"]


def test_cancelling_a_partly_filled_resting_entry_closes_the_fill(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)
    rest = commit_payload("open", type="schedule", price_open=49500.0)
    rest = attrs.evolve(rest, client_order_id=client_order_id("signal-1", "schedule"))
    fake.inject(ORDER, "partial_fill", method="POST", fraction="0.5")

    async def scenario() -> None:
        await broker.on_signal_open_commit(rest)
        fake.set_price(49400)
        assert await broker.on_schedule_check(rest) is True
        assert algos(fake) == [("STOP_MARKET", "0.01", "49000"), ("TAKE_PROFIT_MARKET", "0.01", "52000")]
        assert await broker.on_signal_cancel_commit(commit_payload("cancel")) is True

    run(broker, scenario)
    assert fake.position("BTCUSDT") == 0
    assert fake.algo_orders(open_only=True) == []
    assert [(o.type, o.quantity, o.reduce_only) for o in fake.orders_log if o.kind == "order"] == [
        ("LIMIT", "0.02", False),
        ("MARKET", "0.01", True),
    ]


def test_short_positions_in_one_way_mode(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)
    p = commit_payload("open", position="short", price_stop_loss=51000.0, price_take_profit=48000.0)

    async def scenario() -> None:
        await broker.on_signal_open_commit(p)
        assert fake.position("BTCUSDT") == Decimal("-0.02")
        await broker.on_signal_close_commit(commit_payload("close", position="short"))

    run(broker, scenario)
    sides = [(o.type, o.side) for o in protection_in_order(fake.orders_log)]
    assert sides == [
        ("LIMIT", "SELL"),
        ("STOP_MARKET", "BUY"),
        ("TAKE_PROFIT_MARKET", "BUY"),
        ("MARKET", "BUY"),
    ]
    assert fake.position("BTCUSDT") == 0


def test_hedge_mode_holds_long_and_short_and_never_sends_reduce_only() -> None:
    with FakeBinanceFutures(hedge_mode=True) as fake, pytest.MonkeyPatch.context() as mp:
        mp.setenv("BINANCE_API_KEY", fake.api_key)
        mp.setenv("BINANCE_API_SECRET", fake.api_secret)
        broker = broker_for(fake, hedge_mode=True)

        async def scenario() -> None:
            await broker.wait_for_init()
            await broker.on_signal_open_commit(commit_payload("open", signal_id="L"))
            await broker.on_signal_open_commit(
                commit_payload(
                    "open",
                    signal_id="S",
                    position="short",
                    price_stop_loss=51000.0,
                    price_take_profit=48000.0,
                )
            )
            assert fake.position("BTCUSDT", "LONG") == Decimal("0.02")
            assert fake.position("BTCUSDT", "SHORT") == Decimal("-0.02")
            await broker.on_signal_close_commit(commit_payload("close", signal_id="L"))
            assert fake.position("BTCUSDT", "LONG") == 0
            assert fake.position("BTCUSDT", "SHORT") == Decimal("-0.02")
            assert {a["positionSide"] for a in fake.algo_orders(open_only=True)} == {"SHORT"}

        run(broker, scenario)
        assert all(o.position_side in ("LONG", "SHORT") and not o.reduce_only for o in fake.orders_log)
        assert all("reduceOnly" not in r.params for r in fake.requests if r.method == "POST")


def test_wait_for_init_applies_position_mode_leverage_and_margin_mode(
    binance_keys: FakeBinanceFutures,
) -> None:
    fake = binance_keys
    broker = broker_for(fake, hedge_mode=True, leverage=7, margin_mode="isolated", symbols="BTCUSDT,ETHUSDT")
    run(broker, broker.wait_for_init)
    assert fake.hedge_mode is True
    assert (fake.leverage("BTCUSDT"), fake.leverage("ETHUSDT")) == (7, 7)
    assert fake.margin_type("BTCUSDT") == fake.margin_type("ETHUSDT") == "ISOLATED"


def test_signal_multiplier_sets_leverage_when_not_configured(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)
    p = commit_payload("open", cost=100.0, multiplier=10.0, isolated=False)
    run(broker, lambda: broker.on_signal_open_commit(p))
    assert fake.leverage("BTCUSDT") == 10 and fake.margin_type("BTCUSDT") == "CROSSED"
    assert fake.orders_log[0].quantity == "0.02"  # 100 USDT margin x 10 = 1000 USDT notional


def test_switching_position_mode_with_an_open_position_is_a_clear_refusal(
    binance_keys: FakeBinanceFutures,
) -> None:
    fake = binance_keys
    fake.set_position("BTCUSDT", "0.01")
    broker = broker_for(fake, hedge_mode=True, expected_positions={"BTCUSDT": "long"})
    with pytest.raises(OrderRejectedError, match="cannot switch the Binance account to hedge mode"):
        run(broker, broker.wait_for_init)


def test_configuration_rules(binance_keys: FakeBinanceFutures, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="API keys come only from BINANCE_API_KEY"):
        BinanceFuturesBroker(api_key="k", secret="s")
    with pytest.raises(ConfigError, match="unknown option"):
        BinanceFuturesBroker(leverge=3)
    with pytest.raises(ConfigError, match="leverage must be a whole number from 1 to 125"):
        BinanceFuturesBroker(leverage=200)
    b = BinanceFuturesBroker(
        hedge_mode="true", leverage="5", entry_timeout_seconds="2.5", symbols="BTCUSDT, ETHUSDT"
    )
    assert (b.config.hedge_mode, b.config.leverage, b.config.entry_timeout_seconds) == (True, 5, 2.5)
    assert b.config.symbols == ("BTCUSDT", "ETHUSDT")
    monkeypatch.delenv("BINANCE_API_SECRET")
    with pytest.raises(ConfigError, match="set BINANCE_API_KEY and BINANCE_API_SECRET"):
        BinanceFuturesBroker()


def test_take_profit_filled_on_binance_reports_its_fill_price(binance_keys: FakeBinanceFutures) -> None:
    """A TP at 52000 that filled at 52150 (the mark jumped past it) is reported at 52150, with its time."""
    fake = binance_keys
    broker = broker_for(fake)

    async def scenario() -> tuple[object, BaseException]:
        entry = await broker.on_signal_open_commit(commit_payload("open"))
        fake.set_price(52150)
        with pytest.raises(OrderDeletedError) as info:
            await broker.on_active_check(commit_payload("open"))
        return entry, info.value

    entry, gone = run(broker, scenario)
    assert isinstance(entry, ExchangeFill) and entry.price == 50000.0 and entry.quantity == 0.02
    fill = gone.fill  # type: ignore[attr-defined]
    assert isinstance(fill, ExchangeFill)
    last = fake.trades("BTCUSDT")[-1]
    assert (fill.price, fill.reason, fill.quantity, fill.time) == (52150.0, "take_profit", 0.02, last["time"])
    assert algos(fake) == []  # the stop left behind was cancelled
