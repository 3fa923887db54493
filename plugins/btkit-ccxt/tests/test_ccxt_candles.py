"""btkit-ccxt candles through the real async ccxt client against the fake Binance USD-M server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from btkit.errors import CandleDataError
from btkit_ccxt import CcxtExchange, RetryPolicy

testing = pytest.importorskip(
    "btkit_binance_futures.testing", reason="the fake exchange ships with btkit-binance-futures"
)
FakeBinanceFutures = testing.FakeBinanceFutures
fake_binance = testing.fake_binance
START = datetime(2024, 1, 1, tzinfo=UTC)
START_MS = 1_704_067_200_000
KLINES = "/fapi/v1/klines"
FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)


def scripted_rows(n: int, start_ms: int = START_MS, step: int = 60_000) -> list[list[object]]:
    rows = []
    for i in range(n):
        o = 100 + (i % 50) * 0.5
        c = o + (0.25 if i % 2 else -0.25)
        rows.append([start_ms + i * step, f"{o}", f"{max(o, c) + 1}", f"{min(o, c) - 1}", f"{c}", f"{i % 7}"])
    return rows


def exchange(fake: FakeBinanceFutures, **kw: object) -> CcxtExchange:
    kw.setdefault("retry", FAST)
    return CcxtExchange("binanceusdm", api_base_url=fake.url, **kw)  # type: ignore[arg-type]


def run(coro_fn, ex: CcxtExchange):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        try:
            return await coro_fn()
        finally:
            await ex.close()

    return asyncio.run(main())


def test_pagination_returns_every_candle_in_pages_of_at_most_1000(fake_binance: FakeBinanceFutures) -> None:
    rows = scripted_rows(2500)
    fake_binance.set_klines("BTCUSDT", "1m", rows)
    ex = exchange(fake_binance)
    got = run(lambda: ex.get_candles("BTC/USDT:USDT", "1m", START, 2500), ex)
    assert len(got) == 2500
    assert [r[0] for r in got] == [r[0] for r in rows]
    assert got[1234] == (rows[1234][0], *(float(x) for x in rows[1234][1:6]))  # type: ignore[arg-type]
    limits = [int(r.params["limit"]) for r in fake_binance.requests_to(KLINES)]
    assert limits == [1000, 1000, 500]
    starts = [int(r.params["startTime"]) for r in fake_binance.requests_to(KLINES)]
    assert starts == [START_MS, START_MS + 1000 * 60_000, START_MS + 2000 * 60_000]


def test_short_page_ends_the_range_without_extra_requests(fake_binance: FakeBinanceFutures) -> None:
    fake_binance.set_klines("BTCUSDT", "1m", scripted_rows(120))
    ex = exchange(fake_binance)
    got = run(lambda: ex.get_candles("BTCUSDT", "1m", START, 500), ex)  # exchange-id form also works
    assert len(got) == 120
    assert len(fake_binance.requests_to(KLINES)) == 1


def test_since_in_the_middle_of_a_candle_starts_at_the_next_open(fake_binance: FakeBinanceFutures) -> None:
    fake_binance.set_klines("BTCUSDT", "1m", scripted_rows(10))
    ex = exchange(fake_binance)
    got = run(lambda: ex.get_candles("BTC/USDT:USDT", "1m", START_MS + 90_000, 3), ex)
    assert [r[0] for r in got] == [START_MS + 120_000, START_MS + 180_000, START_MS + 240_000]


@pytest.mark.parametrize(
    ("kind", "options"),
    [("status", {"status": 502}), ("status", {"status": 503}), ("rate_limit", {}), ("non_json", {})],
)
def test_transient_faults_are_retried_then_succeed(
    fake_binance: FakeBinanceFutures, kind: str, options: dict[str, object]
) -> None:
    fake_binance.set_klines("BTCUSDT", "1m", scripted_rows(5))
    fake_binance.inject(KLINES, kind, times=2, **options)
    ex = exchange(fake_binance)
    got = run(lambda: ex.get_candles("BTC/USDT:USDT", "1m", START, 5), ex)
    assert len(got) == 5
    assert [r.fault for r in fake_binance.requests_to(KLINES)] == [kind, kind, None]


def test_stall_times_out_and_is_retried(fake_binance: FakeBinanceFutures) -> None:
    fake_binance.set_klines("BTCUSDT", "1m", scripted_rows(5))
    ex = exchange(fake_binance, timeout_ms=300)

    async def go():  # type: ignore[no-untyped-def]
        await ex.client()  # markets first, so the stall hits the klines request
        fake_binance.inject(KLINES, "stall", times=1, seconds=5)
        return await ex.get_candles("BTC/USDT:USDT", "1m", START, 5)

    got = run(go, ex)
    assert len(got) == 5
    assert [r.fault for r in fake_binance.requests_to(KLINES)][-1] is None


@pytest.mark.parametrize("kind", ["status", "rate_limit", "stall", "non_json"])
def test_retries_are_bounded(fake_binance: FakeBinanceFutures, kind: str) -> None:
    fake_binance.inject(KLINES, kind, times=None, seconds=0.6)
    ex = exchange(fake_binance, timeout_ms=300)
    with pytest.raises(CandleDataError, match="failed after 3 attempts") as info:
        run(lambda: ex.get_candles("BTC/USDT:USDT", "1m", START, 5), ex)
    assert "try again later" in str(info.value)
    assert "\n" not in str(info.value)
    fake_binance.wait_until(lambda f: len(f.requests_to(KLINES)) >= 3, timeout=10)
    assert len(fake_binance.requests_to(KLINES)) == 3


def test_dropped_connections_are_bounded(fake_binance: FakeBinanceFutures) -> None:
    fake_binance.inject(KLINES, "drop", times=None)
    ex = exchange(fake_binance)
    with pytest.raises(CandleDataError, match=r"failed after 3 attempts \(ExchangeNotAvailable"):
        run(lambda: ex.get_candles("BTC/USDT:USDT", "1m", START, 5), ex)
    # aiohttp itself re-sends an idempotent GET once when a kept-alive connection dies, never more
    assert 3 <= len(fake_binance.requests_to(KLINES)) <= 6


@pytest.mark.parametrize(("code", "msg"), [(-1121, "Invalid symbol."), (-1100, "Illegal characters found.")])
def test_bad_requests_are_not_retried(fake_binance: FakeBinanceFutures, code: int, msg: str) -> None:
    fake_binance.inject(KLINES, "error", times=None, code=code, msg=msg)
    ex = exchange(fake_binance)
    with pytest.raises(CandleDataError, match=f"code {code}"):
        run(lambda: ex.get_candles("BTC/USDT:USDT", "1m", START, 5), ex)
    assert len(fake_binance.requests_to(KLINES)) == 1


def test_unknown_symbol_is_a_clear_error_without_a_request(fake_binance: FakeBinanceFutures) -> None:
    ex = exchange(fake_binance)
    with pytest.raises(CandleDataError, match="unknown symbol 'DOGE/USDT'"):
        run(lambda: ex.get_candles("DOGE/USDT", "1m", START, 5), ex)
    assert fake_binance.requests_to(KLINES) == []


def test_unknown_interval_is_a_clear_error(fake_binance: FakeBinanceFutures) -> None:
    ex = exchange(fake_binance)
    with pytest.raises(CandleDataError, match="interval not offered"):
        run(lambda: ex.get_candles("BTC/USDT:USDT", "7m", START, 5), ex)


def test_malformed_klines_raise_a_clear_error_and_are_not_retried(fake_binance: FakeBinanceFutures) -> None:
    fake_binance.inject(KLINES, "malformed_klines", times=None)
    ex = exchange(fake_binance)
    with pytest.raises(CandleDataError, match=r"malformed candle #1 .*missing or not a finite number"):
        run(lambda: ex.get_candles("BTC/USDT:USDT", "1m", START, 5), ex)
    assert len(fake_binance.requests_to(KLINES)) == 1


def test_inconsistent_high_low_is_malformed(fake_binance: FakeBinanceFutures) -> None:
    rows = scripted_rows(3)
    rows[2][2] = "1"  # high far below open/close
    fake_binance.set_klines("BTCUSDT", "1m", rows)
    ex = exchange(fake_binance)
    with pytest.raises(CandleDataError, match=r"#2 .*high/low"):
        run(lambda: ex.get_candles("BTC/USDT:USDT", "1m", START, 3), ex)


def test_format_price_and_quantity_follow_market_precision(fake_binance: FakeBinanceFutures) -> None:
    ex = exchange(fake_binance)
    # nothing loaded yet: formatting loads the markets once (blocking, sync ccxt)
    assert ex.format_price("BTC/USDT:USDT", 50000.1234) == "50000.1"
    assert ex.format_quantity("BTCUSDT", 0.0019) == "0.001"
    assert ex.format_price("ETH/USDT:USDT", 3000.129) == "3000.13"
    assert len(fake_binance.requests_to("/fapi/v1/exchangeInfo")) == 1


def test_markets_are_loaded_once_and_shared_across_event_loops(fake_binance: FakeBinanceFutures) -> None:
    fake_binance.set_klines("BTCUSDT", "1m", scripted_rows(3))
    ex = exchange(fake_binance)
    for _ in range(2):  # two separate asyncio.run loops, one client each
        assert len(run(lambda: ex.get_candles("BTC/USDT:USDT", "1m", START, 3), ex)) == 3
    assert len(fake_binance.requests_to("/fapi/v1/exchangeInfo")) == 1
    assert len(fake_binance.requests_to(KLINES)) == 2


def test_calls_from_a_helper_loop_use_a_client_closed_after_the_call(
    fake_binance: FakeBinanceFutures,
) -> None:
    import gc
    import threading
    import warnings

    fake_binance.set_klines("BTCUSDT", "1m", scripted_rows(3))
    ex = exchange(fake_binance)
    home = asyncio.new_event_loop()
    thread = threading.Thread(target=home.run_forever, daemon=True)
    thread.start()
    try:
        first = asyncio.run_coroutine_threadsafe(
            ex.get_candles("BTC/USDT:USDT", "1m", START, 3), home
        ).result(30)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # the engine serves a sync strategy through a private loop on a helper thread
            second = asyncio.run(ex.get_candles("BTC/USDT:USDT", "1m", START, 3))
            gc.collect()
        assert first == second
        assert not [w for w in caught if "Unclosed" in str(w.message)]
        assert ex._home_loop is home  # the long-lived client stays with its loop
        asyncio.run(ex.close())  # closes it on its own loop, from another one
        assert ex._home is None
    finally:
        home.call_soon_threadsafe(home.stop)
        thread.join(5)
        home.close()
    assert len(fake_binance.requests_to("/fapi/v1/exchangeInfo")) == 1
