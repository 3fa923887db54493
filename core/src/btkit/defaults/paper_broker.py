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
        self.realised = 0.0

    def _ok(self, method: str, payload: Any) -> bool:
        self.confirmed.append((method, payload.client_order_id))
        return True

    def on_signal_open_commit(self, p: Any) -> bool:
        return self._ok("on_signal_open_commit", p)

    def on_signal_close_commit(self, p: Any) -> bool:
        pnl = getattr(getattr(p, "pnl", None), "pnl_cost", None)
        if pnl is not None and ("on_signal_close_commit", p.client_order_id) not in self.confirmed:
            self.realised += pnl  # the simulated account books each close once
        return self._ok("on_signal_close_commit", p)

    def get_balance(self) -> float:
        """The simulated account: ``balance`` (option, else the wallet's ``--balance``) + closes since start."""
        from btkit.accounting.wallet import get_wallet

        start = float(self.options.get("balance", get_wallet().balance))
        return start + self.realised

    def on_signal_cancel_commit(self, p: Any) -> bool:
        return self._ok("on_signal_cancel_commit", p)


@hookimpl
def btkit_brokers() -> list[BrokerSpec]:
    return [BrokerSpec(name="paper", factory=PaperBroker, dist="btkit")]
