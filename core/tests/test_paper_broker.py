"""The built-in paper broker passes the broker contract suite every broker plugin passes."""

from __future__ import annotations

import pytest

from btkit.defaults.paper_broker import PaperBroker
from btkit.testing.broker_contract import BrokerContract, MakeBroker, PlacedOrders


class TestPaperBrokerContract(BrokerContract):
    # paper trading sends nothing to any exchange: nothing may ever count as executed
    places_orders = False

    @pytest.fixture
    def make_broker(self) -> MakeBroker:
        return PaperBroker

    @pytest.fixture
    def placed_orders(self) -> PlacedOrders:
        return lambda: []


def test_paper_broker_confirms_and_records_client_order_ids() -> None:
    from btkit.testing.broker_contract import ContractSession, Payloads

    session = ContractSession(PaperBroker, 5.0)
    try:
        p = Payloads("BTCUSDT", 100.0).open("paper-1")
        assert session.call("on_signal_open_commit", p).confirmed
        assert session.broker.confirmed == [("on_signal_open_commit", p.client_order_id)]
    finally:
        session.close()
