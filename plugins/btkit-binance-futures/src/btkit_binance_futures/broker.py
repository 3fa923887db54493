"""The Binance USD-M futures broker (60-exchanges.md §2, 40-broker-risk.md).

Design: the broker keeps no state of its own that matters after a crash. Every order it sends carries a
deterministic client id derived from the engine's ``client_order_id`` (:func:`btkit_binance_futures.ids.
derive_id`), and every decision is taken after reading the exchange back by those ids, so a restarted
process, a retried call or a lost response always finds what was sent before instead of sending it again.

Entry (``on_signal_open_commit``): a limit order (or market, by config) with ``newClientOrderId`` = the
payload's client id, polled until filled; on timeout it is cancelled, any partial fill is closed at market
(reduce-only) and ``OrderTransientError`` is raised (the engine retries; the retry uses a fresh "round" id
``derive_id(cid, "r<k>")`` because the old one is dead). After a fill the position is protected at once by
reduce-only STOP_MARKET and TAKE_PROFIT_MARKET conditional orders sized to the filled quantity; if that
fails the position is closed at market and the error is raised. A resting entry (``type="schedule"``)
is a LIMIT order left on the book; the later open adopts it, ``on_schedule_check`` protects any fill at
once, ``on_signal_cancel_commit`` cancels it and closes any fill.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any, TypeVar

import attrs

from btkit.broker_payloads import ExchangeFill, client_order_id
from btkit.errors import ConfigError, OrderDeletedError, OrderRejectedError, OrderTransientError
from btkit_binance_futures.config import KEY_ENV, SECRET_ENV, BinanceFuturesConfig
from btkit_binance_futures.errors import Outcome, classify
from btkit_binance_futures.ids import derive_id, is_ours
from btkit_binance_futures.shared import AccountReads
from btkit_ccxt.fills import exit_fill, order_fill

T = TypeVar("T")
log = logging.getLogger("btkit.binance_futures")

EXCHANGE_ID = "binanceusdm"
MAX_ROUNDS = 12
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
ALGO_LIVE = frozenset({"NEW", "TRIGGERING"})
ALGO_DONE = frozenset({"TRIGGERED", "FINISHED"})
STOP, TAKE = "STOP_MARKET", "TAKE_PROFIT_MARKET"


@attrs.frozen
class ExchangePosition:
    """One non-zero position on the exchange."""

    symbol: str
    position: str  # "long" | "short"
    quantity: Decimal
    position_side: str  # "BOTH" | "LONG" | "SHORT"


@attrs.frozen
class ReconcileReport:
    """What :meth:`BinanceFuturesBroker.reconcile` found."""

    positions: tuple[ExchangePosition, ...]
    unknown: tuple[ExchangePosition, ...]
    missing: tuple[str, ...]
    cancelled_orders: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.unknown


def _dec(value: Any) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _info(order: Mapping[str, Any]) -> Mapping[str, Any]:
    info = order.get("info")
    return info if isinstance(info, Mapping) else {}


def _status(order: Mapping[str, Any]) -> str:
    info = _info(order)
    return str(info.get("status") or info.get("algoStatus") or "").upper()


def _filled(order: Mapping[str, Any]) -> Decimal:
    info = _info(order)
    return _dec(info.get("executedQty", order.get("filled")))


class BinanceFuturesBroker:
    """Broker for Binance USD-M futures through ccxt ``binanceusdm``.

    ``BinanceFuturesBroker(**options)`` (or ``config=BinanceFuturesConfig(...)``); options are the fields
    of :class:`BinanceFuturesConfig`. Keys come from ``BINANCE_API_KEY`` / ``BINANCE_API_SECRET`` only.

    Engine-facing methods (all async): ``wait_for_init``, ``reconcile``, ``on_signal_open_commit``,
    ``on_signal_close_commit``, ``on_signal_cancel_commit``, ``on_partial_profit_commit``,
    ``on_partial_loss_commit``, ``on_trailing_stop_commit``, ``on_trailing_take_commit``,
    ``on_breakeven_commit``, ``on_average_buy_commit``, ``on_active_check``, ``on_schedule_check``,
    ``close``. Verdicts follow 40-broker-risk.md §2.
    """

    def __init__(self, config: BinanceFuturesConfig | None = None, **options: Any) -> None:
        from btkit_ccxt import SecretMasker, credentials_from_env

        if config is not None and options:
            raise ConfigError("binance-futures: pass either config= or options, not both")
        self.config = config if config is not None else BinanceFuturesConfig.from_options(options)
        creds = credentials_from_env(KEY_ENV, SECRET_ENV)
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
        self._expected: dict[str, str | None] | None = (
            dict(self.config.expected_positions) if self.config.expected_positions is not None else None
        )
        self._refusal: str | None = None
        self._initialized = False
        self._setup_done: set[tuple[str, int | None, str | None]] = set()
        self._multiplier: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._init_lock: asyncio.Lock | None = None
        self._seen: dict[str, dict[str, Any]] = {}  # the last state read of each entry/exit order, by id
        self._fresh: set[str] = (
            set()
        )  # entry rounds this process placed itself (nothing can protect them yet)
        self._shared: AccountReads | None = None

    # ================================================================ client and helpers
    async def client(self) -> Any:
        """The ccxt ``binanceusdm`` client (created for the running loop, markets loaded)."""
        from btkit_ccxt import make_client

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = make_client(
                EXCHANGE_ID,
                api_base_url=self.config.api_base_url,
                credentials=self._credentials,
                timeout_ms=self.config.request_timeout_ms,
                options={"fetchOpenOrders": {"warnWithoutSymbol": False}, "defaultType": "swap"},
                config={"rateLimit": self.config.rate_limit_ms} if self.config.rate_limit_ms else None,
                rate_limiter=self.config.rate_limiter,
            )
            self._client_loop = loop
            self._shared = (
                AccountReads(self._client, self._read) if self.config.account_reads == "shared" else None
            )
        if not self._client.markets:
            await self._read("loading Binance USD-M markets", self._client.load_markets)
        return self._client

    async def close(self) -> None:
        """Close the HTTP session (call once when the run ends)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def __aenter__(self) -> BinanceFuturesBroker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _describe(self, exc: BaseException) -> str:
        from btkit_ccxt import describe_error

        return describe_error(exc, self._secrets)

    def _mask(self, text: str) -> str:
        from btkit_ccxt import mask_secrets

        return mask_secrets(text, self._secrets)

    def _lock(self, symbol: str) -> asyncio.Lock:
        lock = self._locks.get(symbol)
        if lock is None:
            lock = self._locks[symbol] = asyncio.Lock()
        return lock

    async def _delay(self, attempt: int) -> None:
        await asyncio.sleep(min(4.0, self.config.retry_delay_seconds * (2**attempt)))

    async def _read(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """A read (or idempotent setting) with bounded retries; ``OrderNotFound`` propagates."""
        last: BaseException | None = None
        for attempt in range(self.config.read_attempts):
            try:
                return await fn()
            except Exception as exc:
                outcome = classify(exc)
                if outcome is Outcome.NOT_FOUND:
                    raise
                if outcome is Outcome.REJECTED or outcome is Outcome.DUPLICATE:
                    raise OrderRejectedError(f"{what}: refused by Binance ({self._describe(exc)})") from exc
                last = exc
                log.info("%s: attempt %d failed (%s)", what, attempt + 1, self._describe(exc))
                if attempt + 1 < self.config.read_attempts:
                    await self._delay(attempt)
        raise OrderTransientError(
            f"{what} failed after {self.config.read_attempts} attempts ({self._describe(last)}); "  # type: ignore[arg-type]
            "the engine retries next tick"
        ) from last

    def _symbol(self, client: Any, symbol: str) -> str:
        if symbol in client.markets:
            return symbol
        by_id = client.markets_by_id.get(symbol) if client.markets_by_id else None
        if by_id:
            return str(by_id[0]["symbol"])
        raise OrderRejectedError(f"{symbol!r} is not a Binance USD-M futures market; use e.g. BTCUSDT")

    def _guard(self, client: Any, symbol: str) -> str:
        if self._refusal is not None:
            raise OrderRejectedError(self._refusal)
        unified = self._symbol(client, symbol)
        if unified in self._foreign(client):
            raise OrderRejectedError(
                f"{unified} is listed in foreign_symbols (positions there belong to someone else); the bot "
                "never trades it"
            )
        return unified

    def _foreign(self, client: Any) -> set[str]:
        out = set()
        for s in self.config.foreign_symbols:
            try:
                out.add(self._symbol(client, s))
            except OrderRejectedError:
                continue
        return out

    def _ps(self, position: str) -> str:
        if position not in ("long", "short"):
            raise OrderRejectedError(f"position must be 'long' or 'short', got {position!r}")
        if not self.config.hedge_mode:
            return "BOTH"
        return "LONG" if position == "long" else "SHORT"

    @staticmethod
    def _entry_side(position: str) -> str:
        return "buy" if position == "long" else "sell"

    @staticmethod
    def _exit_side(position: str) -> str:
        return "sell" if position == "long" else "buy"

    def _entry_params(self, position: str) -> dict[str, Any]:
        return {"positionSide": self._ps(position)} if self.config.hedge_mode else {}

    def _reduce_params(self, position: str) -> dict[str, Any]:
        # hedge mode: the position side makes an order reducing, and Binance refuses reduceOnly there
        return {"positionSide": self._ps(position)} if self.config.hedge_mode else {"reduceOnly": True}

    @staticmethod
    def _step(market: Mapping[str, Any]) -> Decimal:
        return _dec(market["precision"]["amount"])

    @staticmethod
    def _tick(market: Mapping[str, Any]) -> Decimal:
        return _dec(market["precision"]["price"])

    @staticmethod
    def _truncate(value: Any, step: Decimal) -> Decimal:
        if step <= 0:
            return _dec(value)
        return (_dec(value) / step).to_integral_value(ROUND_DOWN) * step

    def _quantity(self, market: Mapping[str, Any], cost: float, multiplier: float, price: Decimal) -> Decimal:
        symbol = market["symbol"]
        if price <= 0:
            raise OrderRejectedError(f"{symbol}: no usable price to size the order (got {price})")
        notional = _dec(cost) * _dec(multiplier)
        qty = self._truncate(notional / price, self._step(market))
        min_qty = _dec((market.get("limits") or {}).get("amount", {}).get("min"))
        min_notional = _dec((market.get("limits") or {}).get("cost", {}).get("min"))
        if qty <= 0 or qty < min_qty:
            raise OrderRejectedError(
                f"{symbol}: {notional} USDT at {price} is {qty} contracts, below the minimum quantity "
                f"{min_qty}; raise the cost or the leverage"
            )
        if min_notional and qty * price < min_notional:
            raise OrderRejectedError(
                f"{symbol}: order notional {qty * price:.4f} USDT (cost {cost} x {multiplier}) is below "
                f"Binance's minimum notional {min_notional} USDT; raise the cost or the leverage"
            )
        return qty

    # ================================================================ lookups
    def _touch(self, symbol: str) -> None:
        if self._shared is not None:
            self._shared.touched(symbol)

    async def _lookup_order(self, symbol: str, cid: str) -> dict[str, Any] | None:
        client = await self.client()
        self._touch(symbol)
        try:
            return await self._read(
                f"looking up order {cid} on {symbol}",
                lambda: client.fetch_order(None, symbol, {"origClientOrderId": cid}),
            )
        except OrderTransientError:
            raise
        except OrderRejectedError:
            raise
        except Exception as exc:
            if classify(exc) is Outcome.NOT_FOUND:
                return None
            raise

    async def _lookup_algo(self, symbol: str, cid: str) -> dict[str, Any] | None:
        client = await self.client()
        self._touch(symbol)
        try:
            return await self._read(
                f"looking up conditional order {cid} on {symbol}",
                lambda: client.fetch_order(None, symbol, {"clientAlgoId": cid, "trigger": True}),
            )
        except (OrderTransientError, OrderRejectedError):
            raise
        except Exception as exc:
            if classify(exc) is Outcome.NOT_FOUND:
                return None
            raise

    async def _positions(self, symbol: str | None = None) -> list[ExchangePosition]:
        client = await self.client()
        if symbol is not None and self._shared is not None:
            rows = [r for r in await self._shared.positions.get(symbol) if r.get("symbol") == symbol]
        else:
            rows = await self._read(
                f"reading positions{' of ' + symbol if symbol else ''}",
                lambda: client.fetch_positions([symbol] if symbol else None),
            )
        out = []
        for row in rows:
            info = _info(row)
            amount = _dec(info.get("positionAmt", 0))
            if amount == 0:
                continue
            ps = str(info.get("positionSide") or "BOTH").upper()
            if ps == "LONG":
                side = "long"
            elif ps == "SHORT":
                side = "short"
            else:
                side = "long" if amount > 0 else "short"
            out.append(ExchangePosition(str(row["symbol"]), side, abs(amount), ps))
        return out

    async def _position_qty(self, symbol: str, position: str) -> Decimal:
        ps = self._ps(position)
        return sum(
            (
                p.quantity
                for p in await self._positions(symbol)
                if p.position_side == ps and p.position == position
            ),
            Decimal(0),
        )

    async def _our_algos(self, symbol: str, position: str) -> list[dict[str, Any]]:
        client = await self.client()
        if self._shared is not None and self._shared.share_algos(len(self._locks)):
            rows = [r for r in await self._shared.algos.get(symbol) if r.get("symbol") == symbol]
        else:
            rows = await self._read(
                f"reading conditional orders of {symbol}",
                lambda: client.fetch_open_orders(symbol, None, None, {"trigger": True}),
            )
        ps, side = self._ps(position), self._exit_side(position).upper()
        return [
            r
            for r in rows
            if is_ours(_info(r).get("clientAlgoId"))
            and str(_info(r).get("positionSide", "BOTH")).upper() == ps
            and str(_info(r).get("side", "")).upper() == side
        ]

    # ================================================================ sending orders
    async def _submit(
        self,
        what: str,
        place: Callable[[], Awaitable[dict[str, Any]]],
        lookup: Callable[[], Awaitable[dict[str, Any] | None]],
        *,
        known_absent: bool = False,
    ) -> dict[str, Any]:
        """Send an order at most once per unknown outcome: look it up by client id first (unless the
        caller just did: ``known_absent``) and after every failure whose outcome is unknown; a definitive
        refusal raises ``OrderRejectedError``."""
        if not known_absent:
            found = await lookup()
            if found is not None:
                log.info("%s: already on the exchange, not sent again", what)
                return found
        last: BaseException | None = None
        for attempt in range(self.config.submit_attempts):
            try:
                return await place()
            except Exception as exc:
                outcome = classify(exc)
                if outcome is Outcome.REJECTED:
                    raise OrderRejectedError(f"{what}: rejected by Binance ({self._describe(exc)})") from exc
                if outcome is Outcome.DUPLICATE:
                    found = await lookup()
                    if found is not None:
                        log.info("%s: duplicate client id, the order exists: treated as placed", what)
                        return found
                    raise OrderTransientError(
                        f"{what}: Binance reports the client id as duplicated but the order cannot be found "
                        "yet; the engine retries next tick"
                    ) from exc
                last = exc
                log.warning("%s: send %d failed (%s)", what, attempt + 1, self._describe(exc))
                await self._delay(attempt)
                if outcome is not Outcome.RETRY:  # the order may exist: look before resending
                    found = await lookup()
                    if found is not None:
                        log.info("%s: found after an unknown outcome: treated as placed", what)
                        return found
        raise OrderTransientError(
            f"{what}: no confirmation after {self.config.submit_attempts} sends ({self._describe(last)}); "  # type: ignore[arg-type]
            "the engine retries next tick and the order is looked up by its client id before any resend"
        ) from last

    async def _send_order(
        self,
        symbol: str,
        cid: str,
        what: str,
        otype: str,
        side: str,
        qty: Decimal,
        price: Decimal | None,
        params: dict[str, Any],
        *,
        known_absent: bool = False,
    ) -> dict[str, Any]:
        client = await self.client()
        body = {**params, "newClientOrderId": cid}
        try:
            return await self._submit(
                f"{what} {cid} ({symbol} {side} {qty})",
                lambda: client.create_order(
                    symbol, otype, side, float(qty), float(price) if price else None, body
                ),
                lambda: self._lookup_order(symbol, cid),
                known_absent=known_absent,
            )
        finally:
            self._touch(symbol)

    async def _wait_done(
        self, symbol: str, cid: str, order: dict[str, Any], seconds: float = 5.0
    ) -> dict[str, Any]:
        """Poll a market order until it is no longer open (it normally is at once)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while _status(order) in OPEN_STATUSES and loop.time() < deadline:
            await asyncio.sleep(self.config.poll_interval_seconds)
            found = await self._lookup_order(symbol, cid)
            if found is not None:
                order = found
        return order

    async def _reduce(
        self, symbol: str, position: str, qty: Decimal, cid: str, what: str, *, known_absent: bool = False
    ) -> dict[str, Any] | None:
        """A reduce-only market order; None when there was nothing left to reduce. ``known_absent``: the
        caller has just looked ``cid`` up and not found it."""
        try:
            order = await self._send_order(
                symbol,
                cid,
                what,
                "market",
                self._exit_side(position),
                qty,
                None,
                self._reduce_params(position),
                known_absent=known_absent,
            )
        except OrderRejectedError as exc:
            if "-2022" in str(exc):  # ReduceOnly Order is rejected: the position is already gone
                log.info("%s: nothing left to reduce on %s", what, symbol)
                return None
            raise
        return await self._wait_done(symbol, cid, order)

    async def _place_algo(
        self,
        symbol: str,
        position: str,
        otype: str,
        qty: Decimal,
        trigger: Decimal,
        base_id: str,
        exact_id: str | None = None,
        *,
        known_absent: bool = False,
    ) -> dict[str, Any]:
        """A reduce-only conditional order; deterministic id from (base, type, qty, trigger), or
        ``exact_id`` (a command's own client order id) while that id is not spent. ``known_absent``: the
        first id cannot exist yet (the entry it protects was placed by this very call), no look-up."""
        client = await self.client()
        tag = "sl" if otype == STOP else "tp"
        for k in range(MAX_ROUNDS):
            if exact_id is not None:
                cid = exact_id if k == 0 else derive_id(exact_id, tag, k)
            else:
                cid = derive_id(base_id, tag, qty, trigger, k)
            found = None if known_absent and k == 0 else await self._lookup_algo(symbol, cid)
            if found is not None:
                info = _info(found)
                same = _dec(info.get("triggerPrice")) == trigger and _dec(info.get("quantity")) == qty
                if _status(found) in ALGO_DONE or (_status(found) in ALGO_LIVE and same):
                    return found
                continue  # cancelled, expired, or placed for another move: that id is spent
            params = {
                **self._reduce_params(position),
                "triggerPrice": float(trigger),
                "clientAlgoId": cid,
                "workingType": self.config.working_type,
            }
            try:
                return await self._submit(
                    f"{'stop-loss' if tag == 'sl' else 'take-profit'} {cid} ({symbol} {qty} @ {trigger})",
                    lambda params=params: client.create_order(  # type: ignore[misc]
                        symbol, otype, self._exit_side(position), float(qty), None, params
                    ),
                    lambda cid=cid: self._lookup_algo(symbol, cid),  # type: ignore[misc]
                    known_absent=True,
                )
            finally:
                self._touch(symbol)
        raise OrderRejectedError(f"{symbol}: too many spent ids for the {tag} order of {base_id}")

    async def _cancel_algo(self, symbol: str, cid: str) -> None:
        client = await self.client()
        self._touch(symbol)
        try:
            await self._read(
                f"cancelling conditional order {cid}",
                lambda: client.cancel_order(None, symbol, {"clientAlgoId": cid, "trigger": True}),
            )
        except (OrderTransientError, OrderRejectedError):
            raise
        except Exception as exc:
            if classify(exc) is not Outcome.NOT_FOUND:
                raise

    async def _cancel_protection(
        self, symbol: str, position: str, keep: frozenset[str] = frozenset()
    ) -> None:
        for order in await self._our_algos(symbol, position):
            cid = str(_info(order).get("clientAlgoId"))
            if cid not in keep:
                await self._cancel_algo(symbol, cid)

    # ================================================================ setup and reconciliation
    async def _ensure_position_mode(self) -> None:
        from ccxt.base.errors import OperationRejected

        client = await self.client()
        mode = await self._read("reading the position mode", client.fetch_position_mode)
        if bool(mode.get("hedged")) == self.config.hedge_mode:
            return
        try:
            await self._read(
                "setting the position mode", lambda: client.set_position_mode(self.config.hedge_mode)
            )
        except OrderRejectedError as exc:
            cause = exc.__cause__
            if isinstance(cause, OperationRejected) and "-4059" in str(cause):
                return
            wanted = "hedge" if self.config.hedge_mode else "one-way"
            raise OrderRejectedError(
                f"cannot switch the Binance account to {wanted} mode ({self._describe(cause or exc)}); close "
                f"open positions/orders first or set hedge_mode = {str(not self.config.hedge_mode).lower()}"
            ) from exc

    async def _setup_symbol(self, symbol: str, multiplier: float | None, isolated: bool | None) -> None:
        from ccxt.base.errors import MarginModeAlreadySet

        leverage = self.config.leverage
        if leverage is None and multiplier is not None:
            leverage = max(1, min(125, round(multiplier)))
        mode = self.config.margin_mode
        if mode is None and isolated is not None:
            mode = "isolated" if isolated else "cross"
        key = (symbol, leverage, mode)
        if key in self._setup_done:
            return
        client = await self.client()
        if mode is not None:
            try:
                await self._read(
                    f"setting {mode} margin on {symbol}", lambda: client.set_margin_mode(mode, symbol)
                )
            except OrderRejectedError as exc:
                if isinstance(exc.__cause__, MarginModeAlreadySet):
                    pass
                elif "-4048" in str(exc):  # a position exists: Binance keeps the current margin type
                    log.warning("%s: margin type left unchanged while a position is open", symbol)
                else:
                    raise
        if leverage is not None:
            await self._read(
                f"setting leverage {leverage}x on {symbol}", lambda: client.set_leverage(leverage, symbol)
            )
        self._setup_done.add(key)

    def set_expected_positions(self, expected: Mapping[str, str | None]) -> None:
        """Tell the broker, before :meth:`wait_for_init`, which positions the engine's persisted state holds:
        ``{symbol: "long" | "short"}`` for open positions, ``{symbol: None}`` for symbols with an
        unconfirmed action in flight (a pending open/close whose outcome is unknown)."""
        self._expected = dict(expected)

    async def wait_for_init(self) -> None:
        """Connect, load markets, apply position mode / leverage / margin mode, then :meth:`reconcile` with
        the expected positions (constructor ``expected_positions`` or :meth:`set_expected_positions`; none
        given means "the bot holds nothing"). Raises ``OrderRejectedError`` on an unknown exchange position."""
        await self.client()
        await self._ensure_position_mode()
        client = await self.client()
        for symbol in self.config.symbols:
            await self._setup_symbol(self._symbol(client, symbol), None, None)
        await self.reconcile(self._expected or {})
        self._initialized = True

    async def reconcile(self, expected: Mapping[str, str | None]) -> ReconcileReport:
        """Compare the exchange with the engine's view and clean up what the bot left behind.

        ``expected`` maps symbol → ``"long"`` / ``"short"`` (a position the engine holds) or ``None`` (an
        action whose outcome is unknown: any position there is accepted; the retried call resolves it by
        client id). Exchange positions on other symbols (outside ``foreign_symbols``) are unknown to the bot:
        trading is refused (``OrderRejectedError`` now and from every later call). Bot orders (``btk`` ids)
        are cleaned: open entry orders on symbols the engine does not mention, and conditional orders
        without a position. Returns a :class:`ReconcileReport`."""
        client = await self.client()
        want: dict[str, str | None] = {}
        for symbol, side in expected.items():
            want[self._symbol(client, symbol)] = side
        foreign = self._foreign(client)
        positions = await self._positions()
        unknown = []
        for pos in positions:
            if pos.symbol in foreign:
                continue
            if pos.symbol not in want:
                unknown.append(pos)
                continue
            side = want[pos.symbol]
            if side is not None and side != pos.position:
                unknown.append(pos)
        missing = tuple(
            sorted(
                s
                for s, side in want.items()
                if side is not None and not any(p.symbol == s and p.position == side for p in positions)
            )
        )
        for symbol in missing:
            log.warning("%s: the engine holds a %s position that is not on Binance", symbol, want[symbol])
        cancelled: list[str] = []
        open_orders = await self._read("reading open orders", lambda: client.fetch_open_orders())
        for order in open_orders:
            cid = str(_info(order).get("clientOrderId") or "")
            symbol = str(order.get("symbol"))
            if is_ours(cid) and symbol not in want and symbol not in foreign:
                await self._cancel_regular(symbol, cid)
                cancelled.append(cid)
        algos = await self._read(
            "reading open conditional orders",
            lambda: client.fetch_open_orders(None, None, None, {"trigger": True}),
        )
        held = {(p.symbol, p.position_side) for p in positions}
        for order in algos:
            info = _info(order)
            cid = str(info.get("clientAlgoId") or "")
            key = (str(order.get("symbol")), str(info.get("positionSide", "BOTH")).upper())
            if is_ours(cid) and key not in held and key[0] not in foreign:
                await self._cancel_algo(key[0], cid)
                cancelled.append(cid)
        report = ReconcileReport(tuple(positions), tuple(unknown), missing, tuple(cancelled))
        if unknown:
            listing = ", ".join(f"{p.symbol} {p.position} {p.quantity}" for p in unknown)
            self._refusal = (
                f"Binance holds position(s) the bot does not know: {listing}; refusing to trade. Close them "
                "on Binance, or list their symbols in foreign_symbols, then restart"
            )
            raise OrderRejectedError(self._refusal)
        self._refusal = None
        return report

    async def _cancel_regular(self, symbol: str, cid: str) -> None:
        client = await self.client()
        self._touch(symbol)
        try:
            await self._read(
                f"cancelling order {cid}",
                lambda: client.cancel_order(None, symbol, {"origClientOrderId": cid}),
            )
        except (OrderTransientError, OrderRejectedError):
            raise
        except Exception as exc:
            if classify(exc) is not Outcome.NOT_FOUND:
                raise

    async def _ready(self, symbol: str) -> tuple[Any, str]:
        if self._refusal is not None:  # decided at start-up; fixed only by the operator and a restart
            raise OrderRejectedError(self._refusal)
        client = await self.client()
        if not self._initialized:
            if self._init_lock is None:
                self._init_lock = asyncio.Lock()
            async with self._init_lock:
                if not self._initialized:
                    await self.wait_for_init()
        return client, self._guard(client, symbol)

    # ================================================================ entries
    async def _round(self, symbol: str, position: str, eid: str) -> tuple[str, dict[str, Any] | None]:
        """The state of one entry order: ``absent``, ``working``, ``filled`` or ``spent`` (dead, or exited
        — its exit order ``derive_id(eid, "x")`` exists). A cancelled partial fill that was never closed
        (a crash in between) is closed here and the round counts as spent."""
        order = await self._lookup_order(symbol, eid)
        if order is None:
            return "absent", None
        status, executed = _status(order), _filled(order)
        xid = derive_id(eid, "x")
        if executed > 0 and await self._lookup_order(symbol, xid) is not None:
            return "spent", order
        if status in OPEN_STATUSES:
            return "working", order
        if status == "FILLED" or (status == "EXPIRED" and executed > 0):
            return "filled", order
        if executed > 0:
            await self._reduce(symbol, position, executed, xid, "closing a stale partial entry")
        return "spent", order

    async def _enter(
        self,
        symbol: str,
        position: str,
        qty: Decimal,
        price: Decimal,
        base_cid: str,
        adopt: str | None = None,
    ) -> tuple[str, Decimal]:
        """Get ``qty`` filled (limit at ``price`` or market); returns (round id, filled quantity).

        ``adopt``: the id of a resting entry placed earlier for this signal; while it is working or
        filled it is the entry, otherwise rounds of ``base_cid`` are used."""
        if adopt is not None:
            state, order = await self._round(symbol, position, adopt)
            if state == "working":
                assert order is not None
                return await self._await_fill(symbol, position, adopt, derive_id(adopt, "x"), order)
            if state == "filled":
                assert order is not None
                self._seen[adopt] = order
                return adopt, _filled(order)
        for k in range(MAX_ROUNDS):
            eid = base_cid if k == 0 else derive_id(base_cid, f"r{k}")
            state, order = await self._round(symbol, position, eid)
            if state == "absent":
                otype = self.config.entry_order_type
                order = await self._send_order(
                    symbol,
                    eid,
                    "entry",
                    otype,
                    self._entry_side(position),
                    qty,
                    price if otype == "limit" else None,
                    self._entry_params(position),
                    known_absent=True,
                )
                self._fresh.add(eid)
                return await self._await_fill(symbol, position, eid, derive_id(eid, "x"), order)
            assert order is not None
            if state == "working":
                log.info("%s: entry %s is already working, resuming", symbol, eid)
                return await self._await_fill(symbol, position, eid, derive_id(eid, "x"), order)
            if state == "filled":
                self._seen[eid] = order
                return eid, _filled(order)
        raise OrderRejectedError(f"{symbol}: {MAX_ROUNDS} entry attempts of {base_cid} used up; not retried")

    async def _await_fill(
        self, symbol: str, position: str, eid: str, xid: str, order: dict[str, Any]
    ) -> tuple[str, Decimal]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.entry_timeout_seconds
        while True:
            self._seen[eid] = order
            status, executed = _status(order), _filled(order)
            if status == "FILLED":
                return eid, executed
            if status not in OPEN_STATUSES:
                if executed > 0 and status == "EXPIRED":  # market/IOC ended by the exchange: keep the fill
                    return eid, executed
                if executed > 0:
                    await self._reduce(symbol, position, executed, xid, "closing a partial entry")
                raise OrderTransientError(
                    f"{symbol}: entry {eid} ended {status} on Binance with {executed} filled; any fill was "
                    "closed; the engine retries next tick"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.sleep(min(self.config.poll_interval_seconds, remaining))
            try:
                found = await self._lookup_order(symbol, eid)
            except OrderTransientError as exc:
                log.info("%s: polling %s failed (%s); still waiting", symbol, eid, exc)
                continue
            if found is not None:
                order = found
        # timed out: cancel, read back, flatten whatever filled
        await self._cancel_regular(symbol, eid)
        final = await self._lookup_order(symbol, eid)
        if final is not None:
            self._seen[eid] = final
        if final is None:
            raise OrderTransientError(f"{symbol}: entry {eid} vanished after cancelling; retried next tick")
        status, executed = _status(final), _filled(final)
        if status == "FILLED":
            return eid, executed
        if status in OPEN_STATUSES:
            raise OrderTransientError(f"{symbol}: entry {eid} could not be cancelled yet; retried next tick")
        if executed > 0:
            await self._reduce(symbol, position, executed, xid, "closing a partial entry after the timeout")
        raise OrderTransientError(
            f"{symbol}: entry {eid} not filled within {self.config.entry_timeout_seconds:g}s; cancelled"
            + (f" and the partial fill of {executed} closed" if executed > 0 else "")
            + "; the engine retries next tick"
        )

    async def _protect(
        self,
        symbol: str,
        position: str,
        qty: Decimal,
        stop: Decimal | None,
        take: Decimal | None,
        base_id: str,
        exit_id: str,
    ) -> None:
        """Place reduce-only SL/TP for ``qty`` (both at once: Binance's batchOrders does not take
        conditional orders since they moved to the algo service); on failure close the position at market
        and raise."""
        placed: list[str] = []
        fresh = base_id in self._fresh  # this call placed the entry: its SL/TP ids cannot exist yet
        self._fresh.discard(base_id)
        wanted = [(otype, t) for otype, t in ((STOP, stop), (TAKE, take)) if t is not None and t > 0]
        results = await asyncio.gather(
            *(
                self._place_algo(symbol, position, otype, qty, trigger, base_id, known_absent=fresh)
                for otype, trigger in wanted
            ),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        for r in results:
            if not isinstance(r, BaseException):
                placed.append(str(_info(r).get("clientAlgoId") or r.get("clientOrderId")))
        for r in failures:
            if not isinstance(r, (OrderRejectedError, OrderTransientError)):
                raise r
        try:
            if failures:
                rejected = [r for r in failures if isinstance(r, OrderRejectedError)]
                raise (rejected or failures)[0]
        except (OrderRejectedError, OrderTransientError) as exc:
            log.error("%s: protecting the entry failed (%s); closing the position", symbol, exc)
            try:
                for cid in placed:
                    await self._cancel_algo(symbol, cid)
                await self._reduce(symbol, position, qty, exit_id, "closing an unprotected entry")
            except Exception as exit_exc:
                raise OrderTransientError(
                    f"{symbol}: protective orders failed ({exc}) AND closing the unprotected position failed "
                    f"({self._mask(str(exit_exc))}); the position may be open without a stop — check Binance now"
                ) from exc
            verdict = OrderRejectedError if isinstance(exc, OrderRejectedError) else OrderTransientError
            raise verdict(
                f"{symbol}: protective orders could not be placed ({exc}); the entry was closed at market"
            ) from exc

    def _price(self, market: Mapping[str, Any], value: float | None) -> Decimal | None:
        if value is None or value <= 0:
            return None
        return self._truncate(value, self._tick(market))

    # ================================================================ broker methods
    async def on_signal_open_commit(self, p: Any) -> ExchangeFill | bool:
        """Open: a limit (or market) entry, polled until filled, then reduce-only SL/TP. A resting entry
        (``p.type == "schedule"``) is a LIMIT order left on the book at ``price_open``; when the engine
        activates the signal, the open adopts that order (waiting for its fill like any entry)."""
        client, symbol = await self._ready(p.symbol)
        market = client.market(symbol)
        multiplier = float(getattr(p, "multiplier", 1.0) or 1.0)
        async with self._lock(symbol):
            await self._setup_symbol(symbol, multiplier, getattr(p, "isolated", None))
            self._multiplier[symbol] = multiplier
            price = self._price(market, p.price_open)
            if price is None:
                raise OrderRejectedError(f"{symbol}: price_open {p.price_open!r} is not a usable price")
            qty = self._quantity(market, p.cost, multiplier, price)
            if getattr(p, "type", "open") == "schedule":
                await self._rest(symbol, market, p, qty, price)
                return True
            resting = client_order_id(p.signal_id, "schedule")
            eid, filled = await self._enter(symbol, p.position, qty, price, p.client_order_id, adopt=resting)
            # an entry this call placed and saw filled moments ago cannot have lost its position since
            # (short of a liquidation); one found from before (a retry, a restart) is checked
            if eid not in self._fresh and await self._position_qty(symbol, p.position) == 0:
                log.warning("%s: entry %s filled but the position is already gone", symbol, eid)
                return True  # the open happened; on_active_check reports the position as gone
            await self._protect(
                symbol,
                p.position,
                filled,
                self._price(market, p.price_stop_loss),
                self._price(market, p.price_take_profit),
                eid,
                derive_id(eid, "x"),
            )
        return order_fill(self._seen.pop(eid, None)) or True

    async def _rest(
        self, symbol: str, market: Mapping[str, Any], p: Any, qty: Decimal, price: Decimal
    ) -> None:
        """Place the resting LIMIT entry (idempotent); protect at once whatever already filled."""
        cid = p.client_order_id
        order = await self._lookup_order(symbol, cid)
        if order is None:
            order = await self._send_order(
                symbol,
                cid,
                "resting entry",
                "limit",
                self._entry_side(p.position),
                qty,
                price,
                self._entry_params(p.position),
                known_absent=True,
            )
        await self._protect_resting(symbol, market, p, order)

    async def _protect_resting(
        self, symbol: str, market: Mapping[str, Any], p: Any, order: dict[str, Any]
    ) -> None:
        filled = _filled(order)
        if filled > 0:
            await self._reprotect(
                symbol,
                p.position,
                filled,
                self._price(market, p.price_stop_loss),
                self._price(market, p.price_take_profit),
                p.client_order_id,
            )

    async def on_schedule_check(self, p: Any) -> bool:
        """The resting entry is still on Binance (open, or filled and then protected at once);
        ``OrderDeletedError`` when it was cancelled or expired (any fill is closed first)."""
        client, symbol = await self._ready(p.symbol)
        async with self._lock(symbol):
            state, order = await self._round(symbol, p.position, p.client_order_id)
            if state in ("working", "filled"):
                assert order is not None
                await self._protect_resting(symbol, client.market(symbol), p, order)
                return True
            if order is not None and _filled(order) > 0:  # spent after a fill: nothing may stay open
                await self._cancel_protection(symbol, p.position)
            raise OrderDeletedError(
                f"{symbol}: the resting entry {p.client_order_id} is no longer on Binance "
                f"({_status(order) if order is not None else 'not found'})"
            )

    async def on_signal_cancel_commit(self, p: Any) -> bool:
        """Cancel the resting entry; a fill it already had is closed at market with its protection."""
        _client, symbol = await self._ready(p.symbol)
        resting = client_order_id(p.signal_id, "schedule")
        async with self._lock(symbol):
            order = await self._lookup_order(symbol, resting)
            if order is None:
                return True
            if _status(order) in OPEN_STATUSES:
                await self._cancel_regular(symbol, resting)
                order = await self._lookup_order(symbol, resting) or order
            if _status(order) in OPEN_STATUSES:
                raise OrderTransientError(f"{symbol}: the resting entry {resting} could not be cancelled yet")
            filled = _filled(order)
            xid = derive_id(resting, "x")
            if filled > 0 and await self._lookup_order(symbol, xid) is None:
                await self._reduce(symbol, p.position, filled, xid, "closing a cancelled entry's fill")
            if filled > 0:
                await self._cancel_protection(symbol, p.position)
        return True

    async def on_signal_close_commit(self, p: Any) -> ExchangeFill | bool:
        """Close the whole position with reduce-only market orders, then cancel its protective orders.
        A position already closed on Binance (e.g. by its stop) confirms at once."""
        _client, symbol = await self._ready(p.symbol)
        async with self._lock(symbol):
            last = await self._close_all(symbol, p.position, p.client_order_id)
        return order_fill(last) or True

    async def _close_all(self, symbol: str, position: str, base_cid: str) -> dict[str, Any] | None:
        """Close the position; returns the last close order that filled (for its fill price)."""
        last: dict[str, Any] | None = None
        for k in range(MAX_ROUNDS):
            cid = base_cid if k == 0 else derive_id(base_cid, f"r{k}")
            existing = await self._lookup_order(symbol, cid)
            if existing is not None:
                if _status(existing) in OPEN_STATUSES:
                    existing = await self._wait_done(symbol, cid, existing)
                last = existing if _filled(existing) > 0 else last
                continue  # this id was used; the next round re-reads the position
            qty = await self._position_qty(symbol, position)
            if qty == 0:
                break
            done = await self._reduce(symbol, position, qty, cid, "close", known_absent=True)
            last = done if done is not None and _filled(done) > 0 else last
            if done is not None and _filled(done) >= qty:
                break  # the whole position went with this order (reduce-only, under the symbol's lock)
        else:
            raise OrderTransientError(f"{symbol}: the position is still open after {MAX_ROUNDS} close orders")
        await self._cancel_protection(symbol, position)
        for order in await self._read(
            f"reading open orders of {symbol}", lambda: self._client.fetch_open_orders(symbol)
        ):
            cid = str(_info(order).get("clientOrderId") or "")
            if is_ours(cid) and str(order.get("side")) == self._entry_side(position):
                await self._cancel_regular(symbol, cid)
        return last

    async def _partial(self, p: Any) -> bool:
        client, symbol = await self._ready(p.symbol)
        market = client.market(symbol)
        async with self._lock(symbol):
            cid = p.client_order_id
            existing = await self._lookup_order(symbol, cid)
            remaining = await self._position_qty(symbol, p.position)
            if existing is None:
                if remaining == 0:
                    raise OrderRejectedError(
                        f"{symbol}: no {p.position} position on Binance to close {p.percent_to_close}% of"
                    )
                qty = self._truncate(remaining * _dec(p.percent_to_close) / 100, self._step(market))
                qty = min(qty, remaining)
                min_qty = _dec(market["limits"]["amount"]["min"])
                if qty <= 0 or qty < min_qty:
                    raise OrderRejectedError(
                        f"{symbol}: {p.percent_to_close}% of {remaining} is {qty}, below the minimum quantity "
                        f"{min_qty}; nothing closed"
                    )
                await self._reduce(symbol, p.position, qty, cid, "partial close")
                remaining = await self._position_qty(symbol, p.position)
            try:
                await self._reprotect(
                    symbol,
                    p.position,
                    remaining,
                    self._price(market, p.price_stop_loss),
                    self._price(market, p.price_take_profit),
                    cid,
                )
            except (OrderRejectedError, OrderTransientError) as exc:
                # the old (larger) reduce-only orders still cover the smaller position
                log.warning("%s: resizing protection after the partial close failed (%s)", symbol, exc)
        return True

    async def on_partial_profit_commit(self, p: Any) -> bool:
        """Close ``percent_to_close`` % of the remaining position (reduce-only market), resize SL/TP."""
        return await self._partial(p)

    async def on_partial_loss_commit(self, p: Any) -> bool:
        """Close ``percent_to_close`` % of the remaining position (reduce-only market), resize SL/TP."""
        return await self._partial(p)

    async def _reprotect(
        self,
        symbol: str,
        position: str,
        qty: Decimal,
        stop: Decimal | None,
        take: Decimal | None,
        base_id: str,
        exact: Mapping[str, str] | None = None,
    ) -> None:
        """Place SL/TP for ``qty`` (missing prices keep the current ones), then cancel the old orders.
        ``exact`` names the client id a new order of that type carries (a command's own id)."""
        old = await self._our_algos(symbol, position)
        if qty <= 0:
            for order in old:
                await self._cancel_algo(symbol, str(_info(order).get("clientAlgoId")))
            return
        current: dict[str, Decimal] = {}
        for order in old:
            current.setdefault(
                str(_info(order).get("orderType", "")).upper(), _dec(_info(order).get("triggerPrice"))
            )
        keep = set()
        for otype, wanted in ((STOP, stop), (TAKE, take)):
            trigger = wanted if wanted is not None else current.get(otype)
            if trigger is None or trigger <= 0:
                continue
            same = [
                o
                for o in old
                if str(_info(o).get("orderType", "")).upper() == otype
                and _dec(_info(o).get("triggerPrice")) == trigger
                and _dec(_info(o).get("quantity")) == qty
            ]
            if same:  # already right: leave it alone
                keep.add(str(_info(same[0]).get("clientAlgoId")))
                continue
            exact_id = (exact or {}).get(otype)
            placed = await self._place_algo(symbol, position, otype, qty, trigger, base_id, exact_id)
            keep.add(str(_info(placed).get("clientAlgoId")))
        for order in old:
            cid = str(_info(order).get("clientAlgoId"))
            if cid not in keep:
                try:
                    await self._cancel_algo(symbol, cid)
                except (OrderRejectedError, OrderTransientError) as exc:
                    log.warning(
                        "%s: an outdated protective order %s could not be cancelled (%s)", symbol, cid, exc
                    )

    async def _move(self, p: Any, stop: float | None, take: float | None) -> bool:
        client, symbol = await self._ready(p.symbol)
        market = client.market(symbol)
        async with self._lock(symbol):
            qty = await self._position_qty(symbol, p.position)
            if qty == 0:
                raise OrderRejectedError(
                    f"{symbol}: no {p.position} position on Binance to move protection of"
                )
            await self._reprotect(
                symbol,
                p.position,
                qty,
                self._price(market, stop),
                self._price(market, take),
                p.client_order_id,
                exact={STOP: p.client_order_id} if stop is not None else {TAKE: p.client_order_id},
            )
        return True

    async def on_trailing_stop_commit(self, p: Any) -> bool:
        """Move the stop-loss to ``new_stop_loss_price`` (new order first, then the old one is cancelled)."""
        return await self._move(p, p.new_stop_loss_price, None)

    async def on_trailing_take_commit(self, p: Any) -> bool:
        """Move the take-profit to ``new_take_profit_price``."""
        return await self._move(p, None, p.new_take_profit_price)

    async def on_breakeven_commit(self, p: Any) -> bool:
        """Move the stop-loss to the entry (``new_stop_loss_price``)."""
        return await self._move(p, p.new_stop_loss_price, None)

    async def on_average_buy_commit(self, p: Any) -> bool:
        """A DCA entry of ``cost`` at ``current_price`` (same entry rules), then SL/TP resized to the total."""
        client, symbol = await self._ready(p.symbol)
        market = client.market(symbol)
        position = p.position
        multiplier = self._multiplier.get(symbol) or float(self.config.leverage or 1)
        async with self._lock(symbol):
            price = self._price(market, p.current_price)
            if price is None:
                raise OrderRejectedError(f"{symbol}: current_price {p.current_price!r} is not a usable price")
            qty = self._quantity(market, p.cost, multiplier, price)
            eid, _filled_qty = await self._enter(symbol, position, qty, price, p.client_order_id)
            self._fresh.discard(eid)
            total = await self._position_qty(symbol, position)
            await self._reprotect(symbol, position, total, None, None, eid)
        return True

    async def _exit_fill(self, symbol: str, p: Any) -> ExchangeFill | None:
        """How Binance closed the position: the exits after the last entry in the account's trades (their
        average price, time, and stop-loss / take-profit by the payload's levels). None when unreadable."""
        client = await self.client()
        try:
            trades = await self._read(
                f"reading trades of {symbol}", lambda: client.fetch_my_trades(symbol, None, 100)
            )
        except (OrderTransientError, OrderRejectedError) as exc:
            log.warning(
                "%s: the closing fill could not be read (%s); booked at the candle price", symbol, exc
            )
            return None
        ps = self._ps(p.position)
        mine = [t for t in trades if str(_info(t).get("positionSide", "BOTH")).upper() == ps]
        return exit_fill(
            mine, p.position, getattr(p, "price_stop_loss", None), getattr(p, "price_take_profit", None)
        )

    async def on_active_check(self, p: Any) -> bool:
        """Confirm the position still exists (``OrderDeletedError`` when it is gone, after cancelling the
        bot's protective orders still on the book); with ``repair_protection`` re-place a missing SL/TP
        from the payload's prices."""
        client, symbol = await self._ready(p.symbol)
        async with self._lock(symbol):
            qty = await self._position_qty(symbol, p.position)
            if qty == 0:
                # when the take-profit filled, the stop-loss is still there (and vice versa): a reduce-only
                # order left behind would cut into the next position on this symbol. A failure to cancel
                # it is transient: the check is retried next tick.
                await self._cancel_protection(symbol, p.position)
                raise OrderDeletedError(
                    f"{symbol}: the {p.position} position is gone on Binance (stop/take-profit hit, liquidated "
                    "or closed by hand)",
                    fill=await self._exit_fill(symbol, p),
                )
            if self.config.repair_protection:
                market = client.market(symbol)
                have = {
                    str(_info(o).get("orderType", "")).upper()
                    for o in await self._our_algos(symbol, p.position)
                }
                for otype, price in (
                    (STOP, getattr(p, "price_stop_loss", None)),
                    (TAKE, getattr(p, "price_take_profit", None)),
                ):
                    trigger = self._price(market, price)
                    if otype not in have and trigger is not None:
                        log.warning("%s: %s order missing; placing it again", symbol, otype)
                        await self._place_algo(symbol, p.position, otype, qty, trigger, p.client_order_id)
        return True


def make_broker(
    *, expected_positions: Mapping[str, str | None] | None = None, **options: Any
) -> BinanceFuturesBroker:
    """``BrokerSpec`` factory: ``make_broker(**options)`` with the keys of the ``[broker]`` table (its
    ``name`` key, which selected this broker, is ignored). The live engine passes ``expected_positions``
    (what its persisted state holds per symbol) so start-up reconciliation checks the exchange against it."""
    options.pop("name", None)
    if expected_positions is not None:
        options["expected_positions"] = dict(expected_positions)
    return BinanceFuturesBroker(**options)
