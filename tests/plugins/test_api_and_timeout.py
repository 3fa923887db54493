"""Plugin API version ranges and bounded plugin import, against fake installed distributions (real
``*.dist-info/entry_points.txt`` files on ``sys.path``, loaded through real entry points)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

import btkit
from btkit import plugins
from btkit.errors import ConfigError, PluginError
from btkit.plugins import collect_components, get_plugin_manager

STRATEGY = """
import btkit
from btkit.components import StrategySpec

{api}
CALLS = []

@btkit.hookimpl
def btkit_strategies():
    CALLS.append(1)
    return [StrategySpec(name="{name}", get_signal=lambda s, w, p: None, dist="{dist}")]
"""
HANGS = """
import time
time.sleep({seconds})
"""


def make_dist(root: Path, dist: str, module: str, source: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.4.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.4.0\n")
    (info / "entry_points.txt").write_text(f"[btkit]\n{dist} = {module}\n")


def strategy_source(name: str, api: str | None) -> str:
    return STRATEGY.format(api="" if api is None else f"btkit_api = {api!r}", name=name, dist=name)


# a range that excludes the running host, computed from the host's own number (so the test follows a bump)
NEXT = str(int(btkit.PLUGIN_API_VERSION) + 1)
INCOMPATIBLE = f">={NEXT},<{int(NEXT) + 1}"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, btkit_clean: None) -> Path:
    make_dist(tmp_path, "fake-fits", "fake_fits_plugin", strategy_source("fake-fits", ">=1,<2"))
    make_dist(tmp_path, "fake-future", "fake_future_plugin", strategy_source("fake-future", INCOMPATIBLE))
    make_dist(tmp_path, "fake-undeclared", "fake_undeclared_plugin", strategy_source("fake-undeclared", None))
    make_dist(tmp_path, "fake-garbled", "fake_garbled_plugin", strategy_source("fake-garbled", "one or two"))
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("fake_fits_plugin", "fake_future_plugin", "fake_undeclared_plugin", "fake_garbled_plugin"):
        sys.modules.pop(mod, None)
    return tmp_path


def test_host_publishes_an_api_version_that_its_own_plugins_fit() -> None:
    assert btkit.PLUGIN_API_VERSION == plugins.PLUGIN_API_VERSION
    import btkit_binance_futures
    import btkit_ccxt
    import btkit_redis
    import btkit_sqlite
    import btkit_strategy_dca
    import btkit_strategy_partials

    for module in (btkit_sqlite, btkit_redis, btkit_ccxt, btkit_binance_futures, btkit_strategy_dca,
                   btkit_strategy_partials):
        assert btkit.PLUGIN_API_VERSION in SpecifierSet(module.btkit_api), module.__name__


def test_incompatible_plugin_is_refused_and_never_registered(site: Path) -> None:
    pm = get_plugin_manager()
    rec = {r.name: r for r in pm.records}
    assert rec["fake-fits"].status == "loaded" and rec["fake-fits"].api == ">=1,<2"
    assert rec["fake-undeclared"].status == "loaded"  # no declaration: taken as compatible
    refused = rec["fake-future"]
    assert refused.status == "refused" and refused.api == INCOMPATIBLE
    assert "\n" not in refused.error
    assert INCOMPATIBLE in refused.error and f"API {btkit.PLUGIN_API_VERSION}" in refused.error
    assert btkit.__version__ in refused.error and "fake-future 1.4.0" in refused.error
    assert rec["fake-garbled"].status == "refused" and "not a version range" in rec["fake-garbled"].error
    # never half-loaded: not registered, its registry hook never called, its strategy unknown by name
    names = {pm.get_name(p) for p in pm.get_plugins()}
    assert "fake-future" not in names and "fake-garbled" not in names
    components = collect_components(pm)
    assert sys.modules["fake_future_plugin"].CALLS == []
    assert sys.modules["fake_fits_plugin"].CALLS == [1]
    assert "fake-future" not in components.names("strategy")
    with pytest.raises(btkit.BtkitError) as info:
        components.get("strategy", "fake-future")
    assert "fake-future was refused" in str(info.value)
    with pytest.raises(PluginError, match="was refused"):
        plugins.require_loaded(pm, "fake-future")


def test_btkit_plugins_lists_a_refused_plugin_on_one_line(site: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-m", "btkit.cli", "plugins"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if line.startswith("fake-future ")]
    assert len(lines) == 1 and "refused" in lines[0] and INCOMPATIBLE in lines[0]
    strategies = next(line for line in out.stdout.splitlines() if line.startswith("strategy:"))
    assert "fake-fits" in strategies and "fake-future" not in strategies


def test_a_hung_plugin_is_failed_with_the_time_waited_and_not_waited_for_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, btkit_clean: None
) -> None:
    make_dist(tmp_path, "fake-hangs", "fake_hangs_plugin", HANGS.format(seconds=600))
    make_dist(tmp_path, "fake-fits", "fake_fits_plugin", strategy_source("fake-fits", ">=1,<2"))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fake_fits_plugin", None)
    pm = get_plugin_manager(environ={"BTKIT_PLUGIN_TIMEOUT": "0.5"})
    rec = {r.name: r for r in pm.records}
    assert rec["fake-hangs"].status == "failed"
    assert "did not finish in 0.5 s" in rec["fake-hangs"].error
    assert rec["fake-fits"].status == "loaded"  # the plugins after the hung one still load
    assert "fake-fits" in collect_components(pm).names("strategy")
    again = {r.name: r for r in get_plugin_manager(environ={"BTKIT_PLUGIN_TIMEOUT": "0.5"}).records}
    assert again["fake-hangs"].status == "failed" and again["fake-hangs"].error == rec["fake-hangs"].error
    # the abandoned import is not started (nor waited for) a second time: one loader thread, still alive
    loaders = [t for t in threading.enumerate() if t.name == "btkit-plugin-load:fake-hangs"]
    assert len(loaders) == 1 and loaders[0].daemon


def test_btkit_plugins_and_backtest_answer_with_a_plugin_that_hangs_forever(tmp_path: Path) -> None:
    make_dist(tmp_path, "fake-hangs", "fake_hangs_plugin", "import threading\nthreading.Event().wait()\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "BTKIT_PLUGIN_TIMEOUT": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "btkit.cli", "plugins"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("fake-hangs "))
    assert "failed" in line and "did not finish in 1.0 s" in line
    out = subprocess.run(
        [sys.executable, "-m", "btkit.cli", "backtest", "--timerange", "20240101-20240103",
         "--dump-dir", str(tmp_path / "dump")],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "BTCUSDT" in out.stdout


@pytest.mark.parametrize("raw", ["abc", "0", "-1", "nan", "inf"])
def test_bad_plugin_timeout_is_a_config_error(raw: str, btkit_clean: None) -> None:
    with pytest.raises(ConfigError, match="BTKIT_PLUGIN_TIMEOUT"):
        get_plugin_manager(environ={"BTKIT_PLUGIN_TIMEOUT": raw})
