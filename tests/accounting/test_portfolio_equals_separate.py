"""A lockstep portfolio whose wallet never binds is its separate runs: same trades, sizes and money.

The speed work on the lockstep loop and the wallet (issue 12, docs/wallet-and-sizing.md#speed) must not
change a result: with funds to spare no signal is refused, so each symbol trades exactly as alone, and
the portfolio's money view (equity curve, statistics) equals the one built from the separate runs.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import attrs
import numpy as np
from mixed_strategy import comparable

import btkit
from btkit.accounting.wallet import WALLET, set_wallet
from btkit.engine.accounts import backtest_portfolio
from btkit.engine.backtest import _rejections
from btkit.model import Closed, Opened

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
KW: dict[str, str] = {"strategy": "smacross", "exchange": "sim", "frame": "fortnight"}


def frame() -> None:
    btkit.add_frame("fortnight", datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 16, tzinfo=UTC))


def without_id(d: dict[str, Any]) -> dict[str, Any]:
    """The signal ids are random (uuid4 when the strategy sets none): all else must match."""
    d = dict(d)
    if isinstance(d.get("signal"), dict):
        d["signal"] = {k: v for k, v in d["signal"].items() if k != "id"}
    return d


def trades(symbol: str) -> list[dict[str, Any]]:
    """Every closed trade of the last run of ``symbol`` as the statistics see it (best/worst included)."""
    return [without_id(attrs.asdict(c)) for c in btkit.Backtest.get_data(symbol, **KW).closed]


def refused() -> int:
    return sum(1 for s in SYMBOLS for r in _rejections.get((s, *KW.values()), []) if r.risk_name == WALLET)  # type: ignore[arg-type]


def test_fixed_sizing_on_a_wallet_that_never_binds_gives_the_separate_runs_exactly() -> None:
    frame()
    set_wallet(balance=1_000_000.0, sizing="fixed:250")
    alone = {s: [without_id(comparable(r)) for r in btkit.Backtest.run(s, **KW)] for s in SYMBOLS}
    alone_trades = {s: trades(s) for s in SYMBOLS}
    alone_view = backtest_portfolio(SYMBOLS, **KW)  # the separate runs taken as one account
    assert refused() == 0
    together = list(btkit.Backtest.run_portfolio(SYMBOLS, **KW))
    assert refused() == 0
    by_symbol: dict[str, list[dict[str, Any]]] = {s: [] for s in SYMBOLS}
    for r in together:
        by_symbol[r.symbol].append(without_id(comparable(r)))
    assert by_symbol == alone
    assert {s: trades(s) for s in SYMBOLS} == alone_trades
    closed = [r for r in together if isinstance(r, Closed)]
    assert len(closed) >= 20 and {c.symbol for c in closed} == set(SYMBOLS)
    assert all(c.signal.cost == 250.0 for c in closed)
    view = backtest_portfolio(SYMBOLS, **KW)
    assert view.stats == alone_view.stats
    for field in ("time", "equity", "realised", "unrealised", "open_positions"):
        assert np.array_equal(getattr(view.curve, field), getattr(alone_view.curve, field)), field
    assert view.stats.final_equity == 1_000_000.0 + math.fsum(c.pnl.pnl_cost for c in closed)


def test_equity_sizing_on_a_wallet_that_never_binds_keeps_every_trade_and_sizes_on_the_shared_equity() -> (
    None
):
    """Sizing by equity changes the sizes (the equity is shared), never which trades happen or when."""
    frame()
    set_wallet(balance=1_000_000.0, sizing="fixed:250")
    alone = {s: [(c["signal"]["pending_at"], c["close_timestamp"], c["close_reason"]) for c in trades(s)]
             for s in SYMBOLS if list(btkit.Backtest.run(s, **KW))}  # fmt: skip
    set_wallet(sizing="percent:1")
    together = list(btkit.Backtest.run_portfolio(SYMBOLS, **KW))
    assert refused() == 0
    assert {
        s: [(c["signal"]["pending_at"], c["close_timestamp"], c["close_reason"]) for c in trades(s)]
        for s in SYMBOLS
    } == alone
    closed = [r for r in together if isinstance(r, Closed)]
    for r in (r for r in together if isinstance(r, Opened)):  # 1 % of the equity booked before the open
        booked = math.fsum(c.pnl.pnl_cost for c in closed if c.close_timestamp < r.timestamp)
        assert r.signal.cost == (1_000_000.0 + booked) * 1 / 100.0
