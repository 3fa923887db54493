"""The backtest runner's surface: ``for`` / ``async for`` (also inside a running loop), background runs,
progress and done events, several symbols, get_data and dump."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from core_helpers import dt, flat, long

import btkit
from btkit.testing.exchange import memory_exchange


@pytest.fixture
def setup() -> None:
    btkit.add_exchange("mem", memory_exchange("mem", {"X": flat(100), "Y": flat(100, 50.0)}).get_candles)
    btkit.add_strategy("s", lambda symbol, when, p: long(tp=p * 1.1, sl=p * 0.9, minute_estimated_time=5))
    btkit.add_frame("f", dt(10), dt(60))


def actions(symbol: str = "X") -> list[str]:
    return [r.action for r in btkit.Backtest.run(symbol, strategy="s", exchange="mem", frame="f")]


def test_for_and_async_for_give_the_same_results(setup: None) -> None:
    expected = actions()
    assert expected[:2] == ["opened", "closed"] and len(expected) > 10

    async def main() -> tuple[list[str], list[str]]:
        got = [r.action async for r in btkit.Backtest.run("X", strategy="s", exchange="mem", frame="f")]
        return got, actions()  # a plain `for` while this loop runs (notebooks, agent frameworks)

    via_async, via_for_in_loop = asyncio.run(main())
    assert via_async == expected == via_for_in_loop


def test_several_symbols_run_independently(setup: None) -> None:
    x, y = btkit.Backtest.results("X", strategy="s", exchange="mem", frame="f"), actions("Y")
    assert [r.action for r in x] == y
    assert {r.symbol for r in x} == {"X"}
    data = btkit.Backtest.get_data("Y", strategy="s", exchange="mem", frame="f")
    assert data.total_signals == y.count("closed")


def test_background_run_and_join(setup: None) -> None:
    handle = btkit.Backtest.background("X", strategy="s", exchange="mem", frame="f")
    assert handle.join(30)
    assert handle.error is None
    assert [r.action for r in handle.results] == actions()


def test_progress_then_one_done_event_after_the_last_result(setup: None) -> None:
    log: list[tuple[str, Any]] = []
    btkit.listen_backtest_progress(lambda p: log.append(("progress", p)))
    btkit.listen_signal_backtest(lambda r: log.append(("result", r)))
    btkit.listen_done_backtest(lambda d: log.append(("done", d)))
    actions()
    progress = [p for kind, p in log if kind == "progress"]
    assert [p.processed_frames for p in progress] == sorted(p.processed_frames for p in progress)
    assert progress[-1].progress == 1.0 and progress[-1].total_frames == 51
    assert all(0.0 <= p.progress <= 1.0 for p in progress)
    assert [kind for kind, _ in log].count("done") == 1 and log[-1][0] == "done"
    assert log[-1][1].error is None and log[-1][1].symbol == "X"


def test_dump_writes_the_report_under_dump_backtest(
    setup: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = btkit.Backtest.dump("X", strategy="s", exchange="mem", frame="f")
    assert path.parent.resolve() == (tmp_path / "dump" / "backtest").resolve()
    assert path.name.startswith("X_s_mem_f_backtest-") and path.suffix == ".md"
    assert "Closed signals" in path.read_text(encoding="utf-8")


def test_unknown_components_are_clear_errors(setup: None) -> None:
    with pytest.raises(btkit.BtkitError, match="nope"):
        list(btkit.Backtest.run("X", strategy="nope", exchange="mem", frame="f"))
    with pytest.raises(btkit.BtkitError, match="nope"):
        list(btkit.Backtest.run("X", strategy="s", exchange="mem", frame="nope"))
