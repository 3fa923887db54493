"""The portfolio view (money) of backtests that have run: their trades, prices and wallet refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from btkit.accounting.equity import fetch_prices
from btkit.accounting.view import PortfolioView, portfolio_view
from btkit.accounting.wallet import WALLET, get_wallet
from btkit.config import get_config
from btkit.context import datetime_to_ms
from btkit.model import Closed
from btkit.plugins import collect_components, get_plugin_manager


def backtest_portfolio(
    symbols: Sequence[str], *, strategy: str | Sequence[str], exchange: str, frame: str
) -> PortfolioView:
    """One mark-to-market equity curve and the money statistics over the last backtests of ``symbols``
    × ``strategy`` on ``frame`` (a lockstep portfolio, or separate runs taken as one account)."""
    from btkit.engine.backtest import Backtest, _rejections

    strategies = [strategy] if isinstance(strategy, str) else list(strategy)
    closed: list[Closed] = []
    refused = set()
    for strat in strategies:
        for sym in symbols:
            key = (sym, strat, exchange, frame)
            kw = dict(strategy=strat, exchange=exchange, frame=frame)
            closed += [r for r in Backtest.results(sym, **kw) if isinstance(r, Closed)]
            for r in _rejections.get(key, []):
                if r.risk_name == WALLET and r.symbol == sym and r.strategy_name == strat:
                    refused.add(id(r))
    spec = collect_components(get_plugin_manager()).get("frame", frame)
    start, end = datetime_to_ms(spec.start), datetime_to_ms(spec.end)
    end = max([end, *(c.close_timestamp for c in closed)])
    prices = asyncio.run(fetch_prices(exchange, list(symbols), start, end))
    cfg, wallet = get_config(), get_wallet()
    return portfolio_view(
        closed,
        prices,
        balance=wallet.balance,
        currency=wallet.currency,
        start=start,
        end=end,
        slippage_pct=cfg.percent_slippage,
        fee_pct=cfg.percent_fee,
        symbols=symbols,
        refused=len(refused),
    )


def live_portfolio(
    symbols: Sequence[str], *, strategy: str, exchange: str, until: int | None = None
) -> PortfolioView:
    """The same view for a live (or paper, or replayed) run: every persisted closed trade of
    ``symbols`` × ``strategy``, plus the positions still open in this process marked at the last hourly
    close, from the persisted starting balance (``--balance`` when no wallet document exists yet)."""
    from btkit.accounting.wallet import held_row
    from btkit.engine import live
    from btkit.market import wall_clock_ms

    closed: list[Closed] = []
    open_rows = []
    balance = get_wallet().balance
    sess = live._session
    for sym in symbols:
        inst = sess.find(sym, strategy) if sess is not None else None
        closed += list(inst.history) if inst is not None else live._read_history(sym, strategy)
        row = held_row(inst) if inst is not None else None
        if row is not None and row.pending_at is not None:
            open_rows.append(row)
        if inst is not None:
            balance = inst.run.wallet.balance
    if sess is None:
        balance = _persisted_balance(balance)
    starts = [c.signal.pending_at or c.signal.scheduled_at for c in closed if c.signal is not None]
    starts += [r.pending_at for r in open_rows if r.pending_at is not None]
    end = until if until is not None else wall_clock_ms()
    start = min(starts, default=end)
    end = max([end, *(c.close_timestamp for c in closed)])
    prices = asyncio.run(fetch_prices(exchange, list(symbols), start, end))
    cfg, wallet = get_config(), get_wallet()
    return portfolio_view(
        closed,
        prices,
        balance=balance,
        currency=wallet.currency,
        start=start,
        end=end,
        slippage_pct=cfg.percent_slippage,
        fee_pct=cfg.percent_fee,
        symbols=symbols,
        open_rows=open_rows,
    )


def _persisted_balance(default: float) -> float:
    """The starting balance of the ``wallet`` document in the configured backend (read-only)."""
    from btkit.accounting.wallet import WALLET, WALLET_KEY, WalletDoc
    from btkit.engine.live import SETTINGS
    from btkit.persist.state import BackendStore

    pm = get_plugin_manager()
    backend = (
        collect_components(pm)
        .get("persistence", SETTINGS.persistence)
        .factory(**SETTINGS.persistence_options)
    )
    backend.open(exclusive=False)
    try:
        doc = BackendStore(pm, backend)._structured(WALLET, WALLET_KEY, WalletDoc, where="wallet state")
    finally:
        backend.close()
    return doc.balance if doc is not None else default
