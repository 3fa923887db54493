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
