"""Symbol and strategy names that look like paths stay inside the dump directory, or are rejected.

Real live runs (replay clock, sim exchange, file persistence) with hostile names; afterwards the whole
temporary directory is walked: every file is under the dump directory, one file per document, and the
backend lists the exact names back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import btkit
from btkit.errors import PersistenceError
from btkit.persist.file import FileBackend
from btkit.persist.keys import MAX_PART_CHARS

START = 1_706_745_600_000  # 2024-02-01 00:00 UTC
M = 60_000

SAFE_NAMES = [
    "../x",
    "a/b",
    "BTC/USDT:USDT",
    "..",
    ".",
    "../../../../etc/passwd",
    "a\\b",
    " spaced ",
    "é/../ü",
    "%2F",
    "x" * MAX_PART_CHARS,
    "-rf",
    "~root",
    "CON",
    "a\nb",
]
STRATEGY = "../../strat/../x"


def get_signal(symbol: str, when: Any, price: float) -> dict[str, Any] | None:
    if int(when.timestamp()) // 60 % 5:
        return None
    return {
        "position": "short",
        "price_take_profit": price * 0.99,
        "price_stop_loss": price * 1.01,
        "minute_estimated_time": 3,
    }


def run_names(tmp_path: Path, symbols: list[str]) -> tuple[dict[str, Any], list[Any], list[Any]]:
    btkit.use_persistence("file", root=str(tmp_path / "dump"))
    btkit.add_strategy(STRATEGY, get_signal)
    errors: list[Any] = []
    events: list[Any] = []
    btkit.listen_error(errors.append)
    btkit.listen_signal_live(events.append)
    clock = btkit.ReplayClock(START, end=START + 20 * M)
    handles = {s: btkit.Live.background(s, strategy=STRATEGY, exchange="sim", clock=clock) for s in symbols}
    for h in handles.values():
        assert h.join(60)
    btkit.Live.shutdown()
    return handles, errors, events


def test_path_like_names_stay_inside_the_dump_directory_and_read_back(tmp_path: Path) -> None:
    handles, errors, events = run_names(tmp_path, SAFE_NAMES)
    assert errors == [] and all(h.error is None for h in handles.values())
    assert {e.symbol for e in events if isinstance(e, btkit.Closed)} == set(SAFE_NAMES)
    dump = (tmp_path / "dump").resolve()
    outside = [p for p in tmp_path.rglob("*") if dump not in p.resolve().parents and p.resolve() != dump]
    assert outside == []
    for p in dump.rglob("*"):
        rel = p.relative_to(dump).parts
        assert ".." not in rel and "." not in rel
        if p.is_file() and p.suffix == ".json" and rel[0] != "quarantine":
            # <domain>/<strategy>/<symbol>.json, risk/<name>.json or wallet/<name>.json: the names never add levels
            assert len(rel) == (2 if rel[0] in ("risk", "wallet") else 3), rel
    backend = FileBackend(dump)
    backend.open()
    try:
        for domain in ("signal", "strategy", "history"):
            assert sorted(backend.keys(domain)) == sorted((STRATEGY, s) for s in SAFE_NAMES)
        for s in SAFE_NAMES:
            history = backend.read("history", (STRATEGY, s))
            assert history is not None and history["closed"][0]["symbol"] == s
    finally:
        backend.close()


@pytest.mark.parametrize("bad", ["nul\x00byte", "y" * (MAX_PART_CHARS + 1), ""], ids=["nul", "long", "empty"])
def test_unstorable_names_are_rejected_loudly_and_write_nothing(tmp_path: Path, bad: str) -> None:
    btkit.use_persistence("file", root=str(tmp_path / "dump"))
    btkit.add_strategy(STRATEGY, get_signal)
    clock = btkit.ReplayClock(START, end=START + 20 * M)
    with pytest.raises(PersistenceError) as info:  # refused when the run starts, not once a minute
        btkit.Live.background(bad, strategy=STRATEGY, exchange="sim", clock=clock)
    assert "NUL" in str(info.value) or "characters" in str(info.value) or "non-empty" in str(info.value)
    assert not (tmp_path / "dump").exists()  # nothing was created for it
    # the same process then trades a good symbol normally
    handles, errors, events = run_names(tmp_path, ["BTCUSDT"])
    assert errors == [] and handles["BTCUSDT"].error is None
    assert any(isinstance(e, btkit.Closed) and e.symbol == "BTCUSDT" for e in events)
    dump = tmp_path / "dump"
    files = sorted(str(p.relative_to(dump)) for p in dump.rglob("*.json") if p.parent.name not in ("risk", "wallet"))
    assert files and all(f.endswith("/BTCUSDT.json") for f in files), files
    assert [p for p in tmp_path.rglob("*") if dump not in p.parents and p != dump] == []
