"""Binance's budgets: the fake enforces them (429, then 418), the process-wide limiter keeps a 200-symbol
burst inside them, and the account-wide reads are shared between symbols."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from btkit_binance_futures.testing import FakeBinanceFutures, broker_for, commit_payload
from btkit_ccxt import pacing
from btkit_ccxt.limits import USDM, ServerLimits, usdm_cost

SCALE = 20.0  # the budget windows of both sides run 20x faster than the wall clock (60 s -> 3 s)
N = 200


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_server_limits_answer_429_then_418_and_send_the_headers() -> None:
    clock = Clock()
    limits = ServerLimits(USDM, usdm_cost, ban_seconds=120, clock=clock)
    ok = limits.admit("GET", "/fapi/v3/positionRisk", {})
    assert ok.status == 200 and ok.headers["X-MBX-USED-WEIGHT-1M"] == "5"
    for _ in range(479):  # 480 x 5 = the whole 2400
        assert limits.admit("GET", "/fapi/v3/positionRisk", {}).status == 200
    over = limits.admit("GET", "/fapi/v3/positionRisk", {})
    assert over.status == 429 and over.code == -1003 and int(over.headers["Retry-After"]) >= 1
    clock.now += 0.5  # sent again before Retry-After has passed: banned
    banned = limits.admit("GET", "/fapi/v1/time", {})
    assert banned.status == 418 and banned.headers["Retry-After"] == "120"
    clock.now += 121
    assert limits.admit("GET", "/fapi/v1/time", {}).status == 200
    order = limits.admit("POST", "/fapi/v1/order", {"symbol": "BTCUSDT"})
    assert order.headers["X-MBX-ORDER-COUNT-10S"] == "1" and order.headers["X-MBX-ORDER-COUNT-1M"] == "1"
    assert (limits.refused_429, limits.refused_418) == (1, 1)


def test_order_count_over_ten_seconds_is_refused_with_1015() -> None:
    clock = Clock()
    limits = ServerLimits(USDM, usdm_cost, clock=clock)
    for _ in range(300):
        assert limits.admit("POST", "/fapi/v1/algoOrder", {}).status == 200
    over = limits.admit("POST", "/fapi/v1/order", {})
    assert over.status == 429 and over.code == -1015
    clock.now += 11
    assert limits.admit("POST", "/fapi/v1/order", {}).status == 200


def test_the_pacer_waits_for_the_weight_binance_reports() -> None:
    pacer = pacing.Pacer(USDM, usdm_cost)
    pacer.observe(200, {"x-mbx-used-weight-1m": "2158"})  # someone else on this IP used nearly all of it

    async def scenario() -> None:
        await asyncio.wait_for(pacer.acquire("GET", "/fapi/v1/time", {}), 0.5)  # 2159 <= 2160 fits
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pacer.acquire("GET", "/fapi/v3/positionRisk", {}), 0.3)

    asyncio.run(scenario())
    pacer.observe(429, {"Retry-After": "3"})
    assert pacer.refusals == 1


def _burst(fake: FakeBinanceFutures, **options: Any) -> list[Any]:
    """N symbols open at once through one broker (limit entry at the mark, then SL and TP)."""
    broker = broker_for(fake, entry_timeout_seconds=10.0, request_timeout_ms=10_000, **options)
    symbols = list(fake.symbols)

    async def scenario() -> list[Any]:
        try:
            return await asyncio.gather(
                *(
                    broker.on_signal_open_commit(
                        commit_payload(
                            "open",
                            symbol=s,
                            signal_id=f"burst-{s}",
                            cost=100.0,
                            price_open=float(fake.price(s)),
                            price_take_profit=float(fake.price(s)) * 1.02,
                            price_stop_loss=float(fake.price(s)) * 0.98,
                        )
                    )
                    for s in symbols
                ),
                return_exceptions=True,
            )
        finally:
            await broker.close()

    return asyncio.run(scenario())


@pytest.fixture
def enforcing(monkeypatch: pytest.MonkeyPatch) -> Any:
    pacing.reset_pacers()
    fakes: list[FakeBinanceFutures] = []

    def make(scale: float = SCALE) -> FakeBinanceFutures:
        fake = FakeBinanceFutures(
            symbols=[], extra_symbols=N, balance="1000000", enforce_limits=True, limits_time_scale=scale
        ).start()
        fakes.append(fake)
        monkeypatch.setenv("BINANCE_API_KEY", fake.api_key)
        monkeypatch.setenv("BINANCE_API_SECRET", fake.api_secret)
        host = fake.url.split("://", 1)[1]
        pacing.configure("binanceusdm", host, pacing.Pacer(USDM, usdm_cost, time_scale=scale))
        return fake

    yield make
    for fake in fakes:
        fake.stop()
    pacing.reset_pacers()


def test_a_200_symbol_burst_stays_inside_binances_budgets_with_the_limiter(enforcing: Any) -> None:
    fake = enforcing()
    results = _burst(fake)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert (fake.limits.refused_429, fake.limits.refused_418) == (0, 0)
    types = Counter(o.type for o in fake.orders_log)
    assert types == {"LIMIT": N, "STOP_MARKET": N, "TAKE_PROFIT_MARKET": N}  # 600 orders > 300 per 10 s
    assert fake.limits.peak_orders_10s <= USDM.orders_per_10s
    assert all(fake.position(s) > 0 for s in fake.symbols)


def test_the_same_burst_without_the_limiter_gets_429(enforcing: Any) -> None:
    # on the wall clock (no scaling): ccxt's own limiter, even at a 1 ms unit, lets 600 orders out in a few
    # seconds, twice Binance's 300 per 10 s
    fake = enforcing(1.0)
    _burst(fake, rate_limiter="ccxt", rate_limit_ms=1, submit_attempts=1, read_attempts=1)
    assert fake.limits.refused_429 > 0


def _checks(monkeypatch: pytest.MonkeyPatch, **options: Any) -> tuple[list[Any], int]:
    """30 symbols with a position each, every one checked at once: (verdicts, positionRisk requests)."""
    with FakeBinanceFutures(symbols=[], extra_symbols=30, balance="1000000") as fake:
        monkeypatch.setenv("BINANCE_API_KEY", fake.api_key)
        monkeypatch.setenv("BINANCE_API_SECRET", fake.api_secret)
        symbols = list(fake.symbols)
        for s in symbols:
            fake.set_position(s, "1")
        broker = broker_for(fake, repair_protection=False, **options)
        broker.set_expected_positions({s: "long" for s in symbols})
        payloads = [commit_payload("open", symbol=s, signal_id=f"s-{s}") for s in symbols]

        async def scenario() -> tuple[list[Any], int]:
            try:
                await broker.wait_for_init()
                before = len(fake.requests_to("/fapi/v3/positionRisk"))
                out = await asyncio.gather(*(broker.on_active_check(p) for p in payloads))
                return out, len(fake.requests_to("/fapi/v3/positionRisk")) - before
            finally:
                await broker.close()

        return asyncio.run(scenario())


def test_position_checks_of_many_symbols_share_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    checks, reads = _checks(monkeypatch)
    assert checks == [True] * 30
    assert reads == 1  # one account-wide read for every check of the tick


def test_per_symbol_reads_stay_available(monkeypatch: pytest.MonkeyPatch) -> None:
    checks, reads = _checks(monkeypatch, account_reads="per_symbol")
    assert checks == [True] * 30
    assert reads == 30


def test_a_check_after_the_bots_own_write_never_joins_an_older_read(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeBinanceFutures(symbols=[], extra_symbols=2, balance="1000000") as fake:
        monkeypatch.setenv("BINANCE_API_KEY", fake.api_key)
        monkeypatch.setenv("BINANCE_API_SECRET", fake.api_secret)
        a, b = list(fake.symbols)
        broker = broker_for(fake, repair_protection=False)

        async def scenario() -> list[Any]:
            try:
                await broker.wait_for_init()
                client = await broker.client()
                ua, ub = broker._symbol(client, a), broker._symbol(client, b)
                first = asyncio.ensure_future(broker._positions(ua))  # a read in flight (nothing held yet)
                await asyncio.sleep(0)
                fake.set_position(b, "1")
                broker._touch(ub)  # as if the bot had just filled an entry on b
                second = await broker._positions(ub)
                return [await first, second]
            finally:
                await broker.close()

        first, second = asyncio.run(scenario())
        assert first == [] and [p.quantity for p in second] == [1]


def test_bad_limiter_options_are_one_line_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from btkit.errors import ConfigError
    from btkit_binance_futures.config import BinanceFuturesConfig

    with pytest.raises(ConfigError, match="binance-futures rate_limiter must be one of 'binance', 'ccxt'"):
        BinanceFuturesConfig.from_options({"rate_limiter": "none"})
    with pytest.raises(
        ConfigError, match="binance-futures account_reads must be one of 'shared', 'per_symbol'"
    ):
        BinanceFuturesConfig.from_options({"account_reads": "sometimes"})
