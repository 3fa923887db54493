"""``btkit paper`` as a real process: the state-directory lock, SIGINT, and secrets in its output."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from live_helpers import raw_documents

from btkit.persist.file import FileBackend, load_document
from btkit.persist.state import BackendStore
from btkit.plugins import get_plugin_manager

HANG_GUARD_S = 120  # only against a hang: every run here ends in a few seconds
# a replay keeps its state apart, per range (issue 11): ``paper()`` below replays from 2024-02-01 10:00 on
REPLAY_STATE = Path("replay") / "20240201T1000-open"


def paper(dump: Path, *extra: str, start: str = "202402011000") -> list[str]:
    """``btkit paper`` on a replay from ``start`` (smacross opens its first position at 10:45)."""
    return [
        sys.executable,
        "-m",
        "btkit.cli",
        "paper",
        "--dump-dir",
        str(dump),
        "--replay-from",
        start,
        *extra,
    ]


class Running:
    """A ``btkit paper`` process whose stdout lines are collected as they come."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.err_event = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout or []:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _pump_err(self) -> None:
        for line in self.proc.stderr or []:
            with self.err_event:
                self.err.append(line)
                self.err_event.notify_all()

    def wait_for_err(self, text: str) -> None:
        with self.err_event:
            assert self.err_event.wait_for(lambda: any(text in line for line in self.err), HANG_GUARD_S)

    def wait_for(self, predicate: Any) -> str:
        while True:
            line = self.lines.get(timeout=HANG_GUARD_S)
            assert line is not None, f"btkit paper ended early: {self.out}\n{''.join(self.err)}"
            self.out.append(line)
            if predicate(line):
                return line

    def finish(self) -> int:
        code = self.proc.wait(HANG_GUARD_S)
        while (line := self.lines.get(timeout=HANG_GUARD_S)) is not None:
            self.out.append(line)
        return code


def wait_until_stopped(pid: int) -> None:
    """Block until every thread of ``pid`` is really stopped: ``kill(SIGSTOP)`` returns before it lands."""
    tasks = Path(f"/proc/{pid}/task")
    while True:
        states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()]
        if all(state in ("T", "t") for state in states):
            return
        threading.Event().wait(0.01)


def snapshot(dump: Path) -> dict[str, tuple[int, int, bytes | None]]:
    out = {}
    for p in [dump, *dump.rglob("*")]:
        st = p.lstat()
        out[str(p.relative_to(dump))] = (st.st_mtime_ns, st.st_mode, p.read_bytes() if p.is_file() else None)
    return out


def assert_state_valid(dump: Path) -> None:
    for path in raw_documents(dump):
        load_document(path.read_bytes())
    backend = FileBackend(dump)
    backend.open(exclusive=True)
    try:
        store = BackendStore(get_plugin_manager(), backend)
        import asyncio

        for key in backend.keys("strategy"):
            asyncio.run(store.load(key))  # type: ignore[arg-type]
    finally:
        backend.close()
    assert not (dump / "quarantine").exists()


def test_a_second_live_process_on_the_same_dump_dir_exits_3_and_touches_nothing(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    first = Running(paper(dump, "--speed", "600"), tmp_path)
    try:
        first.wait_for(lambda line: line.startswith("paper:"))
        while not (dump / REPLAY_STATE / "strategy" / "smacross" / "BTCUSDT.json").exists():
            threading.Event().wait(0.05)
        os.kill(first.proc.pid, signal.SIGSTOP)  # freeze the owner so the directory holds still
        try:
            wait_until_stopped(first.proc.pid)
            before = snapshot(dump)
            second = subprocess.run(
                paper(dump),  # the same replay, so the same state directory
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=HANG_GUARD_S,
            )
            after = snapshot(dump)
        finally:
            os.kill(first.proc.pid, signal.SIGCONT)
    finally:
        first.proc.kill()
        first.finish()
    assert second.returncode == 3, (second.stdout, second.stderr)
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "another btkit live process owns" in lines[0] and "--dump-dir" in lines[0]
    assert after == before  # no file written, created, removed, chmod-ed or even touched
    assert not (tmp_path / "dump" / "live").exists() or before.keys() == after.keys()


def test_sigint_stops_gracefully_the_open_position_runs_to_its_close_and_exit_0(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    run = Running(paper(dump, "--speed", "6000"), tmp_path)
    run.wait_for(lambda line: " opened @ " in line)
    run.proc.send_signal(signal.SIGINT)
    code = run.finish()
    err = "".join(run.err)
    assert code == 0, (run.out, err)
    assert "stopping gracefully" in err
    i = max(i for i, line in enumerate(run.out) if " opened @ " in line)
    after = run.out[i + 1 :]
    trades = [
        line for line in after if " closed @ " in line or " opened @ " in line or " scheduled @ " in line
    ]
    # the position that was open was monitored to its TP/SL/expiry; nothing new opened after the stop
    # (an "opened" printed just before the signal arrived may still be in flight: at most one more)
    assert trades and " closed @ " in trades[-1]
    assert sum(" opened @ " in t for t in trades) <= 1
    assert any("report:" in line for line in after)
    assert_state_valid(dump / REPLAY_STATE)
    backend = FileBackend(dump / REPLAY_STATE)
    backend.open()
    try:
        assert backend.read("signal", ("smacross", "BTCUSDT")) == {"row": None, "schema_version": 1}
    finally:
        backend.close()


def test_a_second_sigint_exits_at_once_and_the_state_stays_valid(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    run = Running(paper(dump, "--speed", "1200"), tmp_path)
    run.wait_for(lambda line: " opened @ " in line)
    run.proc.send_signal(signal.SIGINT)
    run.wait_for_err("stopping gracefully")  # two signals sent at once could merge into one
    run.proc.send_signal(signal.SIGINT)
    code = run.finish()
    assert code == 130, (run.out, "".join(run.err))
    assert "second interrupt" in "".join(run.err)
    assert_state_valid(dump / REPLAY_STATE)
    backend = FileBackend(dump / REPLAY_STATE)
    backend.open()
    try:  # the open position is still on disk: a restart resumes it
        row = backend.read("signal", ("smacross", "BTCUSDT"))
        assert row is not None and row["row"] is not None
    finally:
        backend.close()


# ---------------------------------------------------------------- secrets
KEY, SECRET = "AKtestKEY5f3a91c7", "SEtestSECRETb62e04d8"

LEAKY = """
import logging, os, sys
import btkit
from btkit.cli import main

log = logging.getLogger("user.strategy")
calls = {"n": 0}

def get_signal(symbol, when, price):
    calls["n"] += 1
    key, secret = os.environ["BINANCE_API_KEY"], os.environ["BINANCE_API_SECRET"]
    log.debug("signing with %s / %s", key, secret)
    log.warning("header X-MBX-APIKEY: " + key)
    if calls["n"] == EXC_INFO_AT:
        log.error("request failed", exc_info=RuntimeError("bad signature for " + secret))
    if calls["n"] == RAISE_AT:
        raise RuntimeError("exchange rejected key " + key)
    return None

btkit.add_strategy("leaky", get_signal)
sys.exit(main(sys.argv[1:]))
"""


def run_leaky(
    tmp_path: Path, *, raise_at: int = -1, exc_info_at: int = -1
) -> tuple[subprocess.CompletedProcess[str], Path]:
    script = tmp_path / "leaky.py"
    script.write_text(LEAKY.replace("RAISE_AT", str(raise_at)).replace("EXC_INFO_AT", str(exc_info_at)))
    dump = tmp_path / "dump"
    env = {**os.environ, "BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET}
    # `btkit paper --debug` (the global `btkit --debug paper` is overridden by the verb's own default)
    cmd = [
        sys.executable,
        str(script),
        "paper",
        "--debug",
        "--strategy",
        "leaky",
        "--dump-dir",
        str(dump),
        "--replay-from",
        "20240201",
        "--replay-to",
        "202402010200",
    ]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    return done, dump


def leaks(done: subprocess.CompletedProcess[str], dump: Path) -> list[str]:
    found = []
    for name, text in (("stdout", done.stdout), ("stderr", done.stderr)):
        found += [f"{name}: {line}" for line in text.splitlines() if KEY in line or SECRET in line]
    for path in dump.rglob("*"):
        if path.is_file() and (KEY.encode() in path.read_bytes() or SECRET.encode() in path.read_bytes()):
            found.append(str(path))
    return found


def test_api_keys_from_the_environment_never_appear_in_debug_logs_dumps_or_reports(tmp_path: Path) -> None:
    done, dump = run_leaky(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "DEBUG" in done.stderr and "signing with" in done.stderr  # the debug log did run…
    assert "AK***" in done.stderr and "SE***" in done.stderr  # …with the values masked
    assert list((dump / "live").glob("*.md")), "no live report written"
    assert leaks(done, dump) == []


def test_an_error_message_carrying_an_api_key_is_masked_on_stderr(tmp_path: Path) -> None:
    done, dump = run_leaky(tmp_path, raise_at=3)
    assert "exchange rejected key" in done.stderr
    assert leaks(done, dump) == []


def test_an_exception_logged_with_a_secret_in_it_is_masked(tmp_path: Path) -> None:
    done, dump = run_leaky(tmp_path, exc_info_at=3)
    assert "bad signature for" in done.stderr
    assert leaks(done, dump) == []


def run_paper(tmp_path: Path, *extra: str, start: str = "202402011000") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        paper(tmp_path / "dump", *extra, start=start),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


def test_a_clean_paper_replay_of_two_symbols_prints_no_warning(tmp_path: Path) -> None:
    """The sync demo strategy on the sync sim exchange: candles reach get_signal without a spurious
    'get_candles failed … retry' (a fetch driven inline must not be mistaken for an exchange fault)."""
    done = run_paper(tmp_path, "--replay-to", "20240202", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT")
    assert done.returncode == 0, done.stderr
    assert " opened @ " in done.stdout
    assert done.stderr == ""


RAISES_ONCE = """
import btkit

calls = []


def get_signal(symbol, when, current_price):
    calls.append(when)
    if len(calls) == 2:
        raise RuntimeError("strategy blew up once")
    return None


btkit.add_strategy("raises-once", get_signal, interval="15m")
"""


def test_an_error_event_is_printed_once_and_the_run_goes_on(tmp_path: Path) -> None:
    (tmp_path / "raises_once.py").write_text(RAISES_ONCE, encoding="utf-8")
    done = run_paper(
        tmp_path,
        "--replay-to",
        "202402011200",
        "--strategy-file",
        "raises_once.py",
        "--strategy",
        "raises-once",
    )
    assert done.returncode == 0, done.stderr
    # printed once by the CLI's listen_error listener; the engine's own log line of it is filtered out
    assert done.stderr.count("strategy blew up once") == 1, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
