"""Every trial is a real backtest, and the executor never changes the answer: each trial's trade list equals
a plain ``Backtest.run`` with the same parameters, and the trial set and ranking are the same for serial,
process (``--jobs 1`` and ``2``) and ray (when btkit-ray is installed; a real local cluster)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

import btkit
from btkit.errors import ConfigError
from btkit.research.optimizer import optimize
from btkit.research.study import Study
from btkit.research.trial import trades_of

from .conftest import END, START, btkit_cli

pytestmark = pytest.mark.xdist_group("ray")  # one worker: see the note in pyproject.toml

HAS_RAY = importlib.util.find_spec("btkit_ray") is not None
EXECUTORS = [
    "serial",
    "process",
    pytest.param("ray", marks=pytest.mark.skipif(not HAS_RAY, reason="btkit-ray is not installed")),
]
GRID = ["fast=5:15:5", "slow=20:40:20"]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    if not HAS_RAY:
        yield
        return
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference() -> dict:
    """Plain Backtest.run of every grid point on the real sim exchange, and the serial ranking."""
    from btkit.testing import reset_btkit

    reset_btkit()
    btkit.add_frame("ref", "2024-01-01", "2024-01-14 23:59")
    plain = {}
    for fast in (5, 10, 15):
        for slow in (20, 40):
            params = {"fast": fast, "slow": slow}
            results = btkit.Backtest.run(
                "BTCUSDT", strategy="smacross-array", exchange="sim", frame="ref", params=params
            )
            plain[(fast, slow)] = trades_of(results)
    serial = optimize("smacross-array", params=GRID, start=START, end=END, executor="serial")
    rnd = optimize("smacross-array", params=GRID, start=START, end=END, method="random", trials=4, seed=3)
    reset_btkit()
    return {
        "plain": plain,
        "ranking": [(r.index, r.params) for r in serial.ranked],
        "random": [(r.index, r.params) for r in rnd.records],
        "random_ranking": [(r.index, r.params) for r in rnd.ranked],
    }


@pytest.mark.parametrize("executor", EXECUTORS)
def test_every_trial_equals_a_plain_backtest(
    executor: str, reference: dict, ray_cluster: None, btkit_clean: None
) -> None:
    result = optimize("smacross-array", params=GRID, start=START, end=END, executor=executor, jobs=2)
    assert len(result.records) == 6
    for rec in result.records:
        assert rec.status == "ok", rec.error
        assert rec.outcome is not None
        assert rec.outcome.trades == reference["plain"][(rec.params["fast"], rec.params["slow"])]
        assert rec.outcome.trades  # something traded: the comparison is not empty against empty


@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("jobs", [1, 2])
def test_trial_set_and_ranking_do_not_depend_on_jobs_or_executor(
    executor: str, jobs: int, reference: dict, ray_cluster: None, btkit_clean: None
) -> None:
    result = optimize(
        "smacross-array",
        params=GRID,
        start=START,
        end=END,
        executor=executor,
        jobs=jobs,
        method="random",
        trials=4,
        seed=3,
    )
    assert [(r.index, r.params) for r in result.records] == reference["random"]
    assert [(r.index, r.params) for r in result.ranked] == reference["random_ranking"]
    grid = optimize("smacross-array", params=GRID, start=START, end=END, executor=executor, jobs=jobs)
    assert [(r.index, r.params) for r in grid.ranked] == reference["ranking"]


def test_tpe_is_seeded_and_independent_of_jobs(btkit_clean: None) -> None:
    pytest.importorskip("optuna")
    kw = dict(
        params=["fast=5:25:5", "slow=20:60:20"],
        constraint="fast < slow",
        start=START,
        end=END,
        method="tpe",
        trials=10,
        seed=7,
    )
    one = optimize("smacross-array", executor="serial", **kw)
    two = optimize("smacross-array", executor="process", jobs=2, **kw)
    assert [r.params for r in one.records] == [r.params for r in two.records]
    assert [r.index for r in one.ranked] == [r.index for r in two.ranked]
    assert len(one.records) == 10


def test_process_executor_shares_candles_through_shared_memory(btkit_clean: None) -> None:
    with Study(
        strategy="smacross-array",
        symbol="BTCUSDT",
        exchange="sim",
        start_ms=1704067200000,
        end_ms=1704153600000,
        executor="process",
        jobs=1,
    ) as study:
        handles = study.shared["candles"]
        assert handles.local is None and handles.blocks  # names of shared-memory blocks, not the arrays
        assert {iv for _, iv, _, _ in handles.blocks} == {"1m", "15m"}
        import pickle

        assert len(pickle.dumps(study.shared)) < 4096  # what a worker receives is tiny


def test_the_hook_offers_the_builtins() -> None:
    from btkit.plugins import get_plugin_manager

    names = [s.name for specs in get_plugin_manager().hook.btkit_executors() for s in specs]
    assert {"serial", "process"} <= set(names)


def test_a_trial_that_raises_is_recorded_failed_and_the_rest_go_on(tmp_path: Path, btkit_clean: None) -> None:
    script = tmp_path / "boom.py"
    script.write_text(
        "import btkit\n"
        "from btkit.defaults import smacross\n"
        "def get_signal(symbol, when, price):\n"
        "    if btkit.get_params()['fast'] == 10:\n"
        "        raise RuntimeError('fast=10 is cursed')\n"
        "    return smacross.get_signal(symbol, when, price)\n"
        "btkit.add_strategy('boom', get_signal, interval='15m', params=smacross.PARAMS)\n"
    )
    out = btkit_cli(
        "optimize", "--strategy-file", str(script), "--strategy", "boom", "--param", "fast=5:15:5", "--param", "slow=40",
        "--timerange", "20240101-20240108", "--metric", "total_pnl", "--executor", "process", "--jobs", "2",
        "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    import csv

    rows = list(
        csv.DictReader(next((tmp_path / "dump" / "optimize").glob("boom-*")).joinpath("trials.csv").open())
    )
    status = {row["fast"]: (row["status"], row["error"]) for row in rows}
    assert status["10"][0] == "failed" and "fast=10 is cursed" in status["10"][1]
    assert status["5"][0] == "ok" and status["15"][0] == "ok"


@pytest.mark.skipif(HAS_RAY, reason="btkit-ray is installed")
def test_ray_without_the_plugin_says_how_to_install_it(tmp_path: Path) -> None:
    out = btkit_cli(
        "optimize",
        "--param",
        "fast=5:10:5",
        "--executor",
        "ray",
        "--timerange",
        "20240101-20240102",
        cwd=tmp_path,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "pip install btkit-ray" in out.stderr


def test_unknown_executor_is_a_usage_error(btkit_clean: None) -> None:
    with pytest.raises(ConfigError, match="no executor named 'nope'"):
        optimize("smacross-array", params=GRID, start=START, end=END, executor="nope")
