"""The terminal output on a real pseudo-terminal (rich bar with ETA, boxed table with a totals row) and
plain when ``NO_COLOR`` is set."""

from __future__ import annotations

import os
import select

import pytest

from btkit.cli.terminal import ProgressBars, fancy, table


def _drain(fd: int) -> str:
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    return out.decode("utf-8", "replace")


@pytest.fixture
def tty() -> tuple[int, object]:
    master, slave = os.openpty()
    stream = os.fdopen(slave, "w", encoding="utf-8", buffering=1)
    yield master, stream
    stream.close()
    os.close(master)


def test_a_terminal_gets_a_rich_bar_with_eta_and_a_boxed_table(tty, monkeypatch: pytest.MonkeyPatch) -> None:
    master, stream = tty
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert fancy(stream)
    bars = ProgressBars(stream)
    for done in range(0, 1001, 50):
        bars.update("BTCUSDT", done, 1000)
    bars.close()
    shown = _drain(master)
    assert "BTCUSDT" in shown and "100%" in shown and "1000/1000" in shown and "eta" in shown
    assert "━" in shown  # the bar itself
    text = table(
        ("symbol", "trades"), [("BTCUSDT", "4"), ("ETHUSDT", "2")], total=("total", "6"), stream=stream
    )
    assert "┃" in text or "│" in text
    lines = [ln for ln in text.splitlines() if "total" in ln]
    assert lines and "6" in lines[0]


def test_no_color_keeps_everything_plain(tty, monkeypatch: pytest.MonkeyPatch) -> None:
    master, stream = tty
    monkeypatch.setenv("NO_COLOR", "1")
    assert not fancy(stream)
    bars = ProgressBars(stream)
    for done in range(0, 101, 10):
        bars.update("BTCUSDT", done, 100)
    bars.close()
    lines = [ln.strip() for ln in _drain(master).splitlines() if ln.strip()]
    assert [ln.split()[2] for ln in lines] == ["0%", "30%", "50%", "80%", "100%"]  # each quarter once
    assert all(ln.startswith("progress BTCUSDT ") and " eta " in ln for ln in lines)
    text = table(("symbol", "trades"), [("BTCUSDT", "4")], total=("total", "4"), stream=stream)
    assert text.splitlines() == [
        "symbol   trades",
        "-------  ------",
        "BTCUSDT       4",
        "-------  ------",
        "total         4",
    ]
