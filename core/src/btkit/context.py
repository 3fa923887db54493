"""The execution context: ambient ``symbol``, ``when`` and mode for every call into user code.

Carried by ``contextvars`` so it survives ``await`` and ``asyncio.gather``. Data access reads "now"
from here; there is no timestamp parameter to get wrong.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs

from btkit.errors import BtkitError

if TYPE_CHECKING:
    from btkit.engine.instance import StrategyInstance


@attrs.frozen
class ExecutionContext:
    symbol: str
    when: int  # ms UTC
    backtest: bool
    instance: StrategyInstance | Any


_CURRENT: ContextVar[ExecutionContext | None] = ContextVar("btkit_execution_context", default=None)


def current() -> ExecutionContext:
    ctx = _CURRENT.get()
    if ctx is None:
        raise BtkitError(
            "no execution context: call this from get_signal, a strategy callback or a listen_* listener"
        )
    return ctx


@contextlib.contextmanager
def entered(ctx: ExecutionContext) -> Iterator[ExecutionContext]:
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def iso(ms: int | float | None, *, seconds: bool = False, missing: str = "-") -> str:
    """A time a person reads: ISO-8601 UTC to the minute (``2024-01-03T00:00Z``); seconds when not whole,
    or always with ``seconds=True`` (report tables, whose columns line up: ``2024-01-03T00:00:00Z``)."""
    if ms is None:
        return missing
    when = datetime.fromtimestamp(ms / 1000, tz=UTC)
    whole_minute = not (when.second or when.microsecond)
    return when.strftime("%Y-%m-%dT%H:%MZ" if whole_minute and not seconds else "%Y-%m-%dT%H:%M:%SZ")


def datetime_to_ms(value: datetime) -> int:
    if value.tzinfo is None:
        raise BtkitError(f"datetime {value} has no timezone; pass a tz-aware datetime (UTC)")
    return round(value.timestamp() * 1000)


def get_date() -> datetime:
    """The ambient time of the current tick (tz-aware UTC)."""
    return ms_to_datetime(current().when)


def get_mode() -> str:
    """``"backtest"`` or ``"live"``."""
    return "backtest" if current().backtest else "live"
