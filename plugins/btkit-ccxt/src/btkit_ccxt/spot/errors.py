"""Classifying ccxt errors for order placement on any exchange (unified ccxt error classes only).

``REJECTED`` — definitive refusal (InvalidOrder, InsufficientFunds, BadSymbol, BadRequest,
AuthenticationError, PermissionDenied, NotSupported, coded exchange errors): never resend.
``UNKNOWN`` — the order may exist (NetworkError, RequestTimeout, ExchangeNotAvailable, BadResponse, an
uncoded ExchangeError from the HTTP layer): look it up by client id before any resend.
``RETRY`` — refused before processing (DDoSProtection, RateLimitExceeded, InvalidNonce): resend.
``DUPLICATE`` — DuplicateOrderId or "Duplicate order sent": the order exists.
``NOT_FOUND`` — OrderNotFound: lookups answer "absent", cancels treat it as gone.
"""

from __future__ import annotations

import enum

from btkit_ccxt.retry import error_code


class Outcome(enum.Enum):
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    RETRY = "retry"
    DUPLICATE = "duplicate"
    NOT_FOUND = "not_found"


def classify(exc: BaseException) -> Outcome:
    from ccxt.base.errors import (
        DDoSProtection,
        DuplicateOrderId,
        ExchangeError,
        InvalidNonce,
        NetworkError,
        OperationFailed,
        OrderNotFound,
        RateLimitExceeded,
    )

    text = str(exc)
    if isinstance(exc, DuplicateOrderId) or "Duplicate order sent" in text:
        return Outcome.DUPLICATE
    if isinstance(exc, OrderNotFound) or error_code(exc) in (-2011, -2013):
        return Outcome.NOT_FOUND
    if isinstance(exc, (DDoSProtection, RateLimitExceeded, InvalidNonce)) or error_code(exc) == -1003:
        return Outcome.RETRY
    if isinstance(exc, (NetworkError, OperationFailed)):
        return Outcome.UNKNOWN
    if isinstance(exc, ExchangeError):
        coded = error_code(exc) is not None
        return Outcome.REJECTED if coded or type(exc) is not ExchangeError else Outcome.UNKNOWN
    return Outcome.UNKNOWN
