"""The partials-trailing package: entry point, the rules on hand-made numbers, a backtest on the sim exchange."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib.metadata import entry_points

import numpy as np
import pytest

import btkit
import btkit_strategy_partials as pt
from btkit.components import StrategySpec
from btkit.lifecycle import management
from btkit.model import Entry, SignalRow
from btkit.testing import btkit_clean  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _clean(btkit_clean: None) -> Iterator[None]:  # noqa: F811
    yield


def test_entry_point_is_installed_in_the_btkit_group() -> None:
    eps = {ep.name: ep for ep in entry_points(group="btkit")}
    assert "partials-trailing" in eps, f"btkit entry points installed: {sorted(eps)}"
    ep = eps["partials-trailing"]
    assert ep.value == "btkit_strategy_partials"
    assert ep.dist is not None and ep.dist.name == "btkit-strategy-partials"
    assert ep.load() is importlib.import_module("btkit_strategy_partials")


def test_registry_hook_offers_both_names_with_the_callback() -> None:
    specs = pt.btkit_strategies()
    assert [s.name for s in specs] == ["partials-trailing", "partials"]
    for s in specs:
        assert isinstance(s, StrategySpec)
        assert (s.interval, s.get_signal, s.dist) == ("15m", pt.get_signal, "btkit-strategy-partials")
        assert s.callbacks == {"on_active": pt.on_active}
    assert hasattr(pt.btkit_strategies, "btkit_impl")


def test_breakout_rule() -> None:
    high = np.full(21, 101.0)
    close = np.full(21, 100.0)
    assert not pt.breakout(high, close)
    close[-1] = 101.5  # above the 20 highs before it (101)
    assert pt.breakout(high, close)
    high[3] = 102.0  # one earlier high is higher: no breakout
    assert not pt.breakout(high, close)
    with pytest.raises(ValueError, match="21 candles"):
        pt.breakout(high[:5], close[:5])


def test_stop_shift_puts_the_stop_one_percent_under_the_price() -> None:
    # entry 100, original stop 98.5 (1.5 %); price 102 → wanted stop 100.98 → shift = −0.98 − 1.5 = −2.48
    row = SignalRow(
        id="a",
        symbol="X",
        strategy_name="p",
        exchange_name="sim",
        frame_name="",
        position="long",
        price_open=100.0,
        price_take_profit=103.0,
        price_stop_loss=98.5,
        minute_estimated_time=1440,
        cost=100.0,
        note="",
        scheduled_at=0,
        pending_at=0,
        entries=(Entry(100.0, 100.0, 0),),
    )
    shift = pt.stop_shift(100.0, 98.5, 102.0, 1.0)
    assert shift == pytest.approx(-2.48)
    assert management.trailing_stop_price(row, shift) == pytest.approx(102.0 * 0.99, rel=1e-14)


def test_backtest_on_the_sim_exchange_takes_partials_and_trails() -> None:
    btkit.add_frame("jan", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 15, tzinfo=UTC))
    results = list(btkit.Backtest.run("BTCUSDT", strategy="partials-trailing", exchange="sim", frame="jan"))
    closed = [r for r in results if isinstance(r, btkit.Closed)]
    assert closed, [r.action for r in results]
    with_partials = [c for c in closed if c.signal.partials]
    assert with_partials, "no partial close in this range"
    for c in closed:
        v = c.signal
        assert len(v.entries) == 1
        profits = [p for p in v.partials if p.kind == "profit"]
        assert [p.percent for p in profits] == [pt.FIRST_PARTIAL_PERCENT, pt.SECOND_PARTIAL_PERCENT][
            : len(profits)
        ]
        assert all(p.percent == pt.CUT_LOSS_PERCENT for p in v.partials if p.kind == "loss")
        assert v.price_stop_loss >= v.original_price_stop_loss  # the stop only ever rises
        if c.close_reason == "stop_loss":
            assert c.pnl.price_close == v.price_stop_loss
    assert any(c.signal.price_stop_loss > c.signal.price_open for c in closed), (
        "no stop ever trailed into profit"
    )
