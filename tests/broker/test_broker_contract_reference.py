"""The broker contract suite run against the reference broker (``btkit.testing.broker_contract``):
once with sync methods, once with async ones, both with fault injection so the outcome tests run.
These also prove the suite can fail: see ``test_contract_catches_*`` below."""

from __future__ import annotations

from typing import Any

import pytest

from btkit.broker_payloads import CommitPayload
from btkit.errors import OrderTransientError
from btkit.testing.broker_contract import (
    BrokerContract,
    ContractSession,
    InjectFault,
    MakeBroker,
    MemoryVenue,
    Payloads,
    PlacedOrders,
    VenueBroker,
)


class AsyncVenueBroker(VenueBroker):
    """The same broker with ``async def`` methods: the engine awaits them on its loop."""

    async def on_signal_open_commit(self, p: Any) -> bool:  # type: ignore[override]
        return super().on_signal_open_commit(p)

    async def on_signal_close_commit(self, p: Any) -> bool:  # type: ignore[override]
        return super().on_signal_close_commit(p)

    async def on_signal_cancel_commit(self, p: Any) -> bool:  # type: ignore[override]
        return super().on_signal_cancel_commit(p)

    async def on_active_check(self, p: Any) -> bool:  # type: ignore[override]
        return super().on_active_check(p)

    async def wait_for_init(self) -> None:  # type: ignore[override]
        return None


class TestVenueBrokerContract(BrokerContract):
    @pytest.fixture
    def venue(self) -> MemoryVenue:
        return MemoryVenue()

    @pytest.fixture
    def make_broker(self, venue: MemoryVenue) -> MakeBroker:
        return lambda: VenueBroker(venue)

    @pytest.fixture
    def placed_orders(self, venue: MemoryVenue) -> PlacedOrders:
        return lambda: list(venue.executions)

    @pytest.fixture
    def inject_fault(self, venue: MemoryVenue) -> InjectFault:
        return venue.fail_next


class TestAsyncVenueBrokerContract(TestVenueBrokerContract):
    @pytest.fixture
    def make_broker(self, venue: MemoryVenue) -> MakeBroker:
        return lambda: AsyncVenueBroker(venue)


# ---------------------------------------------------------------- the suite fails bad brokers
class ForgetfulBroker(VenueBroker):
    """Sends every request without looking the client order id up first: the classic double order."""

    def _send(self, method: str, p: CommitPayload) -> bool:
        self.calls.append((method, p.client_order_id, p.attempt))
        try:
            self.venue.submit(method, p)
        except Exception as exc:
            raise OrderTransientError(str(exc)) from exc
        return True


def test_contract_catches_a_broker_that_sends_twice() -> None:
    venue = MemoryVenue()
    contract = TestVenueBrokerContract()
    session = ContractSession(lambda: ForgetfulBroker(venue), 5.0)
    try:
        with pytest.raises(AssertionError, match="executed 2 time"):
            contract.test_same_client_order_id_twice_executes_once(
                session, Payloads("BTCUSDT", 100.0), lambda: list(venue.executions)
            )
    finally:
        session.close()


def test_contract_catches_a_lost_response_reported_as_success() -> None:
    class Optimist(VenueBroker):
        def _send(self, method: str, p: CommitPayload) -> bool:
            try:
                return super()._send(method, p)
            except OrderTransientError:
                return True  # wrong: the outcome was unknown, not a success

    venue = MemoryVenue()
    session = ContractSession(lambda: Optimist(venue), 5.0)
    try:
        venue.fail_next("before_send")
        with pytest.raises(AssertionError, match="never reached the exchange"):
            TestVenueBrokerContract().test_failure_before_send_is_transient_and_retry_executes_once(
                session, Payloads("BTCUSDT", 100.0), lambda: list(venue.executions), venue.fail_next
            )
    finally:
        session.close()


def test_contract_catches_a_misspelled_method() -> None:
    class Typo(VenueBroker):
        def on_signal_open_comit(self, p: Any) -> bool:
            return True

    session = ContractSession(lambda: Typo(MemoryVenue()), 5.0)
    try:
        with pytest.raises(AssertionError, match="on_signal_open_comit"):
            TestVenueBrokerContract().test_no_misspelled_broker_methods(session)
    finally:
        session.close()
