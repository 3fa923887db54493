"""The state of one strategy instance, as persisted in live mode (one document per domain).

``InstanceState`` is immutable; the instance replaces it only after the new state is durably written.
"""

from __future__ import annotations

from typing import Literal

import attrs

from btkit.model import SignalRow

IntentAction = Literal["open", "schedule", "activate", "close", "cancel"]


@attrs.frozen(kw_only=True)
class Intent:
    """A broker action in flight: persisted before the broker is called, cleared when it is settled.

    After a crash the engine retries it (same ``client_order_id``) before doing anything else, so a
    position the broker already opened is adopted, never opened a second time.
    """

    action: IntentAction
    signal_id: str
    client_order_id: str
    attempt: int
    row: SignalRow
    reason: str | None = None
    price: float | None = None
    time: int | None = None


@attrs.frozen(kw_only=True)
class StrategyState:
    paused: bool = False
    last_bucket: int | None = None
    last_opened_id: str | None = None
    deferred: tuple[str, ...] = ()
    intent: Intent | None = None
    rejected_ids: tuple[str, ...] = ()
    #: live: the last tick (minute, ms) whose effects are persisted; a restarted replay skips minutes up to it
    last_tick: int | None = None


@attrs.frozen(kw_only=True)
class Levels:
    """Partial-profit/loss levels and breakeven availability already announced for ``signal_id``."""

    signal_id: str | None = None
    profit: tuple[int, ...] = ()
    loss: tuple[int, ...] = ()
    breakeven: bool = False


@attrs.frozen(kw_only=True)
class InstanceState:
    pending: SignalRow | None = None
    scheduled: SignalRow | None = None
    strategy: StrategyState = StrategyState()
    levels: Levels = Levels()


MAX_REJECTED_IDS = 1000


def with_last_bucket(state: InstanceState, bucket: int | None) -> InstanceState:
    """``state`` with ``strategy.last_bucket = bucket``: what every decision does to the state, built
    field by field (half the cost of two ``attrs.evolve`` calls, on a path taken once per bucket)."""
    st = state.strategy
    return InstanceState(
        pending=state.pending,
        scheduled=state.scheduled,
        levels=state.levels,
        strategy=StrategyState(
            paused=st.paused,
            last_bucket=bucket,
            last_opened_id=st.last_opened_id,
            deferred=st.deferred,
            intent=st.intent,
            rejected_ids=st.rejected_ids,
            last_tick=st.last_tick,
        ),
    )
