"""Live candles of the ccxt exchange over websockets (ccxt.pro ``watchOHLCV``), REST filling every gap.

:class:`LiveCandles` keeps one ``watch_ohlcv`` task per (symbol, interval) that a live caller asked for up
to the present, and files the **closed** candles it sees:

- Binance family: a candle is closed when its kline event says so (``"x": true``, read from the raw message
  ccxt parses — ccxt's own cache drops the flag);
- other exchanges: a candle is closed once the stream has moved on to a later candle (its last update
  before that is taken as final).

:meth:`LiveCandles.run` answers the contiguous closed candles from ``since``; the exchange fetches by REST
whatever it does not cover (a candle missed while the socket was down or an event that never came), so
nothing is missed. A socket error is logged once per stream and the stream reconnects with backoff
(1 s doubling to 30 s); it is REST meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("btkit.ccxt")
KEEP = 5000  # closed candles kept per stream
GRACE_SECONDS = 1.5  # how long a request waits for the socket's just-closed candle before using REST

Row = tuple[int, float, float, float, float, float]


class _Stream:
    def __init__(self) -> None:
        self.closed: dict[int, Row] = {}
        self.last_open: list[Any] | None = None  # generic exchanges: the newest (still forming) candle
        self.task: asyncio.Task[None] | None = None
        self.up = False
        self.warned = False
        self.changed = asyncio.Event()

    def add(self, row: Row) -> None:
        self.closed[row[0]] = row
        if len(self.closed) > KEEP:
            for ts in sorted(self.closed)[: len(self.closed) - KEEP]:
                del self.closed[ts]
        self.changed.set()
        self.changed = asyncio.Event()


def _row(raw: Any) -> Row:
    return (int(raw[0]), float(raw[1]), float(raw[2]), float(raw[3]), float(raw[4]), float(raw[5]))


class LiveCandles:
    """Closed candles from ``watch_ohlcv`` of one ccxt.pro client (see the module docs)."""

    def __init__(self, client: Any, name: str, describe: Callable[[BaseException], str]) -> None:
        self.client = client
        self.name = name
        self._describe = describe
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._by_id: dict[tuple[str, str], tuple[str, str]] = {}  # (market id, exchange interval) -> key
        self.flagged = self._hook_closed_flag()
        self.served = 0  # candles answered from the socket

    def _hook_closed_flag(self) -> bool:
        """Binance family: read ``k.x`` of every kline message ccxt handles."""
        original = getattr(self.client, "handle_ohlcv", None)
        if original is None or not str(self.client.id).startswith("binance"):
            return False

        def handle_ohlcv(client: Any, message: Any) -> Any:
            result = original(client, message)
            kline = message.get("k") if isinstance(message, dict) else None
            if isinstance(kline, dict) and kline.get("x") is True:
                key = self._by_id.get((str(kline.get("s")), str(kline.get("i"))))
                stream = self._streams.get(key) if key else None
                if stream is not None:
                    with contextlib.suppress(KeyError, TypeError, ValueError):  # malformed: REST answers
                        stream.add(_row([kline[k] for k in ("t", "o", "h", "l", "c", "v")]))
            return result

        self.client.handle_ohlcv = handle_ohlcv
        return True

    def watch(self, symbol: str, interval: str) -> None:
        """Start streaming (symbol, interval) if it is not yet."""
        key = (symbol, interval)
        if key in self._streams:
            return
        stream = self._streams[key] = _Stream()
        market = self.client.market(symbol)
        exchange_interval = str((self.client.timeframes or {}).get(interval, interval))
        self._by_id[(str(market["id"]), exchange_interval)] = key
        stream.task = asyncio.ensure_future(self._run(key, stream))

    def closed_times(self, symbol: str, interval: str) -> list[int]:
        """Open times of the closed candles the socket delivered, oldest first."""
        stream = self._streams.get((symbol, interval))
        return sorted(stream.closed) if stream is not None else []

    def up(self, symbol: str, interval: str) -> bool:
        stream = self._streams.get((symbol, interval))
        return stream is not None and stream.up

    async def _run(self, key: tuple[str, str], stream: _Stream) -> None:
        symbol, interval = key
        delay = 1.0
        while True:
            try:
                watching = asyncio.ensure_future(self.client.watch_ohlcv(symbol, interval))
                while not watching.done() and not self._connected():
                    await asyncio.wait([watching], timeout=0.02)
                if not watching.done():
                    self._mark(stream, key, None)  # connected: closed candles are filed from now on
                while True:
                    rows = await watching
                    self._mark(stream, key, None)
                    delay = 1.0
                    if not self.flagged:
                        self._close_generic(stream, rows)
                    watching = asyncio.ensure_future(self.client.watch_ohlcv(symbol, interval))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._mark(stream, key, self._describe(exc))
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    def _connected(self) -> bool:
        for ws in list((self.client.clients or {}).values()):
            ready = ws.connected
            if ready.done() and not ready.cancelled() and ready.exception() is None and not ws.closed():
                return True
        return False

    def _mark(self, stream: _Stream, key: tuple[str, str], error: str | None) -> None:
        if error is None:
            if not stream.up and stream.warned:
                log.warning("%s %s %s: websocket candles are back", self.name, *key)
                stream.warned = False
            stream.up = True
            return
        if not stream.warned:
            log.warning(
                "%s %s %s: websocket candles stopped (%s); candles come by REST until they are back",
                self.name,
                *key,
                error,
            )
            stream.warned = True
        stream.up = False
        stream.last_open = None

    @staticmethod
    def _close_generic(stream: _Stream, rows: Any) -> None:
        for raw in rows or ():
            last = stream.last_open
            if last is not None and int(raw[0]) > int(last[0]):
                stream.add(_row(last))
            if last is None or int(raw[0]) >= int(last[0]):
                stream.last_open = list(raw)

    async def run(
        self, symbol: str, interval: str, since: int, limit: int, step: int, forming: int
    ) -> list[Row]:
        """The closed candles from the first open time ≥ ``since``, contiguous, before ``forming``, at most
        ``limit``; within :data:`GRACE_SECONDS` of a candle's close, waits that long at most for it when it is
        the only one the socket has not sent yet."""
        stream = self._streams.get((symbol, interval))
        if stream is None or not stream.up:
            return []
        first = -(-since // step) * step
        end = min(first + limit * step, forming)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GRACE_SECONDS
        while True:
            out: list[Row] = []
            ts = first
            while ts < end and ts in stream.closed:
                out.append(stream.closed[ts])
                ts += step
            # only the candle that has just closed is missing: its event may be on its way
            fresh = time.time() * 1000 - forming < GRACE_SECONDS * 1000
            latest_missing = ts == end - step and ts >= forming - step and fresh
            if ts >= end or not latest_missing or not stream.up or loop.time() >= deadline:
                self.served += len(out)
                return out
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.changed.wait(), deadline - loop.time())

    async def close(self) -> None:
        tasks = [s.task for s in self._streams.values() if s.task is not None]
        self._streams.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.client.close()
