"""Binance spot's budgets on the fake spot exchange (100 orders per 10 s, 6000 weight per minute): the fake
refuses like Binance, and the spot broker with btkit's limiter keeps a 200-symbol burst inside them."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from btkit.testing.broker_contract import Payloads
from btkit_ccxt import pacing
from btkit_ccxt.limits import SPOT, ServerLimits, spot_cost
from btkit_ccxt.spot import CcxtSpotBroker
from btkit_ccxt.testing import FakeSpotExchange, spot_client_options

N = 200
SCALE = 20.0  # the budget windows of fake and limiter run 20x faster than the wall clock


def test_spot_order_budget_is_a_hundred_per_ten_seconds() -> None:
    now = [0.0]
    limits = ServerLimits(SPOT, spot_cost, clock=lambda: now[0])
    for _ in range(100):
        assert limits.admit("POST", "/api/v3/order", {"symbol": "BTCUSDT"}).status == 200
    over = limits.admit("POST", "/api/v3/order", {"symbol": "BTCUSDT"})
    assert (over.status, over.code, over.headers["X-MBX-ORDER-COUNT-10S"]) == (429, -1015, "100")
    now[0] += 10.5
    account = limits.admit("GET", "/api/v3/account", {})
    assert (account.status, account.headers["X-MBX-USED-WEIGHT-1M"]) == (200, "120")  # 100 orders + 20


def test_the_pacer_adopts_the_budget_exchange_info_announces() -> None:
    pacer = pacing.Pacer(SPOT, spot_cost)
    pacer.adopt(
        [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
        ]
    )
    assert (pacer.weight_limit, pacer.orders_10s_limit) == (1080, 50)  # 90 % of the weight, all the orders


@pytest.fixture
def enforcing(monkeypatch: pytest.MonkeyPatch) -> Any:
    pacing.reset_pacers()
    fakes: list[FakeSpotExchange] = []

    def make(scale: float) -> FakeSpotExchange:
        fake = FakeSpotExchange(
            symbols=[],
            extra_symbols=N,
            balances={"USDT": "1000000"},
            enforce_limits=True,
            limits_time_scale=scale,
        ).start()
        fakes.append(fake)
        monkeypatch.setenv("BINANCE_API_KEY", fake.api_key)
        monkeypatch.setenv("BINANCE_API_SECRET", fake.api_secret)
        host = fake.url.split("://", 1)[1]
        pacing.configure("binance", host, pacing.Pacer(SPOT, spot_cost, time_scale=scale))
        return fake

    yield make
    for fake in fakes:
        fake.stop()
    pacing.reset_pacers()


def _burst(fake: FakeSpotExchange, **options: Any) -> list[Any]:
    """N symbols buy at once through one spot broker (a limit buy at the price, then a native stop)."""
    broker = CcxtSpotBroker(
        "binance",
        **spot_client_options(fake, entry_timeout_seconds=10.0, request_timeout_ms=10_000, **options),
    )

    async def scenario() -> list[Any]:
        try:
            return await asyncio.gather(
                *(
                    broker.on_signal_open_commit(Payloads(s, float(spec.price)).open(f"burst-{s}"))
                    for s, spec in fake.symbols.items()
                ),
                return_exceptions=True,
            )
        finally:
            await broker.close()

    return asyncio.run(scenario())


def test_a_200_symbol_spot_burst_stays_inside_the_budgets_with_the_limiter(enforcing: Any) -> None:
    fake = enforcing(SCALE)
    results = _burst(fake)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert (fake.limits.refused_429, fake.limits.refused_418) == (0, 0)
    assert len(fake.placed) == 2 * N and max(Counter(fake.placed).values()) == 1  # 400 orders, 4x the 100
    assert fake.limits.peak_orders_10s <= SPOT.orders_per_10s


def test_the_same_spot_burst_without_the_limiter_gets_429(enforcing: Any) -> None:
    fake = enforcing(1.0)  # on the wall clock: ccxt's own limiter lets 400 orders out in a few seconds
    _burst(fake, rate_limiter="ccxt", rate_limit_ms=1, submit_attempts=1, read_attempts=1)
    assert fake.limits.refused_429 > 0


def test_a_bad_rate_limiter_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from btkit.errors import ConfigError
    from btkit_ccxt.client import make_client

    with pytest.raises(ConfigError, match=r"rate_limiter must be one of binance, ccxt, got 'fast'"):
        make_client("binance", rate_limiter="fast")
    monkeypatch.setenv("BINANCE_API_KEY", "k")
    monkeypatch.setenv("BINANCE_API_SECRET", "s")
    with pytest.raises(ConfigError, match="rate_limiter must be one of binance, ccxt, got 'fast'"):
        CcxtSpotBroker("binance", rate_limiter="fast")


def test_make_client_puts_binance_clients_on_one_pacer_and_others_on_ccxts_limiter() -> None:
    from btkit_ccxt.client import make_client

    pacing.reset_pacers()
    a = make_client("binance", api_base_url="http://127.0.0.1:9")
    b = make_client("binance", api_base_url="http://127.0.0.1:9")
    c = make_client("binance", api_base_url="http://127.0.0.1:9", rate_limiter="ccxt")
    other = make_client("kraken")
    assert a.btkit_pacer is b.btkit_pacer  # one budget per venue, across clients
    assert not hasattr(c, "btkit_pacer") and not hasattr(other, "btkit_pacer")
