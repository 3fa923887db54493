"""The process-wide Binance limiter: every request of every client (candles and broker, all symbols) to one
Binance venue draws from one budget, so the bot's own bursts never earn a 429 or a 418.

:class:`Pacer` keeps, per venue (exchange id + API host), the request weight sent in the last minute and the
orders sent in the last 10 s / minute (weights from :mod:`btkit_ccxt.limits`), corrected upwards by what
Binance reports in ``X-MBX-USED-WEIGHT-1M`` / ``X-MBX-ORDER-COUNT-10S`` (other processes on the same IP or
account count too). A request waits only when it would not fit under ``headroom`` × the limit; a 429 or
418 answer stops every request to that venue for its ``Retry-After``. Within the budget requests go out at
once and concurrently — unlike ccxt's own limiter, which spaces every request of one client by its weight
× ``rateLimit`` whether or not the budget is close.

:func:`install` puts a pacer on a ccxt client (``make_client`` does it for ``binance`` and
``binanceusdm``); ``make_client(..., rate_limiter="ccxt")`` keeps ccxt's own limiter instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from btkit_ccxt.limits import MINUTE, TEN_SECONDS, Budget, CostFn, Window, budget_from, venue_of

log = logging.getLogger("btkit.ccxt.pacing")
LIMITERS = ("binance", "ccxt")
#: wall-clock seconds added to every window when deciding whether a request fits: a request counted here
#: when it leaves may reach Binance later than one sent before it, so a slot is reused only after this margin
MARGIN = 0.5


class Pacer:
    """One venue's account-wide budget (thread-safe; waits with ``asyncio.sleep`` on any loop)."""

    def __init__(
        self,
        budget: Budget,
        cost: CostFn,
        *,
        weight_headroom: float = 0.9,
        order_headroom: float = 1.0,
        time_scale: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.cost = cost
        self._headroom = (weight_headroom, order_headroom)
        self._set_budget(budget)
        self.time_scale = time_scale  # > 1: budget windows pass faster than the wall clock (tests)
        self._given_clock = clock  # seconds; a replay's clock in benchmarks (the default: monotonic)
        self._lock = threading.Lock()
        margin = MARGIN * time_scale  # a delay on the wire is wall-clock time, whatever the scale
        self._weight = Window(MINUTE + margin)
        self._orders_10s = Window(TEN_SECONDS + margin)
        self._orders_1m = Window(MINUTE + margin)
        self._reported: dict[str, tuple[float, int]] = {}  # header -> (when, value)
        self._blocked_until = 0.0
        self.requests = 0
        self.waits = 0
        self.waited_s = 0.0
        self.refusals = 0  # 429/418 answers seen

    def _set_budget(self, budget: Budget) -> None:
        weight_headroom, order_headroom = self._headroom
        self.budget = budget
        self.weight_limit = int(budget.weight_per_minute * weight_headroom)
        self.orders_10s_limit = int(budget.orders_per_10s * order_headroom)
        self.orders_1m_limit = (
            int(budget.orders_per_minute * order_headroom) if budget.orders_per_minute else None
        )

    def adopt(self, rate_limits: object) -> None:
        """Use the budget the venue announces in ``exchangeInfo``'s ``rateLimits`` (Binance raises limits
        for some accounts and changes them over time); what it omits keeps btkit's table."""
        with self._lock:
            self._set_budget(budget_from(self.budget.name, rate_limits, self.budget))

    def _clock(self) -> float:
        if self._given_clock is not None:
            return self._given_clock()
        return time.monotonic() * self.time_scale

    def _used(self, window: Window, header: str, now: float) -> int:
        local = window.used(now)
        seen = self._reported.get(header)
        if seen is None or now - seen[0] > window.span:
            return local
        when, value = seen
        return max(local, value + window.since(when, now))

    def _fits(self, now: float, weight: int, orders: int) -> float:
        """0 when the request fits now, else seconds to wait before trying again."""
        if now < self._blocked_until:
            return self._blocked_until - now
        checks = [(self._weight, "X-MBX-USED-WEIGHT-1M", weight, self.weight_limit)]
        if orders:
            checks.append((self._orders_10s, "X-MBX-ORDER-COUNT-10S", orders, self.orders_10s_limit))
            if self.orders_1m_limit is not None:
                checks.append((self._orders_1m, "X-MBX-ORDER-COUNT-1M", orders, self.orders_1m_limit))
        wait = 0.0
        for window, header, needed, limit in checks:
            if not needed or self._used(window, header, now) + needed <= limit:
                continue
            if window.used(now) + needed > limit:  # our own sends bind: wait for the oldest to age out
                wait = max(wait, window.free_at(now, needed, limit) - now)
            else:  # Binance reports more (other clients): wait until that report has aged out
                wait = max(wait, self._reported[header][0] + window.span - now)
        return wait

    async def acquire(self, method: str, path: str, params: Mapping[str, str]) -> None:
        """Wait until the request fits in the budget, then count it (as sent now)."""
        cost = self.cost(method, path, params)
        started = self._clock()
        waited = False
        while True:
            with self._lock:
                now = self._clock()
                wait = self._fits(now, cost.weight, cost.orders)
                if wait <= 0:
                    self._weight.add(now, cost.weight)
                    self._orders_10s.add(now, cost.orders)
                    self._orders_1m.add(now, cost.orders)
                    self.requests += 1
                    if waited:
                        self.waits += 1
                        self.waited_s += now - started
                    return
            waited = True
            await asyncio.sleep(min(max(wait, 0.005), 1.0) / self.time_scale)

    def observe(self, status: int, headers: Mapping[str, Any]) -> None:
        """Fold one answer's rate-limit headers (and a 429/418 ``Retry-After``) into the budget."""
        now = self._clock()
        lowered = {str(k).upper(): v for k, v in headers.items()}
        with self._lock:
            for name in ("X-MBX-USED-WEIGHT-1M", "X-MBX-ORDER-COUNT-10S", "X-MBX-ORDER-COUNT-1M"):
                raw = lowered.get(name)
                if raw is not None and str(raw).strip().isdigit():
                    self._reported[name] = (now, int(str(raw).strip()))
            if status in (418, 429):
                self.refusals += 1
                try:
                    retry = float(lowered.get("RETRY-AFTER") or 1)
                except ValueError:
                    retry = 1.0
                self._blocked_until = max(self._blocked_until, now + retry)
                log.warning(
                    "%s answered %d; every request to it waits %.0f s (Retry-After)",
                    self.budget.name,
                    status,
                    retry,
                )

    def used_weight(self) -> int:
        with self._lock:
            return self._used(self._weight, "X-MBX-USED-WEIGHT-1M", self._clock())


_DEFAULT = ["binance"]


def default_limiter() -> str:
    """The limiter ``make_client`` uses when none is asked for (``"binance"`` unless changed)."""
    return _DEFAULT[0]


def set_default_limiter(name: str) -> None:
    """Change the process default (``"binance"`` or ``"ccxt"``): the benchmarks' "before" runs use it to
    give the candle clients ccxt's own limiter too."""
    if name not in LIMITERS:
        raise ValueError(f"rate limiter must be one of {', '.join(LIMITERS)}, got {name!r}")
    _DEFAULT[0] = name


_PACERS: dict[tuple[str, str], Pacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(exchange_id: str, host: str) -> Pacer | None:
    """The process-wide pacer of one venue (created on first use); None without a weight table."""
    venue = venue_of(exchange_id)
    if venue is None:
        return None
    with _PACERS_LOCK:
        pacer = _PACERS.get((exchange_id, host))
        if pacer is None:
            pacer = _PACERS[(exchange_id, host)] = Pacer(*venue)
        return pacer


def configure(exchange_id: str, host: str, pacer: Pacer) -> Pacer:
    """Use ``pacer`` for one venue from now on (tests: a scaled clock or another budget)."""
    with _PACERS_LOCK:
        _PACERS[(exchange_id, host)] = pacer
    return pacer


def reset_pacers() -> None:
    """Forget every venue's counts (tests)."""
    with _PACERS_LOCK:
        _PACERS.clear()


def _host_of(client: Any) -> str:
    api = client.urls.get("api") if isinstance(client.urls, dict) else None
    first = api
    while isinstance(first, dict):
        first = next(iter(first.values()), "")
    return urlsplit(str(first or "")).netloc


def install(client: Any, exchange_id: str) -> Pacer | None:
    """Route every HTTP request of ``client`` through its venue's pacer and read Binance's rate-limit
    headers from every answer; ccxt's own per-client spacing is switched off for it (the pacer decides).
    Returns the pacer, or None (client unchanged) when btkit has no weight table for ``exchange_id``."""
    pacer = pacer_for(exchange_id, _host_of(client))
    if pacer is None:
        return None
    fetch = client.fetch
    on_rest_response = client.on_rest_response

    async def paced_fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        split = urlsplit(url)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        if isinstance(body, str) and body:
            params.update(parse_qsl(body, keep_blank_values=True))
        await pacer.acquire(method.upper(), split.path, params)
        return await fetch(url, method, headers, body)

    def observing(
        code: int,
        reason: str,
        url: str,
        method: str,
        response_headers: Any,
        response_body: str,
        request_headers: Any,
        request_body: Any,
    ) -> Any:
        pacer.observe(int(code), response_headers or {})
        if int(code) == 200 and urlsplit(url).path.endswith("/exchangeInfo"):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                pacer.adopt(json.loads(response_body).get("rateLimits"))
        return on_rest_response(
            code, reason, url, method, response_headers, response_body, request_headers, request_body
        )

    async def no_spacing(cost: Any = None) -> None:
        return None

    client.fetch = paced_fetch
    client.on_rest_response = observing
    client.throttle = no_spacing
    client.btkit_pacer = pacer
    return pacer
