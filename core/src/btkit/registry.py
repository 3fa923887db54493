"""In-process registrations (``add_exchange``, ``add_strategy``, …) as one ordinary plugin.

``CODE`` is registered into every plugin manager like any installed plugin, so components added in code
and components from packages are found through the same registry hooks. Adding a name again in code
replaces the earlier in-code registration (handy in notebooks); clashing with a *plugin's* name is the
usual duplicate-name error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from btkit.accounting.sizing import SizingSpec
from btkit.components import (
    ActionSpec,
    BrokerSpec,
    ExchangeSpec,
    FrameSpec,
    PersistenceBackendSpec,
    RiskSpec,
    StrategySpec,
)
from btkit.hookspecs import hookimpl


class CodeRegistry:
    """Holds what user code registered; implements the registry hooks."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.exchanges: dict[str, ExchangeSpec] = {}
        self.strategies: dict[str, StrategySpec] = {}
        self.frames: dict[str, FrameSpec] = {}
        self.risks: dict[str, RiskSpec] = {}
        self.brokers: dict[str, BrokerSpec] = {}
        self.backends: dict[str, PersistenceBackendSpec] = {}
        self.sizings: dict[str, SizingSpec] = {}
        self.actions: dict[str, ActionSpec] = {}

    @hookimpl
    def btkit_exchanges(self) -> list[ExchangeSpec]:
        return list(self.exchanges.values())

    @hookimpl
    def btkit_strategies(self) -> list[StrategySpec]:
        return list(self.strategies.values())

    @hookimpl
    def btkit_frames(self) -> list[FrameSpec]:
        return list(self.frames.values())

    @hookimpl
    def btkit_risks(self) -> list[RiskSpec]:
        return list(self.risks.values())

    @hookimpl
    def btkit_brokers(self) -> list[BrokerSpec]:
        return list(self.brokers.values())

    @hookimpl
    def btkit_persistence_backends(self) -> list[PersistenceBackendSpec]:
        return list(self.backends.values())

    @hookimpl
    def btkit_sizings(self) -> list[SizingSpec]:
        return list(self.sizings.values())

    @hookimpl
    def btkit_actions(self) -> list[ActionSpec]:
        return list(self.actions.values())


CODE = CodeRegistry()


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_exchange(
    name: str,
    get_candles: Callable[..., Any],
    format_price: Callable[[str, float], str] | None = None,
    format_quantity: Callable[[str, float], str] | None = None,
) -> ExchangeSpec:
    """Register an exchange: ``get_candles(symbol, interval, since: datetime, limit)`` (sync or async)."""
    spec = ExchangeSpec(
        name=name, get_candles=get_candles, format_price=format_price, format_quantity=format_quantity
    )
    CODE.exchanges[name] = spec
    return spec


def add_strategy(
    name: str,
    get_signal: Callable[..., Any],
    interval: str = "1m",
    risk: str | None = None,
    risks: Sequence[str] = (),
    callbacks: Any = None,
    actions: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
) -> StrategySpec:
    """Register a strategy: ``get_signal(symbol, when, current_price) -> Signal | dict | None``;
    ``actions`` names the actions that receive its events (docs/actions.md); ``params`` declares its typed
    parameters (``btkit.IntParam`` …, read with ``btkit.get_params()``)."""
    spec = StrategySpec(
        name=name,
        get_signal=get_signal,
        interval=interval,
        risk=risk,
        risks=risks,
        callbacks=callbacks,
        actions=actions,
        params=params or {},
    )
    CODE.strategies[name] = spec
    return spec


def add_frame(name: str, start: datetime | str, end: datetime | str, interval: str = "1m") -> FrameSpec:
    """Register a backtest frame (naive datetimes are taken as UTC)."""
    spec = FrameSpec(name=name, start=_aware(start), end=_aware(end), interval=interval)
    CODE.frames[name] = spec
    return spec


def add_risk(name: str, validations: Sequence[Callable[..., Any]] | Callable[..., Any]) -> RiskSpec:
    """Register a risk profile: each validation returns None to allow, a string (or raises) to reject."""
    if callable(validations):
        validations = (validations,)
    spec = RiskSpec(name=name, validations=validations)
    CODE.risks[name] = spec
    return spec


def add_array_strategy(
    name: str,
    populate: Callable[[Any], Any],
    interval: str = "1m",
    *,
    window: int = 500,
    pandas: bool = False,
    informative: Sequence[str] = (),
    defaults: Mapping[str, Any] | None = None,
    risk: str | None = None,
    risks: Sequence[str] = (),
    callbacks: Any = None,
    actions: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    window_for: Callable[[Any], int] | None = None,
) -> StrategySpec:
    """Register an array-form strategy: ``populate(candles)`` returns the per-bar requests
    (docs/array-strategies.md); ``params`` and ``window_for`` as in docs/parameters.md."""
    from btkit.components import ArrayForm

    form = ArrayForm(
        populate=populate,
        window=window,
        pandas=pandas,
        informative=informative,
        defaults=defaults or {},
        window_for=window_for,
    )
    spec = StrategySpec(
        name=name,
        array=form,
        interval=interval,
        risk=risk,
        risks=risks,
        callbacks=callbacks,
        params=params or {},
        actions=actions,
    )
    CODE.strategies[name] = spec
    return spec


def add_sizing(name: str, size: Callable[..., Any], description: str = "") -> SizingSpec:
    """Register a position sizing method: ``size(request, args) -> cost`` (see docs/wallet-and-sizing.md)."""
    spec = SizingSpec(name=name, size=size, description=description)
    CODE.sizings[name] = spec
    return spec


def add_action(
    name: str,
    handler: Any = None,
    *,
    factory: Callable[..., Any] | None = None,
    queue_size: int = 1000,
    timeout_seconds: float = 5.0,
) -> ActionSpec:
    """Register an action: ``handler`` is an object with any of ``on_signal``, ``on_ping``,
    ``on_partial``, ``on_breakeven``, ``on_risk_rejected``, ``on_broker``, ``on_error``, ``on_start``,
    ``on_stop`` (or pass ``factory(**options)`` building one per strategy). See docs/actions.md."""
    spec = ActionSpec(
        name=name, handler=handler, factory=factory, queue_size=queue_size, timeout_seconds=timeout_seconds
    )
    CODE.actions[name] = spec
    return spec
