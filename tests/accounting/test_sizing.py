"""Every sizing method on hand-computed cases, the clamps, refusals, and the settings that select them."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import numpy as np
import pytest

from btkit.accounting.sizing import (
    BUILTIN,
    Clamps,
    SizingRefused,
    SizingRequest,
    compute_size,
    kelly_fraction,
)
from btkit.accounting.wallet import set_wallet, wallet_from_settings
from btkit.errors import ConfigError
from btkit.model import Candles

SPECS = {s.name: s for s in BUILTIN}


def request(**kw: Any) -> SizingRequest:
    base = dict(
        symbol="BTCUSDT",
        strategy_name="s",
        position="long",
        price_open=100.0,
        price_stop_loss=98.0,
        price_take_profit=104.0,
        multiplier=1.0,
        when=0,
        equity=10_000.0,
        free=10_000.0,
        default_cost=100.0,
    )
    base.update(kw)
    return SizingRequest(**base)


def size(name: str, *args: str, clamps: Clamps | None = None, **kw: Any) -> float:
    return asyncio.run(compute_size(SPECS[name], tuple(args), request(**kw), clamps or Clamps()))


def test_fixed_keeps_the_signal_cost_else_the_default_and_an_argument_wins() -> None:
    assert size("fixed") == 100.0
    assert size("fixed", signal_cost=250.0) == 250.0
    assert size("fixed", "40", signal_cost=250.0) == 40.0


def test_percent_of_equity() -> None:
    assert size("percent", "10") == pytest.approx(1_000.0)  # 10 % of 10,000
    assert size("percent", "10", equity=7_500.0) == pytest.approx(750.0)


def test_risk_sizes_the_loss_at_the_stop_to_risk_percent_of_equity() -> None:
    # 2 % of 10,000 = 200 at risk; |100 − 98| = 2 per unit → 100 units → notional 10,000 → margin 10,000
    assert size("risk", "2") == pytest.approx(10_000.0)
    # with 5× leverage the margin is a fifth of the notional
    assert size("risk", "2", multiplier=5.0) == pytest.approx(2_000.0)
    # a short: distance is |entry − SL| too. 1 % of 10,000 = 100 / |50 − 52| = 50 units × 50 = 2,500
    assert size("risk", "1", position="short", price_open=50.0, price_stop_loss=52.0) == pytest.approx(
        2_500.0
    )


def test_kelly_from_closed_trades() -> None:
    pnls = (2.0,) * 6 + (-1.0,) * 4  # W = 0.6, R = 2 / 1 → f = 0.6 − 0.4 / 2 = 0.4
    assert kelly_fraction(pnls) == pytest.approx(0.4)
    assert size("kelly", closed_pnls=pnls) == pytest.approx(10_000 * 0.4 * 0.25)  # default multiplier 0.25
    assert size("kelly", "0.5", closed_pnls=pnls, multiplier=2.0) == pytest.approx(10_000 * 0.4 * 0.5 / 2)
    # fewer than 10 closed trades: the fixed cost
    assert size("kelly", closed_pnls=pnls[:9]) == 100.0
    # no edge: refused with the reason
    with pytest.raises(SizingRefused, match="Kelly fraction"):
        size("kelly", closed_pnls=(1.0,) * 3 + (-1.0,) * 7)


def test_atr_sizes_risk_per_atr_times_multiplier() -> None:
    # true ranges of candles 2..n: high − low = 2, no gaps → ATR = 2
    n = 15
    close = np.full(n, 100.0)
    candles = Candles(np.arange(n) * 900_000, close, close + 1.0, close - 1.0, close, np.ones(n))

    async def fetch(interval: str, limit: int) -> Candles:
        assert (interval, limit) == ("15m", 15)
        return candles

    # 1 % of 10,000 = 100; ATR·mult = 2·2 = 4 → 25 units × 100 = 2,500
    assert size("atr", "1", candles=fetch) == pytest.approx(2_500.0)
    assert size("atr", "1", "4", candles=fetch) == pytest.approx(1_250.0)


def test_clamps_cap_then_floor() -> None:
    assert size("percent", "50", clamps=Clamps(max_percent=20)) == pytest.approx(2_000.0)
    assert size("percent", "50", clamps=Clamps(max_size=1_500)) == pytest.approx(1_500.0)
    assert size("percent", "50", clamps=Clamps(max_percent=20, max_size=1_500)) == pytest.approx(1_500.0)
    assert size("percent", "1", clamps=Clamps(min_size=300)) == pytest.approx(300.0)


def test_bad_settings_are_config_errors_and_change_nothing() -> None:
    before = set_wallet(balance=5_000.0, sizing="risk:2")
    for bad in ({"sizing": "risk:x"}, {"sizing": "percent:-1"}, {"balance": 0}, {"max_size": float("nan")}):
        with pytest.raises(ConfigError):
            set_wallet(**bad)
    assert set_wallet() == before
    got = wallet_from_settings(
        {
            "wallet": {"balance": "2500", "currency": "USDC"},
            "sizing": {"method": "kelly:0.5", "max_percent": 25},
        }
    )
    assert (got.balance, got.currency, got.sizing, got.max_percent) == (2_500.0, "USDC", "kelly:0.5", 25.0)
    assert wallet_from_settings({"wallet": {"balance": 1}}, balance=9.0, sizing="fixed:3").balance == 9.0
    assert attrs.asdict(wallet_from_settings({}))["sizing"] == "fixed"
