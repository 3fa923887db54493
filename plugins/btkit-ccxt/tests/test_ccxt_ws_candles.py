"""Live candles over ccxt.pro ``watchOHLCV`` (real websockets to the fake Binance spot), REST filling gaps."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from btkit.errors import ConfigError
from btkit_ccxt import CcxtExchange, RetryPolicy
from btkit_ccxt.testing_ws import FakeSpotWsExchange

T = TypeVar("T")
KLINES = "/api/v3/klines"
HOUR = 3_600_000
SPOT = {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False}


@pytest.fixture
def fake() -> Iterator[FakeSpotWsExchange]:
    with FakeSpotWsExchange() as server:
        yield server


def rows_before_now(n: int) -> list[list[Any]]:
    """``n`` hourly candles ending with the last closed one."""
    forming = int(time.time() * 1000) // HOUR * HOUR
    out = []
    for i in range(n):
        o = 100 + i
        out.append([forming - (n - i) * HOUR, o, o + 2, o - 1, o + 1, 10 + i])
    return out


def exchange(fake: FakeSpotWsExchange, **kw: Any) -> CcxtExchange:
    kw.setdefault("ws_base_url", fake.ws_url)
    return CcxtExchange(
        "binance", api_base_url=fake.url, options=SPOT, retry=RetryPolicy(attempts=2, base_delay=0.01), **kw
    )


def run(ex: CcxtExchange, scenario: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await scenario()
        finally:
            await ex.close()

    return asyncio.run(main())


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the awaited state was not reached"
        await asyncio.sleep(0.01)


def rest_answer(fake: FakeSpotWsExchange, since: int, limit: int) -> list[Any]:
    ex = exchange(fake, websocket=False)
    return run(ex, lambda: ex.get_candles("BTC/USDT", "1h", since, limit))


def klines(fake: FakeSpotWsExchange) -> int:
    return len(fake.requests_to(KLINES))


def stream_and_read(
    fake: FakeSpotWsExchange, rows: list[list[Any]], pushed: int, **kw: Any
) -> tuple[CcxtExchange, list[Any], int]:
    """REST serves ``rows[:-pushed]``; once the exchange streams, the last ``pushed`` rows are pushed
    (closed) and the last ``pushed`` candles read. Returns the exchange, the answer, its kline requests."""
    fake.set_klines("BTCUSDT", "1h", rows[:-pushed])
    ex = exchange(fake, **kw)
    since = rows[-pushed][0]

    async def scenario() -> tuple[list[Any], int]:
        # a request up to the present starts the stream (REST has only the older rows yet)
        assert len(await ex.get_candles("BTC/USDT", "1h", rows[0][0], len(rows))) == len(rows) - pushed
        await until(lambda: fake.subscribed("market") == 1 and ex._live.up("BTC/USDT", "1h"))
        for row in rows[-pushed:]:
            await asyncio.to_thread(fake.add_kline, "BTCUSDT", "1h", row)
        sent = {e["k"]["t"] for e in fake.events("kline")}
        await until(lambda: set(ex._live.closed_times("BTC/USDT", "1h")) == sent)
        before = klines(fake)
        got = await ex.get_candles("BTC/USDT", "1h", since, pushed)
        return got, klines(fake) - before

    got, requests = run(ex, scenario)
    return ex, got, requests


def test_websocket_candles_equal_rest_candles_without_rest_requests(fake: FakeSpotWsExchange) -> None:
    rows = rows_before_now(10)
    ex, got, requests = stream_and_read(fake, rows, 4)
    assert requests == 0 and ex._live is None  # closed by run(); it served the four candles
    assert got == rest_answer(fake, rows[-4][0], 4)
    assert [r[0] for r in got] == [r[0] for r in rows[-4:]] and got[-1][4] == float(rows[-1][4])


def test_a_missed_closed_candle_is_fetched_by_rest(fake: FakeSpotWsExchange) -> None:
    rows = rows_before_now(10)
    missing = rows[-3][0]
    fake.ws_fault("skip", stream="market", when=lambda e: e["k"]["t"] == missing)
    _ex, got, requests = stream_and_read(fake, rows, 4)
    assert requests == 1  # from the missing candle on
    assert got == rest_answer(fake, rows[-4][0], 4) and [r[0] for r in got] == [r[0] for r in rows[-4:]]


def test_a_forming_candle_is_not_served_as_closed(fake: FakeSpotWsExchange) -> None:
    rows = rows_before_now(6)
    fake.set_klines("BTCUSDT", "1h", rows)
    ex = exchange(fake)

    async def scenario() -> tuple[list[Any], int]:
        await ex.get_candles("BTC/USDT", "1h", rows[0][0], 6)
        await until(lambda: ex._live is not None and ex._live.up("BTC/USDT", "1h"))
        # an update of the last closed candle that is not final: REST must answer for it
        await asyncio.to_thread(fake.add_kline, "BTCUSDT", "1h", [rows[-1][0], 1, 9, 0.5, 2, 1], closed=False)
        before = klines(fake)
        return await ex.get_candles("BTC/USDT", "1h", rows[-1][0], 1), klines(fake) - before

    got, requests = run(ex, scenario)
    assert requests == 1 and got[0][4] == float(rows[-1][4])


def test_a_dropped_socket_falls_back_to_rest_and_reconnects(fake: FakeSpotWsExchange) -> None:
    rows = rows_before_now(8)
    fake.set_klines("BTCUSDT", "1h", rows[:-2])
    ex = exchange(fake)

    async def scenario() -> tuple[list[Any], int]:
        await ex.get_candles("BTC/USDT", "1h", rows[0][0], 8)
        await until(lambda: fake.subscribed("market") == 1)
        await asyncio.to_thread(fake.drop_sockets, "market")
        for row in rows[-2:]:  # while the socket is down: never sent
            await asyncio.to_thread(fake.add_kline, "BTCUSDT", "1h", row)
        before = klines(fake)
        got = await ex.get_candles("BTC/USDT", "1h", rows[-2][0], 2)
        await until(lambda: fake.ws_connections["market"] == 2 and ex._live.up("BTC/USDT", "1h"))
        return got, klines(fake) - before

    got, requests = run(ex, scenario)
    assert requests == 1 and [r[0] for r in got] == [r[0] for r in rows[-2:]]
    assert fake.events("kline") == []


def test_websocket_false_and_history_use_no_socket(fake: FakeSpotWsExchange) -> None:
    rows = rows_before_now(5)
    fake.set_klines("BTCUSDT", "1h", rows)
    ex = exchange(fake, websocket=False)
    got = run(ex, lambda: ex.get_candles("BTC/USDT", "1h", rows[0][0], 5))
    old = exchange(fake)  # a range that ends long before now is history: REST only
    run(old, lambda: old.get_candles("BTC/USDT", "1h", rows[0][0] - 100 * HOUR, 5))
    assert len(got) == 5 and fake.ws_connections == {"user": 0, "market": 0}


def test_websocket_values_are_validated() -> None:
    with pytest.raises(ConfigError, match='websocket must be true, false or "auto"'):
        CcxtExchange("binance", websocket="maybe")
    with pytest.raises(ConfigError, match="ws_base_url must be a ws:// or wss:// URL"):
        CcxtExchange("binance", ws_base_url="https://example.com")


def test_a_bad_websocket_value_in_btkit_toml_exits_2(tmp_path: Path) -> None:
    (tmp_path / "btkit.toml").write_text('[exchange."ccxt:binance"]\nwebsocket = "often"\n')
    done = subprocess.run(
        [sys.executable, "-m", "btkit.cli", "backtest", "--exchange", "ccxt:binance", "--symbol", "BTC/USDT"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("btkit: error")]
    assert len(errors) == 1 and "websocket must be true, false or \"auto\", got 'often'" in errors[0]


def test_without_a_closed_flag_a_candle_is_closed_once_the_stream_moves_on() -> None:
    from btkit_ccxt.candles_ws import LiveCandles, _Stream

    async def scenario() -> dict[int, Any]:
        stream = _Stream()
        LiveCandles._close_generic(stream, [[0, 1, 2, 0.5, 1.5, 1]])  # forming
        LiveCandles._close_generic(stream, [[0, 1, 3, 0.5, 2.5, 2]])  # its last update
        assert stream.closed == {}
        LiveCandles._close_generic(stream, [[HOUR, 2.5, 3, 2, 2.8, 1]])  # the next one started
        LiveCandles._close_generic(stream, [[0, 9, 9, 9, 9, 9]])  # a late update of an older one: ignored
        return stream.closed

    closed = asyncio.run(scenario())
    assert closed == {0: (0, 1.0, 3.0, 0.5, 2.5, 2.0)}
