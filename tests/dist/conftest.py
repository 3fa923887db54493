"""Distribution tests: every package built once per session with ``uv build``, installed from the wheel
files with plain ``pip`` into one fresh ``python -m venv`` (no workspace, no editable installs), and used
as a new user would: the ``btkit`` command of that venv, run in a scratch folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[2]


def workspace_packages(root: Path = ROOT) -> dict[str, tuple[Path, str]]:
    """Every published workspace member: distribution name -> (its folder, its import package)."""
    found: dict[str, tuple[Path, str]] = {}
    for pyproject in sorted([root / "core" / "pyproject.toml", *root.glob("plugins/*/pyproject.toml"),
                             *root.glob("contrib/*/pyproject.toml")]):
        data = tomllib.loads(pyproject.read_text())
        packages = data["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        found[data["project"]["name"]] = (pyproject.parent, Path(packages[0]).name)
    return found


PACKAGES = workspace_packages()


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of this workspace's venv or of btkit's settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BTKIT", "PYTEST", "VIRTUAL_ENV", "PYTHON", "UV_PROJECT"))
    }
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def run(cmd: Sequence[str | Path], *, cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=clean_env(**env), capture_output=True, text=True, timeout=timeout
    )


@attrs.frozen
class Built:
    folder: Path

    def wheel(self, dist: str) -> Path:
        (found,) = self.folder.glob(f"{dist.replace('-', '_')}-*.whl")
        return found


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH; .ci/run installs it (pip install uv)")
    out = tmp_path_factory.mktemp("dist")
    proc = run([uv, "build", "--all-packages", "--wheel", "--out-dir", out, "--quiet"], cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return Built(out)


@attrs.frozen
class Venv:
    """A fresh venv; ``btkit(...)``/``pip(...)``/``python(...)`` run its commands in ``work``."""

    root: Path
    work: Path
    built: Built

    @property
    def bin(self) -> Path:
        return self.root / ("Scripts" if os.name == "nt" else "bin")

    def pip(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        proc = run([self.bin / "python", "-m", "pip", *args], cwd=self.work, timeout=600)
        assert proc.returncode == 0, f"pip {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def install(self, *targets: str | Path) -> None:
        """Install wheel files / folders; dependencies from the built wheels first, then the index."""
        self.pip("install", "--quiet", "--find-links", self.built.folder, *targets)

    def installed(self) -> set[str]:
        out = self.pip("list", "--format=freeze").stdout
        return {line.split("==")[0].lower() for line in out.splitlines() if "==" in line}

    def btkit(self, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return run([self.bin / "btkit", *args], cwd=cwd or self.work, **env)

    def python(self, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return run([self.bin / "python", *args], cwd=cwd or self.work)


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    root = tmp_path_factory.mktemp("venv")
    proc = run([sys.executable, "-m", "venv", root], cwd=root)
    assert proc.returncode == 0, proc.stderr
    work = tmp_path_factory.mktemp("work")
    yield Venv(root, work, built)


@pytest.fixture(scope="session")
def dist_packages() -> dict[str, tuple[Path, str]]:
    """Distribution name → (its folder in the workspace, its import package)."""
    return dict(PACKAGES)


@pytest.fixture(scope="session")
def clean_run() -> object:
    """``clean_run(cmd, cwd=...)``: a subprocess in a user's environment (see :func:`clean_env`)."""
    return run
