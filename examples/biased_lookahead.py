"""A deliberately biased array-form strategy, for ``btkit check lookahead`` (docs/checks.md).

``next_close`` is the NEXT bar's close (``shift(-1)``): in a backtest every signal "knows" the next close,
live the last row has no next bar. The check re-runs the strategy on data cut at each signal bar and reports
that ``next_close`` and ``enter`` moved::

    uv run btkit check lookahead --strategy-file examples/biased_lookahead.py --strategy biased-shift

(exit code 1). Needs pandas: ``pip install btkit[ta]``.
"""

from __future__ import annotations

from typing import Any

import btkit


def populate(df: Any) -> Any:
    df["next_close"] = df["close"].shift(-1)  # the bug: tomorrow's close, today
    df["enter"] = (df["next_close"] > df["close"] * 1.003).astype("int8")
    return df


btkit.add_array_strategy(
    "biased-shift",
    populate,
    interval="15m",
    window=50,
    pandas=True,
    defaults={"percent_take_profit": 1.0, "percent_stop_loss": 1.0, "minute_estimated_time": 240},
)
