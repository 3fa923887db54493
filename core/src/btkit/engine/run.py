"""What the instances of one run share: plugins, components, config, markets, risk, store, broker."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from btkit import events
from btkit.broker import BrokerGate
from btkit.config import EngineConfig
from btkit.engine.instance import StrategyInstance
from btkit.events import ErrorEvent
from btkit.market import Market, wall_clock_ms
from btkit.params import resolve_params
from btkit.persist.state import BackendStore, MemoryStore
from btkit.plugins import Components, PluginManager
from btkit.risk import RiskBook, RiskRejection

log = logging.getLogger("btkit")


class Run:
    def __init__(
        self,
        *,
        pm: PluginManager,
        components: Components,
        cfg: EngineConfig,
        backtest: bool,
        store: MemoryStore | BackendStore | None = None,
        gate: BrokerGate | None = None,
        frame_end: int | None = None,
        now_ms: Callable[[], int] = wall_clock_ms,
        risk: RiskBook | None = None,
        extra_risks: tuple[str, ...] = (),
        params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.pm = pm
        self.components = components
        self.cfg = cfg
        self.backtest = backtest
        self.store = store or MemoryStore()
        self.gate = gate
        self.frame_end = frame_end
        self.now_ms = now_ms
        self.markets: dict[str, Market] = {}
        self.risk = risk or RiskBook(components.by_kind["risk"], hook=pm.hook.btkit_risk_check)
        self.instances: dict[tuple[str, str, str], StrategyInstance] = {}
        self.stopping = False
        self._risk_loaded: set[str] = set()
        self.rejections: list[RiskRejection] = []
        self.extra_risks = extra_risks
        self.params = dict(params or {})  # strategy name → parameter overrides (docs/parameters.md)
        from btkit.accounting.wallet import Wallet  # money: balance, sizing, the funds check (issue 12)

        self.wallet = Wallet(self, fee_pct=cfg.percent_fee, slippage_pct=cfg.percent_slippage)

    async def aclose(self) -> None:
        """Close the exchanges this run used (e.g. a ccxt client's connections)."""
        import inspect

        for market in self.markets.values():
            close = market.spec.close
            if close is None:
                continue
            try:
                out = close()
                if inspect.isawaitable(out):
                    await out
            except Exception as exc:  # closing must never mask the run's own outcome
                log.warning("closing exchange %s failed: %s", market.spec.name, exc)

    def market(self, exchange_name: str) -> Market:
        m = self.markets.get(exchange_name)
        if m is None:
            spec = self.components.get("exchange", exchange_name)
            m = self.markets[exchange_name] = Market(
                spec, self.cfg, backtest=self.backtest, now_ms=self.now_ms
            )
        return m

    def instance(
        self, symbol: str, strategy_name: str, exchange_name: str, frame_name: str = ""
    ) -> StrategyInstance:
        key = (symbol, strategy_name, exchange_name)
        inst = self.instances.get(key)
        if inst is None:
            strategy = self.components.get("strategy", strategy_name)
            if self.extra_risks:
                strategy = attrs.evolve(strategy, risks=(*strategy.risks, *self.extra_risks))
            self.market(exchange_name)
            for name in strategy.risk_names:
                self.components.get("risk", name)
                if name not in self._risk_loaded:
                    self.risk.restore(name, self.store.load_risk(name), self.now_ms())
                    self._risk_loaded.add(name)
            inst = StrategyInstance(
                self, symbol=symbol, strategy=strategy, exchange_name=exchange_name, frame_name=frame_name
            )
            inst.params = resolve_params(strategy.name, strategy.params, self.params.get(strategy.name))
            self.instances[key] = inst
        return inst

    def find(self, symbol: str, strategy_name: str) -> StrategyInstance | None:
        for (sym, strat, _), inst in self.instances.items():
            if sym == symbol and strat == strategy_name:
                return inst
        return None

    async def report(self, exc: BaseException | None, where: str, *, fatal: bool = False) -> None:
        error = exc if exc is not None else RuntimeError("unknown error")
        # tagged so a host that prints listen_error events itself (the CLI) can drop this duplicate line
        (log.critical if fatal else log.warning)("%s: %s", where, error, extra={"btkit_error_event": True})
        event = ErrorEvent(error, where, fatal)
        try:
            self.pm.hook.btkit_run_error(error=error, where=where)
        except Exception:
            log.exception("a btkit_run_error observer raised")
        await events.emit("error", event)

    async def report_risk(self, rejection: RiskRejection) -> None:
        log.info(
            "risk %s rejected %s on %s: %s",
            rejection.risk_name,
            rejection.strategy_name,
            rejection.symbol,
            rejection.note,
        )
        self.rejections.append(rejection)
        try:
            self.pm.hook.btkit_risk_rejected(payload=rejection, note=rejection.note)
        except Exception:
            log.exception("a btkit_risk_rejected observer raised")
        await events.emit("risk", rejection)
