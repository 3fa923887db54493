"""An array-form strategy with a very tight bracket, for ``btkit check intrabar`` (docs/checks.md).

On 1-minute bars it goes long on every 5-bar high, with a take profit and a stop loss only 0.6 % away:
many closing candles reach both levels, and its result hinges on which came first inside the candle::

    uv run btkit check intrabar --strategy-file examples/tight_bracket.py --strategy tight-bracket
"""

from __future__ import annotations

import numpy as np

import btkit


def populate(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    close = c["close"]
    enter = np.zeros(len(close), dtype=np.int8)
    enter[5:] = close[5:] > np.max(np.lib.stride_tricks.sliding_window_view(close, 5)[:-1], axis=1)
    return {"enter": enter}


btkit.add_array_strategy(
    "tight-bracket",
    populate,
    interval="1m",
    window=10,
    defaults={"percent_take_profit": 0.6, "percent_stop_loss": 0.6, "minute_estimated_time": 60},
)
