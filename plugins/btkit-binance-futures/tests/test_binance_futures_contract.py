"""The broker contract suite of btkit (``btkit.testing.BrokerContract``) run against the fake exchange."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from btkit.testing.broker_contract import BrokerContract, ContractSession
from btkit_binance_futures import BinanceFuturesBroker
from btkit_binance_futures.testing import FakeBinanceFutures, broker_for

ORDER = "/fapi/v1/order"
SUBMIT_ATTEMPTS = 3  # BinanceFuturesConfig defaults
READ_ATTEMPTS = 4


class TestBinanceFuturesBrokerContract(BrokerContract):
    """ETHUSDT at 3000 in the payloads; the fake's mark sits at +2 % (where the suite's commands are
    issued), entries are market orders, and every broker is told the symbol may hold a pending action
    (as the engine tells a restarted broker)."""

    @pytest.fixture
    def symbol(self) -> str:
        return "ETHUSDT"

    @pytest.fixture
    def price(self) -> float:
        return 3000.0

    @pytest.fixture
    def account(self, binance_keys: FakeBinanceFutures) -> FakeBinanceFutures:
        binance_keys.set_price(3060, "ETHUSDT")
        return binance_keys

    @pytest.fixture
    def make_broker(self, account: FakeBinanceFutures) -> Callable[[], BinanceFuturesBroker]:
        return lambda: broker_for(account, entry_order_type="market", expected_positions={"ETHUSDT": None})

    @pytest.fixture
    def session(
        self, make_broker: Callable[[], BinanceFuturesBroker], broker_timeout_seconds: float
    ) -> Iterator[ContractSession]:
        """The suite's session, closing every broker's HTTP session on its loop at the end."""
        brokers: list[BinanceFuturesBroker] = []

        def tracked() -> BinanceFuturesBroker:
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
    def placed_orders(self, account: FakeBinanceFutures) -> Callable[[], list[str]]:
        def executions() -> list[str]:
            out = [o.client_id for o in account.orders_log]
            # a cancelled resting entry is the execution of the signal's cancel action
            for order in account.orders():
                cid = order["clientOrderId"]
                if order["status"] == "CANCELED" and cid.endswith("-schedule"):
                    out.append(cid.removesuffix("schedule") + "cancel")
            return out

        return executions

    @pytest.fixture
    def inject_fault(self, account: FakeBinanceFutures) -> Callable[[str], None]:
        def inject(kind: str) -> None:
            if kind == "before_send":  # the exchange is unreachable for the whole call
                account.inject(ORDER, "drop", method="POST", times=SUBMIT_ATTEMPTS)
            elif kind == "after_send":  # executed, the answer lost, and lookups fail for the rest of the call
                account.inject(ORDER, "accept_then_drop", method="POST")
                account.inject(
                    ORDER,
                    "status",
                    method="GET",
                    times=READ_ATTEMPTS,
                    status=503,
                    when=lambda q: account.order_count(q.get("origClientOrderId", "")) > 0,
                )
            elif kind == "refuse":
                account.inject(ORDER, "error", method="POST", code=-2019, msg="Margin is insufficient.")
            else:  # pragma: no cover
                raise ValueError(kind)

        return inject
