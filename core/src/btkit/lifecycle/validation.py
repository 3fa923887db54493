"""Signal validation (10-lifecycle.md §6). Each distance check is skipped when its constant is 0."""

from __future__ import annotations

from typing import Any

import attrs

from btkit.config import EngineConfig
from btkit.errors import SignalValidationError
from btkit.model import Signal

_SIGNAL_FIELDS = frozenset(a.name for a in attrs.fields(Signal))


def coerce_signal(raw: Any) -> Signal:
    """Accept a Signal or a dict with Signal's field names; anything else is a clear error."""
    if isinstance(raw, Signal):
        return raw
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - _SIGNAL_FIELDS)
        if unknown:
            raise SignalValidationError(
                f"signal has unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_SIGNAL_FIELDS))}"
            )
        try:
            return Signal(**raw)
        except (TypeError, ValueError) as exc:
            raise SignalValidationError(f"invalid signal: {exc}") from None
    raise SignalValidationError(
        f"get_signal returned {type(raw).__name__}; return a btkit.Signal, a dict or None"
    )


def _pct(a: float, b: float) -> float:
    return abs(a - b) / b * 100.0


# distances are compared with this much slack (percent points): a bracket built as price·(1 − 20/100)
# must not fail a 20 % limit because of the last bit of a float
_SLACK = 1e-9


def validate(
    signal: Signal, *, price_open: float, current_price: float, opens_now: bool, cfg: EngineConfig
) -> None:
    """Raise :class:`SignalValidationError` with the first broken rule; return None when valid."""
    tp, sl = signal.price_take_profit, signal.price_stop_loss
    if signal.position == "long":
        if not tp > price_open:
            raise SignalValidationError(f"long signal: take-profit {tp} must be above the entry {price_open}")
        if not sl < price_open:
            raise SignalValidationError(f"long signal: stop-loss {sl} must be below the entry {price_open}")
    else:
        if not tp < price_open:
            raise SignalValidationError(
                f"short signal: take-profit {tp} must be below the entry {price_open}"
            )
        if not sl > price_open:
            raise SignalValidationError(f"short signal: stop-loss {sl} must be above the entry {price_open}")
    tp_dist, sl_dist = _pct(tp, price_open), _pct(sl, price_open)
    if cfg.min_takeprofit_distance_percent and tp_dist < cfg.min_takeprofit_distance_percent - _SLACK:
        raise SignalValidationError(
            f"take-profit is {tp_dist:.4g}% from the entry, below min_takeprofit_distance_percent="
            f"{cfg.min_takeprofit_distance_percent}: it could not cover fees and slippage"
        )
    if cfg.min_stoploss_distance_percent and sl_dist < cfg.min_stoploss_distance_percent - _SLACK:
        raise SignalValidationError(
            f"stop-loss is {sl_dist:.4g}% from the entry, below min_stoploss_distance_percent="
            f"{cfg.min_stoploss_distance_percent}"
        )
    if cfg.max_stoploss_distance_percent and sl_dist > cfg.max_stoploss_distance_percent + _SLACK:
        raise SignalValidationError(
            f"stop-loss is {sl_dist:.4g}% from the entry, above max_stoploss_distance_percent="
            f"{cfg.max_stoploss_distance_percent}"
        )
    met = signal.minute_estimated_time
    if met is not None and not cfg.lifetime_is_infinite and met > cfg.max_signal_lifetime_minutes:
        raise SignalValidationError(
            f"minute_estimated_time={met} exceeds max_signal_lifetime_minutes={cfg.max_signal_lifetime_minutes}"
        )
    if opens_now and not (min(tp, sl) < current_price < max(tp, sl)):
        raise SignalValidationError(
            f"current price {current_price} is not strictly between stop-loss {sl} and take-profit {tp}: "
            "the position would close immediately"
        )
