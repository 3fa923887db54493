"""Portfolio-wide risk: profiles, the check hook, and atomic check-and-reserve (40-broker-risk.md §3).

Every strategy × symbol that names a risk profile shares that profile's active positions (one slot per
strategy × symbol). A candidate that passes reserves its slot at once — under one lock, so two
strategies cannot both pass a "max 1" limit on the same tick — and the slot is released on every
rejection, cancellation and close. A scheduled signal holds its slot while it waits.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from btkit.components import RiskSpec
from btkit.errors import UnknownComponentError
from btkit.model import Signal

PORTFOLIO = "*"  # every instance also counts in the portfolio-wide tally the risk hook sees


@attrs.frozen(kw_only=True)
class ActivePosition:
    strategy_name: str
    symbol: str
    exchange_name: str
    signal_id: str
    position: str
    price_open: float
    since: int
    expires_at: int | None = None
    reserved: bool = False  # True while only reserved (not yet opened or scheduled)


@attrs.frozen(kw_only=True)
class RiskPayload:
    """What every validation and ``btkit_risk_check`` implementation receives."""

    risk_name: str
    symbol: str
    current_signal: Signal
    strategy_name: str
    exchange_name: str
    current_price: float
    timestamp: int
    active_position_count: int
    active_positions: tuple[ActivePosition, ...]


@attrs.frozen
class RiskRejection:
    risk_name: str
    note: str
    symbol: str
    strategy_name: str
    active_position_count: int
    timestamp: int
    signal: Signal


def _note_of(out: Any) -> str | None:
    if out is None or out is True:
        return None
    if out is False:
        return "rejected"
    if isinstance(out, str):
        return out.strip() or "rejected"
    return str(out)


class RiskBook:
    """Active positions per risk profile, shared by every instance of one run (or one live process)."""

    def __init__(self, profiles: Mapping[str, RiskSpec], hook: Any = None) -> None:
        self.profiles = dict(profiles)
        self.hook = hook  # pm.hook.btkit_risk_check, or None
        self.active: dict[str, dict[tuple[str, str], ActivePosition]] = {}
        self.lock = asyncio.Lock()

    def _table(self, name: str) -> dict[tuple[str, str], ActivePosition]:
        return self.active.setdefault(name, {})

    def names_for(self, names: Sequence[str]) -> tuple[str, ...]:
        for name in names:
            if name not in self.profiles:
                known = ", ".join(sorted(self.profiles)) or "none"
                raise UnknownComponentError(f"no risk profile named {name!r} is registered (known: {known})")
        return (*names, PORTFOLIO)

    async def _run_validation(self, fn: Any, payload: RiskPayload) -> str | None:
        try:
            out = fn(payload)
            if inspect.isawaitable(out):
                out = await out
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return _note_of(out)

    async def _verdict(self, name: str, payload: RiskPayload) -> str | None:
        """The first rejection note of profile ``name`` (its validations in order; for the portfolio-wide
        tally, every ``btkit_risk_check`` implementation), or None when all allow."""
        if name != PORTFOLIO:
            for fn in self.profiles[name].validations:
                note = await self._run_validation(fn, payload)
                if note is not None:
                    return note
            return None
        if self.hook is None:
            return None
        try:
            for out in self.hook(payload=payload):
                if inspect.isawaitable(out):
                    out = await out
                note = _note_of(out)
                if note is not None:
                    return note
        except Exception as exc:  # a raising check rejects with its message
            return str(exc) or type(exc).__name__
        return None

    async def check_and_reserve(
        self,
        names: Sequence[str],
        *,
        candidate: ActivePosition,
        signal: Signal,
        current_price: float,
        timestamp: int,
        exclude_self: bool = False,
    ) -> RiskRejection | None:
        """Run every validation of every named profile, then the hook; reserve on success."""
        slot = (candidate.strategy_name, candidate.symbol)
        async with self.lock:
            for name in self.names_for(names):
                table = self._table(name)
                others = tuple(p for k, p in table.items() if not (exclude_self and k == slot))
                payload = RiskPayload(
                    risk_name=name,
                    symbol=candidate.symbol,
                    current_signal=signal,
                    strategy_name=candidate.strategy_name,
                    exchange_name=candidate.exchange_name,
                    current_price=current_price,
                    timestamp=timestamp,
                    active_position_count=len(others),
                    active_positions=others,
                )
                note = await self._verdict(name, payload)
                if note is not None:
                    return RiskRejection(
                        name, note, candidate.symbol, candidate.strategy_name, len(others), timestamp, signal
                    )
            for name in self.names_for(names):
                self._table(name)[slot] = candidate
        return None

    def set(self, names: Sequence[str], position: ActivePosition) -> None:
        """Finalise or update a slot (opened, scheduled, restored)."""
        for name in self.names_for(names):
            self._table(name)[(position.strategy_name, position.symbol)] = position

    def release(self, names: Sequence[str], strategy_name: str, symbol: str) -> None:
        for name in self.names_for(names):
            self._table(name).pop((strategy_name, symbol), None)

    def holds(self, name: str, strategy_name: str, symbol: str) -> bool:
        return (strategy_name, symbol) in self._table(name)

    def count(self, name: str) -> int:
        return len(self._table(name))

    def snapshot(self, name: str) -> tuple[ActivePosition, ...]:
        return tuple(self._table(name).values())

    def restore(self, name: str, positions: Iterable[ActivePosition], now: int) -> None:
        """Load persisted positions, dropping the ones whose lifetime has passed."""
        table = self._table(name)
        for p in positions:
            if p.expires_at is None or p.expires_at > now:
                table.setdefault((p.strategy_name, p.symbol), p)


# ---------------------------------------------------------------- ready-made rules (also from btkit.toml)
def max_positions(limit: int) -> Any:
    """Reject when the profile already holds ``limit`` positions (open or waiting)."""

    def rule(p: RiskPayload) -> str | None:
        if p.active_position_count >= limit:
            return f"max {limit} concurrent position(s) reached ({p.active_position_count} active)"
        return None

    rule.__name__ = f"max_positions_{limit}"
    return rule


def min_reward_risk(ratio: float) -> Any:
    """Reject when |TP − entry| / |entry − SL| is below ``ratio``."""

    def rule(p: RiskPayload) -> str | None:
        s = p.current_signal
        entry = s.price_open if s.price_open is not None else p.current_price
        risk = abs(entry - s.price_stop_loss)
        reward = abs(s.price_take_profit - entry)
        if risk <= 0 or reward / risk < ratio:
            return f"reward/risk {reward / risk if risk else 0:.2f} below {ratio:g}"
        return None

    return rule


def min_take_profit_distance(percent: float) -> Any:
    """Reject when the take-profit is closer than ``percent`` % to the entry."""

    def rule(p: RiskPayload) -> str | None:
        s = p.current_signal
        entry = s.price_open if s.price_open is not None else p.current_price
        dist = abs(s.price_take_profit - entry) / entry * 100
        if dist < percent:
            return f"take-profit {dist:.2f}% from entry, below {percent:g}%"
        return None

    return rule


RULES = {
    "max_positions": max_positions,
    "min_reward_risk": min_reward_risk,
    "min_take_profit_distance": min_take_profit_distance,
}


def profiles_from_settings(section: Mapping[str, Any]) -> tuple[list[RiskSpec], tuple[str, ...]]:
    """``[risk.profiles.<name>]`` tables → RiskSpecs; ``[risk] apply = ["name", …]`` → names for the run.

    Example::

        [risk]
        apply = ["portfolio"]
        [risk.profiles.portfolio]
        max_positions = 1
        min_reward_risk = 2.0
    """
    from btkit.errors import ConfigError

    specs = []
    for name, rules in (section.get("profiles") or {}).items():
        if not isinstance(rules, Mapping):
            raise ConfigError(f"[risk.profiles.{name}] must be a table of rules")
        validations = []
        for rule, value in rules.items():
            if rule not in RULES:
                raise ConfigError(f"[risk.profiles.{name}]: unknown rule {rule!r}; use {', '.join(RULES)}")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"[risk.profiles.{name}] {rule} must be a number, got {value!r}") from None
            validations.append(RULES[rule](int(number) if rule == "max_positions" else number))
        specs.append(RiskSpec(name=name, validations=validations, dist="btkit.toml"))
    apply = section.get("apply", ())
    apply = (apply,) if isinstance(apply, str) else tuple(apply)
    return specs, tuple(apply)
