"""Unknown outcomes, duplicates, rejections, protection failures, bounded reads, reconciliation, secrets."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from btkit.errors import OrderDeletedError, OrderRejectedError, OrderTransientError
from btkit_binance_futures.testing import FakeBinanceFutures, broker_for, commit_payload
from btkit_binance_futures.testing import run_scenario as run

ORDER = "/fapi/v1/order"
ALGO = "/fapi/v1/algoOrder"
POSITIONS = "/fapi/v3/positionRisk"


def confirmed(out: object) -> bool:
    """A confirmed broker call: True, or the exchange's fill (an ``ExchangeFill``) for entries and exits."""
    from btkit.broker_payloads import ExchangeFill

    return out is True or isinstance(out, ExchangeFill)


def posts_with(fake: FakeBinanceFutures, path: str, key: str, cid: str) -> int:
    return sum(1 for r in fake.requests_to(path, "POST") if r.params.get(key) == cid)


def assert_one_order_per_client_id(fake: FakeBinanceFutures) -> None:
    counts = Counter(o.client_id for o in fake.orders_log)
    assert all(n == 1 for n in counts.values()), counts


def open_algos(fake: FakeBinanceFutures) -> list[tuple[str, str, str]]:
    return sorted(
        (a["orderType"], a["quantity"], a["triggerPrice"]) for a in fake.algo_orders(open_only=True)
    )


# ---------------------------------------------------------------- unknown outcomes
@pytest.mark.parametrize("kind", ["accept_then_drop", "accept_then_stall"])
def test_lost_entry_response_places_no_duplicate(binance_keys: FakeBinanceFutures, kind: str) -> None:
    fake = binance_keys
    p = commit_payload("open")
    fake.inject(ORDER, kind, method="POST", seconds=5)
    broker = broker_for(fake, request_timeout_ms=400)
    assert confirmed(run(broker, lambda: broker.on_signal_open_commit(p)))
    assert fake.order_count(p.client_order_id) == 1
    assert posts_with(fake, ORDER, "newClientOrderId", p.client_order_id) == 1  # looked up, not resent
    assert fake.position("BTCUSDT") == Decimal("0.02")
    assert open_algos(fake) == [("STOP_MARKET", "0.02", "49000"), ("TAKE_PROFIT_MARKET", "0.02", "52000")]


@pytest.mark.parametrize(
    ("kind", "options"), [("stall", {"seconds": 5}), ("status", {"status": 503}), ("drop", {})]
)
def test_unprocessed_entry_is_looked_up_then_resent_once(
    binance_keys: FakeBinanceFutures, kind: str, options: dict[str, Any]
) -> None:
    fake = binance_keys
    p = commit_payload("open")
    fake.inject(ORDER, kind, method="POST", **options)
    broker = broker_for(fake, request_timeout_ms=400)
    assert confirmed(run(broker, lambda: broker.on_signal_open_commit(p)))
    assert posts_with(fake, ORDER, "newClientOrderId", p.client_order_id) == 2
    assert fake.order_count(p.client_order_id) == 1
    lookups = [
        r for r in fake.requests_to(ORDER, "GET") if r.params.get("origClientOrderId") == p.client_order_id
    ]
    first_post = next(i for i, r in enumerate(fake.requests) if r.method == "POST" and r.path == ORDER)
    second_post = max(i for i, r in enumerate(fake.requests) if r.method == "POST" and r.path == ORDER)
    between = [r for r in fake.requests[first_post:second_post] if r in lookups]
    assert between, "the order must be looked up by client id between the two sends"


def test_rate_limited_send_is_resent_without_doubt(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    p = commit_payload("open")
    fake.inject(ORDER, "rate_limit", method="POST")
    broker = broker_for(fake)
    assert confirmed(run(broker, lambda: broker.on_signal_open_commit(p)))
    assert posts_with(fake, ORDER, "newClientOrderId", p.client_order_id) == 2
    assert fake.order_count(p.client_order_id) == 1


def test_exhausted_unknown_outcomes_are_transient_and_the_retry_finds_the_order(
    binance_keys: FakeBinanceFutures,
) -> None:
    fake = binance_keys
    p = commit_payload("open")
    fault = fake.inject(ORDER, "stall", method="POST", times=None, seconds=3)
    broker = broker_for(fake, request_timeout_ms=300, submit_attempts=2)

    async def scenario() -> None:
        with pytest.raises(OrderTransientError, match="looked up by its client id before any resend"):
            await broker.on_signal_open_commit(p)
        fault.times = fault.hits  # the exchange recovers
        assert confirmed(await broker.on_signal_open_commit(commit_payload("open", attempt=2)))

    run(broker, scenario)
    assert fake.order_count(p.client_order_id) == 1
    assert_one_order_per_client_id(fake)


def test_lost_stop_loss_response_places_no_duplicate(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    fake.inject(ALGO, "accept_then_drop", method="POST", when=lambda q: q.get("type") == "STOP_MARKET")
    broker = broker_for(fake)
    assert confirmed(run(broker, lambda: broker.on_signal_open_commit(commit_payload("open"))))
    assert fake.orders_log[0].type == "LIMIT"  # the entry first, then SL and TP at once
    assert sorted(o.type for o in fake.orders_log) == ["LIMIT", "STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert len(fake.requests_to(ALGO, "POST")) == 2


def test_lost_close_response_places_no_second_close(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    close = commit_payload("close")
    broker = broker_for(fake)

    async def scenario() -> None:
        await broker.on_signal_open_commit(commit_payload("open"))
        fake.inject(
            ORDER,
            "accept_then_drop",
            method="POST",
            when=lambda q: q.get("newClientOrderId") == close.client_order_id,
        )
        assert confirmed(await broker.on_signal_close_commit(close))

    run(broker, scenario)
    assert fake.order_count(close.client_order_id) == 1
    assert [o.type for o in fake.orders_log if o.kind == "order"] == ["LIMIT", "MARKET"]
    assert fake.position("BTCUSDT") == 0


# ---------------------------------------------------------------- definitive answers
@pytest.mark.parametrize(
    ("code", "msg"),
    [
        (-2019, "Margin is insufficient."),
        (-4164, "Order's notional must be no smaller than 100."),
        (-1121, "Invalid symbol."),
    ],
)
def test_definitive_rejection_is_final_and_never_resent(
    binance_keys: FakeBinanceFutures, code: int, msg: str
) -> None:
    fake = binance_keys
    fake.inject(ORDER, "error", method="POST", code=code, msg=msg)
    broker = broker_for(fake)
    with pytest.raises(OrderRejectedError, match=f"rejected by Binance .*code {code}"):
        run(broker, lambda: broker.on_signal_open_commit(commit_payload("open")))
    assert len(fake.requests_to(ORDER, "POST")) == 1
    assert fake.orders_log == [] and fake.position("BTCUSDT") == 0


def test_real_insufficient_margin_is_rejected(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)
    with pytest.raises(OrderRejectedError, match=r"InsufficientFunds: code -2019 Margin is insufficient\."):
        run(broker, lambda: broker.on_signal_open_commit(commit_payload("open", cost=20000.0)))
    assert len(fake.requests_to(ORDER, "POST")) == 1


def test_duplicate_client_id_is_treated_as_placed(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    p = commit_payload("open", price_open=49900.0, price_stop_loss=49000.0)
    broker = broker_for(fake, entry_timeout_seconds=10)

    async def scenario() -> bool:
        await broker.wait_for_init()
        client = await broker.client()
        # a first process placed the order; the exchange does not show it to lookups yet
        await client.create_order(
            "BTC/USDT:USDT", "limit", "buy", 0.02, 49900, {"newClientOrderId": p.client_order_id}
        )
        fake.inject(
            ORDER,
            "error",
            method="GET",
            code=-2013,
            msg="Order does not exist.",
            when=lambda q: q.get("origClientOrderId") == p.client_order_id,
        )

        async def fill_later() -> None:
            while posts_with(fake, ORDER, "newClientOrderId", p.client_order_id) < 2:
                await asyncio.sleep(0.01)
            fake.set_price(49850)

        task = asyncio.create_task(asyncio.wait_for(fill_later(), 10))
        result = await broker.on_signal_open_commit(p)
        await task
        return result

    assert confirmed(run(broker, scenario))
    rejected = [r for r in fake.requests_to(ORDER, "POST") if r.status == 400]
    assert len(rejected) == 1  # the resend answered -4116 …
    assert fake.order_count(p.client_order_id) == 1  # … and nothing new was placed
    assert fake.position("BTCUSDT") == Decimal("0.02")


# ---------------------------------------------------------------- protection failures
def test_rejected_protection_exits_the_position_and_raises(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    fake.inject(
        ALGO,
        "error",
        method="POST",
        code=-2021,
        msg="Order would immediately trigger.",
        when=lambda q: q.get("type") == "TAKE_PROFIT_MARKET",
    )
    broker = broker_for(fake)

    async def scenario() -> None:
        with pytest.raises(
            OrderRejectedError, match=r"protective orders could not be placed .*closed at market"
        ):
            await broker.on_signal_open_commit(commit_payload("open"))
        assert fake.position("BTCUSDT") == 0
        assert fake.algo_orders(open_only=True) == []  # the stop that did get placed was cancelled
        # were the engine to retry, a fresh round opens instead of reusing the exited one
        assert confirmed(await broker.on_signal_open_commit(commit_payload("open", attempt=2)))

    run(broker, scenario)
    kinds = [(o.type, o.side, o.reduce_only) for o in fake.orders_log]
    assert kinds[:3] == [("LIMIT", "BUY", False), ("STOP_MARKET", "SELL", True), ("MARKET", "SELL", True)]
    assert fake.position("BTCUSDT") == Decimal("0.02")
    assert_one_order_per_client_id(fake)


def test_unreachable_protection_exits_and_is_transient(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    fake.inject(ALGO, "stall", method="POST", times=None, seconds=2)
    broker = broker_for(fake, request_timeout_ms=300, submit_attempts=2)
    with pytest.raises(OrderTransientError, match="entry was closed at market"):
        run(broker, lambda: broker.on_signal_open_commit(commit_payload("open")))
    assert fake.position("BTCUSDT") == 0
    assert fake.orders_log[-1].type == "MARKET" and fake.orders_log[-1].reduce_only


# ---------------------------------------------------------------- reads
@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("stall", {"seconds": 2}),
        ("status", {"status": 502}),
        ("rate_limit", {}),
        ("non_json", {}),
        ("drop", {}),
    ],
)
def test_reads_survive_transient_faults(
    binance_keys: FakeBinanceFutures, kind: str, options: dict[str, Any]
) -> None:
    fake = binance_keys
    broker = broker_for(fake, request_timeout_ms=300)

    async def scenario() -> bool:
        await broker.on_signal_open_commit(commit_payload("open"))
        fake.inject(POSITIONS, kind, times=2, **options)
        return await broker.on_active_check(commit_payload("open"))

    assert confirmed(run(broker, scenario))


@pytest.mark.parametrize("kind", ["stall", "status", "rate_limit", "non_json"])
def test_reads_are_bounded_and_never_mistaken_for_a_gone_position(
    binance_keys: FakeBinanceFutures, kind: str
) -> None:
    fake = binance_keys
    broker = broker_for(fake, request_timeout_ms=300, read_attempts=3)

    async def scenario() -> None:
        await broker.on_signal_open_commit(commit_payload("open"))
        before = len(fake.requests_to(POSITIONS))
        fake.inject(POSITIONS, kind, times=None, seconds=0.6)
        with pytest.raises(OrderTransientError, match="failed after 3 attempts"):
            await broker.on_active_check(commit_payload("open"))
        fake.wait_until(lambda f: len(f.requests_to(POSITIONS)) - before >= 3, timeout=5)
        assert len(fake.requests_to(POSITIONS)) - before == 3

    run(broker, scenario)


def test_active_check_reports_a_gone_position(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)

    async def scenario() -> None:
        await broker.on_signal_open_commit(commit_payload("open"))
        assert await broker.on_active_check(commit_payload("open")) is True
        fake.set_price(52100)  # take-profit fires on the exchange
        with pytest.raises(OrderDeletedError, match="the long position is gone on Binance"):
            await broker.on_active_check(commit_payload("open"))

    run(broker, scenario)


# ---------------------------------------------------------------- start-up reconciliation
def test_unknown_exchange_position_refuses_to_trade(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    fake.set_position("ETHUSDT", "1.5", 2900)
    broker = broker_for(fake)

    async def scenario() -> None:
        with pytest.raises(
            OrderRejectedError, match=r"does not know: ETH/USDT:USDT long 1\.5; refusing to trade"
        ):
            await broker.wait_for_init()
        with pytest.raises(OrderRejectedError, match="refusing to trade"):
            await broker.on_signal_open_commit(commit_payload("open"))

    run(broker, scenario)
    assert fake.requests_to(ORDER, "POST") == []


@pytest.mark.parametrize(
    ("options", "ok"),
    [
        ({"foreign_symbols": "ETHUSDT"}, True),
        ({"expected_positions": {"ETHUSDT": "long"}}, True),
        ({"expected_positions": {"ETH/USDT:USDT": None}}, True),
        ({"expected_positions": {"ETHUSDT": "short"}}, False),
        ({"expected_positions": {"BTCUSDT": "long"}}, False),
    ],
)
def test_reconcile_accepts_what_the_engine_knows(
    binance_keys: FakeBinanceFutures, options: dict[str, Any], ok: bool
) -> None:
    fake = binance_keys
    fake.set_position("ETHUSDT", "1.5", 2900)
    broker = broker_for(fake, **options)
    if ok:
        run(broker, broker.wait_for_init)
    else:
        with pytest.raises(OrderRejectedError, match="refusing to trade"):
            run(broker, broker.wait_for_init)


def test_foreign_symbols_are_never_traded(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake, foreign_symbols=["BTCUSDT"])
    with pytest.raises(OrderRejectedError, match="foreign_symbols"):
        run(broker, lambda: broker.on_signal_open_commit(commit_payload("open")))


def test_reconcile_cleans_up_what_the_bot_left_behind(binance_keys: FakeBinanceFutures) -> None:
    fake = binance_keys
    broker = broker_for(fake)

    async def scenario() -> Any:
        client = await broker.client()
        await client.create_order(
            "ETH/USDT:USDT", "limit", "buy", 0.01, 2500, {"newClientOrderId": "btk-stale-entry"}
        )
        await client.create_order(
            "ETH/USDT:USDT", "limit", "buy", 0.01, 2500, {"newClientOrderId": "manual-1"}
        )
        fake.set_position("BTCUSDT", "0.01", 50000)
        await client.create_order(
            "BTC/USDT:USDT",
            "STOP_MARKET",
            "sell",
            0.01,
            None,
            {"triggerPrice": 40000, "reduceOnly": True, "clientAlgoId": "btk-orphan-sl"},
        )
        fake.set_position("BTCUSDT", "0")
        return await broker.reconcile({})

    report = run(broker, scenario)
    assert sorted(report.cancelled_orders) == ["btk-orphan-sl", "btk-stale-entry"]
    assert [o["clientOrderId"] for o in fake.orders() if o["status"] == "NEW"] == ["manual-1"]
    assert fake.algo_orders(open_only=True) == []


# ---------------------------------------------------------------- secrets
def test_secrets_never_reach_messages_or_logs(
    binance_keys: FakeBinanceFutures, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake = binance_keys
    wrong_secret = "not-the-right-secret-0123456789"
    monkeypatch.setenv("BINANCE_API_SECRET", wrong_secret)
    caplog.set_level(logging.DEBUG)
    broker = broker_for(fake)
    with pytest.raises(OrderRejectedError) as info:
        run(broker, broker.wait_for_init)
    text = str(info.value) + repr(info.value) + caplog.text + repr(broker)
    assert "code -1022 Signature for this request is not valid" in str(info.value)
    assert fake.api_key not in text and wrong_secret not in text
    assert logging.getLogger("ccxt").getEffectiveLevel() >= logging.INFO
