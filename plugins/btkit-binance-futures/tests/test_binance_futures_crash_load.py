"""A process killed between send and acknowledgement, 50 symbols of candles at once, and the plugin wiring."""

from __future__ import annotations

import asyncio
import importlib.metadata
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import btkit_binance_futures
from btkit.components import BrokerSpec, ExchangeSpec
from btkit_binance_futures import BinanceFuturesBroker, make_binance_futures_exchange
from btkit_binance_futures.testing import FakeBinanceFutures, broker_for, commit_payload, fake_env

ORDER = "/fapi/v1/order"
ALGO = "/fapi/v1/algoOrder"

CHILD = """
import asyncio, os
from btkit_binance_futures import BinanceFuturesBroker
from btkit_binance_futures.testing import commit_payload

async def main():
    broker = BinanceFuturesBroker(
        api_base_url=os.environ["BTKIT_TEST_BINANCE_URL"], expected_positions={"BTCUSDT": None},
        request_timeout_ms=120000, rate_limit_ms=2,
    )
    await broker.wait_for_init()
    print("ready", flush=True)
    await broker.on_signal_open_commit(commit_payload("open"))
    print("acknowledged (the test should have killed this process)", flush=True)

asyncio.run(main())
"""


def kill_child_during(fake: FakeBinanceFutures, tmp_path: Path, sent: Any) -> None:
    """Run the child broker and SIGKILL it once ``sent(fake)`` holds (the request reached the fake and
    was processed, its answer is held back)."""
    script = tmp_path / "child_broker.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script)],
        env=fake_env(fake),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        fake.wait_until(lambda f: sent(f) or child.poll() is not None, timeout=120)
        assert child.poll() is None, f"the child ended early: {child.communicate()}"
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert "acknowledged" not in out, (out, err)


def restart_and_open_again(fake: FakeBinanceFutures) -> bool:
    # the engine persisted the intent but never saw a verdict: it reports the symbol as pending (None)
    broker = broker_for(fake, expected_positions={"BTCUSDT": None})

    async def main() -> bool:
        try:
            await broker.wait_for_init()
            return await broker.on_signal_open_commit(commit_payload("open", attempt=2))
        finally:
            await broker.close()

    return asyncio.run(main())


@pytest.mark.slow
def test_killed_between_entry_send_and_ack_the_restart_places_nothing_new(
    binance_keys: FakeBinanceFutures, tmp_path: Path
) -> None:
    fake = binance_keys
    cid = commit_payload("open").client_order_id
    fake.inject(
        ORDER,
        "accept_then_stall",
        method="POST",
        seconds=300,
        when=lambda q: q.get("newClientOrderId") == cid,
    )
    kill_child_during(fake, tmp_path, lambda f: f.order_count(cid) == 1)
    assert fake.position("BTCUSDT") == Decimal("0.02")  # placed and filled, never acknowledged
    assert fake.algo_orders() == []

    assert restart_and_open_again(fake)
    assert fake.order_count(cid) == 1
    assert fake.orders_log[0].type == "LIMIT"  # the entry first, then SL and TP at once
    assert sorted(o.type for o in fake.orders_log) == ["LIMIT", "STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert all(n == 1 for n in Counter(o.client_id for o in fake.orders_log).values())
    assert fake.position("BTCUSDT") == Decimal("0.02")


@pytest.mark.slow
def test_killed_between_stop_loss_send_and_ack_the_restart_adds_only_the_take_profit(
    binance_keys: FakeBinanceFutures, tmp_path: Path
) -> None:
    fake = binance_keys
    fake.inject(
        ALGO, "accept_then_stall", method="POST", seconds=300, when=lambda q: q.get("type") == "STOP_MARKET"
    )
    kill_child_during(fake, tmp_path, lambda f: any(o.type == "STOP_MARKET" for o in f.orders_log))

    assert restart_and_open_again(fake)
    assert fake.orders_log[0].type == "LIMIT"  # the entry first, then SL and TP at once
    assert sorted(o.type for o in fake.orders_log) == ["LIMIT", "STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert all(n == 1 for n in Counter(o.client_id for o in fake.orders_log).values())
    assert sorted(a["orderType"] for a in fake.algo_orders(open_only=True)) == [
        "STOP_MARKET",
        "TAKE_PROFIT_MARKET",
    ]


@pytest.mark.slow
def test_fifty_symbols_of_candles_concurrently_with_the_rate_limiter_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeBinanceFutures(symbols=[], extra_symbols=50) as fake:
        fake.inject("/fapi/v1/klines", "rate_limit", times=3)  # a few 429s on the way
        spec = make_binance_futures_exchange(api_base_url=fake.url)
        since = datetime(2024, 1, 3, tzinfo=UTC)

        async def main() -> list[Any]:
            try:
                return await asyncio.gather(*(spec.get_candles(s, "1m", since, 60) for s in fake.symbols))
            finally:
                assert spec.close is not None
                await spec.close()

        started = time.perf_counter()
        results = asyncio.run(main())
        elapsed = time.perf_counter() - started

        assert len(results) == 50
        start_ms = int(since.timestamp() * 1000)
        for rows in results:
            assert [r[0] for r in rows] == [start_ms + i * 60_000 for i in range(60)]
            assert all(a[4] == b[1] for a, b in itertools.pairwise(rows))  # the fake's close → next open
        klines = fake.requests_to("/fapi/v1/klines")
        assert len(klines) == 53 and Counter(r.status for r in klines) == {200: 50, 429: 3}
        assert len(fake.requests_to("/fapi/v1/exchangeInfo")) == 1
        arrivals = sorted(r.at for r in klines)
        busiest = max(sum(1 for t in arrivals if a <= t < a + 1.0) for a in arrivals)
        with capsys.disabled():
            print(
                f"\n[load] 50 symbols x 60 candles: {elapsed:.2f}s, {len(klines)} kline requests, "
                f"busiest second {busiest} requests (Binance weight 1 each, ccxt rateLimit 50 ms)"
            )


def test_plugin_registers_the_exchange_and_the_broker(binance_keys: FakeBinanceFutures) -> None:
    points = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="btkit")}
    assert points.get("binance-futures") == "btkit_binance_futures"
    (exchange,) = btkit_binance_futures.btkit_exchanges()
    (broker_spec,) = btkit_binance_futures.btkit_brokers()
    assert isinstance(exchange, ExchangeSpec) and exchange.name == "binance-futures"
    assert isinstance(broker_spec, BrokerSpec) and broker_spec.name == "binance-futures"
    broker = broker_spec.factory(
        name="binance-futures", api_base_url=binance_keys.url, leverage=3, margin_mode="cross"
    )
    assert isinstance(broker, BinanceFuturesBroker) and broker.config.leverage == 3


def test_exchange_reads_its_btkit_toml_table(
    fake_binance: FakeBinanceFutures, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "btkit.toml").write_text(
        f'[exchange.binance-futures]\napi_base_url = "{fake_binance.url}"\nhedge_mode = true\nleverage = 5\n'
    )
    monkeypatch.chdir(tmp_path)
    (spec,) = btkit_binance_futures.btkit_exchanges()

    async def main() -> Any:
        try:
            return await spec.get_candles("BTCUSDT", "5m", datetime(2024, 1, 2, tzinfo=UTC), 10)
        finally:
            assert spec.close is not None
            await spec.close()

    rows = asyncio.run(main())
    assert len(rows) == 10 and rows[1][0] - rows[0][0] == 300_000
    assert spec.format_price is not None and spec.format_price("BTCUSDT", 50000.07) == "50000.1"
