"""The spot broker for any ccxt exchange with spot markets (``--broker ccxt:<id>``).

Stateless after a crash, like the futures broker: every order carries a deterministic client id derived
from the engine's ``client_order_id``, and every decision is taken after reading the exchange back.

- The bot's position on a symbol is the base-asset balance (free + locked by its own stop): fees taken
  in the base asset are accounted by construction, and exits are sized to what is really there. One bot
  position per base asset; other holdings are refused at start-up unless listed in ``foreign_assets``.
- Entry: a limit (or market) buy polled until filled or ``entry_timeout_seconds``; a partial fill is kept
  and protected (``partial_fill = "keep"``) or sold back (``"unwind"``, then transient).
- Protection: a native stop-loss sell order when ccxt says the exchange has one (``has
  ["createStopLossOrder"]``) and ``protection`` is not ``emulated``; the take-profit is emulated by the
  engine on every tick (a spot account cannot lock the same coins for two sell orders), and so is the
  stop without native support. What is native and what emulated is logged at start-up.
- Fills: entries and exits return an :class:`~btkit.broker_payloads.ExchangeFill` with the exchange's
  average price; a position that the exchange closed (stop filled, sold while the bot was down) is
  reported by ``on_active_check`` as ``OrderDeletedError`` carrying the sells' average price and time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from btkit.broker_payloads import ExchangeFill, client_order_id
from btkit.errors import ConfigError, OrderDeletedError, OrderRejectedError, OrderTransientError
from btkit_ccxt.reads import SharedRead
from btkit_ccxt.spot.config import SpotConfig, key_env
from btkit_ccxt.spot.errors import Outcome, classify

T = TypeVar("T")
log = logging.getLogger("btkit.ccxt.spot")
PREFIX = "btk"
MAX_ROUNDS = 12
FRESH = "btkit_fresh"  # marks an entry this call placed and saw filled in the placement's own answer
OPEN = "open"


def derive_id(base: str, tag: str) -> str:
    """A child id of ``base``: ``btk`` + 22 hex digits + ``-`` + tag (≤ 36 characters, deterministic)."""
    clean = "".join(ch for ch in tag if ch.isalnum())[:10] or "x"
    digest = hashlib.sha256(f"{base}|{clean}".encode()).hexdigest()[:22]
    return f"{PREFIX}{digest}-{clean}"


def _dec(value: Any) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _cid(order: Mapping[str, Any]) -> str:
    info = order.get("info") if isinstance(order.get("info"), Mapping) else {}
    return str(order.get("clientOrderId") or info.get("clientOrderId") or "")


class CcxtSpotBroker:
    """``CcxtSpotBroker("binance", **options)``; options are the fields of :class:`SpotConfig`."""

    def __init__(self, exchange_id: str, config: SpotConfig | None = None, **options: Any) -> None:
        from btkit_ccxt.secrets import SecretMasker, credentials_from_env

        self.config = config if config is not None else SpotConfig.from_options(exchange_id, options)
        self.exchange_id = exchange_id
        key, secret, password = key_env(exchange_id)
        creds = credentials_from_env(key, secret, password)
        assert creds is not None
        self._credentials = creds
        self._secrets = creds.secrets()
        masker = next((f for f in log.filters if isinstance(f, SecretMasker)), None)
        if masker is None:
            masker = SecretMasker()
            log.addFilter(masker)
        masker.add(self._secrets)
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._expected = dict(self.config.expected_positions or {})
        self._refusal: str | None = None
        self._initialized = False
        self._init_lock: asyncio.Lock | None = None
        self._locks: dict[str, asyncio.Lock] = {}
        self.native_stop = False
        # one balance read shared by the checks of every symbol in the same moment (see _balances)
        self._balance_read: SharedRead[Any] = SharedRead(
            lambda: self._read("reading balances", self._client.fetch_balance)
        )
        self._feed: Any = None  # the websocket order feed (spot/ws_fills.py) of _feed_loop, or None
        self._feed_loop: asyncio.AbstractEventLoop | None = None
        self.ws_stats: dict[str, int] = {}  # REST reads of websocket waits, by why (ws_fills.wait_order)

    # ================================================================ client and helpers
    @property
    def _binance_like(self) -> bool:
        return self.exchange_id.startswith("binance")

    async def client(self) -> Any:
        from btkit_ccxt.client import make_client

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            options: dict[str, Any] = {"defaultType": "spot"}
            if self._binance_like:
                options.update(
                    {
                        "fetchMarkets": {"types": ["spot"]},
                        "fetchMargins": False,
                        "fetchOpenOrders": {"warnWithoutSymbol": False},
                    }
                )
            self._client = make_client(
                self.exchange_id,
                api_base_url=self.config.api_base_url,
                credentials=self._credentials,
                timeout_ms=self.config.request_timeout_ms,
                options=options,
                config={"rateLimit": self.config.rate_limit_ms} if self.config.rate_limit_ms else None,
                rate_limiter=self.config.rate_limiter,
            )
            self._client_loop = loop
        if not self._client.markets:
            await self._read(f"loading {self.exchange_id} markets", self._client.load_markets)
        return self._client

    async def close(self) -> None:
        feed, self._feed = self._feed, None
        if feed is not None and self._feed_loop is asyncio.get_running_loop():
            await feed.close()
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> CcxtSpotBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        """The live runner closes the HTTP session through this at the end of a session."""
        await self.close()

    def _describe(self, exc: BaseException | None) -> str:
        from btkit_ccxt.retry import describe_error

        return describe_error(exc, self._secrets) if exc is not None else "no error"

    def _lock(self, symbol: str) -> asyncio.Lock:
        return self._locks.setdefault(symbol, asyncio.Lock())

    async def _delay(self, attempt: int) -> None:
        await asyncio.sleep(min(4.0, self.config.retry_delay_seconds * (2**attempt)))

    async def _read(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """A read with bounded retries; ``OrderNotFound`` propagates, refusals are final."""
        last: BaseException | None = None
        for attempt in range(self.config.read_attempts):
            try:
                return await fn()
            except Exception as exc:
                outcome = classify(exc)
                if outcome is Outcome.NOT_FOUND:
                    raise
                if outcome in (Outcome.REJECTED, Outcome.DUPLICATE):
                    raise OrderRejectedError(
                        f"{what}: refused by {self.exchange_id} ({self._describe(exc)})"
                    ) from exc
                last = exc
                if attempt + 1 < self.config.read_attempts:
                    await self._delay(attempt)
        raise OrderTransientError(
            f"{what} failed after {self.config.read_attempts} attempts ({self._describe(last)}); retried next tick"
        ) from last

    def _market(self, client: Any, symbol: str) -> dict[str, Any]:
        market = client.markets.get(symbol)
        if market is None and client.markets_by_id and symbol in client.markets_by_id:
            market = client.markets_by_id[symbol][0]
        if market is None or not market.get("spot"):
            raise OrderRejectedError(
                f"{symbol!r} is not a spot market of {self.exchange_id}; use e.g. BTC/USDT"
            )
        if self._refusal is not None:
            raise OrderRejectedError(self._refusal)
        if market["base"] in self.config.foreign_assets:
            raise OrderRejectedError(
                f"{market['symbol']}: {market['base']} is listed in foreign_assets (held by someone else); the "
                "bot never trades it"
            )
        return market

    @staticmethod
    def _truncate(client: Any, market: Mapping[str, Any], qty: Decimal) -> Decimal:
        if qty <= 0:
            return Decimal(0)
        return _dec(client.amount_to_precision(market["symbol"], float(qty)))

    def _check_size(self, market: Mapping[str, Any], qty: Decimal, price: Decimal, what: str) -> None:
        limits = market.get("limits") or {}
        min_qty = _dec((limits.get("amount") or {}).get("min"))
        min_cost = _dec((limits.get("cost") or {}).get("min"))
        if qty <= 0 or qty < min_qty:
            raise OrderRejectedError(
                f"{market['symbol']}: {what} of {qty} {market['base']} is below the minimum quantity {min_qty}"
            )
        if min_cost and qty * price < min_cost:
            raise OrderRejectedError(
                f"{market['symbol']}: {what} notional {qty * price:.4f} {market['quote']} is below the exchange's "
                f"minimum notional {min_cost}; raise the cost"
            )

    # ================================================================ exchange reads
    async def _lookup(self, symbol: str, cid: str) -> dict[str, Any] | None:
        client = await self.client()
        params = {"origClientOrderId": cid} if self._binance_like else {"clientOrderId": cid}
        try:
            return await self._read(
                f"looking up order {cid}", lambda: client.fetch_order(None, symbol, params)
            )
        except (OrderTransientError, OrderRejectedError):
            raise
        except Exception as exc:
            if classify(exc) is Outcome.NOT_FOUND:
                return None
            raise
        finally:
            self._touched(symbol)  # what was read may be newer than a balance read in flight

    def _touched(self, symbol: str) -> None:
        """The bot sent, cancelled or looked up an order on ``symbol``: its assets' balances may differ
        from any balance read that started before."""
        market = (self._client.markets or {}).get(symbol) if self._client is not None else None
        self._balance_read.touched((market["base"], market["quote"]) if market else ())

    async def _balances(self, asset: str) -> Any:
        """The account's balances, as fresh as ``asset`` needs (:class:`btkit_ccxt.reads.SharedRead`): a
        read not sent yet, or sent after the bot last sent, cancelled or looked up an order touching
        ``asset``, is joined, otherwise a new read starts. The checks and exits of many symbols in one tick
        then share a few reads instead of one each; a finished read is never reused."""
        await self.client()
        return await self._balance_read.get(asset)

    async def _held(self, market: Mapping[str, Any]) -> Decimal:
        """free + locked of the base asset (see :meth:`_balances`)."""
        balance = await self._balances(market["base"])
        return _dec((balance.get(market["base"]) or {}).get("total"))

    async def _free(self, market: Mapping[str, Any]) -> Decimal:
        balance = await self._balances(market["base"])
        return _dec((balance.get(market["base"]) or {}).get("free"))

    def _is_dust(self, market: Mapping[str, Any], qty: Decimal) -> bool:
        step = _dec((market.get("precision") or {}).get("amount"))
        min_qty = _dec(((market.get("limits") or {}).get("amount") or {}).get("min"))
        return qty < max(step, min_qty, Decimal("1e-12"))

    async def _our_open(self, symbol: str, side: str | None = None) -> list[dict[str, Any]]:
        client = await self.client()
        rows = await self._read(f"reading open orders of {symbol}", lambda: client.fetch_open_orders(symbol))
        return [r for r in rows if _cid(r).startswith(PREFIX) and (side is None or r.get("side") == side)]

    # ================================================================ sending
    async def _submit(
        self,
        what: str,
        symbol: str,
        cid: str,
        place: Callable[[], Awaitable[Any]],
        known_absent: bool = False,
    ) -> dict[str, Any]:
        """Send at most once per unknown outcome: looked up by client id first and after every failure
        whose outcome is unknown; a definitive refusal raises ``OrderRejectedError``."""
        found = None if known_absent else await self._lookup(symbol, cid)  # the caller just looked
        if found is not None:
            return found
        last: BaseException | None = None
        for attempt in range(self.config.submit_attempts):
            try:
                return {**dict(await place()), FRESH: True}  # the placement's own answer
            except Exception as exc:
                outcome = classify(exc)
                if outcome is Outcome.REJECTED:
                    raise OrderRejectedError(
                        f"{what} {cid}: rejected by {self.exchange_id} ({self._describe(exc)})"
                    ) from exc
                last = exc
                log.warning("%s %s: send %d failed (%s)", what, cid, attempt + 1, self._describe(exc))
                await self._delay(attempt)
                if outcome is not Outcome.RETRY:
                    found = await self._lookup(symbol, cid)
                    if found is not None:
                        return found
        raise OrderTransientError(
            f"{what} {cid}: no confirmation after {self.config.submit_attempts} sends ({self._describe(last)}); "
            "looked up by its client id before any resend"
        ) from last

    async def _order(
        self,
        what: str,
        market: Mapping[str, Any],
        cid: str,
        otype: str,
        side: str,
        qty: Decimal,
        price: Decimal | None = None,
        extra: Mapping[str, Any] | None = None,
        *,
        known_absent: bool = False,
    ) -> dict[str, Any]:
        client = await self.client()
        params: dict[str, Any] = {"clientOrderId": cid, **(extra or {})}
        if self._binance_like:
            params["newClientOrderId"] = cid
        symbol = market["symbol"]
        try:
            return await self._submit(
                what,
                symbol,
                cid,
                lambda: client.create_order(
                    symbol, otype, side, float(qty), float(price) if price else None, params
                ),
                known_absent,
            )
        finally:
            self._touched(symbol)

    async def _start_feed(self) -> None:
        from btkit_ccxt.spot.ws_fills import open_feed

        loop = asyncio.get_running_loop()
        if self._feed_loop is not loop:
            self._feed = await open_feed(await self.client(), self.config, self._describe)
            self._feed_loop = loop

    async def _wait(self, symbol: str, cid: str, order: dict[str, Any], seconds: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        if self._feed is not None and self._feed_loop is loop and self._feed.up:
            from btkit_ccxt.spot.ws_fills import wait_order

            return await wait_order(
                self._feed,
                lambda: self._lookup(symbol, cid),
                order,
                cid,
                seconds,
                poll_seconds=self.config.poll_interval_seconds,
                reconcile_seconds=self.config.websocket_reconcile_seconds,
                stats=self.ws_stats,
            )
        deadline = loop.time() + seconds
        while order.get("status") == OPEN and loop.time() < deadline:
            await asyncio.sleep(self.config.poll_interval_seconds)
            try:
                order = await self._lookup(symbol, cid) or order
            except OrderTransientError as exc:
                log.info("%s: polling %s failed (%s)", symbol, cid, exc)
        return order

    async def _cancel(self, symbol: str, cid: str) -> None:
        client = await self.client()
        params = {"origClientOrderId": cid} if self._binance_like else {"clientOrderId": cid}
        try:
            await self._read(f"cancelling {cid}", lambda: client.cancel_order(None, symbol, params))
        except (OrderTransientError, OrderRejectedError):
            raise
        except Exception as exc:
            if classify(exc) is not Outcome.NOT_FOUND:
                raise
        finally:
            self._touched(symbol)

    async def _sell_all(self, market: Mapping[str, Any], cid: str, what: str) -> dict[str, Any] | None:
        """Cancel the bot's sell orders, then sell the free base balance at market (idempotent by cid)."""
        symbol = market["symbol"]
        existing = await self._lookup(symbol, cid)
        if existing is not None:
            return await self._wait(symbol, cid, existing, 5.0)
        for order in await self._our_open(symbol, "sell"):
            await self._cancel(symbol, _cid(order))
        client = await self.client()
        qty = self._truncate(client, market, await self._free(market))
        if self._is_dust(market, qty):
            return None
        order = await self._order(what, market, cid, "market", "sell", qty, known_absent=True)
        return await self._wait(symbol, cid, order, 5.0)

    @staticmethod
    def _fill_of(order: Mapping[str, Any] | None, reason: str | None = None) -> ExchangeFill | None:
        from btkit_ccxt.fills import order_fill

        return order_fill(order, reason)

    # ================================================================ start-up
    def set_expected_positions(self, expected: Mapping[str, str | None]) -> None:
        self._expected = dict(expected)

    async def wait_for_init(self) -> None:
        """Connect, say what is native and what emulated, reconcile balances and open orders."""
        client = await self.client()
        has = client.has
        wanted = self.config.protection
        native = bool(has.get("createStopLossOrder") or has.get("createStopOrder"))
        if wanted == "native" and not native:
            raise ConfigError(
                f"ccxt:{self.exchange_id}: protection = 'native' but ccxt has no stop orders for it"
            )
        self.native_stop = native and wanted != "emulated"
        log.warning(
            "ccxt:%s spot: stop-loss %s, take-profit emulated by the engine on every tick%s",
            self.exchange_id,
            "native (a stop-loss sell order on the exchange)"
            if self.native_stop
            else "emulated by the engine",
            "" if self.native_stop else " (no native stop orders used)",
        )
        await self.reconcile(self._expected)
        await self._start_feed()
        self._initialized = True

    async def reconcile(self, expected: Mapping[str, str | None]) -> list[str]:
        """Refuse unknown holdings; cancel the bot's orders on symbols the engine does not hold. Returns the
        client ids cancelled."""
        client = await self.client()
        want = set()
        for symbol in expected:
            market = client.markets.get(symbol) or (client.markets_by_id or {}).get(symbol, [None])[0]
            if market:
                want.add(market["symbol"])
        balance = await self._read("reading balances", client.fetch_balance)
        unknown = []
        for asset, row in (balance.get("total") or {}).items():
            if asset in self.config.quote_assets or asset in self.config.foreign_assets or not row:
                continue
            for quote in self.config.quote_assets:
                market = client.markets.get(f"{asset}/{quote}")
                if market and market.get("spot") and market["symbol"] not in want:
                    if not self._is_dust(market, _dec(row)):
                        unknown.append(f"{_dec(row)} {asset}")
                    break
        cancelled = []
        rows = await self._read("reading open orders", lambda: client.fetch_open_orders())
        for order in rows:
            cid = _cid(order)
            if cid.startswith(PREFIX) and order.get("symbol") not in want:
                await self._cancel(str(order["symbol"]), cid)
                cancelled.append(cid)
        if unknown:
            self._refusal = (
                f"{self.exchange_id} holds {', '.join(unknown)} that the bot does not know; refusing to trade. "
                "Sell it, or list the asset in foreign_assets, then restart"
            )
            raise OrderRejectedError(self._refusal)
        self._refusal = None
        return cancelled

    async def _ready(self, symbol: str) -> tuple[Any, dict[str, Any]]:
        if self._refusal is not None:
            raise OrderRejectedError(self._refusal)
        client = await self.client()
        if not self._initialized:
            self._init_lock = self._init_lock or asyncio.Lock()
            async with self._init_lock:
                if not self._initialized:
                    await self.wait_for_init()
        if self._feed_loop is not asyncio.get_running_loop():
            await self._start_feed()  # a new event loop: a feed of its own
        return client, self._market(client, symbol)

    # ================================================================ entries and protection
    async def _enter(
        self, market: dict[str, Any], qty: Decimal, price: Decimal, base_cid: str, adopt: str | None = None
    ) -> dict[str, Any]:
        """Get ``qty`` bought; returns the filled entry order (``filled`` > 0)."""
        symbol = market["symbol"]
        if adopt is not None:
            order = await self._lookup(symbol, adopt)
            if order is not None and (order.get("status") == OPEN or order.get("filled")):
                return await self._await_fill(market, adopt, order)
        for k in range(MAX_ROUNDS):
            eid = base_cid if k == 0 else derive_id(base_cid, f"r{k}")
            order = await self._lookup(symbol, eid)
            if order is None:
                otype = self.config.entry_order_type
                order = await self._order(
                    "entry",
                    market,
                    eid,
                    otype,
                    "buy",
                    qty,
                    price if otype == "limit" else None,
                    known_absent=True,
                )
                filled = await self._await_fill(market, eid, order)
                return {**filled, FRESH: bool(order.get(FRESH)) and filled is order}
            if order.get("status") == OPEN:
                return await self._await_fill(market, eid, order)
            if order.get("filled") and await self._lookup(symbol, derive_id(eid, "x")) is None:
                return order  # filled (or partly filled and kept) earlier
        raise OrderRejectedError(f"{symbol}: {MAX_ROUNDS} entry attempts of {base_cid} used up; not retried")

    async def _await_fill(self, market: dict[str, Any], eid: str, order: dict[str, Any]) -> dict[str, Any]:
        symbol = market["symbol"]
        order = await self._wait(symbol, eid, order, self.config.entry_timeout_seconds)
        if order.get("status") == OPEN:
            await self._cancel(symbol, eid)
            order = await self._lookup(symbol, eid) or order
            if order.get("status") == OPEN:
                raise OrderTransientError(
                    f"{symbol}: entry {eid} could not be cancelled yet; retried next tick"
                )
        filled = _dec(order.get("filled"))
        if filled > 0 and order.get("status") != "closed" and self.config.partial_fill == "unwind":
            await self._sell_all(market, derive_id(eid, "x"), "unwinding a partial entry")
            raise OrderTransientError(
                f"{symbol}: entry {eid} filled only {filled} of {order.get('amount')} in time; sold back "
                "(partial_fill = unwind); the engine retries next tick"
            )
        if filled <= 0:
            raise OrderTransientError(
                f"{symbol}: entry {eid} not filled within {self.config.entry_timeout_seconds:g}s "
                f"({order.get('status')}); cancelled, the engine retries next tick"
            )
        if order.get("status") != "closed":
            log.warning(
                "%s: entry %s filled %s of %s; keeping and protecting it",
                symbol,
                eid,
                filled,
                order.get("amount"),
            )
        return order

    @staticmethod
    def _net_of_fees(market: Mapping[str, Any], order: Mapping[str, Any]) -> Decimal | None:
        """What a buy that this call placed added to the holding: filled minus fees in the base asset
        (from the placement's own answer); None when that answer carried no fills."""
        if not order.get(FRESH):
            return None
        fees = order.get("fees") or []
        base_fee = sum(
            (_dec(f.get("cost")) for f in fees if f and f.get("currency") == market["base"]), Decimal(0)
        )
        return _dec(order.get("filled")) - base_fee

    async def _protect(
        self, market: dict[str, Any], stop: float | None, sid: str, fresh_qty: Decimal | None = None
    ) -> None:
        """Replace the bot's stop-loss by one (client id ``sid``) for the whole holding at ``stop``.

        ``fresh_qty``: the holding added by an entry this call placed on a flat symbol (the stop cannot
        exist yet, no older stop is left to cancel): the stop is sized to it without reading the account."""
        if not self.native_stop or not stop or stop <= 0:
            return
        symbol = market["symbol"]
        client = await self.client()
        if fresh_qty is not None:
            qty = self._truncate(client, market, fresh_qty)
        else:
            existing = await self._lookup(symbol, sid)
            if existing is not None and existing.get("status") == OPEN:
                return
            for order in await self._our_open(symbol, "sell"):
                await self._cancel(symbol, _cid(order))
            qty = self._truncate(client, market, await self._free(market))
        if self._is_dust(market, qty):
            return
        trigger = _dec(client.price_to_precision(symbol, stop))
        try:
            await self._order(
                "stop-loss",
                market,
                sid,
                "market",
                "sell",
                qty,
                None,
                {"stopLossPrice": float(trigger)},
                known_absent=True,  # looked up above (a cancelled stop's id may be used again)
            )
        except (OrderRejectedError, OrderTransientError) as exc:
            log.error("%s: placing the stop-loss failed (%s); selling the position", symbol, exc)
            await self._sell_all(market, derive_id(sid, "x"), "closing an unprotected entry")
            raise type(exc)(
                f"{symbol}: the stop-loss could not be placed ({exc}); the entry was sold"
            ) from exc

    # ================================================================ broker methods
    async def on_signal_open_commit(self, p: Any) -> ExchangeFill | bool:
        client, market = await self._ready(p.symbol)
        if p.position != "long":
            raise OrderRejectedError(f"{market['symbol']}: spot cannot go {p.position}; only long positions")
        symbol = market["symbol"]
        price = _dec(client.price_to_precision(symbol, p.price_open))
        qty = self._truncate(client, market, _dec(p.cost) / price)
        self._check_size(market, qty, price, "entry")
        async with self._lock(symbol):
            if getattr(p, "type", "open") == "schedule":
                await self._order("resting entry", market, p.client_order_id, "limit", "buy", qty, price)
                return True
            order = await self._enter(
                market, qty, price, p.client_order_id, client_order_id(p.signal_id, "schedule")
            )
            fresh = self._net_of_fees(market, order)  # the engine opens only on a flat symbol
            await self._protect(market, p.price_stop_loss, derive_id(p.client_order_id, "sl"), fresh)
        return self._fill_of(order) or True

    async def on_schedule_check(self, p: Any) -> bool:
        _client, market = await self._ready(p.symbol)
        order = await self._lookup(market["symbol"], p.client_order_id)
        if order is None or (order.get("status") != OPEN and not order.get("filled")):
            raise OrderDeletedError(f"{market['symbol']}: the resting entry {p.client_order_id} is gone")
        return True

    async def on_signal_cancel_commit(self, p: Any) -> bool:
        _client, market = await self._ready(p.symbol)
        symbol = market["symbol"]
        resting = client_order_id(p.signal_id, "schedule")
        async with self._lock(symbol):
            order = await self._lookup(symbol, resting)
            if order is None:
                return True
            if order.get("status") == OPEN:
                await self._cancel(symbol, resting)
                order = await self._lookup(symbol, resting) or order
            if order.get("filled"):
                await self._sell_all(market, derive_id(resting, "x"), "selling a cancelled entry's fill")
        return True

    async def on_signal_close_commit(self, p: Any) -> ExchangeFill | bool:
        _client, market = await self._ready(p.symbol)
        async with self._lock(market["symbol"]):
            order = await self._sell_all(market, p.client_order_id, "close")
        return self._fill_of(order) or True

    async def _partial(self, p: Any) -> ExchangeFill | bool:
        client, market = await self._ready(p.symbol)
        symbol = market["symbol"]
        async with self._lock(symbol):
            order = await self._lookup(symbol, p.client_order_id)
            if order is None:
                held = await self._held(market)
                if self._is_dust(market, held):
                    raise OrderRejectedError(
                        f"{symbol}: no {market['base']} held to close {p.percent_to_close}% of"
                    )
                qty = self._truncate(client, market, held * _dec(p.percent_to_close) / 100)
                self._check_size(market, qty, _dec(p.current_price), "partial close")
                for stop in await self._our_open(symbol, "sell"):
                    await self._cancel(symbol, _cid(stop))
                order = await self._order(
                    "partial close", market, p.client_order_id, "market", "sell", qty, known_absent=True
                )
                order = await self._wait(symbol, p.client_order_id, order, 5.0)
            await self._protect(market, p.price_stop_loss, derive_id(p.client_order_id, "sl"))
        return self._fill_of(order) or True

    async def on_partial_profit_commit(self, p: Any) -> ExchangeFill | bool:
        return await self._partial(p)

    async def on_partial_loss_commit(self, p: Any) -> ExchangeFill | bool:
        return await self._partial(p)

    async def _move(self, p: Any, stop: float | None) -> bool:
        _client, market = await self._ready(p.symbol)
        async with self._lock(market["symbol"]):
            if self._is_dust(market, await self._held(market)):
                raise OrderRejectedError(f"{market['symbol']}: no {market['base']} held to move the stop of")
            await self._protect(market, stop, p.client_order_id)
        return True

    async def on_trailing_stop_commit(self, p: Any) -> bool:
        return await self._move(p, p.new_stop_loss_price)

    async def on_breakeven_commit(self, p: Any) -> bool:
        return await self._move(p, p.new_stop_loss_price)

    async def on_average_buy_commit(self, p: Any) -> ExchangeFill | bool:
        client, market = await self._ready(p.symbol)
        symbol = market["symbol"]
        price = _dec(client.price_to_precision(symbol, p.current_price))
        qty = self._truncate(client, market, _dec(p.cost) / price)
        self._check_size(market, qty, price, "average buy")
        async with self._lock(symbol):
            stops = await self._our_open(symbol, "sell")
            order = await self._enter(market, qty, price, p.client_order_id)
            if stops:  # re-protect the larger holding at the same stop
                stop = stops[0].get("triggerPrice") or stops[0].get("stopPrice")
                await self._protect(market, stop, derive_id(p.client_order_id, "sl"))
        return self._fill_of(order) or True

    async def on_active_check(self, p: Any) -> bool:
        """The holding is still there; ``OrderDeletedError`` carrying the exchange's sells when it is gone."""
        client, market = await self._ready(p.symbol)
        symbol = market["symbol"]
        async with self._lock(symbol):
            if not self._is_dust(market, await self._held(market)):
                return True
            for order in await self._our_open(symbol):  # a stop left behind must not sell the next entry
                await self._cancel(symbol, _cid(order))
            fill = await self._exit_fill(client, market, p)
        raise OrderDeletedError(
            f"{symbol}: the {market['base']} holding is gone on {self.exchange_id} (stop filled, or sold outside "
            "the bot)",
            fill=fill,
        )

    async def _exit_fill(self, client: Any, market: Mapping[str, Any], p: Any) -> ExchangeFill | None:
        """The sells after the last buy: their average price, last time and why (stop or take-profit)."""
        from btkit_ccxt.fills import exit_fill

        if not client.has.get("fetchMyTrades"):
            return None
        trades = await self._read(
            f"reading trades of {market['symbol']}", lambda: client.fetch_my_trades(market["symbol"])
        )
        return exit_fill(
            trades, "long", getattr(p, "price_stop_loss", None), getattr(p, "price_take_profit", None)
        )


def make_spot_broker(exchange_id: str) -> Callable[..., CcxtSpotBroker]:
    """The ``BrokerSpec`` factory of ``ccxt:<exchange_id>``."""

    def factory(
        *, expected_positions: Mapping[str, str | None] | None = None, **options: Any
    ) -> CcxtSpotBroker:
        options.pop("name", None)
        if expected_positions is not None:
            options["expected_positions"] = dict(expected_positions)
        return CcxtSpotBroker(exchange_id, **options)

    return factory
