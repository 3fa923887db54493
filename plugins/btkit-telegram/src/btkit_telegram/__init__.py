"""btkit-telegram: an action that reports a bot's trades to Telegram (docs/telegram.md).

Attach it with ``btkit paper --action telegram`` (or ``add_strategy(..., actions=["telegram"])``); the bot
token comes from ``BTKIT_TELEGRAM_TOKEN`` only, the chats from ``[actions.telegram] chat_ids`` (or
``BTKIT_TELEGRAM_CHAT_IDS``). Nothing is imported beyond the standard library and btkit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from btkit.components import ActionSpec
from btkit.hookspecs import hookimpl

if TYPE_CHECKING:
    from btkit_telegram.action import TelegramAction

__version__ = "0.2.0"
btkit_api = ">=1,<2"  # the btkit plugin API versions this plugin supports (btkit.PLUGIN_API_VERSION)

__all__ = ["TelegramAction", "btkit_actions"]


def __getattr__(name: str) -> Any:
    if name == "TelegramAction":
        from btkit_telegram import action

        return action.TelegramAction
    raise AttributeError(name)


def _make(**options: Any) -> TelegramAction:
    from btkit_telegram.action import TelegramAction

    return TelegramAction(**options)


@hookimpl
def btkit_actions() -> list[ActionSpec]:
    # the handler methods only enqueue; sending (with rate limit and retries) runs on the plugin's thread,
    # so the per-call limit is short; on_stop waits for the outbox up to that limit
    return [ActionSpec(name="telegram", factory=_make, timeout_seconds=30.0, dist="btkit-telegram")]
