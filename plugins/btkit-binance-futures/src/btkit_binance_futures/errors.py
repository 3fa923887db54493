"""Classifying ccxt / Binance errors into what the broker may do next (60-exchanges.md §2b).

``REJECTED`` — the exchange definitively refused: raise ``OrderRejectedError``, never resend.
    InvalidOrder (-4164 min notional, -2021 would trigger, -2022 reduce-only rejected, -1013 filters),
    InsufficientFunds (-2019), BadSymbol (-1121), BadRequest, AuthenticationError (-1022, -2015),
    PermissionDenied, NotSupported, OperationRejected (-4061), any other coded Binance error.
``UNKNOWN`` — the order may or may not exist: look it up by client id before any resend.
    RequestTimeout, ExchangeNotAvailable (5xx, dropped connection), other NetworkError, BadResponse
    (non-JSON), -1000, -1001, -1006, -1007, uncoded errors.
``RETRY`` — refused before processing: resend (bounded) without doubt.
    DDoSProtection (418/429), RateLimitExceeded (-1003, -1015), InvalidNonce (-1021), -1008.
``DUPLICATE`` — the client id is already in use: look the order up and treat it as placed.
    -4116 (orders), -20132 (conditional orders).
``NOT_FOUND`` — no such order: lookups answer "absent", cancels treat it as gone.
    OrderNotFound (-2011, -2013).

Reads (lookups, positions, balances) are retried on ``UNKNOWN`` and ``RETRY`` alike.
"""

from __future__ import annotations

from btkit_ccxt import error_code
from btkit_ccxt.spot.errors import Outcome
from btkit_ccxt.spot.errors import classify as classify_ccxt

__all__ = ["Outcome", "classify"]

DUPLICATE_CODES = frozenset({-4116, -20132})
NOT_FOUND_CODES = frozenset({-2011, -2013})
UNKNOWN_CODES = frozenset({-1000, -1001, -1006, -1007})
RETRY_CODES = frozenset({-1003, -1008, -1015, -1021})


def classify(exc: BaseException) -> Outcome:
    """The :class:`Outcome` of a failed ccxt call (see the module table): Binance's own codes first, then
    the classification of the unified ccxt error classes that every exchange shares (btkit-ccxt)."""
    code = error_code(exc)
    if code in DUPLICATE_CODES:
        return Outcome.DUPLICATE
    if code in NOT_FOUND_CODES:
        return Outcome.NOT_FOUND
    if code in UNKNOWN_CODES:
        return Outcome.UNKNOWN
    if code in RETRY_CODES:
        return Outcome.RETRY
    return classify_ccxt(exc)
