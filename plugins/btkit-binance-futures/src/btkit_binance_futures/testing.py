"""A fake Binance USD-M futures REST server on 127.0.0.1, for tests that drive the real ccxt client.

``FakeBinanceFutures`` serves the endpoints ccxt ``binanceusdm`` calls (60-exchanges.md §3): exchange info,
klines, time, orders (``/fapi/v1/order``), conditional orders (``/fapi/v1/algoOrder``), open orders,
account/balance (``/fapi/v3/account``), positions (``/fapi/v3/positionRisk``), leverage, margin type and
position mode. Private endpoints check the ``X-MBX-APIKEY`` header and the HMAC-SHA256 signature (a bad
signature gets Binance's ``-1022``).

Matching is deterministic and driven by the test: each symbol has a mark price that only moves when the test
calls :meth:`FakeBinanceFutures.set_price` or :meth:`FakeBinanceFutures.advance` (along a scripted path).
Market orders fill at the mark; limit orders fill when the mark crosses them (or at once when marketable);
conditional STOP_MARKET / TAKE_PROFIT_MARKET orders trigger on the mark and execute as market orders.

Faults are injected per endpoint with :meth:`FakeBinanceFutures.inject` (see :data:`FAULT_KINDS`).

Use it as a context manager (``with FakeBinanceFutures() as fake: ... fake.url``) or through the pytest
fixtures at the bottom of this module (import them into a ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from decimal import ROUND_DOWN, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import attrs

from btkit.components import INTERVAL_MS as BTKIT_INTERVAL_MS
from btkit_ccxt.limits import rate_limits_json

T = TypeVar("T")

API_KEY = "fake-binance-api-key-0123456789"
API_SECRET = "fake-binance-api-secret-9876543210"
KLINE_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
INTERVAL_MS: dict[str, int] = {**BTKIT_INTERVAL_MS, "12h": 43_200_000}  # Binance also serves 12h

FAULT_KINDS: dict[str, str] = {
    "stall": "hold the request without processing it (the client times out → ccxt RequestTimeout)",
    "drop": "close the connection without processing or answering (→ ccxt ExchangeNotAvailable)",
    "accept_then_drop": "process the request (e.g. place the order), then close without answering",
    "accept_then_stall": "process the request, then hold the response (the client times out)",
    "status": "answer with HTTP `status` (default 503) and an HTML body (5xx → ExchangeNotAvailable)",
    "rate_limit": "answer HTTP 429 with Binance's -1003 body (→ ccxt DDoSProtection)",
    "non_json": "answer HTTP 200 with an HTML page instead of JSON",
    "error": "answer with a Binance error: `code` (e.g. -2019, -4164, -4116), `msg`, `status` (400)",
    "malformed_klines": "answer /fapi/v1/klines with broken rows (`rows` to choose them)",
    "partial_fill": "process the order, but let only `fraction` of it fill (until lift_fill_caps())",
}

PRIVATE_PATHS = frozenset(
    {
        "/fapi/v1/order",
        "/fapi/v1/openOrders",
        "/fapi/v1/allOpenOrders",
        "/fapi/v1/algoOrder",
        "/fapi/v1/openAlgoOrders",
        "/fapi/v1/leverage",
        "/fapi/v1/marginType",
        "/fapi/v1/positionSide/dual",
        "/fapi/v1/leverageBracket",
        "/fapi/v2/account",
        "/fapi/v3/account",
        "/fapi/v2/balance",
        "/fapi/v3/balance",
        "/fapi/v2/positionRisk",
        "/fapi/v3/positionRisk",
        "/fapi/v1/userTrades",
    }
)


class ApiError(Exception):
    """A Binance error answer: HTTP ``status`` with ``{"code": code, "msg": msg}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status


def _d(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _fmt(value: Decimal, places: int = 8) -> str:
    q = Decimal(1).scaleb(-places)
    text = format(value.quantize(q), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


# ---------------------------------------------------------------- records
@attrs.define
class SymbolSpec:
    """One USD-M perpetual market of the fake."""

    symbol: str
    base: str
    price: Decimal = attrs.field(converter=_d)
    tick_size: Decimal = attrs.field(default=Decimal("0.01"), converter=_d)
    step_size: Decimal = attrs.field(default=Decimal("0.001"), converter=_d)
    min_qty: Decimal = attrs.field(default=Decimal("0.001"), converter=_d)
    max_qty: Decimal = attrs.field(default=Decimal("1000"), converter=_d)
    min_notional: Decimal = attrs.field(default=Decimal("5"), converter=_d)
    quote: str = "USDT"

    @property
    def price_precision(self) -> int:
        return max(0, -self.tick_size.normalize().as_tuple().exponent)  # type: ignore[operator]

    @property
    def quantity_precision(self) -> int:
        return max(0, -self.step_size.normalize().as_tuple().exponent)  # type: ignore[operator]


def default_symbols() -> list[SymbolSpec]:
    return [
        SymbolSpec(
            "BTCUSDT",
            "BTC",
            "50000",
            tick_size="0.10",
            step_size="0.001",
            min_qty="0.001",
            min_notional="100",
        ),
        SymbolSpec(
            "ETHUSDT", "ETH", "3000", tick_size="0.01", step_size="0.001", min_qty="0.001", min_notional="20"
        ),
    ]


@attrs.define
class Fault:
    """An injected fault; ``times=None`` means every matching request."""

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
    """One request the fake received (``params`` without the signature; ``status`` None while it is
    being handled, or when no answer was sent)."""

    method: str
    path: str
    params: dict[str, str]
    fault: str | None
    status: int | None
    at: float


@attrs.frozen
class PlacedOrder:
    """One accepted order placement (regular or conditional), in arrival order."""

    kind: str  # "order" | "algo"
    client_id: str
    exchange_id: int
    symbol: str
    side: str
    type: str
    quantity: str
    price: str | None
    trigger_price: str | None
    reduce_only: bool
    position_side: str


@attrs.define
class Order:
    order_id: int
    symbol: str
    client_order_id: str
    side: str
    type: str
    position_side: str
    reduce_only: bool
    quantity: Decimal
    price: Decimal
    time_in_force: str
    time: int
    status: str = "NEW"
    executed: Decimal = Decimal(0)
    cum_quote: Decimal = Decimal(0)
    update_time: int = 0
    fill_cap: Decimal | None = None
    stop_price: Decimal = Decimal(0)
    orig_type: str = ""

    @property
    def is_open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")

    def to_json(self) -> dict[str, Any]:
        avg = self.cum_quote / self.executed if self.executed else Decimal(0)
        return {
            "orderId": self.order_id,
            "symbol": self.symbol,
            "status": self.status,
            "clientOrderId": self.client_order_id,
            "price": _fmt(self.price),
            "avgPrice": _fmt(avg),
            "origQty": _fmt(self.quantity),
            "executedQty": _fmt(self.executed),
            "cumQty": _fmt(self.executed),
            "cumQuote": _fmt(self.cum_quote),
            "timeInForce": self.time_in_force,
            "type": self.type,
            "reduceOnly": self.reduce_only,
            "closePosition": False,
            "side": self.side,
            "positionSide": self.position_side,
            "stopPrice": _fmt(self.stop_price),
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": self.orig_type or self.type,
            "priceMatch": "NONE",
            "selfTradePreventionMode": "NONE",
            "goodTillDate": 0,
            "time": self.time,
            "updateTime": self.update_time or self.time,
        }


@attrs.define
class AlgoOrder:
    algo_id: int
    symbol: str
    client_algo_id: str
    side: str
    order_type: str
    position_side: str
    reduce_only: bool
    close_position: bool
    quantity: Decimal
    trigger_price: Decimal
    working_type: str
    create_time: int
    status: str = "NEW"
    update_time: int = 0
    trigger_time: int = 0
    actual_order_id: int | None = None

    @property
    def is_open(self) -> bool:
        return self.status == "NEW"

    def to_json(self) -> dict[str, Any]:
        return {
            "algoId": self.algo_id,
            "clientAlgoId": self.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": self.order_type,
            "symbol": self.symbol,
            "side": self.side,
            "positionSide": self.position_side,
            "timeInForce": "GTC",
            "quantity": _fmt(self.quantity),
            "algoStatus": self.status,
            "triggerPrice": _fmt(self.trigger_price),
            "price": "0",
            "icebergQuantity": None,
            "selfTradePreventionMode": "NONE",
            "workingType": self.working_type,
            "priceMatch": "NONE",
            "closePosition": self.close_position,
            "priceProtect": False,
            "reduceOnly": self.reduce_only,
            "actualOrderId": "" if self.actual_order_id is None else str(self.actual_order_id),
            "createTime": self.create_time,
            "updateTime": self.update_time or self.create_time,
            "triggerTime": self.trigger_time,
            "goodTillDate": 0,
        }


@attrs.define
class Position:
    amount: Decimal = Decimal(0)  # signed: > 0 long, < 0 short
    entry_price: Decimal = Decimal(0)
    update_time: int = 0


# ---------------------------------------------------------------- HTTP plumbing
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # the stdlib default listen backlog is 5: too small for load tests
    fake: FakeBinanceFutures


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK stalls)
    wbufsize = 65536
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.fake._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.fake._handle(self, "DELETE")

    def do_PUT(self) -> None:
        self.server.fake._handle(self, "PUT")


def _drop(handler: BaseHTTPRequestHandler) -> None:
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str,
    headers: Mapping[str, str] | None = None,
) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(body)
        handler.wfile.flush()
    except OSError:  # the client went away (e.g. after its own timeout)
        handler.close_connection = True


# ---------------------------------------------------------------- the fake exchange
class FakeBinanceFutures:
    """A threaded fake of Binance USD-M futures REST on ``127.0.0.1`` (free port by default).

    Thread-safe: every state change happens under one lock; tests may call the control methods
    (``set_price``, ``inject``, ``orders_log`` …) while clients are talking to it.
    """

    def __init__(
        self,
        *,
        symbols: Iterable[SymbolSpec] | None = None,
        extra_symbols: int = 0,
        api_key: str = API_KEY,
        api_secret: str = API_SECRET,
        balance: float | str = "10000",
        hedge_mode: bool = False,
        leverage: int = 20,
        kline_start_ms: int = KLINE_START_MS,
        kline_end_ms: int | None = None,
        duplicate_scope: str = "open",
        enforce_limits: bool = False,
        ban_seconds: float = 120.0,
        limits_time_scale: float = 1.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        from btkit_ccxt.limits import USDM, ServerLimits, usdm_cost

        if duplicate_scope not in ("open", "all"):
            raise ValueError("duplicate_scope must be 'open' (like Binance) or 'all'")
        specs = list(symbols) if symbols is not None else default_symbols()
        for i in range(extra_symbols):
            specs.append(
                SymbolSpec(
                    f"SYM{i}USDT",
                    f"SYM{i}",
                    Decimal(10 + i),
                    tick_size="0.001",
                    step_size="0.1",
                    min_qty="0.1",
                    min_notional="5",
                )
            )
        self.symbols: dict[str, SymbolSpec] = {s.symbol: s for s in specs}
        self.api_key = api_key
        self.api_secret = api_secret
        self.duplicate_scope = duplicate_scope
        self.kline_start_ms = kline_start_ms
        self.kline_end_ms = kline_end_ms if kline_end_ms is not None else kline_start_ms + 30 * 86_400_000
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count(1_000_001)
        self._algo_ids = itertools.count(5_000_001)
        self._prices: dict[str, Decimal] = {s.symbol: s.price for s in specs}
        self._paths: dict[str, list[Decimal]] = {}
        self._path_pos: dict[str, int] = {}
        self._klines: dict[tuple[str, str], list[list[Any]]] = {}
        self._orders: dict[int, Order] = {}
        self._algos: dict[int, AlgoOrder] = {}
        self._positions: dict[tuple[str, str], Position] = {}
        self._leverage: dict[str, int] = {s.symbol: leverage for s in specs}
        self._margin_type: dict[str, str] = {s.symbol: "CROSSED" for s in specs}
        self._default_leverage = leverage
        self.hedge_mode = hedge_mode
        self.wallet = _d(balance)
        self._faults: list[Fault] = []
        self._requests: list[RequestRecord] = []
        self._placed: list[PlacedOrder] = []
        self._trades: list[dict[str, Any]] = []  # every execution, as /fapi/v1/userTrades rows
        self._trade_ids = itertools.count(9_000_001)
        #: Binance's budgets (2400 weight/min, 300 orders/10 s, 1200 orders/min): always counted and sent as
        #: X-MBX-* headers; with ``enforce_limits`` over-budget requests get 429 and then 418 like Binance
        self.limits = ServerLimits(
            USDM,
            usdm_cost,
            enforce=enforce_limits,
            ban_seconds=ban_seconds,
            clock=lambda: time.monotonic() * limits_time_scale,
        )
        self._routes: dict[tuple[str, str], Callable[[dict[str, str], dict[str, Any]], Any]] = {
            ("GET", "/fapi/v1/ping"): lambda p, c: {},
            ("GET", "/fapi/v1/time"): lambda p, c: {"serverTime": self._now()},
            ("GET", "/fapi/v1/exchangeInfo"): self._exchange_info,
            ("GET", "/fapi/v1/klines"): self._get_klines,
            ("GET", "/fapi/v1/ticker/price"): self._ticker_price,
            ("GET", "/fapi/v2/ticker/price"): self._ticker_price,
            ("GET", "/fapi/v1/premiumIndex"): self._premium_index,
            ("POST", "/fapi/v1/order"): self._new_order,
            ("GET", "/fapi/v1/order"): self._get_order,
            ("DELETE", "/fapi/v1/order"): self._cancel_order,
            ("GET", "/fapi/v1/openOrders"): self._open_orders,
            ("DELETE", "/fapi/v1/allOpenOrders"): self._cancel_all,
            ("POST", "/fapi/v1/algoOrder"): self._new_algo,
            ("GET", "/fapi/v1/algoOrder"): self._get_algo,
            ("DELETE", "/fapi/v1/algoOrder"): self._cancel_algo,
            ("GET", "/fapi/v1/openAlgoOrders"): self._open_algos,
            ("POST", "/fapi/v1/leverage"): self._set_leverage,
            ("POST", "/fapi/v1/marginType"): self._set_margin_type,
            ("GET", "/fapi/v1/positionSide/dual"): lambda p, c: {"dualSidePosition": self.hedge_mode},
            ("POST", "/fapi/v1/positionSide/dual"): self._set_dual,
            ("GET", "/fapi/v1/leverageBracket"): self._leverage_bracket,
            ("GET", "/fapi/v2/account"): self._account,
            ("GET", "/fapi/v3/account"): self._account,
            ("GET", "/fapi/v2/balance"): self._balance,
            ("GET", "/fapi/v3/balance"): self._balance,
            ("GET", "/fapi/v2/positionRisk"): self._position_risk,
            ("GET", "/fapi/v3/positionRisk"): self._position_risk,
            ("GET", "/fapi/v1/userTrades"): self._user_trades,
        }

    # ------------------------------------------------------------ lifecycle
    def start(self) -> FakeBinanceFutures:
        if self._server is not None:
            return self
        self._stop.clear()
        server = _Server((self._host, self._port), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-binance", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes stalled handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeBinanceFutures:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake server is not running; call start() or use it as a context manager")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to give as ``api_base_url`` (``http://127.0.0.1:<port>``)."""
        return f"http://{self._host}:{self.port}"

    # ------------------------------------------------------------ test controls
    def _sym(self, symbol: str | None) -> str:
        if symbol is None:
            return next(iter(self.symbols))
        if symbol not in self.symbols:
            raise KeyError(f"the fake has no symbol {symbol!r}; known: {', '.join(self.symbols)}")
        return symbol

    def price(self, symbol: str | None = None) -> Decimal:
        with self._lock:
            return self._prices[self._sym(symbol)]

    def set_price(self, price: float | str | Decimal, symbol: str | None = None) -> None:
        """Move the mark price of ``symbol`` (default: the first symbol) and run the matching."""
        with self._lock:
            sym = self._sym(symbol)
            self._prices[sym] = _d(price)
            self._match(sym)

    def set_price_path(self, prices: Iterable[float | str | Decimal], symbol: str | None = None) -> None:
        """Script the next prices of ``symbol``; :meth:`advance` steps along them."""
        with self._lock:
            sym = self._sym(symbol)
            self._paths[sym] = [_d(p) for p in prices]
            self._path_pos[sym] = 0

    def advance(self, symbol: str | None = None) -> Decimal:
        """Step ``symbol`` to the next scripted price; returns it. Raises when the path is exhausted."""
        with self._lock:
            sym = self._sym(symbol)
            path = self._paths.get(sym) or []
            pos = self._path_pos.get(sym, 0)
            if pos >= len(path):
                raise IndexError(f"the price path of {sym} is exhausted; call set_price_path() first")
            self._path_pos[sym] = pos + 1
            self.set_price(path[pos], sym)
            return path[pos]

    def set_klines(self, symbol: str, interval: str, rows: Iterable[Iterable[Any]]) -> None:
        """Serve exactly these ``(open_ms, o, h, l, c, v)`` rows for ``symbol``/``interval``."""
        with self._lock:
            self._klines[(self._sym(symbol), interval)] = [list(r) for r in rows]

    def set_position(
        self,
        symbol: str,
        amount: float | str,
        entry_price: float | str | None = None,
        position_side: str = "BOTH",
    ) -> None:
        """Create or overwrite a position (e.g. one opened by hand, unknown to the bot)."""
        with self._lock:
            sym = self._sym(symbol)
            self._positions[(sym, position_side)] = Position(
                _d(amount), _d(entry_price if entry_price is not None else self._prices[sym]), self._now()
            )

    def position(self, symbol: str | None = None, position_side: str = "BOTH") -> Decimal:
        """The signed position amount of ``symbol`` on ``position_side``."""
        with self._lock:
            pos = self._positions.get((self._sym(symbol), position_side))
            return pos.amount if pos else Decimal(0)

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
        """Make the next ``times`` requests to ``path`` (and ``method``) fail as ``kind``.

        ``when(params)`` narrows the fault to matching requests (e.g. one client order id).
        """
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
        """Let partially filled orders fill completely at the next match."""
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
    def orders_log(self) -> list[PlacedOrder]:
        """Every accepted placement, regular and conditional, in order."""
        with self._lock:
            return list(self._placed)

    def order_count(self, client_id: str) -> int:
        """How many accepted placements carried ``client_id`` (newClientOrderId or clientAlgoId)."""
        return sum(1 for o in self.orders_log if o.client_id == client_id)

    def orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [o.to_json() for o in self._orders.values() if symbol is None or o.symbol == symbol]

    def algo_orders(self, symbol: str | None = None, *, open_only: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            return [
                a.to_json()
                for a in self._algos.values()
                if (symbol is None or a.symbol == symbol) and (not open_only or a.is_open)
            ]

    def leverage(self, symbol: str | None = None) -> int:
        with self._lock:
            return self._leverage[self._sym(symbol)]

    def margin_type(self, symbol: str | None = None) -> str:
        """``ISOLATED`` or ``CROSSED``."""
        with self._lock:
            return self._margin_type[self._sym(symbol)]

    def wait_until(self, predicate: Callable[[FakeBinanceFutures], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate(self)`` holds (a bounded wait for cross-process tests)."""
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
        total = ""
        signature = None
        for part in (query, body):
            if not part:
                continue
            marker = part.rfind("signature=")
            if marker >= 0:
                signature = part[marker + len("signature=") :].split("&")[0]
                part = part[: max(0, marker - 1)]
            total += part
        if not signature:
            raise ApiError(
                -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed."
            )
        expected = hmac.new(self.api_secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise ApiError(-1022, "Signature for this request is not valid.")
        if "timestamp" not in dict(parse_qsl(total)):
            raise ApiError(
                -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed."
            )

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
        status: int | None = None
        record = RequestRecord(method, path, dict(params), kind, None, time.time())
        limit_headers: dict[str, str] = {}
        with self._lock:  # logged on arrival (a stalled request is visible while it hangs)
            index = len(self._requests)
            self._requests.append(record)
        try:
            if kind == "stall":
                self._stop.wait(float(fault.options.get("seconds", 30)))  # type: ignore[union-attr]
                _drop(handler)
                return
            if kind == "drop":
                _drop(handler)
                return
            if kind == "status":
                status = int(fault.options.get("status", 503))  # type: ignore[union-attr]
                page = f"<html><body><h1>{status} Service Unavailable</h1></body></html>".encode()
                _send(handler, status, page, "text/html")
                return
            if kind == "rate_limit":
                status = 429
                payload = json.dumps({"code": -1003, "msg": "Too many requests; please use websocket."})
                _send(handler, 429, payload.encode(), "application/json", {"Retry-After": "1"})
                return
            if kind == "non_json":
                status = int(fault.options.get("status", 200))  # type: ignore[union-attr]
                _send(handler, status, b"<html><body>upstream says hello</body></html>", "text/html")
                return
            if kind == "error":
                opts = fault.options  # type: ignore[union-attr]
                raise ApiError(
                    int(opts.get("code", -1000)),
                    str(opts.get("msg", "injected error")),
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
                ctx["fill_fraction"] = _d(fault.options.get("fraction", "0.5"))  # type: ignore[union-attr]
            with self._lock:
                result = route(params, ctx)
            if kind == "malformed_klines" and path == "/fapi/v1/klines":
                result = fault.options.get("rows") or [  # type: ignore[union-attr]
                    [KLINE_START_MS, "100", "101", "99", "100.5", "12"],
                    [KLINE_START_MS + 60_000, "oops", None, "99", "100", "3"],
                    ["not-a-time", "1"],
                ]
            if kind == "accept_then_drop":
                status = 200
                _drop(handler)
                return
            if kind == "accept_then_stall":
                status = 200
                self._stop.wait(float(fault.options.get("seconds", 30)))  # type: ignore[union-attr]
                _drop(handler)
                return
            status = 200
            _send(handler, 200, json.dumps(result).encode(), "application/json", limit_headers)
        except ApiError as exc:
            status = exc.status
            payload = json.dumps({"code": exc.code, "msg": exc.msg}).encode()
            _send(handler, exc.status, payload, "application/json", limit_headers)
        finally:
            with self._lock:
                self._requests[index] = attrs.evolve(record, status=status)

    # ------------------------------------------------------------ public endpoints
    def _symbol_of(self, params: Mapping[str, str]) -> SymbolSpec:
        symbol = params.get("symbol")
        if not symbol:
            raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        spec = self.symbols.get(symbol)
        if spec is None:
            raise ApiError(-1121, "Invalid symbol.")
        return spec

    def _exchange_info(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        symbols = []
        for s in self.symbols.values():
            symbols.append(
                {
                    "symbol": s.symbol,
                    "pair": s.symbol,
                    "contractType": "PERPETUAL",
                    "deliveryDate": 4133404800000,
                    "onboardDate": 1569398400000,
                    "status": "TRADING",
                    "maintMarginPercent": "2.5000",
                    "requiredMarginPercent": "5.0000",
                    "baseAsset": s.base,
                    "quoteAsset": s.quote,
                    "marginAsset": s.quote,
                    "pricePrecision": s.price_precision,
                    "quantityPrecision": s.quantity_precision,
                    "baseAssetPrecision": 8,
                    "quotePrecision": 8,
                    "underlyingType": "COIN",
                    "underlyingSubType": [],
                    "settlePlan": 0,
                    "triggerProtect": "0.0500",
                    "liquidationFee": "0.012500",
                    "marketTakeBound": "0.05",
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": _fmt(s.tick_size),
                            "maxPrice": "4529764",
                            "tickSize": _fmt(s.tick_size),
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": _fmt(s.min_qty),
                            "maxQty": _fmt(s.max_qty),
                            "stepSize": _fmt(s.step_size),
                        },
                        {
                            "filterType": "MARKET_LOT_SIZE",
                            "minQty": _fmt(s.min_qty),
                            "maxQty": _fmt(s.max_qty),
                            "stepSize": _fmt(s.step_size),
                        },
                        {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                        {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                        {"filterType": "MIN_NOTIONAL", "notional": _fmt(s.min_notional)},
                        {
                            "filterType": "PERCENT_PRICE",
                            "multiplierUp": "1.0500",
                            "multiplierDown": "0.9500",
                            "multiplierDecimal": "4",
                        },
                    ],
                    "orderTypes": [
                        "LIMIT",
                        "MARKET",
                        "STOP",
                        "STOP_MARKET",
                        "TAKE_PROFIT",
                        "TAKE_PROFIT_MARKET",
                        "TRAILING_STOP_MARKET",
                    ],
                    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": self._now(),
            "futuresType": "U_MARGINED",
            "rateLimits": rate_limits_json(self.limits.budget),
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": symbols,
        }

    def _synthetic_kline(self, spec: SymbolSpec, open_ms: int, step: int) -> list[Any]:
        n = open_ms // step
        base = float(spec.price)
        o = base * (1 + 0.02 * math.sin(n / 37.0))
        c = base * (1 + 0.02 * math.sin((n + 1) / 37.0))
        h = max(o, c) * 1.001
        low = min(o, c) * 0.999
        v = 10 + (n % 17)
        return [open_ms, f"{o:.4f}", f"{h:.4f}", f"{low:.4f}", f"{c:.4f}", f"{v:.3f}"]

    def _get_klines(self, params: dict[str, str], ctx: dict[str, Any]) -> list[list[Any]]:
        spec = self._symbol_of(params)
        interval = params.get("interval", "")
        step = INTERVAL_MS.get(interval)
        if step is None:
            raise ApiError(-1120, "Invalid interval.")
        limit = int(params.get("limit", 500))
        if not 1 <= limit <= 1500:
            raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        start = int(params["startTime"]) if "startTime" in params else None
        end = int(params["endTime"]) if "endTime" in params else None
        scripted = self._klines.get((spec.symbol, interval))
        if scripted is not None:
            rows = [r for r in scripted if (start is None or r[0] >= start) and (end is None or r[0] <= end)]
            rows = rows[:limit] if start is not None else rows[-limit:]
        else:
            last = (self.kline_end_ms // step) * step
            if end is not None:
                last = min(last, (end // step) * step)
            first_allowed = -(-self.kline_start_ms // step) * step
            if start is not None:
                first = max(first_allowed, -(-start // step) * step)
                opens = range(first, min(last, first + (limit - 1) * step) + 1, step)
            else:
                first = max(first_allowed, last - (limit - 1) * step)
                opens = range(first, last + 1, step)
            rows = [self._synthetic_kline(spec, t, step) for t in opens]
        out = []
        for r in rows:
            close_ms = r[0] + step - 1 if isinstance(r[0], int) else r[0]
            out.append([*r[:6], close_ms, "0", 100, "0", "0", "0"])
        return out

    def _ticker_price(self, params: dict[str, str], ctx: dict[str, Any]) -> Any:
        rows = [
            {"symbol": s, "price": _fmt(p), "time": self._now()}
            for s, p in self._prices.items()
            if "symbol" not in params or params["symbol"] == s
        ]
        return rows[0] if "symbol" in params and rows else rows

    def _premium_index(self, params: dict[str, str], ctx: dict[str, Any]) -> Any:
        rows = [
            {
                "symbol": s,
                "markPrice": _fmt(p),
                "indexPrice": _fmt(p),
                "lastFundingRate": "0.0001",
                "nextFundingTime": self._now() + 3_600_000,
                "time": self._now(),
            }
            for s, p in self._prices.items()
            if "symbol" not in params or params["symbol"] == s
        ]
        return rows[0] if "symbol" in params and rows else rows

    # ------------------------------------------------------------ trading helpers
    def _position_side(self, params: Mapping[str, str]) -> str:
        ps = params.get("positionSide", "BOTH").upper()
        if ps not in ("BOTH", "LONG", "SHORT"):
            raise ApiError(-4006, "Invalid position side.")
        if (self.hedge_mode and ps == "BOTH") or (not self.hedge_mode and ps != "BOTH"):
            raise ApiError(-4061, "Order's position side does not match user's setting.")
        return ps

    def _reduce_flag(self, params: Mapping[str, str]) -> bool:
        if "reduceOnly" not in params:
            return False
        if self.hedge_mode:
            raise ApiError(-1106, "Parameter 'reduceOnly' sent when not required.")
        value = params["reduceOnly"].lower()
        if value not in ("true", "false"):
            raise ApiError(-1130, "Data sent for parameter 'reduceOnly' is not valid.")
        return value == "true"

    def _is_reducing(self, side: str, ps: str, reduce_only: bool) -> bool:
        if ps == "LONG":
            return side == "SELL"
        if ps == "SHORT":
            return side == "BUY"
        return reduce_only

    def _check_reduce(self, spec: SymbolSpec, side: str, ps: str) -> None:
        amount = self._positions.get((spec.symbol, ps), Position()).amount
        if (side == "SELL" and amount <= 0) or (side == "BUY" and amount >= 0):
            raise ApiError(-2022, "ReduceOnly Order is rejected.")

    def _quantity(self, spec: SymbolSpec, raw: str | None) -> Decimal:
        if raw is None:
            raise ApiError(
                -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."
            )
        qty = _d(raw)
        if qty <= 0:
            raise ApiError(-4003, "Quantity less than or equal to zero.")
        if qty % spec.step_size != 0:
            raise ApiError(-1111, "Precision is over the maximum defined for this asset.")
        if qty < spec.min_qty or qty > spec.max_qty:
            raise ApiError(-1013, "Filter failure: LOT_SIZE")
        return qty

    def _price(self, spec: SymbolSpec, raw: str | None, name: str = "price") -> Decimal:
        if raw is None:
            raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        price = _d(raw)
        if price <= 0 or price % spec.tick_size != 0:
            raise ApiError(-1013, "Filter failure: PRICE_FILTER")
        return price

    def _available(self) -> Decimal:
        used = Decimal(0)
        unrealized = Decimal(0)
        for (sym, _ps), pos in self._positions.items():
            if pos.amount:
                mark = self._prices[sym]
                used += abs(pos.amount) * mark / self._leverage[sym]
                unrealized += pos.amount * (mark - pos.entry_price)
        for o in self._orders.values():
            if o.is_open and not self._is_reducing(o.side, o.position_side, o.reduce_only):
                used += (o.quantity - o.executed) * o.price / self._leverage[o.symbol]
        return self.wallet + unrealized - used

    def _check_new_exposure(self, spec: SymbolSpec, qty: Decimal, price: Decimal) -> None:
        notional = qty * price
        if notional < spec.min_notional:
            raise ApiError(
                -4164,
                f"Order's notional must be no smaller than {_fmt(spec.min_notional)} (unless you choose "
                "reduce only).",
            )
        if notional / self._leverage[spec.symbol] > self._available():
            raise ApiError(-2019, "Margin is insufficient.")

    def _apply_fill(self, symbol: str, ps: str, side: str, qty: Decimal, price: Decimal) -> None:
        pos = self._positions.setdefault((symbol, ps), Position())
        signed = qty if side == "BUY" else -qty
        old = pos.amount
        new = old + signed
        if old == 0 or (old > 0) == (signed > 0):
            pos.entry_price = (abs(old) * pos.entry_price + qty * price) / abs(new)
        else:
            closed = min(abs(old), qty)
            direction = Decimal(1) if old > 0 else Decimal(-1)
            self.wallet += closed * (price - pos.entry_price) * direction
            if qty > abs(old):
                pos.entry_price = price
            elif new == 0:
                pos.entry_price = Decimal(0)
        pos.amount = new
        pos.update_time = self._now()

    def _execute(self, order: Order, price: Decimal) -> None:
        """Fill as much of ``order`` as its cap (and, when reducing, the position) allows."""
        remaining = order.quantity - order.executed
        if order.fill_cap is not None:
            remaining = min(remaining, order.fill_cap - order.executed)
        if self._is_reducing(order.side, order.position_side, order.reduce_only):
            amount = self._positions.get((order.symbol, order.position_side), Position()).amount
            reducible = amount if order.side == "SELL" else -amount
            remaining = min(remaining, max(reducible, Decimal(0)))
        if remaining > 0:
            self._apply_fill(order.symbol, order.position_side, order.side, remaining, price)
            order.executed += remaining
            order.cum_quote += remaining * price
            self._trades.append(
                {
                    "symbol": order.symbol,
                    "id": next(self._trade_ids),
                    "orderId": order.order_id,
                    "side": order.side,
                    "price": _fmt(price),
                    "qty": _fmt(remaining),
                    "realizedPnl": "0",
                    "marginAsset": "USDT",
                    "quoteQty": _fmt(remaining * price),
                    "commission": "0",
                    "commissionAsset": "USDT",
                    "time": self._now(),
                    "positionSide": order.position_side,
                    "buyer": order.side == "BUY",
                    "maker": False,
                }
            )
        order.update_time = self._now()
        if order.executed >= order.quantity:
            order.status = "FILLED"
        elif order.type == "MARKET":
            order.status = "EXPIRED"  # a market order that could not fill completely (thin book)
        elif order.executed > 0:
            order.status = "PARTIALLY_FILLED"

    def _crosses(self, order: Order, mark: Decimal) -> bool:
        return mark <= order.price if order.side == "BUY" else mark >= order.price

    def _triggers(self, algo: AlgoOrder, mark: Decimal) -> bool:
        stop = algo.order_type in ("STOP_MARKET", "STOP")
        if algo.side == "SELL":
            return mark <= algo.trigger_price if stop else mark >= algo.trigger_price
        return mark >= algo.trigger_price if stop else mark <= algo.trigger_price

    def _match(self, symbol: str) -> None:
        mark = self._prices[symbol]
        for algo in list(self._algos.values()):
            if algo.symbol == symbol and algo.is_open and self._triggers(algo, mark):
                self._trigger(algo, mark)
        for order in list(self._orders.values()):
            if (
                order.symbol == symbol
                and order.is_open
                and order.type == "LIMIT"
                and self._crosses(order, mark)
            ):
                self._execute(order, order.price)

    def _trigger(self, algo: AlgoOrder, mark: Decimal) -> None:
        now = self._now()
        qty = algo.quantity
        if algo.close_position:
            amount = self._positions.get((algo.symbol, algo.position_side), Position()).amount
            qty = abs(amount)
        child = Order(
            order_id=next(self._ids),
            symbol=algo.symbol,
            client_order_id=f"autoclose-{algo.algo_id}",
            side=algo.side,
            type="MARKET",
            position_side=algo.position_side,
            reduce_only=algo.reduce_only or algo.close_position,
            quantity=qty,
            price=Decimal(0),
            time_in_force="GTC",
            time=now,
            stop_price=algo.trigger_price,
            orig_type=algo.order_type,
        )
        self._orders[child.order_id] = child
        if qty > 0:
            self._execute(child, mark)
        else:
            child.status = "EXPIRED"
        algo.status = "FINISHED"
        algo.trigger_time = now
        algo.update_time = now
        algo.actual_order_id = child.order_id

    def _find_order(self, spec: SymbolSpec, params: Mapping[str, str]) -> Order | None:
        if "orderId" in params:
            order = self._orders.get(int(params["orderId"]))
            return order if order is not None and order.symbol == spec.symbol else None
        cid = params.get("origClientOrderId")
        if not cid:
            raise ApiError(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        found = [o for o in self._orders.values() if o.symbol == spec.symbol and o.client_order_id == cid]
        return found[-1] if found else None

    def _find_algo(self, params: Mapping[str, str]) -> AlgoOrder | None:
        if "algoId" in params:
            return self._algos.get(int(params["algoId"]))
        cid = params.get("clientAlgoId")
        if not cid:
            raise ApiError(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!")
        found = [a for a in self._algos.values() if a.client_algo_id == cid]
        return found[-1] if found else None

    # ------------------------------------------------------------ orders
    def _new_order(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        spec = self._symbol_of(params)
        side = params.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            raise ApiError(-1117, "Invalid side.")
        otype = params.get("type", "").upper()
        if otype in ("STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"):
            raise ApiError(
                -4120,
                "Order type not supported for this endpoint. Please use the Algo Order API "
                "endpoints instead.",
            )
        if otype not in ("LIMIT", "MARKET"):
            raise ApiError(-1116, "Invalid orderType.")
        ps = self._position_side(params)
        reduce_only = self._reduce_flag(params)
        qty = self._quantity(spec, params.get("quantity"))
        mark = self._prices[spec.symbol]
        price = Decimal(0)
        tif = params.get("timeInForce", "GTC")
        if otype == "LIMIT":
            price = self._price(spec, params.get("price"))
            if "timeInForce" not in params:
                raise ApiError(
                    -1102, "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed."
                )
        cid = params.get("newClientOrderId") or f"fake-{next(self._ids)}"
        if len(cid) > 36:
            raise ApiError(
                -1100,
                "Illegal characters found in parameter 'newClientOrderId'; legal range is "
                "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
            )
        for other in self._orders.values():
            if (
                other.symbol == spec.symbol
                and other.client_order_id == cid
                and (other.is_open or self.duplicate_scope == "all")
            ):
                raise ApiError(-4116, "ClientOrderId is duplicated.")
        reducing = self._is_reducing(side, ps, reduce_only)
        if reducing:
            self._check_reduce(spec, side, ps)
        else:
            self._check_new_exposure(spec, qty, price if otype == "LIMIT" else mark)
        now = self._now()
        order = Order(
            order_id=next(self._ids),
            symbol=spec.symbol,
            client_order_id=cid,
            side=side,
            type=otype,
            position_side=ps,
            reduce_only=reduce_only,
            quantity=qty,
            price=price,
            time_in_force=tif,
            time=now,
        )
        fraction = ctx.get("fill_fraction")
        if fraction is not None:
            cap = (qty * fraction / spec.step_size).to_integral_value(ROUND_DOWN) * spec.step_size
            order.fill_cap = cap
        self._orders[order.order_id] = order
        self._placed.append(
            PlacedOrder(
                "order",
                cid,
                order.order_id,
                spec.symbol,
                side,
                otype,
                _fmt(qty),
                _fmt(price) if otype == "LIMIT" else None,
                None,
                reduce_only,
                ps,
            )
        )
        if otype == "MARKET":
            self._execute(order, mark)
        elif self._crosses(order, mark):
            self._execute(order, mark)  # marketable limit: taker fill at the mark
        return order.to_json()

    def _user_trades(self, params: dict[str, str], ctx: dict[str, Any]) -> list[dict[str, Any]]:
        spec = self._symbol_of(params)
        rows = [t for t in self._trades if t["symbol"] == spec.symbol]
        return rows[-int(params.get("limit", 500)) :]

    def trades(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Every execution (``/fapi/v1/userTrades`` rows), oldest first."""
        with self._lock:
            return [dict(t) for t in self._trades if symbol is None or t["symbol"] == symbol]

    def _get_order(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        spec = self._symbol_of(params)
        order = self._find_order(spec, params)
        if order is None:
            raise ApiError(-2013, "Order does not exist.")
        return order.to_json()

    def _cancel_order(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        spec = self._symbol_of(params)
        order = self._find_order(spec, params)
        if order is None or not order.is_open:
            raise ApiError(-2011, "Unknown order sent.")
        order.status = "CANCELED"
        order.update_time = self._now()
        return order.to_json()

    def _open_orders(self, params: dict[str, str], ctx: dict[str, Any]) -> list[dict[str, Any]]:
        spec = self._symbol_of(params) if "symbol" in params else None
        return [
            o.to_json()
            for o in self._orders.values()
            if o.is_open and (spec is None or o.symbol == spec.symbol)
        ]

    def _cancel_all(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        spec = self._symbol_of(params)
        for o in self._orders.values():
            if o.symbol == spec.symbol and o.is_open:
                o.status = "CANCELED"
        return {"code": 200, "msg": "The operation of cancel all open order is done."}

    # ------------------------------------------------------------ conditional (algo) orders
    def _new_algo(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        if params.get("algoType") != "CONDITIONAL":
            raise ApiError(-1130, "Data sent for parameter 'algoType' is not valid.")
        spec = self._symbol_of(params)
        side = params.get("side", "").upper()
        if side not in ("BUY", "SELL"):
            raise ApiError(-1117, "Invalid side.")
        otype = params.get("type", "").upper()
        if otype not in ("STOP_MARKET", "TAKE_PROFIT_MARKET"):
            raise ApiError(-1116, "Invalid orderType.")
        ps = self._position_side(params)
        reduce_only = self._reduce_flag(params)
        close_position = params.get("closePosition", "false").lower() == "true"
        qty = Decimal(0) if close_position else self._quantity(spec, params.get("quantity"))
        trigger = self._price(spec, params.get("triggerPrice"), "triggerPrice")
        cid = params.get("clientAlgoId") or f"fakealgo-{next(self._algo_ids)}"
        if len(cid) > 36:
            raise ApiError(-1100, "Illegal characters found in parameter 'clientAlgoId'.")
        for other in self._algos.values():
            if other.client_algo_id == cid and (other.is_open or self.duplicate_scope == "all"):
                raise ApiError(-20132, "The client algo id is duplicated.")
        if self._is_reducing(side, ps, reduce_only) or close_position:
            self._check_reduce(spec, side, ps)
        mark = self._prices[spec.symbol]
        probe = AlgoOrder(
            0,
            spec.symbol,
            cid,
            side,
            otype,
            ps,
            reduce_only,
            close_position,
            qty,
            trigger,
            params.get("workingType", "CONTRACT_PRICE"),
            self._now(),
        )
        if self._triggers(probe, mark):
            raise ApiError(-2021, "Order would immediately trigger.")
        probe.algo_id = next(self._algo_ids)
        self._algos[probe.algo_id] = probe
        self._placed.append(
            PlacedOrder(
                "algo",
                cid,
                probe.algo_id,
                spec.symbol,
                side,
                otype,
                _fmt(qty),
                None,
                _fmt(trigger),
                reduce_only,
                ps,
            )
        )
        return probe.to_json()

    def _get_algo(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        algo = self._find_algo(params)
        if algo is None:
            raise ApiError(-2013, "Order does not exist.")
        return algo.to_json()

    def _cancel_algo(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        algo = self._find_algo(params)
        if algo is None or not algo.is_open:
            raise ApiError(-2011, "Unknown order sent.")
        algo.status = "CANCELED"
        algo.update_time = self._now()
        return {"algoId": algo.algo_id, "clientAlgoId": algo.client_algo_id, "code": "200", "msg": "success"}

    def _open_algos(self, params: dict[str, str], ctx: dict[str, Any]) -> list[dict[str, Any]]:
        spec = self._symbol_of(params) if "symbol" in params else None
        return [
            a.to_json()
            for a in self._algos.values()
            if a.is_open and (spec is None or a.symbol == spec.symbol)
        ]

    # ------------------------------------------------------------ account settings
    def _set_leverage(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        spec = self._symbol_of(params)
        leverage = int(params.get("leverage", "0"))
        if not 1 <= leverage <= 125:
            raise ApiError(-4028, "Leverage is not valid.")
        self._leverage[spec.symbol] = leverage
        return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": spec.symbol}

    def _set_margin_type(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        spec = self._symbol_of(params)
        mtype = params.get("marginType", "").upper()
        if mtype not in ("ISOLATED", "CROSSED"):
            raise ApiError(-1130, "Data sent for parameter 'marginType' is not valid.")
        if self._margin_type[spec.symbol] == mtype:
            raise ApiError(-4046, "No need to change margin type.")
        if any(p.amount for (s, _), p in self._positions.items() if s == spec.symbol):
            raise ApiError(-4048, "Margin type cannot be changed if there exists position.")
        self._margin_type[spec.symbol] = mtype
        return {"code": 200, "msg": "success"}

    def _set_dual(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        dual = params.get("dualSidePosition", "").lower() == "true"
        if dual == self.hedge_mode:
            raise ApiError(-4059, "No need to change position side.")
        if any(p.amount for p in self._positions.values()) or any(o.is_open for o in self._orders.values()):
            raise ApiError(-4068, "Position side cannot be changed if there exists position.")
        self.hedge_mode = dual
        return {"code": 200, "msg": "success"}

    def _leverage_bracket(self, params: dict[str, str], ctx: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "symbol": s,
                "brackets": [
                    {
                        "bracket": 1,
                        "initialLeverage": 125,
                        "notionalCap": 50000,
                        "notionalFloor": 0,
                        "maintMarginRatio": 0.004,
                        "cum": 0.0,
                    },
                    {
                        "bracket": 2,
                        "initialLeverage": 100,
                        "notionalCap": 10000000,
                        "notionalFloor": 50000,
                        "maintMarginRatio": 0.005,
                        "cum": 50.0,
                    },
                ],
            }
            for s in self.symbols
            if "symbol" not in params or params["symbol"] == s
        ]

    def _position_rows(self, symbol: str | None = None) -> list[dict[str, Any]]:
        rows = []
        for (sym, ps), pos in self._positions.items():
            if not pos.amount or (symbol is not None and sym != symbol):
                continue
            mark = self._prices[sym]
            notional = pos.amount * mark
            leverage = self._leverage[sym]
            margin = abs(notional) / leverage
            isolated = self._margin_type[sym] == "ISOLATED"
            rows.append(
                {
                    "symbol": sym,
                    "positionSide": ps,
                    "positionAmt": _fmt(pos.amount),
                    "entryPrice": _fmt(pos.entry_price),
                    "breakEvenPrice": _fmt(pos.entry_price),
                    "markPrice": _fmt(mark),
                    "unRealizedProfit": _fmt(pos.amount * (mark - pos.entry_price)),
                    "liquidationPrice": "0",
                    "isolatedMargin": _fmt(margin) if isolated else "0",
                    "notional": _fmt(notional),
                    "marginAsset": "USDT",
                    "isolatedWallet": _fmt(margin) if isolated else "0",
                    "initialMargin": _fmt(margin),
                    "maintMargin": _fmt(abs(notional) * Decimal("0.004")),
                    "positionInitialMargin": _fmt(margin),
                    "openOrderInitialMargin": "0",
                    "adl": 1,
                    "bidNotional": "0",
                    "askNotional": "0",
                    "updateTime": pos.update_time,
                }
            )
        return rows

    def _position_risk(self, params: dict[str, str], ctx: dict[str, Any]) -> list[dict[str, Any]]:
        symbol = self._symbol_of(params).symbol if "symbol" in params else None
        return self._position_rows(symbol)

    def _asset_row(self) -> dict[str, Any]:
        available = self._available()
        unrealized = sum(
            (p.amount * (self._prices[s] - p.entry_price) for (s, _), p in self._positions.items()),
            Decimal(0),
        )
        margin_balance = self.wallet + unrealized
        return {
            "asset": "USDT",
            "walletBalance": _fmt(self.wallet),
            "unrealizedProfit": _fmt(unrealized),
            "marginBalance": _fmt(margin_balance),
            "maintMargin": "0",
            "initialMargin": _fmt(margin_balance - available),
            "positionInitialMargin": "0",
            "openOrderInitialMargin": "0",
            "crossWalletBalance": _fmt(self.wallet),
            "crossUnPnl": _fmt(unrealized),
            "availableBalance": _fmt(available),
            "maxWithdrawAmount": _fmt(available),
            "updateTime": self._now(),
        }

    def _account(self, params: dict[str, str], ctx: dict[str, Any]) -> dict[str, Any]:
        asset = self._asset_row()
        return {
            "totalInitialMargin": asset["initialMargin"],
            "totalMaintMargin": "0",
            "totalWalletBalance": asset["walletBalance"],
            "totalUnrealizedProfit": asset["unrealizedProfit"],
            "totalMarginBalance": asset["marginBalance"],
            "totalPositionInitialMargin": "0",
            "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": asset["crossWalletBalance"],
            "totalCrossUnPnl": asset["crossUnPnl"],
            "availableBalance": asset["availableBalance"],
            "maxWithdrawAmount": asset["maxWithdrawAmount"],
            "assets": [asset],
            "positions": [
                {
                    k: r[k]
                    for k in (
                        "symbol",
                        "positionSide",
                        "positionAmt",
                        "unrealizedProfit",
                        "notional",
                        "isolatedMargin",
                        "isolatedWallet",
                        "initialMargin",
                        "maintMargin",
                        "updateTime",
                    )
                    if k in r
                }
                for r in self._position_rows()
            ],
        }

    def _balance(self, params: dict[str, str], ctx: dict[str, Any]) -> list[dict[str, Any]]:
        asset = self._asset_row()
        return [
            {
                "accountAlias": "fake",
                "asset": "USDT",
                "balance": asset["walletBalance"],
                "crossWalletBalance": asset["crossWalletBalance"],
                "crossUnPnl": asset["crossUnPnl"],
                "availableBalance": asset["availableBalance"],
                "maxWithdrawAmount": asset["maxWithdrawAmount"],
                "marginAvailable": True,
                "updateTime": asset["updateTime"],
            }
        ]


# ---------------------------------------------------------------- pytest fixtures
try:  # pytest is a test-time dependency only
    import pytest
except ImportError:  # pragma: no cover
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def fake_binance() -> Iterator[FakeBinanceFutures]:
        """A running :class:`FakeBinanceFutures` with the default symbols (BTCUSDT, ETHUSDT)."""
        with FakeBinanceFutures() as fake:
            yield fake

    @pytest.fixture
    def binance_keys(monkeypatch: pytest.MonkeyPatch, fake_binance: FakeBinanceFutures) -> FakeBinanceFutures:
        """``fake_binance`` with ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET`` set to the fake's keys."""
        monkeypatch.setenv("BINANCE_API_KEY", fake_binance.api_key)
        monkeypatch.setenv("BINANCE_API_SECRET", fake_binance.api_secret)
        return fake_binance


def protection_in_order(log: Iterable[PlacedOrder]) -> list[PlacedOrder]:
    """``orders_log`` with every run of adjacent conditional orders put stop-loss first: the broker sends
    a position's SL and TP at once, so the fake may receive them in either order."""
    out: list[PlacedOrder] = []
    for order in log:
        out.append(order)
        i = len(out) - 1
        while i > 0 and order.kind == "algo" and out[i - 1].kind == "algo" and out[i - 1].type > order.type:
            out[i - 1], out[i] = out[i], out[i - 1]
            i -= 1
    return out


def fake_env(fake: FakeBinanceFutures) -> dict[str, str]:
    """Environment for a child process that should talk to ``fake`` (keys + base URL)."""
    env = dict(os.environ)
    env["BINANCE_API_KEY"] = fake.api_key
    env["BINANCE_API_SECRET"] = fake.api_secret
    env["BTKIT_TEST_BINANCE_URL"] = fake.url
    return env


# ---------------------------------------------------------------- payload and broker helpers for tests
def commit_payload(
    kind: str,
    *,
    symbol: str = "BTCUSDT",
    signal_id: str = "signal-1",
    attempt: int = 1,
    position: str = "long",
    **fields: Any,
) -> Any:
    """A core broker payload (``btkit.broker_payloads``) with test defaults.

    ``kind``: open, close, cancel, partial_profit, partial_loss, trailing_stop, trailing_take, breakeven,
    average_buy (the action tag of the client order id is ``kind`` unless ``client_order_id`` is given).
    """
    from btkit import broker_payloads as bp

    classes = {
        "open": bp.OpenCommit,
        "close": bp.CloseCommit,
        "cancel": bp.CancelCommit,
        "partial_profit": bp.PartialCommit,
        "partial_loss": bp.PartialCommit,
        "trailing_stop": bp.TrailingCommit,
        "trailing_take": bp.TrailingCommit,
        "breakeven": bp.BreakevenCommit,
        "average_buy": bp.AverageBuyCommit,
    }
    defaults: dict[str, dict[str, Any]] = {
        "open": {
            "type": "open",
            "cost": 1000.0,
            "price_open": 50000.0,
            "price_take_profit": 52000.0,
            "price_stop_loss": 49000.0,
        },
        "close": {
            "cost": 1000.0,
            "current_price": 50000.0,
            "price_open": 50000.0,
            "price_take_profit": 52000.0,
            "price_stop_loss": 49000.0,
            "close_reason": "closed",
            "pnl": None,
            "total_entries": 1,
            "total_partials": 0,
        },
        "cancel": {"reason": "user", "price_open": 50000.0},
        "partial_profit": {
            "percent_to_close": 50.0,
            "cost": 1000.0,
            "current_price": 50000.0,
            "price_take_profit": 52000.0,
            "price_stop_loss": 49000.0,
        },
        "partial_loss": {
            "percent_to_close": 50.0,
            "cost": 1000.0,
            "current_price": 50000.0,
            "price_take_profit": 52000.0,
            "price_stop_loss": 49000.0,
        },
        "trailing_stop": {"percent_shift": 1.0, "current_price": 50000.0, "new_stop_loss_price": 49500.0},
        "trailing_take": {"percent_shift": 1.0, "current_price": 50000.0, "new_take_profit_price": 53000.0},
        "breakeven": {"current_price": 50500.0, "new_stop_loss_price": 50000.0},
        "average_buy": {"current_price": 50000.0, "cost": 500.0},
    }
    values: dict[str, Any] = {
        "symbol": symbol,
        "strategy_name": "test-strategy",
        "exchange_name": "binance-futures",
        "signal_id": signal_id,
        "when": 1_704_067_200_000,
        "attempt": attempt,
        "client_order_id": bp.client_order_id(signal_id, kind),
        "position": position,
    }
    values.update(defaults[kind])
    values.update(fields)
    return classes[kind](**values)


def broker_for(fake: FakeBinanceFutures, **options: Any) -> Any:
    """A :class:`~btkit_binance_futures.BinanceFuturesBroker` pointed at ``fake`` with fast test timings
    (keys must be in the environment, e.g. through the ``binance_keys`` fixture). The ccxt rate limiter
    stays on, with a 2 ms unit instead of Binance's 50 ms (``rate_limit_ms``)."""
    from btkit_binance_futures.broker import BinanceFuturesBroker

    settings: dict[str, Any] = {
        "api_base_url": fake.url,
        "entry_timeout_seconds": 2.0,
        "poll_interval_seconds": 0.05,
        "retry_delay_seconds": 0.01,
        "request_timeout_ms": 2000,
        "rate_limit_ms": 2,
    }
    settings.update(options)
    return BinanceFuturesBroker(**settings)


def run_scenario(broker: Any, scenario: Callable[[], Awaitable[T]]) -> T:
    """Run ``scenario()`` on a fresh event loop and close ``broker`` in it afterwards (its ccxt client
    belongs to that loop), whatever the scenario raised."""

    async def main() -> T:
        try:
            return await scenario()
        finally:
            await broker.close()

    return asyncio.run(main())
