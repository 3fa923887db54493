"""The search space of an optimisation: ranges per parameter, a constraint, and the grid / random points.

``fast=5:50:5`` is the inclusive range 5, 10, … 50; ``mode=a,b,c`` a list of choices; ``tp=2`` one fixed value.
Ranges are checked against the strategy's declared parameters (unknown name, values outside the declared
range, an empty range: one :class:`ConfigError`). The constraint is a small Python expression over the
parameter names (comparisons, arithmetic, ``and``/``or``/``not``), parsed with :mod:`ast`, never ``eval``-ed.
"""

from __future__ import annotations

import ast
import itertools
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from btkit.errors import ConfigError
from btkit.params import Param, coerce_value

__all__ = ["Constraint", "Dimension", "Space", "parse_dimension"]


@attrs.frozen(kw_only=True)
class Dimension:
    name: str
    values: tuple[Any, ...]
    text: str = ""


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a number") from None


def _steps(lo: float, hi: float, step: float) -> list[float]:
    if step <= 0:
        raise ConfigError(f"step {step:g} must be > 0")
    n = int((hi - lo) / step + 1e-9)
    return [lo + i * step for i in range(n + 1)] if hi >= lo else []


def parse_dimension(text: str, declared: Mapping[str, Param], strategy: str) -> Dimension:
    """``name=lo:hi[:step]``, ``name=a,b,c`` or ``name=value`` → the values to try (typed, checked)."""
    name, sep, spec = text.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
        raise ConfigError(f"--param {text!r} must look like name=lo:hi:step, name=a,b,c or name=value")
    param = declared.get(name)
    if param is None:
        known = ", ".join(f"{n} ({p.describe()})" for n, p in declared.items()) or "none"
        raise ConfigError(f"strategy {strategy!r} has no parameter {name!r} (parameters: {known})")
    raw: list[Any]
    if ":" in spec:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"--param {text!r}: a range is lo:hi or lo:hi:step")
        if param.kind == "categorical":
            raise ConfigError(f"--param {text!r}: {name} is categorical; list choices as a,b,c")
        lo, hi = _number(parts[0]), _number(parts[1])
        step = _number(parts[2]) if len(parts) == 3 else 1.0
        raw = _steps(lo, hi, step)
        if param.kind == "float":
            raw = [round(v, 12) for v in raw]
    elif "," in spec:
        raw = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        raw = [spec]
    if not raw:
        raise ConfigError(f"--param {text!r}: the range is empty (hi is below lo); give lo <= hi")
    values: list[Any] = []
    for r in raw:
        v = coerce_value(param, r)
        problem = param.problem(v)
        if problem:
            raise ConfigError(f"--param {text!r}: {problem} ({name}: {param.describe()})")
        if v not in values:
            values.append(v)
    return Dimension(name=name, values=tuple(values), text=text)


_BIN = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.FloorDiv: operator.floordiv,
}
_CMP = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}


class Constraint:
    """A parsed constraint such as ``fast < slow`` or ``slow >= 2 * fast and fast > 5``."""

    def __init__(self, text: str, names: Sequence[str]) -> None:
        self.text = text
        try:
            self.tree = ast.parse(text, mode="eval").body
        except SyntaxError:
            raise ConfigError(f"constraint {text!r} is not an expression like 'fast < slow'") from None
        self._check(self.tree, set(names))

    def _check(self, node: ast.AST, names: set[str]) -> None:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id not in names:
                raise ConfigError(
                    f"constraint {self.text!r} names {sub.id!r}, not a parameter (parameters: {', '.join(sorted(names))})"
                )
            allowed = (
                ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
                ast.BinOp, ast.Compare, ast.Name, ast.Load, ast.Constant, *_BIN, *_CMP,
            )  # fmt: skip
            if not isinstance(sub, allowed):
                raise ConfigError(
                    f"constraint {self.text!r}: {type(sub).__name__} is not allowed; use comparisons, "
                    "arithmetic and and/or/not"
                )

    def __call__(self, values: Mapping[str, Any]) -> bool:
        return bool(self._eval(self.tree, values))

    def _eval(self, node: ast.AST, env: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return env[node.id]
        if isinstance(node, ast.BoolOp):
            vals = (self._eval(v, env) for v in node.values)
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, env)
            return not v if isinstance(node.op, ast.Not) else (-v if isinstance(node.op, ast.USub) else v)
        if isinstance(node, ast.BinOp):
            return _BIN[type(node.op)](self._eval(node.left, env), self._eval(node.right, env))
        if isinstance(node, ast.Compare):
            left = self._eval(node.left, env)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self._eval(comp, env)
                if not _CMP[type(op)](left, right):
                    return False
                left = right
            return True
        raise ConfigError(
            f"constraint {self.text!r}: cannot evaluate {type(node).__name__}"
        )  # pragma: no cover


@attrs.define
class Space:
    """Dimensions (in the order given) plus the constraints every point must satisfy."""

    dims: list[Dimension]
    constraints: list[Constraint]
    fixed: dict[str, Any] = attrs.Factory(dict)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dims]

    def ok(self, point: Mapping[str, Any]) -> bool:
        env = {**self.fixed, **point}
        return all(c(env) for c in self.constraints)

    def grid(self) -> list[dict[str, Any]]:
        """Every combination satisfying the constraints, first dimension slowest (deterministic order)."""
        points = []
        for combo in itertools.product(*(d.values for d in self.dims)):
            point = dict(zip(self.names, combo, strict=True))
            if self.ok(point):
                points.append(point)
        return points

    def random(self, n: int, seed: int) -> list[dict[str, Any]]:
        """``n`` distinct grid points drawn with ``numpy.random.default_rng(seed)`` (all of them if fewer)."""
        import numpy as np

        grid = self.grid()
        if n >= len(grid):
            return grid
        rng = np.random.default_rng(seed)
        picks = sorted(rng.choice(len(grid), size=n, replace=False).tolist())
        return [grid[i] for i in picks]
