"""The ccxt spot broker through real ccxt (``binance``) against the fake spot exchange on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import btkit_ccxt
from btkit.broker_payloads import ExchangeFill
from btkit.errors import OrderDeletedError, OrderRejectedError, OrderTransientError
from btkit.testing.broker_contract import Payloads
from btkit_ccxt.spot import CcxtSpotBroker, derive_id
from btkit_ccxt.testing import FakeSpotExchange, fake_spot_env, spot_client_options
from btkit_ccxt.testing import run_then_close as run

ORDER = "/api/v3/order"
P = Payloads("BTCUSDT", 50000.0)  # cost 100 USDT: 0.002 BTC; stop 47500, take-profit 52500


def broker(fake: FakeSpotExchange, **options: Any) -> CcxtSpotBroker:
    return CcxtSpotBroker("binance", **spot_client_options(fake, **options))




def btc(fake: FakeSpotExchange) -> Decimal:
    free, locked = fake.balance("BTC")
    return free + locked


def test_signal_fill_protection_exit_with_real_prices(spot_keys: FakeSpotExchange) -> None:
    fake = spot_keys
    b = broker(fake)
    opened = P.open("s1")

    async def scenario() -> tuple[Any, Any]:
        entry = await b.on_signal_open_commit(opened)
        fake.set_price("50400")
        exit_ = await b.on_signal_close_commit(P.close("s1"))
        return entry, exit_

    entry, exit_ = run(b, scenario)
    assert isinstance(entry, ExchangeFill) and entry.price == 50000.0 and entry.quantity == 0.002
    stop = fake.order(derive_id(opened.client_order_id, "sl"))
    assert stop is not None and stop["type"] == "STOP_LOSS" and stop["stopPrice"] == "47500"
    # the buy's fee was taken in BTC: the stop (and the exit) are sized to what is really held
    assert Decimal(stop["origQty"]) == Decimal("0.00199") and stop["status"] == "CANCELED"
    assert isinstance(exit_, ExchangeFill) and exit_.price == 50400.0 and exit_.quantity == 0.00199
    assert btc(fake) < Decimal("0.00001")  # only dust below the lot step is left
    assert [f.side for f in fake.fills("BTCUSDT")] == ["BUY", "SELL"]


def test_stop_filled_on_the_exchange_is_reported_with_its_fill_price(spot_keys: FakeSpotExchange) -> None:
    fake = spot_keys
    b = broker(fake)

    async def scenario() -> BaseException:
        await b.on_signal_open_commit(P.open("s2"))
        assert await b.on_active_check(P.open("s2")) is True
        fake.set_price("47000")  # gaps through the 47500 stop: the stop-market sells at 47000
        with pytest.raises(OrderDeletedError) as info:
            await b.on_active_check(P.open("s2"))
        return info.value

    gone = run(b, scenario)
    fill = gone.fill  # type: ignore[attr-defined]
    assert isinstance(fill, ExchangeFill)
    assert fill.price == 47000.0 and fill.reason == "stop_loss" and fill.quantity == 0.00199
    assert fill.time == fake.fills("BTCUSDT")[-1].time


def test_partial_fill_is_kept_and_protected(spot_keys: FakeSpotExchange) -> None:
    fake = spot_keys
    fake.inject(ORDER, "partial_fill", method="POST", fraction="0.5")
    b = broker(fake, entry_timeout_seconds=0.3)
    opened = P.open("s3")
    entry = run(b, lambda: b.on_signal_open_commit(opened))
    assert isinstance(entry, ExchangeFill) and entry.quantity == 0.001
    assert fake.order(opened.client_order_id)["status"] == "CANCELED"  # the rest was cancelled
    stop = fake.order(derive_id(opened.client_order_id, "sl"))
    assert stop is not None and Decimal(stop["origQty"]) == Decimal("0.00099")


def test_partial_fill_is_unwound_by_config(spot_keys: FakeSpotExchange) -> None:
    fake = spot_keys
    fake.inject(ORDER, "partial_fill", method="POST", fraction="0.5")
    b = broker(fake, entry_timeout_seconds=0.3, partial_fill="unwind")
    with pytest.raises(OrderTransientError, match="sold back"):
        run(b, lambda: b.on_signal_open_commit(P.open("s4")))
    assert [f.side for f in fake.fills("BTCUSDT")] == ["BUY", "SELL"]
    assert btc(fake) < Decimal("0.00001")


def test_lost_response_places_no_duplicate(spot_keys: FakeSpotExchange) -> None:
    fake = spot_keys
    opened = P.open("s5")
    fake.inject(ORDER, "accept_then_drop", method="POST", when=lambda q: q.get("side") == "BUY")
    b = broker(fake)
    assert isinstance(run(b, lambda: b.on_signal_open_commit(opened)), ExchangeFill)
    assert fake.order_count(opened.client_order_id) == 1
    assert len([r for r in fake.requests_to(ORDER, "POST") if r.params.get("side") == "BUY"]) == 1


def test_definitive_reject_is_not_resent(spot_keys: FakeSpotExchange) -> None:
    fake = spot_keys
    fake.inject(
        ORDER,
        "error",
        method="POST",
        code=-2010,
        msg="Account has insufficient balance for requested action.",
    )
    b = broker(fake)
    with pytest.raises(OrderRejectedError, match="insufficient balance"):
        run(b, lambda: b.on_signal_open_commit(P.open("s6")))
    assert len(fake.requests_to(ORDER, "POST")) == 1


def test_below_minimum_notional_is_refused_before_sending(spot_keys: FakeSpotExchange) -> None:
    fake = spot_keys
    b = broker(fake)
    tiny = Payloads("BTCUSDT", 50000.0)
    p = tiny.open("s7")
    import attrs

    with pytest.raises(OrderRejectedError, match="minimum notional"):
        run(b, lambda: b.on_signal_open_commit(attrs.evolve(p, cost=5.0)))
    assert fake.requests_to(ORDER, "POST") == []


def test_unknown_holding_is_refused_unless_foreign(
    spot_keys: FakeSpotExchange, caplog: pytest.LogCaptureFixture
) -> None:
    fake = spot_keys
    fake.set_balance("ETH", "1.5")
    b = broker(fake)
    with pytest.raises(OrderRejectedError, match=r"holds 1.5 ETH that the bot does not know"):
        run(b, b.wait_for_init)
    ok = broker(fake, foreign_assets="ETH", protection="emulated")
    with caplog.at_level(logging.WARNING, logger="btkit.ccxt.spot"):
        run(ok, ok.wait_for_init)
    assert "stop-loss emulated by the engine" in caplog.text
    with pytest.raises(OrderRejectedError, match="foreign_assets"):
        run(ok, lambda: ok.on_signal_open_commit(Payloads("ETHUSDT", 3000.0).open("s8")))


def test_emulated_protection_places_no_stop(spot_keys: FakeSpotExchange) -> None:
    fake = spot_keys
    b = broker(fake, protection="emulated")
    run(b, lambda: b.on_signal_open_commit(P.open("s9")))
    assert [o["type"] for o in fake.orders()] == ["LIMIT"]


CHILD = """
import asyncio, os
from btkit.testing.broker_contract import Payloads
from btkit_ccxt.spot import CcxtSpotBroker

async def main():
    broker = CcxtSpotBroker("binance", api_base_url=os.environ["FAKE_SPOT_URL"], request_timeout_ms=120000,
                            rate_limit_ms=2, expected_positions={"BTCUSDT": None})
    await broker.wait_for_init()
    print("ready", flush=True)
    await broker.on_signal_open_commit(Payloads("BTCUSDT", 50000.0).open("k1"))
    print("acknowledged (the test should have killed this process)", flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
def test_sigkill_mid_entry_then_restart_reconciles(spot_keys: FakeSpotExchange, tmp_path: Path) -> None:
    fake = spot_keys
    opened = P.open("k1")
    fake.inject(
        ORDER,
        "accept_then_stall",
        method="POST",
        seconds=300,
        when=lambda q: q.get("newClientOrderId") == opened.client_order_id,
    )
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = fake_spot_env(fake, os.environ)
    env["FAKE_SPOT_URL"] = fake.url
    child = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        fake.wait_until(lambda f: f.order_count(opened.client_order_id) == 1 or child.poll() is not None, 60)
        assert child.poll() is None, child.communicate()
        os.kill(child.pid, signal.SIGKILL)
        out, _err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL and "acknowledged" not in out
    assert btc(fake) == Decimal("0.001998")  # bought, never acknowledged, not protected yet
    # the engine persisted the intent: it tells the restarted broker the symbol has an action in flight
    b = broker(fake, expected_positions={"BTCUSDT": None})
    assert isinstance(run(b, lambda: b.on_signal_open_commit(P.open("k1", attempt=2))), ExchangeFill)
    assert fake.order_count(opened.client_order_id) == 1
    assert [o["type"] for o in fake.orders()] == ["LIMIT", "STOP_LOSS"]
    # a restart that does not know the holding refuses to trade
    stranger = broker(fake)
    with pytest.raises(OrderRejectedError, match="does not know"):
        run(stranger, stranger.wait_for_init)


def test_a_broker_per_ccxt_id_is_registered() -> None:
    specs = {s.name: s for s in btkit_ccxt.btkit_brokers()}
    assert "ccxt:binance" in specs and "ccxt:kraken" in specs
    assert specs["ccxt:binance"].dist == "btkit-ccxt"
