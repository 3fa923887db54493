"""Payloads the engine hands to broker methods (40-broker-risk.md §1), and client order ids.

Every payload carries ``symbol, strategy_name, exchange_name, signal_id, when, attempt`` and a
deterministic ``client_order_id``: derived from the signal id and the action, identical on every retry
of the same action (``attempt`` counts the retries), at most 36 characters of ``[A-Za-z0-9-]`` so it is
valid as Binance ``newClientOrderId`` and for most other exchanges.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import attrs

BROKER_METHODS: tuple[str, ...] = (
    "on_signal_open_commit",
    "on_signal_close_commit",
    "on_signal_cancel_commit",
    "on_partial_profit_commit",
    "on_partial_loss_commit",
    "on_trailing_stop_commit",
    "on_trailing_take_commit",
    "on_breakeven_commit",
    "on_average_buy_commit",
    "on_active_check",
    "on_schedule_check",
)


def client_order_id(signal_id: str, action: str) -> str:
    """``btk`` + 20 hex digits of sha256(signal id) + ``-`` + action tag; same inputs → same id."""
    digest = hashlib.sha256(signal_id.encode("utf-8")).hexdigest()[:20]
    tag = "".join(ch for ch in action if ch.isalnum())[:12]
    return f"btk{digest}-{tag}"


@attrs.frozen(kw_only=True)
class CommitPayload:
    symbol: str
    strategy_name: str
    exchange_name: str
    signal_id: str
    when: int
    attempt: int
    client_order_id: str
    position: str


@attrs.frozen(kw_only=True)
class OpenCommit(CommitPayload):
    """Before a position opens (``type="open"``) or a resting limit entry is placed (``"schedule"``)."""

    type: Literal["open", "schedule"]
    cost: float
    price_open: float
    price_take_profit: float
    price_stop_loss: float
    multiplier: float = 1.0
    isolated: bool = True


@attrs.frozen(kw_only=True)
class CloseCommit(CommitPayload):
    """Before a position closes (TP, SL, liquidation, expiry, user)."""

    cost: float
    current_price: float
    price_open: float
    price_take_profit: float
    price_stop_loss: float
    close_reason: str
    pnl: Any
    total_entries: int
    total_partials: int


@attrs.frozen(kw_only=True)
class CancelCommit(CommitPayload):
    """Before a resting (scheduled) entry is cancelled: timeout, price reject, user or graceful stop."""

    reason: str
    price_open: float


@attrs.frozen(kw_only=True)
class PartialCommit(CommitPayload):
    """Before a partial close; ``percent_to_close`` is a share of the remaining position."""

    percent_to_close: float
    cost: float
    current_price: float
    price_take_profit: float
    price_stop_loss: float


@attrs.frozen(kw_only=True)
class TrailingCommit(CommitPayload):
    """Before a trailing stop (``new_stop_loss_price``) or trailing take (``new_take_profit_price``) move."""

    percent_shift: float
    current_price: float
    new_stop_loss_price: float | None = None
    new_take_profit_price: float | None = None


@attrs.frozen(kw_only=True)
class BreakevenCommit(CommitPayload):
    current_price: float
    new_stop_loss_price: float


@attrs.frozen(kw_only=True)
class AverageBuyCommit(CommitPayload):
    current_price: float
    cost: float


@attrs.frozen(kw_only=True)
class ExchangeFill:
    """What the exchange really did, returned by a broker (or carried by ``OrderDeletedError.fill``).

    A broker method may return an ``ExchangeFill`` instead of True: the call is confirmed and the engine
    books ``price`` (and ``time``, epoch ms) instead of the candle price it decided at — an entry filled
    above the signal's price, an exit filled below the candle. ``on_active_check`` raising
    ``OrderDeletedError(..., fill=ExchangeFill(...))`` tells the engine the exchange closed the position
    (its stop or take-profit filled, or it filled while the bot was down) at that price and time;
    ``reason`` then names why (``take_profit``, ``stop_loss`` or ``closed``).
    """

    price: float = attrs.field(converter=float)
    time: int | None = None
    quantity: float | None = None
    reason: str | None = None

    def __attrs_post_init__(self) -> None:
        if not (self.price > 0 and self.price != float("inf")):
            raise ValueError(f"an exchange fill needs a finite price > 0, got {self.price!r}")


@attrs.frozen(kw_only=True)
class BrokerCall:
    """One broker method call: what the ``btkit_broker_commit`` hook receives."""

    method: str = attrs.field(validator=attrs.validators.in_(BROKER_METHODS))
    payload: CommitPayload
