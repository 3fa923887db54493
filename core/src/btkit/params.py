"""Typed strategy parameters (docs/parameters.md): declared on the strategy, resolved per run.

A strategy declares ``params={"fast": IntParam(10, 5, 50), ...}`` (``add_strategy``, ``add_array_strategy`` or
``StrategySpec(params=...)`` in a plugin). A run resolves the declared defaults with the overrides it was
given (``Backtest.run(..., params=)``, ``--param k=v``, ``[strategy.params]``) into one read-only mapping per
strategy instance; ``btkit.get_params()`` returns it inside ``get_signal``, callbacks and the array function,
so values never leak between runs through globals.
"""

from __future__ import annotations

import contextlib
import math
import types
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import attrs

from btkit.errors import ConfigError

__all__ = [
    "CategoricalParam",
    "FloatParam",
    "IntParam",
    "Param",
    "coerce_value",
    "get_params",
    "params_of",
    "resolve_params",
]

KINDS = ("int", "float", "categorical")


@attrs.frozen(kw_only=True)
class Param:
    """One declared parameter: ``kind`` (int, float, categorical), ``default``, the inclusive range
    ``low..high`` (numbers) or ``choices`` (categorical)."""

    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    default: Any
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = attrs.field(default=(), converter=tuple)
    description: str = ""

    def __attrs_post_init__(self) -> None:
        if self.kind == "categorical":
            if not self.choices:
                raise ConfigError("a categorical parameter needs at least one choice")
            if self.default not in self.choices:
                raise ConfigError(f"default {self.default!r} is not one of the choices {list(self.choices)}")
            return
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ConfigError(f"parameter range {self.low}..{self.high} is empty (low > high)")
        problem = self.problem(self.default)
        if problem:
            raise ConfigError(f"default {problem}")

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not valid for this parameter, or None."""
        if self.kind == "categorical":
            return None if value in self.choices else f"{value!r} is not one of {list(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number"
        if self.kind == "int" and not float(value).is_integer():
            return f"{value!r} is not a whole number"
        if not math.isfinite(value):
            return f"{value!r} is not finite"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            return f"{value!r} is outside {self.range_text()}"
        return None

    def range_text(self) -> str:
        if self.kind == "categorical":
            return "|".join(str(c) for c in self.choices)
        lo = "" if self.low is None else _num(self.low)
        hi = "" if self.high is None else _num(self.high)
        return f"{lo}..{hi}"

    def describe(self) -> str:
        """``int = 10 in 5..50``."""
        return f"{self.kind} = {self.default!r} in {self.range_text()}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def IntParam(default: int, low: int | None = None, high: int | None = None, description: str = "") -> Param:
    """A whole-number parameter ``default`` in ``low..high`` (inclusive; None = unbounded)."""
    return Param(kind="int", default=default, low=low, high=high, description=description)


def FloatParam(
    default: float, low: float | None = None, high: float | None = None, description: str = ""
) -> Param:
    """A real-number parameter ``default`` in ``low..high`` (inclusive; None = unbounded)."""
    return Param(kind="float", default=float(default), low=low, high=high, description=description)


def CategoricalParam(default: Any, choices: Sequence[Any], description: str = "") -> Param:
    """A parameter taking one of ``choices`` (strings, numbers or booleans)."""
    return Param(kind="categorical", default=default, choices=tuple(choices), description=description)


def _infer(value: Any) -> Param:
    if isinstance(value, Param):
        return value
    if isinstance(value, (bool, str)):
        return CategoricalParam(value, [value] if isinstance(value, str) else [False, True])
    if isinstance(value, int):
        return IntParam(value)
    if isinstance(value, float):
        return FloatParam(value)
    raise ConfigError(
        f"cannot declare a parameter from {value!r}; use IntParam, FloatParam or CategoricalParam"
    )


def params_of(value: Mapping[str, Any] | None) -> dict[str, Param]:
    """The ``StrategySpec.params`` converter: a mapping of name → :class:`Param` (or a plain default)."""
    out: dict[str, Param] = {}
    for name, decl in (value or {}).items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"parameter name {name!r} must be an identifier (letters, digits, _)")
        try:
            out[name] = _infer(decl)
        except ConfigError as exc:
            raise ConfigError(f"parameter {name!r}: {exc}") from None
    return out


def coerce_value(param: Param, raw: Any) -> Any:
    """``raw`` (a string from the command line, or a TOML/Python value) as the parameter's type."""
    if param.kind == "categorical":
        if isinstance(raw, str):
            for choice in param.choices:
                if str(choice) == raw or (isinstance(choice, bool) and raw.lower() == str(choice).lower()):
                    return choice
        return raw
    if isinstance(raw, str):
        text = raw.strip()
        try:
            num = float(text)
        except ValueError:
            return raw  # reported by Param.problem as "not a number"
        if param.kind == "int" and num.is_integer():
            return int(num)
        return num
    if param.kind == "int" and isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if param.kind == "float" and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    return raw


def resolve_params(
    strategy: str, declared: Mapping[str, Param], given: Mapping[str, Any] | None
) -> Mapping[str, Any]:
    """The read-only values of one run: declared defaults overridden by ``given``. An unknown name or a
    value out of range raises one :class:`ConfigError` naming the strategy, the parameter and the rule."""
    values: dict[str, Any] = {name: p.default for name, p in declared.items()}
    for name, raw in (given or {}).items():
        param = declared.get(name)
        if param is None:
            known = ", ".join(f"{n} ({p.describe()})" for n, p in declared.items()) or "none"
            raise ConfigError(f"strategy {strategy!r} has no parameter {name!r} (parameters: {known})")
        value = coerce_value(param, raw)
        problem = param.problem(value)
        if problem:
            raise ConfigError(f"strategy {strategy!r}, parameter {name!r}: {problem} ({param.describe()})")
        values[name] = value
    return types.MappingProxyType(values)


_POPULATE: ContextVar[Mapping[str, Any] | None] = ContextVar("btkit_populate_params", default=None)


@contextlib.contextmanager
def populating(values: Mapping[str, Any]) -> Iterator[None]:
    """``get_params()`` returns ``values`` inside this block (the engine wraps every array-function call)."""
    token = _POPULATE.set(values)
    try:
        yield
    finally:
        _POPULATE.reset(token)


def get_params() -> Mapping[str, Any]:
    """The parameter values of the strategy instance being run (inside ``get_signal``, callbacks, listeners
    and the array function): read-only, resolved for this run only."""
    from btkit.context import current

    values = _POPULATE.get()
    if values is not None:
        return values
    inst = current().instance
    params = getattr(inst, "params", None)
    return params if params is not None else types.MappingProxyType({})
