"""The dca-ladder package: entry point, the rules on hand-made numbers, and a backtest on the sim exchange."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import entry_points

import numpy as np
import pytest

import btkit
import btkit_strategy_dca as dca
from btkit.components import StrategySpec
from btkit.lifecycle import management
from btkit.model import Entry, SignalRow
from btkit.testing import btkit_clean  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _clean(btkit_clean: None) -> Iterator[None]:  # noqa: F811
    yield


def test_entry_point_is_installed_in_the_btkit_group() -> None:
    eps = {ep.name: ep for ep in entry_points(group="btkit")}
    assert "dca-ladder" in eps, f"btkit entry points installed: {sorted(eps)}"
    ep = eps["dca-ladder"]
    assert ep.value == "btkit_strategy_dca"
    assert ep.dist is not None and ep.dist.name == "btkit-strategy-dca"
    assert ep.load() is importlib.import_module("btkit_strategy_dca")


def test_registry_hook_offers_both_names_with_the_callback() -> None:
    specs = dca.btkit_strategies()
    assert [s.name for s in specs] == ["dca-ladder", "dca"]
    for s in specs:
        assert isinstance(s, StrategySpec)
        assert (s.interval, s.get_signal, s.dist) == ("15m", dca.get_signal, "btkit-strategy-dca")
        assert s.callbacks == {"on_active": dca.on_active}
    assert hasattr(dca.btkit_strategies, "btkit_impl")


def test_dip_rule() -> None:
    flat = np.full(20, 100.0)
    assert not dca.is_dip(flat)
    # SMA(20) of nineteen 100s and one 98.4 = 99.92; 98.4 ≤ 99.92·0.985 = 98.42 → a dip
    assert dca.is_dip(np.append(np.full(19, 100.0), 98.4))
    # 98.5 > 98.4225 (SMA 99.925·0.985): not yet
    assert not dca.is_dip(np.append(np.full(19, 100.0), 98.5))
    with pytest.raises(ValueError, match="at least 20 closes"):
        dca.is_dip(np.full(5, 100.0))


def test_next_rung_is_two_percent_under_the_lowest_entry() -> None:
    assert dca.next_rung([100.0, 97.0, 98.0]) == pytest.approx(97.0 * 0.98)


def test_take_profit_shift_puts_the_target_two_percent_over_the_effective_entry() -> None:
    # entries 100 and 98 ($100 each): E = 200/(1 + 100/98) = 98.9898…; original TP 102 (2 % over 100)
    row = SignalRow(
        id="a",
        symbol="X",
        strategy_name="dca",
        exchange_name="sim",
        frame_name="",
        position="long",
        price_open=100.0,
        price_take_profit=102.0,
        price_stop_loss=90.0,
        minute_estimated_time=1440,
        cost=100.0,
        note="",
        scheduled_at=0,
        pending_at=0,
        entries=(Entry(100.0, 100.0, 0), Entry(98.0, 100.0, 60_000)),
    )
    e = 200 / (1 + 100 / 98)
    shift = dca.take_profit_shift(e, 102.0, 2.0)
    assert management.trailing_take_price(row, shift) == pytest.approx(e * 1.02, rel=1e-14)
    assert shift < 0  # the target comes closer


def test_backtest_on_the_sim_exchange_averages_in_and_pulls_the_target() -> None:
    btkit.add_frame("feb", datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 2, 15, tzinfo=UTC))
    results = list(btkit.Backtest.run("BTCUSDT", strategy="dca-ladder", exchange="sim", frame="feb"))
    closed = [r for r in results if isinstance(r, btkit.Closed)]
    assert closed, [r.action for r in results]
    laddered = [c for c in closed if len(c.signal.entries) > 1]
    assert laddered, "no trade used the ladder in this range"
    for c in closed:
        v = c.signal
        assert len(v.entries) <= dca.MAX_ENTRIES
        lowest = v.entries[0].price
        for e in v.entries[1:]:  # each rung at least 2 % under the lowest entry before it
            assert e.price <= lowest * 0.98 + 1e-9
            assert e.cost == dca.COST
            lowest = e.price
        assert v.price_stop_loss == v.original_price_stop_loss  # the stop never moves
        if v.price_take_profit != v.original_price_take_profit:
            assert len(v.entries) > 1
            assert v.price_take_profit == pytest.approx(v.price_open * 1.02, rel=1e-12)
    assert any(c.signal.price_take_profit != c.signal.original_price_take_profit for c in laddered)
