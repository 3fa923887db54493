"""btkit-ray on a real local Ray cluster (one per module, ``num_cpus=2``): every task is a real
``btkit.Backtest`` of smacross on simulated candles, compared trade by trade with a plain serial loop."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

import btkit
from btkit.defaults.sim_exchange import SimExchange
from btkit.model import Closed
from btkit.plugins import get_plugin_manager
from btkit.research.executors import ExecutorOptions, ExecutorSpec
from btkit.testing import btkit_clean  # noqa: F401  (fixture)
from btkit.testing.exchange import memory_exchange
from btkit_ray import RayExecutor, TaskFailed

pytestmark = pytest.mark.xdist_group("ray")  # one worker: see the note in pyproject.toml

DAY_MS = 86_400_000
T0 = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp() * 1000)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
DAYS = 9  # of 1m candles per symbol; frames end >= 1 day before the data does (trade lifetime 1440 min)
# (symbol, first frame day, last frame day): different symbols and frames per item
ITEMS = [
    ("BTCUSDT", 1, 7),
    ("ETHUSDT", 1, 7),
    ("SOLUSDT", 1, 7),
    ("BTCUSDT", 2, 5),
    ("ETHUSDT", 3, 6),
    ("SOLUSDT", 1, 4),
]


def candles() -> dict[str, np.ndarray]:
    sim = SimExchange(7)
    return {s: sim.minutes(s, T0, DAYS * 1440) for s in SYMBOLS}


def backtest_job(shared: Mapping[str, Any], item: tuple[str, int, int]) -> dict[str, Any]:
    """One real backtest of ``smacross`` over the shared candles (runs in a Ray worker or in-process)."""
    symbol, first, last = item
    arrays = shared["candles"]
    exchange = memory_exchange("mem", arrays)
    btkit.add_exchange("mem", exchange.get_candles)
    frame = f"days-{first}-{last}"
    btkit.add_frame(frame, _dt(T0 + first * DAY_MS), _dt(T0 + last * DAY_MS))
    trades = [
        attrs.evolve(r, signal=attrs.evolve(r.signal, id=""))  # ids are random per run
        for r in btkit.Backtest.run(symbol, strategy="smacross", exchange="mem", frame=frame)
        if isinstance(r, Closed)
    ]
    arr = arrays[symbol]
    return {
        "trades": trades,
        "pid": os.getpid(),
        # zero-copy from the object store: a read-only view of shared memory, not a per-task copy
        "shared_view": not arr.flags.writeable and not arr.flags.owndata,
    }


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def failing_job(shared: Mapping[str, Any], item: int) -> int:
    if item % 3 == 1:
        raise ValueError(f"item {item} is bad")
    return item * 10


def loaded_plugins(shared: Mapping[str, Any], item: object) -> list[tuple[str, str, str, str]]:
    return sorted((r.name, r.dist, r.version, r.status) for r in get_plugin_manager().records)


@pytest.fixture(scope="module")
def shared() -> dict[str, Any]:
    return {"candles": candles()}


@pytest.fixture(scope="module")
def cluster(shared: dict[str, Any]) -> Iterator[RayExecutor]:
    """The module's one local cluster, started by the executor itself: ray.init(num_cpus=2)."""
    import ray
    from ray import cloudpickle

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    assert not ray.is_initialized()
    # this module is imported by path (--import-mode=importlib): workers cannot import it by name
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ex = RayExecutor(ExecutorOptions(jobs=2))
    ex.start(shared)
    try:
        yield ex
    finally:
        ex.close()
        assert not ray.is_initialized()  # the executor shuts down the cluster it started
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def serial(shared: dict[str, Any]) -> list[dict[str, Any]]:
    from btkit.testing import reset_btkit

    try:
        return [backtest_job(shared, item) for item in ITEMS]
    finally:
        reset_btkit()


def test_the_executor_started_a_two_cpu_local_cluster_and_timed_it(cluster: RayExecutor) -> None:
    assert cluster.started_cluster
    assert cluster.cpus() == 2
    assert cluster.start_seconds > 0  # the cluster start is reported on its own, apart from the trials


def test_ray_results_equal_a_serial_loop_trade_by_trade(
    cluster: RayExecutor, serial: list[dict[str, Any]]
) -> None:
    got = dict(cluster.map(backtest_job, ITEMS))
    assert sorted(got) == list(range(len(ITEMS)))
    assert sum(len(r["trades"]) for r in serial) >= 10  # the comparison is about real trades
    for i, expected in enumerate(serial):
        assert not isinstance(got[i], TaskFailed), got[i]
        assert got[i]["trades"] == expected["trades"], ITEMS[i]
        assert {t.symbol for t in got[i]["trades"]} <= {ITEMS[i][0]}
    assert got[0]["trades"] != got[1]["trades"]  # different symbols really are different backtests
    assert all(r["shared_view"] for r in got.values())  # candles came from the object store, not pickled
    assert all(r["pid"] != os.getpid() for r in got.values())  # ran in Ray workers, not here


def test_the_order_of_items_does_not_change_the_results(
    cluster: RayExecutor, serial: list[dict[str, Any]]
) -> None:
    order = list(range(len(ITEMS)))
    random.Random(3).shuffle(order)
    got = dict(cluster.map(backtest_job, [ITEMS[i] for i in order]))
    by_item = {ITEMS[order[k]]: r["trades"] for k, r in got.items()}
    assert by_item == {item: r["trades"] for item, r in zip(ITEMS, serial, strict=True)}


def test_an_error_in_a_job_is_returned_as_a_record_and_the_others_finish(cluster: RayExecutor) -> None:
    got = dict(cluster.map(failing_job, range(7)))
    assert sorted(got) == list(range(7))
    for i, result in got.items():
        if i % 3 == 1:
            assert isinstance(result, TaskFailed)
            assert str(result) == f"ValueError: item {i} is bad" and result.type == "ValueError"
            assert "failing_job" in result.traceback
        else:
            assert result == i * 10


def test_a_backtest_that_fails_in_a_worker_is_a_record(cluster: RayExecutor) -> None:
    ((index, result),) = list(cluster.map(backtest_job, [("NOSUCH", 1, 3)]))
    assert index == 0 and isinstance(result, TaskFailed)
    assert "NOSUCH" in str(result)


def test_a_second_executor_uses_the_running_cluster_and_leaves_it_running(
    cluster: RayExecutor, shared: dict[str, Any], serial: list[dict[str, Any]]
) -> None:
    import ray

    ex = RayExecutor(ExecutorOptions(jobs=1))
    ex.start(shared)
    assert not ex.started_cluster and ex.start_seconds == 0
    got = dict(ex.map(backtest_job, ITEMS[:2]))
    ex.close()
    assert ray.is_initialized()  # not its cluster: close() left it alone
    assert [got[0]["trades"], got[1]["trades"]] == [serial[0]["trades"], serial[1]["trades"]]


def test_a_driver_elsewhere_joins_the_cluster_through_ray_address(
    cluster: RayExecutor, serial: list[dict[str, Any]], tmp_path: Path
) -> None:
    """A second process (a user's ``btkit optimize`` on another shell) with RAY_ADDRESS set connects to
    this running cluster, runs the same backtest there and disconnects; the cluster keeps running."""
    import ray

    script = tmp_path / "driver.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import importlib.util
        spec = importlib.util.spec_from_file_location("ray_job_module", {__file__!r})
        mod = importlib.util.module_from_spec(spec)
        sys.modules["ray_job_module"] = mod
        spec.loader.exec_module(mod)
        from ray import cloudpickle
        cloudpickle.register_pickle_by_value(mod)
        from btkit.research.executors import ExecutorOptions
        from btkit_ray import RayExecutor
        ex = RayExecutor(ExecutorOptions())
        ex.start({{"candles": mod.candles()}})
        ((i, r),) = list(ex.map(mod.backtest_job, [mod.ITEMS[2]]))
        print(json.dumps({{"started": ex.started_cluster, "address": ex.address, "cpus": ex.cpus(),
                          "trades": [[t.timestamp, t.close_timestamp, t.pnl.pnl_percentage] for t in r["trades"]]}}))
        ex.close()
    """)
    )
    address = ray.get_runtime_context().gcs_address
    # Ray >= 2.52 local clusters require a token (~/.ray/auth_token); a joining driver must say so
    # and the nodes' own installed environment, not Ray's uv hook (it sees `uv run pytest` up the tree and
    # would rebuild the uv project in each new worker: docs/ray.md)
    env = {
        **os.environ,
        "RAY_ADDRESS": address,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
    }
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["address"] == address and out["cpus"] == 2
    expected = [[t.timestamp, t.close_timestamp, t.pnl.pnl_percentage] for t in serial[2]["trades"]]
    assert out["trades"] == expected and expected
    assert ray.is_initialized() and dict(cluster.map(failing_job, [0])) == {0: 0}  # still serving


def test_workers_load_the_same_installed_plugins_as_the_driver(cluster: RayExecutor) -> None:
    here = loaded_plugins({}, None)
    assert ("ray", "btkit-ray", btkit.__version__, "loaded") in here
    got = dict(cluster.map(loaded_plugins, range(2)))
    assert got == {0: here, 1: here}


def test_the_plugin_offers_the_ray_executor_through_btkit_executors(btkit_clean: None) -> None:  # noqa: F811
    pm = get_plugin_manager()
    specs = [s for batch in pm.hook.btkit_executors() for s in batch]
    (spec,) = [s for s in specs if s.name == "ray"]
    assert isinstance(spec, ExecutorSpec) and spec.dist == "btkit-ray"
    ex = spec.factory(ExecutorOptions(jobs=2, address="10.0.0.1:6379"))
    assert isinstance(ex, RayExecutor) and ex.name == "ray" and ex.address == "10.0.0.1:6379"
    assert not ex.started_cluster  # building it starts nothing


def test_btkit_plugins_lists_the_ray_executor(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTKIT")}
    btkit_cmd = Path(sys.executable).with_name("btkit")  # the console script of this venv
    proc = subprocess.run(
        [str(btkit_cmd), "plugins"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = [line.split() for line in proc.stdout.splitlines() if line.startswith("ray ")]
    assert row[1:4] == ["btkit-ray", btkit.__version__, "loaded"] and "[executors]" in row[4:], row
    for line in proc.stdout.splitlines():  # a per-kind line, once the core lists executors by name
        if line.startswith(("executor:", "executors:")):
            assert "ray" in {n.strip() for n in line.split(":", 1)[1].split(",")}, line
    lazy = subprocess.run(
        [sys.executable, "-c", "import btkit_ray.plugin, sys; print('ray' in sys.modules)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lazy.stdout.strip() == "False", lazy.stderr


@pytest.mark.parametrize("jobs", [0, -1, True, 1.5])
def test_bad_jobs_is_a_config_error_before_anything_starts(jobs: Any) -> None:
    with pytest.raises(btkit.ConfigError, match="--jobs must be a whole number >= 1"):
        RayExecutor(ExecutorOptions(jobs=jobs))


def test_map_before_start_says_so() -> None:
    with pytest.raises(RuntimeError, match="before start"):
        next(RayExecutor().map(failing_job, [0]))


def traced_trial(shared: Mapping[str, Any], task: Any) -> dict[str, Any]:
    """In a Ray worker: a real research trial, recording every candle segment its engine's Market served."""
    from btkit.market import Market
    from btkit.research.trial import run_trial

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
    local = shared["candles"].local  # this task's object-store payload, as Ray gave it to the worker
    checks = []
    for interval, seg in served:
        block = local[("BTCUSDT", interval)]
        cols = (seg.ts, seg.open, seg.high, seg.low, seg.close, seg.volume)
        checks.append(
            (
                interval,
                all(np.shares_memory(c, block.ts if k == 0 else block.values) for k, c in enumerate(cols)),
                any(c.flags.writeable or c.flags.owndata for c in cols),
                block.values.flags.owndata or block.ts.flags.owndata,  # True: Ray copied it out of the store
            )
        )
    return {"trades": len(outcome.trades), "checks": checks}


def test_a_ray_worker_reads_the_candles_zero_copy_from_the_object_store(
    cluster: RayExecutor,
    btkit_clean: None,  # noqa: F811
) -> None:
    from btkit.research.study import Study
    from btkit.research.trial import Task

    start, end = 1704067200000, 1704067200000 + 7 * 86_400_000
    with Study(
        strategy="smacross-array",
        symbol="BTCUSDT",
        exchange="sim",
        start_ms=start,
        end_ms=end,
        executor="ray",
    ) as study:
        assert study.shared["candles"].local is not None  # the columns go in the object store, not shm names
        ((_, got),) = list(
            study.executor.map(traced_trial, [Task(params={"fast": 5}, start_ms=start, end_ms=end)])
        )
    assert isinstance(got, dict), got
    assert got["trades"] > 0
    assert {iv for iv, *_ in got["checks"]} == {"1m", "15m"}
    for interval, shares, writable_or_owned, copied in got["checks"]:
        assert shares and not writable_or_owned and not copied, interval


def loop_kinds(shared: Mapping[str, Any], item: object) -> str:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        return type(loop).__module__
    finally:
        loop.close()


def test_a_task_runs_on_the_standard_event_loop_and_ray_keeps_its_own(cluster: RayExecutor) -> None:
    """Ray workers install uvloop's policy, which made every backtest's many short loop calls slower; a
    task runs under the standard policy, and plain Ray tasks in the same workers still get Ray's."""
    import ray

    inside = {kind for _, kind in cluster.map(loop_kinds, range(4))}
    assert inside == {"asyncio.unix_events"}

    @ray.remote
    def plain() -> str:
        return loop_kinds({}, None)

    outside = set(ray.get([plain.remote() for _ in range(4)]))
    assert outside and "asyncio.unix_events" not in outside  # Ray's own policy (uvloop) is back
