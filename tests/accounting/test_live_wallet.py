"""Live: sized trading gives what the backtest gives, the wallet survives SIGKILLs without booking any
pnl twice, and its starting balance is persisted (domain ``wallet``)."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import crash_child
import pytest
from wallet_child import BALANCE, SIZING

import btkit
from btkit.engine.accounts import live_portfolio
from btkit.model import Closed, Opened
from btkit.persist.file import FileBackend

CHILD = Path(__file__).with_name("wallet_child.py")
START = crash_child.START_MS
MINUTES = 180
CRASH_MINUTES = 720  # a few seconds of replay per uninterrupted child
SYMBOLS = list(crash_child.SYMBOLS)


def backtest_trades(minutes: int = MINUTES) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(opens, closes) of the uninterrupted lockstep backtest of the child's run."""
    btkit.set_config(**crash_child.ENGINE_CONFIG)
    btkit.set_wallet(balance=BALANCE, sizing=SIZING)
    btkit.add_strategy(crash_child.STRATEGY, crash_child.get_signal, interval="1m")
    end = START + (minutes - 1) * 60_000
    btkit.add_frame("w", datetime.fromtimestamp(START / 1000, UTC), datetime.fromtimestamp(end / 1000, UTC))
    results = list(
        btkit.Backtest.run_portfolio(SYMBOLS, strategy=crash_child.STRATEGY, exchange="sim", frame="w")
    )
    opens = [(r.symbol, r.timestamp, r.signal.cost) for r in results if isinstance(r, Opened)]
    # a backtest closes what is still open after its last minute; a replay leaves it open
    closes = [key(r) for r in results if isinstance(r, Closed) and r.close_timestamp <= end]
    return opens, closes


def key(c: Closed) -> tuple[Any, ...]:
    return (c.symbol, c.close_timestamp, c.signal.cost, c.close_reason, c.pnl.pnl_cost)


def live_closes(dump: Path) -> list[Closed]:
    backend = FileBackend(root=str(dump))
    backend.open()
    from btkit.persist.state import BackendStore
    from btkit.plugins import get_plugin_manager

    store = BackendStore(get_plugin_manager(), backend)
    out = [c for s in SYMBOLS for c in store.load_history((crash_child.STRATEGY, s))]
    backend.close()
    return sorted(out, key=lambda c: (c.close_timestamp, c.symbol))


def wallet_doc(dump: Path) -> dict[str, Any]:
    path = next((dump / "wallet").rglob("*.json"))
    return json.loads(path.read_text(encoding="utf-8"))


def test_backtest_and_live_replay_give_identical_trades_sizes_and_equity(tmp_path: Path) -> None:
    opens, closes = backtest_trades()
    assert len(closes) >= 20 and len({o[2] for o in opens}) > 5  # sizes really vary with equity
    dump = tmp_path / "dump"
    btkit.use_persistence("file", root=str(dump))
    live_opens: list[tuple[Any, ...]] = []
    btkit.listen_signal_live(
        lambda r: live_opens.append((r.symbol, r.timestamp, r.signal.cost)) if isinstance(r, Opened) else None
    )
    clock = btkit.ReplayClock(START, end=START + (MINUTES - 1) * 60_000)
    handles = [
        btkit.Live.background(s, strategy=crash_child.STRATEGY, exchange="sim", clock=clock) for s in SYMBOLS
    ]
    for h in handles:
        assert h.join(120) and h.error is None
    btkit.Live.shutdown()
    assert sorted(live_opens) == sorted(opens)
    got = live_closes(dump)
    assert sorted(key(c) for c in got) == sorted(closes)
    assert wallet_doc(dump)["balance"] == BALANCE
    equity = BALANCE + math.fsum(c[4] for c in closes)
    assert BALANCE + math.fsum(c.pnl.pnl_cost for c in got) == pytest.approx(equity, abs=1e-9)
    # the live portfolio view (read back from the state directory) ends at the same equity
    btkit.set_wallet(balance=77.0)  # the persisted starting balance wins over the settings
    end = START + (MINUTES - 1) * 60_000
    view = live_portfolio(SYMBOLS, strategy=crash_child.STRATEGY, exchange="sim", until=end)
    assert view.stats.starting_balance == BALANCE
    assert view.stats.final_equity == BALANCE + math.fsum(
        c.pnl.pnl_cost for c in sorted(got, key=lambda c: c.close_timestamp)
    )


@pytest.mark.slow
def test_sigkilled_sized_live_run_books_every_pnl_once(tmp_path: Path) -> None:
    """SIGKILL the child at random instants and restart it (a later restart even passes another
    ``--balance``: the persisted one wins); the finished run equals the uninterrupted backtest."""
    dump = tmp_path / "dump"
    rng = random.Random(int(os.environ.get("BTKIT_CRASH_SEED", "12")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTKIT")}
    kills = 0
    other_balance_tried = False
    for attempt in range(16):
        # another --balance only once the first wallet document is on disk (a slow disk may let two
        # kills land before it is written): from then on the persisted balance must win
        stored = (dump / "wallet").is_dir() and any((dump / "wallet").rglob("*.json"))
        balance = str(5_000.0 if stored and attempt >= 2 else BALANCE)
        other_balance_tried = other_balance_tried or balance != str(BALANCE)
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(dump), str(START), str(CRASH_MINUTES), balance], env=env
        )
        if attempt < 10:
            time.sleep(rng.uniform(0.8, 2.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        if proc.wait(120) == 0:
            break
    else:
        pytest.fail("the child never finished its replay")
    assert kills >= 2 and other_balance_tried, "the run ended before a restart passed another --balance"
    _opens, closes = backtest_trades(CRASH_MINUTES)
    got = live_closes(dump)
    ids = [c.signal.id for c in got]
    assert len(ids) == len(set(ids)), "a trade was booked twice"
    assert [key(c) for c in got] == sorted(closes, key=lambda k: (k[1], k[0]))
    assert wallet_doc(dump)["balance"] == BALANCE


def test_the_paper_broker_simulates_a_balance_from_the_wallet_and_books_each_close_once() -> None:
    from types import SimpleNamespace

    from btkit.defaults.paper_broker import PaperBroker

    btkit.set_wallet(balance=2_500.0)
    broker = PaperBroker()
    assert broker.get_balance() == 2_500.0
    close = SimpleNamespace(client_order_id="c1", pnl=SimpleNamespace(pnl_cost=-40.0))
    assert broker.on_signal_close_commit(close) and broker.on_signal_close_commit(close)  # a retried call
    assert broker.get_balance() == 2_460.0
    assert PaperBroker(balance=900).get_balance() == 900.0
