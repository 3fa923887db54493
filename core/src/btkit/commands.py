"""Position commands and queries for user code (get_signal, callbacks, listeners), symbol first.

Commands validate against the current state and either return False (nothing changed) or True; the
effect is applied by the engine — on the next tick for close/cancel requests (10-lifecycle.md §4), or
right after the calling listener returns for the position-management commands — through the broker
transaction in live mode.

Position management (``commit_partial_profit`` … ``commit_average_buy``): the rule of
:mod:`btkit.lifecycle.management` is checked at once against the open position *as it will be* after the
commands already queued in this tick, at the current price (``get_average_price``). Accepted commands are
queued on the instance; the engine runs them right after the listeners/callbacks of the tick
(``StrategyInstance._run_commands``): each re-checks its rule against the real position at the tick's
price, calls the broker method (live only; through the broker gate, with a client order id that is the
same on every retry of the same action), and only on a confirmed verdict writes the new position (which
persists it in live mode). A broker failure changes nothing and is reported on ``listen_error``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import attrs

from btkit.broker_payloads import (
    AverageBuyCommit,
    BreakevenCommit,
    CommitPayload,
    PartialCommit,
    TrailingCommit,
    client_order_id,
)
from btkit.context import current
from btkit.engine.instance import StrategyInstance
from btkit.errors import BtkitError
from btkit.lifecycle import management as rules
from btkit.lifecycle import pnl as pnl_math
from btkit.model import Entry, SignalRow, SignalView, view_of

if TYPE_CHECKING:
    from btkit.config import EngineConfig
    from btkit.lifecycle.machine import Observation

log = logging.getLogger("btkit.commands")
Common = dict[str, Any]  # the payload fields every broker method gets


def _instance(symbol: str) -> StrategyInstance:
    ctx = current()
    inst: StrategyInstance = ctx.instance
    if symbol == inst.symbol:
        return inst
    other = inst.run.find(symbol, inst.strategy.name)
    if other is None:
        raise BtkitError(f"strategy {inst.strategy.name} does not run on {symbol} in this run")
    return other


def _defer(inst: StrategyInstance, command: str) -> None:
    """Record the request durably (live) before reporting success: it survives a crash."""
    st = inst.state.strategy
    if command not in st.deferred:
        inst._commit(attrs.evolve(inst.state, strategy=attrs.evolve(st, deferred=(*st.deferred, command))))


def commit_close_pending(symbol: str) -> bool:
    """Close the open position on the next tick (reason ``closed``). False when nothing is open."""
    inst = _instance(symbol)
    if inst.state.pending is None:
        return False
    _defer(inst, "close_pending")
    return True


def commit_cancel_scheduled(symbol: str) -> bool:
    """Cancel the resting entry on the next tick (reason ``user``). False when nothing is scheduled."""
    inst = _instance(symbol)
    if inst.state.scheduled is None:
        return False
    _defer(inst, "cancel_scheduled")
    return True


# ---------------------------------------------------------------- position management
@attrs.frozen(kw_only=True)
class PositionCommand:
    """An accepted position-management command, queued on the instance until its tick applies it.

    ``price`` and ``when`` are what it was accepted at; they only serve to project the position for
    commands queued after it in the same tick. ``execute`` uses the tick's own price and time.
    """

    name: ClassVar[str] = ""
    broker_method: ClassVar[str] = ""

    signal_id: str
    price: float
    when: int

    def rule(self, row: SignalRow | None, *, price: float, when: int, cfg: EngineConfig) -> rules.Outcome:
        raise NotImplementedError

    def action(self, before: SignalRow, after: SignalRow) -> str:
        """The client-order-id action tag: unique per action on a signal, the same on every retry."""
        raise NotImplementedError

    def payload(self, common: Common, before: SignalRow, after: SignalRow, price: float) -> CommitPayload:
        raise NotImplementedError

    async def execute(self, inst: StrategyInstance, when: int, obs: Observation) -> bool:
        """Re-check the rule, call the broker (live), and apply the change only when it confirms."""
        before = inst.state.pending
        if before is None or before.id != self.signal_id:
            log.info(
                "%s for signal %s on %s dropped: that position is no longer open",
                self.name,
                self.signal_id,
                inst.symbol,
            )
            return False
        price = obs.vwap
        after = self.rule(before, price=price, when=when, cfg=inst.cfg)
        if isinstance(after, rules.Rejection):
            await inst.run.report(
                BtkitError(
                    f"{self.name} for signal {before.id} no longer applies at the tick's price: "
                    f"{after.reason}; the position is unchanged"
                ),
                f"position command on {inst.symbol}",
            )
            return False
        added = pnl_math.total_invested(after) - pnl_math.total_invested(before)  # a DCA entry's margin
        wallet = getattr(inst.run, "wallet", None)
        if added > 0 and wallet is not None and added > wallet.free:  # the wallet's funds check (issue 12)
            await inst.run.report(
                BtkitError(
                    f"{self.name} for signal {before.id} refused: insufficient funds: cost {added:,.2f} "
                    f"exceeds free balance {wallet.free:,.2f}; the position is unchanged"
                ),
                f"position command on {inst.symbol}",
            )
            return False
        gate = inst.run.gate
        if gate is not None:
            common: Common = inst.commit_fields(
                before, when, 1, client_order_id(before.id, self.action(before, after))
            )
            verdict = await gate.call(self.broker_method, self.payload(common, before, after, price))
            if not verdict.confirmed:
                error = verdict.error or BtkitError(f"broker {self.broker_method} did not confirm")
                await inst.run.report(
                    error,
                    f"broker {self.broker_method} for {before.id} on {inst.symbol} ({verdict.kind}): "
                    "the position is unchanged; issue the command again to retry",
                )
                return False
        current_row = inst.state.pending
        if current_row is None or current_row.id != before.id:  # pragma: no cover - nothing else ticks it
            return False
        inst._commit(attrs.evolve(inst.state, pending=after))
        return True


def _digest(value: float) -> str:
    return hashlib.sha256(repr(float(value)).encode("ascii")).hexdigest()[:10]


@attrs.frozen(kw_only=True)
class PartialCommand(PositionCommand):
    kind: Literal["profit", "loss"]
    percent: float

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"commit_partial_{self.kind}"

    @property
    def broker_method(self) -> str:  # type: ignore[override]
        return f"on_partial_{self.kind}_commit"

    def rule(self, row: SignalRow | None, *, price: float, when: int, cfg: EngineConfig) -> rules.Outcome:
        return rules.partial_close(row, self.kind, self.percent, price=price, when=when, cfg=cfg)

    def action(self, before: SignalRow, after: SignalRow) -> str:
        return f"partial{len(after.partials)}"

    def payload(self, common: Common, before: SignalRow, after: SignalRow, price: float) -> CommitPayload:
        return PartialCommit(
            **common,
            percent_to_close=self.percent,
            cost=self.percent / 100.0 * pnl_math.remaining_cost(before),
            current_price=price,
            price_take_profit=before.take_profit,
            price_stop_loss=before.stop_loss,
        )


@attrs.frozen(kw_only=True)
class TrailingStopCommand(PositionCommand):
    name: ClassVar[str] = "commit_trailing_stop"
    broker_method: ClassVar[str] = "on_trailing_stop_commit"
    percent_shift: float

    def rule(self, row: SignalRow | None, *, price: float, when: int, cfg: EngineConfig) -> rules.Outcome:
        return rules.trailing_stop(row, self.percent_shift, price=price, when=when, cfg=cfg)

    def action(self, before: SignalRow, after: SignalRow) -> str:
        return "sl" + _digest(after.stop_loss)

    def payload(self, common: Common, before: SignalRow, after: SignalRow, price: float) -> CommitPayload:
        return TrailingCommit(
            **common,
            percent_shift=self.percent_shift,
            current_price=price,
            new_stop_loss_price=after.stop_loss,
        )


@attrs.frozen(kw_only=True)
class TrailingTakeCommand(PositionCommand):
    name: ClassVar[str] = "commit_trailing_take"
    broker_method: ClassVar[str] = "on_trailing_take_commit"
    percent_shift: float

    def rule(self, row: SignalRow | None, *, price: float, when: int, cfg: EngineConfig) -> rules.Outcome:
        return rules.trailing_take(row, self.percent_shift, price=price, when=when, cfg=cfg)

    def action(self, before: SignalRow, after: SignalRow) -> str:
        return "tp" + _digest(after.take_profit)

    def payload(self, common: Common, before: SignalRow, after: SignalRow, price: float) -> CommitPayload:
        return TrailingCommit(
            **common,
            percent_shift=self.percent_shift,
            current_price=price,
            new_take_profit_price=after.take_profit,
        )


@attrs.frozen(kw_only=True)
class BreakevenCommand(PositionCommand):
    name: ClassVar[str] = "commit_breakeven"
    broker_method: ClassVar[str] = "on_breakeven_commit"

    def rule(self, row: SignalRow | None, *, price: float, when: int, cfg: EngineConfig) -> rules.Outcome:
        return rules.breakeven(row, price=price, when=when, cfg=cfg)

    def action(self, before: SignalRow, after: SignalRow) -> str:
        return "breakeven"

    def payload(self, common: Common, before: SignalRow, after: SignalRow, price: float) -> CommitPayload:
        return BreakevenCommit(**common, current_price=price, new_stop_loss_price=after.stop_loss)


@attrs.frozen(kw_only=True)
class AverageBuyCommand(PositionCommand):
    name: ClassVar[str] = "commit_average_buy"
    broker_method: ClassVar[str] = "on_average_buy_commit"
    cost: float | None

    def rule(self, row: SignalRow | None, *, price: float, when: int, cfg: EngineConfig) -> rules.Outcome:
        return rules.average_buy(row, self.cost, price=price, when=when, cfg=cfg)

    def action(self, before: SignalRow, after: SignalRow) -> str:
        return f"dca{len(after.entries)}"

    def payload(self, common: Common, before: SignalRow, after: SignalRow, price: float) -> CommitPayload:
        return AverageBuyCommit(**common, current_price=price, cost=after.entries[-1].cost)


def _projected(inst: StrategyInstance) -> SignalRow | None:
    """The open position as it will be once the commands already queued for it are applied."""
    row = inst.state.pending
    if row is None:
        return None
    for cmd in inst.pending_commands:
        if isinstance(cmd, PositionCommand) and cmd.signal_id == row.id:
            out = cmd.rule(row, price=cmd.price, when=cmd.when, cfg=inst.cfg)
            if not isinstance(out, rules.Rejection):
                row = out
    return row


def _submit(symbol: str, make: Callable[..., PositionCommand]) -> bool:
    inst = _instance(symbol)
    when = current().when
    row = _projected(inst)
    if row is None:
        log.info("position command on %s rejected: no open position", symbol)
        return False
    from btkit.market import get_average_price

    price = get_average_price(symbol)
    cmd = make(signal_id=row.id, price=price, when=when)
    outcome = cmd.rule(row, price=price, when=when, cfg=inst.cfg)
    if isinstance(outcome, rules.Rejection):
        log.info("%s on %s rejected: %s", cmd.name, symbol, outcome.reason)
        return False
    inst.pending_commands.append(cmd)
    return True


def commit_partial_profit(symbol: str, percent: float) -> bool:
    """Close ``percent`` % of the *remaining* position in profit (price between entry and TP)."""
    return _submit(symbol, lambda **kw: PartialCommand(kind="profit", percent=percent, **kw))


def commit_partial_loss(symbol: str, percent: float) -> bool:
    """Close ``percent`` % of the *remaining* position in loss (price between entry and SL)."""
    return _submit(symbol, lambda **kw: PartialCommand(kind="loss", percent=percent, **kw))


def commit_trailing_stop(symbol: str, percent_shift: float) -> bool:
    """Stop at the original stop distance from the effective entry + ``percent_shift`` %, if it improves."""
    return _submit(symbol, lambda **kw: TrailingStopCommand(percent_shift=percent_shift, **kw))


def commit_trailing_take(symbol: str, percent_shift: float) -> bool:
    """Take-profit at the original distance from the effective entry + ``percent_shift`` %, if closer."""
    return _submit(symbol, lambda **kw: TrailingTakeCommand(percent_shift=percent_shift, **kw))


def commit_breakeven(symbol: str) -> bool:
    """Move the stop to the effective entry (once the price moved 2·(slippage+fee)+threshold % in profit)."""
    return _submit(symbol, lambda **kw: BreakevenCommand(**kw))


def commit_average_buy(symbol: str, cost: float | None = None) -> bool:
    """Add a DCA entry of ``cost`` dollars (default ``position_entry_cost``) below the lowest entry."""
    return _submit(symbol, lambda **kw: AverageBuyCommand(cost=cost, **kw))


def get_pending_signal(symbol: str) -> SignalView | None:
    row = _instance(symbol).state.pending
    return view_of(row) if row is not None else None


def get_scheduled_signal(symbol: str) -> SignalView | None:
    row = _instance(symbol).state.scheduled
    return view_of(row) if row is not None else None


def get_position_entries(symbol: str) -> tuple[Entry, ...]:
    row = _instance(symbol).state.pending
    return row.entries if row is not None else ()


def get_position_effective_price(symbol: str) -> float | None:
    row = _instance(symbol).state.pending
    return pnl_math.effective_entry(row) if row is not None else None


def _mark(symbol: str) -> Any:
    inst = _instance(symbol)
    row = inst.state.pending
    if row is None:
        return None
    from btkit.market import get_average_price

    price = get_average_price(symbol)
    cfg = inst.cfg
    return pnl_math.position_pnl(row, price, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee)


def get_position_pnl_percent(symbol: str) -> float | None:
    mark = _mark(symbol)
    return mark.pnl_percentage if mark is not None else None


def get_position_pnl_cost(symbol: str) -> float | None:
    mark = _mark(symbol)
    return mark.pnl_cost if mark is not None else None


def get_total_percent_closed(symbol: str) -> float:
    row = _instance(symbol).state.pending
    return pnl_math.percent_closed(row) if row is not None else 0.0
