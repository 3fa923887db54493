"""Binance's REST budgets: what each request weighs, and rolling-window accounting of it.

Shared by the client-side limiter (:mod:`btkit_ccxt.pacing`) and the fake servers' enforcement
(:class:`ServerLimits`, used by ``btkit_ccxt.testing.FakeSpotExchange`` and
``btkit_binance_futures.testing.FakeBinanceFutures``), so both sides count the same thing.

Weights are Binance's documented IP weights of the endpoints btkit calls (spot ``/api/v3``, USD-M futures
``/fapi``); ``orders`` is what a request adds to the account's order count (a new order, a conditional
order, each order of a batch). Budgets (until the venue's ``exchangeInfo`` says otherwise, see
:meth:`btkit_ccxt.pacing.Pacer.adopt`): spot 6000 weight per minute and 100 orders per 10 s (and 200 000 per
day, not tracked); USD-M 2400 weight per minute, 300 orders per 10 s and 1200 per minute. Binance counts
spot orders as *unfilled* orders (a fill gives the count back); both sides here count every placement,
which is never less than Binance's count.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable, Mapping

import attrs

MINUTE = 60.0
TEN_SECONDS = 10.0


@attrs.frozen
class Budget:
    """One venue's limits (Binance's numbers, see the module docs)."""

    name: str
    weight_per_minute: int
    orders_per_10s: int
    orders_per_minute: int | None = None


SPOT = Budget("binance spot", 6000, 100)
USDM = Budget("binance usd-m", 2400, 300, 1200)


@attrs.frozen
class Cost:
    weight: int
    orders: int = 0


def _klines_weight_usdm(params: Mapping[str, str]) -> int:
    limit = int(params.get("limit") or 500)
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    return 5 if limit <= 1000 else 10


def _batch_size(params: Mapping[str, str]) -> int:
    raw = params.get("batchOrders") or "[]"
    return max(1, raw.count("{"))


def usdm_cost(method: str, path: str, params: Mapping[str, str]) -> Cost:
    """Binance USD-M futures: the IP weight and order count of one request."""
    has_symbol = bool(params.get("symbol"))
    if path == "/fapi/v1/klines":
        return Cost(_klines_weight_usdm(params))
    if path in ("/fapi/v1/order", "/fapi/v1/algoOrder") and method == "POST":
        return Cost(0, 1)  # new orders weigh 0 on the IP limit, 1 on the order counts
    if path == "/fapi/v1/batchOrders" and method == "POST":
        return Cost(5, _batch_size(params))
    if path in ("/fapi/v1/openOrders", "/fapi/v1/openAlgoOrders"):
        return Cost(1 if has_symbol else 40)
    if path in ("/fapi/v1/ticker/price", "/fapi/v2/ticker/price"):
        return Cost(1 if has_symbol else 2)
    if path == "/fapi/v1/premiumIndex":
        return Cost(1 if has_symbol else 10)
    if path == "/fapi/v1/positionSide/dual" and method == "GET":
        return Cost(30)
    if path in (
        "/fapi/v2/account",
        "/fapi/v3/account",
        "/fapi/v2/balance",
        "/fapi/v3/balance",
        "/fapi/v2/positionRisk",
        "/fapi/v3/positionRisk",
        "/fapi/v1/userTrades",
    ):
        return Cost(5)
    return Cost(1)  # ping, time, exchangeInfo, order/algo look-ups and cancels, leverage, margin type


def spot_cost(method: str, path: str, params: Mapping[str, str]) -> Cost:
    """Binance spot: the IP weight and order count of one request."""
    has_symbol = bool(params.get("symbol"))
    if path == "/api/v3/order":
        if method == "POST":
            return Cost(1, 1)
        return Cost(4 if method == "GET" else 1)
    if path == "/api/v3/openOrders":
        return Cost((6 if has_symbol else 80) if method == "GET" else 1)
    if path in ("/api/v3/exchangeInfo", "/api/v3/account", "/api/v3/myTrades"):
        return Cost(20)
    if path == "/api/v3/klines":
        return Cost(2)
    if path == "/api/v3/ticker/price":
        return Cost(2 if has_symbol else 4)
    return Cost(1)


CostFn = Callable[[str, str, Mapping[str, str]], Cost]


def rate_limits_json(budget: Budget) -> list[dict[str, object]]:
    """``budget`` as the ``rateLimits`` of an ``exchangeInfo`` answer (what the fakes serve)."""
    out: list[dict[str, object]] = [
        {
            "rateLimitType": "REQUEST_WEIGHT",
            "interval": "MINUTE",
            "intervalNum": 1,
            "limit": budget.weight_per_minute,
        },
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": budget.orders_per_10s},
    ]
    if budget.orders_per_minute is not None:
        out.append(
            {
                "rateLimitType": "ORDERS",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": budget.orders_per_minute,
            }
        )
    return out


def budget_from(name: str, rate_limits: object, default: Budget) -> Budget:
    """The budget an ``exchangeInfo`` answer's ``rateLimits`` describe (``default`` for what it omits)."""
    weight, orders_10s, orders_1m = (
        default.weight_per_minute,
        default.orders_per_10s,
        default.orders_per_minute,
    )
    for row in rate_limits if isinstance(rate_limits, list) else []:
        if not isinstance(row, dict):
            continue
        kind, interval, num, limit = (
            row.get(k) for k in ("rateLimitType", "interval", "intervalNum", "limit")
        )
        if not isinstance(limit, int) or limit <= 0:
            continue
        if (kind, interval, num) == ("REQUEST_WEIGHT", "MINUTE", 1):
            weight = limit
        elif (kind, interval, num) == ("ORDERS", "SECOND", 10):
            orders_10s = limit
        elif (kind, interval, num) == ("ORDERS", "MINUTE", 1):
            orders_1m = limit
    return Budget(name, weight, orders_10s, orders_1m)


def venue_of(exchange_id: str) -> tuple[Budget, CostFn] | None:
    """The budget and weights for a ccxt exchange id, or None when btkit has no table for it."""
    if exchange_id == "binanceusdm":
        return USDM, usdm_cost
    if exchange_id == "binance":
        return SPOT, spot_cost
    return None


class Window:
    """A rolling window of counts: ``add(t, n)``, ``used(t)`` = the sum over ``(t - span, t]``.
    Not thread-safe by itself (the owners hold a lock)."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._items: collections.deque[tuple[float, int]] = collections.deque()
        self._total = 0

    def _expire(self, now: float) -> None:
        while self._items and self._items[0][0] <= now - self.span:
            self._total -= self._items.popleft()[1]

    def used(self, now: float) -> int:
        self._expire(now)
        return self._total

    def add(self, now: float, n: int) -> None:
        if n:
            self._items.append((now, n))
            self._total += n

    def since(self, start: float, now: float) -> int:
        """The sum of the items added after ``start`` (still inside the window)."""
        self._expire(now)
        return sum(n for t, n in self._items if t > start)

    def free_at(self, now: float, needed: int, limit: int) -> float:
        """The earliest time at which ``needed`` more fit under ``limit`` (``now`` when they fit now)."""
        self._expire(now)
        excess = self._total + needed - limit
        if excess <= 0:
            return now
        for t, n in self._items:
            excess -= n
            if excess <= 0:
                return t + self.span
        return now + self.span


@attrs.frozen
class Verdict:
    """What the server answers: ``status`` 200 (serve it), 429 (over budget) or 418 (banned), with the
    headers every answer carries."""

    status: int
    headers: dict[str, str]
    code: int = 0
    msg: str = ""


class ServerLimits:
    """Binance's enforcement, for the fake servers (one instance per fake: one IP, one account).

    Every request is weighed; the answer carries ``X-MBX-USED-WEIGHT-1M`` and, for orders,
    ``X-MBX-ORDER-COUNT-10S`` (and ``-1M`` on USD-M). Over a budget the request is refused with 429,
    ``Retry-After`` (seconds until it would fit) and Binance's ``-1003`` / ``-1015`` body; a request that
    arrives before that Retry-After has passed gets 418 (an IP ban of ``ban_seconds``, as Binance does
    when a client keeps sending after a 429). Refused requests add nothing. ``enforce=False`` only counts
    and sends the headers. Counters: ``refused_429``, ``refused_418``, ``peak_weight``, ``peak_orders_10s``.
    """

    def __init__(
        self,
        budget: Budget,
        cost: CostFn,
        *,
        enforce: bool = True,
        ban_seconds: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = budget
        self.cost = cost
        self.enforce = enforce
        self.ban_seconds = ban_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._weight = Window(MINUTE)
        self._orders_10s = Window(TEN_SECONDS)
        self._orders_1m = Window(MINUTE)
        self._retry_until = 0.0
        self._banned_until = 0.0
        self.refused_429 = 0
        self.refused_418 = 0
        self.peak_weight = 0
        self.peak_orders_10s = 0

    def _headers(self, now: float, orders: bool) -> dict[str, str]:
        out = {"X-MBX-USED-WEIGHT-1M": str(self._weight.used(now))}
        if orders:
            out["X-MBX-ORDER-COUNT-10S"] = str(self._orders_10s.used(now))
            if self.budget.orders_per_minute is not None:
                out["X-MBX-ORDER-COUNT-1M"] = str(self._orders_1m.used(now))
        return out

    def admit(self, method: str, path: str, params: Mapping[str, str]) -> Verdict:
        cost = self.cost(method, path, params)
        with self._lock:
            now = self._clock()
            headers = self._headers(now, cost.orders > 0)
            if self.enforce and now < self._banned_until:
                self.refused_418 += 1
                retry = math.ceil(self._banned_until - now)
                return Verdict(418, {**headers, "Retry-After": str(retry)}, -1003, "IP banned until later.")
            if self.enforce and now < self._retry_until:
                self._banned_until = now + self.ban_seconds  # kept sending after a 429
                self.refused_418 += 1
                retry = math.ceil(self.ban_seconds)
                return Verdict(
                    418, {**headers, "Retry-After": str(retry)}, -1003, "Way too many requests; IP banned."
                )
            refusal = self._over(now, cost) if self.enforce else None
            if refusal is not None:
                until, code, msg = refusal
                self._retry_until = until
                self.refused_429 += 1
                retry = max(1, math.ceil(until - now))
                return Verdict(429, {**headers, "Retry-After": str(retry)}, code, msg)
            self._weight.add(now, cost.weight)
            self._orders_10s.add(now, cost.orders)
            self._orders_1m.add(now, cost.orders)
            self.peak_weight = max(self.peak_weight, self._weight.used(now))
            self.peak_orders_10s = max(self.peak_orders_10s, self._orders_10s.used(now))
            return Verdict(200, self._headers(now, cost.orders > 0))

    def _over(self, now: float, cost: Cost) -> tuple[float, int, str] | None:
        b = self.budget
        if cost.weight and self._weight.used(now) + cost.weight > b.weight_per_minute:
            until = self._weight.free_at(now, cost.weight, b.weight_per_minute)
            return (
                until,
                -1003,
                f"Too many requests; current limit is {b.weight_per_minute} request weight per 1 MINUTE.",
            )
        if cost.orders and self._orders_10s.used(now) + cost.orders > b.orders_per_10s:
            until = self._orders_10s.free_at(now, cost.orders, b.orders_per_10s)
            return (
                until,
                -1015,
                f"Too many new orders; current limit is {b.orders_per_10s} orders per TEN_SECONDS.",
            )
        per_minute = b.orders_per_minute
        if cost.orders and per_minute is not None and self._orders_1m.used(now) + cost.orders > per_minute:
            until = self._orders_1m.free_at(now, cost.orders, per_minute)
            return until, -1015, f"Too many new orders; current limit is {per_minute} orders per MINUTE."
        return None
