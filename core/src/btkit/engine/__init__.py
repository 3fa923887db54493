"""Drivers of the one lifecycle: the backtest runner and the live runner, and the per-instance tick."""
