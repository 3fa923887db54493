"""The Telegram action: event handlers that enqueue, one sender thread, one long-poll thread.

The Bot API is spoken over plain HTTPS (``urllib``): ``sendMessage`` and ``getUpdates``. A 429 answer is
retried after its ``retry_after`` (no message is lost or reordered); other failures are retried with a
back-off, then dropped with one warning. The token is part of every request URL, so URLs are never
logged and the token is registered with ``btkit.secrets`` (masked in every btkit log line).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from btkit.errors import ConfigError
from btkit.secrets import mask, register_secret

log = logging.getLogger("btkit.telegram")

TOKEN_ENV = "BTKIT_TELEGRAM_TOKEN"
CHATS_ENV = "BTKIT_TELEGRAM_CHAT_IDS"
URL_ENV = "BTKIT_TELEGRAM_API_BASE_URL"
DEFAULT_API = "https://api.telegram.org"
MAX_ATTEMPTS = 6  # non-429 failures of one message before it is dropped
MAX_TEXT = 4000  # Telegram's limit is 4096 characters


class BotApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {description}")
        self.status, self.retry_after = status, retry_after


class BotApi:
    """The two Bot API methods used, with the token kept out of every message."""

    def __init__(self, token: str, base_url: str) -> None:
        self._token = token
        self.base_url = base_url.rstrip("/")

    def call(self, method: str, params: dict[str, Any], timeout: float = 30.0) -> Any:
        url = f"{self.base_url}/bot{self._token}/{method}"
        data = json.dumps(params).encode()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                body = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read() or b"{}")
            except ValueError:
                body = {}
            retry = (body.get("parameters") or {}).get("retry_after")
            raise BotApiError(exc.code, str(body.get("description", exc.reason)), retry) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BotApiError(
                0, mask(f"{type(exc).__name__}: {reason}").replace(self._token, "***")
            ) from None
        if not body.get("ok", False):
            raise BotApiError(200, str(body.get("description", "not ok")))
        return body.get("result")


def _chat_ids(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    out = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            out.append(int(text))
        except ValueError:
            raise ConfigError(
                f"telegram: chat id {text!r} is not a number (use the numeric chat id)"
            ) from None
    return tuple(out)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def _price(value: float) -> str:
    return f"{value:.8g}"


class _Poller:
    """One getUpdates long-poll per (API, token), shared by every handler of the process."""

    def __init__(self, api: BotApi, timeout: float) -> None:
        self.api, self.timeout = api, timeout
        self.handlers: weakref.WeakSet[TelegramAction] = weakref.WeakSet()
        self.offset = 0
        self.thread = threading.Thread(target=self._run, name="btkit-telegram-poll", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        failures = 0
        while True:
            with _POLL_LOCK:
                if not self.handlers:  # every handler closed: stop polling
                    _POLLERS.pop((self.api.base_url, self.api._token), None)
                    return
            try:
                updates = self.api.call(
                    "getUpdates",
                    {"offset": self.offset, "timeout": int(self.timeout), "allowed_updates": ["message"]},
                    timeout=self.timeout + 10,
                )
                failures = 0
            except BotApiError as exc:
                failures += 1
                delay = exc.retry_after or min(60.0, 2.0**failures)
                log.warning("telegram getUpdates failed (%s); polling again in %.0fs", exc, delay)
                time.sleep(delay)
                continue
            for update in updates or []:
                self.offset = max(self.offset, int(update.get("update_id", 0)) + 1)
                message = update.get("message") or {}
                chat = (message.get("chat") or {}).get("id")
                text = str(message.get("text") or "")
                for handler in list(self.handlers):
                    handler.command(chat, text)
                    break  # the first handler answers for all of them (they share the summary)


_POLLERS: dict[tuple[str, str], _Poller] = {}
_POLL_LOCK = threading.Lock()
#: every handler of the process, for answers that cover all strategies
_ALL: weakref.WeakSet[TelegramAction] = weakref.WeakSet()


class TelegramAction:
    """The handler (docs/telegram.md). Options: ``chat_ids``, ``api_base_url``, ``min_interval_seconds``
    (between two messages, default 1), ``poll_timeout`` (getUpdates long-poll seconds, default 25),
    ``commands`` (answer /status /profit /balance, default on), ``daily_summary`` (default on)."""

    def __init__(
        self,
        chat_ids: Any = None,
        api_base_url: str | None = None,
        min_interval_seconds: float = 1.0,
        poll_timeout: float = 25.0,
        commands: bool = True,
        daily_summary: bool = True,
        **unknown: Any,
    ) -> None:
        if "token" in unknown or "bot_token" in unknown:
            raise ConfigError(
                f"telegram: the bot token is read from {TOKEN_ENV} only; remove it from the options"
            )
        if unknown:
            raise ConfigError(
                f"telegram: unknown option(s) {', '.join(sorted(unknown))}; use chat_ids, api_base_url, "
                "min_interval_seconds, poll_timeout, commands, daily_summary"
            )
        token = os.environ.get(TOKEN_ENV, "")
        if not token:
            raise ConfigError(f"telegram: set {TOKEN_ENV} to the bot token from @BotFather")
        register_secret(token)
        self.chats = _chat_ids(chat_ids if chat_ids is not None else os.environ.get(CHATS_ENV))
        if not self.chats:
            raise ConfigError(f"telegram: no chat allowed; set [actions.telegram] chat_ids or {CHATS_ENV}")
        self.api = BotApi(token, api_base_url or os.environ.get(URL_ENV) or DEFAULT_API)
        self.min_interval = float(min_interval_seconds)
        self.poll_timeout = float(poll_timeout)
        self.commands_on = bool(commands)
        self.daily_summary = bool(daily_summary)
        self.outbox: collections.deque[tuple[int, str]] = collections.deque()
        self.cond = threading.Condition()
        self.sending = False
        self.sent = 0
        self.lost = 0
        self.open: dict[str, Any] = {}  # symbol -> the open signal's last result
        self.closed: list[Any] = []
        self.day: str | None = None
        self.day_closed: list[Any] = []
        self.strategy = ""
        self.closed_down = False
        self._sender = threading.Thread(target=self._send_loop, name="btkit-telegram-send", daemon=True)
        self._sender.start()
        _ALL.add(self)

    # ------------------------------------------------------------ btkit action methods (enqueue only)
    def on_start(self, start: Any) -> None:
        self.strategy = start.strategy_name
        if self.commands_on:
            key = (self.api.base_url, self.api._token)
            with _POLL_LOCK:
                poller = _POLLERS.get(key)
                if poller is None:
                    poller = _POLLERS[key] = _Poller(self.api, self.poll_timeout)
                poller.handlers.add(self)

    def on_signal(self, result: Any) -> None:
        self._clock(result.timestamp)
        s = result.signal
        if result.action == "opened" and s is not None:
            self.open[result.symbol] = result
            self.broadcast(
                f"🟢 opened {s.position.upper()} {result.symbol} @ {_price(result.current_price)} "
                f"({result.strategy_name}) TP {_price(s.price_take_profit)} SL {_price(s.price_stop_loss)}"
            )
        elif result.action == "closed":
            self.open.pop(result.symbol, None)
            self.closed.append(result)
            self.day_closed.append(result)
            p = result.pnl
            mark = "✅" if p.pnl_percentage >= 0 else "🔻"
            self.broadcast(
                f"{mark} closed {result.symbol} {result.close_reason} @ {_price(result.current_price)} "
                f"pnl {p.pnl_percentage:+.2f}% ({p.pnl_cost:+.2f}) ({result.strategy_name})"
            )
        elif result.action == "cancelled":
            self.broadcast(f"cancelled {result.symbol} entry: {result.reason} ({result.strategy_name})")

    def on_ping(self, ping: Any) -> None:
        self._clock(ping.timestamp)

    def on_risk_rejected(self, rejection: Any) -> None:
        self.broadcast(f"⛔ risk {rejection.risk_name} rejected {rejection.symbol}: {rejection.note}")

    def on_broker(self, outcome: Any) -> None:
        self.broadcast(f"⚠️ broker {outcome.method} {outcome.symbol}: {outcome.verdict} ({outcome.error})")

    def on_error(self, event: Any) -> None:
        self.broadcast(f"⚠️ error: {event.where}: {type(event.error).__name__}: {event.error}")

    def on_stop(self, done: Any) -> None:
        self.flush(25.0)

    def close(self) -> None:
        """Stop answering commands and sending (called when the dispatcher is reset)."""
        self.closed_down = True
        _ALL.discard(self)
        with _POLL_LOCK:
            for poller in _POLLERS.values():
                poller.handlers.discard(self)
        with self.cond:
            self.cond.notify_all()

    # ------------------------------------------------------------ summaries and commands
    def _clock(self, ms: int) -> None:
        day = _day(ms)
        if self.day is None:
            self.day = day
        elif day != self.day:
            if self.daily_summary:
                self.broadcast(self.summary(self.day, self.day_closed))
            self.day, self.day_closed = day, []

    def summary(self, day: str, closed: list[Any]) -> str:
        pnl = sum(c.pnl.pnl_percentage for c in closed)
        wins = sum(1 for c in closed if c.pnl.pnl_percentage >= 0)
        held = ", ".join(f"{sym} {r.signal.position}" for sym, r in self.open.items()) or "none"
        return (
            f"📊 daily summary {day} ({self.strategy}): {len(closed)} closed, pnl {pnl:+.2f}% "
            f"({wins} win, {len(closed) - wins} loss); open: {held}"
        )

    def command(self, chat: Any, text: str) -> None:
        if chat not in self.chats:
            log.info("telegram: ignored a message from chat %s (not in chat_ids)", chat)
            return
        word = text.strip().split(" ", 1)[0].split("@", 1)[0].lower()
        handlers = list(_ALL)
        if word == "/status":
            lines = [
                f"{sym} {r.signal.position} @ {_price(r.signal.price_open)} TP {_price(r.signal.price_take_profit)} "
                f"SL {_price(r.signal.price_stop_loss)} ({r.strategy_name})"
                for h in handlers
                for sym, r in h.open.items()
                if r.signal is not None
            ]
            reply = "open positions:\n" + "\n".join(lines) if lines else "no open position"
        elif word == "/profit":
            closed = [c for h in handlers for c in h.closed]
            pct = sum(c.pnl.pnl_percentage for c in closed)
            cost = sum(c.pnl.pnl_cost for c in closed)
            wins = sum(1 for c in closed if c.pnl.pnl_percentage >= 0)
            reply = f"{len(closed)} closed, {wins} won; pnl {pct:+.2f}% ({cost:+.2f})"
        elif word == "/balance":
            from btkit.accounting.wallet import get_wallet

            wallet = get_wallet()
            realised = sum(c.pnl.pnl_cost for h in handlers for c in h.closed)
            reply = (
                f"balance {wallet.balance + realised:.2f} {wallet.currency} "
                f"(start {wallet.balance:.2f}, realised {realised:+.2f})"
            )
        else:
            reply = "commands: /status /profit /balance"
        self.send(int(chat), reply)

    # ------------------------------------------------------------ the outbox
    def broadcast(self, text: str) -> None:
        for chat in self.chats:
            self.send(chat, text)

    def send(self, chat: int, text: str) -> None:
        with self.cond:
            self.outbox.append((chat, mask(text)[:MAX_TEXT]))
            self.cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.outbox or self.sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def _send_loop(self) -> None:
        last = 0.0
        while True:
            with self.cond:
                while not self.outbox and not self.closed_down:
                    self.cond.wait()
                if self.closed_down and not self.outbox:
                    return
                chat, text = self.outbox[0]
                self.sending = True
            wait = last + self.min_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            delivered = self._deliver(chat, text)
            last = time.monotonic()
            with self.cond:
                self.outbox.popleft()
                self.sending = False
                self.sent += delivered
                self.lost += not delivered
                self.cond.notify_all()

    def _deliver(self, chat: int, text: str) -> bool:
        failures = 0
        while True:
            try:
                self.api.call("sendMessage", {"chat_id": chat, "text": text}, timeout=20)
                return True
            except BotApiError as exc:
                if exc.status == 429:  # rate limited: wait as told, then the same message again
                    delay = float(exc.retry_after or 1)
                    log.info("telegram rate limit: retrying in %.0fs", delay)
                    time.sleep(delay)
                    continue
                failures += 1
                if failures >= MAX_ATTEMPTS or exc.status in (400, 401, 403, 404):
                    log.warning("telegram sendMessage to chat %s failed: %s; message dropped", chat, exc)
                    return False
                time.sleep(min(30.0, 0.5 * 2**failures))
