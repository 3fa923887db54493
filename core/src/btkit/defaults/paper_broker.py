"""The default broker: paper trading. Places no orders and confirms every action."""

from __future__ import annotations

from typing import Any

from btkit.components import BrokerSpec
from btkit.hookspecs import hookimpl


class PaperBroker:
    """Confirms everything; remembers what it confirmed (client order ids) for inspection and tests."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.confirmed: list[tuple[str, str]] = []

    def _ok(self, method: str, payload: Any) -> bool:
        self.confirmed.append((method, payload.client_order_id))
        return True

    def on_signal_open_commit(self, p: Any) -> bool:
        return self._ok("on_signal_open_commit", p)

    def on_signal_close_commit(self, p: Any) -> bool:
        return self._ok("on_signal_close_commit", p)

    def on_signal_cancel_commit(self, p: Any) -> bool:
        return self._ok("on_signal_cancel_commit", p)


@hookimpl
def btkit_brokers() -> list[BrokerSpec]:
    return [BrokerSpec(name="paper", factory=PaperBroker, dist="btkit")]
