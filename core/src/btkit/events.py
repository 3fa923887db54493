"""Event streams (``listen_*``): ordered callbacks, sync or async, each returns an unsubscribe callable.

Streams are process-wide, like backtest-kit's emitters. Callbacks of one stream run in subscription
order; an exception inside a listener is reported on the ``error`` stream (and never loops back into
itself) instead of breaking the run.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import attrs

log = logging.getLogger("btkit.events")

STREAMS: tuple[str, ...] = (
    "signal",
    "signal_backtest",
    "signal_live",
    "done_backtest",
    "done_live",
    "backtest_progress",
    "error",
    "risk",
    "active_ping",
    "schedule_ping",
    "idle_ping",
    "partial_profit_available",
    "partial_loss_available",
    "breakeven_available",
)

Callback = Callable[..., Any]


@attrs.frozen
class ErrorEvent:
    """What ``listen_error`` listeners receive."""

    error: BaseException
    where: str
    fatal: bool = False

    def __str__(self) -> str:
        return f"{self.where}: {type(self.error).__name__}: {self.error}"


_listeners: dict[str, list[Callback]] = {name: [] for name in STREAMS}
#: process-wide observers of every stream, called after the listeners with ``(stream, payload)``; they
#: must return at once (the action dispatcher, ``btkit.ops.actions``, only enqueues). ``clear`` keeps them.
_taps: list[Callable[[str, Any], None]] = []


def add_tap(tap: Callable[[str, Any], None]) -> Callable[[], None]:
    """Observe every emitted event (infrastructure: the action dispatcher); returns a remover."""
    _taps.append(tap)

    def remove() -> None:
        with contextlib.suppress(ValueError):
            _taps.remove(tap)

    return remove


def subscribe(stream: str, callback: Callback) -> Callable[[], None]:
    if stream not in _listeners:
        raise ValueError(f"unknown event stream {stream!r}; use one of {', '.join(STREAMS)}")
    if not callable(callback):
        raise TypeError(f"listener for {stream!r} must be callable")
    _listeners[stream].append(callback)

    def unsubscribe() -> None:
        with contextlib.suppress(ValueError):
            _listeners[stream].remove(callback)

    return unsubscribe


#: ``want(stream, strategy_spec) -> bool``: a tap that needs a stream the engine only emits on demand
#: (pings, level events) for that strategy (an action with ``on_ping`` attached to it)
_wants: list[Callable[[str, Any], bool]] = []


def add_want(want: Callable[[str, Any], bool]) -> None:
    _wants.append(want)


def has_listeners(stream: str, strategy: Any = None) -> bool:
    if _listeners[stream]:
        return True
    return strategy is not None and any(want(stream, strategy) for want in _wants)


def clear() -> None:
    """Drop every listener (tests and fresh CLI runs)."""
    for callbacks in _listeners.values():
        callbacks.clear()


async def emit(stream: str, payload: Any) -> None:
    for callback in tuple(_listeners[stream]):
        try:
            out = callback(payload)
            if inspect.isawaitable(out):
                await out
        except Exception as exc:
            if stream == "error":
                log.exception("an error listener raised")
                continue
            log.warning("listener on %s raised %s: %s", stream, type(exc).__name__, exc)
            await emit("error", ErrorEvent(exc, f"a listener on {stream}"))
    for tap in _taps:
        try:
            tap(stream, payload)
        except Exception:
            log.exception("an event tap raised on %s", stream)


def _listen(stream: str) -> Callable[[Callback], Callable[[], None]]:
    def listen(callback: Callback) -> Callable[[], None]:
        return subscribe(stream, callback)

    listen.__name__ = f"listen_{stream}"
    listen.__doc__ = f"Subscribe to the {stream!r} stream; returns an unsubscribe callable."
    return listen


listen_signal = _listen("signal")
listen_signal_backtest = _listen("signal_backtest")
listen_signal_live = _listen("signal_live")
listen_done_backtest = _listen("done_backtest")
listen_done_live = _listen("done_live")
listen_backtest_progress = _listen("backtest_progress")
listen_error = _listen("error")
listen_risk = _listen("risk")
listen_active_ping = _listen("active_ping")
listen_schedule_ping = _listen("schedule_ping")
listen_idle_ping = _listen("idle_ping")
listen_partial_profit_available = _listen("partial_profit_available")
listen_partial_loss_available = _listen("partial_loss_available")
listen_breakeven_available = _listen("breakeven_available")
