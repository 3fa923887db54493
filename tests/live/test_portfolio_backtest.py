"""``Backtest.run_portfolio``: several symbols of one backtest share their risk profiles in time order.

The strategy is the deterministic one of the live parity test (longs and shorts, market and resting
entries, on hashed 5-minute buckets), over three symbols of the simulated exchange.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mixed_strategy import END_MS, START, SYMBOLS, comparable, get_signal

import btkit
from btkit.model import Cancelled, Closed, Opened, Scheduled, TickResult
from btkit.risk import max_positions
from btkit.testing import reset_btkit
from btkit.testing.exchange import memory_exchange


@pytest.fixture
def frame() -> str:
    btkit.add_strategy("mixed", get_signal, interval="5m")
    btkit.add_frame("portfolio", START, datetime.fromtimestamp(END_MS / 1000, UTC))
    return "portfolio"


def by_symbol(results: list[TickResult]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in SYMBOLS}
    for r in results:
        out[r.symbol].append(comparable(r))
    return out


def holding_intervals(results: list[TickResult]) -> list[tuple[int, int, str]]:
    """(from, to, symbol) of every risk slot: held from scheduling (or opening) to the close or cancel."""
    since: dict[str, int] = {}
    out = []
    for r in results:
        if isinstance(r, (Scheduled, Opened)):
            since.setdefault(r.symbol, r.timestamp)
        elif isinstance(r, (Closed, Cancelled)):
            out.append((since.pop(r.symbol), r.close_timestamp, r.symbol))
    assert not since, "a signal never resolved"
    return out


def closed_rows(symbol: str, frame: str) -> list[dict[str, Any]]:
    """Every closed trade as the statistics and exports see it (best/worst prices and peak pnl included)."""
    stats = btkit.Backtest.get_data(symbol, strategy="mixed", exchange="sim", frame=frame)
    return [attrs.asdict(c) for c in stats.closed]


@pytest.mark.parametrize("every_minute", [False, True], ids=["scan-ahead", "every-minute"])
def test_without_a_shared_limit_each_symbol_gets_exactly_its_own_backtest(
    frame: str, every_minute: bool
) -> None:
    """The lockstep gives what each symbol's own run gives, result for result and trade for trade: both when
    it scans ahead to a signal's next event and when a per-candle listener makes every minute tick."""
    if every_minute:
        btkit.listen_active_ping(lambda ping: None)
    alone = {
        s: [comparable(r) for r in btkit.Backtest.run(s, strategy="mixed", exchange="sim", frame=frame)]
        for s in SYMBOLS
    }
    trades = {s: closed_rows(s, frame) for s in SYMBOLS}
    together = list(btkit.Backtest.run_portfolio(SYMBOLS, strategy="mixed", exchange="sim", frame=frame))
    assert by_symbol(together) == alone
    assert sum(r["action"] == "closed" for rs in alone.values() for r in rs) >= 30
    assert sum(r["action"] == "scheduled" for rs in alone.values() for r in rs) >= 3
    times = [getattr(r, "close_timestamp", None) or r.timestamp for r in together]
    assert times == sorted(times)  # one stream, in time order
    for s in SYMBOLS:  # get_data reads the portfolio run's trades per symbol: the very same trades
        assert closed_rows(s, frame) == trades[s]


def test_a_shared_max_one_holds_across_symbols_in_time_order(frame: str) -> None:
    btkit.add_risk("one-at-a-time", [max_positions(1)])
    rejected: list[Any] = []
    btkit.listen_risk(rejected.append)
    results = list(
        btkit.Backtest.run_portfolio(
            SYMBOLS, strategy="mixed", exchange="sim", frame=frame, risks=("one-at-a-time",)
        )
    )
    held = sorted(holding_intervals(results))
    assert len(held) >= 10 and len({s for _, _, s in held}) == len(SYMBOLS)  # every symbol got turns
    for (_, until, _), (since, _, _) in itertools.pairwise(held):
        assert since >= until  # one slot, across all three symbols, waiting entries included
    assert rejected, "with three symbols and one slot some signal must have been refused"
    for r in rejected:  # each refusal happened while another symbol really held the slot
        holders = [s for a, b, s in held if a <= r.timestamp < b]
        assert r.active_position_count == 1 and holders and r.symbol not in holders, (r, holders)
    report = btkit.Backtest.dump(SYMBOLS[0], strategy="mixed", exchange="sim", frame=frame)
    btkit.listen_active_ping(lambda ping: None)  # now every minute ticks instead of scanning ahead
    again = list(
        btkit.Backtest.run_portfolio(
            SYMBOLS, strategy="mixed", exchange="sim", frame=frame, risks=("one-at-a-time",)
        )
    )
    assert [comparable(r) for r in again] == [comparable(r) for r in results]  # same fills, closes, refusals
    text = report.read_text(encoding="utf-8")
    assert "Risk rejections" in text
    assert all(f"| {s} |" not in text.split("Risk rejections", 1)[1] for s in SYMBOLS[1:])  # its own only


def test_a_symbol_named_twice_is_refused(frame: str) -> None:
    with pytest.raises(ValueError, match="named twice"):
        list(
            btkit.Backtest.run_portfolio(
                ["BTCUSDT", "BTCUSDT"], strategy="mixed", exchange="sim", frame=frame
            )
        )


def test_a_close_requested_for_another_symbol_happens_on_its_next_minute(frame: str) -> None:
    """A listener of one symbol's result may close another symbol's position (a hedge unwinding, say): the
    lockstep wakes that symbol at the next minute instead of at its scanned-ahead TP/SL/expiry."""
    asked: list[int] = []

    def on_result(r: TickResult) -> None:
        if r.action == "opened" and r.symbol == "BTCUSDT" and btkit.commit_close_pending("ETHUSDT"):
            asked.append(r.timestamp)

    btkit.listen_signal_backtest(on_result)
    results = list(btkit.Backtest.run_portfolio(SYMBOLS, strategy="mixed", exchange="sim", frame=frame))
    eth_closes = {
        r.close_timestamp: r.close_reason for r in results if r.symbol == "ETHUSDT" and r.action == "closed"
    }
    assert len(asked) >= 3
    assert [eth_closes.get(t + 60_000) for t in asked] == ["closed"] * len(asked)  # the very next minute


def test_an_early_close_keeps_only_the_prices_seen_before_it() -> None:
    """The lockstep scans ahead to A's expiry at minute 70; B's listener closes A at minute 21 instead.
    A's best price must come from minutes 10–21 only, not from the spike at minute 41 it never lived to see."""
    t0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
    flat = np.column_stack([t0 + np.arange(120.0) * 60_000, *[np.full(120, 100.0)] * 4, np.ones(120)])
    spiky = flat.copy()
    spiky[40, 2] = 108.0  # the high of candle 40 (observed at minute 41)
    btkit.add_exchange("mem", memory_exchange("mem", {"A": spiky, "B": flat}).get_candles)
    opens = {("A", 10): 60, ("B", 20): 5}

    def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
        lifetime = opens.get((symbol, (int(when.timestamp() * 1000) - t0) // 60_000))
        if lifetime is None:
            return None
        return {
            "position": "long",
            "price_take_profit": 110,
            "price_stop_loss": 90,
            "minute_estimated_time": lifetime,
        }

    btkit.add_strategy("two", get_signal)
    btkit.add_frame(
        "f",
        datetime.fromtimestamp((t0 + 10 * 60_000) / 1000, UTC),
        datetime.fromtimestamp((t0 + 100 * 60_000) / 1000, UTC),
    )
    btkit.listen_signal_backtest(
        lambda r: btkit.commit_close_pending("A") if r.action == "opened" and r.symbol == "B" else None
    )
    list(btkit.Backtest.run_portfolio(["A", "B"], strategy="two", exchange="mem", frame="f"))
    (closed,) = btkit.Backtest.get_data("A", strategy="two", exchange="mem", frame="f").closed
    assert (closed.close_reason, (closed.close_timestamp - t0) // 60_000) == ("closed", 21)
    assert closed.price_best == 100.0 and closed.price_worst == 100.0


def random_walks(seed: int, symbols: tuple[str, ...], minutes: int) -> dict[str, np.ndarray]:
    """Candles for each symbol: a seeded random walk with wicks, so TP, SL, fills and expiries all happen."""
    rng = np.random.default_rng(seed)
    t0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
    out = {}
    for symbol in symbols:
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, minutes)))
        open_ = np.concatenate([[100.0], close[:-1]])
        high = np.maximum(open_, close) * (1 + rng.uniform(0.0, 0.003, minutes))
        low = np.minimum(open_, close) * (1 - rng.uniform(0.0, 0.003, minutes))
        ts = t0 + np.arange(minutes, dtype=np.float64) * 60_000
        out[symbol] = np.column_stack([ts, open_, high, low, close, rng.uniform(1.0, 5.0, minutes)])
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    odds=st.integers(2, 9),
    limit=st.sampled_from([None, 1, 2]),
    interval=st.sampled_from(["1m", "5m"]),
)
def test_random_markets_lockstep_equals_separate_runs_and_limits_hold(
    seed: int, odds: int, limit: int | None, interval: str
) -> None:
    """Property: over random candles and random signals (market and resting entries, longs and shorts),
    the lockstep equals separate runs trade for trade when no limit binds; with a shared limit, no more
    than ``limit`` slots are ever held at once across the symbols."""
    reset_btkit()
    symbols = ("A", "B", "C")
    minutes = 600
    btkit.add_exchange("walk", memory_exchange("walk", random_walks(seed, symbols, minutes)).get_candles)

    def get_signal(symbol: str, when: datetime, price: float) -> dict[str, Any] | None:
        h = int.from_bytes(hashlib.sha256(f"{seed}/{symbol}/{when:%Y%m%d%H%M}".encode()).digest()[:4], "big")
        if h % odds:
            return None
        long = h % 2 == 0
        entry = price * (0.998 if long else 1.002) if h % 5 == 0 else price
        width = 0.006 + (h % 7) * 0.002
        signal: dict[str, Any] = {
            "position": "long" if long else "short",
            "price_take_profit": entry * (1 + width if long else 1 - width),
            "price_stop_loss": entry * (1 - width if long else 1 + width),
            "minute_estimated_time": 20 + h % 100,
            "id": f"{symbol}@{when:%H%M}",
        }
        if entry != price:
            signal["price_open"] = entry
        return signal

    btkit.add_strategy("walker", get_signal, interval=interval)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    btkit.add_frame("walk", t0 + timedelta(minutes=10), t0 + timedelta(minutes=minutes - 250))
    btkit.add_risk("shared", [max_positions(limit if limit is not None else len(symbols))])
    kw: dict[str, Any] = {"strategy": "walker", "exchange": "walk", "frame": "walk"}
    together = list(btkit.Backtest.run_portfolio(symbols, risks=("shared",), **kw))
    assert sum(r.action == "closed" for r in together) >= 3  # the property is about something
    if limit is None:
        alone = {s: [comparable(r) for r in btkit.Backtest.run(s, **kw)] for s in symbols}
        got: dict[str, list[dict[str, Any]]] = {s: [] for s in symbols}
        for r in together:
            got[r.symbol].append(comparable(r))
        assert got == alone
    else:
        edges = sorted(
            [(a, 1) for a, _, _ in holding_intervals(together)]
            + [(b, -1) for _, b, _ in holding_intervals(together)]
        )  # at one instant a release sorts before a take: exits come first
        held = 0
        for _, step in edges:
            held += step
            assert held <= limit


def test_the_decision_state_shortcut_keeps_every_other_field() -> None:
    """``with_last_bucket`` (built field by field on the decision path instead of ``attrs.evolve``) equals
    the evolve for a state with every field set: a field added later and not copied fails here."""
    from btkit.engine.state import InstanceState, Levels, StrategyState, with_last_bucket

    strategy = StrategyState(
        paused=True,
        last_bucket=1,
        last_opened_id="a",
        deferred=("close_pending",),
        rejected_ids=("b",),
        last_tick=60_000,
    )
    state = InstanceState(strategy=strategy, levels=Levels(signal_id="a", profit=(10,), breakeven=True))
    fields = {f.name: getattr(strategy, f.name) for f in attrs.fields(StrategyState)}
    assert all(v != getattr(StrategyState(), k) for k, v in fields.items() if k != "intent")
    for bucket in (None, 900_000):
        expected = attrs.evolve(state, strategy=attrs.evolve(strategy, last_bucket=bucket))
        assert with_last_bucket(state, bucket) == expected
