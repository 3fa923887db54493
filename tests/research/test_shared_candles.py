"""Workers do not copy the candles: every candle column a worker's engine reads during a real trial is a
read-only view of the one block the driver shared (shared memory for ``process``, the columns themselves
in this process for ``serial``), and the result equals a plain backtest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import btkit
from btkit.research import shared as sh
from btkit.research.study import Study
from btkit.research.trial import Task, TrialOutcome, run_trial, trades_of

START_MS, END_MS = 1704067200000, 1704067200000 + 7 * 86_400_000  # one week of the simulated exchange


def _source_columns(handles: sh.CandleHandles) -> dict[tuple[str, str], sh.CandleColumns]:
    return sh.attach(handles)  # in a worker: the shared-memory mapping (attached once per process)


def traced_trial(shared: Mapping[str, Any], task: Task) -> dict[str, Any]:
    """Runs in the worker: a real trial, recording every segment the engine's Market served from."""
    from btkit.market import Market

    served: list[Any] = []
    ensure = Market._ensure

    async def recording(self: Market, symbol: str, interval: str, since: int, count: int) -> Any:
        seg = await ensure(self, symbol, interval, since, count)
        if seg is not None:
            served.append((interval, seg))
        return seg

    Market._ensure = recording  # type: ignore[method-assign]
    try:
        outcome = run_trial(shared, task)
    finally:
        Market._ensure = ensure  # type: ignore[method-assign]
    source = _source_columns(shared["candles"])
    checks = []
    for interval, seg in served:
        block = source[(shared["symbol"], interval)]
        cols = (seg.ts, seg.open, seg.high, seg.low, seg.close, seg.volume)
        checks.append(
            (
                interval,
                all(np.shares_memory(c, block.ts if k == 0 else block.values) for k, c in enumerate(cols)),
                any(c.flags.writeable for c in cols),
                any(c.flags.owndata for c in cols),
            )
        )
    return {"outcome": outcome, "checks": checks}


def _run(executor: str) -> dict[str, Any]:
    with Study(
        strategy="smacross-array",
        symbol="BTCUSDT",
        exchange="sim",
        start_ms=START_MS,
        end_ms=END_MS,
        executor=executor,
        jobs=1,
    ) as study:
        task = Task(params={"fast": 5, "slow": 20}, start_ms=START_MS, end_ms=END_MS)
        ((_, result),) = list(study.executor.map(traced_trial, [task]))
    assert isinstance(result, dict), result  # a TaskError would say what failed in the worker
    return result


def _plain_trades() -> tuple[tuple[Any, ...], ...]:
    from btkit.context import ms_to_datetime

    btkit.add_frame("plain", ms_to_datetime(START_MS), ms_to_datetime(END_MS))
    return trades_of(
        btkit.Backtest.run(
            "BTCUSDT",
            strategy="smacross-array",
            exchange="sim",
            frame="plain",
            params={"fast": 5, "slow": 20},
        )
    )


def _assert_views(result: dict[str, Any], plain: tuple[tuple[Any, ...], ...]) -> None:
    checks = result["checks"]
    assert {iv for iv, *_ in checks} == {"1m", "15m"}  # the engine read both intervals it needs
    for interval, shares, writeable, owns in checks:
        assert shares, f"{interval}: the engine read a copy, not the shared block"
        assert not writeable and not owns, interval
    outcome = result["outcome"]
    assert isinstance(outcome, TrialOutcome) and outcome.trades
    assert outcome.trades == plain


def test_a_process_worker_reads_the_shared_memory_block_itself(btkit_clean: None) -> None:
    plain = _plain_trades()
    _assert_views(_run("process"), plain)


def test_the_serial_executor_reads_the_drivers_columns_without_copying(btkit_clean: None) -> None:
    plain = _plain_trades()
    _assert_views(_run("serial"), plain)


def test_the_shared_block_holds_contiguous_columns() -> None:
    arr = np.array([[60_000.0 * i, 1.0 + i, 2.0 + i, 0.5 + i, 1.5 + i, 10.0 * i] for i in range(5)])
    owner = sh.SharedCandles("x", {("S", "1m"): sh.to_columns(arr)})
    try:
        (cols,) = sh.attach(owner.handles).values()
        assert cols.ts.dtype == np.int64 and cols.ts.tolist() == [60_000 * i for i in range(5)]
        assert cols.values.flags.c_contiguous and not cols.values.flags.writeable
        np.testing.assert_array_equal(cols.rows(0, 5), arr)
    finally:
        owner.close()
