"""btkit-redis against a real redis-server: the shared contract suite, Redis going away and coming
back (AOF), the owner lock (SIGKILLed owner, lost lock), key layout and registration."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pluggy
import pytest

import btkit_redis
from btkit import hookspecs
from btkit.errors import CorruptStateError, PersistenceError, StateLockedError
from btkit.persist.backend import Change, Key
from btkit.persist.keys import encode_key
from btkit.testing.persistence_contract import HOSTILE_PARTS, PersistenceContract
from btkit_redis import RedisBackend, redact_url
from btkit_redis.testing import REDIS_SERVER, RedisServer, free_port

pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None, reason="redis-server is not on PATH (Debian/Ubuntu: apt-get install redis-server)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path_factory.mktemp("redis"))
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path / "redis")
    srv.start()
    yield srv
    srv.kill()


@pytest.fixture
def bot() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def doc_key(bot: str, domain: str, key: Key) -> str:
    return ":".join(("btkit", bot, domain, *encode_key(key)))


class TestRedisBackendContract(PersistenceContract):
    @pytest.fixture
    def make_backend(self, server: RedisServer, bot: str) -> Callable[[], RedisBackend]:
        return lambda: RedisBackend(server.url, bot=bot)

    @pytest.fixture
    def corrupt_document(self, server: RedisServer, bot: str) -> Callable[[str, Key], None]:
        def corrupt(domain: str, key: Key) -> None:
            with server.client() as c:
                assert c.set(doc_key(bot, domain, key), b'{"v": 1, "torn\xff')

        return corrupt

    @pytest.fixture
    def raw_document(self, server: RedisServer, bot: str) -> Callable[[str, Key, bytes], None]:
        def store(domain: str, key: Key, raw: bytes) -> None:
            with server.client() as c:
                assert c.set(doc_key(bot, domain, key), raw)

        return store


@pytest.fixture
def backend(server: RedisServer, bot: str) -> Iterator[RedisBackend]:
    b = RedisBackend(server.url, bot=bot)
    b.open(exclusive=True)
    yield b
    b.close()


# ---------------------------------------------------------------- layout and registration
def test_key_layout(backend: RedisBackend, server: RedisServer, bot: str) -> None:
    backend.write([Change("signal", ("smacross", "BTC/USDT:USDT"), {"v": 1})])
    with server.client() as c:
        names = sorted(n.decode() for n in c.scan_iter(match=f"btkit:{bot}:*"))
        assert names == [
            f"btkit:{bot}:fence",
            f"btkit:{bot}:lock",
            f"btkit:{bot}:signal:smacross:BTC%2FUSDT%3AUSDT",
        ]
        assert c.pttl(f"btkit:{bot}:lock") > 0


def test_bots_and_prefixes_do_not_see_each_other(server: RedisServer, bot: str) -> None:
    a, b = RedisBackend(server.url, bot=bot), RedisBackend(server.url, bot=bot + ":x")
    c = RedisBackend(server.url, prefix="other", bot=bot)
    for x in (a, b, c):
        x.open(exclusive=True)
    try:
        a.write([Change("signal", ("s",), {"who": "a"})])
        b.write([Change("signal", ("s",), {"who": "b"})])
        assert c.keys("signal") == []
        assert a.read("signal", ("s",)) == {"who": "a"}
        assert b.keys("signal") == [("s",)]
    finally:
        for x in (a, b, c):
            x.close()


def test_url_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, server: RedisServer, bot: str
) -> None:
    monkeypatch.setenv("BTKIT__PERSISTENCE__URL", server.url)
    b = RedisBackend(bot=bot)
    assert b.url == server.url
    b.open()
    b.close()


def test_registered_as_redis() -> None:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(btkit_redis)
    pm.check_pending()
    [[spec]] = pm.hook.btkit_persistence_backends()
    assert (spec.name, spec.dist) == ("redis", "btkit-redis")
    assert isinstance(spec.factory(url="redis://127.0.0.1:1/0"), RedisBackend)  # builds without connecting


def test_importing_the_plugin_does_not_import_redis_py() -> None:
    import subprocess
    import sys

    code = "import sys, btkit_redis; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # every btkit start imports the plugin: it must stay cheap


def test_wrong_type_value_is_quarantined(backend: RedisBackend, server: RedisServer, bot: str) -> None:
    with server.client() as c:
        c.rpush(doc_key(bot, "signal", ("s", "X")), "a", "b")
    assert backend.keys("signal") == [("s", "X")]
    with pytest.raises(CorruptStateError, match="not a string value"):
        backend.read("signal", ("s", "X"))
    with server.client() as c:
        [moved] = [
            n for n in c.scan_iter(match=f"btkit:{bot}:quarantine:signal:s:X:*") if not n.endswith(b"reason")
        ]
        assert c.lrange(moved, 0, -1) == [b"a", b"b"]
        assert c.get(moved + b":reason").startswith(b"signal ('s', 'X'): not a string value")


def test_quarantine_keeps_bytes(backend: RedisBackend, server: RedisServer, bot: str) -> None:
    backend.write([Change("risk", ("r", "a/b"), {"v": 1})])
    with server.client() as c:
        c.set(doc_key(bot, "risk", ("r", "a/b")), b"\xff\x00garbage")
    with pytest.raises(CorruptStateError) as err:
        backend.read("risk", ("r", "a/b"))
    target = str(err.value).split("renamed to ")[1].split(" ")[0]
    assert target.startswith(f"btkit:{bot}:quarantine:risk:r:a%2Fb:")
    with server.client() as c:
        assert c.get(target) == b"\xff\x00garbage"


def test_stray_keys_are_ignored(backend: RedisBackend, server: RedisServer, bot: str) -> None:
    backend.write([Change("signal", ("s", "A"), {"v": 1})])
    with server.client() as c:
        c.set(f"btkit:{bot}:signal:not encoded/!", "{}")
    assert backend.keys("signal") == [("s", "A")]


def test_weak_server_durability_is_warned_about(
    server: RedisServer, bot: str, caplog: pytest.LogCaptureFixture
) -> None:
    with server.client() as c:
        c.config_set("appendfsync", "everysec")
        try:
            with caplog.at_level(logging.WARNING):
                b = RedisBackend(server.url, bot=bot)
                b.open()
                b.close()
        finally:
            c.config_set("appendfsync", "always")
    assert "appendfsync=everysec" in caplog.text
    caplog.clear()
    with server.client() as c:
        c.config_set("maxmemory", "100mb")
        c.config_set("maxmemory-policy", "allkeys-lru")
        try:
            with caplog.at_level(logging.WARNING):
                b = RedisBackend(server.url, bot=bot)
                b.open()
                b.close()
        finally:
            c.config_set("maxmemory-policy", "noeviction")
            c.config_set("maxmemory", "0")
    assert "maxmemory-policy=allkeys-lru" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        b = RedisBackend(server.url, bot=bot)
        b.open()
        b.close()
    assert "appendfsync" not in caplog.text and "maxmemory" not in caplog.text


# ---------------------------------------------------------------- redis going away
def test_unreachable_redis_is_a_persistence_error_naming_the_url() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(PersistenceError) as err:
        RedisBackend(url).open()
    message = str(err.value)
    assert message.startswith(f"redis at redis://:***@127.0.0.1:{url.split(':')[-1]} unreachable: ")
    assert message.endswith("; live trading pauses until it is back")
    assert "s3cret" not in message and "\n" not in message


def test_redis_killed_mid_run_then_restarted_with_its_aof(own_server: RedisServer, bot: str) -> None:
    b = RedisBackend(own_server.url, bot=bot)
    b.open(exclusive=True)
    try:
        docs = {("s", p): {"p": p, "n": i} for i, p in enumerate(HOSTILE_PARTS)}
        b.write([Change("signal", k, v) for k, v in docs.items()])
        b.write([Change("risk", ("r",), {"positions": [1, 2]})])

        own_server.kill()
        for call in (
            lambda: b.write([Change("signal", ("s", "during"), {"v": 1})]),
            lambda: b.read("signal", ("s", "..")),
            lambda: b.keys("signal"),
            lambda: b.quarantine("risk", ("r",), "x"),
        ):
            with pytest.raises(
                PersistenceError, match=r"unreachable: .*live trading pauses until it is back"
            ):
                call()

        own_server.start()  # same port, same directory: the AOF is replayed
        assert sorted(b.keys("signal")) == sorted(docs)
        for k, v in docs.items():
            assert b.read("signal", k) == v
        assert b.read("risk", ("r",)) == {"positions": [1, 2]}
        assert b.read("signal", ("s", "during")) is None  # the refused write did not happen
        b.write([Change("signal", ("s", "after"), {"v": 2})])
        assert b.read("signal", ("s", "after")) == {"v": 2}
        with pytest.raises(StateLockedError):  # still the owner after the restart
            RedisBackend(own_server.url, bot=bot).open(exclusive=True)
    finally:
        b.close()


# ---------------------------------------------------------------- the owner lock
CHILD_OWNER = textwrap.dedent(
    """
    import sys
    from btkit.persist.backend import Change
    from btkit_redis import RedisBackend
    b = RedisBackend(sys.argv[1], bot=sys.argv[2], lock_ttl=float(sys.argv[3]))
    b.open(exclusive=True)
    b.write([Change("signal", ("s",), {"from": "child"})])
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def test_a_sigkilled_owner_blocks_a_restart_only_until_the_lock_expires(
    server: RedisServer, bot: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_OWNER, server.url, bot, "1.5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with pytest.raises(StateLockedError, match=rf"lock held by {socket.gethostname()}:{child.pid}:"):
            RedisBackend(server.url, bot=bot).open(exclusive=True)
    finally:
        child.kill()
        child.wait()
    b = RedisBackend(server.url, bot=bot)
    with pytest.raises(StateLockedError):  # the dead owner's lock is still there right after the kill
        b.open(exclusive=True)
    deadline = time.monotonic() + 30
    while True:  # ... and expires by itself: the restart is not blocked forever
        try:
            b.open(exclusive=True)
            break
        except StateLockedError:
            assert time.monotonic() < deadline, "the lock of a killed owner never expired"
            time.sleep(0.2)
    try:
        assert b.read("signal", ("s",)) == {"from": "child"}
    finally:
        b.close()


def test_the_heartbeat_renews_the_lock(server: RedisServer, bot: str) -> None:
    b = RedisBackend(server.url, bot=bot, lock_ttl=1.5)
    b.open(exclusive=True)
    try:
        with server.client() as c:
            lowest = c.pttl(f"btkit:{bot}:lock")
            deadline = time.monotonic() + 30
            while (now := c.pttl(f"btkit:{bot}:lock")) < lowest + 100:  # renewed without any write
                assert now > 0 and time.monotonic() < deadline, "the lock was never renewed"
                lowest = min(lowest, now)
                time.sleep(0.05)
    finally:
        b.close()
    with server.client() as c:
        assert c.exists(f"btkit:{bot}:lock") == 0  # released on close


def test_a_process_that_lost_the_lock_writes_nothing(
    backend: RedisBackend, server: RedisServer, bot: str
) -> None:
    backend.write([Change("signal", ("s",), {"v": "mine"})])
    with server.client() as c:
        c.set(f"btkit:{bot}:lock", "otherhost:1:abc", px=60_000)  # e.g. we were paused past the TTL
    with pytest.raises(StateLockedError, match=r"lost the lock .* otherhost:1:abc; nothing was written"):
        backend.write([Change("signal", ("s",), {"v": "late"}), Change("signal", ("t",), {"v": 1})])
    assert backend.read("signal", ("s",)) == {"v": "mine"}
    assert backend.keys("signal") == [("s",)]


def freeze(b: RedisBackend) -> None:
    """What SIGSTOP does to the heartbeat: it stops renewing (the process is frozen)."""
    b._stop.set()
    if b._heartbeat is not None:
        b._heartbeat.join()


def test_a_frozen_owner_whose_lease_another_process_took_and_released_never_writes_again(
    server: RedisServer, bot: str
) -> None:
    """Issue 10 #1 (split brain): frozen past lock_ttl, a second process starts, trades and ends
    (releasing the lock); the first resumes. It must not take the lock back and write from its stale
    memory: the fencing token changed, so every later write (and quarantine) is refused."""
    first = RedisBackend(server.url, bot=bot, lock_ttl=0.3)
    first.open(exclusive=True)
    try:
        first.write([Change("signal", ("s", "BTC"), {"v": "first"})])
        freeze(first)
        time.sleep(0.5)  # the lease expires while the first is frozen
        second = RedisBackend(server.url, bot=bot, lock_ttl=0.3)
        second.open(exclusive=True)
        second.write(
            [Change("signal", ("s", "BTC"), {"v": "second"}), Change("history", ("s", "BTC"), {"n": 1})]
        )
        second.close()  # ended: the lock is free again
        with server.client() as c:
            assert c.exists(f"btkit:{bot}:lock") == 0
        for _ in range(2):  # refused, and refused again: it never writes again
            with pytest.raises(StateLockedError, match="lost the lock") as err:
                first.write(
                    [Change("signal", ("s", "BTC"), {"v": "stale"}), Change("history", ("s", "BTC"), None)]
                )
            assert "\n" not in str(err.value)
        with pytest.raises(StateLockedError):
            first.quarantine("history", ("s", "BTC"), "stale process")
        assert first.lock_lost is not None
        assert first.read("signal", ("s", "BTC")) == {"v": "second"}
        assert first.read("history", ("s", "BTC")) == {"n": 1}
        with server.client() as c:
            assert c.exists(f"btkit:{bot}:lock") == 0  # not taken back either
    finally:
        first.close()


def test_the_heartbeat_of_a_resumed_owner_does_not_take_a_changed_lock_back(
    server: RedisServer, bot: str
) -> None:
    first = RedisBackend(server.url, bot=bot, lock_ttl=0.3)
    first.open(exclusive=True)
    try:
        with server.client() as c:  # another owner came and went while we were frozen
            c.delete(f"btkit:{bot}:lock")
            c.incr(f"btkit:{bot}:fence")
        deadline = time.monotonic() + 10
        while first.lock_lost is None:
            assert time.monotonic() < deadline, "the heartbeat never noticed the lost lock"
            time.sleep(0.02)
        with server.client() as c:
            assert c.exists(f"btkit:{bot}:lock") == 0
    finally:
        first.close()


def test_an_expired_lock_is_retaken_by_the_next_write(
    backend: RedisBackend, server: RedisServer, bot: str
) -> None:
    with server.client() as c:
        c.delete(f"btkit:{bot}:lock")  # expired while redis was down, nobody else took it
        backend.write([Change("signal", ("s",), {"v": 1})])
        assert c.get(f"btkit:{bot}:lock") is not None
    with pytest.raises(StateLockedError):
        RedisBackend(server.url, bot=bot).open(exclusive=True)


@pytest.mark.parametrize(
    "spelling", ["redis://localhost:{port}", "redis://127.0.0.1:{port}/0/", "redis://127.0.0.1:{port}?db=0"]
)
def test_the_same_server_db_and_namespace_written_another_way_is_one_lock(
    backend: RedisBackend, server: RedisServer, bot: str, spelling: str
) -> None:
    """Issue 10 #2 for Redis: the lock lives in the server under the namespace, so another spelling
    of the same server and db (host name, trailing slash, ``?db=0``) meets the same lock."""
    other = RedisBackend(spelling.format(port=server.port), bot=bot)
    with pytest.raises(StateLockedError, match="another btkit live process owns"):
        other.open(exclusive=True)
    other.close()


def test_redact_url() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("redis://user:pw@host:1/2") == "redis://user:***@host:1/2"
    assert redact_url("rediss://:pw@host/0") == "rediss://:***@host/0"


def test_pid_in_lock_token_is_this_process(backend: RedisBackend, server: RedisServer, bot: str) -> None:
    with server.client() as c:
        assert c.get(f"btkit:{bot}:lock").decode().startswith(f"{socket.gethostname()}:{os.getpid()}:")


def test_options_from_the_command_line_may_be_strings() -> None:
    b = RedisBackend("redis://127.0.0.1:1/0", lock_ttl="2.5", socket_timeout="1")
    assert (b.lock_ttl, b.socket_timeout) == (2.5, 1.0)
    for bad in ({"lock_ttl": "soon"}, {"lock_ttl": 0}, {"socket_timeout": -1}):
        with pytest.raises(PersistenceError, match="must be"):
            RedisBackend("redis://127.0.0.1:1/0", **bad)
