"""``btkit new`` renders complete packages for every kind (names checked, nothing left unfilled, never over
an existing folder) and ``btkit --version`` names btkit's and every plugin distribution's version. The
scaffolds are installed and their own tests run in a fresh venv by tests/dist/."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import distribution, entry_points
from pathlib import Path

import pytest

import btkit
from btkit.cli import main
from btkit.scaffold import KINDS, ScaffoldError, create, plan


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_a_complete_package(kind: str, tmp_path: Path) -> None:
    sc, target, written = create(kind, f"my-{kind}", tmp_path)
    assert target == tmp_path / f"my-{kind}"
    rel = {p.relative_to(target).as_posix() for p in written}
    module = sc.module
    assert {
        "pyproject.toml", "README.md", ".gitignore", "tests/conftest.py", f"tests/test_{module}.py",
        f"src/{module}/__init__.py", f"src/{module}/py.typed",
    } == rel
    for path in written:
        text = path.read_text()
        assert not re.search(r"\{\{\w+\}\}", text), path
        if path.suffix == ".py":
            ast.parse(text, filename=str(path))
    meta = tomllib.loads((target / "pyproject.toml").read_text())["project"]
    assert meta["name"] == sc.dist
    assert meta["entry-points"]["btkit"] == {f"my-{kind}": module}
    major, minor = (int(x) for x in btkit.__version__.split(".")[:2])
    assert meta["dependencies"] == [f"btkit>={major}.{minor},<{major}.{minor + 1}"]
    init = (target / "src" / module / "__init__.py").read_text()
    api = int(btkit.PLUGIN_API_VERSION)
    assert f'btkit_api = ">={api},<{api + 1}"' in init
    assert "pytest_plugins = [\"btkit.testing\"]" in (target / "tests" / "conftest.py").read_text()


def test_names_and_distributions() -> None:
    assert (plan("strategy", "demo-x").dist, plan("strategy", "demo-x").module) == (
        "btkit-strategy-demo-x", "btkit_strategy_demo_x"
    )
    assert plan("exchange", "btkit-kraken").dist == "btkit-kraken"  # no btkit-btkit-
    assert plan("broker", "my-exchange2").klass == "MyExchange2"
    for bad in ("Demo", "demo_x", "-demo", "demo-", "demo--x", "1demo", "", "x" * 41, "de mo", "dé"):
        with pytest.raises(ScaffoldError):
            plan("strategy", bad)
    with pytest.raises(ScaffoldError, match="choose one of"):
        plan("indicator", "demo")


def test_cli_new_refuses_an_existing_folder_and_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new", "strategy", "demo-x", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "btkit-strategy-demo-x" in out and "btkit backtest --strategy demo-x" in out
    before = sorted(p.as_posix() for p in (tmp_path / "demo-x").rglob("*"))
    assert main(["new", "strategy", "demo-x", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert sorted(p.as_posix() for p in (tmp_path / "demo-x").rglob("*")) == before
    assert main(["new", "plugin", "risk", "Bad_Name", "--dir", str(tmp_path)]) == 2
    assert "lowercase" in capsys.readouterr().err
    assert main(["new", "plugin", "risk", "ok", "--dir", str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse: an unknown kind is a usage error
        main(["new", "plugin", "indicator", "x"])
    assert info.value.code == 2


def test_version_prints_btkit_and_every_plugin_distribution() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "btkit.cli", "--version"], capture_output=True, text=True, timeout=120,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"btkit {distribution('btkit').version} ")
    assert f"plugin API {btkit.PLUGIN_API_VERSION}" in lines[0]
    assert btkit.__version__ == distribution("btkit").version  # the package and its metadata agree
    expected = {ep.dist.metadata["Name"]: ep.dist.version for ep in entry_points(group="btkit") if ep.dist}
    assert expected  # the workspace installs the first-party plugins
    shown = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert shown == expected
