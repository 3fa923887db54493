"""The worked example of docs/wallet-and-sizing.md: computed with the engine, and the page says the same."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest

from btkit.accounting.sizing import BUILTIN, Clamps, SizingRequest, compute_size
from btkit.accounting.wallet import WALLET, Wallet, set_wallet
from btkit.config import get_config
from btkit.lifecycle.pnl import position_pnl
from btkit.model import Entry, Signal, SignalRow

DOC = (Path(__file__).resolve().parents[2] / "docs" / "wallet-and-sizing.md").read_text(encoding="utf-8")
RISK = {s.name: s for s in BUILTIN}["risk"]


def btc_row(cost: float) -> SignalRow:
    return SignalRow(
        id="btc",
        symbol="BTCUSDT",
        strategy_name="s",
        exchange_name="e",
        frame_name="f",
        position="long",
        price_open=40_000.0,
        price_take_profit=41_600.0,
        price_stop_loss=39_200.0,
        minute_estimated_time=None,
        cost=cost,
        note="",
        scheduled_at=0,
        pending_at=0,
        multiplier=2.0,
        entries=(Entry(40_000.0, cost, 0),),
    )


def test_the_worked_example() -> None:
    req = SizingRequest(
        symbol="BTCUSDT",
        strategy_name="s",
        position="long",
        price_open=40_000.0,
        price_stop_loss=39_200.0,
        price_take_profit=41_600.0,
        multiplier=2.0,
        when=60_000,
        equity=10_000.0,
        free=10_000.0,
        default_cost=100.0,
    )
    cost = asyncio.run(compute_size(RISK, ("2",), req, Clamps()))
    assert f"**{cost:,.2f}**" in DOC  # 5,000.00

    # with it open, the ETH signal needs 10,000 of margin and only 5,000 is free: refused, not shrunk
    set_wallet(balance=10_000.0, sizing="risk:2")
    held = btc_row(cost)
    btc = SimpleNamespace(history=[], state=SimpleNamespace(pending=held, scheduled=None, strategy=None))
    eth = SimpleNamespace(
        symbol="ETHUSDT",
        strategy=SimpleNamespace(name="s"),
        cfg=get_config(),
        market=None,
        history=[],
        state=SimpleNamespace(pending=None, scheduled=None, strategy=SimpleNamespace(intent=None)),
    )
    wallet = Wallet(SimpleNamespace(instances={1: btc, 2: eth}))
    assert (wallet.locked, wallet.free) == (5_000.0, 5_000.0)
    out = asyncio.run(
        wallet.admit(
            eth, Signal(position="long", price_take_profit=2_080.0, price_stop_loss=1_960.0), 2_000.0, 1
        )
    )
    assert out.risk_name == WALLET and out.signal.cost == 10_000.0
    assert "insufficient funds: cost 10,000.00 USDT exceeds free balance 5,000.00 USDT" in out.note
    assert "insufficient funds: cost 10,000.00 USDT exceeds free balance 5,000.00 USDT" in DOC

    mark = position_pnl(held, 40_800.0, slippage_pct=0.1, fee_pct=0.1).pnl_cost
    assert f"**+{mark:,.2f}**" in DOC and f"equity on the curve {10_000 + mark:,.2f}" in DOC

    net = position_pnl(held, 41_600.0, slippage_pct=0.1, fee_pct=0.1)
    gross = position_pnl(held, 41_600.0, slippage_pct=0.1, fee_pct=0.0).pnl_cost
    fees = gross - net.pnl_cost
    # fees by hand: 0.1 % of the notional in (10,000) and out (10,000 · C/O, slipped prices)
    out_notional = 10_000.0 * (41_600 * 0.999) / (40_000 * 1.001)
    assert fees == pytest.approx(0.001 * (10_000.0 + out_notional))
    for text in (
        f"**+{net.pnl_percentage:.2f} %**",
        f"**+{net.pnl_cost:,.2f} USDT**",
        f"fees **{fees:,.2f}**",
        f"gross **{gross:,.2f}**",
        f"of {out_notional:,.2f} out",
        f"**{10_000 + net.pnl_cost:,.2f}**",
    ):
        assert text in DOC, text
