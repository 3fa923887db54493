"""Every btkit hook, in one module (pluggy project name ``btkit``).

Plugins implement these with ``@btkit.hookimpl``. Hooks only ever gain arguments; an implementation may
take fewer arguments than the spec lists. Each hook has a reference page in ``docs/hooks/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from btkit.broker_payloads import BrokerCall
    from btkit.components import (
        ActionSpec,
        BrokerSpec,
        ExchangeSpec,
        FrameSpec,
        PersistenceBackendSpec,
        RiskSpec,
        StrategySpec,
    )
    from btkit.model import Signal, TickResult
    from btkit.persist.backend import Backend, Change, Key
    from btkit.risk import RiskPayload, RiskRejection

PROJECT = "btkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ============================================================ registries
# Each returns a list of typed records naming components. The run selects components by configured
# name; two records with the same name (from different distributions) are an error naming both.


@hookspec
def btkit_exchanges() -> Sequence[ExchangeSpec]:
    """Called once when a run collects components. Return the exchanges this plugin offers."""


@hookspec
def btkit_strategies() -> Sequence[StrategySpec]:
    """Called once when a run collects components. Return the strategies this plugin offers."""


@hookspec
def btkit_brokers() -> Sequence[BrokerSpec]:
    """Called once when a run collects components. Return the brokers this plugin offers."""


@hookspec
def btkit_persistence_backends() -> Sequence[PersistenceBackendSpec]:
    """Called once when a run collects components. Return the persistence backends this plugin offers."""


@hookspec
def btkit_risks() -> Sequence[RiskSpec]:
    """Called once when a run collects components. Return the risk profiles this plugin offers."""


@hookspec
def btkit_frames() -> Sequence[FrameSpec]:
    """Called once when a run collects components. Return the backtest frames this plugin offers."""


# ============================================================ runtime
@hookspec(firstresult=True)
def btkit_get_signal(
    strategy: StrategySpec, symbol: str, when: datetime, current_price: float
) -> Signal | dict[str, Any] | None:
    """Called on every tick that may create a signal (after the interval throttle), inside the
    execution context, so ``btkit.get_candles`` works. Return a Signal, a dict, None, or an awaitable
    of one of those. The built-in implementation calls ``strategy.get_signal`` and runs last, so other
    plugins can pre-empt it; a ``wrapper=True`` implementation can veto or rewrite the result.
    Stops at the first non-None result."""


@hookspec
def btkit_risk_check(payload: RiskPayload) -> str | None:
    """Called for every candidate signal before it opens or is scheduled, and again when a scheduled
    signal activates. Return None to allow, or a non-empty string (the note) to reject; raising rejects
    with the exception message. All results are collected: any rejection wins."""


@hookspec(firstresult=True)
def btkit_persist_read(backend: Backend, domain: str, key: Key) -> dict[str, Any] | None:
    """Called when live state is loaded. Return the stored JSON document or None when absent (the
    built-in implementation reads from the selected backend). Stops at the first non-None result."""


@hookspec(firstresult=True)
def btkit_persist_write(backend: Backend, changes: Sequence[Change]) -> bool | None:
    """Called on every live state change, before any side effect that depends on it. Write all
    ``changes`` durably (as one transaction where the backend can) and return True; raise to refuse
    (the change then does not happen). The built-in implementation delegates to the selected backend.
    Stops at the first non-None result."""


@hookspec(firstresult=True)
def btkit_persist_delete(backend: Backend, domain: str, key: Key) -> bool | None:
    """Called when one document must disappear outside a state change (``btkit persistence forget``).
    Return True once deleted; the built-in implementation delegates to the selected backend.
    Stops at the first non-None result."""


@hookspec(firstresult=True)
def btkit_broker_commit(broker: Any, call: BrokerCall) -> Any:
    """Called in live mode before every state change that needs the exchange (open, close, partials,
    trailing, breakeven, average buy, checks), after the intent was persisted. Exactly one broker acts:
    the built-in implementation calls ``call.method`` on the selected broker. Return its verdict (True /
    False / awaitable); raise ``OrderRejectedError``, ``OrderTransientError`` or ``OrderDeletedError``.
    Stops at the first non-None result."""


# ============================================================ notifications
@hookspec
def btkit_signal_event(result: TickResult) -> None:
    """Called for every scheduled, opened, closed and cancelled result, in backtest and live.
    Observers only: the return value is ignored."""


@hookspec
def btkit_commit_failed(call: BrokerCall, error: BaseException, verdict: str) -> None:
    """Called when a broker call did not confirm (``verdict`` is "transient", "rejected" or "deleted").
    Observers only: the return value is ignored."""


@hookspec
def btkit_risk_rejected(payload: RiskRejection, note: str) -> None:
    """Called when a risk check rejects a candidate signal (``payload`` is the rejection: profile, note,
    symbol, strategy, active position count, signal). Observers only: the return value is ignored."""


@hookspec
def btkit_run_error(error: BaseException, where: str) -> None:
    """Called for every error reported on ``listen_error`` (strategy exceptions, exchange faults,
    validation rejections, persistence failures). Observers only: the return value is ignored."""


# ============================================================ accounting (issue 12: wallet and sizing)
if TYPE_CHECKING:
    from btkit.accounting.sizing import SizingSpec


@hookspec
def btkit_sizings() -> Sequence[SizingSpec]:
    """Called once when a run collects components. Return the position sizing methods this plugin offers
    (``btkit.accounting.SizingSpec`` records); the run picks one by name (``--sizing NAME[:ARG]``)."""


# ============================================================ research (issue 14: executors)
if TYPE_CHECKING:
    from btkit.research.executors import ExecutorSpec


@hookspec
def btkit_executors() -> Sequence[ExecutorSpec]:
    """Called when research (``btkit optimize``, ``btkit walk``, the Python API) picks an executor. Return
    the executors this plugin offers (``btkit.research.executors.ExecutorSpec`` records: name, factory
    taking ``ExecutorOptions``); the lists of all plugins are concatenated and the run picks one by name
    (``--executor NAME``)."""


# ============================================================ operations (issue 17: running a bot)
@hookspec
def btkit_actions() -> Sequence[ActionSpec]:
    """Called once when a run collects components. Return the actions this plugin offers
    (``btkit.ActionSpec`` records: named per-strategy event sinks, e.g. a Telegram notifier); a strategy
    attaches them by name with ``actions=[...]`` (or ``btkit paper --action NAME``)."""
