"""Issue 11: every ordinary user mistake ends with one clear line on stderr and the documented exit code,
and nothing is written where nothing should be. Each test runs the real ``btkit`` command in a
subprocess on real files (the sim exchange: offline and deterministic)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAY = ["--timerange", "20240101-20240102"]
ISO_MINUTE = r"\d{4}-\d\d-\d\dT\d\d:\d\dZ"

BAD_SIGNAL = """
import btkit

def get_signal(symbol, when, current_price):  # take-profit below the entry of a long: always invalid
    return btkit.Signal(position="long", price_take_profit=current_price * 0.99,
                        price_stop_loss=current_price * 0.98, minute_estimated_time=60)

btkit.add_strategy("bad", get_signal, interval="15m")
"""

SOMETIMES = """
import btkit

def get_signal(symbol, when, current_price):
    if when.hour == 3:
        raise RuntimeError(f"no data at {when:%H:%M}")
    return None

btkit.add_strategy("sometimes", get_signal, interval="15m")
"""

ONE_WITH_FRAME = """
import btkit

def get_signal(symbol, when, current_price):
    return None

btkit.add_strategy("quiet", get_signal, interval="15m")
btkit.add_frame("two-days", "2024-03-01", "2024-03-02 23:59")
"""


def btkit(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "btkit.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **(env or {})},
    )


def one_error_line(out: subprocess.CompletedProcess[str], code: int, says: str) -> str:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("btkit: error: "), out.stderr
    assert says in lines[0], lines[0]
    return lines[0]


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


# ---------------------------------------------------------------- 1. replay state kept apart
def test_a_replay_keeps_its_state_apart_and_refuses_to_resume_a_finished_range(tmp_path: Path) -> None:
    first = btkit(tmp_path, "paper", "--replay-from", "20240101", "--replay-to", "20240102")
    assert first.returncode == 0, first.stderr
    assert "dump/replay/20240101-20240102" in first.stdout.splitlines()[0]  # shown at start
    assert re.search(rf"^{ISO_MINUTE} BTCUSDT (opened|closed) @ ", first.stdout, re.M), first.stdout
    other = btkit(tmp_path, "paper", "--replay-from", "20240601", "--replay-to", "20240602")
    assert other.returncode == 0, other.stderr
    opened = re.findall(rf"^({ISO_MINUTE}) BTCUSDT opened", other.stdout, re.M)
    assert opened and all(t.startswith("2024-06-0") for t in opened), other.stdout  # June, never January
    state = tmp_path / "dump"
    assert {p.name for p in (state / "replay").iterdir()} == {"20240101-20240102", "20240601-20240602"}
    assert not (state / "history").exists()  # no wall-clock state was written by the rehearsals

    again = btkit(tmp_path, "paper", "--replay-from", "20240101", "--replay-to", "20240102")
    one_error_line(again, 2, "already ran to its end")
    assert "--fresh" in again.stderr and re.search(ISO_MINUTE, again.stderr)
    fresh = btkit(tmp_path, "paper", "--replay-from", "20240101", "--replay-to", "20240102", "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.count(" opened @ ") == first.stdout.count(" opened @ ")  # the same replay again

    # wall-clock statistics never include rehearsal trades
    report = btkit(tmp_path, "report")
    one_error_line(report, 1, "no live history")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--replay-from", "20240105", "--replay-to", "20240103"], "is not after --replay-from"),
        (["--replay-from", "20990101"], "is after now"),
        (["--replay-from", "20240101", "--replay-to", "20990101"], "is after now"),
        (["--replay-to", "20240101"], "--replay-to needs --replay-from"),
    ],
    ids=["reversed", "future-start", "future-end", "end-without-start"],
)
def test_an_impossible_replay_range_is_a_usage_error_before_anything_runs(
    tmp_path: Path, args: list[str], says: str
) -> None:
    out = btkit(tmp_path, "paper", *args)
    one_error_line(out, 2, says)
    assert out.stdout == "" and not (tmp_path / "dump").exists()


# ---------------------------------------------------------------- 2. --strategy-file without --strategy
def test_a_strategy_file_with_one_strategy_runs_it_and_its_frame(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(ONE_WITH_FRAME, encoding="utf-8")
    out = btkit(tmp_path, "backtest", "--strategy-file", "mine.py")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("backtest quiet on sim BTCUSDT 2024-03-01 → 2024-03-03"), out.stdout
    names = [p.name for p in (tmp_path / "dump" / "backtest").glob("BTCUSDT_*.md")]
    assert len(names) == 1 and names[0].startswith("BTCUSDT_quiet_sim_20240301-20240303"), names


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (ONE_WITH_FRAME + 'btkit.add_strategy("loud", get_signal)\n', "several strategies (quiet, loud)"),
        ("import btkit\n", "registers no strategy"),
    ],
    ids=["several", "none"],
)
def test_a_strategy_file_with_several_or_no_strategies_is_a_usage_error(
    tmp_path: Path, body: str, says: str
) -> None:
    (tmp_path / "mine.py").write_text(body, encoding="utf-8")
    out = btkit(tmp_path, "backtest", "--strategy-file", "mine.py")
    line = one_error_line(out, 2, says)
    assert "--strategy" in line and out.stdout == "" and not (tmp_path / "dump").exists()


# ---------------------------------------------------------------- 3. broken strategies fail
def test_a_strategy_whose_every_signal_is_invalid_fails_with_a_collapsed_summary(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(BAD_SIGNAL, encoding="utf-8")
    out = btkit(tmp_path, "backtest", "--strategy-file", "bad.py", *DAY)
    assert out.returncode == 1, out.stderr
    progress = re.compile(r"BTCUSDT: \d+%$|progress BTCUSDT \d+% eta ")  # the plain progress lines
    lines = [line for line in out.stderr.splitlines() if not progress.match(line)]
    full = [line for line in lines if line.startswith("error: strategy bad on BTCUSDT")]
    assert len(full) == 3 and all("take-profit" in line for line in full), lines
    calls = 96  # one per 15-minute bucket of the day
    assert f"strategy errors: {calls} (1 distinct)" in lines, lines
    assert lines[-1].startswith(f"btkit: error: no signal could be evaluated: all {calls} get_signal")
    assert len(lines) <= 8, lines  # not one line per call
    assert not (tmp_path / "dump" / "backtest").exists() or not list((tmp_path / "dump").rglob("*.md"))


def test_strict_and_debug(tmp_path: Path) -> None:
    (tmp_path / "some.py").write_text(SOMETIMES, encoding="utf-8")
    lenient = btkit(tmp_path, "backtest", "--strategy-file", "some.py", *DAY)
    assert lenient.returncode == 0, lenient.stderr  # most calls were evaluated: a summary, not a failure
    assert "strategy errors: 4 (1 distinct)" in lenient.stderr, lenient.stderr  # numbers aside: one kind
    assert "4 × get_signal of sometimes on BTCUSDT: RuntimeError: no data at 03:00" in lenient.stderr
    assert list((tmp_path / "dump" / "backtest").glob("*.md"))
    strict = btkit(tmp_path, "backtest", "--strategy-file", "some.py", *DAY, "--strict", "--dump-dir", "s")
    assert strict.returncode == 1
    last = strict.stderr.strip().splitlines()[-1]
    assert last.startswith("btkit: error: --strict: the strategy failed (get_signal of sometimes on BTCUSDT")
    assert not (tmp_path / "s").exists()
    debug = btkit(tmp_path, "--debug", "backtest", "--strategy-file", "some.py", *DAY, "--dump-dir", "d")
    assert "Traceback" in debug.stderr and "RuntimeError: no data at 03:00" in debug.stderr


# ---------------------------------------------------------------- 4. impossible time ranges
def test_a_future_timerange_is_a_usage_error_and_writes_no_report(tmp_path: Path) -> None:
    out = btkit(tmp_path, "backtest", "--timerange", "20990101-20990201")
    one_error_line(out, 2, "after now")
    assert out.stdout == "" and not (tmp_path / "dump").exists()


HOLDER = """
import btkit

def get_signal(symbol, when, current_price):  # a long that neither TP nor SL reaches, with no lifetime
    return btkit.Signal(position="long", price_take_profit=current_price * 1.19,
                        price_stop_loss=current_price * 0.81, minute_estimated_time=None)

btkit.add_strategy("holder", get_signal, interval="15m")
"""


@pytest.mark.parametrize("strategy", ["smacross-array", "holder"])
def test_a_timerange_spanning_now_says_once_where_it_stops(tmp_path: Path, strategy: str) -> None:
    """`holder` is still open when the data ends, whatever the time of day: the run closes it there."""
    (tmp_path / "holder.py").write_text(HOLDER, encoding="utf-8")
    today = time.strftime("%Y%m%d", time.gmtime(time.time() - 6 * 3600))
    chosen = ["--strategy-file", "holder.py"] if strategy == "holder" else ["--strategy", strategy]
    out = btkit(tmp_path, "backtest", "--timerange", f"{today}-20990101", *chosen, "--export", "json")
    assert out.returncode == 0, out.stderr
    said = [line for line in out.stdout.splitlines() if "ends after now" in line]
    assert len(said) == 1 and re.search(ISO_MINUTE, said[0]), out.stdout
    if strategy == "holder":
        (trades,) = (tmp_path / "dump").rglob("*.json")
        closed = json.loads(trades.read_text(encoding="utf-8"))
        assert closed and closed[-1]["close_reason"] == "time_expired", closed


# ---------------------------------------------------------------- 5. a symbol typo on sim
@pytest.mark.parametrize("symbol", ["btcusdt", "BTC/USDT", "BTC USDT", "BTCUSDTT"])
def test_a_symbol_the_sim_does_not_offer_is_refused_with_a_suggestion(tmp_path: Path, symbol: str) -> None:
    out = btkit(tmp_path, "backtest", "--symbol", symbol, *DAY)
    one_error_line(out, 2, f"sim has no symbol {symbol!r}; did you mean BTCUSDT?")
    assert out.stdout == "" and not (tmp_path / "dump").exists()


# ---------------------------------------------------------------- 6. one line, exit 2 for bad input
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = btkit(tmp_path, "backtest", "--symbol", "")
    one_error_line(out, 2, "--symbol '' is empty")
    assert out.stdout == ""  # no run header before the error
    out = btkit(tmp_path, "data", "import", "missing.json", "--exchange", "sim", "--symbol", "BTCUSDT")
    one_error_line(out, 2, "cannot read candle file missing.json")
    (tmp_path / "broken.json").write_text("[[1704067200000, 1, 2", encoding="utf-8")
    out = btkit(tmp_path, "data", "import", "broken.json", "--exchange", "x", "--symbol", "BTCUSDT")
    one_error_line(out, 2, "is not valid JSON")
    assert not (tmp_path / "data").exists() or not files_under(tmp_path / "data")
    (tmp_path / "btkit.toml").write_text('[persistence]\nroots = "state"\n', encoding="utf-8")
    out = btkit(tmp_path, "paper", "--replay-from", "20240101", "--replay-to", "20240102")
    one_error_line(out, 2, "persistence backend 'file' has no option 'roots'; did you mean root?")
    assert not (tmp_path / "dump").exists() and not (tmp_path / "state").exists()


def test_report_never_creates_the_folder_it_reads(tmp_path: Path) -> None:
    out = btkit(tmp_path, "report", "--dump-dir", "nowhere/at/all")
    one_error_line(out, 2, "--dump-dir nowhere/at/all does not exist")
    assert not (tmp_path / "nowhere").exists()


# ---------------------------------------------------------------- 7. hints that work when pasted
def test_hints_are_commands_that_work(tmp_path: Path) -> None:
    out = btkit(tmp_path, "backtest", "--exchange", "ccxt:binanse", *DAY)
    one_error_line(out, 2, "ccxt has no exchange id 'binanse'; did you mean ccxt:binance?")
    assert "pip install" not in out.stderr  # btkit-ccxt is installed: the id is what is wrong

    out = btkit(tmp_path, "backtest", "--offline", "--data-dir", "empty", *DAY)
    assert out.returncode != 0
    hint = re.search(r"run `(btkit data download [^`]+)`", out.stderr)
    assert hint, out.stderr
    argv = shlex.split(hint.group(1))[1:]
    from btkit.cli import build_parser

    parsed = build_parser().parse_args(argv)  # every required option is there (argparse would exit 2)
    first, last = parsed.timerange.split("-")  # the whole backtest window, its warm-up included
    assert first <= "20240101" and last >= "20240102" and parsed.symbol == ["BTCUSDT"]
    pasted = btkit(tmp_path, *argv, "--data-dir", "empty")  # the hint, pasted (sim serves it offline)
    assert pasted.returncode == 0, pasted.stderr
    assert re.search(rf"store now covers {ISO_MINUTE} → {ISO_MINUTE}", pasted.stdout), pasted.stdout
    again = btkit(tmp_path, "backtest", "--offline", "--data-dir", "empty", *DAY)
    assert again.returncode == 0, again.stderr  # the command it named made the backtest work

    out = btkit(tmp_path, "backtest", "--strategy", "dca", *DAY, env={"BTKIT_DISABLE_PLUGINS": "btkit-strategy-dca"})
    line = one_error_line(out, 2, "pip install ./contrib/btkit-strategy-dca")
    assert (ROOT / "contrib" / "btkit-strategy-dca" / "pyproject.toml").is_file(), line


# ---------------------------------------------------------------- 10. smaller ones
def test_export_accepts_several_formats(tmp_path: Path) -> None:
    out = btkit(tmp_path, "backtest", *DAY, "--export", "csv,json", "--export", "csv")
    assert out.returncode == 0, out.stderr
    report = next((tmp_path / "dump" / "backtest").glob("BTCUSDT_*.md"))
    assert report.with_suffix(".csv").is_file()
    assert isinstance(json.loads(report.with_suffix(".json").read_text(encoding="utf-8")), list)
    out = btkit(tmp_path, "backtest", *DAY, "--export", "xml", "--dump-dir", "x")
    one_error_line(out, 2, "--export 'xml'")
    assert not (tmp_path / "x").exists()


def test_persistence_copy_says_where_it_wrote(tmp_path: Path) -> None:
    done = btkit(tmp_path, "paper", "--replay-from", "20240101", "--replay-to", "20240102")
    assert done.returncode == 0, done.stderr
    src = tmp_path / "dump" / "replay" / "20240101-20240102"
    out = btkit(tmp_path, "persistence", "copy", "--from", "file", "--to", "file",
                "--from-option", f"root={src}", "--to-option", "root=copied")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert str(tmp_path / "copied") in out.stdout and str(src) in out.stdout
    assert files_under(tmp_path / "copied")


def test_a_graceful_stop_with_nothing_open_is_quick(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "btkit.cli", "paper", "--dump-dir", "wall"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("paper: smacross on sim BTCUSDT"), first
        time.sleep(1.0)  # the first tick runs
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopping gracefully" in err
    assert "nothing is open: stopping now" in err or "open position on BTCUSDT" in err, err
    if "nothing is open" in err:
        assert took < 5.0, took  # not the next minute boundary (18–23 s before)


def test_every_option_of_every_command_has_help() -> None:
    import argparse

    from btkit.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "btkit")
    assert missing == []
