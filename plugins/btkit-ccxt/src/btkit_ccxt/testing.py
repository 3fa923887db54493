"""A fake spot exchange on 127.0.0.1 that real ccxt talks to: Binance spot's REST shape (``/api/v3``).

``FakeSpotExchange`` serves what ccxt ``binance`` calls for spot trading: exchange info, time, klines,
ticker price, orders (``/api/v3/order``: MARKET, LIMIT, STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT,
TAKE_PROFIT_LIMIT), open orders, account balances (``/api/v3/account``) and trades (``/api/v3/myTrades``,
with the commission of every fill). Private endpoints check ``X-MBX-APIKEY`` and the HMAC-SHA256 signature.

The account holds assets (free and locked). A buy is charged its fee in the base asset it receives and a
sell in the quote asset, as Binance does without BNB, so a bought position holds a little less than the
order's quantity. Prices only move when the test calls :meth:`FakeSpotExchange.set_price`; market orders
fill at the price, limit orders when the price crosses them, stop/take-profit orders trigger on it.

Faults are injected per endpoint with :meth:`FakeSpotExchange.inject` — the same kinds as the fake Binance
futures server of btkit-binance-futures (:data:`FAULT_KINDS`). Use it as a context manager (``with
FakeSpotExchange() as fake: ... fake.url``) and point a client at it with :func:`spot_client_options`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import math
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from decimal import ROUND_DOWN, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import attrs

from btkit.components import INTERVAL_MS
from btkit_ccxt.limits import rate_limits_json

API_KEY = "fake-spot-api-key-0123456789"
API_SECRET = "fake-spot-api-secret-9876543210"
KLINE_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
EXCHANGE_ID = "binance"  # the ccxt id whose REST shape the fake serves

FAULT_KINDS: dict[str, str] = {
    "stall": "hold the request without processing it (the client times out → ccxt RequestTimeout)",
    "drop": "close the connection without processing or answering (→ ccxt ExchangeNotAvailable)",
    "accept_then_drop": "process the request (e.g. place the order), then close without answering",
    "accept_then_stall": "process the request, then hold the response (the client times out)",
    "status": "answer with HTTP `status` (default 503) and an HTML body (5xx → ExchangeNotAvailable)",
    "rate_limit": "answer HTTP 429 with Binance's -1003 body (→ ccxt RateLimitExceeded / DDoSProtection)",
    "non_json": "answer HTTP 200 with an HTML page instead of JSON",
    "error": "answer with a Binance error: `code` (e.g. -2010, -1013), `msg`, `status` (400)",
    "partial_fill": "process the order, but let only `fraction` of it fill (until lift_fill_caps())",
}
PRIVATE_PATHS = frozenset({"/api/v3/order", "/api/v3/openOrders", "/api/v3/account", "/api/v3/myTrades"})
STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT"})
TAKE_TYPES = frozenset({"TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})


class ApiError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code, self.msg, self.status = code, msg, status


def _d(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _fmt(value: Decimal, places: int = 8) -> str:
    text = format(value.quantize(Decimal(1).scaleb(-places)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@attrs.define
class SpotSymbol:
    """One spot market of the fake."""

    symbol: str
    base: str
    price: Decimal = attrs.field(converter=_d)
    tick_size: Decimal = attrs.field(default=Decimal("0.01"), converter=_d)
    step_size: Decimal = attrs.field(default=Decimal("0.00001"), converter=_d)
    min_qty: Decimal = attrs.field(default=Decimal("0.00001"), converter=_d)
    min_notional: Decimal = attrs.field(default=Decimal("5"), converter=_d)
    quote: str = "USDT"


def default_symbols() -> list[SpotSymbol]:
    return [
        SpotSymbol("BTCUSDT", "BTC", "50000", tick_size="0.01", step_size="0.00001", min_notional="10"),
        SpotSymbol("ETHUSDT", "ETH", "3000", tick_size="0.01", step_size="0.0001", min_notional="10"),
    ]


@attrs.define
class Fault:
    path: str
    kind: str
    method: str | None = None
    times: int | None = 1
    when: Callable[[Mapping[str, str]], bool] | None = None
    options: dict[str, Any] = attrs.Factory(dict)
    hits: int = 0

    def matches(self, method: str, path: str, params: Mapping[str, str]) -> bool:
        if self.path != path or (self.method is not None and self.method != method):
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        return self.when is None or bool(self.when(params))


@attrs.frozen
class RequestRecord:
    method: str
    path: str
    params: dict[str, str]
    fault: str | None
    status: int | None
    at: float


@attrs.frozen
class Fill:
    """One execution (a Binance trade row): ``commission`` in ``commission_asset``."""

    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int


@attrs.define
class SpotOrder:
    order_id: int
    symbol: str
    client_order_id: str
    side: str
    type: str
    quantity: Decimal
    price: Decimal
    stop_price: Decimal
    time_in_force: str
    time: int
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    update_time: int = 0
    fill_cap: Decimal | None = None
    triggered: bool = False
    reserve_price: Decimal = Decimal(0)  # the price a buy's quote reservation was made at

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def to_json(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": _fmt(self.price),
            "origQty": _fmt(self.quantity),
            "executedQty": _fmt(self.executed),
            "cummulativeQuoteQty": _fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.time_in_force,
            "type": self.type,
            "side": self.side,
            "stopPrice": _fmt(self.stop_price),
            "icebergQty": "0",
            "time": self.time,
            "updateTime": self.update_time or self.time,
            "isWorking": self.type in ("LIMIT", "MARKET") or self.triggered,
            "workingTime": self.time,
            "origQuoteOrderQty": "0",
            "selfTradePreventionMode": "NONE",
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    fake: FakeSpotExchange


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.fake._handle(self, "DELETE")


def _drop(handler: BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    ctype: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()
    except OSError:
        handler.close_connection = True


class FakeSpotExchange:
    """A threaded fake of Binance spot REST on ``127.0.0.1``; every state change happens under one lock."""

    def __init__(
        self,
        *,
        symbols: Iterable[SpotSymbol] | None = None,
        extra_symbols: int = 0,
        balances: Mapping[str, float | str] | None = None,
        fee_rate: float | str = "0.001",
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        enforce_limits: bool = False,
        ban_seconds: float = 120.0,
        limits_time_scale: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        from btkit_ccxt.limits import SPOT, ServerLimits, spot_cost

        specs = list(symbols) if symbols is not None else default_symbols()
        for i in range(extra_symbols):  # SYM<i>USDT at 10 + i, lot step 0.1, min notional 5
            specs.append(SpotSymbol(f"SYM{i}USDT", f"SYM{i}", 10 + i, "0.001", "0.1", "0.1", "5"))
        self.symbols: dict[str, SpotSymbol] = {s.symbol: s for s in specs}
        self.api_key, self.api_secret = api_key, api_secret
        self.fee_rate = _d(fee_rate)
        self._host, self._port = host, port
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(2_000_001)
        self._trade_ids = itertools.count(7_000_001)
        self._prices = {s.symbol: s.price for s in specs}
        self._free: dict[str, Decimal] = {"USDT": Decimal(10000)}
        self._locked: dict[str, Decimal] = {}
        for asset, amount in (balances or {}).items():
            self._free[asset] = _d(amount)
        self._orders: dict[int, SpotOrder] = {}
        self._scripted: dict[tuple[str, str], list[list[Any]]] = {}
        self._fills: list[Fill] = []
        self._faults: list[Fault] = []
        self._requests: list[RequestRecord] = []
        self._placed: list[str] = []
        #: Binance spot's budgets (6000 weight/min, 50 orders/10 s): always counted and sent as X-MBX-*
        #: headers; with ``enforce_limits`` over-budget requests get 429 and then 418 like Binance
        self.limits = ServerLimits(
            SPOT,
            spot_cost,
            enforce=enforce_limits,
            ban_seconds=ban_seconds,
            clock=lambda: time.monotonic() * limits_time_scale,
        )
        self._routes: dict[tuple[str, str], Callable[[dict[str, str], dict[str, Any]], Any]] = {
            ("GET", "/api/v3/ping"): lambda p, c: {},
            ("GET", "/api/v3/time"): lambda p, c: {"serverTime": self._now()},
            ("GET", "/api/v3/exchangeInfo"): self._exchange_info,
            ("GET", "/api/v3/klines"): self._klines,
            ("GET", "/api/v3/ticker/price"): self._ticker,
            ("POST", "/api/v3/order"): self._new_order,
            ("GET", "/api/v3/order"): self._get_order,
            ("DELETE", "/api/v3/order"): self._cancel_order,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("GET", "/api/v3/account"): self._account,
            ("GET", "/api/v3/myTrades"): self._my_trades,
        }

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FakeSpotExchange:
        if self._server is None:
            self._stop.clear()
            self._server = _Server((self._host, self._port), _Handler)
            self._server.fake = self
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSpotExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL to give as ``api_base_url`` (``http://127.0.0.1:<port>``)."""
        if self._server is None:
            raise RuntimeError("the fake server is not running; call start() or use it as a context manager")
        return f"http://{self._host}:{self._server.server_address[1]}"

    # ------------------------------------------------------------ test controls
    def _spec(self, symbol: str | None) -> SpotSymbol:
        key = symbol or next(iter(self.symbols))
        if key not in self.symbols:
            raise KeyError(f"the fake has no symbol {key!r}; known: {', '.join(self.symbols)}")
        return self.symbols[key]

    def price(self, symbol: str | None = None) -> Decimal:
        with self._lock:
            return self._prices[self._spec(symbol).symbol]

    def set_price(self, price: float | str | Decimal, symbol: str | None = None) -> None:
        """Move the price of ``symbol`` (default: the first) and run the matching."""
        with self._lock:
            sym = self._spec(symbol).symbol
            self._prices[sym] = _d(price)
            self._match(sym)

    def set_klines(self, symbol: str, interval: str, rows: Iterable[Iterable[Any]]) -> None:
        """Serve exactly these ``(open_ms, o, h, l, c, v)`` rows for ``symbol`` / ``interval``."""
        with self._lock:
            self._scripted[(self._spec(symbol).symbol, interval)] = [list(r) for r in rows]

    def set_balance(self, asset: str, free: float | str | Decimal) -> None:
        """Give the account ``free`` of ``asset`` (e.g. a holding bought by hand)."""
        with self._lock:
            self._free[asset] = _d(free)

    def balance(self, asset: str) -> tuple[Decimal, Decimal]:
        """``(free, locked)`` of ``asset``."""
        with self._lock:
            return self._free.get(asset, Decimal(0)), self._locked.get(asset, Decimal(0))

    def inject(
        self,
        path: str,
        kind: str,
        *,
        method: str | None = None,
        times: int | None = 1,
        when: Callable[[Mapping[str, str]], bool] | None = None,
        **options: Any,
    ) -> Fault:
        """Make the next ``times`` requests to ``path`` (and ``method``, and ``when(params)``) fail."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(FAULT_KINDS)}")
        fault = Fault(path, kind, method, times, when, dict(options))
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def lift_fill_caps(self) -> None:
        with self._lock:
            for order in self._orders.values():
                order.fill_cap = None
            for sym in self.symbols:
                self._match(sym)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str, method: str | None = None) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    @property
    def placed(self) -> list[str]:
        """The client order id of every accepted order placement, in order."""
        with self._lock:
            return list(self._placed)

    def order_count(self, client_id: str) -> int:
        return self.placed.count(client_id)

    def orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [o.to_json() for o in self._orders.values() if symbol is None or o.symbol == symbol]

    def order(self, client_id: str) -> dict[str, Any] | None:
        """The last order placed with ``client_id``."""
        with self._lock:
            found = [o for o in self._orders.values() if o.client_order_id == client_id]
            return found[-1].to_json() if found else None

    def fills(self, symbol: str | None = None) -> list[Fill]:
        with self._lock:
            return [f for f in self._fills if symbol is None or f.symbol == symbol]

    def wait_until(self, predicate: Callable[[FakeSpotExchange], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the fake never reached the awaited state within {timeout}s")
            time.sleep(0.01)

    # ------------------------------------------------------------ request handling
    def _now(self) -> int:
        return int(time.time() * 1000)

    def _take_fault(self, method: str, path: str, params: Mapping[str, str]) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path, params):
                    fault.hits += 1
                    return fault
        return None

    def _check_auth(self, handler: BaseHTTPRequestHandler, query: str, body: str) -> None:
        if handler.headers.get("X-MBX-APIKEY") != self.api_key:
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        total, signature = "", None
        for part in (query, body):
            marker = part.rfind("signature=") if part else -1
            if marker >= 0:
                signature = part[marker + len("signature=") :].split("&")[0]
                part = part[: max(0, marker - 1)]
            total += part
        expected = hmac.new(self.api_secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(expected, signature):
            raise ApiError(-1022, "Signature for this request is not valid.")

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(handler.path)
        path, query = split.path, split.query
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode("utf-8", "replace") if length else ""
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        params.pop("signature", None)
        fault = self._take_fault(method, path, params)
        kind = fault.kind if fault else None
        opts = fault.options if fault else {}
        status: int | None = None
        record = RequestRecord(method, path, dict(params), kind, None, time.time())
        limit_headers: dict[str, str] = {}
        with self._lock:
            index = len(self._requests)
            self._requests.append(record)
        try:
            if kind == "stall":
                self._stop.wait(float(opts.get("seconds", 30)))
                return _drop(handler)
            if kind == "drop":
                return _drop(handler)
            if kind in ("status", "non_json"):
                status = int(opts.get("status", 503 if kind == "status" else 200))
                page = f"<html><body><h1>{status}</h1></body></html>".encode()
                return _send(handler, status, page, "text/html")
            if kind == "rate_limit":
                status = 429
                raise ApiError(-1003, "Too many requests; please use websocket.", 429)
            if kind == "error":
                raise ApiError(
                    int(opts.get("code", -1000)),
                    str(opts.get("msg", "injected")),
                    int(opts.get("status", 400)),
                )
            route = self._routes.get((method, path))
            if route is None:
                raise ApiError(-1000, f"fake: no endpoint {method} {path}", 404)
            verdict = self.limits.admit(method, path, params)
            limit_headers = verdict.headers
            if verdict.status != 200:
                raise ApiError(verdict.code, verdict.msg, verdict.status)
            if path in PRIVATE_PATHS:
                self._check_auth(handler, query, body)
            ctx: dict[str, Any] = {}
            if kind == "partial_fill":
                ctx["fill_fraction"] = _d(opts.get("fraction", "0.5"))
            with self._lock:
                result = route(params, ctx)
            status = 200
            if kind == "accept_then_drop":
                return _drop(handler)
            if kind == "accept_then_stall":
                self._stop.wait(float(opts.get("seconds", 30)))
                return _drop(handler)
            _send(handler, 200, json.dumps(result).encode(), "application/json", limit_headers)
        except ApiError as exc:
            status = exc.status
            _send(
                handler,
                exc.status,
                json.dumps({"code": exc.code, "msg": exc.msg}).encode(),
                "application/json",
                limit_headers,
            )
        finally:
            with self._lock:
                self._requests[index] = attrs.evolve(record, status=status)

    # ------------------------------------------------------------ public endpoints
    def _symbol_of(self, params: Mapping[str, str]) -> SpotSymbol:
        spec = self.symbols.get(params.get("symbol", ""))
        if spec is None:
            raise ApiError(-1121, "Invalid symbol.")
        return spec

    def _exchange_info(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        rows = []
        for s in self.symbols.values():
            rows.append(
                {
                    "symbol": s.symbol,
                    "status": "TRADING",
                    "baseAsset": s.base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": s.quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": [
                        "LIMIT",
                        "LIMIT_MAKER",
                        "MARKET",
                        "STOP_LOSS",
                        "STOP_LOSS_LIMIT",
                        "TAKE_PROFIT",
                        "TAKE_PROFIT_LIMIT",
                    ],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "otoAllowed": True,
                    "quoteOrderQtyMarketAllowed": True,
                    "allowTrailingStop": True,
                    "cancelReplaceAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": _fmt(s.tick_size),
                            "maxPrice": "1000000",
                            "tickSize": _fmt(s.tick_size),
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": _fmt(s.min_qty),
                            "maxQty": "9000",
                            "stepSize": _fmt(s.step_size),
                        },
                        {
                            "filterType": "NOTIONAL",
                            "minNotional": _fmt(s.min_notional),
                            "applyMinToMarket": True,
                            "maxNotional": "9000000",
                            "applyMaxToMarket": False,
                            "avgPriceMins": 5,
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "NONE",
                    "allowedSelfTradePreventionModes": ["NONE"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self._now(),
            "rateLimits": rate_limits_json(self.limits.budget),
            "exchangeFilters": [],
            "symbols": rows,
        }

    def _klines(self, params: dict[str, str], ctx: dict[str, Any]) -> list[list[Any]]:
        spec = self._symbol_of(params)
        step = INTERVAL_MS.get(params.get("interval", ""))
        if step is None:
            raise ApiError(-1120, "Invalid interval.")
        limit = min(int(params.get("limit", 500)), 1000)
        scripted = self._scripted.get((spec.symbol, params.get("interval", "")))
        if scripted is not None:
            start_ms, end_ms = int(params.get("startTime", 0)), int(params.get("endTime", 2**62))
            kept = [r for r in scripted if start_ms <= r[0] <= end_ms]
            chosen = kept[:limit] if "startTime" in params else kept[-limit:]
            return [[*r[:6], r[0] + step - 1, "0", 100, "0", "0", "0"] for r in chosen]
        start = int(params.get("startTime", KLINE_START_MS))
        first = max(KLINE_START_MS, -(-start // step) * step)
        out = []
        for t in range(first, first + limit * step, step):
            n = t // step
            o = float(spec.price) * (1 + 0.02 * math.sin(n / 37.0))
            c = float(spec.price) * (1 + 0.02 * math.sin((n + 1) / 37.0))
            out.append(
                [
                    t,
                    f"{o:.4f}",
                    f"{max(o, c) * 1.001:.4f}",
                    f"{min(o, c) * 0.999:.4f}",
                    f"{c:.4f}",
                    "10",
                    t + step - 1,
                    "0",
                    100,
                    "0",
                    "0",
                    "0",
                ]
            )
        return out

    def _ticker(self, params: dict[str, str], ctx: dict[str, Any]) -> Any:
        rows = [
            {"symbol": s, "price": _fmt(p)}
            for s, p in self._prices.items()
            if "symbol" not in params or params["symbol"] == s
        ]
        return rows[0] if "symbol" in params and rows else rows

    # ------------------------------------------------------------ balances and matching
    def _move(self, asset: str, free: Decimal = Decimal(0), locked: Decimal = Decimal(0)) -> None:
        self._free[asset] = self._free.get(asset, Decimal(0)) + free
        self._locked[asset] = self._locked.get(asset, Decimal(0)) + locked

    def _reserve(self, spec: SpotSymbol, side: str, qty: Decimal, price: Decimal) -> Decimal:
        asset, amount = (spec.quote, qty * price) if side == "BUY" else (spec.base, qty)
        if self._free.get(asset, Decimal(0)) < amount:
            raise ApiError(-2010, "Account has insufficient balance for requested action.")
        self._move(asset, -amount, amount)
        return amount

    def _release(self, order: SpotOrder) -> None:
        """Unlock what an order no longer needs (after it ended)."""
        spec = self.symbols[order.symbol]
        left = order.quantity - order.executed
        if order.side == "SELL":
            self._move(spec.base, left, -left)
        else:
            unused = left * order.reserve_price
            self._move(spec.quote, unused, -unused)

    def _fill(self, order: SpotOrder, price: Decimal) -> None:
        spec = self.symbols[order.symbol]
        remaining = order.quantity - order.executed
        if order.fill_cap is not None:
            remaining = min(remaining, order.fill_cap - order.executed)
        now = self._now()
        if remaining > 0:
            quote = remaining * price
            if order.side == "BUY":
                fee = (remaining * self.fee_rate).quantize(Decimal("1e-8"), ROUND_DOWN)
                reserved_part = remaining * order.reserve_price
                self._move(spec.quote, reserved_part - quote, -reserved_part)
                self._move(spec.base, remaining - fee)
                asset = spec.base
            else:
                fee = (quote * self.fee_rate).quantize(Decimal("1e-8"), ROUND_DOWN)
                self._move(spec.base, Decimal(0), -remaining)
                self._move(spec.quote, quote - fee)
                asset = spec.quote
            order.executed += remaining
            order.cum_quote += quote
            self._fills.append(
                Fill(
                    next(self._trade_ids),
                    order.order_id,
                    spec.symbol,
                    order.side,
                    price,
                    remaining,
                    fee,
                    asset,
                    now,
                )
            )
        order.update_time = now
        if order.executed >= order.quantity:
            order.status = "FILLED"
        elif order.type == "MARKET" or (order.triggered and order.type in ("STOP_LOSS", "TAKE_PROFIT")):
            order.status = "EXPIRED"
            self._release(order)
        elif order.executed > 0:
            order.status = "PARTIALLY_FILLED"

    def _crosses(self, order: SpotOrder, price: Decimal) -> bool:
        return price <= order.price if order.side == "BUY" else price >= order.price

    def _triggers(self, order: SpotOrder, price: Decimal) -> bool:
        stop = order.type in STOP_TYPES
        if order.side == "SELL":
            return price <= order.stop_price if stop else price >= order.stop_price
        return price >= order.stop_price if stop else price <= order.stop_price

    def _match(self, symbol: str) -> None:
        price = self._prices[symbol]
        for order in list(self._orders.values()):
            if order.symbol != symbol or not order.is_open:
                continue
            if order.type in STOP_TYPES | TAKE_TYPES and not order.triggered:
                if not self._triggers(order, price):
                    continue
                order.triggered = True
                if order.type in ("STOP_LOSS", "TAKE_PROFIT"):
                    self._fill(order, price)
                    continue
            if order.type != "MARKET" and self._crosses(order, price):
                self._fill(order, order.price)

    # ------------------------------------------------------------ orders
    def _find(self, spec: SpotSymbol, params: Mapping[str, str]) -> SpotOrder | None:
        if params.get("orderId"):
            order = self._orders.get(int(params["orderId"]))
            return order if order is not None and order.symbol == spec.symbol else None
        cid = params.get("origClientOrderId")
        if not cid:
            raise ApiError(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        found = [o for o in self._orders.values() if o.symbol == spec.symbol and o.client_order_id == cid]
        return found[-1] if found else None

    def _number(self, params: Mapping[str, str], name: str, step: Decimal) -> Decimal:
        raw = params.get(name)
        if raw is None:
            raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        value = _d(raw)
        if value <= 0 or value % step != 0:
            kind = "LOT_SIZE" if name == "quantity" else "PRICE_FILTER"
            raise ApiError(-1013, f"Filter failure: {kind}")
        return value

    def _new_order(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        spec = self._symbol_of(params)
        side = params.get("side", "").upper()
        otype = params.get("type", "").upper()
        if side not in ("BUY", "SELL"):
            raise ApiError(-1117, "Invalid side.")
        if otype not in {"MARKET", "LIMIT"} | STOP_TYPES | TAKE_TYPES:
            raise ApiError(-1116, "Invalid orderType.")
        qty = self._number(params, "quantity", spec.step_size)
        if qty < spec.min_qty:
            raise ApiError(-1013, "Filter failure: LOT_SIZE")
        price = self._number(params, "price", spec.tick_size) if otype.endswith("LIMIT") else Decimal(0)
        stop = (
            self._number(params, "stopPrice", spec.tick_size)
            if otype not in ("MARKET", "LIMIT")
            else Decimal(0)
        )
        mark = self._prices[spec.symbol]
        if (price or stop or mark) * qty < spec.min_notional:
            raise ApiError(-1013, "Filter failure: NOTIONAL")
        if otype in STOP_TYPES | TAKE_TYPES and self._triggers(
            SpotOrder(0, "", "", side, otype, qty, price, stop, "", 0), mark
        ):
            raise ApiError(-2010, "Stop price would trigger immediately.")
        cid = params.get("newClientOrderId") or f"fake-{next(self._ids)}"
        if any(o.client_order_id == cid and o.is_open for o in self._orders.values()):
            raise ApiError(-2010, "Duplicate order sent.")
        reserve_at = price or stop or mark
        self._reserve(spec, side, qty, reserve_at)
        now = self._now()
        order = SpotOrder(
            next(self._ids),
            spec.symbol,
            cid,
            side,
            otype,
            qty,
            price,
            stop,
            params.get("timeInForce", "GTC"),
            now,
            reserve_price=reserve_at,
        )
        fraction = ctx.get("fill_fraction")
        if fraction is not None:
            order.fill_cap = (qty * fraction / spec.step_size).to_integral_value(ROUND_DOWN) * spec.step_size
        self._orders[order.order_id] = order
        self._placed.append(cid)
        if otype == "MARKET":
            self._fill(order, mark)
        elif otype == "LIMIT" and self._crosses(order, mark):
            self._fill(order, mark)  # marketable: taker fill at the current price
        answer = order.to_json()
        answer["transactTime"] = now
        answer["fills"] = [
            {
                "price": _fmt(f.price),
                "qty": _fmt(f.qty),
                "commission": _fmt(f.commission),
                "commissionAsset": f.commission_asset,
                "tradeId": f.trade_id,
            }
            for f in self._fills
            if f.order_id == order.order_id
        ]
        return answer

    def _get_order(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        order = self._find(self._symbol_of(params), params)
        if order is None:
            raise ApiError(-2013, "Order does not exist.")
        return order.to_json()

    def _cancel_order(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        order = self._find(self._symbol_of(params), params)
        if order is None or not order.is_open:
            raise ApiError(-2011, "Unknown order sent.")
        order.status = "CANCELED"
        order.update_time = self._now()
        self._release(order)
        return order.to_json()

    def _open_orders(self, params: dict[str, str], ctx: dict[str, Any]) -> list[dict[str, Any]]:
        spec = self._symbol_of(params) if params.get("symbol") else None
        return [
            o.to_json()
            for o in self._orders.values()
            if o.is_open and (spec is None or o.symbol == spec.symbol)
        ]

    def _account(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        assets = sorted(set(self._free) | set(self._locked))
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "updateTime": self._now(),
            "accountType": "SPOT",
            "balances": [
                {
                    "asset": a,
                    "free": _fmt(self._free.get(a, Decimal(0))),
                    "locked": _fmt(self._locked.get(a, Decimal(0))),
                }
                for a in assets
            ],
            "permissions": ["SPOT"],
        }

    def _my_trades(self, params: dict[str, str], ctx: dict[str, Any]) -> list[dict[str, Any]]:
        spec = self._symbol_of(params)
        order_id = int(params["orderId"]) if params.get("orderId") else None
        return [
            {
                "symbol": f.symbol,
                "id": f.trade_id,
                "orderId": f.order_id,
                "orderListId": -1,
                "price": _fmt(f.price),
                "qty": _fmt(f.qty),
                "quoteQty": _fmt(f.qty * f.price),
                "commission": _fmt(f.commission),
                "commissionAsset": f.commission_asset,
                "time": f.time,
                "isBuyer": f.side == "BUY",
                "isMaker": False,
                "isBestMatch": True,
            }
            for f in self._fills
            if f.symbol == spec.symbol and (order_id is None or f.order_id == order_id)
        ]


def spot_client_options(fake: FakeSpotExchange, **options: Any) -> dict[str, Any]:
    """Broker options pointing ``ccxt:binance`` at ``fake`` with fast test timings."""
    settings: dict[str, Any] = {
        "api_base_url": fake.url,
        "entry_timeout_seconds": 2.0,
        "poll_interval_seconds": 0.05,
        "retry_delay_seconds": 0.01,
        "request_timeout_ms": 2000,
        "rate_limit_ms": 2,
    }
    settings.update(options)
    return settings


_T = TypeVar("_T")


def run_then_close(broker: Any, scenario: Callable[[], Awaitable[_T]]) -> _T:
    """``asyncio.run(scenario())``, closing ``broker`` (its HTTP sessions and sockets) afterwards."""
    import asyncio

    async def main() -> _T:
        try:
            return await scenario()
        finally:
            await broker.close()

    return asyncio.run(main())


def fake_spot_env(fake: FakeSpotExchange, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` plus the fake's keys as ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET``."""
    out = dict(env)
    out["BINANCE_API_KEY"] = fake.api_key
    out["BINANCE_API_SECRET"] = fake.api_secret
    return out


try:  # pytest is a test-time dependency only
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def fake_spot() -> Iterator[FakeSpotExchange]:
        """A running :class:`FakeSpotExchange` (BTCUSDT, ETHUSDT; 10000 USDT)."""
        with FakeSpotExchange() as fake:
            yield fake

    @pytest.fixture
    def spot_keys(monkeypatch: pytest.MonkeyPatch, fake_spot: FakeSpotExchange) -> FakeSpotExchange:
        """``fake_spot`` with ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET`` set to its keys."""
        monkeypatch.setenv("BINANCE_API_KEY", fake_spot.api_key)
        monkeypatch.setenv("BINANCE_API_SECRET", fake_spot.api_secret)
        return fake_spot
