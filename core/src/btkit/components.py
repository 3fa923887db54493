"""Typed registry records: what the registry hooks return and what ``add_*`` functions create.

A run selects components by name from these records, never by plugin order. ``dist`` names the
distribution that registered the record ("<code>" for in-process registrations), so duplicate names
can be reported with both owners.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import attrs

from btkit.errors import ConfigError
from btkit.params import Param, params_of

INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "1d": 86_400_000,
}
STRATEGY_INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h")


def interval_ms(interval: str) -> int:
    try:
        return INTERVAL_MS[interval]
    except KeyError:
        raise ConfigError(f"unknown interval {interval!r}; use one of {', '.join(INTERVAL_MS)}") from None


def _name(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{type(inst).__name__}.{a.name} must be a non-empty string, got {v!r}")


def _callable(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if not callable(v):
        raise ConfigError(f"{type(inst).__name__} {inst.name!r}: {a.name} must be callable")


def _opt_callable(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if v is not None:
        _callable(inst, a, v)


def _strategy_interval(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if v not in STRATEGY_INTERVALS:
        raise ConfigError(
            f"strategy {inst.name!r}: interval {v!r} is not a strategy interval; use one of "
            f"{', '.join(STRATEGY_INTERVALS)}"
        )


def _interval(inst: Any, a: attrs.Attribute, v: Any) -> None:
    interval_ms(v)


@attrs.frozen(kw_only=True)
class ExchangeSpec:
    """An exchange: ``get_candles(symbol, interval, since: datetime, limit)`` returns candles
    (``Candle``, dicts, ``(ts_ms, o, h, l, c, v)`` tuples or an ``(n, 6)`` array), sync or async."""

    name: str = attrs.field(validator=_name)
    get_candles: Callable[..., Any] = attrs.field(validator=_callable)
    format_price: Callable[[str, float], str] | None = attrs.field(default=None, validator=_opt_callable)
    format_quantity: Callable[[str, float], str] | None = attrs.field(default=None, validator=_opt_callable)
    close: Callable[[], Any] | None = None
    dist: str = "<code>"


# ---------------------------------------------------------------- array form (docs/array-strategies.md)
ARRAY_DEFAULT_KEYS = (
    "percent_take_profit",
    "percent_stop_loss",
    "price_take_profit",
    "price_stop_loss",
    "minute_estimated_time",
    "cost",
    "note",
    "multiplier",
    "isolated",
)


def _populate(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if not callable(v):
        raise ConfigError(f"ArrayForm.populate must be callable, got {type(v).__name__}")


def _window(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 2:
        raise ConfigError(f"ArrayForm.window must be a whole number >= 2, got {v!r}")


def _informative(inst: Any, a: attrs.Attribute, v: Any) -> None:
    for iv in v:
        interval_ms(iv)


def _defaults(inst: Any, a: attrs.Attribute, v: Any) -> None:
    unknown = sorted(set(v) - set(ARRAY_DEFAULT_KEYS))
    if unknown:
        raise ConfigError(
            f"ArrayForm.defaults: unknown key(s) {', '.join(unknown)}; use {', '.join(ARRAY_DEFAULT_KEYS)}"
        )


@attrs.frozen(kw_only=True)
class ArrayForm:
    """The array form of a strategy: ``populate(candles)`` returns, per bar, the signal to request.

    ``candles`` is a dict of float64 numpy columns (``timestamp`` int64 ms open times, ``open`` … ``volume``,
    and ``<column>_<interval>`` for each ``informative`` interval, aligned so a bar sees only closed
    higher-timeframe bars), or a pandas DataFrame of the same columns (plus ``date``) when ``pandas=True``.
    It returns an ``enter`` column (1 long, -1 short, 0 nothing) and optionally per-bar signal columns
    (``price_open``, ``price_take_profit``, ``price_stop_loss``, ``percent_take_profit``,
    ``percent_stop_loss``, ``minute_estimated_time``, ``cost``) plus any indicator columns. ``defaults``
    fill signal fields for every request. Live passes the last ``window`` candles each tick and uses the last
    row; a backtest passes the whole run at once (with ``window`` candles of warm-up before the frame).
    """

    populate: Callable[[Any], Any] = attrs.field(validator=_populate)
    window: int = attrs.field(default=500, validator=_window)
    pandas: bool = False
    informative: Sequence[str] = attrs.field(default=(), converter=tuple, validator=_informative)
    # eq=False: a dict is unhashable, and a StrategySpec must stay hashable like the other records
    defaults: Any = attrs.field(factory=dict, converter=dict, validator=_defaults, eq=False)
    # the warm-up/live window for given parameter values (docs/parameters.md), e.g. ``lambda p: p["slow"] + 1``;
    # the run uses the larger of ``window`` and this
    window_for: Callable[[Any], int] | None = attrs.field(default=None, eq=False)

    def effective_window(self, params: Any) -> int:
        """The window of a run with these parameter values."""
        if self.window_for is None or params is None:
            return self.window
        return max(self.window, int(self.window_for(params)))


@attrs.frozen(kw_only=True)
class StrategySpec:
    """A strategy: ``get_signal(symbol, when, current_price)`` returns a Signal, a dict or None; or, in the
    array form, ``array=ArrayForm(populate=…)`` computes the requests of every bar at once."""

    name: str = attrs.field(validator=_name)
    get_signal: Callable[..., Any] | None = attrs.field(default=None, validator=_opt_callable)
    interval: str = attrs.field(default="1m", validator=_strategy_interval)
    risk: str | None = None
    risks: Sequence[str] = attrs.field(default=(), converter=tuple)
    callbacks: Any = None
    dist: str = "<code>"
    array: ArrayForm | None = None  # the array form (issue 13); exactly one of get_signal / array
    #: names of the actions (``btkit.ActionSpec``) that receive this strategy's events (docs/actions.md)
    actions: Sequence[str] = attrs.field(default=(), converter=tuple)
    # typed parameters with defaults and ranges (issue 14, docs/parameters.md); eq=False keeps it hashable
    params: dict[str, Param] = attrs.field(factory=dict, converter=params_of, eq=False)

    def __attrs_post_init__(self) -> None:
        if (self.get_signal is None) == (self.array is None):
            raise ConfigError(
                f"strategy {self.name!r}: give exactly one of get_signal (per-tick form) or array "
                "(btkit.ArrayForm, the array form)"
            )

    @property
    def risk_names(self) -> tuple[str, ...]:
        names = ((self.risk,) if self.risk else ()) + tuple(self.risks)
        return tuple(dict.fromkeys(names))


@attrs.frozen(kw_only=True)
class FrameSpec:
    """A backtest frame: timestamps from ``start`` to ``min(end, now)`` stepping by ``interval``."""

    name: str = attrs.field(validator=_name)
    start: datetime
    end: datetime
    interval: str = attrs.field(default="1m", validator=_interval)
    dist: str = "<code>"

    def __attrs_post_init__(self) -> None:
        for label, value in (("start", self.start), ("end", self.end)):
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ConfigError(f"frame {self.name!r}: {label} must be a timezone-aware datetime")
        if self.end < self.start:
            raise ConfigError(f"frame {self.name!r}: end {self.end} is before start {self.start}")


@attrs.frozen(kw_only=True)
class RiskSpec:
    """A risk profile: validations run in order; None allows, a string or an exception rejects."""

    name: str = attrs.field(validator=_name)
    validations: Sequence[Callable[..., Any]] = attrs.field(converter=tuple)
    dist: str = "<code>"


@attrs.frozen(kw_only=True)
class BrokerSpec:
    """A broker: ``factory(**options)`` returns an object with the optional broker methods."""

    name: str = attrs.field(validator=_name)
    factory: Callable[..., Any] = attrs.field(validator=_callable)
    dist: str = "<code>"


@attrs.frozen(kw_only=True)
class PersistenceBackendSpec:
    """A persistence backend: ``factory(**options)`` returns a :class:`btkit.persist.Backend`."""

    name: str = attrs.field(validator=_name)
    factory: Callable[..., Any] = attrs.field(validator=_callable)
    dist: str = "<code>"


ACTION_METHODS = (
    "on_start",
    "on_signal",
    "on_ping",
    "on_partial",
    "on_breakeven",
    "on_risk_rejected",
    "on_broker",
    "on_error",
    "on_stop",
)


def _positive_number(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise ConfigError(f"action {inst.name!r}: {a.name} must be a positive number, got {v!r}")


@attrs.frozen(kw_only=True)
class ActionSpec:
    """An action: a named per-strategy event sink (docs/actions.md). Give ``handler`` (an object with any
    of the ``on_*`` methods in :data:`ACTION_METHODS`) or ``factory(**options)`` returning one; it is built
    once per strategy that lists the action. Each runs on its own worker thread with a bounded queue
    (``queue_size``) and a per-call time limit (``timeout_seconds``): it never blocks trading."""

    name: str = attrs.field(validator=_name)
    factory: Callable[..., Any] | None = attrs.field(default=None, validator=_opt_callable)
    handler: Any = None
    queue_size: int = 1000
    timeout_seconds: float = attrs.field(default=5.0, validator=_positive_number)
    dist: str = "<code>"

    def __attrs_post_init__(self) -> None:
        if (self.factory is None) == (self.handler is None):
            raise ConfigError(f"action {self.name!r}: give exactly one of factory or handler")
        if isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int) or self.queue_size < 1:
            raise ConfigError(f"action {self.name!r}: queue_size must be a whole number >= 1")
        if self.handler is not None and not any(hasattr(self.handler, m) for m in ACTION_METHODS):
            raise ConfigError(
                f"action {self.name!r}: the handler has none of the methods {', '.join(ACTION_METHODS)}"
            )


COMPONENT_KINDS: dict[str, type] = {
    "exchange": ExchangeSpec,
    "strategy": StrategySpec,
    "frame": FrameSpec,
    "risk": RiskSpec,
    "broker": BrokerSpec,
    "persistence": PersistenceBackendSpec,
    "action": ActionSpec,
}
