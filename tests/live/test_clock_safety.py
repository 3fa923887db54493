"""Issue 10 #3: persisted times later than now are refused at start on the wall clock; a system clock
that steps back during a run is logged and the ticks (the monitoring of open positions) go on."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from btkit import serde
from btkit.engine import clock as clock_module
from btkit.engine.clock import WallClock
from btkit.engine.state import StrategyState
from btkit.model import MINUTE_MS

DAY_MS = 24 * 60 * MINUTE_MS


def strategy_document(last_tick: int) -> dict[str, object]:
    return serde.to_document(serde.unstructure(StrategyState(last_tick=last_tick)))


def test_a_last_tick_in_the_future_refuses_btkit_paper_with_one_line_naming_the_document(
    tmp_path: Path,
) -> None:
    dump = tmp_path / "dump"
    doc = dump / "strategy" / "smacross" / "BTCUSDT.json"
    doc.parent.mkdir(parents=True)
    future = (int(time.time() * 1000) // MINUTE_MS) * MINUTE_MS + DAY_MS
    doc.write_text(json.dumps(strategy_document(future)))
    before = doc.read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "btkit.cli", "paper", "--dump-dir", str(dump)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 4, (done.stdout, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("btkit: error: state document strategy ('smacross', 'BTCUSDT') has last_tick"), (
        last
    )
    assert "later than now" in last
    assert doc.read_bytes() == before  # refused, not rewritten or reset
    assert " opened @ " not in done.stdout


def test_a_last_tick_within_the_skew_is_accepted() -> None:
    from types import SimpleNamespace

    from btkit.engine.live import FUTURE_SKEW_MS, refuse_future_state
    from btkit.engine.state import InstanceState
    from btkit.errors import CorruptStateError

    now = 1_706_745_600_000
    for ahead, refused in ((FUTURE_SKEW_MS - MINUTE_MS, False), (FUTURE_SKEW_MS + MINUTE_MS, True)):
        inst: Any = SimpleNamespace(
            strategy=SimpleNamespace(name="s"),
            symbol="BTCUSDT",
            state=InstanceState(strategy=StrategyState(last_tick=now + ahead)),
        )
        if refused:
            with pytest.raises(CorruptStateError, match="later than now"):
                refuse_future_state(inst, now)
        else:
            refuse_future_state(inst, now)


class SteppingTime:
    """Stands in for the ``time`` module inside btkit.engine.clock: a wall clock the test steps, a
    monotonic clock that only moves forward."""

    def __init__(self, wall: float) -> None:
        self.wall = wall
        self.mono = 1000.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def test_a_clock_stepping_back_is_logged_and_the_minutes_keep_coming(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    start = 1_706_745_600.0 + 3  # 3 s after a minute boundary
    fake = SteppingTime(start)
    monkeypatch.setattr(clock_module, "time", fake)
    clock = WallClock(delay_seconds=0, poll_seconds=0.01)

    async def ticks() -> list[int]:
        got = [await asyncio.wait_for(clock.next_tick(0, None), 2)]
        fake.advance(60)
        got.append(await asyncio.wait_for(clock.next_tick(0, got[-1]), 2))
        fake.wall -= 3600  # an hour back: the old clock waited an hour without a word
        for _ in range(3):
            fake.advance(60)
            got.append(await asyncio.wait_for(clock.next_tick(0, got[-1]), 2))
        return got

    with caplog.at_level(logging.WARNING, logger="btkit.live"):
        got = asyncio.run(ticks())
    first = int(start * 1000) // MINUTE_MS * MINUTE_MS
    assert got == [first + i * MINUTE_MS for i in range(5)]  # one tick per (monotonic) minute
    warnings = [r.getMessage() for r in caplog.records if "stepped back" in r.getMessage()]
    assert len(warnings) == 1 and "3600" in warnings[0], caplog.text  # once per step, not every minute

    fake.wall += 3600 + 600  # the clock is fixed (and ahead now): ticks follow it again
    assert clock.now_ms() == int(fake.wall * 1000)
    assert "caught up" in caplog.text
