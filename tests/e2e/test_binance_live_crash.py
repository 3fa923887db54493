"""The e2e live run killed in the middle (SIGKILL) and restarted on the same state directory.

The live process is ``live_child.py``; the fake exchange runs here and outlives it, like Binance. The
restart reconciles (the engine hands the broker what its state holds), never opens a second position,
and closes at take-profit once the price gets there. A restart that finds a position nobody knows on
the exchange refuses to trade (through the ``btkit live`` CLI).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from e2e_helpers import (
    LAST_MINUTE,
    SIGNAL_ID,
    SIGNAL_MINUTE,
    SPIKE_MINUTE,
    SYMBOL,
    mark_before,
    minute,
    script_rows,
    write_btkit_toml,
)

from btkit.broker_payloads import client_order_id
from btkit_binance_futures.testing import FakeBinanceFutures, fake_env, protection_in_order

CHILD = Path(__file__).resolve().parent / "live_child.py"
HANG_GUARD_S = 120  # only against a hang: each process here ends within seconds
ENTRY_ID = client_order_id(SIGNAL_ID, "open")
CLOSE_ID = client_order_id(SIGNAL_ID, "close")


class Child:
    """``live_child.py`` as a real process; the test answers its minutes after moving the fake's price."""

    def __init__(self, fake: FakeBinanceFutures, workdir: Path, dump: Path, *extra: str) -> None:
        self.fake = fake
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), "--dump-dir", str(dump), "--fake-url", fake.url, *extra],
            cwd=workdir,
            env=fake_env(fake),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr or []), daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout or []:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def answer(self, line: str) -> None:
        """Let the child tick the minute ``line`` asks for, with the fake's mark at that minute's price."""
        when = int(line.split()[1])
        self.fake.set_price(mark_before(when), SYMBOL)
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def step(self, until: Callable[[str], bool] | None = None) -> str | None:
        """Answer every minute until a line matches ``until`` (returned unanswered) or the output ends."""
        while True:
            try:
                line = self.lines.get(timeout=HANG_GUARD_S)
            except queue.Empty:
                raise AssertionError(f"the child hangs: {self.out[-10:]}\n{''.join(self.err)}") from None
            if line is None:
                return None
            self.out.append(line)
            if until is not None and until(line):
                return line
            if line.startswith("minute "):
                self.answer(line)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        assert self.proc.wait(HANG_GUARD_S) == -signal.SIGKILL

    def finish(self) -> int:
        self.step()
        return self.proc.wait(HANG_GUARD_S)

    def tagged(self, tag: str) -> list[str]:
        return [line[len(tag) + 1 :] for line in self.out if line.startswith(tag + " ")]


def start_run(fake: FakeBinanceFutures, tmp_path: Path) -> Path:
    fake.set_klines(SYMBOL, "1m", script_rows())
    write_btkit_toml(tmp_path, fake.url, broker=True)  # the exchange's table (and the CLI's broker)
    return tmp_path / "dump"


def entry_and_protection(fake: FakeBinanceFutures) -> list[tuple[str, str, str]]:
    return [(o.type, o.side, o.quantity) for o in protection_in_order(fake.orders_log)]


def assert_restart_closed_at_take_profit(fake: FakeBinanceFutures, child: Child, tmp_path: Path) -> None:
    """The restarted run ends with exactly one trade on the exchange, closed by the engine at TP."""
    assert child.finish() == 0, (child.out, "".join(child.err))
    assert child.tagged("error") == []
    assert child.tagged("done") == ["-"]
    closed = [e for e in child.tagged("event") if e.startswith("closed")]
    assert closed == [f"closed take_profit {minute(SPIKE_MINUTE + 1)}"]

    log = protection_in_order(fake.orders_log)  # SL and TP leave at once, in either order
    assert [(o.kind, o.type, o.side, o.reduce_only) for o in log] == [
        ("order", "LIMIT", "BUY", False),
        ("algo", "STOP_MARKET", "SELL", True),
        ("algo", "TAKE_PROFIT_MARKET", "SELL", True),
        ("order", "MARKET", "SELL", True),
    ]
    assert Counter(o.client_id for o in log)[ENTRY_ID] == 1  # one entry order for the signal's id
    assert all(n == 1 for n in Counter(o.client_id for o in log).values())
    assert log[-1].client_id == CLOSE_ID
    assert len({o.quantity for o in log}) == 1  # protection and close sized to the one fill
    assert fake.position(SYMBOL) == 0
    assert fake.algo_orders(open_only=True) == []
    report = next((tmp_path / "reports").glob("*.md"))
    assert "take_profit" in report.read_text(encoding="utf-8")
    stderr = "".join(child.err)
    assert "Unclosed" not in stderr and "release all resources" not in stderr, stderr


@pytest.mark.slow
def test_killed_after_the_entry_an_unknown_position_is_refused_then_the_restart_closes_at_tp(
    binance_keys: FakeBinanceFutures, tmp_path: Path
) -> None:
    fake = binance_keys
    dump = start_run(fake, tmp_path)

    first = Child(fake, tmp_path, dump)
    assert first.step(until=lambda line: line == f"minute {minute(SIGNAL_MINUTE + 1)}")
    # the open is committed (the engine asks for its next minute): entry filled and protected, then kill
    assert [e.split()[0] for e in first.tagged("event")] == ["opened"]
    assert [t for t, _, _ in entry_and_protection(fake)] == ["LIMIT", "STOP_MARKET", "TAKE_PROFIT_MARKET"]
    first.kill()
    held = fake.position(SYMBOL)
    assert held > 0

    # someone opens a position by hand: a restart refuses to trade and names it
    fake.set_position("ETHUSDT", "1.5")
    placed = len(fake.orders_log)
    cli = subprocess.run(
        [
            sys.executable, "-m", "btkit.cli", "live",
            "--config", str(tmp_path / "btkit.toml"),
            "--strategy", "smacross", "--exchange", "binance-futures", "--symbol", SYMBOL,
            "--dump-dir", str(dump), "--replay-from", "202403010000", "--replay-to", "202403010009",
        ],
        cwd=tmp_path, env=fake_env(fake), capture_output=True, text=True, timeout=HANG_GUARD_S,
    )  # fmt: skip
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    said = cli.stderr.strip().splitlines()
    assert "ETH/USDT:USDT long 1.5" in said[-1], cli.stderr  # the last line names the position…
    assert all("refusing to trade" in line for line in said), cli.stderr  # …and nothing else is reported
    assert len(fake.orders_log) == placed  # nothing was sent
    assert fake.position(SYMBOL) == held and fake.position("ETHUSDT") == Decimal("1.5")

    # the operator closes it by hand; the restart reconciles and trades on to the take-profit
    fake.set_position("ETHUSDT", "0")
    second = Child(fake, tmp_path, dump, "--report-dir", str(tmp_path / "reports"))
    assert_restart_closed_at_take_profit(fake, second, tmp_path)
    assert [json.loads(e) for e in second.tagged("expected")] == [{SYMBOL: "long"}]
    assert not any(e.startswith("opened") for e in second.tagged("event"))  # no second position
    answered = [int(line.split()[1]) for line in second.out if line.startswith("minute ")]
    assert answered[0] > minute(SIGNAL_MINUTE) and answered[-1] == minute(LAST_MINUTE)


@pytest.mark.slow
def test_killed_while_the_take_profit_order_is_on_the_wire_the_restart_adopts_it(
    binance_keys: FakeBinanceFutures, tmp_path: Path
) -> None:
    """Placed on the exchange, never acknowledged: the engine's open is still an intent in flight. The
    restart retries it with the same client id; the broker finds the entry, the stop and the
    take-profit by their ids and sends nothing again."""
    fake = binance_keys
    dump = start_run(fake, tmp_path)
    fake.inject(
        "/fapi/v1/algoOrder",
        "accept_then_stall",
        method="POST",
        seconds=300,
        when=lambda q: q.get("type") == "TAKE_PROFIT_MARKET",
    )
    first = Child(fake, tmp_path, dump, "--request-timeout-ms", "120000")
    signal_minute = first.step(until=lambda line: line == f"minute {minute(SIGNAL_MINUTE)}")
    assert signal_minute is not None
    first.answer(signal_minute)
    fake.wait_until(lambda f: len(f.orders_log) == 3, timeout=HANG_GUARD_S)
    first.kill()
    assert first.tagged("event") == []  # never acknowledged
    fake.clear_faults()

    second = Child(fake, tmp_path, dump, "--report-dir", str(tmp_path / "reports"))
    assert_restart_closed_at_take_profit(fake, second, tmp_path)
    assert [json.loads(e) for e in second.tagged("expected")] == [{SYMBOL: None}]  # an open in flight
    opened = [e for e in second.tagged("event") if e.startswith("opened")]
    assert opened == [f"opened - {minute(SIGNAL_MINUTE)}"]  # the retried open, at the same minute
