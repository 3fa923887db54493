"""Deterministic crash points: the crash child kills itself just before its k-th state document write
(mid-batch included) or inside its j-th broker call, is restarted on the same dump directory, and
runs to the end. The final persisted history and state must be exactly those of a run that was never
interrupted (30-live.md §5: "exactly as if the process had not restarted") — trades compared field by
field, ids aside (the child's signal ids are random).

``BTKIT_CRASH_POINTS=all`` tries every write instead of a sample.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import attrs
import pytest
from live_helpers import ForkServer, check_invariants, load_snapshot, read_jsonl

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
MINUTES = 90
ALL_POINTS = os.environ.get("BTKIT_CRASH_POINTS") == "all"


@pytest.fixture(scope="module")
def server() -> Any:
    srv = ForkServer()
    yield srv
    srv.close()


def run(server: ForkServer, base: Path, **options: Any) -> int:
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    pid = server.start(
        dump_dir=str(base / "dump"), log_dir=str(logs), minutes=MINUTES, symbols=SYMBOLS, **options
    )
    code = server.wait(pid, 120)
    assert code is not None, "the crash child did not end"
    return code


def outcome(base: Path) -> dict[str, Any]:
    """Per symbol: the closed trades and the final position/resting entry, without the random ids."""
    snap = load_snapshot(base / "dump", SYMBOLS)
    check_invariants(snap, base / "logs")

    def plain(obj: Any) -> Any:
        if obj is None:
            return None
        d = attrs.asdict(obj)
        (d.get("signal") or d).pop("id", None)
        return d

    return {
        s: {
            "closed": [plain(c) for c in snap.histories[s]],
            "pending": plain(snap.states[s].pending),
            "scheduled": plain(snap.states[s].scheduled),
        }
        for s in SYMBOLS
    }


@pytest.fixture(scope="module")
def reference(
    server: ForkServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], int, int]:
    base = tmp_path_factory.mktemp("reference")
    assert run(server, base, kill_before_write=10**9) == 0, server.stderr[-20:]
    writes = read_jsonl(base / "logs" / "writes.jsonl")[-1]["writes"]
    calls = len(read_jsonl(base / "logs" / "broker.jsonl"))
    result = outcome(base)
    assert sum(len(v["closed"]) for v in result.values()) >= 10
    return result, writes, calls


def crash_and_resume(server: ForkServer, base: Path, **kill: int) -> dict[str, Any]:
    code = run(server, base, **kill)
    if code == 0:  # the kill point moved past the last write (see crash_child.kill_before_write)
        return outcome(base)
    assert code == -signal.SIGKILL, f"{kill}: the child ended with {code} instead of being killed"
    load_snapshot(base / "dump", SYMBOLS)  # valid right after the kill
    assert run(server, base) == 0, server.stderr[-20:]
    return outcome(base)


def sample(total: int, count: int) -> list[int]:
    if ALL_POINTS or total <= count:
        return list(range(1, total + 1))
    step = total / count
    return sorted({1 + int(i * step) for i in range(count)} | {2, 3, total})


def test_reference_run_is_reproducible(server: ForkServer, reference: Any, tmp_path: Path) -> None:
    expected, writes, _ = reference
    assert run(server, tmp_path, kill_before_write=10**9) == 0
    assert outcome(tmp_path) == expected
    assert read_jsonl(tmp_path / "logs" / "writes.jsonl")[-1]["writes"] == writes


def test_a_kill_before_any_state_write_changes_nothing_in_the_outcome(
    server: ForkServer, reference: Any, tmp_path: Path
) -> None:
    expected, writes, _ = reference
    for k in sample(writes, 16):
        got = crash_and_resume(server, tmp_path / f"w{k}", kill_before_write=k)
        assert got == expected, f"outcome differs after a kill before write {k} of {writes}"


def test_a_kill_inside_a_broker_call_changes_nothing_in_the_outcome(
    server: ForkServer, reference: Any, tmp_path: Path
) -> None:
    expected, _, calls = reference
    for j in sample(calls, 6):
        got = crash_and_resume(server, tmp_path / f"b{j}", kill_in_broker_call=j)
        assert got == expected, f"outcome differs after a kill inside broker call {j} of {calls}"
