"""The simulated exchange: deterministic random access, exact aggregates, realism bounds, refusals."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pluggy
import pytest

from btkit import candles as ca
from btkit import hookspecs
from btkit.components import INTERVAL_MS, ExchangeSpec
from btkit.defaults import sim_exchange
from btkit.defaults.sim_exchange import EPOCH, SimExchange, make_sim_exchange
from btkit.errors import CandleDataError

M = 60_000
JAN = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> SimExchange:
    return SimExchange()


def ms(d: datetime) -> int:
    return int(d.timestamp() * 1000)


def test_window_is_exactly_the_candles_asked_for(sim: SimExchange) -> None:
    arr = sim.get_candles("BTCUSDT", "1m", JAN, 1000)
    assert arr.shape == (1000, 6)
    np.testing.assert_array_equal(arr[:, 0], ms(JAN) + np.arange(1000) * M)
    ca.validate(arr, source="sim")
    assert ca.dedupe_sorted(arr, source="sim") is arr


def test_same_candle_whatever_window_was_requested() -> None:
    a = SimExchange()
    b = SimExchange()  # a fresh instance with another request history
    target = ms(JAN + timedelta(days=3, hours=5, minutes=17))
    big = a.get_candles("ETHUSDT", "1m", JAN, 5000)
    sim_exchange._day.cache_clear()  # no shared cache: b really generates again
    b.get_candles("ETHUSDT", "1m", JAN + timedelta(days=40), 300)  # unrelated request first
    around = datetime.fromtimestamp(target / 1000, UTC) - timedelta(minutes=2)
    small = b.get_candles("ETHUSDT", "1m", around, 5)
    row_big = big[big[:, 0] == target][0]
    np.testing.assert_array_equal(small[2], row_big)
    # windows straddling a day boundary agree with windows inside each day
    cross = a.get_candles("ETHUSDT", "1m", JAN + timedelta(days=1) - timedelta(minutes=3), 6)
    np.testing.assert_array_equal(cross, big[1440 - 3 : 1440 + 3])


def test_deterministic_across_processes_and_hash_seeds() -> None:
    code = (
        "from datetime import datetime, UTC\n"
        "from btkit.defaults.sim_exchange import SimExchange\n"
        "a = SimExchange().get_candles('SOL/USDT', '1h', datetime(2023, 6, 1, tzinfo=UTC), 3)\n"
        "print(repr(a.tolist()))\n"
    )
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1
    here = SimExchange().get_candles("SOL/USDT", "1h", datetime(2023, 6, 1, tzinfo=UTC), 3)
    assert outs.pop().strip() == repr(here.tolist())


def test_seed_and_symbol_change_the_data() -> None:
    a = SimExchange(1).get_candles("BTCUSDT", "1m", JAN, 50)
    b = SimExchange(2).get_candles("BTCUSDT", "1m", JAN, 50)
    c = SimExchange(1).get_candles("BTCUSDTX", "1m", JAN, 50)
    assert not np.array_equal(a[:, 4], b[:, 4])
    assert not np.array_equal(a[:, 4], c[:, 4])


@pytest.mark.parametrize("interval", [k for k in INTERVAL_MS if k != "1m"])
def test_higher_intervals_are_exact_aggregates_of_1m(sim: SimExchange, interval: str) -> None:
    step = INTERVAL_MS[interval]
    n = max(3, min(40, 3 * 86_400_000 // step))
    agg = sim.get_candles("BTCUSDT", interval, JAN, n)
    ones = sim.get_candles("BTCUSDT", "1m", JAN, n * step // M)
    np.testing.assert_array_equal(agg, ca.resample(ones, step))
    assert len(agg) == n


def test_candles_chain_and_wicks_contain_bodies(sim: SimExchange) -> None:
    arr = sim.get_candles("BTCUSDT", "1m", JAN, 3 * 1440)
    o, h, lo, c, v = (arr[:, k] for k in range(1, 6))
    np.testing.assert_array_equal(o[1:], c[:-1])  # open = previous close, also across midnight
    assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all()
    assert (h > np.maximum(o, c)).mean() > 0.5  # most candles have an upper wick
    assert (v > 0).all()


def test_price_levels_and_volatility_look_like_markets(sim: SimExchange) -> None:
    days = [JAN - timedelta(days=400 * k) for k in range(5)]
    btc = np.concatenate([sim.get_candles("BTCUSDT", "1m", d, 1440) for d in days])
    eth = np.concatenate([sim.get_candles("ETHUSDT", "1m", d, 1440) for d in days])
    other = np.concatenate([sim.get_candles("FOOUSDT", "1m", d, 1440) for d in days])
    assert 8_000 < np.median(btc[:, 4]) < 200_000
    assert 500 < np.median(eth[:, 4]) < 12_500
    assert 0.2 < np.median(other[:, 4]) < 500
    r = np.diff(np.log(btc[:1440, 4]))
    assert 0.0002 < r.std() < 0.002  # ≈ 0.05–0.1 %/min


def test_unaligned_since_starts_at_the_next_candle(sim: SimExchange) -> None:
    arr = sim.get_candles("BTCUSDT", "15m", JAN + timedelta(minutes=7, seconds=3), 2)
    assert list(arr[:, 0]) == [ms(JAN) + 15 * M, ms(JAN) + 30 * M]


def test_refuses_future_and_cuts_at_now() -> None:
    now = JAN + timedelta(hours=2, minutes=30, seconds=20)
    ex = SimExchange(clock=lambda: now.timestamp())
    arr = ex.get_candles("BTCUSDT", "1m", JAN + timedelta(hours=2), 100)
    assert len(arr) == 30 and arr[-1, 0] == ms(JAN + timedelta(hours=2, minutes=29))  # 2:30 is forming
    hourly = ex.get_candles("BTCUSDT", "1h", JAN, 10)
    assert len(hourly) == 2
    with pytest.raises(CandleDataError, match="future"):
        ex.get_candles("BTCUSDT", "1m", JAN + timedelta(hours=2, minutes=30), 1)
    with pytest.raises(CandleDataError, match="future"):
        SimExchange().get_candles("BTCUSDT", "1m", datetime.now(UTC) + timedelta(days=1), 5)


def test_refuses_candles_before_the_epoch(sim: SimExchange) -> None:
    with pytest.raises(CandleDataError, match="before 2017-01-01"):
        sim.get_candles("BTCUSDT", "1m", EPOCH - timedelta(minutes=1), 5)
    assert len(sim.get_candles("BTCUSDT", "1m", EPOCH, 5)) == 5


def test_bad_arguments(sim: SimExchange) -> None:
    with pytest.raises(CandleDataError, match="timezone"):
        sim.get_candles("BTCUSDT", "1m", datetime(2024, 1, 1), 5)
    with pytest.raises(CandleDataError, match="limit"):
        sim.get_candles("BTCUSDT", "1m", JAN, -1)
    with pytest.raises(Exception, match="unknown interval"):
        sim.get_candles("BTCUSDT", "7m", JAN, 5)
    assert sim.get_candles("BTCUSDT", "1m", JAN, 0).shape == (0, 6)


def test_returned_arrays_cannot_corrupt_the_cache(sim: SimExchange) -> None:
    arr = sim.get_candles("BTCUSDT", "1m", JAN, 10)
    with pytest.raises(ValueError):
        arr[0, 4] = 1.0


def test_format_price_and_quantity(sim: SimExchange) -> None:
    assert sim.format_price("BTCUSDT", 43210.123456) == "43210.12"
    assert sim.format_quantity("BTCUSDT", 0.0123456) == "0.012"
    assert sim.format_quantity("BTCUSDT", 0.0129999) == "0.012"  # truncated, never rounded up


def test_default_plugin_hook_registers_sim() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(sim_exchange)
    pm.check_pending()
    specs = [s for group in pm.hook.btkit_exchanges() for s in group]
    assert [(s.name, s.dist) for s in specs] == [("sim", "btkit")]
    assert isinstance(specs[0], ExchangeSpec)
    assert specs[0].format_price is not None and specs[0].format_quantity is not None
    arr = specs[0].get_candles("BTCUSDT", "1m", JAN, 3)
    np.testing.assert_array_equal(arr, SimExchange().get_candles("BTCUSDT", "1m", JAN, 3))


def test_make_sim_exchange_custom_seed_and_name() -> None:
    spec = make_sim_exchange(seed=7, name="sim7")
    assert spec.name == "sim7"
    np.testing.assert_array_equal(
        spec.get_candles("BTCUSDT", "5m", JAN, 4), SimExchange(7).get_candles("BTCUSDT", "5m", JAN, 4)
    )
    with pytest.raises(ValueError, match="seed"):
        make_sim_exchange(seed=-1)
