"""The Walker (backtest-kit parity): strategies compared by a metric, progress per strategy, a non-finite
metric gets no rank, a markdown report with one row per strategy and the best one; ``btkit walk``."""

from __future__ import annotations

from pathlib import Path

import pytest

import btkit
from btkit.errors import ConfigError
from btkit.research.trial import METRICS

from .conftest import btkit_cli

pytestmark = pytest.mark.usefixtures("clean")


def _setup() -> None:
    btkit.add_frame("w", "2024-01-01", "2024-01-14 23:59")
    btkit.add_strategy("never", lambda s, w, p: None, interval="15m")
    btkit.add_walker(
        "cmp", strategies=["smacross", "never", "smacross-array"], exchange="sim", frame="w", metric="sharpe_ratio",
        params={"smacross-array": {"fast": 5, "slow": 40}},
    )  # fmt: skip


def test_walker_ranks_by_the_metric_and_reports_progress(tmp_path: Path) -> None:
    _setup()
    progress = list(btkit.Walker.run("BTCUSDT", walker="cmp"))
    assert [p.strategy for p in progress] == ["smacross", "never", "smacross-array"]
    assert [p.progress for p in progress][-1] == 1.0
    data = btkit.Walker.get_data("BTCUSDT", walker="cmp")
    by = {r.strategy: r for r in data.rows}
    plain = {
        name: btkit.Backtest.get_data("BTCUSDT", strategy=name, exchange="sim", frame="w").sharpe_ratio
        for name in ("smacross", "smacross-array")
    }
    assert by["never"].rank is None and by["never"].metric_value is None  # no trades: no finite metric
    assert data.best_strategy == max(plain, key=plain.get)
    assert by[data.best_strategy].rank == 1
    report = btkit.Walker.dump("BTCUSDT", walker="cmp", path=tmp_path).read_text()
    assert f"Best: **{data.best_strategy}**" in report
    assert all(f"| {name} |" in report for name in ("smacross", "never", "smacross-array"))
    assert all(m in report for m in METRICS)


def test_metric_typo_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown metric"):
        btkit.add_walker("x", strategies=["smacross"], exchange="sim", frame="w", metric="sharpe")


def test_background_runs_and_joins() -> None:
    _setup()
    handle = btkit.Walker.background("BTCUSDT", walker="cmp")
    assert handle.join(120) and handle.error is None and len(handle.progress) == 3


def test_cli_walk(tmp_path: Path) -> None:
    out = btkit_cli(
        "walk",
        "--strategy",
        "smacross",
        "--strategy",
        "smacross-array",
        "--timerange",
        "20240101-20240110",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "best: " in out.stdout and "report: " in out.stdout
    bad = btkit_cli("walk", "--metric", "sharp", "--timerange", "20240101-20240102", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown metric" in bad.stderr
