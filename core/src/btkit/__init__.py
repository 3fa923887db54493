"""btkit: backtest and live-trade the same strategy code."""

from btkit.hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
