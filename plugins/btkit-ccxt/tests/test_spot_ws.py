"""The spot broker's websocket fast path: real ccxt.pro ``binance`` over real websockets to the fake."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from btkit.broker_payloads import ExchangeFill
from btkit.errors import ConfigError
from btkit.testing.broker_contract import Payloads
from btkit_ccxt.spot import CcxtSpotBroker
from btkit_ccxt.testing import run_then_close as run
from btkit_ccxt.testing_ws import FakeSpotWsExchange, fake_spot_ws, ws_client_options

__all__ = ["fake_spot_ws"]
ORDER = "/api/v3/order"
RESTING = Payloads("BTCUSDT", 49000.0)  # a limit buy at 49000 while the fake trades at 50000: it rests


def broker(fake: FakeSpotWsExchange, **options: Any) -> CcxtSpotBroker:
    return CcxtSpotBroker("binance", **ws_client_options(fake, **options))




async def once_resting(fake: FakeSpotWsExchange, cid: str, seconds: float, action: Callable[[], Any]) -> None:
    """``action`` ``seconds`` after the order ``cid`` rests on the exchange (whatever the machine's load)."""

    def wait_then_act() -> None:
        fake.wait_until(lambda f: f.order(cid) is not None)
        time.sleep(seconds)
        action()

    await asyncio.to_thread(wait_then_act)


def order_reads(fake: FakeSpotWsExchange) -> int:
    return len(fake.requests_to(ORDER, "GET"))


def entry_with_fill_at(
    fake: FakeSpotWsExchange, signal: str, after: float = 0.4, **options: Any
) -> tuple[CcxtSpotBroker, Any, int]:
    """Open on a resting limit buy that the price reaches ``after`` seconds into the wait; returns the
    broker, the entry's answer and the REST order reads made while waiting."""
    b = broker(fake, **options)

    async def scenario() -> tuple[Any, int]:
        await b.wait_for_init()
        before = order_reads(fake)
        opened = RESTING.open(signal)
        mover = asyncio.ensure_future(
            once_resting(fake, opened.client_order_id, after, lambda: fake.set_price("49000"))
        )
        entry = await b.on_signal_open_commit(opened)
        await mover
        return entry, order_reads(fake) - before

    entry, reads = run(b, scenario)
    return b, entry, reads


def pure_rest(signal: str) -> tuple[Any, int, FakeSpotWsExchange]:
    """The same entry on a fresh fake with websocket = false: its answer, REST order reads, the fake."""
    with FakeSpotWsExchange() as fresh:
        _b, entry, reads = entry_with_fill_at(fresh, signal, websocket=False)
    return entry, reads, fresh


def test_entry_filled_over_the_socket_books_the_price_with_fewer_rest_reads(
    fake_spot_ws: FakeSpotWsExchange,
) -> None:
    fake = fake_spot_ws
    b, entry, ws_reads = entry_with_fill_at(fake, "w1")
    assert isinstance(entry, ExchangeFill) and entry.price == 49000.0 and entry.quantity == 0.00204
    assert fake.ws_connections["user"] == 1
    statuses = [(e["x"], e["X"]) for e in fake.events() if e["S"] == "BUY"]
    assert statuses == [("NEW", "NEW"), ("TRADE", "FILLED")] or statuses[:2] == [
        ("NEW", "NEW"),
        ("TRADE", "FILLED"),
    ]
    assert b.ws_stats.get("confirmations") == 1 and not b.ws_stats.get("polls")

    polled, poll_reads, fresh = pure_rest("w1")
    assert isinstance(polled, ExchangeFill) and (polled.price, polled.quantity) == (
        entry.price,
        entry.quantity,
    )
    # 3 look-ups around any entry (adopt, before placing, the stop's id) + 1 confirmation, against a read
    # every 50 ms for 0.4 s
    assert ws_reads == 4 and poll_reads >= 3 + 5
    assert fresh.ws_connections["user"] == 0  # websocket = false opened no socket


def test_partial_fills_over_the_socket_are_each_confirmed_then_the_rest(
    fake_spot_ws: FakeSpotWsExchange,
) -> None:
    fake = fake_spot_ws
    fake.inject(ORDER, "partial_fill", method="POST", fraction="0.5")
    b = broker(fake)

    async def scenario() -> Any:
        await b.wait_for_init()
        opened = RESTING.open("w2")
        cid = opened.client_order_id
        mover = asyncio.ensure_future(once_resting(fake, cid, 0.3, lambda: fake.set_price("49000")))
        lifter = asyncio.ensure_future(once_resting(fake, cid, 0.8, fake.lift_fill_caps))
        entry = await b.on_signal_open_commit(opened)
        await asyncio.gather(mover, lifter)
        return entry

    entry = run(b, scenario)
    trades = [(e["X"], e["z"]) for e in fake.events() if e["S"] == "BUY" and e["x"] == "TRADE"]
    assert trades == [("PARTIALLY_FILLED", "0.00102"), ("FILLED", "0.00204")]
    assert isinstance(entry, ExchangeFill) and entry.quantity == 0.00204 and entry.price == 49000.0
    assert b.ws_stats.get("confirmations") == 2 and not b.ws_stats.get("polls")


def test_a_dropped_socket_mid_wait_falls_back_to_rest_and_misses_nothing(
    fake_spot_ws: FakeSpotWsExchange, caplog: pytest.LogCaptureFixture
) -> None:
    fake = fake_spot_ws
    # the fill's event never arrives: the socket is closed in its place
    fake.ws_fault("drop", when=lambda e: e["x"] == "TRADE")
    with caplog.at_level(logging.WARNING, "btkit.ccxt.spot"):
        b, entry, _reads = entry_with_fill_at(fake, "w3")
    fills = [e for e in fake.events() if e["x"] == "TRADE"]
    assert fills == []  # nothing about the fill came over the socket
    assert b.ws_stats.get("polls", 0) >= 1
    stopped = [r for r in caplog.records if "websocket order updates stopped" in r.getMessage()]
    assert len(stopped) == 1  # logged once

    polled, _reads, _fresh = pure_rest("w3")
    assert isinstance(entry, ExchangeFill) and (entry.price, entry.quantity) == (
        polled.price,
        polled.quantity,
    )


@pytest.mark.parametrize("kind", ["skip", "mute"])
def test_a_missed_event_or_a_silent_socket_is_covered_by_the_rest_reconciliation(
    fake_spot_ws: FakeSpotWsExchange, kind: str
) -> None:
    fake = fake_spot_ws
    fake.ws_fault(kind, when=lambda e: e["x"] == "TRADE")  # mute: from the fill on, nothing is sent
    b, entry, reads = entry_with_fill_at(fake, "w4", websocket_reconcile_seconds=0.3)
    assert isinstance(entry, ExchangeFill) and entry.price == 49000.0 and entry.quantity == 0.00204
    # one read per 0.3 s of silence (the fill comes 0.4 s after resting), not one per 50 ms poll
    assert 1 <= b.ws_stats.get("reconciliations", 0) <= 3 and not b.ws_stats.get("confirmations")
    assert reads <= 3 + 3


def test_a_socket_that_never_connects_leaves_rest_polling(fake_spot_ws: FakeSpotWsExchange) -> None:
    fake = fake_spot_ws
    fake.refuse = True
    b, entry, _ = entry_with_fill_at(fake, "w5", request_timeout_ms=1000)
    assert isinstance(entry, ExchangeFill) and entry.price == 49000.0
    assert fake.ws_connections["user"] == 0 and not b.ws_stats  # the REST path polled


def test_websocket_false_opens_no_socket(fake_spot_ws: FakeSpotWsExchange) -> None:
    fake = fake_spot_ws
    _b, entry, reads = entry_with_fill_at(fake, "w6", websocket=False)
    assert isinstance(entry, ExchangeFill) and entry.price == 49000.0
    assert fake.ws_connections == {"user": 0, "market": 0} and reads >= 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"websocket": "sometimes"}, 'websocket must be true, false or "auto"'),
        ({"websocket": 1}, 'websocket must be true, false or "auto"'),
        ({"ws_base_url": "http://127.0.0.1:1"}, "ws_base_url must be a ws:// or wss:// URL"),
        ({"websocket_reconcile_seconds": 0}, "websocket_reconcile_seconds must be a number > 0"),
        ({"websocket": True, "api_base_url": "http://127.0.0.1:1"}, "needs ws_base_url"),
    ],
)
def test_websocket_options_are_validated(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], message: str
) -> None:
    monkeypatch.setenv("BINANCE_API_KEY", "k")
    monkeypatch.setenv("BINANCE_API_SECRET", "s")
    with pytest.raises(ConfigError, match=message):
        CcxtSpotBroker("binance", **options)


def test_websocket_switch_reads_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_API_KEY", "k")
    monkeypatch.setenv("BINANCE_API_SECRET", "s")
    assert CcxtSpotBroker("binance", websocket="false").config.websocket is False
    assert CcxtSpotBroker("binance", websocket="auto").config.websocket is None
    assert CcxtSpotBroker("binance").config.websocket is None


def test_a_bad_broker_websocket_value_in_btkit_toml_exits_2(tmp_path: Path) -> None:
    (tmp_path / "btkit.toml").write_text('[broker]\nname = "ccxt:binance"\nwebsocket = "maybe"\n')
    env = {**os.environ, "BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"}
    argv = ["live", "--broker", "ccxt:binance", "--exchange", "ccxt:binance", "--symbol", "BTC/USDT"]
    done = subprocess.run(
        [sys.executable, "-m", "btkit.cli", *argv, "--strategy", "smacross"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("btkit: error")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert (
        errors[0] == "btkit: error: ccxt spot broker websocket must be true, false or \"auto\", got 'maybe'"
    )


def test_ws_base_url_as_a_table_sets_each_socket_url(fake_spot_ws: FakeSpotWsExchange) -> None:
    fake = fake_spot_ws  # e.g. Binance's spot testnet: the WS API and the streams on two hosts
    urls = {"ws-api.spot": f"{fake.ws_url}/ws-api/v3", "spot": f"{fake.ws_url}/ws"}
    _b, entry, _ = entry_with_fill_at(fake, "w7", ws_base_url=urls)
    assert isinstance(entry, ExchangeFill) and entry.price == 49000.0 and fake.ws_connections["user"] == 1

    b = broker(fake, ws_base_url={"ws-api.nowhere": fake.ws_url}, foreign_assets="BTC")
    with pytest.raises(ConfigError, match=r"has no websocket URL 'ws-api\.nowhere'; known: .*ws-api\.spot"):
        run(b, b.wait_for_init)


@pytest.mark.parametrize("good", [True, False])
def test_the_fake_checks_the_subscription_signature(fake_spot_ws: FakeSpotWsExchange, good: bool) -> None:
    from btkit_ccxt.client import make_client
    from btkit_ccxt.secrets import Credentials
    from btkit_ccxt.ws import make_pro_client

    fake = fake_spot_ws

    async def scenario() -> tuple[BaseException | None, int]:
        rest = make_client(
            "binance",
            api_base_url=fake.url,
            options={"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False},
            credentials=Credentials(fake.api_key, fake.api_secret if good else "not-the-secret"),
        )
        await rest.load_markets()
        pro = make_pro_client(rest, fake.ws_url)
        try:
            await asyncio.wait_for(pro.authenticate(), 5)
            return None, fake.subscribed()
        except Exception as exc:  # ccxt 4.5 surfaces the refusal as KeyError('spot') (its own cleanup)
            return exc, fake.subscribed()
        finally:
            await pro.close()
            await rest.close()

    error, subscribed = asyncio.run(scenario())
    assert fake.ws_requests[-1]["method"] == "userDataStream.subscribe.signature"
    assert (error is None and subscribed == 1) if good else (error is not None and subscribed == 0)
