"""A new user's path, in one fresh venv, from the built wheels with plain pip (tests in file order):

1. ``pip install btkit`` alone: ``btkit backtest`` runs the demo, ``btkit plugins`` lists the defaults;
2. + btkit-sqlite, btkit-ccxt, btkit-binance-futures: listed loaded; a sqlite replay paper run works;
3. - btkit-sqlite: the same command is one line saying ``pip install btkit-sqlite``, exit 2;
4. a plugin wheel built for another plugin API is refused cleanly (never half-loaded);
5. ``btkit new strategy demo-x`` → ``pip install ./demo-x`` → ``btkit backtest --strategy demo-x`` runs and
   the scaffold's own tests pass.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import btkit

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dist")]
ROOT = Path(__file__).resolve().parents[2]
Built = Venv = Any  # the conftest's fixtures (tests/dist/conftest.py)

DEFAULTS = {"btkit.defaults.runtime", "btkit.defaults.paper_broker", "btkit.defaults.file_persistence",
            "btkit.defaults.sim_exchange", "btkit.defaults.smacross"}
PAPER = ["paper", "--persistence", "sqlite", "--replay-from", "20240101", "--replay-to", "20240103"]


def plugin_lines(stdout: str) -> dict[str, list[str]]:
    """``btkit plugins`` rows by plugin name: [name, dist, version, status, ...]."""
    rows = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and not line.startswith(("strategy:", "exchange:", "broker:", "persistence:",
                                                   "risk:", "frame:", "problem:")):
            rows[parts[0]] = parts
    return rows


def listed(stdout: str, kind: str) -> set[str]:
    line = next(x for x in stdout.splitlines() if x.startswith(f"{kind}:"))
    return {n.strip() for n in line.split(":", 1)[1].split(",")}


def test_core_alone_runs_the_demo_and_lists_the_defaults(venv: Venv, built: Built) -> None:
    venv.install(built.wheel("btkit"))
    assert "btkit" in venv.installed()
    assert not {"btkit-sqlite", "btkit-ccxt", "btkit-strategy-dca"} & venv.installed()
    out = venv.btkit("backtest")
    assert out.returncode == 0, out.stderr
    assert re.search(r"^BTCUSDT\s+\d+\s", out.stdout, re.M), out.stdout  # the demo's summary row
    reports = list((venv.work / "dump" / "backtest").glob("BTCUSDT_smacross_sim_*.md"))
    assert len(reports) == 1
    out = venv.btkit("plugins")
    assert out.returncode == 0, out.stderr
    rows = plugin_lines(out.stdout)
    assert set(rows) >= DEFAULTS
    assert all(rows[n][3] == "loaded" and rows[n][1] == "btkit" for n in DEFAULTS)
    assert {rows[n][1] for n in rows} == {"btkit", "<code>"}  # no entry point plugin is installed
    assert {"smacross", "sma-cross"} <= listed(out.stdout, "strategy")
    assert listed(out.stdout, "persistence") == {"file"}
    out = venv.btkit("--version")
    assert out.returncode == 0 and out.stdout.splitlines() == [
        line for line in out.stdout.splitlines() if line.startswith(f"btkit {btkit.__version__} ")
    ]


def test_plugins_from_wheels_load_and_a_sqlite_replay_runs(venv: Venv, built: Built) -> None:
    venv.install(built.wheel("btkit-sqlite"), built.wheel("btkit-ccxt"), built.wheel("btkit-binance-futures"))
    check = venv.python("-m", "pip", "check")
    assert check.returncode == 0, check.stdout  # the declared ranges are satisfied together
    out = venv.btkit("plugins")
    assert out.returncode == 0, out.stderr
    rows = plugin_lines(out.stdout)
    for name, dist in (("sqlite", "btkit-sqlite"), ("ccxt", "btkit-ccxt"),
                       ("binance-futures", "btkit-binance-futures")):
        assert rows[name][1:4] == [dist, "0.2.0", "loaded"], rows[name]
    assert "sqlite" in listed(out.stdout, "persistence")
    assert "binance-futures" in listed(out.stdout, "broker")
    version = venv.btkit("--version").stdout
    assert "btkit-binance-futures 0.2.0" in version and "btkit-sqlite 0.2.0" in version

    paper = venv.work / "paper"
    paper.mkdir()
    out = venv.btkit(*PAPER, cwd=paper)
    assert out.returncode == 0, out.stderr
    db = paper / "dump" / "replay" / "20240101-20240103" / "btkit.sqlite3"  # a replay's own state
    assert db.is_file()
    with sqlite3.connect(db) as con:  # the state really went into SQLite
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert tables
    assert list((paper / "dump" / "live").glob("BTCUSDT_smacross_sim_*.md"))


def test_without_btkit_sqlite_the_same_command_says_what_to_install(venv: Venv) -> None:
    venv.pip("uninstall", "--yes", "btkit-sqlite")
    paper = venv.work / "paper-missing"
    paper.mkdir()
    out = venv.btkit(*PAPER, cwd=paper)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install btkit-sqlite" in lines[0], out.stderr
    assert not (paper / "dump" / "btkit.sqlite3").exists()


def test_a_plugin_wheel_for_another_plugin_api_is_refused(venv: Venv, tmp_path: Path, clean_run: Any) -> None:
    api = int(btkit.PLUGIN_API_VERSION)
    other = f">={api + 1},<{api + 2}"
    out = venv.btkit("new", "strategy", "future-x", "--dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    init = tmp_path / "future-x" / "src" / "btkit_strategy_future_x" / "__init__.py"
    init.write_text(re.sub(r'^btkit_api = ".*"', f'btkit_api = "{other}"', init.read_text(), flags=re.M))
    uv = shutil.which("uv")
    assert uv is not None
    proc = clean_run([uv, "build", "--wheel", "--out-dir", tmp_path / "whl", "--quiet", tmp_path / "future-x"],
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "whl").glob("btkit_strategy_future_x-*.whl")
    venv.install(wheel)
    try:
        out = venv.btkit("plugins")
        assert out.returncode == 0, out.stderr
        lines = [x for x in out.stdout.splitlines() if x.startswith("future-x ")]
        assert len(lines) == 1, out.stdout
        assert "refused" in lines[0] and other in lines[0] and f"API {api}" in lines[0]
        assert "future-x" not in listed(out.stdout, "strategy")  # never half-loaded
        out = venv.btkit("backtest", "--strategy", "future-x")
        assert out.returncode == 2
        assert len(out.stderr.strip().splitlines()) == 1 and "refused" in out.stderr
        out = venv.btkit("backtest", "--timerange", "20240101-20240105")  # everything else still works
        assert out.returncode == 0, out.stderr
    finally:
        venv.pip("uninstall", "--yes", "btkit-strategy-future-x")


def test_a_scaffolded_strategy_installs_runs_and_passes_its_own_tests(venv: Venv) -> None:
    out = venv.btkit("new", "strategy", "demo-x")
    assert out.returncode == 0, out.stderr
    venv.install(f"{venv.work / 'demo-x'}[test]")
    out = venv.btkit("backtest", "--strategy", "demo-x")
    assert out.returncode == 0, out.stderr
    assert list((venv.work / "dump" / "backtest").glob("BTCUSDT_demo-x_sim_*.md"))
    tests = venv.python("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=venv.work / "demo-x")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert re.search(r"\b3 passed\b", tests.stdout), tests.stdout


def test_workspace_root_is_not_a_dependency_of_the_installed_command(venv: Venv) -> None:
    out = venv.python("-c", "import btkit, sys; print(btkit.__file__)")
    assert out.returncode == 0
    assert str(ROOT) not in out.stdout  # the venv runs the wheel's copy, not the workspace's sources
