"""Binance spot websockets for the fake spot exchange: what ``ccxt.pro.binance`` connects to.

:class:`FakeSpotWsExchange` is a :class:`~btkit_ccxt.testing.FakeSpotExchange` that also serves, on a port of
its own (aiohttp, in a thread with its own event loop):

- ``/ws-api/v3`` — the spot WebSocket API as the installed ccxt uses it for the user data stream:
  ``userDataStream.subscribe.signature`` (API key and HMAC-SHA256 signature checked), then every order
  change of the account pushed as ``{"subscriptionId": n, "event": {"e": "executionReport", ...}}``: ``NEW``
  on placement, ``TRADE`` per fill (partial or whole), ``CANCELED``, ``EXPIRED``;
- ``/ws/<n>`` — market streams: ``SUBSCRIBE`` to ``<symbol>@kline_<interval>``; :meth:`add_kline` appends a
  candle to what REST serves and pushes it as a ``kline`` event.

Faults (:meth:`ws_fault`): ``skip`` an event (it is never sent: a missed update), ``drop`` the socket instead
of sending an event, ``mute`` (the socket stays open but sends nothing). :meth:`drop_sockets` closes every
socket now; ``refuse = True`` answers new websocket handshakes with HTTP 503. Point a broker at it with
:func:`ws_client_options` (``ws_base_url``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import attrs
from aiohttp import WSMsgType, web

from btkit.components import INTERVAL_MS
from btkit_ccxt.testing import FakeSpotExchange, SpotOrder, _fmt, spot_client_options

WS_FAULT_KINDS: dict[str, str] = {
    "skip": "the event is not sent (a missed update; the socket stays open)",
    "drop": "the socket is closed instead of sending the event (the event is lost)",
    "mute": "from the first matching event on, nothing is sent (silence; the socket stays open) until "
    "clear_ws_faults()",
}


@attrs.define
class WsFault:
    kind: str
    stream: str  # "user" or "market"
    times: int | None = 1
    when: Callable[[Mapping[str, Any]], bool] | None = None
    hits: int = 0

    def matches(self, stream: str, event: Mapping[str, Any]) -> bool:
        if self.stream != stream or (self.times is not None and self.hits >= self.times):
            return False
        if self.kind == "mute" and self.hits:
            return True  # muted from its first event on
        return self.when is None or bool(self.when(event))


class _Conn:
    """One accepted websocket: a queue drained in order by its writer task."""

    def __init__(self, ws: web.WebSocketResponse, stream: str) -> None:
        self.ws = ws
        self.stream = stream
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.topics: set[str] = set()  # market: subscribed stream names; user: {"user"} once subscribed
        self.subscription = -1


class FakeSpotWsExchange(FakeSpotExchange):
    """The fake spot exchange plus its Binance websockets (``ws_url``); see the module docs."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refuse = False
        self._ws_loop: asyncio.AbstractEventLoop | None = None
        self._ws_thread: threading.Thread | None = None
        self._ws_runner: web.AppRunner | None = None
        self._ws_port = 0
        self._conns: list[_Conn] = []
        self._ws_faults: list[WsFault] = []
        self._subscription_ids = itertools.count(0)
        self._cancel_ids = itertools.count(1)
        self._held: list[dict[str, Any]] | None = None  # events of an order placement in progress
        self.ws_connections: dict[str, int] = {"user": 0, "market": 0}
        self.ws_sent: list[dict[str, Any]] = []  # every event actually written to a socket
        self.ws_requests: list[dict[str, Any]] = []  # every request received on a socket

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FakeSpotWsExchange:
        super().start()
        if self._ws_thread is None:
            ready = threading.Event()
            loop = asyncio.new_event_loop()
            self._ws_loop = loop
            self._ws_thread = threading.Thread(target=self._serve, args=(loop, ready), daemon=True)
            self._ws_thread.start()
            if not ready.wait(10):
                raise RuntimeError("the fake websocket server did not start within 10 s")
        return self

    def _serve(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        app = web.Application()
        app.router.add_get("/ws-api/v3", self._user_handler)
        app.router.add_get("/ws", self._market_handler)
        app.router.add_get("/ws/{index}", self._market_handler)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5, access_log=None)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, self._host, 0)
        loop.run_until_complete(site.start())
        self._ws_port = int(runner.addresses[0][1])
        self._ws_runner = runner
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    def stop(self) -> None:
        loop, thread = self._ws_loop, self._ws_thread
        if loop is not None and thread is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
        self._ws_loop = self._ws_thread = None
        super().stop()

    def __enter__(self) -> FakeSpotWsExchange:
        return self.start()

    @property
    def ws_url(self) -> str:
        """Base URL to give as ``ws_base_url`` (``ws://127.0.0.1:<port>``)."""
        if not self._ws_port or self._ws_loop is None:
            raise RuntimeError("the fake websocket server is not running; call start()")
        return f"ws://{self._host}:{self._ws_port}"

    # ------------------------------------------------------------ test controls
    def ws_fault(
        self,
        kind: str,
        *,
        stream: str = "user",
        times: int | None = 1,
        when: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> WsFault:
        """The next ``times`` events of ``stream`` (``user`` or ``market``; and ``when(event)``) suffer ``kind``."""
        if kind not in WS_FAULT_KINDS:
            raise ValueError(f"unknown websocket fault {kind!r}; use one of {', '.join(WS_FAULT_KINDS)}")
        if stream not in ("user", "market"):
            raise ValueError(f"unknown stream {stream!r}; use user or market")
        fault = WsFault(kind, stream, None if kind == "mute" else times, when)
        with self._lock:
            self._ws_faults.append(fault)
        return fault

    def clear_ws_faults(self) -> None:
        with self._lock:
            self._ws_faults.clear()

    def drop_sockets(self, stream: str | None = None) -> None:
        """Close every open socket (of ``stream`` if given) now, without a close frame's reason."""
        loop = self._ws_loop
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close_all(stream), loop).result(5)

    def subscribed(self, stream: str = "user") -> int:
        """How many sockets of ``stream`` are subscribed now."""
        with self._lock:
            return sum(1 for c in self._conns if c.stream == stream and c.topics and not c.ws.closed)

    def events(self, kind: str = "executionReport") -> list[dict[str, Any]]:
        """The events of ``kind`` actually sent (``executionReport`` or ``kline``), oldest first."""
        with self._lock:
            return [e for e in self.ws_sent if e.get("e") == kind]

    def add_kline(
        self, symbol: str, interval: str, row: Iterable[Any], *, closed: bool = True, push: bool = True
    ) -> None:
        """Append ``(open_ms, o, h, l, c, v)`` to the candles REST serves (when ``closed``) and push it as a
        ``kline`` event to the subscribers of ``<symbol>@kline_<interval>`` (unless ``push`` is False)."""
        values = list(row)
        with self._lock:
            sym = self._spec(symbol).symbol
            if closed:
                rows = self._scripted.setdefault((sym, interval), [])
                rows[:] = [r for r in rows if r[0] != values[0]] + [values]
                rows.sort(key=lambda r: r[0])
            if not push:
                return
            step = INTERVAL_MS[interval]
            o, h, low, c, v = (str(x) for x in values[1:6])
            event = {
                "e": "kline",
                "E": self._now(),
                "s": sym,
                "k": {
                    "t": values[0],
                    "T": values[0] + step - 1,
                    "s": sym,
                    "i": interval,
                    "f": 1,
                    "L": 100,
                    "o": o,
                    "c": c,
                    "h": h,
                    "l": low,
                    "v": v,
                    "n": 100,
                    "x": closed,
                    "q": "0",
                    "V": "0",
                    "Q": "0",
                    "B": "0",
                },
            }
            self._emit("market", event, f"{sym.lower()}@kline_{interval}")

    # ------------------------------------------------------------ order events (hooks of the REST fake)
    def _report(self, order: SpotOrder, execution: str, **extra: Any) -> dict[str, Any]:
        cancel = execution == "CANCELED"
        event = {
            "e": "executionReport",
            "E": self._now(),
            "s": order.symbol,
            "c": f"cancel-{next(self._cancel_ids)}" if cancel else order.client_order_id,
            "S": order.side,
            "o": order.type,
            "f": order.time_in_force,
            "q": _fmt(order.quantity),
            "p": _fmt(order.price),
            "P": _fmt(order.stop_price),
            "F": "0",
            "g": -1,
            "C": order.client_order_id if cancel else "",
            "x": execution,
            "X": order.status,
            "r": "NONE",
            "i": order.order_id,
            "l": "0",
            "z": _fmt(order.executed),
            "L": "0",
            "n": "0",
            "N": None,
            "T": order.update_time or order.time,
            "t": -1,
            "I": 1,
            "w": order.is_open,
            "m": False,
            "M": False,
            "O": order.time,
            "Z": _fmt(order.cum_quote),
            "Y": "0",
            "Q": "0",
        }
        event.update(extra)
        return event

    def _user_event(self, event: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append(event)
        else:
            self._emit("user", event, "user")

    def _fill(self, order: SpotOrder, price: Decimal) -> None:
        before = len(self._fills)
        super()._fill(order, price)
        for fill in self._fills[before:]:
            self._user_event(
                self._report(
                    order,
                    "TRADE",
                    l=_fmt(fill.qty),
                    L=_fmt(fill.price),
                    n=_fmt(fill.commission),
                    N=fill.commission_asset,
                    t=fill.trade_id,
                    Y=_fmt(fill.qty * fill.price),
                    T=fill.time,
                )
            )
        if order.status == "EXPIRED":
            self._user_event(self._report(order, "EXPIRED"))

    def _new_order(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        self._held = []
        try:
            answer = super()._new_order(params, ctx)
            held = self._held
        finally:
            self._held = None
        order = self._orders[int(answer["orderId"])]
        placed = self._report(order, "NEW", X="NEW", z="0", Z="0", w=True, T=order.time)
        for event in [placed, *held]:
            self._emit("user", event, "user")
        return answer

    def _cancel_order(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        answer = super()._cancel_order(params, ctx)
        self._emit("user", self._report(self._orders[int(answer["orderId"])], "CANCELED"), "user")
        return answer

    # ------------------------------------------------------------ sending (any thread, under the lock)
    def _emit(self, stream: str, event: dict[str, Any], topic: str) -> None:
        loop = self._ws_loop
        if loop is None:
            return
        with self._lock:
            action = None
            for fault in self._ws_faults:
                if fault.matches(stream, event):
                    fault.hits += 1
                    action = fault.kind
                    break
            if action in ("skip", "mute"):
                return
            targets = [c for c in self._conns if c.stream == stream and topic in c.topics]
            for conn in targets:
                if action == "drop":
                    loop.call_soon_threadsafe(conn.queue.put_nowait, None)
                    continue
                body = {"subscriptionId": conn.subscription, "event": event} if stream == "user" else event
                self.ws_sent.append(event)
                loop.call_soon_threadsafe(conn.queue.put_nowait, json.dumps(body))

    async def _writer(self, conn: _Conn) -> None:
        while True:
            text = await conn.queue.get()
            if text is None or conn.ws.closed:
                await conn.ws.close()
                return
            try:
                await conn.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def _close_all(self, stream: str | None = None) -> None:
        with self._lock:
            conns = [c for c in self._conns if stream is None or c.stream == stream]
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.ws.close()

    async def _accept(self, request: web.Request, stream: str) -> tuple[web.WebSocketResponse, _Conn] | None:
        if self.refuse:
            return None
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, stream)
        with self._lock:
            self._conns.append(conn)
            self.ws_connections[stream] += 1
        return ws, conn

    async def _session(
        self, request: web.Request, stream: str, answer: Callable[[_Conn, dict[str, Any]], dict[str, Any]]
    ) -> web.StreamResponse:
        accepted = await self._accept(request, stream)
        if accepted is None:
            return web.Response(status=503, text="websocket handshakes refused by the test")
        ws, conn = accepted
        writer = asyncio.ensure_future(self._writer(conn))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    request_body = json.loads(msg.data)
                except ValueError:
                    continue
                with self._lock:
                    self.ws_requests.append(request_body)
                    reply = answer(conn, request_body)
                await ws.send_str(json.dumps(reply))
        finally:
            with self._lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            conn.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await writer
        return ws

    async def _user_handler(self, request: web.Request) -> web.StreamResponse:
        return await self._session(request, "user", self._user_request)

    async def _market_handler(self, request: web.Request) -> web.StreamResponse:
        return await self._session(request, "market", self._market_request)

    def _user_request(self, conn: _Conn, body: dict[str, Any]) -> dict[str, Any]:
        rid = body.get("id")
        if body.get("method") != "userDataStream.subscribe.signature":
            return {"id": rid, "status": 400, "error": {"code": -1100, "msg": "Unsupported method."}}
        params = dict(body.get("params") or {})
        signature = str(params.pop("signature", ""))
        query = "&".join(f"{k}={params[k]}" for k in sorted(params))
        expected = hmac.new(self.api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        if params.get("apiKey") != self.api_key:
            return {"id": rid, "status": 401, "error": {"code": -2015, "msg": "Invalid API-key."}}
        if not hmac.compare_digest(expected, signature):
            return {"id": rid, "status": 400, "error": {"code": -1022, "msg": "Signature is not valid."}}
        conn.subscription = next(self._subscription_ids)
        conn.topics.add("user")
        return {"id": rid, "status": 200, "result": {"subscriptionId": conn.subscription}}

    def _market_request(self, conn: _Conn, body: dict[str, Any]) -> dict[str, Any]:
        method = body.get("method")
        streams = [str(s) for s in body.get("params") or []]
        if method == "SUBSCRIBE":
            conn.topics.update(streams)
        elif method == "UNSUBSCRIBE":
            conn.topics.difference_update(streams)
        else:
            return {"id": body.get("id"), "error": {"code": 2, "msg": f"Invalid request: {method}"}}
        return {"result": None, "id": body.get("id")}


def ws_client_options(fake: FakeSpotWsExchange, **options: Any) -> dict[str, Any]:
    """Broker options pointing ``ccxt:binance`` at ``fake``'s REST and websockets (fast test timings)."""
    return spot_client_options(fake, **{"ws_base_url": fake.ws_url, **options})


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the awaited state was not reached within {timeout}s")
        time.sleep(0.01)


try:  # pytest is a test-time dependency only
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def fake_spot_ws(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSpotWsExchange]:
        """A running :class:`FakeSpotWsExchange` with ``BINANCE_API_KEY`` / ``_SECRET`` set to its keys."""
        with FakeSpotWsExchange() as fake:
            monkeypatch.setenv("BINANCE_API_KEY", fake.api_key)
            monkeypatch.setenv("BINANCE_API_SECRET", fake.api_secret)
            yield fake
