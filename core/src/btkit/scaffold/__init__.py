"""``btkit new``: scaffold a third-party btkit package from the templates beside this module.

A scaffold is a complete distribution that installs and passes its own tests at once: ``pyproject.toml``
(hatchling, a ``btkit`` entry point, ``btkit>=X.Y,<X.Y+1``, a ``test`` extra), ``src/<module>/__init__.py``
(the component, ``__version__``, ``btkit_api``), ``tests/`` using the ``btkit.testing`` fixtures, a README.
Templates are package data (``templates/<kind>/*.tmpl``); ``{{placeholder}}`` marks what is filled in.
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path

import attrs

from btkit.errors import BtkitError

KINDS = ("strategy", "exchange", "broker", "persistence", "risk")
_NAME = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
MAX_NAME = 40


class ScaffoldError(BtkitError):
    """A name or target directory that cannot be scaffolded."""


@attrs.frozen
class Scaffold:
    """What one ``btkit new`` fills into the templates."""

    kind: str
    name: str  # the component name users select (``--strategy demo-x``)
    dist: str  # the distribution name (``pip install …``)
    module: str  # the import name

    @property
    def klass(self) -> str:
        return "".join(part.capitalize() for part in self.name.split("-"))

    def values(self) -> dict[str, str]:
        from btkit import __version__
        from btkit.plugins import PLUGIN_API_VERSION

        major, minor = (int(x) for x in __version__.split(".")[:2])
        btkit_range = f">={major}.{minor},<{major}.{minor + 1}" if major == 0 else f">={major}.{minor},<{major + 1}"
        api = int(PLUGIN_API_VERSION)
        return {
            "kind": self.kind,
            "name": self.name,
            "dist": self.dist,
            "module": self.module,
            "class": self.klass,
            "btkit_range": btkit_range,
            "api_range": f">={api},<{api + 1}",
            "btkit_version": __version__,
        }


def plan(kind: str, name: str) -> Scaffold:
    """Validate ``kind`` and ``name`` and derive the distribution and module names."""
    if kind not in KINDS:
        raise ScaffoldError(f"unknown plugin kind {kind!r}; choose one of {', '.join(KINDS)}")
    if not _NAME.match(name) or len(name) > MAX_NAME:
        raise ScaffoldError(
            f"name {name!r} must be lowercase letters, digits and single hyphens, start with a letter and be "
            f"at most {MAX_NAME} characters (e.g. my-{kind})"
        )
    base = name.removeprefix("btkit-")
    if not base:
        raise ScaffoldError(f"name {name!r} needs more than the btkit- prefix")
    dist = f"btkit-strategy-{base}" if kind == "strategy" else f"btkit-{base}"
    module = dist.replace("-", "_")
    if keyword.iskeyword(module) or not module.isidentifier():  # pragma: no cover - the regex prevents it
        raise ScaffoldError(f"name {name!r} does not give a Python module name")
    return Scaffold(kind=kind, name=base, dist=dist, module=module)


def render(text: str, values: dict[str, str]) -> str:
    out = text
    for key, value in values.items():
        out = out.replace("{{" + key + "}}", value)
    left = re.search(r"\{\{[a-z_]+\}\}", out)
    if left:  # a template typo must never reach a user's package
        raise ScaffoldError(f"template placeholder {left.group(0)} has no value (a btkit bug; please report it)")
    return out


def _templates(kind: str) -> dict[str, str]:
    """Relative output path → template text: the common files, then the kind's own."""
    root = resources.files("btkit.scaffold") / "templates"
    files: dict[str, str] = {}
    for folder in ("common", kind):
        for entry in sorted((root / folder).iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".tmpl"):
                files[entry.name.removesuffix(".tmpl")] = entry.read_text(encoding="utf-8")
    return files


# template file name → path inside the package ({module} filled in)
_LAYOUT = {
    "pyproject.toml": "pyproject.toml",
    "README.md": "README.md",
    "gitignore": ".gitignore",
    "conftest.py": "tests/conftest.py",
    "module.py": "src/{module}/__init__.py",
    "py.typed": "src/{module}/py.typed",
    "test_module.py": "tests/test_{module}.py",
}


def create(kind: str, name: str, parent: Path) -> tuple[Scaffold, Path, list[Path]]:
    """Write the package into ``parent/<name>``; refuse to touch an existing path."""
    sc = plan(kind, name)
    target = parent / name
    if target.exists() or target.is_symlink():
        raise ScaffoldError(f"{target} already exists; choose another name or remove it first")
    if not parent.is_dir():
        raise ScaffoldError(f"{parent} is not a directory; create it first or pass another --dir")
    values = sc.values()
    rendered: list[tuple[Path, str]] = []
    for template, text in _templates(kind).items():
        relative = _LAYOUT.get(template)
        if relative is None:  # pragma: no cover - a template without a place is a btkit bug
            raise ScaffoldError(f"template {template} has no place in the package (a btkit bug)")
        rendered.append((target / relative.format(module=sc.module), render(text, values)))
    written: list[Path] = []
    for path, text in rendered:  # everything rendered first: a template error leaves nothing behind
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return sc, target, written
