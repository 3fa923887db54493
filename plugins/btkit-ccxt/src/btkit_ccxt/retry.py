"""Bounded retries with exponential backoff for ccxt reads, and one-line error descriptions."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

import attrs

from btkit_ccxt.secrets import mask_secrets

T = TypeVar("T")


def read_retryable() -> tuple[type[BaseException], ...]:
    """ccxt errors worth retrying on a read: NetworkError (RequestTimeout, ExchangeNotAvailable,
    DDoSProtection, RateLimitExceeded, InvalidNonce) and the other OperationFailed kinds (BadResponse,
    exchange-side internal errors). Everything else (BadRequest, BadSymbol, AuthenticationError, …) is
    final. (A function, so that importing this module does not import ccxt.)"""
    from ccxt.base.errors import OperationFailed

    return (OperationFailed,)


def _positive(inst: object, a: attrs.Attribute, v: float) -> None:
    if v < 0:
        raise ValueError(f"{a.name} must be >= 0, got {v!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """``attempts`` tries in total; the wait before retry ``i`` (0-based) is
    ``min(max_delay, base_delay * 2**i)`` seconds."""

    attempts: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    base_delay: float = attrs.field(default=0.5, validator=_positive)
    max_delay: float = attrs.field(default=8.0, validator=_positive)

    def delay(self, retry_index: int) -> float:
        return float(min(self.max_delay, self.base_delay * (2**retry_index)))


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    retry_on: tuple[type[BaseException], ...] | None = None,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Await ``fn()``; on an exception of ``retry_on`` wait and try again, at most ``policy.attempts``
    times in total (default ``retry_on``: :func:`read_retryable`). The last exception propagates."""
    if retry_on is None:
        retry_on = read_retryable()
    for i in range(policy.attempts):
        try:
            return await fn()
        except retry_on as exc:
            if i + 1 >= policy.attempts:
                raise
            if on_retry is not None:
                on_retry(i + 1, exc)
            await asyncio.sleep(policy.delay(i))
    raise AssertionError("unreachable")  # pragma: no cover


_BINANCE_BODY = re.compile(r'\{\s*"code"\s*:\s*"?(-?\d+)"?\s*,\s*"msg"\s*:\s*"((?:[^"\\]|\\.)*)"')
_URL_QUERY = re.compile(r"(https?://[^\s?]+)\?\S*")


def error_code(exc: BaseException) -> int | None:
    """The exchange's numeric error code in a ccxt exception (Binance-style ``{"code": …}`` body)."""
    match = _BINANCE_BODY.search(str(exc))
    return int(match.group(1)) if match else None


def describe_error(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """``ClassName: <exchange code and message | first line>`` without URL queries or secrets."""
    text = str(exc)
    match = _BINANCE_BODY.search(text)
    if match:
        detail = f"code {match.group(1)} {match.group(2)}"
    else:
        detail = _URL_QUERY.sub(r"\1", text.splitlines()[0] if text else "").strip()
        if len(detail) > 200:
            detail = detail[:197] + "..."
    summary = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return mask_secrets(summary, secrets)
