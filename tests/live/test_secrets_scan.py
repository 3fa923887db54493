"""Issue 10 #4: a Redis password (in the URL from the environment, an option or btkit.toml) and API
keys never appear in anything a ``btkit paper`` run prints, logs (``--debug`` included) or writes —
its dump directory, reports and the state it stores."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from btkit_redis.testing import free_port

REDIS = shutil.which("redis-server")
PASSWORD = "S3cr3tRedisPw9f41"
API_SECRET = "cfgApiSecret7d2e11"
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not on PATH")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    assert REDIS is not None
    port = free_port()
    data = tmp_path_factory.mktemp("redis-auth")
    proc = subprocess.Popen(
        [
            REDIS,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--requirepass",
            PASSWORD,
            "--dir",
            str(data),
            "--logfile",
            str(data / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, password=PASSWORD, socket_connect_timeout=1)
    try:
        for _ in range(200):
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield port
    finally:
        client.close()
        proc.kill()
        proc.wait()


def paper(tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "btkit.cli", "paper", "--debug", "--dump-dir", str(tmp_path / "dump")]
    cmd += ["--persistence", "redis", "--replay-from", "202402011000", "--replay-to", "202402011100", *extra]
    return subprocess.run(
        cmd, cwd=tmp_path, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120
    )


def leaks(tmp_path: Path, done: subprocess.CompletedProcess[str], port: int, bot: str) -> list[str]:
    found = [
        f"{name}: {line}"
        for name, text in (("stdout", done.stdout), ("stderr", done.stderr))
        for line in text.splitlines()
        if PASSWORD in line or API_SECRET in line
    ]
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "btkit.toml":
            raw = path.read_bytes()
            if PASSWORD.encode() in raw or API_SECRET.encode() in raw:
                found.append(str(path))
    client = redis.Redis(port=port, password=PASSWORD)
    try:
        for key in client.scan_iter(match=f"btkit:{bot}*"):
            value = client.get(key) if client.type(key) == b"string" else b""
            if PASSWORD.encode() in (value or b"") or PASSWORD.encode() in key:
                found.append(f"redis {key!r}")
    finally:
        client.close()
    return found


@pytest.mark.parametrize("where", ["env", "option", "config"])
def test_a_redis_password_is_never_printed_logged_or_written(tmp_path: Path, server: int, where: str) -> None:
    bot = f"secrets-{where}"
    url = f"redis://:{PASSWORD}@127.0.0.1:{server}/0"
    env = {"BINANCE_API_SECRET": API_SECRET}
    extra = ["--persistence-option", f"bot={bot}"]
    if where == "env":
        env["BTKIT__PERSISTENCE__URL"] = url
    elif where == "option":
        extra += ["--persistence-option", f"url={url}"]
    else:
        (tmp_path / "btkit.toml").write_text(
            f'[persistence]\nbackend = "redis"\nurl = "{url}"\n\n'
            f'[broker]\nname = "binance-futures"\napi_secret = "{API_SECRET}"\n'
        )
    done = paper(tmp_path, *extra, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "state in redis" in done.stdout and "redis://:***@127.0.0.1" in done.stdout
    assert " opened @ " in done.stdout  # it did trade, through the password-protected redis
    assert leaks(tmp_path, done, server, bot) == []


def test_a_wrong_password_error_names_the_server_but_not_the_password(tmp_path: Path, server: int) -> None:
    wrong = PASSWORD[::-1]
    done = paper(tmp_path, "--persistence-option", f"url=redis://:{wrong}@127.0.0.1:{server}/0")
    assert done.returncode != 0
    assert f"127.0.0.1:{server}" in done.stderr
    assert wrong not in done.stdout + done.stderr


def test_the_masker_masks_urls_and_secret_named_options() -> None:
    from btkit.secrets import mask, mask_options

    text = f"{{'url': 'redis://:{PASSWORD}@h:1/0', 'other': 'https://u:{PASSWORD}@x/y'}}"
    assert PASSWORD not in mask(text, secrets=[])
    shown = mask_options({"url": f"redis://user:{PASSWORD}@h/0", "api_secret": API_SECRET, "bot": "b"})
    assert shown == {"url": "redis://user:***@h/0", "api_secret": "***", "bot": "b"}
