"""Strategy parameters: declared with types and ranges, overridden per run (API, --param, btkit.toml),
reachable inside get_signal and the array function without globals, shown in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

import btkit
from btkit.errors import ConfigError
from btkit.research.trial import trades_of

from .conftest import btkit_cli

pytestmark = pytest.mark.usefixtures("clean")


def _frame() -> str:
    btkit.add_frame("p", "2024-01-01", "2024-01-10 23:59")
    return "p"


def test_get_signal_sees_the_values_of_its_own_run() -> None:
    seen: list[dict] = []

    def get_signal(symbol, when, price):
        seen.append(dict(btkit.get_params()))
        return None

    btkit.add_strategy(
        "probe",
        get_signal,
        interval="1h",
        params={"n": btkit.IntParam(3, 1, 9), "mode": btkit.CategoricalParam("a", ["a", "b"])},
    )
    frame = _frame()
    list(
        btkit.Backtest.run(
            "BTCUSDT", strategy="probe", exchange="sim", frame=frame, params={"n": 7, "mode": "b"}
        )
    )
    assert seen and all(s == {"n": 7, "mode": "b"} for s in seen)
    seen.clear()
    list(btkit.Backtest.run("BTCUSDT", strategy="probe", exchange="sim", frame=frame))  # nothing leaks over
    assert seen and all(s == {"n": 3, "mode": "a"} for s in seen)


def test_array_form_gets_the_parameters_and_equals_the_per_tick_form() -> None:
    frame = _frame()
    for params in ({}, {"fast": 7, "slow": 45}):
        tick = trades_of(
            btkit.Backtest.run("BTCUSDT", strategy="smacross", exchange="sim", frame=frame, params=params)
        )
        arr = trades_of(
            btkit.Backtest.run(
                "BTCUSDT", strategy="smacross-array", exchange="sim", frame=frame, params=params
            )
        )
        assert tick == arr and tick
    default = trades_of(btkit.Backtest.run("BTCUSDT", strategy="smacross-array", exchange="sim", frame=frame))
    assert default != arr  # the parameters really changed the decisions


def test_demo_declares_fast_and_slow() -> None:
    from btkit.plugins import collect_components, get_plugin_manager

    spec = collect_components(get_plugin_manager()).get("strategy", "smacross")
    assert spec.params["fast"].default == 10 and (spec.params["fast"].low, spec.params["fast"].high) == (
        5,
        50,
    )
    assert spec.params["slow"].default == 30


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"fats": 3}, "no parameter 'fats'"),
        ({"fast": 500}, "outside 5..50"),
        ({"fast": "x"}, "not a number"),
        ({"fast": 2.5}, "whole"),
    ],
)
def test_unknown_or_out_of_range_parameter_is_refused(given: dict, words: str) -> None:
    frame = _frame()
    with pytest.raises(ConfigError, match=words):
        list(btkit.Backtest.run("BTCUSDT", strategy="smacross", exchange="sim", frame=frame, params=given))


def test_cli_param_and_toml_reach_the_report(tmp_path: Path) -> None:
    (tmp_path / "btkit.toml").write_text("[strategy.params]\nslow = 40\n")
    out = btkit_cli("backtest", "--timerange", "20240101-20240108", "--param", "fast=12", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = next(line.split(": ", 1)[1] for line in out.stdout.splitlines() if line.startswith("report: "))
    text = (tmp_path / report).read_text() if not Path(report).is_absolute() else Path(report).read_text()
    section = text.split("## Parameters", 1)[1]
    assert "| fast | 12 |" in section and "| slow | 40 |" in section


@pytest.mark.parametrize("bad", ["fast=999", "speed=3"])
def test_cli_bad_param_is_one_line_exit_2(
    tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from btkit.cli import main

    code = main(["backtest", "--timerange", "20240101-20240102", "--param", bad, "--dump-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("btkit: error:") and bad.split("=")[0] in lines[0]
