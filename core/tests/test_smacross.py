"""The smacross demo strategy: registered as a default plugin of the core, and the crossover rule on hand-made
closes."""

from __future__ import annotations

import numpy as np
import pytest

import btkit.defaults.smacross as sma
from btkit.components import StrategySpec
from btkit.plugins import DEFAULT_PLUGINS, collect_components, get_plugin_manager


def test_registered_as_a_default_plugin_without_any_entry_point() -> None:
    assert "btkit.defaults.smacross" in DEFAULT_PLUGINS
    components = collect_components(get_plugin_manager(entrypoints=False))
    for name in ("smacross", "sma-cross"):
        spec = components.get("strategy", name)
        assert spec.get_signal is sma.get_signal
        assert spec.dist == "btkit"


def test_registry_hook_offers_both_names() -> None:
    specs = sma.btkit_strategies()
    assert [s.name for s in specs] == ["smacross", "sma-cross"]
    for s in specs:
        assert isinstance(s, StrategySpec)
        assert s.interval == "15m"
        assert s.get_signal is sma.get_signal
        assert s.dist == "btkit"


def test_hookimpl_marker_is_btkit() -> None:
    assert hasattr(sma.btkit_strategies, "btkit_impl")


def _closes_crossing_on_last() -> np.ndarray:
    # 30 falling closes then a jump: SMA10 was below SMA30 and is now above
    c = np.linspace(110.0, 100.0, 30)
    return np.append(c, 200.0)


def test_cross_up_on_the_last_close() -> None:
    c = _closes_crossing_on_last()
    prev10, prev30 = c[-11:-1].mean(), c[-31:-1].mean()
    now10, now30 = c[-10:].mean(), c[-30:].mean()
    assert prev10 <= prev30 and now10 > now30  # the fixture really is a cross
    assert sma.crossed_up(c)


def test_no_signal_when_already_above() -> None:
    c = np.linspace(100.0, 130.0, 31)  # rising all along: SMA10 above SMA30 before and now
    assert not sma.crossed_up(c)


def test_no_signal_when_below() -> None:
    c = np.linspace(130.0, 100.0, 31)
    assert not sma.crossed_up(c)


def test_no_signal_on_a_cross_down() -> None:
    c = np.append(np.linspace(100.0, 110.0, 30), 70.0)
    assert not sma.crossed_up(c)


def test_equal_before_counts_as_not_above() -> None:
    # flat closes: prev SMA10 == prev SMA30 (the <= case), then a higher close crosses
    c = np.append(np.full(30, 100.0), 101.0)
    assert sma.crossed_up(c)
    assert not sma.crossed_up(np.full(31, 100.0))  # equal now: not a cross


def test_only_the_last_value_matters() -> None:
    c = _closes_crossing_on_last()
    later = np.append(c, 201.0)  # one bar after the cross: already above, no new signal
    assert not sma.crossed_up(later)


def test_too_few_closes_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 31 closes"):
        sma.crossed_up(np.ones(30))


def test_bracket_is_plus_two_minus_one_percent() -> None:
    b = sma.long_bracket(50_000.0)
    assert b["position"] == "long"
    assert b["price_take_profit"] == pytest.approx(51_000.0)
    assert b["price_stop_loss"] == pytest.approx(49_500.0)


def test_backtest_through_the_engine_opens_only_on_crossovers() -> None:
    """A week on the simulated exchange through btkit.Backtest: every opened trade sits on a crossover
    of the 15m closes before the decision minute (so get_candles gave the strategy the right window)."""
    from datetime import UTC, datetime, timedelta

    import btkit
    from btkit.defaults.sim_exchange import SimExchange

    start = datetime(2024, 3, 1, tzinfo=UTC)
    btkit.add_frame("smacross-test-week", start, start + timedelta(days=7))
    run = btkit.Backtest.run("BTCUSDT", strategy="sma-cross", exchange="sim", frame="smacross-test-week")
    results = list(run)
    opened = [r for r in results if isinstance(r, btkit.Opened)]
    closed = [r for r in results if isinstance(r, btkit.Closed)]
    assert opened and len(closed) == len(opened)
    sim = SimExchange()
    step = 15 * 60_000
    for r in opened:
        aligned = r.timestamp // step * step
        since = datetime.fromtimestamp((aligned - 31 * step) / 1000, UTC)
        closes = sim.get_candles("BTCUSDT", "15m", since, 31)[:, 4]
        assert sma.crossed_up(closes), r
        assert r.signal.price_take_profit == pytest.approx(r.signal.price_open * 1.02)
        assert r.signal.price_stop_loss == pytest.approx(r.signal.price_open * 0.99)
        assert r.signal.minute_estimated_time == 1440 and r.signal.cost == 100
    assert {c.close_reason for c in closed} <= {"take_profit", "stop_loss", "time_expired"}
