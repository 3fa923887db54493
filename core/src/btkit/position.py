"""``Position.bracket``: TP/SL prices from percentages, to splat into ``Signal(**…)``."""

from __future__ import annotations

import math

from btkit.errors import SignalValidationError


class Position:
    @staticmethod
    def bracket(
        *, position: str, current_price: float, percent_take_profit: float, percent_stop_loss: float
    ) -> dict[str, object]:
        """``{position, price_take_profit, price_stop_loss}``: TP = price·(1 ± tp/100), SL = price·(1 ∓ sl/100)."""
        if position not in ("long", "short"):
            raise SignalValidationError(f"position must be 'long' or 'short', got {position!r}")
        for name, v in (
            ("current_price", current_price),
            ("percent_take_profit", percent_take_profit),
            ("percent_stop_loss", percent_stop_loss),
        ):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise SignalValidationError(f"{name} must be a finite number > 0, got {v!r}")
        sign = 1 if position == "long" else -1
        return {
            "position": position,
            "price_take_profit": current_price * (1 + sign * percent_take_profit / 100),
            "price_stop_loss": current_price * (1 - sign * percent_stop_loss / 100),
        }
