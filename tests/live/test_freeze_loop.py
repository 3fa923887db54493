"""Crash-and-freeze loop over the lease-based backend (btkit-redis): a live paper replay is frozen
with SIGSTOP for longer than its lock lease, a second process takes the state over and runs the
replay to its end, then the first is resumed with SIGCONT.

After every round: the first process never writes again once it lost its lease (every write it
completed was sent before it was frozen) and exits with the state-locked code 3; every open/close any
process acknowledged is in the final state; the broker never held two positions of a symbol (broker
calls deduplicated by client order id, as an exchange does); every document validates, nothing was
quarantined. The file and SQLite locks are not leases (the OS holds them for a frozen process too): the
same freeze against them makes the second process exit 3 at once, as
``test_cli_live.py::test_a_second_live_process_on_the_same_dump_dir_exits_3_and_touches_nothing`` shows.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from live_helpers import ForkServer, check_invariants, crash_child, load_snapshot, read_jsonl

from btkit_redis.testing import REDIS_SERVER, RedisServer

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not on PATH")

ROUNDS = int(os.environ.get("BTKIT_FREEZE_ROUNDS", "3"))
SEED = int(os.environ.get("BTKIT_CRASH_SEED", str(random.randrange(1 << 30))))
LOCK_TTL = 0.6
MINUTES = 360


def wait_until_stopped(pid: int) -> None:
    """``kill(SIGSTOP)`` returns before every thread is stopped: wait until they are."""
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            states = [(t / "stat").read_text().rsplit(")", 1)[1].split()[0] for t in tasks.iterdir()]
        except FileNotFoundError:  # a thread ended meanwhile
            continue
        if all(state in ("T", "t") for state in states):
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not stop")


def dedup_by_client_order_id(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What an exchange executes: the first call of each client order id (a repeat is refused)."""
    seen: set[str] = set()
    out = []
    for call in calls:
        if call["client_order_id"] not in seen:
            seen.add(call["client_order_id"])
            out.append(call)
    return out


def one_round(server: ForkServer, redis_url: str, base: Path, rng: random.Random) -> dict[str, int]:
    bot = f"freeze-{uuid.uuid4().hex[:8]}"
    logs = base / bot
    logs.mkdir(parents=True)
    options = dict(
        dump_dir=str(logs / "unused"),
        log_dir=str(logs),
        minutes=MINUTES,
        persistence="redis",
        redis_url=redis_url,
        bot=bot,
        lock_ttl=LOCK_TTL,
    )
    first = server.start(**options)
    # let it hold the lease and complete a write (a slow machine may still be importing after
    # 0.5 s: frozen before it took the lock, it would rightly carry on after the second), then
    # freeze it mid-run (the replay takes about 1.5 s)
    deadline = time.monotonic() + 30
    while not any(w["pid"] == first and w["what"] == "done" for w in read_jsonl(logs / "writes.jsonl")):
        assert time.monotonic() < deadline, f"the first process never wrote: {server.stderr[-10:]}"
        assert server.wait(first, 0.02) is None, f"the first process ended early: {server.stderr[-10:]}"
    assert server.wait(first, rng.uniform(0.0, 0.3)) is None, f"{server.stderr[-10:]}"
    os.kill(first, signal.SIGSTOP)
    try:
        wait_until_stopped(first)
        attempts_before = sum(
            1 for w in read_jsonl(logs / "writes.jsonl") if w["pid"] == first and w["what"] == "attempt"
        )
        time.sleep(LOCK_TTL * 2.5)  # the lease runs out while it is frozen
        second = server.start(**options)
        code = server.wait(second, 60)
        assert code == 0, f"the second process failed ({code}): {server.stderr[-20:]}"
    finally:
        os.kill(first, signal.SIGCONT)
    code = server.wait(first, 30)
    assert code == 3, f"the resumed process must exit 3 (lost its lock), got {code}: {server.stderr[-20:]}"

    writes = read_jsonl(logs / "writes.jsonl")
    done_first = [w for w in writes if w["pid"] == first and w["what"] == "done"]
    assert len(done_first) <= attempts_before, "the frozen process wrote again after it lost its lock"
    assert any(w["pid"] == second and w["what"] == "done" for w in writes)

    # the broker log as an exchange sees it; then the usual invariants over the final state
    broker = logs / "broker.jsonl"
    calls = dedup_by_client_order_id(read_jsonl(broker))
    broker.write_text("".join(json.dumps(c, sort_keys=True) + "\n" for c in calls))
    snap = load_snapshot(logs, crash_child.SYMBOLS, redis=(redis_url, bot))
    counts = check_invariants(snap, logs)
    events = read_jsonl(logs / "events.jsonl")
    assert any(e["pid"] == second and e["action"] == "closed" for e in events), "the second never closed"
    return counts


def test_a_process_frozen_past_its_lease_never_writes_again(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    server = ForkServer()
    try:
        totals: dict[str, int] = {}
        for _ in range(ROUNDS):
            for k, v in one_round(server, redis_server.url, tmp_path, rng).items():
                totals[k] = totals.get(k, 0) + v
    finally:
        server.close()
        redis_server.kill()
    print(f"freeze loop: seed {SEED}, {totals}")
    assert not [line for line in server.stderr if "Traceback" in line], server.stderr[-40:]
