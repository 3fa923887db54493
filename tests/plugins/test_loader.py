"""The plugin loader against fake installed distributions (real ``*.dist-info/entry_points.txt`` files on
``sys.path``): a good plugin, a broken import, a bad hook signature, a misspelled hook, duplicates."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import btkit
from btkit.errors import PluginError
from btkit.plugins import collect_components, get_plugin_manager

GOOD = """
import btkit
from btkit.components import StrategySpec

def get_signal(symbol, when, current_price):
    return None

@btkit.hookimpl
def btkit_strategies():
    return [StrategySpec(name="fake-good", get_signal=get_signal, dist="fake-good")]
"""
BROKEN = """
raise ImportError("this plugin needs a library that is not installed")
"""
BAD_SIGNATURE = """
import btkit

@btkit.hookimpl
def btkit_exchanges(not_an_argument_of_the_spec):
    return []
"""
TYPO = """
import btkit

@btkit.hookimpl
def btkit_exchangez():
    return []
"""
DUPLICATE = """
import btkit
from btkit.components import StrategySpec

@btkit.hookimpl
def btkit_strategies():
    return [StrategySpec(name="fake-good", get_signal=lambda s, w, p: None, dist="fake-dup")]
"""
BAD_RECORD = """
import btkit

@btkit.hookimpl
def btkit_strategies():
    return ["not a StrategySpec"]
"""


def make_dist(root: Path, dist: str, module: str, source: str, ep_name: str | None = None) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[btkit]\n{ep_name or dist} = {module}\n")


@pytest.fixture
def fake_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, btkit_clean: None) -> Path:
    make_dist(tmp_path, "fake-good", "fake_good_plugin", GOOD)
    make_dist(tmp_path, "fake-broken", "fake_broken_plugin", BROKEN)
    make_dist(tmp_path, "fake-badsig", "fake_badsig_plugin", BAD_SIGNATURE)
    make_dist(tmp_path, "fake-typo", "fake_typo_plugin", TYPO)
    monkeypatch.syspath_prepend(str(tmp_path))
    for mod in ("fake_good_plugin", "fake_broken_plugin", "fake_badsig_plugin", "fake_typo_plugin"):
        sys.modules.pop(mod, None)
    return tmp_path


def _records(pm):  # name -> record
    return {r.name: r for r in pm.records}


def test_good_broken_and_bad_signature_plugins_are_isolated(fake_site: Path) -> None:
    pm = get_plugin_manager()
    rec = _records(pm)
    assert rec["fake-good"].status == "loaded"
    assert rec["fake-good"].dist == "fake-good" and rec["fake-good"].version == "0.1.0"
    assert "btkit_strategies" in rec["fake-good"].hooks
    assert rec["fake-broken"].status == "failed"
    assert "needs a library that is not installed" in rec["fake-broken"].error
    assert rec["fake-badsig"].status == "failed"
    assert "not_an_argument_of_the_spec" in rec["fake-badsig"].error
    assert rec["fake-typo"].status == "failed" and "btkit_exchangez" in rec["fake-typo"].error
    # failed plugins are unregistered completely: none of their hooks is reachable
    names = {pm.get_name(p) for p in pm.get_plugins()}
    assert {"fake-broken", "fake-badsig", "fake-typo"}.isdisjoint(names)
    # the good plugin's strategy is selectable by name, next to the defaults
    components = collect_components(pm)
    assert "fake-good" in components.names("strategy")
    assert "sim" in components.names("exchange") and "paper" in components.names("broker")


def test_a_backtest_still_runs_with_broken_plugins_installed(fake_site: Path) -> None:
    btkit.add_frame("one-hour", "2024-01-02T00:00", "2024-01-02T01:00")
    results = list(btkit.Backtest.run("BTCUSDT", strategy="fake-good", exchange="sim", frame="one-hour"))
    assert results == []  # the strategy never signals; the point is that the run works


def test_disable_and_allow_list_switches(fake_site: Path) -> None:
    pm = get_plugin_manager(environ={"BTKIT_DISABLE_PLUGINS": "fake-broken,fake-badsig,fake-typo"})
    rec = _records(pm)
    assert rec["fake-broken"].status == "disabled"  # blocked before import: no error recorded
    assert rec["fake-broken"].error == ""
    assert rec["fake-good"].status == "loaded"
    pm = get_plugin_manager(environ={"BTKIT_LOAD_PLUGINS": "fake-good"})
    rec = _records(pm)
    assert rec["fake-good"].status == "loaded"
    assert all(r.status == "disabled" for n, r in rec.items() if n.startswith("fake-") and n != "fake-good")
    pm = get_plugin_manager(environ={"BTKIT_LOAD_PLUGINS": ""})  # empty allow-list: no entry points at all
    assert all(r.status == "disabled" for r in pm.records if r.dist not in ("btkit", "<code>"))


def test_duplicate_component_names_name_both_distributions(fake_site: Path) -> None:
    make_dist(fake_site, "fake-dup", "fake_dup_plugin", DUPLICATE)
    with pytest.raises(PluginError) as info:
        collect_components(get_plugin_manager())
    assert "fake-good" in str(info.value) and "fake-dup" in str(info.value)


def test_bad_registry_records_are_reported_not_used(fake_site: Path) -> None:
    make_dist(fake_site, "fake-badrecord", "fake_badrecord_plugin", BAD_RECORD)
    components = collect_components(get_plugin_manager())
    assert any("fake-badrecord" in p and "StrategySpec" in p for p in components.problems)


def test_btkit_plugins_command_shows_failed_plugins(fake_site: Path) -> None:
    import os

    env = {**os.environ, "PYTHONPATH": str(fake_site)}
    out = subprocess.run(
        [sys.executable, "-m", "btkit.cli", "plugins"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "failed" in lines["fake-broken"] and "not installed" in lines["fake-broken"]
    assert "loaded" in lines["fake-good"]


def test_each_manager_is_fresh(btkit_clean: None) -> None:
    a, b = get_plugin_manager(), get_plugin_manager()
    assert a is not b
    assert {r.name for r in a.records} == {r.name for r in b.records}


def test_demo_strategy_ships_with_the_core_and_contrib_strategies_come_from_installed_distributions() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="btkit")}
    assert "smacross" not in eps  # a default plugin of the core, not an entry point
    assert eps["dca-ladder"].dist.metadata["Name"] == "btkit-strategy-dca"
    components = collect_components(get_plugin_manager())
    assert components.get("strategy", "smacross").dist == "btkit"
    assert components.get("strategy", "dca").dist == "btkit-strategy-dca"


def test_missing_component_names_the_failed_distribution(fake_site: Path) -> None:
    from btkit.errors import UnknownComponentError

    components = collect_components(get_plugin_manager())
    with pytest.raises(UnknownComponentError) as info:
        components.get("strategy", "whatever-the-broken-plugin-offered")
    assert "fake-broken failed to load" in str(info.value)
