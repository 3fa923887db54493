"""btkit: backtest and live-trade the same strategy code.

This module is the public API of 00-product.md, re-exported; nothing else lives here.
"""

from btkit.broker import Broker
from btkit.commands import (
    commit_average_buy,
    commit_breakeven,
    commit_cancel_scheduled,
    commit_close_pending,
    commit_partial_loss,
    commit_partial_profit,
    commit_trailing_stop,
    commit_trailing_take,
    get_pending_signal,
    get_position_effective_price,
    get_position_entries,
    get_position_pnl_cost,
    get_position_pnl_percent,
    get_scheduled_signal,
    get_total_percent_closed,
)
from btkit.config import get_config, set_config
from btkit.context import get_date, get_mode
from btkit.engine.backtest import Backtest
from btkit.engine.clock import ReplayClock, WallClock
from btkit.engine.live import Live, use_persistence
from btkit.errors import (
    BtkitError,
    CandleDataError,
    ConfigError,
    CorruptStateError,
    InsufficientDataError,
    OrderDeletedError,
    OrderRejectedError,
    OrderTransientError,
    PersistenceError,
    PluginError,
    SignalValidationError,
    StateLockedError,
)
from btkit.events import (
    listen_active_ping,
    listen_backtest_progress,
    listen_breakeven_available,
    listen_done_backtest,
    listen_done_live,
    listen_error,
    listen_idle_ping,
    listen_partial_loss_available,
    listen_partial_profit_available,
    listen_risk,
    listen_schedule_ping,
    listen_signal,
    listen_signal_backtest,
    listen_signal_live,
)
from btkit.hookspecs import hookimpl
from btkit.market import get_average_price, get_candles
from btkit.model import (
    Active,
    Cancelled,
    Candle,
    Candles,
    Closed,
    Idle,
    Opened,
    Pnl,
    Scheduled,
    Signal,
    Waiting,
)
from btkit.persist.adapter import PersistSignalAdapter
from btkit.plugins import PLUGIN_API_VERSION
from btkit.position import Position
from btkit.registry import add_exchange, add_frame, add_risk, add_strategy

__version__ = "0.2.0"  # the one place: pyproject reads it ([tool.hatch.version])

__all__ = [
    "PLUGIN_API_VERSION",
    "Active",
    "Backtest",
    "Broker",
    "BtkitError",
    "Cancelled",
    "Candle",
    "CandleDataError",
    "Candles",
    "Closed",
    "ConfigError",
    "CorruptStateError",
    "Idle",
    "InsufficientDataError",
    "Live",
    "Opened",
    "OrderDeletedError",
    "OrderRejectedError",
    "OrderTransientError",
    "PersistSignalAdapter",
    "PersistenceError",
    "PluginError",
    "Pnl",
    "Position",
    "ReplayClock",
    "Scheduled",
    "Signal",
    "SignalValidationError",
    "StateLockedError",
    "Waiting",
    "WallClock",
    "add_exchange",
    "add_frame",
    "add_risk",
    "add_strategy",
    "commit_average_buy",
    "commit_breakeven",
    "commit_cancel_scheduled",
    "commit_close_pending",
    "commit_partial_loss",
    "commit_partial_profit",
    "commit_trailing_stop",
    "commit_trailing_take",
    "get_average_price",
    "get_candles",
    "get_config",
    "get_date",
    "get_mode",
    "get_pending_signal",
    "get_position_effective_price",
    "get_position_entries",
    "get_position_pnl_cost",
    "get_position_pnl_percent",
    "get_scheduled_signal",
    "get_total_percent_closed",
    "hookimpl",
    "listen_active_ping",
    "listen_backtest_progress",
    "listen_breakeven_available",
    "listen_done_backtest",
    "listen_done_live",
    "listen_error",
    "listen_idle_ping",
    "listen_partial_loss_available",
    "listen_partial_profit_available",
    "listen_risk",
    "listen_schedule_ping",
    "listen_signal",
    "listen_signal_backtest",
    "listen_signal_live",
    "set_config",
    "use_persistence",
]

# array-form strategies (issue 13, docs/array-strategies.md); money: wallet and position sizing (issue 12)
from btkit.accounting import SizingRequest, SizingSpec, get_wallet, set_wallet
from btkit.components import ArrayForm

# strategy parameters and research (issue 14: docs/parameters.md, walker.md, optimizer.md)
from btkit.params import CategoricalParam, FloatParam, IntParam, Param, get_params
from btkit.registry import add_array_strategy, add_sizing
from btkit.research import Walker, add_walker, optimize, walk_forward

__all__ += ["ArrayForm", "add_array_strategy"]
__all__ += ["SizingRequest", "SizingSpec", "add_sizing", "get_wallet", "set_wallet"]

# ---------------------------------------------------------------- running a bot (issue 17: docs/actions.md)
from btkit.components import ActionSpec  # noqa: E402
from btkit.ops.actions import drain_actions  # noqa: E402  (installs the action dispatcher on the events)
from btkit.registry import add_action  # noqa: E402

__all__ += ["ActionSpec", "add_action", "drain_actions"]
__all__ += ["CategoricalParam", "FloatParam", "IntParam", "Param", "get_params"]
__all__ += ["Walker", "add_walker", "optimize", "walk_forward"]
