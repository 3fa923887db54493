"""Crash loop: a live paper replay (file persistence, sim exchange) SIGKILLed at random instants and
restarted on the same dump directory, over and over.

After every kill: every state document parses and validates; every open/close the child acknowledged
is in the persisted state; the broker never holds two positions of a symbol; every client order id
belongs to one signal; a restart resumes the open position (never opens a second one). When a replay
runs to its end, each trade's close is re-derived from the candles (a resumed run decides exactly
as an uninterrupted one), and a new epoch starts in a fresh directory.

``BTKIT_CRASH_ROUNDS`` (default 200) sets the number of kills; ``BTKIT_CRASH_SEED`` the random seed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from live_helpers import CHILD, ForkServer, check_invariants, crash_child, expected_close, load_snapshot

ROUNDS = int(os.environ.get("BTKIT_CRASH_ROUNDS", "200"))
SEED = int(os.environ.get("BTKIT_CRASH_SEED", str(random.randrange(1 << 30))))
MINUTES = 240  # one epoch: 4 replayed hours × 3 symbols ≈ 1 s of uninterrupted work
SYMBOLS = crash_child.SYMBOLS


def crash_loop(
    base: Path,
    rounds: int,
    seed: int,
    *,
    max_delay: float = 0.3,
    epoch_kills: int = 50,
    persistence: str = "file",
) -> Counter[str]:
    """``rounds`` kills at random instants; after every ``epoch_kills`` kills (and at the end) the child
    runs its replay to the end, the epoch's trades are checked against the candles, and a new epoch
    starts in a fresh directory."""
    rng = random.Random(seed)
    totals: Counter[str] = Counter()
    server = ForkServer()
    epoch = 0

    def fresh() -> tuple[Path, Path]:
        dump, logs = base / f"e{epoch}" / "dump", base / f"e{epoch}" / "logs"
        logs.mkdir(parents=True)
        return dump, logs

    dump, logs = fresh()
    try:
        kills = in_epoch = 0
        while kills < rounds or in_epoch:
            pid = server.start(
                dump_dir=str(dump), log_dir=str(logs), minutes=MINUTES, persistence=persistence
            )
            to_the_end = in_epoch >= epoch_kills or kills >= rounds
            code = server.wait(pid, 120 if to_the_end else rng.uniform(0.0, max_delay))
            finished = code is not None
            if not finished:
                assert not to_the_end, f"seed {seed}: the replay did not end within 120 s"
                with contextlib.suppress(ProcessLookupError):  # it ended and was reaped just before
                    os.kill(pid, signal.SIGKILL)
                code = server.wait(pid, 30)
                finished = code == 0  # it ended on its own just before the kill
            if not finished:
                assert code == -signal.SIGKILL, f"seed {seed}: child ended with {code} instead of the kill"
                kills += 1
                in_epoch += 1
            else:
                assert code == 0, f"seed {seed}: the replay failed ({code}): {server.stderr[-20:]}"
            try:
                snap = load_snapshot(dump, SYMBOLS, persistence)
                counts = check_invariants(snap, logs)
            except AssertionError as exc:
                raise AssertionError(f"seed {seed}, epoch {epoch}, kill {kills}: {exc}") from None
            totals["temp_files_left"] += snap.temp_files
            if finished:
                trades = [c for h in snap.histories.values() for c in h]
                assert len(trades) > 50, f"seed {seed}: only {len(trades)} trades in an epoch"
                for c in trades:
                    got = (c.close_reason, c.close_timestamp, c.current_price)
                    assert got == expected_close(c), f"seed {seed}: {c.symbol} {c.signal.id} closed wrongly"
                totals.update({k: v for k, v in counts.items() if k.startswith(("closed", "broker"))})
                totals["epochs_completed"] += 1
                epoch += 1
                in_epoch = 0
                dump, logs = fresh()
        totals["kills"] = kills
    finally:
        server.close()
    assert not [line for line in server.stderr if "Traceback" in line], server.stderr[-40:]
    return totals


@pytest.mark.slow
def test_sigkill_at_random_instants_loses_nothing_and_never_double_opens(tmp_path: Path) -> None:
    started = time.monotonic()
    totals = crash_loop(tmp_path, ROUNDS, SEED)
    print(f"crash loop: seed {SEED}, {time.monotonic() - started:.1f} s, {dict(totals)}")
    assert totals["kills"] >= ROUNDS
    assert totals["epochs_completed"] >= 1, "no replay ever ran to its end between kills"


@pytest.mark.slow
def test_the_same_crash_loop_over_the_sqlite_backend(tmp_path: Path) -> None:
    """Issue 6: SIGKILL of the bot process with btkit-sqlite — no corruption (integrity_check ok, nothing
    quarantined), no lost acknowledged change, no double open."""
    totals = crash_loop(tmp_path, max(60, ROUNDS // 3), SEED, persistence="sqlite", epoch_kills=30)
    print(f"sqlite crash loop: seed {SEED}, {dict(totals)}")
    assert totals["kills"] >= max(60, ROUNDS // 3)
    assert totals["epochs_completed"] >= 1


def test_the_child_as_a_plain_command_resumes_after_sigkill(tmp_path: Path) -> None:
    """The brief's shape: ``python crash_child.py --dump-dir D …`` killed and restarted a few times."""
    dump, logs = tmp_path / "dump", tmp_path / "logs"
    logs.mkdir()
    cmd = [sys.executable, str(CHILD), "--dump-dir", str(dump), "--log-dir", str(logs), "--minutes", "180"]
    for delay in (0.8, 1.0, 1.2):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_invariants(load_snapshot(dump, SYMBOLS), logs)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    snap = load_snapshot(dump, SYMBOLS)
    check_invariants(snap, logs)
    trades = [c for h in snap.histories.values() for c in h]
    assert trades
    for c in trades:
        assert (c.close_reason, c.close_timestamp, c.current_price) == expected_close(c)
