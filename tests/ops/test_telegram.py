"""The Telegram action against the fake Bot API on 127.0.0.1: order, commands, allow-list, 429, secrecy."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import btkit
from btkit.defaults import smacross
from btkit.ops.actions import drain_actions, use_actions
from btkit_telegram.testing import FakeBotApi

TOKEN = "424242:AAF-test-token-never-printed"
CHAT, OTHER = 1001, 2002


@pytest.fixture
def fake(btkit_clean: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("BTKIT_TELEGRAM_TOKEN", TOKEN)
    with FakeBotApi(TOKEN) as api:
        yield api


def options(fake: FakeBotApi, **extra: Any) -> dict[str, Any]:
    return {"chat_ids": [CHAT], "api_base_url": fake.url, "min_interval_seconds": 0, "poll_timeout": 1, **extra}


def kind(text: str) -> str:
    for word in ("daily summary", "opened", "closed", "error"):
        if word in text:
            return word
    return text


def test_opens_closes_errors_and_summary_in_order(fake: FakeBotApi) -> None:
    failing_at = datetime(2024, 2, 1, 11, 40, tzinfo=UTC)

    def get_signal(symbol: str, when: datetime, price: float) -> Any:
        if when == failing_at:
            raise RuntimeError("strategy failed once")
        return smacross.get_signal(symbol, when, price)

    btkit.add_strategy("tg", get_signal, interval="5m", actions=["telegram"])
    btkit.add_frame("two-days", "2024-02-01T00:00:00", "2024-02-03T00:00:00")
    use_actions([], {"telegram": options(fake)})
    expected = []
    for r in btkit.Backtest.run("BTCUSDT", strategy="tg", exchange="sim", frame="two-days"):
        if r.action in ("opened", "closed"):
            expected.append((r.timestamp, r.action))
    assert drain_actions(30)
    events = sorted([*expected, (int(failing_at.timestamp() * 1000), "error")])
    want = [k for _, k in events]
    assert fake.wait_for(lambda m: sum(kind(x["text"]) != "daily summary" for x in m) >= len(want), 20)
    got = [kind(t) for t in fake.texts(CHAT)]
    assert [k for k in got if k != "daily summary"] == want, fake.texts()
    assert "daily summary" in got  # the run crossed from 2024-02-01 into 2024-02-02
    summary = next(t for t in fake.texts() if "daily summary" in t)
    assert "2024-02-01" in summary
    closed = [t for t in fake.texts() if kind(t) == "closed"]
    assert all("pnl " in t and "%" in t for t in closed)
    assert "strategy failed once" in next(t for t in fake.texts() if kind(t) == "error")


def test_commands_answered_only_for_allowed_chats(fake: FakeBotApi) -> None:
    btkit.add_strategy("tg2", smacross.get_signal, interval="5m", actions=["telegram"])
    btkit.add_frame("one-day", "2024-02-01T00:00:00", "2024-02-01T12:30:00")
    use_actions([], {"telegram": options(fake)})
    results = list(btkit.Backtest.run("BTCUSDT", strategy="tg2", exchange="sim", frame="one-day"))
    closed = [r for r in results if r.action == "closed"]
    held = [r for r in results if r.action in ("opened", "closed")][-1].action == "opened"
    assert drain_actions(30)
    before = len(fake.messages)
    fake.push_text(OTHER, "/status")  # not on the allow-list: never answered
    fake.push_text(CHAT, "/status")
    fake.push_text(CHAT, "/profit")
    fake.push_text(CHAT, "/balance")
    assert fake.wait_for(lambda m: len(m) >= before + 3, 15), fake.texts()
    replies = fake.texts()[before:]
    assert not fake.texts(OTHER)
    assert ("BTCUSDT long" in replies[0]) if held else replies[0] == "no open position"
    pnl = sum(c.pnl.pnl_percentage for c in closed)
    assert replies[1].startswith(f"{len(closed)} closed") and f"{pnl:+.2f}%" in replies[1]
    realised = sum(c.pnl.pnl_cost for c in closed)
    assert replies[2].startswith(f"balance {10_000 + realised:.2f} USDT")


def test_paper_run_with_429_loses_nothing_and_never_prints_the_token(fake: FakeBotApi, tmp_path: Path) -> None:
    fake.rate_limit(3, retry_after=1)
    (tmp_path / "btkit.toml").write_text(
        "[actions]\napply = [\"telegram\"]\n\n[actions.telegram]\n"
        f"chat_ids = [{CHAT}]\napi_base_url = \"{fake.url}\"\nmin_interval_seconds = 0\npoll_timeout = 1\n"
    )
    env = {**os.environ, "BTKIT_TELEGRAM_TOKEN": TOKEN}
    proc = subprocess.run(
        [sys.executable, "-m", "btkit.cli", "paper", "--dump-dir", str(tmp_path / "dump"),
         "--replay-from", "20240201", "--replay-to", "20240202"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    printed = [line for line in proc.stdout.splitlines() if " opened @ " in line or " closed @ " in line]
    sent = [t for t in fake.texts(CHAT) if kind(t) in ("opened", "closed")]
    assert len(fake.refused) == 3  # three 429 answers, each retried after retry_after
    assert len(sent) == len(printed) > 0  # nothing lost
    assert [kind(t) for t in sent] == ["opened" if " opened @ " in p else "closed" for p in printed]
    journal = (tmp_path / "dump" / "live" / "events.jsonl").read_text()
    for text in (proc.stdout, proc.stderr, journal, *fake.texts()):
        assert TOKEN not in text and TOKEN.split(":")[1] not in text


def test_token_only_from_the_environment(fake: FakeBotApi) -> None:
    from btkit.errors import ConfigError
    from btkit_telegram.action import TelegramAction

    with pytest.raises(ConfigError, match="BTKIT_TELEGRAM_TOKEN only"):
        TelegramAction(token="x", chat_ids=[CHAT])
    os.environ.pop("BTKIT_TELEGRAM_TOKEN")
    with pytest.raises(ConfigError, match="set BTKIT_TELEGRAM_TOKEN"):
        TelegramAction(chat_ids=[CHAT])
