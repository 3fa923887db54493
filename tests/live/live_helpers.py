"""Shared helpers of the live-mode tests: the crash child's fork server, and the checks run on a dump
directory after every kill (state parses and validates, nothing acknowledged is lost, never two
positions at once)."""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import attrs
import numpy as np

from btkit import candles as ca
from btkit.config import build_config
from btkit.defaults.sim_exchange import SimExchange
from btkit.engine.instance import StrategyInstance
from btkit.engine.state import InstanceState
from btkit.lifecycle import machine
from btkit.model import MINUTE_MS, Closed, SignalRow
from btkit.persist.backend import DOMAINS
from btkit.persist.file import FileBackend, load_document
from btkit.persist.state import BackendStore
from btkit.plugins import get_plugin_manager

HERE = Path(__file__).parent
CHILD = HERE / "crash_child.py"

sys.path.insert(0, str(HERE))
import crash_child  # noqa: E402

STRATEGY = crash_child.STRATEGY
CHILD_CONFIG = build_config(**crash_child.ENGINE_CONFIG)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a JSON-lines log (a line cut by a kill has no newline yet: skipped)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


# ---------------------------------------------------------------- the fork server
class ForkServer:
    """``crash_child.py --serve``: fork a fresh live process per request; see crash_child's docstring."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True).start()
        self.exits: dict[int, int] = {}

    @staticmethod
    def _pump(stream: Any, sink: Any) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    def _next(self, timeout: float) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(
                f"crash child server gave no answer within {timeout} s; stderr: {self.stderr[-20:]}"
            ) from None

    def start(self, **options: Any) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(options) + "\n")
        self.proc.stdin.flush()
        while True:
            line = self._next(30)
            if line.startswith("pid "):
                return int(line.split()[1])
            self._record(line)

    def _record(self, line: str) -> None:
        kind, pid, code = line.split()
        assert kind == "exit", line
        self.exits[int(pid)] = int(code)

    def wait(self, pid: int, timeout: float) -> int | None:
        """The exit code of ``pid`` once it ended within ``timeout`` seconds, else None."""
        try:
            while pid not in self.exits:
                line = self.lines.get(timeout=timeout)
                self._record(line)
        except queue.Empty:
            return None
        return self.exits.pop(pid)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------- reading a dump directory
@attrs.define
class Snapshot:
    states: dict[str, InstanceState]
    histories: dict[str, list[Closed]]
    temp_files: int


def raw_documents(dump: Path) -> Iterable[Path]:
    for domain in DOMAINS:
        base = dump / domain
        if base.is_dir():
            yield from (p for p in base.rglob("*.json") if not p.name.startswith("."))


def load_snapshot(
    dump: Path, symbols: Iterable[str], persistence: str = "file", redis: tuple[str, str] | None = None
) -> Snapshot:
    """Parse every stored document strictly, then load each instance as a restart would (raises on
    anything corrupt: the backend quarantines it and BackendStore raises CorruptStateError).
    ``redis``: (url, bot) of the Redis state instead of ``dump``."""
    temp = sum(1 for p in dump.rglob("*.btkit-tmp"))
    backend: Any
    if redis is not None:
        from btkit_redis import RedisBackend

        backend = RedisBackend(redis[0], bot=redis[1])
    elif persistence == "sqlite":
        from btkit_sqlite import SqliteBackend

        backend = SqliteBackend(dump / "btkit.sqlite3")
    else:
        for path in raw_documents(dump):
            load_document(path.read_bytes())  # ValueError on a torn or mixed write
        backend = FileBackend(dump)
    backend.open(exclusive=True)  # the child is dead: its lock must be free
    try:
        store = BackendStore(get_plugin_manager(), backend)
        states, histories = {}, {}
        for symbol in symbols:
            state, history = _run(store.load((STRATEGY, symbol)))
            states[symbol], histories[symbol] = settled(state, history), history
            for name in backend.keys("risk"):
                store.load_risk(name[0])
    finally:
        backend.close()
    assert not (dump / "quarantine").exists(), "a crash left a document that had to be quarantined"
    if redis is not None:
        import redis as redis_py

        client = redis_py.Redis.from_url(redis[0])
        try:
            assert not list(client.scan_iter(match=f"btkit:{redis[1]}:quarantine:*")), "a row was quarantined"
        finally:
            client.close()
    if persistence == "sqlite":
        import sqlite3

        with sqlite3.connect(dump / "btkit.sqlite3") as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "quarantine" in tables:
                assert db.execute("SELECT COUNT(*) FROM quarantine").fetchone()[0] == 0, (
                    "a row was quarantined"
                )
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return Snapshot(states, histories, temp)


def settled(state: InstanceState, history: list[Closed]) -> InstanceState:
    """The state as a restarted engine takes it over (a close cut short by the crash finished, an
    applied intent dropped): StrategyInstance.ensure_loaded's own settlement steps."""
    state = StrategyInstance._settle_closed(state, history)
    return StrategyInstance._settle_loaded_intent(cast(Any, None), state)


def _run(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


# ---------------------------------------------------------------- the invariants
def check_invariants(snap: Snapshot, log_dir: Path) -> dict[str, int]:
    """Everything a crash must never break; returns counts for the report."""
    events = read_jsonl(log_dir / "events.jsonl")
    calls = read_jsonl(log_dir / "broker.jsonl")
    counts: dict[str, int] = defaultdict(int)
    for symbol, history in snap.histories.items():
        state = snap.states[symbol]
        ids = [c.signal.id for c in history]
        assert len(ids) == len(set(ids)), f"{symbol}: a signal closed twice in the history: {ids}"
        # never two positions at once: trades follow each other in time (a close at a bucket's first
        # instant is followed by the decision at that same instant, so the next may open right at c1)
        spans = sorted((c.signal.pending_at, c.close_timestamp, c.signal.id) for c in history)
        for (o1, c1, s1), (o2, _, s2) in itertools.pairwise(spans):
            assert o2 >= c1, f"{symbol}: {s2} opened at {o2} while {s1} was open until {c1}"
            assert c1 > o1
        if state.pending is not None:
            assert state.pending.id not in ids, f"{symbol}: {state.pending.id} is both open and closed"
            if spans:
                assert state.pending.pending_at >= spans[-1][1], (
                    f"{symbol}: open position overlaps a closed one"
                )
        assert state.pending is None or state.scheduled is None
        counts["closed"] += len(history)
        counts["open"] += state.pending is not None
    # acknowledged writes: every reported open/close is in the persisted state
    for ev in events:
        symbol, sid = ev["symbol"], ev["signal_id"]
        state, history = snap.states[symbol], snap.histories[symbol]
        closed = {c.signal.id: c for c in history}
        if ev["action"] == "opened":
            assert sid in closed or (state.pending is not None and state.pending.id == sid), (
                f"{symbol}: acknowledged open of {sid} is lost after the crash"
            )
        elif ev["action"] == "closed":
            assert sid in closed, f"{symbol}: acknowledged close of {sid} is lost after the crash"
            c = closed[sid]
            assert (c.close_timestamp, c.close_reason) == (ev["timestamp"], ev["reason"])
            assert state.pending is None or state.pending.id != sid
        counts[f"ack_{ev['action']}"] += 1
    # side effects: one client order id per signal and action; every position the broker opened is
    # known to the engine; the broker never holds two positions of one symbol at once
    cid_of: dict[tuple[str, str], str] = {}
    sid_of: dict[str, tuple[str, str]] = {}
    holding: dict[str, str | None] = defaultdict(lambda: None)
    last_closed: dict[str, str | None] = defaultdict(lambda: None)
    for call in calls:
        key = (call["signal_id"], call["method"])
        assert cid_of.setdefault(key, call["client_order_id"]) == call["client_order_id"], call
        assert sid_of.setdefault(call["client_order_id"], key) == key, f"client order id reused: {call}"
        symbol = call["symbol"]
        if call["method"] == "open":
            held = holding[symbol]
            assert held in (None, call["signal_id"]), (
                f"{symbol}: broker asked to open {call['signal_id']} while {held} is open (double open)"
            )
            holding[symbol] = call["signal_id"]
            counts["broker_open_retries"] += held == call["signal_id"]
        elif call["method"] == "close":
            if holding[symbol] is None:  # the same close again: retried after a crash (same client id)
                assert last_closed[symbol] == call["signal_id"], (
                    f"{symbol}: close of a position not held: {call}"
                )
                counts["broker_close_retries"] += 1
            else:
                assert holding[symbol] == call["signal_id"], f"{symbol}: close of a position not held: {call}"
            holding[symbol], last_closed[symbol] = None, call["signal_id"]
    for symbol, held in holding.items():
        if held is None:
            continue
        state, history = snap.states[symbol], snap.histories[symbol]
        intent = state.strategy.intent
        known = (
            (state.pending is not None and state.pending.id == held)
            or (intent is not None and intent.signal_id == held)
            or any(c.signal.id == held for c in history)
        )
        assert known, f"{symbol}: the broker opened {held} but the engine does not know it (orphan position)"
    return dict(counts)


# ---------------------------------------------------------------- closes re-derived from the candles
def expected_close(closed: Closed, sim: SimExchange | None = None) -> tuple[str, int, float]:
    """(reason, time, price) the lifecycle rules give for this trade on the sim candles."""
    sim = sim or SimExchange()
    v = closed.signal
    row = SignalRow(
        id=v.id,
        symbol=closed.symbol,
        strategy_name=closed.strategy_name,
        exchange_name=closed.exchange_name,
        frame_name="",
        position=v.position,
        price_open=v.original_price_open,
        price_take_profit=v.original_price_take_profit,
        price_stop_loss=v.original_price_stop_loss,
        minute_estimated_time=v.minute_estimated_time,
        cost=v.cost,
        note=v.note,
        scheduled_at=v.scheduled_at,
        pending_at=v.pending_at,
        multiplier=v.multiplier,
        isolated=v.isolated,
        entries=v.entries,
    )
    assert row.pending_at is not None and row.minute_estimated_time is not None
    w = CHILD_CONFIG.avg_price_candles_count
    count = row.minute_estimated_time + 2
    arr = sim.minutes(closed.symbol, row.pending_at - (w - 1) * MINUTE_MS, count + w - 1)
    vw = ca.rolling_vwap(arr[:, 2], arr[:, 3], arr[:, 4], arr[:, 5], w)
    ts = arr[w - 1 :, 0].astype(np.int64)
    hit = machine.scan_pending(row, ts, vw[w - 1 :], arr[w - 1 :, 3], arr[w - 1 :, 2], CHILD_CONFIG, None)
    assert hit is not None, f"{v.id} never closes on the candles"
    decision = hit[1]
    return decision.reason, decision.time, decision.price


def file_modes(dump: Path) -> dict[str, int]:
    return {str(p.relative_to(dump)): os.stat(p).st_mode & 0o777 for p in dump.rglob("*")}
