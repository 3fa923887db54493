"""The spot broker's websocket fast path for fills: ccxt.pro ``watchOrders``, REST as the source of truth.

One :class:`OrderFeed` per broker and event loop keeps one ``watch_orders()`` running in a task and files
every update under its client order id. While the broker waits for an order to fill, :func:`wait_order`
awaits those updates instead of sleeping between REST polls:

- an update that reports a fill or a new status is confirmed by one REST read of the order before the
  broker uses it (the socket can miss or reorder partial fills — ccxt issue 27412 —, REST cannot);
- ``reconcile_seconds`` of silence about the order → one REST read anyway (a missed event is found there);
- the socket failing (error, dropped, refused) → REST polling for the rest of the wait, logged once; the
  feed reconnects in the background (backoff 1 s doubling to 30 s) and the next wait uses it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

from btkit.errors import OrderTransientError

log = logging.getLogger("btkit.ccxt.spot")
OPEN = "open"
READY_SECONDS = 5.0  # how long start() waits for the subscription
SUBSCRIBE_SECONDS = 10.0  # a subscription not confirmed by then is tried again
KEEP = 2000  # client order ids whose last update is kept


def _cid(order: Mapping[str, Any]) -> str:
    info = order.get("info") if isinstance(order.get("info"), Mapping) else {}
    return str(order.get("clientOrderId") or info.get("clientOrderId") or info.get("c") or "")


def _filled(order: Mapping[str, Any] | None) -> Decimal:
    value = (order or {}).get("filled")
    return Decimal(0) if value in (None, "") else Decimal(str(value))


class OrderFeed:
    """Order updates of one ccxt.pro client, by client order id (see the module docs)."""

    def __init__(self, client: Any, exchange_id: str, describe: Callable[[BaseException], str]) -> None:
        self.client = client
        self.exchange_id = exchange_id
        self._describe = describe
        self._latest: dict[str, dict[str, Any]] = {}
        self._seq: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()
        self.down_reason: str | None = "not started"
        self._warned = False
        self.updates = 0  # order updates received
        self.reconnects = 0

    @property
    def up(self) -> bool:
        return self.down_reason is None

    async def start(self, timeout: float = READY_SECONDS) -> bool:
        """Subscribe; True once order updates flow (False after ``timeout``: REST is used meanwhile)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout)
        return self.up

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.client.close()

    async def _subscribe(self) -> None:
        """Until this returns, events may be lost; Binance confirms the user data subscription."""
        authenticate = getattr(self.client, "authenticate", None)
        if self.exchange_id.startswith("binance") and authenticate is not None:
            await asyncio.wait_for(authenticate(), SUBSCRIBE_SECONDS)
            return
        await asyncio.sleep(0)  # elsewhere: the first watch call subscribes

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                await self._subscribe()
                watching = asyncio.ensure_future(self.client.watch_orders())
                await asyncio.sleep(0)
                self._mark_up()
                while True:
                    orders = await watching
                    self._file(orders)
                    delay = 1.0
                    watching = asyncio.ensure_future(self.client.watch_orders())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._mark_down(self._describe(exc))
                self.reconnects += 1
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    def _file(self, orders: Any) -> None:
        for order in orders or ():
            cid = _cid(order)
            if not cid:
                continue
            self._latest.pop(cid, None)
            self._latest[cid] = dict(order)  # newest last
            self._seq[cid] = self._seq.get(cid, 0) + 1
            self.updates += 1
        while len(self._latest) > KEEP:
            self._seq.pop(next(iter(self._latest)), None)
            del self._latest[next(iter(self._latest))]
        self._changed.set()
        self._changed = asyncio.Event()

    def _mark_up(self) -> None:
        if self.down_reason is not None and self._warned:
            log.warning(
                "ccxt:%s spot: websocket order updates are back; fills are awaited on them", self.exchange_id
            )
            self._warned = False
        self.down_reason = None
        self._up.set()

    def _mark_down(self, reason: str) -> None:
        if self.down_reason is None and not self._warned:
            log.warning(
                "ccxt:%s spot: websocket order updates stopped (%s); fills are polled by REST until they are back",
                self.exchange_id,
                reason,
            )
            self._warned = True
        self.down_reason = reason
        self._up.clear()
        self._changed.set()
        self._changed = asyncio.Event()

    def seq(self, cid: str) -> int:
        return self._seq.get(cid, 0)

    def latest(self, cid: str) -> dict[str, Any] | None:
        return self._latest.get(cid)

    async def changed(self, cid: str, seen: int, timeout: float) -> str:
        """``update`` (a new update of ``cid`` since ``seen``), ``down`` or ``silent`` after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if not self.up:
                return "down"
            if self.seq(cid) > seen:
                return "update"
            left = deadline - loop.time()
            if left <= 0:
                return "silent"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)


def news(update: Mapping[str, Any] | None, order: Mapping[str, Any]) -> bool:
    """Whether a websocket update says more than the order read last: more filled, or another status."""
    if update is None:
        return False
    return _filled(update) > _filled(order) or (update.get("status") not in (None, order.get("status")))


async def wait_order(
    feed: OrderFeed,
    lookup: Callable[[], Awaitable[dict[str, Any] | None]],
    order: dict[str, Any],
    cid: str,
    seconds: float,
    *,
    poll_seconds: float,
    reconcile_seconds: float,
    stats: dict[str, int] | None = None,
) -> dict[str, Any]:
    """``order`` until it is no longer open or ``seconds`` have passed; every answer is a REST read."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    seen = 0  # updates filed before the wait count too: the socket may have been faster than the answer
    stats = stats if stats is not None else {}

    async def read(why: str) -> dict[str, Any]:
        stats[why] = stats.get(why, 0) + 1
        try:
            return await lookup() or order
        except OrderTransientError as exc:
            log.info("%s: reading %s failed (%s)", order.get("symbol"), cid, exc)
            return order

    while order.get("status") == OPEN and loop.time() < deadline:
        left = deadline - loop.time()
        # the socket told of news REST did not show yet: read again soon, not after the silence bound
        bound = poll_seconds if news(feed.latest(cid), order) and seen else reconcile_seconds
        outcome = await feed.changed(cid, seen, min(left, bound))
        if outcome == "down":  # poll like the REST path, for the rest of this wait
            while order.get("status") == OPEN and loop.time() < deadline:
                await asyncio.sleep(poll_seconds)
                order = await read("polls")
            break
        if outcome == "update":
            seen = feed.seq(cid)
            if news(feed.latest(cid), order):
                order = await read("confirmations")
        elif loop.time() < deadline:
            order = await read("reconciliations")
    return order


async def open_feed(rest: Any, config: Any, describe: Callable[[BaseException], str]) -> OrderFeed | None:
    """The order feed the broker's ``[broker] websocket`` asks for (None: REST polling only), subscribed."""
    from btkit.errors import ConfigError
    from btkit_ccxt.ws import make_pro_client, pro_has

    eid = config.exchange_id
    if config.websocket is False:
        log.info("ccxt:%s spot: websocket = false; fills are polled by REST", eid)
        return None
    if not pro_has(eid, "watchOrders"):
        if config.websocket:
            raise ConfigError(f"ccxt:{eid} broker: websocket = true but ccxt.pro has no watchOrders for it")
        log.info("ccxt:%s spot: ccxt.pro has no watchOrders; fills are polled by REST", eid)
        return None
    if config.api_base_url and not config.ws_base_url:
        log.info("ccxt:%s spot: api_base_url without ws_base_url; fills are polled by REST", eid)
        return None
    feed = OrderFeed(make_pro_client(rest, config.ws_base_url), eid, describe)
    ready = await feed.start(min(READY_SECONDS, config.request_timeout_ms / 1000))
    log.info(
        "ccxt:%s spot: fills awaited on websocket order updates (watchOrders), each confirmed by one REST "
        "read%s",
        eid,
        "" if ready else f"; not subscribed yet ({feed.down_reason}), REST polling meanwhile",
    )
    return feed
