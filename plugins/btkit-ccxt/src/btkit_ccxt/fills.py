"""The exchange's fill prices from unified ccxt orders and trades (shared by the spot and futures brokers)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from btkit.broker_payloads import ExchangeFill


def _dec(value: Any) -> Decimal:
    return Decimal(0) if value in (None, "") else Decimal(str(value))


def order_fill(order: Mapping[str, Any] | None, reason: str | None = None) -> ExchangeFill | None:
    """The average price, last trade time and filled amount of a unified ccxt order (None if unfilled)."""
    if not order:
        return None
    info = order.get("info") if isinstance(order.get("info"), Mapping) else {}
    price = order.get("average") or _dec(info.get("avgPrice")) or None
    filled = order.get("filled") or _dec(info.get("executedQty")) or None
    if not price or not filled or float(price) <= 0:
        return None
    when = order.get("lastTradeTimestamp") or order.get("lastUpdateTimestamp") or order.get("timestamp")
    return ExchangeFill(
        price=float(price), time=int(when) if when else None, quantity=float(filled), reason=reason
    )


def exit_fill(
    trades: Iterable[Mapping[str, Any]],
    position: str = "long",
    stop: float | None = None,
    take: float | None = None,
) -> ExchangeFill | None:
    """The exits after the last entry in unified ccxt ``trades`` (sells for a long, buys for a short):
    their volume-weighted price, the time of the last one, and the reason — ``take_profit`` at or beyond
    ``take``, ``stop_loss`` at or beyond ``stop`` (0.05 % tolerance for a stop-market's slippage), else
    ``closed``. None when there is no exit after the last entry."""
    entry_side = "buy" if position == "long" else "sell"
    exits: list[Mapping[str, Any]] = []
    for trade in sorted(trades, key=lambda t: t.get("timestamp") or 0):
        if trade.get("side") == entry_side:
            exits = []
        else:
            exits.append(trade)
    amount = sum((_dec(t.get("amount")) for t in exits), Decimal(0))
    if amount <= 0:
        return None
    price = sum((_dec(t.get("amount")) * _dec(t.get("price")) for t in exits), Decimal(0)) / amount
    long = position == "long"
    reason = "closed"
    if take and (price >= _dec(take) if long else price <= _dec(take)):
        reason = "take_profit"
    elif stop and (
        price <= _dec(stop) * Decimal("1.0005") if long else price >= _dec(stop) * Decimal("0.9995")
    ):
        reason = "stop_loss"
    last = exits[-1].get("timestamp")
    return ExchangeFill(
        price=float(price), time=int(last) if last else None, quantity=float(amount), reason=reason
    )
