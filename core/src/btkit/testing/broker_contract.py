"""The contract test suite every broker plugin passes (the built-in paper broker included), and a
reference broker over an in-memory venue that shows the duties of a broker in code.

A broker package subclasses :class:`BrokerContract` in its tests and overrides two fixtures::

    from btkit.testing import BrokerContract

    class TestMyBrokerContract(BrokerContract):
        @pytest.fixture
        def make_broker(self, test_account):
            # a factory: every call returns a NEW broker object over the SAME exchange account,
            # as a restarted process would build it
            return lambda: MyBroker(api_url=test_account.url, key=test_account.key)

        @pytest.fixture
        def placed_orders(self, test_account):
            # what the exchange executed: one client order id per execution, seen from outside the broker
            return lambda: [order.client_id for order in test_account.executions()]

Optionally override ``inject_fault`` (make the next exchange request fail before it is sent, lose its
response after the exchange executed it, or have the exchange refuse it) to run the outcome tests, and
``symbol`` / ``price`` for a market the test account can trade.

Every call goes through :class:`btkit.broker.BrokerGate`, exactly as the live engine makes it, so a
broker may implement each method sync or async and return True/None (confirmed), False (transient) or
raise ``OrderTransientError`` / ``OrderRejectedError`` / ``OrderDeletedError``.

What the suite checks (40-broker-risk.md §1–2):
- methods are optional, take one payload, and no misspelled ``on_*`` method hides a real one;
- **idempotent client order ids**: the same action sent twice with the same ``client_order_id`` (a retry
  with ``attempt + 1``, or a retry by a restarted process) confirms both times and executes once;
- **definitive vs unknown outcomes**: a request that never reached the exchange is transient; a response
  lost after the exchange executed the order is transient too, and the retry adopts the executed order
  instead of placing a second one; an exchange refusal is a definitive rejection; a close of a position
  that does not exist is definitive (confirmed, rejected or deleted), never an endless transient;
- checks (``on_active_check`` / ``on_schedule_check``) report ``OrderDeletedError`` once the position or
  resting entry is gone.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from btkit.broker import BrokerGate, Verdict
from btkit.broker_payloads import (
    BROKER_METHODS,
    AverageBuyCommit,
    BreakevenCommit,
    CancelCommit,
    CloseCommit,
    CommitPayload,
    OpenCommit,
    PartialCommit,
    TrailingCommit,
    client_order_id,
)
from btkit.errors import OrderDeletedError, OrderRejectedError, OrderTransientError

MakeBroker = Callable[[], Any]
PlacedOrders = Callable[[], list[str]]
InjectFault = Callable[[str], None]

#: Fault kinds ``inject_fault`` understands.
FAULTS: tuple[str, ...] = ("before_send", "after_send", "refuse")
WHEN = 1_704_067_200_000  # 2024-01-01 00:00 UTC: the ``when`` of every contract payload

POSITION_COMMANDS: tuple[str, ...] = (
    "on_partial_profit_commit",
    "on_partial_loss_commit",
    "on_trailing_stop_commit",
    "on_trailing_take_commit",
    "on_breakeven_commit",
    "on_average_buy_commit",
)


# ============================================================ a reference venue and broker
class VenueRefused(Exception):
    """The in-memory exchange refused a request (unknown position, invalid order, ...)."""


@attrs.frozen
class VenueOrder:
    """One order the venue executed."""

    client_order_id: str
    method: str
    signal_id: str
    symbol: str


class MemoryVenue:
    """An in-memory exchange account for tests: executes orders, remembers them by client order id, and
    fails on request. Thread-safe (sync brokers run in worker threads).

    ``fail_next(kind)`` makes the next ``submit`` (optionally only for one method) fail:
    ``"before_send"`` raises ``ConnectionError`` and executes nothing; ``"after_send"`` executes the order
    and then raises ``TimeoutError`` (the response was lost); ``"refuse"`` raises :class:`VenueRefused`.
    """

    def __init__(self) -> None:
        self.orders: dict[str, VenueOrder] = {}
        self.executions: list[str] = []  # one client order id per execution, in order
        self.positions: dict[str, str] = {}  # signal id -> client order id that opened it
        self.resting: dict[str, str] = {}  # signal id -> client order id of a resting entry
        self._faults: list[tuple[str, str | None]] = []
        self._lock = threading.RLock()

    def fail_next(self, kind: str, *, method: str | None = None, times: int = 1) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; use one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend([(kind, method)] * times)

    def _take_fault(self, method: str) -> str | None:
        for i, (kind, only) in enumerate(self._faults):
            if only is None or only == method:
                del self._faults[i]
                return kind
        return None

    def lookup(self, coid: str) -> VenueOrder | None:
        """The order with this client order id, if the venue ever executed it (network faults aside)."""
        with self._lock:
            return self.orders.get(coid)

    def submit(self, method: str, payload: CommitPayload) -> VenueOrder:
        with self._lock:
            fault = self._take_fault(method)
            if fault == "before_send":
                raise ConnectionError(f"connection reset before {method} reached the venue")
            if fault == "refuse":
                raise VenueRefused(f"venue refused {method} for {payload.signal_id}")
            order = self._execute(method, payload)
            if fault == "after_send":
                raise TimeoutError(f"no response to {method} (the venue executed it)")
            return order

    def _execute(self, method: str, p: CommitPayload) -> VenueOrder:
        sid = p.signal_id  # like many exchanges, the venue does not police client order ids for you
        if method == "on_signal_open_commit":
            if getattr(p, "type", "open") == "schedule":
                self.resting[sid] = p.client_order_id
            else:
                self.resting.pop(sid, None)
                self.positions[sid] = p.client_order_id
        elif method == "on_signal_close_commit":
            if sid not in self.positions:
                raise VenueRefused(f"no open position for {sid}")
            del self.positions[sid]
        elif method == "on_signal_cancel_commit":
            if sid not in self.resting:
                raise VenueRefused(f"no resting entry for {sid}")
            del self.resting[sid]
        elif sid not in self.positions:
            raise VenueRefused(f"no open position for {sid}")
        order = VenueOrder(p.client_order_id, method, sid, p.symbol)
        self.orders[p.client_order_id] = order
        self.executions.append(p.client_order_id)
        return order


class VenueBroker:
    """A broker over a :class:`MemoryVenue`, written the way a real broker plugin must work:

    - before sending, look the order up by its client order id — a retry (same id, ``attempt + 1``)
      after a lost response adopts the executed order instead of placing a second one;
    - a network failure is ``OrderTransientError`` (unknown outcome: the engine retries);
    - an exchange refusal is ``OrderRejectedError`` (definitive);
    - closing or cancelling something that is already gone is done, not an error;
    - checks raise ``OrderDeletedError`` when the position or resting entry no longer exists.
    """

    def __init__(self, venue: MemoryVenue | None = None) -> None:
        self.venue = venue if venue is not None else MemoryVenue()
        self.calls: list[tuple[str, str, int]] = []  # (method, client order id, attempt)

    def wait_for_init(self) -> None:
        """A real broker reconciles here: load open orders and positions from the exchange."""
        return None

    def _send(self, method: str, p: CommitPayload) -> bool:
        self.calls.append((method, p.client_order_id, p.attempt))
        if self.venue.lookup(p.client_order_id) is not None:
            return True  # executed by an earlier attempt whose response was lost: adopt it
        try:
            self.venue.submit(method, p)
        except VenueRefused as exc:
            raise OrderRejectedError(f"{method} {p.client_order_id}: {exc}") from exc
        except (ConnectionError, TimeoutError) as exc:
            raise OrderTransientError(f"{method} {p.client_order_id}: outcome unknown ({exc})") from exc
        return True

    def on_signal_open_commit(self, p: OpenCommit) -> bool:
        return self._send("on_signal_open_commit", p)

    def on_signal_close_commit(self, p: CloseCommit) -> bool:
        if self.venue.lookup(p.client_order_id) is None and p.signal_id not in self.venue.positions:
            self.calls.append(("on_signal_close_commit", p.client_order_id, p.attempt))
            return True  # nothing open on the exchange: the close is already done
        return self._send("on_signal_close_commit", p)

    def on_signal_cancel_commit(self, p: CancelCommit) -> bool:
        if self.venue.lookup(p.client_order_id) is None and p.signal_id not in self.venue.resting:
            self.calls.append(("on_signal_cancel_commit", p.client_order_id, p.attempt))
            return True
        return self._send("on_signal_cancel_commit", p)

    def on_partial_profit_commit(self, p: PartialCommit) -> bool:
        return self._send("on_partial_profit_commit", p)

    def on_partial_loss_commit(self, p: PartialCommit) -> bool:
        return self._send("on_partial_loss_commit", p)

    def on_trailing_stop_commit(self, p: TrailingCommit) -> bool:
        return self._send("on_trailing_stop_commit", p)

    def on_trailing_take_commit(self, p: TrailingCommit) -> bool:
        return self._send("on_trailing_take_commit", p)

    def on_breakeven_commit(self, p: BreakevenCommit) -> bool:
        return self._send("on_breakeven_commit", p)

    def on_average_buy_commit(self, p: AverageBuyCommit) -> bool:
        return self._send("on_average_buy_commit", p)

    def on_active_check(self, p: OpenCommit) -> bool:
        if p.signal_id not in self.venue.positions:
            raise OrderDeletedError(f"position {p.signal_id} is no longer open on the venue")
        return True

    def on_schedule_check(self, p: OpenCommit) -> bool:
        if p.signal_id not in self.venue.resting:
            raise OrderDeletedError(f"resting entry {p.signal_id} is no longer on the venue")
        return True


# ============================================================ payloads the suite sends
@attrs.define
class Payloads:
    """Builds well-formed payloads for one market (``symbol`` at ``price``)."""

    symbol: str
    price: float
    strategy_name: str = "contract"
    exchange_name: str = "contract"

    def _base(self, signal_id: str, action: str, attempt: int) -> dict[str, Any]:
        return dict(
            symbol=self.symbol,
            strategy_name=self.strategy_name,
            exchange_name=self.exchange_name,
            signal_id=signal_id,
            when=WHEN,
            attempt=attempt,
            client_order_id=client_order_id(signal_id, action),
            position="long",
        )

    def open(self, signal_id: str, attempt: int = 1, *, type: str = "open") -> OpenCommit:
        return OpenCommit(
            **self._base(signal_id, type, attempt),
            type=type,  # type: ignore[arg-type]
            cost=100.0,
            price_open=self.price if type == "open" else self.price * 0.99,
            price_take_profit=self.price * 1.05,
            price_stop_loss=self.price * 0.95,
        )

    def close(self, signal_id: str, attempt: int = 1) -> CloseCommit:
        return CloseCommit(
            **self._base(signal_id, "close", attempt),
            cost=100.0,
            current_price=self.price * 1.05,
            price_open=self.price,
            price_take_profit=self.price * 1.05,
            price_stop_loss=self.price * 0.95,
            close_reason="take_profit",
            pnl=None,
            total_entries=1,
            total_partials=0,
        )

    def cancel(self, signal_id: str, attempt: int = 1) -> CancelCommit:
        return CancelCommit(
            **self._base(signal_id, "cancel", attempt),
            reason="user",
            price_open=self.price * 0.99,
        )

    def command(self, method: str, signal_id: str, attempt: int = 1, *, seq: int = 1) -> CommitPayload:
        """A position command (partials, trailing, breakeven, average buy); ``seq`` numbers repeats."""
        tag = method.removeprefix("on_").removesuffix("_commit").replace("_", "")[:10] + str(seq)
        base = self._base(signal_id, tag, attempt)
        p = self.price
        if method in ("on_partial_profit_commit", "on_partial_loss_commit"):
            return PartialCommit(
                **base,
                percent_to_close=25.0,
                cost=100.0,
                current_price=p * 1.02,
                price_take_profit=p * 1.05,
                price_stop_loss=p * 0.95,
            )
        if method == "on_trailing_stop_commit":
            return TrailingCommit(
                **base, percent_shift=1.0, current_price=p * 1.02, new_stop_loss_price=p * 0.97
            )
        if method == "on_trailing_take_commit":
            return TrailingCommit(
                **base, percent_shift=1.0, current_price=p * 1.02, new_take_profit_price=p * 1.06
            )
        if method == "on_breakeven_commit":
            return BreakevenCommit(**base, current_price=p * 1.02, new_stop_loss_price=p)
        if method == "on_average_buy_commit":
            return AverageBuyCommit(**base, current_price=p * 0.98, cost=50.0)
        raise ValueError(f"{method} is not a position command")


class ContractSession:
    """Calls brokers through a real :class:`BrokerGate` on one private event loop."""

    def __init__(self, make_broker: MakeBroker, timeout_seconds: float) -> None:
        from btkit.plugins import get_plugin_manager

        self.pm = get_plugin_manager(entrypoints=False)
        self.make_broker = make_broker
        self.timeout = timeout_seconds
        self.loop = asyncio.new_event_loop()
        self.broker = make_broker()
        self.gate = BrokerGate(self.pm, self.broker, timeout_seconds=timeout_seconds)

    def call(self, method: str, payload: CommitPayload) -> Verdict:
        return self.loop.run_until_complete(self.gate.call(method, payload))

    def restart(self) -> None:
        """Drop the broker object and build a new one over the same account (a restarted process)."""
        self.broker = self.make_broker()
        self.gate = BrokerGate(self.pm, self.broker, timeout_seconds=self.timeout)

    def close(self) -> None:
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()


def _kinds(*verdicts: Verdict) -> list[str]:
    return [v.kind for v in verdicts]


# ============================================================ the suite
class BrokerContract:
    """Generic tests of a broker plugin. Subclass it; override ``make_broker`` and ``placed_orders``
    (and optionally ``inject_fault``, ``symbol``, ``price``, ``places_orders``); see the module docstring."""

    #: False for brokers that place nothing anywhere (the paper broker): ``placed_orders`` must then
    #: stay empty, and the execution-count checks become "at most once" checks.
    places_orders: bool = True

    # ------------------------------------------------------------ fixtures to override
    @pytest.fixture
    def make_broker(self) -> MakeBroker:
        pytest.fail("override the `make_broker` fixture: a factory of new broker objects over one account")

    @pytest.fixture
    def placed_orders(self) -> PlacedOrders:
        pytest.fail(
            "override the `placed_orders` fixture: a callable listing the client order ids the exchange "
            "executed, one entry per execution"
        )

    @pytest.fixture
    def inject_fault(self) -> InjectFault | None:
        """Return ``inject(kind)`` (kinds in :data:`FAULTS`) to run the outcome tests; None skips them."""
        return None

    @pytest.fixture
    def symbol(self) -> str:
        return "BTCUSDT"

    @pytest.fixture
    def price(self) -> float:
        return 100.0

    @pytest.fixture
    def broker_timeout_seconds(self) -> float:
        return 30.0

    # ------------------------------------------------------------ helpers
    @pytest.fixture
    def session(self, make_broker: MakeBroker, broker_timeout_seconds: float) -> Iterator[ContractSession]:
        s = ContractSession(make_broker, broker_timeout_seconds)
        try:
            yield s
        finally:
            s.close()

    @pytest.fixture
    def payloads(self, symbol: str, price: float) -> Payloads:
        return Payloads(symbol, price)

    @pytest.fixture
    def faults(self, inject_fault: InjectFault | None) -> InjectFault:
        if inject_fault is None:
            pytest.skip("this broker's tests provide no `inject_fault` fixture; outcome tests not run")
        return inject_fault

    def executed(self, placed_orders: PlacedOrders, coid: str) -> int:
        return list(placed_orders()).count(coid)

    def assert_executed_once(self, placed_orders: PlacedOrders, coid: str) -> None:
        count = self.executed(placed_orders, coid)
        expected = 1 if self.places_orders else 0
        assert count == expected, (
            f"client order id {coid} was executed {count} time(s), expected {expected}: a broker must look "
            "an order up by its client order id before sending it again"
        )

    # ------------------------------------------------------------ shape
    def test_methods_are_optional_and_take_one_payload(self, session: ContractSession) -> None:
        broker = session.broker
        for name in BROKER_METHODS:
            fn = getattr(broker, name, None)
            if fn is None:
                continue
            assert callable(fn), f"{type(broker).__name__}.{name} must be a method"
            try:
                inspect.signature(fn).bind(object())
            except TypeError as exc:
                pytest.fail(f"{type(broker).__name__}.{name} must accept exactly one payload ({exc})")
        init = getattr(broker, "wait_for_init", None)
        if init is not None:
            inspect.signature(init).bind()

    def test_no_misspelled_broker_methods(self, session: ContractSession) -> None:
        broker = session.broker
        suspicious = [
            n
            for n in dir(broker)
            if n.startswith("on_")
            and n not in BROKER_METHODS
            and (n.endswith(("_commit", "_check")) or difflib.get_close_matches(n, BROKER_METHODS, 1, 0.8))
        ]
        assert not suspicious, (
            f"{type(broker).__name__} defines {', '.join(suspicious)}, which the engine never calls; "
            f"broker methods are: {', '.join(BROKER_METHODS)}"
        )

    def test_wait_for_init_completes(self, session: ContractSession, payloads: Payloads) -> None:
        # the gate awaits wait_for_init (when defined) before the first call
        assert session.call("on_signal_open_commit", payloads.open("c-init")).kind == "confirmed"

    # ------------------------------------------------------------ idempotent client order ids
    def test_open_confirms_and_executes_once(
        self, session: ContractSession, payloads: Payloads, placed_orders: PlacedOrders
    ) -> None:
        p = payloads.open("c-open")
        assert session.call("on_signal_open_commit", p).kind == "confirmed"
        self.assert_executed_once(placed_orders, p.client_order_id)

    def test_same_client_order_id_twice_executes_once(
        self, session: ContractSession, payloads: Payloads, placed_orders: PlacedOrders
    ) -> None:
        first = session.call("on_signal_open_commit", payloads.open("c-twice", attempt=1))
        again = session.call("on_signal_open_commit", payloads.open("c-twice", attempt=2))
        assert _kinds(first, again) == ["confirmed", "confirmed"], (
            "a retry with the same client order id must confirm (adopt the existing order), not fail"
        )
        self.assert_executed_once(placed_orders, client_order_id("c-twice", "open"))

    def test_restarted_broker_adopts_the_order(
        self, session: ContractSession, payloads: Payloads, placed_orders: PlacedOrders
    ) -> None:
        assert session.call("on_signal_open_commit", payloads.open("c-restart", attempt=1)).confirmed
        session.restart()
        assert session.call("on_signal_open_commit", payloads.open("c-restart", attempt=2)).confirmed
        self.assert_executed_once(placed_orders, client_order_id("c-restart", "open"))

    def test_close_confirms_once(
        self, session: ContractSession, payloads: Payloads, placed_orders: PlacedOrders
    ) -> None:
        assert session.call("on_signal_open_commit", payloads.open("c-close")).confirmed
        first = session.call("on_signal_close_commit", payloads.close("c-close", attempt=1))
        again = session.call("on_signal_close_commit", payloads.close("c-close", attempt=2))
        assert _kinds(first, again) == ["confirmed", "confirmed"]
        self.assert_executed_once(placed_orders, client_order_id("c-close", "close"))

    def test_schedule_and_cancel_confirm_once(
        self, session: ContractSession, payloads: Payloads, placed_orders: PlacedOrders
    ) -> None:
        placed = session.call("on_signal_open_commit", payloads.open("c-rest", type="schedule"))
        assert placed.confirmed
        first = session.call("on_signal_cancel_commit", payloads.cancel("c-rest", attempt=1))
        again = session.call("on_signal_cancel_commit", payloads.cancel("c-rest", attempt=2))
        assert _kinds(first, again) == ["confirmed", "confirmed"]
        self.assert_executed_once(placed_orders, client_order_id("c-rest", "schedule"))
        self.assert_executed_once(placed_orders, client_order_id("c-rest", "cancel"))

    @pytest.mark.parametrize("method", POSITION_COMMANDS)
    def test_position_command_executes_once(
        self, session: ContractSession, payloads: Payloads, placed_orders: PlacedOrders, method: str
    ) -> None:
        assert session.call("on_signal_open_commit", payloads.open("c-cmd")).confirmed
        first = session.call(method, payloads.command(method, "c-cmd", attempt=1))
        again = session.call(method, payloads.command(method, "c-cmd", attempt=2))
        assert _kinds(first, again) == ["confirmed", "confirmed"]
        if getattr(session.broker, method, None) is not None:
            self.assert_executed_once(placed_orders, payloads.command(method, "c-cmd").client_order_id)

    # ------------------------------------------------------------ definitive outcomes
    def test_close_of_unknown_position_is_definitive(
        self, session: ContractSession, payloads: Payloads
    ) -> None:
        verdict = session.call("on_signal_close_commit", payloads.close("c-never-opened"))
        assert verdict.kind in ("confirmed", "rejected", "deleted"), (
            f"closing a position that does not exist gave a {verdict.kind} verdict ({verdict.error}); it "
            "must be definitive, or the engine retries it until the close is forced"
        )

    def test_active_check_tracks_the_position(self, session: ContractSession, payloads: Payloads) -> None:
        implemented = getattr(session.broker, "on_active_check", None) is not None
        assert session.call("on_signal_open_commit", payloads.open("c-check")).confirmed
        assert session.call("on_active_check", payloads.open("c-check")).kind == "confirmed"
        assert session.call("on_signal_close_commit", payloads.close("c-check")).confirmed
        after = session.call("on_active_check", payloads.open("c-check"))
        assert after.kind == ("deleted" if implemented else "confirmed"), (
            "on_active_check must raise OrderDeletedError once the position is closed"
        )
        never = session.call("on_active_check", payloads.open("c-check-never"))
        assert never.kind == ("deleted" if implemented else "confirmed")

    def test_schedule_check_tracks_the_resting_entry(
        self, session: ContractSession, payloads: Payloads
    ) -> None:
        implemented = getattr(session.broker, "on_schedule_check", None) is not None
        rest = payloads.open("c-scheck", type="schedule")
        assert session.call("on_signal_open_commit", rest).confirmed
        assert session.call("on_schedule_check", rest).kind == "confirmed"
        assert session.call("on_signal_cancel_commit", payloads.cancel("c-scheck")).confirmed
        after = session.call("on_schedule_check", rest)
        assert after.kind == ("deleted" if implemented else "confirmed"), (
            "on_schedule_check must raise OrderDeletedError once the resting entry is cancelled"
        )

    # ------------------------------------------------------------ unknown outcomes (needs inject_fault)
    def test_failure_before_send_is_transient_and_retry_executes_once(
        self, session: ContractSession, payloads: Payloads, placed_orders: PlacedOrders, faults: InjectFault
    ) -> None:
        faults("before_send")
        failed = session.call("on_signal_open_commit", payloads.open("c-pre", attempt=1))
        assert failed.kind == "transient", f"a request that never reached the exchange gave {failed.kind}"
        assert self.executed(placed_orders, client_order_id("c-pre", "open")) == 0
        assert session.call("on_signal_open_commit", payloads.open("c-pre", attempt=2)).confirmed
        self.assert_executed_once(placed_orders, client_order_id("c-pre", "open"))

    def test_lost_response_is_transient_and_retry_adopts_the_order(
        self, session: ContractSession, payloads: Payloads, placed_orders: PlacedOrders, faults: InjectFault
    ) -> None:
        faults("after_send")
        lost = session.call("on_signal_open_commit", payloads.open("c-lost", attempt=1))
        assert lost.kind == "transient", (
            f"a lost response gave a {lost.kind} verdict; the outcome is unknown, so it must be transient"
        )
        assert session.call("on_signal_open_commit", payloads.open("c-lost", attempt=2)).confirmed
        self.assert_executed_once(placed_orders, client_order_id("c-lost", "open"))

    def test_lost_close_response_then_restart_closes_once(
        self, session: ContractSession, payloads: Payloads, placed_orders: PlacedOrders, faults: InjectFault
    ) -> None:
        assert session.call("on_signal_open_commit", payloads.open("c-lost-close")).confirmed
        faults("after_send")
        assert session.call("on_signal_close_commit", payloads.close("c-lost-close", 1)).kind == "transient"
        session.restart()
        assert session.call("on_signal_close_commit", payloads.close("c-lost-close", 2)).confirmed
        self.assert_executed_once(placed_orders, client_order_id("c-lost-close", "close"))

    def test_refusal_is_a_definitive_rejection(
        self, session: ContractSession, payloads: Payloads, placed_orders: PlacedOrders, faults: InjectFault
    ) -> None:
        faults("refuse")
        verdict = session.call("on_signal_open_commit", payloads.open("c-refused"))
        assert verdict.kind == "rejected", (
            f"an exchange refusal gave a {verdict.kind} verdict; raise OrderRejectedError for a definitive "
            "refusal"
        )
        assert self.executed(placed_orders, client_order_id("c-refused", "open")) == 0
