"""The account-wide reads the futures broker shares between symbols (see :mod:`btkit_ccxt.reads`).

- positions: one ``GET /fapi/v3/positionRisk`` without a symbol (weight 5, the same as with one) answers
  the position checks of every symbol in the same moment;
- open conditional orders: one ``GET /fapi/v1/openAlgoOrders`` without a symbol weighs 40 against 1 with
  one, so it is shared only while the broker trades more than 40 symbols.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from btkit_ccxt.reads import SharedRead

#: symbols above which one account-wide conditional-order read (weight 40) beats one read per symbol (1)
ALGO_SHARE_ABOVE = 40


class AccountReads:
    """The shared reads of one ccxt ``binanceusdm`` client; ``read(what, fn)`` is the broker's bounded
    retry around one request."""

    def __init__(
        self, client: Any, read: Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[Any]]
    ) -> None:
        self.positions: SharedRead[list[dict[str, Any]]] = SharedRead(
            lambda: read("reading positions", lambda: client.fetch_positions(None))
        )
        self.algos: SharedRead[list[dict[str, Any]]] = SharedRead(
            lambda: read(
                "reading open conditional orders",
                lambda: client.fetch_open_orders(None, None, None, {"trigger": True}),
            )
        )

    def touched(self, symbol: str) -> None:
        """An order was sent, cancelled or looked up on ``symbol``: its next reads must start after now."""
        self.positions.touched((symbol,))
        self.algos.touched((symbol,))

    @staticmethod
    def share_algos(symbols: int) -> bool:
        return symbols > ALGO_SHARE_ABOVE
