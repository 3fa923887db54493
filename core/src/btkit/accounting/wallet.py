"""The wallet of a run: starting balance, realised pnl and fees, free vs locked margin, the funds check.

The wallet keeps no ledger of its own. What it books is derived from what the engine already keeps (and,
live, persists): every instance's closed-trade history gives the realised pnl and fees, every held row
(open position, resting entry, open in flight) gives the locked margin. So after a crash the wallet is
recomputed from the persisted history — a trade can never be booked twice — and backtest and live book
alike. The only thing stored for the wallet itself is its starting balance (live, domain ``wallet``).

- ``equity`` (cash basis) = balance + Σ realised pnl − Σ fees (closed trades only)
- ``locked`` = Σ margin (``cost``; the notional is ``cost × leverage``) of every held position
- ``free``   = equity − locked; a new signal whose cost exceeds it is refused, never shrunk
- marked equity = equity + unrealised pnl of the open positions (``btkit.accounting.equity``)
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import attrs

from btkit.accounting.sizing import (
    BUILTIN,
    Clamps,
    SizingRefused,
    SizingRequest,
    SizingSpec,
    compute_size,
    parse_sizing,
)
from btkit.errors import ConfigError
from btkit.lifecycle.pnl import position_pnl, total_invested
from btkit.model import Closed, Signal, SignalRow
from btkit.risk import RiskRejection

if TYPE_CHECKING:
    from btkit.engine.instance import StrategyInstance

WALLET = "wallet"
"""The ``risk_name`` of a rejection by the wallet or the sizing (shown like a risk rejection)."""
DEFAULT_BALANCE = 10_000.0


def _opt_positive(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if v is None:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{a.name} must be a finite number > 0, got {v!r}")


def _positive(inst: Any, a: attrs.Attribute, v: Any) -> None:
    if v is None:
        raise ConfigError(f"{a.name} must be a finite number > 0, got None")
    _opt_positive(inst, a, v)


def _sizing(inst: Any, a: attrs.Attribute, v: Any) -> None:
    parse_sizing(v)


@attrs.frozen(kw_only=True)
class WalletSettings:
    """``[wallet]`` and ``[sizing]`` of btkit.toml (``--balance``, ``--sizing``)."""

    balance: float = attrs.field(default=DEFAULT_BALANCE, validator=_positive)
    currency: str = "USDT"
    sizing: str = attrs.field(default="fixed", validator=_sizing)
    min_size: float | None = attrs.field(default=None, validator=_opt_positive)
    max_percent: float | None = attrs.field(default=None, validator=_opt_positive)
    max_size: float | None = attrs.field(default=None, validator=_opt_positive)

    @property
    def clamps(self) -> Clamps:
        return Clamps(min_size=self.min_size, max_percent=self.max_percent, max_size=self.max_size)


_settings = WalletSettings()


def set_wallet(**changes: Any) -> WalletSettings:
    """Set the wallet and sizing of the next runs (``balance``, ``currency``, ``sizing``, ``min_size``,
    ``max_percent``, ``max_size``). Invalid values raise :class:`ConfigError` and change nothing."""
    global _settings
    known = {f.name for f in attrs.fields(WalletSettings)}
    for key in changes:
        if key not in known:
            raise ConfigError(f"unknown wallet/sizing setting {key!r}; use one of {', '.join(sorted(known))}")
    new = attrs.evolve(_settings, **changes)
    name, args = parse_sizing(new.sizing)
    spec = next((s for s in BUILTIN if s.name == name), None)
    if spec is not None:
        check_args(spec, args)
    _settings = new
    return _settings


def get_wallet() -> WalletSettings:
    return _settings


def reset_wallet() -> WalletSettings:
    global _settings
    _settings = WalletSettings()
    return _settings


def check_args(spec: SizingSpec, args: tuple[str, ...]) -> None:
    """Run ``spec`` once on a dummy request so bad arguments are a config error before the run."""
    req = SizingRequest(
        symbol="?",
        strategy_name="?",
        position="long",
        price_open=100.0,
        price_stop_loss=99.0,
        price_take_profit=102.0,
        multiplier=1.0,
        when=0,
        equity=1000.0,
        free=1000.0,
        default_cost=100.0,
    )
    try:
        out = spec.size(req, args)
        if hasattr(out, "send"):  # a coroutine: run it up to its first real suspension
            try:
                out.send(None)
            except StopIteration:
                pass
            finally:
                out.close()
    except ConfigError:
        raise
    except Exception:  # only argument parsing is checked here
        return


WALLET_KEY = ("wallet",)


@attrs.frozen(kw_only=True)
class WalletDoc:
    """The live ``wallet`` document: the starting balance the booked history is added to."""

    balance: float = attrs.field(validator=_positive)
    currency: str = "USDT"


async def broker_balance(broker: Any) -> float | None:
    """The broker's ``get_balance()`` (quote currency, sync or async), or None when it has none."""
    import asyncio
    import inspect

    fn = getattr(broker, "get_balance", None)
    if fn is None:
        return None
    out = fn() if inspect.iscoroutinefunction(fn) else await asyncio.to_thread(fn)
    if inspect.isawaitable(out):
        out = await out
    if out is None:
        return None
    if isinstance(out, bool) or not isinstance(out, (int, float)) or not math.isfinite(out) or out <= 0:
        raise ConfigError(f"broker get_balance() returned {out!r}; it must be a finite amount > 0")
    return float(out)


def fee_of(c: Closed, *, slippage_pct: float, fee_pct: float) -> tuple[float, float]:
    """(gross pnl, fees) in money of one closed trade: ``gross − fees`` is its recorded ``pnl_cost``."""
    from btkit.stats import signal_row_of

    net = c.pnl.pnl_cost
    if fee_pct == 0 or c.signal is None:
        return net, 0.0
    gross = position_pnl(signal_row_of(c), c.pnl.price_close, slippage_pct=slippage_pct, fee_pct=0.0).pnl_cost
    return gross, gross - net


def held_row(inst: StrategyInstance) -> SignalRow | None:
    """The row whose margin the instance holds: open position, resting entry, or an open in flight."""
    st = inst.state
    if st.pending is not None:
        return st.pending
    if st.scheduled is not None:
        return st.scheduled
    intent = st.strategy.intent
    if intent is not None and intent.action in ("open", "schedule", "activate"):
        return intent.row
    return None


def margin_of(row: SignalRow) -> float:
    return total_invested(row)


class Wallet:
    """The wallet of one run (a single backtest, a lockstep portfolio, or a live process)."""

    def __init__(
        self,
        run: Any,
        settings: WalletSettings | None = None,
        *,
        fee_pct: float = 0.1,
        slippage_pct: float = 0.1,
    ) -> None:
        self.run = run
        self.settings = settings or get_wallet()
        self.balance = self.settings.balance
        self.currency = self.settings.currency
        self.fee_pct = fee_pct
        self.slippage_pct = slippage_pct
        self._seen: dict[int, int] = {}
        self.net: list[float] = []
        self.gross: list[float] = []
        self.fees: list[float] = []
        # close times in order, and the exact (rational) sum of the net pnl of the trades before each:
        # equity before a minute is a bisect, not a pass over every trade (O(n²) over a long portfolio)
        self._times: list[int] = []
        self._nets: list[float] = []
        self._prefix: list[Fraction] = [Fraction(0)]
        self._prefix_f: list[float] = [0.0]  # each exact prefix sum rounded once (read far more than booked)
        # per strategy, (close time, pnl %) in booking order: Kelly reads one strategy's trades only
        self._by_strategy: dict[str, list[tuple[int, float]]] = {}
        self._spec: tuple[SizingSpec, tuple[str, ...]] | None = None
        self._custom = False
        self._live_ready = False
        if getattr(run, "components", None) is not None:
            self.method()  # an unknown sizing name or bad argument fails the run before it starts

    # ------------------------------------------------------------ booking (derived from histories)
    def _instances(self) -> Iterable[Any]:
        return getattr(self.run, "instances", {}).values()

    def sync(self) -> None:
        """Book every closed trade of the run's instances not booked yet (idempotent). Called before every
        sizing decision: with nothing new it is one length check per instance."""
        seen = self._seen
        for inst in getattr(self.run, "instances", {}).values():
            history = inst.history
            n = seen.get(id(inst), 0)
            if len(history) == n:
                continue
            for c in history[n:]:
                gross, fee = fee_of(c, slippage_pct=self.slippage_pct, fee_pct=self.fee_pct)
                net = c.pnl.pnl_cost
                self.net.append(net)
                self.gross.append(gross)
                self.fees.append(fee)
                self._by_strategy.setdefault(c.strategy_name, []).append(
                    (c.close_timestamp, c.pnl.pnl_percentage)
                )
                self._book_time(c.close_timestamp, net)
            seen[id(inst)] = len(history)

    def _book_time(self, when: int, net: float) -> None:
        at = bisect.bisect_right(self._times, when)
        self._times.insert(at, when)
        self._nets.insert(at, net)
        del self._prefix[at + 1 :]
        del self._prefix_f[at + 1 :]
        for value in self._nets[at:]:  # usually just the last one: closes come in time order
            total = self._prefix[-1] + Fraction(value)
            self._prefix.append(total)
            self._prefix_f.append(float(total))

    @property
    def realised(self) -> float:
        """Σ realised pnl after fees (money): the exact running sum rounded once (= ``math.fsum(net)``),
        not a pass over every trade per sizing decision."""
        self.sync()
        return self._prefix_f[-1]

    @property
    def total_fees(self) -> float:
        self.sync()
        return math.fsum(self.fees)

    @property
    def equity(self) -> float:
        """Cash-basis equity: balance + realised pnl (fees paid). Open positions are not marked here."""
        return self.balance + self.realised

    @property
    def locked(self) -> float:
        return math.fsum([margin_of(r) for r in map(held_row, self._instances()) if r is not None])

    @property
    def free(self) -> float:
        return self.equity - self.locked

    def open_count(self) -> int:
        return sum(1 for i in self._instances() if held_row(i) is not None)

    def closed_pnls(self, strategy_name: str, when: int) -> tuple[float, ...]:
        """Per-trade pnl % of ``strategy_name``'s trades closed before the minute ``when`` (never later)."""
        self.sync()
        return self._closed_pnls(strategy_name, when)

    def _closed_pnls(self, strategy_name: str, when: int) -> tuple[float, ...]:
        return tuple(p for t, p in self._by_strategy.get(strategy_name, ()) if t < when)

    def equity_before(self, when: int) -> float:
        """Cash-basis equity counting the trades closed before the minute ``when``: what sizing sees, so
        the order in which symbols tick within one minute never changes a size."""
        self.sync()
        return self._equity_before(when)

    def _equity_before(self, when: int) -> float:
        # the exact sum rounded once, as math.fsum would give it
        return self.balance + self._prefix_f[bisect.bisect_left(self._times, when)]

    # ------------------------------------------------------------ sizing + the funds check
    def method(self) -> tuple[SizingSpec, tuple[str, ...]]:
        if self._spec is None:
            name, args = parse_sizing(self.settings.sizing)
            table = getattr(getattr(self.run, "components", None), "by_kind", {}).get("sizing") or {
                s.name: s for s in BUILTIN
            }
            spec = table.get(name)
            if spec is None:
                raise ConfigError(
                    f"no sizing named {name!r} is registered (known: {', '.join(sorted(table))})"
                )
            check_args(spec, args)
            self._spec = (spec, args)
            self._custom = spec.dist != "btkit"
        return self._spec

    # ------------------------------------------------------------ live: the starting balance, persisted
    async def ensure_live(self) -> None:
        """Live: the starting balance from the ``wallet`` document, or — on the very first start — from
        the broker's ``get_balance()`` (its current balance less the realised pnl already in the
        history) where it has one, else from the settings; then persisted, so restarts never re-derive it."""
        store = getattr(self.run, "store", None)
        if self._live_ready or store is None or not getattr(store, "persistent", False):
            return
        from btkit import serde
        from btkit.persist.backend import Change

        doc = store._structured(WALLET, WALLET_KEY, WalletDoc, where="wallet state")
        if doc is None:
            balance = self.settings.balance
            broker = getattr(getattr(self.run, "gate", None), "broker", None)
            reported = await broker_balance(broker)
            if reported is not None:
                balance = reported - self.realised
            doc = WalletDoc(balance=balance, currency=self.currency)
            store.save([Change(WALLET, WALLET_KEY, serde.to_document(serde.unstructure(doc)))])
        self.balance, self.currency = doc.balance, doc.currency
        self._live_ready = True

    async def admit(
        self, inst: StrategyInstance, signal: Signal, entry: float, when: int
    ) -> Signal | RiskRejection:
        """The signal with its cost fixed by the sizing, or the rejection saying why it cannot open."""
        await self.ensure_live()
        self.sync()  # once: the reads below see the same booked trades
        equity = self.balance + self._prefix_f[-1]
        free = equity - self.locked
        cur = self.currency
        spec, args = self.method()
        sizing_equity = self._equity_before(when)
        leverage = signal.multiplier if signal.multiplier is not None else inst.cfg.signal_leverage_multiplier

        async def candles(interval: str, limit: int) -> Any:
            return await inst.market.window(inst.symbol, interval, when, limit)

        req = SizingRequest(
            symbol=inst.symbol,
            strategy_name=inst.strategy.name,
            position=signal.position,
            price_open=entry,
            price_stop_loss=signal.price_stop_loss,
            price_take_profit=signal.price_take_profit,
            multiplier=leverage,
            when=when,
            equity=sizing_equity,
            free=free,
            default_cost=inst.cfg.position_entry_cost,
            signal_cost=signal.cost,
            closed_pnls=self._closed_pnls(inst.strategy.name, when)
            if spec.name == "kelly" or self._custom
            else (),
            candles=candles,
        )
        try:
            cost = await compute_size(spec, args, req, self.settings.clamps)
        except SizingRefused as exc:
            return self._rejection(inst, signal, when, f"sizing {spec.name}: {exc}")
        if cost > free:
            return self._rejection(
                inst,
                attrs.evolve(signal, cost=cost),
                when,
                f"insufficient funds: cost {cost:,.2f} {cur} exceeds free balance {free:,.2f} {cur} "
                f"(equity {equity:,.2f}, locked {equity - free:,.2f}); the signal is not opened",
            )
        return signal if signal.cost == cost else attrs.evolve(signal, cost=cost)

    def _rejection(self, inst: StrategyInstance, signal: Signal, when: int, note: str) -> RiskRejection:
        return RiskRejection(
            risk_name=WALLET,
            note=note,
            symbol=inst.symbol,
            strategy_name=inst.strategy.name,
            active_position_count=self.open_count(),
            timestamp=when,
            signal=signal,
        )


__all__ = ("WALLET", "Wallet", "WalletSettings", "get_wallet", "reset_wallet", "set_wallet")


def _float(section: str, key: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"[{section}] {key} must be a number, got {value!r}") from None


def wallet_from_settings(
    settings: dict[str, dict[str, Any]], *, balance: float | None = None, sizing: str | None = None
) -> WalletSettings:
    """Apply ``[wallet]`` / ``[sizing]`` of btkit.toml, then the ``--balance`` / ``--sizing`` options."""
    reset_wallet()
    wallet = dict(settings.get("wallet", {}))
    size = dict(settings.get("sizing", {}))
    changes: dict[str, Any] = {}
    if "balance" in wallet:
        changes["balance"] = _float("wallet", "balance", wallet["balance"])
    if "currency" in wallet:
        changes["currency"] = str(wallet["currency"])
    if "method" in size:
        changes["sizing"] = str(size["method"])
    for key in ("min_size", "max_percent", "max_size"):
        if key in size:
            changes[key] = _float("sizing", key, size[key])
    if balance is not None:
        changes["balance"] = float(balance)
    if sizing is not None:
        changes["sizing"] = sizing
    return set_wallet(**changes)
