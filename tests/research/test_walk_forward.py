"""Out of sample: walk-forward windows never let an out-of-sample range overlap the in-sample range it was
chosen on, the winner of each window is re-run out of sample, and train/test work the same way."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from btkit.errors import ConfigError
from btkit.research.walkforward import plan_windows, walk_forward

from .conftest import btkit_cli

DAY = 86_400_000
T0 = 1704067200000  # 2024-01-01


@pytest.mark.parametrize("mode", ["rolling", "anchored"])
@pytest.mark.parametrize("windows", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("days", [10, 31, 97])
def test_out_of_sample_never_overlaps_its_in_sample(mode: str, windows: int, days: int) -> None:
    plan = plan_windows(T0, T0 + days * DAY, windows, mode)
    assert len(plan) == windows
    for w in plan:
        assert w.is_start < w.is_end <= w.oos_start < w.oos_end <= T0 + days * DAY
        if mode == "anchored":
            assert w.is_start == T0
    for a, b in itertools.pairwise(plan):
        assert a.oos_end <= b.oos_end and b.oos_start >= a.oos_start  # the test ranges walk forward
        assert a.oos_end == b.oos_start  # and tile the rest of the range


def test_walk_forward_runs_the_winner_out_of_sample(btkit_clean: None, tmp_path: Path) -> None:
    result = walk_forward(
        "smacross-array", params=["fast=5:15:5", "slow=20:40:20"], start="20240101", end="20240122", windows=2,
        mode="rolling", metric="total_pnl", dump_dir=tmp_path,
    )  # fmt: skip
    assert len(result.windows) == 2
    for r in result.windows:
        w = r.window
        assert r.params is not None and r.oos_trades
        assert all(w.is_start <= t[0] < w.is_end for t in r.is_trades)  # chosen on in-sample trades only
        assert all(w.oos_start <= t[0] < w.oos_end for t in r.oos_trades)
        best = max(x.metrics["total_pnl"] for x in r.optimization.ranked)
        assert r.is_metrics["total_pnl"] == best
    assert result.stitched_oos["trades"] == sum(len(r.oos_trades) for r in result.windows)
    assert (tmp_path / "walk-forward.md").read_text().count("→") >= 4
    assert (
        (tmp_path / "walk-forward-oos-equity.csv").read_text().startswith("timestamp_ms,cumulative_pnl_cost")
    )


def test_train_test_must_not_overlap(btkit_clean: None) -> None:
    with pytest.raises(ConfigError, match="after the train range"):
        walk_forward(
            "smacross-array",
            params=["fast=5:10:5"],
            train=("20240101", "20240110"),
            test=("20240105", "20240115"),
        )


def test_cli_walk_forward_prints_in_sample_beside_out_of_sample(tmp_path: Path) -> None:
    out = btkit_cli(
        "optimize", "--strategy", "smacross-array", "--param", "fast=5:15:5", "--param", "slow=20:40:20",
        "--timerange", "20240101-20240113", "--walk-forward", "anchored", "--windows", "2", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "walk-forward (anchored)" in out.stdout and "in-sample   out-of-sample" in out.stdout
    train = btkit_cli(
        "optimize", "--strategy", "smacross-array", "--param", "fast=5:15:5", "--train", "20240101-20240106",
        "--test", "20240106-20240111", "--metric", "total_pnl", "--no-progress", cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    assert "walk-forward (train/test)" in train.stdout
