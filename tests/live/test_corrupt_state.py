"""Hostile or corrupt state files placed in the dump directory before a live start.

Each is quarantined (moved aside with a reason file, reported loudly), the live run refuses to trade
that symbol (its handle ends with CorruptStateError; ``btkit paper`` exits 4), nothing is silently
reset, and the other symbols keep trading.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import btkit
from btkit.errors import CorruptStateError

START = 1_706_745_600_000  # 2024-02-01 00:00 UTC
M = 60_000
BAD, GOOD = "BTCUSDT", "ETHUSDT"


def get_signal(symbol: str, when: Any, price: float) -> dict[str, Any] | None:
    """A long position with a long lifetime every 10 minutes (open across the restart); every 30
    minutes as a resting entry just below the price."""
    minute = int(when.timestamp()) // 60
    if minute % 10:
        return None
    entry = price * 0.9995 if minute % 30 == 0 else price
    signal = {
        "position": "long",
        "price_take_profit": entry * 1.05,
        "price_stop_loss": entry * 0.95,
        "minute_estimated_time": 40,
    }
    return {**signal, "price_open": entry} if minute % 30 == 0 else signal


def register(dump: Path) -> None:
    btkit.use_persistence("file", root=str(dump))
    btkit.add_strategy("hold", get_signal)


def replay(first: int, last: int) -> dict[str, Any]:
    """Both symbols on one replay clock; returns each symbol's handle after it ended."""
    clock = btkit.ReplayClock(START + first * M, end=START + last * M)
    handles = {s: btkit.Live.background(s, strategy="hold", exchange="sim", clock=clock) for s in (BAD, GOOD)}
    for h in handles.values():
        assert h.join(60), "the live run did not end"
    return handles


def first_run(tmp_path: Path) -> Path:
    """A run that leaves every kind of document behind (an open position, a closed one, history)."""
    dump = tmp_path / "dump"
    register(dump)
    handles = replay(0, 55)
    assert all(h.error is None for h in handles.values())
    btkit.Live.shutdown()
    for domain in ("signal", "schedule", "strategy", "levels", "history"):
        assert (dump / domain / "hold" / f"{BAD}.json").is_file(), domain
    return dump


# ---------------------------------------------------------------- the corruptions
def _edit(fn: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        doc = json.loads(path.read_text())
        fn(doc)
        path.write_text(json.dumps(doc))  # NaN is written as the bare token NaN

    return apply


def _first_number(doc: Any) -> tuple[Any, Any] | None:
    """(container, key) of the first float/int (not bool, not schema_version) inside ``doc``."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for k, v in items:
        if k == "schema_version":
            continue
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return doc, k
        found = _first_number(v)
        if found is not None:
            return found
    return None


def _set_number(value: Any) -> Callable[[dict[str, Any]], None]:
    def fn(doc: dict[str, Any]) -> None:
        found = _first_number(doc)
        if found is None:  # no number anywhere (an empty document): put the value at the top
            body_key = next(k for k in doc if k != "schema_version")
            doc[body_key] = value
        else:
            container, key = found
            container[key] = value

    return fn


def truncated(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff\xfe garbage \x80\x81" + bytes(range(256)))


def as_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("not a document")


def deeply_nested(path: Path) -> None:
    """Issue 10 #5: 5000 levels of arrays (a RecursionError in a naive reader: every tick failed)."""
    doc = json.loads(path.read_text())
    path.write_text(
        json.dumps({k: v for k, v in doc.items()})[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
    )


def oversized(path: Path) -> None:
    from btkit.persist.file import MAX_DOCUMENT_BYTES

    path.write_bytes(b'{"pad": "' + b"x" * MAX_DOCUMENT_BYTES + b'"}')


def _row(fn: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """Edit the open position of a signal document (or the first closed trade of a history)."""

    def edit(doc: dict[str, Any]) -> None:
        if "closed" in doc:
            fn(doc["closed"][0]["signal"])
        else:
            assert doc["row"] is not None, "the first run left no open position"
            fn(doc["row"])

    return _edit(edit)


def _swap_tp_sl(row: dict[str, Any]) -> None:
    row["price_take_profit"], row["price_stop_loss"] = row["price_stop_loss"], row["price_take_profit"]


CORRUPTIONS: dict[str, Callable[[Path], None]] = {
    "truncated": truncated,
    "garbage": garbage,
    "nan": _edit(_set_number(math.nan)),
    "extra-key": _edit(lambda doc: doc.update(surprise=1)),
    "wrong-type": _edit(_set_number("12.5")),
    "schema-version": _edit(lambda doc: doc.update(schema_version=99)),
    "directory": as_directory,
    "deep-nesting": deeply_nested,
    "oversized": oversized,
    "schema-version-true": _edit(lambda doc: doc.update(schema_version=True)),  # issue 10 #14
    # issue 10 #6: valid JSON of the right shape, but nonsense
    "huge-multiplier": _row(lambda row: row.update(multiplier=1e308)),
    "tp-below-sl": _row(_swap_tp_sl),
    "other-symbol": _edit(
        lambda doc: (doc["closed"][0] if "closed" in doc else doc["row"]).update(symbol=GOOD)
    ),
    "pending-at-1e30": _row(lambda row: row.update(pending_at=10**30)),
}
ISSUE_10 = (
    "deep-nesting",
    "oversized",
    "schema-version-true",
    "huge-multiplier",
    "tp-below-sl",
    "other-symbol",
    "pending-at-1e30",
)
CASES = [(d, c) for d in ("signal", "strategy", "history") for c in CORRUPTIONS if c not in ISSUE_10] + [
    ("signal", "deep-nesting"),
    ("history", "deep-nesting"),
    ("signal", "oversized"),
    ("strategy", "schema-version-true"),
    ("signal", "huge-multiplier"),
    ("signal", "tp-below-sl"),
    ("signal", "other-symbol"),
    ("signal", "pending-at-1e30"),
    ("history", "pending-at-1e30"),
    ("history", "other-symbol"),
    ("schedule", "extra-key"),
    ("levels", "wrong-type"),
    ("levels", "truncated"),
    ("schedule", "directory"),
]


@pytest.mark.parametrize(("domain", "corruption"), CASES, ids=[f"{d}-{c}" for d, c in CASES])
def test_a_corrupt_document_is_quarantined_and_only_that_symbol_stops(
    tmp_path: Path, domain: str, corruption: str, caplog: pytest.LogCaptureFixture
) -> None:
    dump = first_run(tmp_path)
    path = dump / domain / "hold" / f"{BAD}.json"
    CORRUPTIONS[corruption](path)
    bad_bytes = None if path.is_dir() else path.read_bytes()
    untouched = {
        p: p.read_bytes()
        for p in (
            dump / d / "hold" / f"{BAD}.json" for d in ("signal", "schedule", "strategy", "levels", "history")
        )
        if p.is_file() and p != path
    }

    register(dump)
    errors: list[Any] = []
    btkit.listen_error(errors.append)
    good_events: list[Any] = []
    btkit.listen_signal_live(lambda r: good_events.append(r) if r.symbol == GOOD else None)
    with caplog.at_level(logging.ERROR):
        handles = replay(56, 120)

    # the bad symbol refused to trade, with a clear message naming the document
    err = handles[BAD].error
    assert isinstance(err, CorruptStateError), err
    assert "quarantine" in str(err) and "BTCUSDT" in str(err)
    assert any(e.fatal and isinstance(e.error, CorruptStateError) for e in errors)
    assert any(r.levelno >= logging.ERROR and "quarantine" in r.getMessage() for r in caplog.records)
    # quarantined: moved aside byte for byte with a reason; nothing recreated or reset in its place
    assert not path.exists()
    moved = [
        p
        for p in (dump / "quarantine").rglob("*")
        if not p.name.endswith(".reason") and p.parent.name == "hold" and p.name.startswith(BAD)
    ]
    assert len(moved) == 1, list((dump / "quarantine").rglob("*"))
    if bad_bytes is not None:
        assert moved[0].read_bytes() == bad_bytes
    else:
        assert (moved[0] / "inside.txt").read_text() == "not a document"
    assert Path(f"{moved[0]}.reason").read_text().strip()
    for p, raw in untouched.items():
        assert p.read_bytes() == raw, f"{p} was changed although its symbol is stopped"
    # the other symbol kept trading
    assert handles[GOOD].error is None
    assert any(isinstance(r, btkit.Closed) for r in good_events)
    assert any(isinstance(r, (btkit.Opened, btkit.Scheduled)) for r in good_events)  # a new signal after the close


def test_a_corrupt_document_makes_live_run_raise(tmp_path: Path) -> None:
    dump = first_run(tmp_path)
    garbage(dump / "signal" / "hold" / f"{BAD}.json")
    register(dump)
    clock = btkit.ReplayClock(START + 56 * M, end=START + 70 * M)
    with pytest.raises(CorruptStateError, match="quarantine"):
        list(btkit.Live.run(BAD, strategy="hold", exchange="sim", clock=clock))


def test_a_corrupt_risk_document_refuses_the_strategies_of_that_profile(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    register(dump)
    btkit.add_risk("book", lambda payload: None)
    btkit.add_strategy("hold", get_signal, risk="book")
    replay(0, 15)
    btkit.Live.shutdown()
    risk = dump / "risk" / "book.json"
    risk.write_text('{"schema_version": 1, "positions": [{"symbol": 5}]}')
    register(dump)
    btkit.add_risk("book", lambda payload: None)
    btkit.add_strategy("hold", get_signal, risk="book")
    with pytest.raises(CorruptStateError, match="risk"):
        replay(16, 30)
    assert not risk.exists() and list((dump / "quarantine").rglob("book*.json"))


def test_btkit_paper_exits_4_on_corrupt_state(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    state = dump / "replay" / "20240201-20240202"  # the replay's own state (issue 11)
    (state / "strategy" / "smacross").mkdir(parents=True)
    bad = state / "strategy" / "smacross" / "BTCUSDT.json"
    bad.write_text('{"schema_version": 1, "paused": "maybe"')
    cmd = [
        sys.executable,
        "-m",
        "btkit.cli",
        "paper",
        "--dump-dir",
        str(dump),
        "--replay-from",
        "20240201",
        "--replay-to",
        "20240202",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 4, (done.stdout, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("btkit: error:") and "quarantine" in last and "BTCUSDT" in last
    assert not bad.exists()
    assert list((state / "quarantine").rglob("BTCUSDT*.json"))


def test_history_is_validated_before_it_is_written(tmp_path: Path) -> None:
    """Issue 10 #6: a trade no report could read (a time in the year 10^19) never reaches the history."""
    import attrs

    from btkit.errors import PersistenceError
    from btkit.persist.file import FileBackend
    from btkit.persist.state import BackendStore
    from btkit.plugins import get_plugin_manager

    dump = first_run(tmp_path)
    path = dump / "history" / "hold" / f"{BAD}.json"
    before = path.read_bytes()
    backend = FileBackend(dump)
    backend.open(exclusive=True)
    try:
        store = BackendStore(get_plugin_manager(), backend)
        history = store.load_history(("hold", BAD))
        assert history
        store.save([store.history_change(("hold", BAD), history)])  # a sane history is written
        bad = attrs.evolve(history[-1], signal=attrs.evolve(history[-1].signal, pending_at=10**30))
        with pytest.raises(PersistenceError, match="pending_at") as err:
            store.history_change(("hold", BAD), [*history, bad])
        assert "\n" not in str(err.value)
        elsewhere = attrs.evolve(history[-1], symbol=GOOD)
        with pytest.raises(PersistenceError, match="stored under"):
            store.history_change(("hold", BAD), [*history, elsewhere])
    finally:
        backend.close()
    assert load(path) == load_bytes(before)


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def load_bytes(raw: bytes) -> Any:
    return json.loads(raw)
