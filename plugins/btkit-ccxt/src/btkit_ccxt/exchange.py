"""A btkit exchange over one ccxt exchange id: candles with pagination and bounded retries, formatting.

One :class:`CcxtExchange` serves every symbol of one exchange. The ccxt client is created lazily, one per
running event loop (an aiohttp session belongs to the loop that opened it); markets are loaded once and
shared between those clients.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from btkit.components import ExchangeSpec
from btkit.config import get_config, load_settings
from btkit.errors import BtkitError, CandleDataError, ConfigError
from btkit_ccxt.ids import exchange_ids
from btkit_ccxt.retry import RetryPolicy

# ccxt itself (and the modules that import it) load lazily: importing ccxt takes seconds, and this
# module is imported whenever btkit collects plugins.

log = logging.getLogger("btkit.ccxt")

CandleRow = tuple[int, float, float, float, float, float]
MAX_PER_REQUEST = 1000
SETTINGS_KEYS = frozenset(
    {"api_base_url", "timeout_ms", "options", "retries", "retry_delay_seconds", "websocket", "ws_base_url"}
)


def to_ms(when: datetime | int | float) -> int:
    """Milliseconds UTC of a datetime (naive datetimes are taken as UTC) or a ms number."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return round(when.timestamp() * 1000)
    return int(when)


def validate_rows(rows: Any, *, where: str, after_ms: int | None = None) -> list[CandleRow]:
    """Check raw ccxt OHLCV rows and return them as ``(ts, o, h, l, c, v)`` tuples, or raise
    :class:`CandleDataError` naming the first bad row."""
    if not isinstance(rows, list):
        raise CandleDataError(
            f"{where}: expected a list of candles, got {type(rows).__name__}; the exchange "
            "answered something else — retry later or report it"
        )
    out: list[CandleRow] = []
    last = after_ms
    for i, row in enumerate(rows):
        problem = None
        if not isinstance(row, (list, tuple)) or len(row) < 6:
            problem = "not a [timestamp, open, high, low, close, volume] row"
        else:
            ts, o, h, low, c, v = row[:6]
            values = (o, h, low, c, v)
            if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not float(ts).is_integer():
                problem = "timestamp is not whole milliseconds"
            elif any(
                isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) for x in values
            ):
                problem = "a price or the volume is missing or not a finite number"
            elif min(o, h, low, c) <= 0 or v < 0:
                problem = "a price is <= 0 or the volume is negative"
            elif h < max(o, c, low) or low > min(o, c):
                problem = "high/low do not enclose open/close"
            elif last is not None and int(ts) <= last:
                problem = "timestamps are not strictly increasing"
        if problem is not None:
            raise CandleDataError(
                f"{where}: malformed candle #{i} {row!r:.80}: {problem}; the exchange sent "
                "bad data — retry later or report it"
            )
        ts_ms = int(row[0])
        out.append((ts_ms, float(row[1]), float(row[2]), float(row[3]), float(row[4]), float(row[5])))
        last = ts_ms
    return out


class ExchangeSettingsError(ConfigError, CandleDataError):
    """A bad value in ``[exchange."ccxt:<id>"]``: a usage error (exit 2) that the engine's candle fetching
    does not retry."""


class CcxtExchange:
    """Candles and formatting for one ccxt exchange id, usable as ``ExchangeSpec`` callables."""

    def __init__(
        self,
        exchange_id: str,
        *,
        name: str | None = None,
        api_base_url: str | None = None,
        options: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        retry: RetryPolicy | None = None,
        max_per_request: int = MAX_PER_REQUEST,
        credentials_env: tuple[str, str] | None = None,
        read_settings: bool = False,
        websocket: bool | str | None = None,
        ws_base_url: str | Mapping[str, str] | None = None,
    ) -> None:
        if exchange_id not in exchange_ids():
            raise ConfigError(f"unknown ccxt exchange id {exchange_id!r}; see ccxt.exchanges for valid ids")
        if not 1 <= max_per_request <= MAX_PER_REQUEST:
            raise ConfigError(
                f"max_per_request must be between 1 and {MAX_PER_REQUEST}, got {max_per_request}"
            )
        self.exchange_id = exchange_id
        self.name = name or f"ccxt:{exchange_id}"
        self._explicit: dict[str, Any] = {
            k: v
            for k, v in {
                "api_base_url": api_base_url,
                "options": options,
                "timeout_ms": timeout_ms,
                "websocket": websocket,
                "ws_base_url": ws_base_url,
            }.items()
            if v is not None
        }
        self._config = dict(config or {})
        self._retry = retry
        self._max_per_request = max_per_request
        self._credentials_env = credentials_env
        self._read_settings = read_settings
        self._resolved: dict[str, Any] | None = None
        self._home: Any = None  # the client of the first (long-lived) loop that used this exchange
        self._home_loop: asyncio.AbstractEventLoop | None = None
        self._markets: dict[str, Any] | None = None
        self._formatter: Any = None
        self._secrets: tuple[str, ...] = ()
        self._live: Any = None  # LiveCandles (candles_ws.py) on the home loop, when websockets are used
        self._ws_wanted: bool | None = None
        check_ws_settings(self.name, self._explicit)

    # ------------------------------------------------------------ configuration
    def settings(self) -> dict[str, Any]:
        """Effective options: explicit arguments over ``[exchange.<name>]`` of btkit.toml (when enabled)."""
        if self._resolved is None:
            merged: dict[str, Any] = {}
            if self._read_settings:
                table = load_settings().get("exchange", {}).get(self.name)
                if isinstance(table, Mapping):
                    merged.update({k: v for k, v in table.items() if k in SETTINGS_KEYS})
            merged.update(self._explicit)
            try:
                check_ws_settings(self.name, merged)
            except ConfigError as exc:  # through the engine's candle retries to the CLI's exit 2
                raise ExchangeSettingsError(str(exc)) from None
            self._resolved = merged
        return self._resolved

    @property
    def retry_policy(self) -> RetryPolicy:
        if self._retry is None:
            s = self.settings()
            self._retry = RetryPolicy(
                attempts=int(s.get("retries", 4)), base_delay=float(s.get("retry_delay_seconds", 0.5))
            )
        return self._retry

    def _credentials(self) -> Any:
        from btkit_ccxt.client import credentials_from_env

        if self._credentials_env is None:
            return None
        creds = credentials_from_env(*self._credentials_env, required=False)
        if creds is not None:
            self._secrets = creds.secrets()
        return creds

    def _new_client(self) -> Any:
        from btkit_ccxt.client import make_client

        s = self.settings()
        return make_client(
            self.exchange_id,
            api_base_url=s.get("api_base_url"),
            options=s.get("options"),
            credentials=self._credentials(),
            timeout_ms=s.get("timeout_ms"),
            config=self._config,
        )

    # ------------------------------------------------------------ clients and markets
    async def client(self) -> Any:
        """The long-lived ccxt client, bound to the running loop, with markets loaded.

        The first loop that asks owns it (it is replaced when that loop has closed); calls from other
        loops go through :meth:`_call_client`, which gives them a client of their own for one call."""
        loop = asyncio.get_running_loop()
        if self._home is None or self._home_loop is None or self._home_loop.is_closed():
            self._home, self._home_loop = self._new_client(), loop
        if self._home_loop is not loop:
            raise RuntimeError(f"{self.name}: client() called from a second event loop; use _call_client()")
        await self._with_markets(self._home)
        return self._home

    async def _call_client(self) -> tuple[Any, bool]:
        """(client, temporary): the long-lived client on its own loop; elsewhere (a helper loop of the
        engine, e.g. for a sync strategy) a fresh client that the caller closes after the call, so no
        HTTP session outlives its loop."""
        loop = asyncio.get_running_loop()
        if (
            self._home is None
            or self._home_loop is None
            or self._home_loop.is_closed()
            or self._home_loop is loop
        ):
            return await self.client(), False
        client = self._new_client()
        try:
            await self._with_markets(client)
        except BaseException:
            await client.close()
            raise
        return client, True

    async def _with_markets(self, client: Any) -> None:
        from btkit_ccxt.retry import call_with_retries, describe_error

        if not client.markets:
            if self._markets is not None:
                client.set_markets(self._markets)
            else:
                try:
                    await call_with_retries(client.load_markets, self.retry_policy)
                except Exception as exc:
                    raise CandleDataError(
                        f"{self.name}: loading markets failed ({describe_error(exc, self._secrets)}); check "
                        "the network/api_base_url and try again"
                    ) from exc
                self._markets = client.markets

    def resolve_symbol(self, client: Any, symbol: str) -> str:
        """The unified ccxt symbol for ``symbol`` given unified (``BTC/USDT``) or as an id (``BTCUSDT``)."""
        if symbol in client.markets:
            return symbol
        by_id = client.markets_by_id.get(symbol) if client.markets_by_id else None
        if by_id:
            return str(by_id[0]["symbol"])
        raise CandleDataError(
            f"{self.name}: unknown symbol {symbol!r}; use the unified ccxt form, e.g. "
            f"{next(iter(client.markets), 'BTC/USDT')}"
        )

    def _page_limit(self, client: Any, market: Mapping[str, Any]) -> int | None:
        features = getattr(client, "features", None) or {}
        section = features.get(market.get("type") or "spot") or {}
        if market.get("contract"):
            section = section.get("linear" if market.get("linear") else "inverse") or {}
        limit = (section.get("fetchOHLCV") or {}).get("limit") if isinstance(section, Mapping) else None
        return int(limit) if isinstance(limit, (int, float)) else None

    # ------------------------------------------------------------ candles
    async def get_candles(
        self, symbol: str, interval: str, since: datetime | int, limit: int
    ) -> list[CandleRow]:
        """Up to ``limit`` candles with open time ≥ ``since``, oldest first, as ``(ts, o, h, l, c, v)``.

        Pages of at most 1000 candles; network-type failures are retried with backoff (bounded), while
        bad requests, unknown symbols and malformed data raise :class:`CandleDataError` at once.
        """
        if limit <= 0:
            return []
        client, temporary = await self._call_client()
        try:
            if not temporary and self._use_ws():
                return await self._live_candles(client, symbol, interval, since, limit)
            return await self._candles(client, symbol, interval, since, limit)
        finally:
            if temporary:
                await client.close()

    async def _candles(
        self, client: Any, symbol: str, interval: str, since: datetime | int, limit: int
    ) -> list[CandleRow]:
        unified = self.resolve_symbol(client, symbol)
        where = f"{self.name} {unified} {interval}"
        if client.timeframes and interval not in client.timeframes:
            raise CandleDataError(
                f"{where}: interval not offered by {self.exchange_id}; "
                f"use one of {', '.join(client.timeframes)}"
            )
        step = int(client.parse_timeframe(interval) * 1000)
        page = min(self._max_per_request, get_config().max_candles_per_request, MAX_PER_REQUEST)
        trusted = self._page_limit(client, client.market(unified))
        out: list[CandleRow] = []
        cursor = to_ms(since)
        last: int | None = None
        while len(out) < limit:
            want = min(page, limit - len(out))
            raw = await self._fetch_page(client, unified, interval, cursor, want, where)
            rows = [r for r in validate_rows(raw, where=where, after_ms=last) if r[0] >= cursor]
            if not rows:
                break
            out.extend(rows)
            last = rows[-1][0]
            cursor = last + step
            if len(raw) < want and (trusted is None or want <= trusted):
                break  # a short page: the exchange has nothing newer
        return out[:limit]

    # ------------------------------------------------------------ websocket candles (candles_ws.py)
    def _use_ws(self) -> bool:
        """``websocket`` of the settings: on (auto) where ccxt.pro has ``watchOHLCV`` and the REST URL is
        the exchange's own or ``ws_base_url`` is set."""
        if self._ws_wanted is None:
            from btkit_ccxt.ws import parse_switch, pro_has

            s = self.settings()
            switch = parse_switch(s.get("websocket"), f"[exchange.{self.name!r}] websocket")
            why = None
            if switch is False:
                why = "websocket = false"
            elif not pro_has(self.exchange_id, "watchOHLCV"):
                why = "ccxt.pro has no watchOHLCV for it"
            elif s.get("api_base_url") and not s.get("ws_base_url"):
                why = "api_base_url is set without ws_base_url"
            if why is not None and switch:
                log.warning(
                    "%s: websocket candles are not possible (%s); candles come by REST", self.name, why
                )
            self._ws_wanted = why is None
        return self._ws_wanted

    async def _live_candles(
        self, client: Any, symbol: str, interval: str, since: datetime | int, limit: int
    ) -> list[CandleRow]:
        """Closed candles the socket has, then REST from the first one it lacks (nothing is missed)."""
        import time

        from btkit_ccxt.candles_ws import LiveCandles
        from btkit_ccxt.retry import describe_error
        from btkit_ccxt.ws import make_pro_client

        unified = self.resolve_symbol(client, symbol)
        if client.timeframes and interval not in client.timeframes:
            return await self._candles(client, unified, interval, since, limit)
        step = int(client.parse_timeframe(interval) * 1000)
        start = to_ms(since)
        forming = int(time.time() * 1000) // step * step
        if start + limit * step < forming - step:  # history: REST only, nothing to watch
            return await self._candles(client, unified, interval, start, limit)
        if self._live is None:
            self._live = LiveCandles(
                make_pro_client(client, self.settings().get("ws_base_url")),
                self.name,
                lambda exc: describe_error(exc, self._secrets),
            )
        self._live.watch(unified, interval)
        rows = await self._live.run(unified, interval, start, limit, step, forming)
        if rows:
            rows = validate_rows(
                [list(r) for r in rows], where=f"{self.name} {unified} {interval} (websocket)"
            )
        if len(rows) >= limit or (rows and rows[-1][0] + step >= forming):
            return rows
        cursor = rows[-1][0] + step if rows else start
        return rows + await self._candles(client, unified, interval, cursor, limit - len(rows))

    async def _fetch_page(
        self, client: Any, symbol: str, interval: str, since: int, limit: int, where: str
    ) -> Any:
        from ccxt.base.errors import BadSymbol

        from btkit_ccxt.retry import call_with_retries, describe_error, read_retryable

        def note(attempt: int, exc: BaseException) -> None:
            log.info("%s: retry %d after %s", where, attempt, describe_error(exc, self._secrets))

        try:
            return await call_with_retries(
                lambda: client.fetch_ohlcv(symbol, interval, since, limit), self.retry_policy, on_retry=note
            )
        except BtkitError:
            raise
        except read_retryable() as exc:
            raise CandleDataError(
                f"{where}: fetching candles failed after {self.retry_policy.attempts} attempts "
                f"({describe_error(exc, self._secrets)}); the exchange is unreachable or overloaded — try "
                "again later"
            ) from exc
        except BadSymbol as exc:
            raise CandleDataError(
                f"{where}: the exchange rejected the symbol ({describe_error(exc, self._secrets)}); check it"
            ) from exc
        except Exception as exc:
            raise CandleDataError(
                f"{where}: the exchange refused the candle request ({describe_error(exc, self._secrets)}); "
                "not retried — fix the request (symbol, interval, dates) or the configuration"
            ) from exc

    # ------------------------------------------------------------ formatting
    def _format_client(self) -> Any:
        import ccxt

        from btkit_ccxt.retry import describe_error

        if self._formatter is None:
            formatter = getattr(ccxt, self.exchange_id)({"enableRateLimit": True})
            if self._markets is None:  # nothing fetched yet: a one-off blocking load
                sync = getattr(ccxt, self.exchange_id)({"enableRateLimit": True})
                async_client = self._new_client()
                sync.urls = async_client.urls
                sync.options = async_client.options
                sync.timeout = async_client.timeout
                try:
                    sync.load_markets()
                except Exception as exc:
                    raise CandleDataError(
                        f"{self.name}: loading markets for formatting failed ({describe_error(exc)})"
                    ) from exc
                self._markets = sync.markets
            formatter.set_markets(self._markets)
            self._formatter = formatter
        return self._formatter

    def _unified(self, formatter: Any, symbol: str) -> str:
        if symbol in formatter.markets:
            return symbol
        by_id = formatter.markets_by_id.get(symbol) if formatter.markets_by_id else None
        if by_id:
            return str(by_id[0]["symbol"])
        raise CandleDataError(f"{self.name}: unknown symbol {symbol!r}")

    def format_price(self, symbol: str, price: float) -> str:
        """``price`` rounded to the market's tick size, as text."""
        f = self._format_client()
        return str(f.price_to_precision(self._unified(f, symbol), price))

    def format_quantity(self, symbol: str, quantity: float) -> str:
        """``quantity`` truncated to the market's step size, as text."""
        f = self._format_client()
        return str(f.amount_to_precision(self._unified(f, symbol), quantity))

    # ------------------------------------------------------------ shutdown
    async def close(self) -> None:
        """Close the long-lived client (on its own loop, wherever this is awaited from)."""
        client, loop = self._home, self._home_loop
        live, self._live = self._live, None
        self._home = self._home_loop = None
        if client is None or loop is None or loop.is_closed():
            return
        for closing in ([live.close] if live is not None else []) + [client.close]:
            if loop is asyncio.get_running_loop():
                await closing()
            elif loop.is_running():
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(closing(), loop))

    def mask(self, text: str) -> str:
        from btkit_ccxt.secrets import mask_secrets

        return mask_secrets(text, self._secrets)

    def spec(self, *, dist: str = "btkit-ccxt") -> ExchangeSpec:
        return ExchangeSpec(
            name=self.name,
            get_candles=self.get_candles,
            format_price=self.format_price,
            format_quantity=self.format_quantity,
            close=self.close,
            dist=dist,
        )


def make_ccxt_exchange(
    exchange_id: str,
    *,
    api_base_url: str | None = None,
    options: Mapping[str, Any] | None = None,
    name: str | None = None,
    timeout_ms: int | None = None,
    retry: RetryPolicy | None = None,
    read_settings: bool = False,
    dist: str = "btkit-ccxt",
) -> ExchangeSpec:
    """An ``ExchangeSpec`` named ``ccxt:<exchange_id>`` (or ``name``) backed by :class:`CcxtExchange`.

    ``options`` go to ccxt's ``exchange.options``; API keys are never accepted here (environment only).
    """
    return CcxtExchange(
        exchange_id,
        name=name,
        api_base_url=api_base_url,
        options=options,
        timeout_ms=timeout_ms,
        retry=retry,
        read_settings=read_settings,
    ).spec(dist=dist)


def check_ws_settings(name: str, settings: Mapping[str, Any]) -> None:
    """``websocket`` and ``ws_base_url`` of an exchange's settings, or one-line ``ConfigError``."""
    from btkit_ccxt.ws import check_ws_url, parse_switch

    parse_switch(settings.get("websocket"), f"[exchange.{name!r}] websocket")
    check_ws_url(settings.get("ws_base_url"), f"[exchange.{name!r}] ws_base_url")


def all_exchange_ids() -> Sequence[str]:
    return exchange_ids()
