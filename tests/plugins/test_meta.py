"""Datasette-style meta-tests: every hook has a reference page titled with its full signature, and a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from btkit import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("btkit_") and callable(getattr(hookspecs, n)))
TEST_DIRS = [ROOT / "tests", ROOT / "core" / "tests", ROOT / "plugins", ROOT / "contrib"]


def _signature(name: str) -> str:
    return f"{name}{inspect.signature(getattr(hookspecs, name))}".replace("'", "")


def test_hookspecs_module_lists_the_spec_hooks() -> None:
    expected = {
        "btkit_exchanges",
        "btkit_strategies",
        "btkit_brokers",
        "btkit_persistence_backends",
        "btkit_risks",
        "btkit_frames",
        "btkit_get_signal",
        "btkit_risk_check",
        "btkit_persist_read",
        "btkit_persist_write",
        "btkit_persist_delete",
        "btkit_broker_commit",
        "btkit_signal_event",
        "btkit_commit_failed",
    }
    assert expected <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_reference_page_titled_with_its_signature(hook: str) -> None:
    page = ROOT / "docs" / "hooks" / f"{hook}.md"
    assert page.is_file(), f"write docs/hooks/{hook}.md"
    title = page.read_text(encoding="utf-8").splitlines()[0]
    assert title.startswith("# ") and _signature(hook) in title.replace("'", ""), title


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_exercised_by_a_test(hook: str) -> None:
    pattern = re.compile(rf"\b{hook}\b")
    for folder in TEST_DIRS:
        for path in folder.rglob("test_*.py"):
            if path.name == "test_meta.py":
                continue
            if pattern.search(path.read_text(encoding="utf-8", errors="replace")):
                return
    pytest.fail(f"no test names {hook}; add one that installs a plugin implementing it")


def test_every_hookspec_has_a_docstring_saying_when_it_is_called() -> None:
    for hook in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
        assert "Called" in doc, hook
        if getattr(hookspecs, hook).btkit_spec.get("firstresult"):
            assert "Stops at the first non-None result" in doc, hook
