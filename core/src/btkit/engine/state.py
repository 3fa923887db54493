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
