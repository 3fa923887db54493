"""The broker contract suite of btkit run against ``ccxt:binance`` spot on the fake spot exchange."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from btkit.testing.broker_contract import BrokerContract, ContractSession
from btkit_ccxt.spot import CcxtSpotBroker
from btkit_ccxt.testing import FakeSpotExchange, spot_client_options

ORDER = "/api/v3/order"
SUBMIT_ATTEMPTS = 3  # SpotConfig defaults
READ_ATTEMPTS = 4


def spot_broker(fake: FakeSpotExchange, **options: object) -> CcxtSpotBroker:
    return CcxtSpotBroker("binance", **spot_client_options(fake, **options))


class TestCcxtSpotBrokerContract(BrokerContract):
    """ETHUSDT at 3000 in the payloads, the fake's price at +2 %; market entries; every broker is told
    the symbol may hold an action in flight (as the engine tells a restarted broker)."""

    @pytest.fixture
    def symbol(self) -> str:
        return "ETHUSDT"

    @pytest.fixture
    def price(self) -> float:
        return 3000.0

    @pytest.fixture
    def account(self, spot_keys: FakeSpotExchange) -> FakeSpotExchange:
        spot_keys.set_price(3060, "ETHUSDT")
        return spot_keys

    @pytest.fixture
    def make_broker(self, account: FakeSpotExchange) -> Callable[[], CcxtSpotBroker]:
        return lambda: spot_broker(account, entry_order_type="market", expected_positions={"ETHUSDT": None})

    @pytest.fixture
    def session(
        self, make_broker: Callable[[], CcxtSpotBroker], broker_timeout_seconds: float
    ) -> Iterator[ContractSession]:
        brokers: list[CcxtSpotBroker] = []

        def tracked() -> CcxtSpotBroker:
            brokers.append(make_broker())
            return brokers[-1]

        s = ContractSession(tracked, broker_timeout_seconds)
        try:
            yield s
        finally:
            for broker in brokers:
                s.loop.run_until_complete(broker.close())
            s.close()

    @pytest.fixture
    def placed_orders(self, account: FakeSpotExchange) -> Callable[[], list[str]]:
        def executions() -> list[str]:
            out = list(account.placed)
            for order in account.orders():  # a cancelled resting entry is the cancel action's execution
                cid = order["clientOrderId"]
                if order["status"] == "CANCELED" and cid.endswith("-schedule"):
                    out.append(cid.removesuffix("schedule") + "cancel")
            return out

        return executions

    @pytest.fixture
    def inject_fault(self, account: FakeSpotExchange) -> Callable[[str], None]:
        def inject(kind: str) -> None:
            if kind == "before_send":
                account.inject(ORDER, "drop", method="POST", times=SUBMIT_ATTEMPTS)
            elif kind == "after_send":  # executed, the answer lost, lookups failing for the rest of the call
                account.inject(ORDER, "accept_then_drop", method="POST")
                account.inject(
                    ORDER,
                    "status",
                    method="GET",
                    times=READ_ATTEMPTS,
                    when=lambda q: account.order_count(q.get("origClientOrderId", "")) > 0,
                )
            elif kind == "refuse":
                account.inject(
                    ORDER,
                    "error",
                    method="POST",
                    code=-2010,
                    msg="Account has insufficient balance for requested action.",
                )
            else:  # pragma: no cover
                raise ValueError(kind)

        return inject
