"""Issue 10, items 9 and 12: environment overrides go through the same typed, range-checked schema as
btkit.toml, and an option no component takes is refused before anything connects — one line, exit 2,
nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPLAY = ["paper", "--replay-from", "20240101", "--replay-to", "20240102"]


def btkit(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BTKIT")}
    return subprocess.run(
        [sys.executable, "-m", "btkit.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **(env or {})},
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("btkit: error:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("BTKIT__BROKER__TIMEOUT_SECONDS", "abc", ("BTKIT__BROKER__TIMEOUT_SECONDS", "'abc'")),
        ("BTKIT__BROKER__TIMEOUT_SECONDS", "nan", ("finite",)),
        ("BTKIT__BROKER__TIMEOUT_SECONDS", "0", ("> 0",)),
        ("BTKIT__BROKER__TIMEOUT_SECONDS", "-1", ("> 0",)),
        ("BTKIT__EXCHANGE__OFFLINE", "maybe", ("true or false",)),
        ("BTKIT__EXCHANGE__GAPS", "maybe", ("reject, fill",)),
        ("BTKIT__WALLET__BALANCE", "1e308x", ("BTKIT__WALLET__BALANCE",)),
    ],
)
def test_a_bad_environment_value_is_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str, words: tuple[str, ...]
) -> None:
    result = btkit([*REPLAY, "--dump-dir", "d"], tmp_path, {variable: value})
    refused(result, *words)
    assert not (tmp_path / "d").exists(), "a refused run wrote state"


def test_offline_false_from_the_environment_is_false(tmp_path: Path) -> None:
    """`false` used to be read as a true string: the run went to the (empty) offline store and failed."""
    result = btkit(["backtest", "--dump-dir", "d"], tmp_path, {"BTKIT__EXCHANGE__OFFLINE": "false"})
    assert result.returncode == 0, result.stderr
    on = btkit(["backtest", "--dump-dir", "d2"], tmp_path, {"BTKIT__EXCHANGE__OFFLINE": "true"})
    assert on.returncode != 0 and "btkit data download" in on.stderr, "offline=true must read the store"


def test_the_same_type_rules_hold_for_the_toml_file(tmp_path: Path) -> None:
    (tmp_path / "btkit.toml").write_text('[exchange]\noffline = "maybe"\n')
    refused(btkit(["backtest", "--dump-dir", "d"], tmp_path), "btkit.toml", "offline")
    (tmp_path / "btkit.toml").write_text("[broker]\ntimeout_seconds = inf\n")
    refused(btkit([*REPLAY, "--dump-dir", "d"], tmp_path), "timeout_seconds")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('[persistence]\nroots = "x"\n', ("roots", "did you mean root", "root, path")),
        ('[persistence]\nbackend = "file"\nroot = "d"\nfsync = true\n', ("fsync",)),
        ("[broker]\nfoo = 1\n", ("foo", "[broker] name")),
    ],
)
def test_an_option_no_component_takes_is_refused_before_anything_runs(
    tmp_path: Path, toml: str, words: tuple[str, ...]
) -> None:
    (tmp_path / "btkit.toml").write_text(toml)
    result = btkit([*REPLAY, "--dump-dir", "d"], tmp_path)
    refused(result, *words)
    assert "Traceback" not in result.stderr and "TypeError" not in result.stderr
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").rglob("*.json"))
