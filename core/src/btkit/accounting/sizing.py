"""Position sizing: how much margin a new signal commits (backtest-kit's methods and formulas).

A sizing method turns a :class:`SizingRequest` (the candidate signal, the wallet, the strategy's closed
trades so far) into the signal's ``cost`` — the margin in quote currency. Only ``fixed`` without an
argument (the default) keeps a ``cost`` the strategy put on the signal; every other method replaces it.
Leverage is the signal's ``multiplier``: the notional is ``cost × multiplier``. Methods that size a
*quantity* (risk, ATR, Kelly) compute the notional ``quantity × entry`` and divide it by the leverage.

| name | argument | cost (margin) |
|---|---|---|
| ``fixed`` | dollars (default: the signal's ``cost``, else ``position_entry_cost``) | the amount |
| ``percent`` | % of equity | ``equity · pct / 100`` |
| ``risk`` | % of equity risked to the stop-loss | ``equity · risk% / |entry − SL| · entry / leverage`` |
| ``kelly`` | multiplier (default 0.25) | ``equity · (W − (1 − W)/R) · mult / leverage`` |
| ``atr`` | ``RISK[:MULT[:PERIOD[:INTERVAL]]]`` | ``equity · risk% / (ATR · mult) · entry / leverage`` |

Clamps (``[sizing] min_size``, ``max_percent``, ``max_size``; quote currency, on the cost) are applied
after the method: first the caps (``max_percent`` of equity, ``max_size``), then the floor ``min_size``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import numpy as np

from btkit.errors import ConfigError

KELLY_MIN_TRADES = 10
"""Closed trades the strategy needs before Kelly sizes; until then Kelly stakes the fixed cost."""


class SizingRefused(Exception):
    """Raised by a sizing method that declines to size this signal (the reason is shown)."""


@attrs.frozen(kw_only=True)
class SizingRequest:
    """What a sizing method sees. Money is in the wallet's quote currency; ``equity`` is the starting
    balance plus the pnl of every trade closed before the minute ``when``, and ``closed_pnls`` the
    per-trade pnl % of this strategy's trades closed before it (oldest first) — never a later trade."""

    symbol: str
    strategy_name: str
    position: str
    price_open: float
    price_stop_loss: float
    price_take_profit: float
    multiplier: float
    when: int
    equity: float
    free: float
    default_cost: float
    signal_cost: float | None = None
    """The ``cost`` the strategy put on the signal, if any (only ``fixed`` without argument uses it)."""
    closed_pnls: tuple[float, ...] = ()
    candles: Callable[[str, int], Awaitable[Any]] | None = None
    """``await candles(interval, limit)``: the last ``limit`` closed candles of the symbol before ``when``."""


SizeFn = Callable[[SizingRequest, tuple[str, ...]], "float | Awaitable[float]"]


def _name(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if not isinstance(v, str) or not v.strip() or ":" in v:
        raise ConfigError(f"SizingSpec.name must be a non-empty string without ':', got {v!r}")


@attrs.frozen(kw_only=True)
class SizingSpec:
    """A sizing method: ``size(request, args) -> cost`` (sync or async); ``args`` are the ``NAME:A:B``
    parts after the name, as strings. Raise :class:`SizingRefused` to refuse the signal with a reason."""

    name: str = attrs.field(validator=_name)
    size: SizeFn
    description: str = ""
    dist: str = "<code>"


@attrs.frozen(kw_only=True)
class Clamps:
    min_size: float | None = None
    max_percent: float | None = None
    max_size: float | None = None

    def apply(self, cost: float, equity: float) -> float:
        if self.max_percent is not None:
            cost = min(cost, equity * self.max_percent / 100.0)
        if self.max_size is not None:
            cost = min(cost, self.max_size)
        if self.min_size is not None:
            cost = max(cost, self.min_size)
        return cost


def parse_sizing(text: str) -> tuple[str, tuple[str, ...]]:
    """``"risk:2"`` → ``("risk", ("2",))``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"sizing must look like NAME[:ARG], e.g. risk:2, got {text!r}")
    name, *args = text.strip().split(":")
    return name, tuple(args)


def _number(args: tuple[str, ...], i: int, what: str, default: float | None = None) -> float:
    if i >= len(args) or args[i] == "":
        if default is None:
            raise ConfigError(f"sizing needs {what}, e.g. risk:2")
        return default
    try:
        value = float(args[i])
    except ValueError:
        raise ConfigError(f"sizing {what} must be a number, got {args[i]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"sizing {what} must be a number > 0, got {args[i]!r}")
    return value


def _fixed(req: SizingRequest, args: tuple[str, ...]) -> float:
    if not args and req.signal_cost is not None:  # today's rule: the signal's cost, else the default
        return req.signal_cost
    return _number(args, 0, "an amount", req.default_cost)


def _percent(req: SizingRequest, args: tuple[str, ...]) -> float:
    return req.equity * _number(args, 0, "a percent of equity") / 100.0


def _risk(req: SizingRequest, args: tuple[str, ...]) -> float:
    risk = req.equity * _number(args, 0, "a risk percent") / 100.0
    distance = abs(req.price_open - req.price_stop_loss)
    quantity = risk / distance
    return quantity * req.price_open / req.multiplier


def kelly_fraction(pnls: Sequence[float]) -> float | None:
    """``W − (1 − W)/R`` from per-trade pnls (W win rate, R average win / |average loss|); None without
    both a win and a loss."""
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    if not wins or not losses:
        return None
    w = len(wins) / (len(wins) + len(losses))
    r = (math.fsum(wins) / len(wins)) / abs(math.fsum(losses) / len(losses))
    return w - (1.0 - w) / r


def _kelly(req: SizingRequest, args: tuple[str, ...]) -> float:
    mult = _number(args, 0, "a Kelly multiplier", 0.25)
    if len(req.closed_pnls) < KELLY_MIN_TRADES:
        return req.default_cost
    f = kelly_fraction(req.closed_pnls)
    if f is None:
        return req.default_cost
    if f <= 0:
        raise SizingRefused(
            f"Kelly fraction {f:.4f} <= 0 over {len(req.closed_pnls)} closed trades: no edge, no stake"
        )
    return req.equity * f * mult / req.multiplier


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> float:
    """Average true range over the candles given (the first candle only supplies a previous close)."""
    prev = close[:-1]
    tr = np.maximum(high[1:] - low[1:], np.maximum(np.abs(high[1:] - prev), np.abs(low[1:] - prev)))
    return float(tr.mean())


async def _atr(req: SizingRequest, args: tuple[str, ...]) -> float:
    risk = req.equity * _number(args, 0, "a risk percent") / 100.0
    mult = _number(args, 1, "an ATR multiplier", 2.0)
    period = int(_number(args, 2, "an ATR period", 14.0))
    interval = args[3] if len(args) > 3 and args[3] else "15m"
    if req.candles is None:
        raise SizingRefused("ATR sizing needs candles, and none are available here")
    c = await req.candles(interval, period + 1)
    value = atr(np.asarray(c.high), np.asarray(c.low), np.asarray(c.close))
    if not value > 0:
        raise SizingRefused(f"ATR({period}, {interval}) is {value:g}: cannot size by volatility")
    return risk / (value * mult) * req.price_open / req.multiplier


BUILTIN: tuple[SizingSpec, ...] = (
    SizingSpec(
        name="fixed", size=_fixed, description="fixed cost (default position_entry_cost)", dist="btkit"
    ),
    SizingSpec(name="percent", size=_percent, description="percent of equity as margin", dist="btkit"),
    SizingSpec(name="risk", size=_risk, description="risk % of equity to the stop-loss", dist="btkit"),
    SizingSpec(name="kelly", size=_kelly, description="fractional Kelly from closed trades", dist="btkit"),
    SizingSpec(name="atr", size=_atr, description="risk % of equity per ATR·multiplier", dist="btkit"),
)


async def compute_size(spec: SizingSpec, args: tuple[str, ...], req: SizingRequest, clamps: Clamps) -> float:
    """The clamped cost for ``req``; raises :class:`SizingRefused` with the reason when it cannot size."""
    out = spec.size(req, args)
    if inspect.isawaitable(out):
        out = await out
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise SizingRefused(f"sizing {spec.name} returned {out!r}, not an amount")
    cost = clamps.apply(float(out), req.equity)
    if not math.isfinite(cost) or cost <= 0:
        raise SizingRefused(f"sizing {spec.name} gave a cost of {cost:g}")
    return cost
