"""Fault injection: the disk fails (EIO, ENOSPC) while a live tick opens or closes a position.

``os.write`` / ``os.fsync`` / ``os.replace`` are wrapped so the next call on a chosen state document
raises. The change must not be applied (in memory or on disk), no dependent side effect may happen
(no broker call, no Opened/Closed, no risk slot counted), the error must be reported on
``listen_error``, and the next tick after the fault clears must proceed normally.
"""

from __future__ import annotations

import errno
import json
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import btkit

START = 1_706_745_600_000  # 2024-02-01 00:00 UTC
M = 60_000
OPEN_AT = START + 5 * M  # the first minute get_signal answers
LIFETIME = 4


class Fault:
    """Wraps one ``os`` function: the next ``remaining`` calls on a path of ``domain`` raise ``err``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, err: int, domain: str) -> None:
        self.name, self.err, self.domain = name, err, domain
        self.remaining = 0
        self.hits: list[str] = []
        real: Callable[..., Any] = getattr(os, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.remaining > 0 and threading.current_thread().name == "btkit-live":
                target = self._target(args)
                if f"{os.sep}{self.domain}{os.sep}" in target and not target.endswith(".lock"):
                    self.remaining -= 1
                    self.hits.append(target)
                    raise OSError(err, os.strerror(err))
            return real(*args, **kwargs)

        monkeypatch.setattr(os, name, wrapper)

    def _target(self, args: tuple[Any, ...]) -> str:
        first = args[0] if args else ""
        if isinstance(first, int):  # a file descriptor: which file is it?
            try:
                return os.readlink(f"/proc/self/fd/{first}")
            except OSError:
                return ""
        return os.fspath(first) if self.name != "replace" else os.fspath(args[1])


class RecordingBroker:
    """The paper broker's behaviour (confirm everything), recording each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def on_signal_open_commit(self, p: Any) -> bool:
        self.calls.append(("open", p.signal_id, p.when))
        return True

    def on_signal_close_commit(self, p: Any) -> bool:
        self.calls.append(("close", p.signal_id, p.when))
        return True


def setup_live(
    tmp_path: Path, arm: Callable[[], None] | None = None
) -> tuple[RecordingBroker, list[Any], list[Any]]:
    """A strategy that wants a position from OPEN_AT on; a risk profile that allows one position."""
    dump = tmp_path / "dump"
    btkit.use_persistence("file", root=str(dump))
    broker = RecordingBroker()
    btkit.Broker.use_adapter(broker)
    btkit.Broker.enable()
    counts: list[Any] = []

    def one_position(payload: Any) -> str | None:
        counts.append((payload.timestamp, payload.active_position_count))
        return "one position at a time" if payload.active_position_count >= 1 else None

    btkit.add_risk("one", one_position)

    def get_signal(symbol: str, when: Any, price: float) -> dict[str, Any] | None:
        if int(when.timestamp() * 1000) < OPEN_AT:
            return None
        if arm is not None:
            arm()
        return {
            "position": "long",
            "price_take_profit": price * 1.05,
            "price_stop_loss": price * 0.95,
            "minute_estimated_time": LIFETIME,
        }

    btkit.add_strategy("faulty", get_signal, risk="one")
    errors: list[Any] = []
    btkit.listen_error(errors.append)
    return broker, errors, counts


def run_replay(minutes: int = 16) -> list[Any]:
    clock = btkit.ReplayClock(START, end=START + minutes * M)
    return list(btkit.Live.run("BTCUSDT", strategy="faulty", exchange="sim", clock=clock))


def documents(dump: Path) -> dict[str, Any]:
    return {
        str(p.relative_to(dump)): json.loads(p.read_text())
        for p in dump.rglob("*.json")
        if "quarantine" not in p.parts
    }


FAULTS = [(name, err) for name in ("write", "fsync", "replace") for err in (errno.EIO, errno.ENOSPC)]
IDS = [f"{name}-{errno.errorcode[err]}" for name, err in FAULTS]


@pytest.mark.parametrize(("name", "err"), FAULTS, ids=IDS)
def test_a_failed_write_of_the_open_intent_opens_nothing_and_the_next_tick_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, err: int
) -> None:
    fault = Fault(monkeypatch, name, err, "strategy")
    armed = {"done": False}

    def arm() -> None:  # called from get_signal at OPEN_AT: the intent write that follows fails
        if not armed["done"]:
            armed["done"] = True
            fault.remaining = 1

    broker, errors, counts = setup_live(tmp_path, arm)
    seen_after_error: list[Any] = []

    def on_error(event: Any) -> None:
        from btkit.engine import live

        inst = live._session.find("BTCUSDT", "faulty") if live._session else None
        seen_after_error.append(None if inst is None else (inst.state.pending, inst.state.strategy.intent))

    btkit.listen_error(on_error)
    results = run_replay()

    assert len(fault.hits) == 1, fault.hits
    opened = [r for r in results if isinstance(r, btkit.Opened)]
    assert opened[0].timestamp == OPEN_AT + M  # not at OPEN_AT: the write failed
    assert next(w for a, _, w in broker.calls if a == "open") == OPEN_AT + M
    assert len(errors) == 1
    text = str(errors[0])
    assert errno.errorcode[err] in text and "retrying next minute" in text and "did not happen" in text
    assert seen_after_error == [(None, None)]  # nothing applied in memory
    # the reservation of the failed tick was released: the next tick's risk check sees no position
    assert (OPEN_AT + M, 0) in counts
    docs = documents(tmp_path / "dump")
    history = docs["history/faulty/BTCUSDT.json"]["closed"]
    assert history[0]["signal"]["pending_at"] == OPEN_AT + M
    assert not list((tmp_path / "dump").rglob("*.btkit-tmp"))


@pytest.mark.parametrize(("name", "err"), FAULTS, ids=IDS)
def test_a_failed_write_of_the_close_reports_no_close_and_the_next_tick_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, err: int
) -> None:
    fault = Fault(monkeypatch, name, err, "history")
    fault.remaining = 1  # only a close writes the history: the first close fails once
    broker, errors, _ = setup_live(tmp_path)
    results = run_replay()

    assert len(fault.hits) == 1
    closed = [r for r in results if isinstance(r, btkit.Closed)]
    expiry = OPEN_AT + LIFETIME * M
    assert closed and closed[0].timestamp == expiry + M  # retried on the next tick
    assert closed[0].close_reason == "time_expired"
    closes = [c for c in broker.calls if c[0] == "close"]
    # the broker was told before the write failed; the retry uses the same signal (same client id)
    assert [w for _, _, w in closes][:2] == [expiry, expiry + M]
    assert closes[0][1] == closes[1][1] == closed[0].signal.id
    assert len(errors) == 1 and errno.errorcode[err] in str(errors[0])
    history = documents(tmp_path / "dump")["history/faulty/BTCUSDT.json"]["closed"]
    ids = [c["signal"]["id"] for c in history]
    assert ids[0] == closed[0].signal.id and len(ids) == len(set(ids))


def test_a_failing_disk_never_tears_a_document(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One document replace in six fails at random; what is on disk always parses, trading goes on."""
    from btkit.persist.file import load_document

    real_replace = os.replace
    rng = random.Random(7)
    failed = []

    def flaky_replace(src: Any, dst: Any) -> None:
        if threading.current_thread().name == "btkit-live" and rng.random() < 1 / 6:
            failed.append(dst)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    _, errors, _ = setup_live(tmp_path)
    results = run_replay(90)
    assert len(errors) == len(failed) > 3 and all("EIO" in str(e) for e in errors)
    assert len([r for r in results if isinstance(r, btkit.Closed)]) >= 3
    for path in (tmp_path / "dump").rglob("*.json"):
        load_document(path.read_bytes())
    assert not list((tmp_path / "dump").rglob("*.btkit-tmp"))
