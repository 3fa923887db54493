"""Release hygiene of every built wheel: no tests, dumps or caches inside; complete metadata; the version
single-sourced (metadata == the package's ``__version__``); plugin ranges on btkit that the current
release satisfies; every ``btkit`` entry point importable from the wheel and declaring a plugin API range
that includes the host's."""

from __future__ import annotations

import ast
import re
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

import btkit

pytestmark = pytest.mark.xdist_group("dist")  # one worker: see the note in pyproject.toml

ROOT = Path(__file__).resolve().parents[2]
# every published workspace member (the names, for parametrising; conftest maps them to folders)
PACKAGES = sorted(
    tomllib.loads(p.read_text())["project"]["name"]
    for p in [ROOT / "core" / "pyproject.toml", *ROOT.glob("plugins/*/pyproject.toml"),
              *ROOT.glob("contrib/*/pyproject.toml")]
)
FORBIDDEN_PARTS = {"tests", "test", "__pycache__", "dump", ".pytest_cache", ".hypothesis", ".ruff_cache",
                   "benchmarks", "data", "build", "dist"}
FORBIDDEN_NAME = re.compile(r"(^test_.*\.py$|^conftest\.py$|\.py[cod]$|\.sqlite3|\.lock$|\.log$|^\.DS_Store$)")


def metadata(wheel: zipfile.ZipFile) -> tuple[str, dict[str, list[str]]]:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    msg = Parser().parsestr(wheel.read(name).decode())
    fields: dict[str, list[str]] = {}
    for key, value in msg.items():
        fields.setdefault(key, []).append(value)
    return name.split("/")[0], fields


def source_version(folder: Path, module: str) -> str:
    init = folder / "src" / module / "__init__.py"
    match = re.search(r'^__version__ = "([^"]+)"', init.read_text(), re.M)
    assert match, f"{init} has no __version__"
    return match.group(1)


def test_every_workspace_member_is_built(built: Any, dist_packages: dict[str, tuple[Path, str]]) -> None:
    assert set(PACKAGES) == set(dist_packages)
    for dist in PACKAGES:
        assert built.wheel(dist).is_file()


@pytest.mark.parametrize("dist", PACKAGES)
def test_wheel_holds_only_the_package_and_complete_metadata(
    dist: str, built: Any, dist_packages: dict[str, tuple[Path, str]]
) -> None:
    with zipfile.ZipFile(built.wheel(dist)) as whl:
        names = whl.namelist()
        info, meta = metadata(whl)
        folder, module = dist_packages[dist]
        for name in names:
            path = PurePosixPath(name)
            if path.parts[0] == info:
                continue
            assert path.parts[0] == module, f"{dist}: stray top-level {name}"
            assert not FORBIDDEN_PARTS & set(path.parts[1:-1]), f"{dist}: {name} is a test, dump or cache"
            assert not FORBIDDEN_NAME.search(path.name), f"{dist}: {name} is a test, dump or cache"
        assert f"{module}/py.typed" in names
        assert f"{module}/__init__.py" in names
        assert any(n.startswith(f"{info}/licenses/LICENSE") for n in names)

        assert meta["Name"] == [dist]
        assert meta["Version"] == [source_version(folder, module)] == [btkit.__version__]  # released in lockstep
        assert meta["License-Expression"] == ["MIT"]
        assert meta["Summary"][0] and "plugin: sqlite" not in meta["Summary"][0]
        assert meta["Requires-Python"] == [">=3.11"]
        assert "Typing :: Typed" in meta["Classifier"]
        assert any(c.startswith("Programming Language :: Python :: 3.11") for c in meta["Classifier"])
        urls = dict(u.split(", ", 1) for u in meta["Project-URL"])
        assert {"Homepage", "Documentation", "Changelog", "Issues", "Source"} <= set(urls)

        requires = [Requirement(r) for r in meta.get("Requires-Dist", [])]
        current = Version(btkit.__version__)
        next_minor = Version(f"{current.major}.{current.minor + 1}")
        for req in requires:
            if req.name.startswith("btkit"):  # first-party: this release fits, the next breaking one does not
                assert req.specifier.contains(current) and not req.specifier.contains(next_minor), req
        if dist != "btkit":
            assert "btkit" in {r.name for r in requires}

        eps = whl.read(f"{info}/entry_points.txt").decode() if f"{info}/entry_points.txt" in names else ""
        if dist == "btkit":
            assert re.search(r"^\[console_scripts\]\s*\nbtkit = btkit\.cli:main$", eps, re.M)
            assert "btkit/scaffold/templates/strategy/module.py.tmpl" in names
            for asset in ("dashboard.html", "dashboard.js", "dashboard.css"):  # btkit serve's page
                assert f"btkit/ops/dashboard/{asset}" in names
            return
        group = re.search(r"^\[btkit\]\n((?:.+\n?)+)", eps, re.M)
        assert group, f"{dist} has no btkit entry point"
        for line in group.group(1).strip().splitlines():
            _, _, target = (p.strip() for p in line.partition("="))
            source = whl.read(f"{target.replace('.', '/')}/__init__.py").decode()
            declared = [
                node.value.value
                for node in ast.parse(source).body
                if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "btkit_api" for t in node.targets)
                and isinstance(node.value, ast.Constant)
            ]
            assert len(declared) == 1, f"{dist}: {target} declares no btkit_api"
            assert SpecifierSet(declared[0]).contains(btkit.PLUGIN_API_VERSION)
