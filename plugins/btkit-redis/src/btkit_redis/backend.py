"""Redis persistence backend: live state as JSON strings in Redis (redis-py).

Key layout (every part encoded with :func:`btkit.persist.keys.encode_part`, which never produces
``:``): documents at ``<prefix>:<bot>:<domain>:<part0>:...:<last>``, the owner lock at
``<prefix>:<bot>:lock`` and its fencing counter at ``<prefix>:<bot>:fence``, quarantined documents
at ``<prefix>:<bot>:quarantine:<domain>:<parts>:<stamp>`` (their reason at ``...:<stamp>:reason``).

- ``write()`` is one transaction (``atomic_batches = True``): a fenced Lua script for the owner, MULTI/EXEC
  for a non-exclusive client.
- Exclusive open: ``SET <lock> <host:pid:random> NX PX <lock_ttl>`` and, in the same script,
  ``INCR <prefix>:<bot>:fence``: every owner gets a new, larger *fencing token*. The lock is renewed
  by a heartbeat thread every ``lock_ttl / 3`` and by every write, and released on ``close()``. A
  process killed with SIGKILL leaves the lock behind for at most ``lock_ttl`` seconds (15 by
  default), after which a restart takes it.
- Every exclusive write (and quarantine) is one Lua script that compares the fencing token and the
  lock value *inside* the transaction: a process frozen (SIGSTOP, a VM pause) past ``lock_ttl``
  whose lock was taken by another process — even one that has ended since — finds the token
  changed, writes nothing and raises ``StateLockedError``, and never writes again. An expired lock
  that nobody took (the fence unchanged) is simply taken back.
- Redis unreachable → every call raises ``PersistenceError("redis at <url> unreachable: …; live
  trading pauses until it is back")``; nothing proceeds without a durable write.
- Durability is whatever the server is configured for; run it with ``appendonly yes`` and
  ``appendfsync always`` (see the package README). ``open()`` logs a WARNING when it can see weaker
  settings.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from btkit.errors import CorruptStateError, PersistenceError, StateLockedError
from btkit.persist.backend import LEFT_IN_PLACE, Change, Key
from btkit.persist.file import (
    check_domain,
    describe,
    dump_document,
    load_document,
    oversized_reason,
    utc_stamp,
)
from btkit.persist.keys import decode_part, encode_key, encode_part

log = logging.getLogger("btkit.persist.redis")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
URL_ENV = "BTKIT__PERSISTENCE__URL"

# Take the lock and a new fencing token (every owner gets a larger one). Returns the token or 0.
_TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return redis.call('INCR', KEYS[2]) end
return 0
"""
# Renew the lock if we still own it; take it again if it expired and nobody else took it meanwhile
# (the fencing token is still ours). 0: lost.
_RENEW = """
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return 0 end
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0
"""
# The fenced write: KEYS = lock, fence, documents...; ARGV = token, fence, ttl_ms, then per document
# 'D' (delete) or 'S' followed by the body. Nothing is applied unless the fence and the lock are ours.
_WRITE = """
local holder = redis.call('GET', KEYS[1])
local fence = redis.call('GET', KEYS[2])
if fence ~= ARGV[2] or (holder and holder ~= ARGV[1]) then
  return {0, holder or '', fence or ''}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
local a = 4
for i = 3, #KEYS do
  if ARGV[a] == 'D' then
    redis.call('DEL', KEYS[i])
    a = a + 1
  else
    redis.call('SET', KEYS[i], ARGV[a + 1])
    a = a + 2
  end
end
return {1}
"""
# The fenced quarantine: KEYS = lock, fence, document, target, reason key; ARGV = token, fence, reason.
_QUARANTINE = """
local holder = redis.call('GET', KEYS[1])
local fence = redis.call('GET', KEYS[2])
if fence ~= ARGV[2] or (holder and holder ~= ARGV[1]) then
  return {0, holder or '', fence or ''}
end
if redis.call('EXISTS', KEYS[3]) == 0 then return {2} end
redis.call('RENAME', KEYS[3], KEYS[4])
redis.call('SET', KEYS[5], ARGV[3])
return {1}
"""
# Delete the lock only if we own it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparseable redis url>"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()).rstrip(".") or type(exc).__name__


class RedisBackend:
    """Live state in Redis under ``<prefix>:<bot>:``. ``url`` defaults to ``$BTKIT__PERSISTENCE__URL``,
    then ``redis://127.0.0.1:6379/0``. Use one ``bot`` name per live bot sharing a Redis."""

    name = "redis"
    atomic_batches = True

    def __init__(
        self,
        url: str | None = None,
        prefix: str = "btkit",
        bot: str = "default",
        *,
        lock_ttl: float | str = 15.0,
        socket_timeout: float | str = 5.0,
    ):
        self.url = url or os.environ.get(URL_ENV) or DEFAULT_URL
        self.safe_url = redact_url(self.url)
        self.namespace = f"{encode_part(prefix)}:{encode_part(bot)}"
        try:  # options may arrive as strings from the command line (--persistence-option lock_ttl=5)
            self.lock_ttl = float(lock_ttl)
            self.socket_timeout = float(socket_timeout)
        except ValueError:
            raise PersistenceError(
                f"redis backend options lock_ttl={lock_ttl!r} and socket_timeout={socket_timeout!r} must be "
                "numbers of seconds"
            ) from None
        if not (self.lock_ttl > 0 and self.socket_timeout > 0):
            raise PersistenceError(
                f"redis backend options lock_ttl and socket_timeout must be positive, got {lock_ttl} and "
                f"{socket_timeout}"
            )
        self.lock_key = f"{self.namespace}:lock"
        self.fence_key = f"{self.namespace}:fence"
        self._mutex = threading.RLock()
        self._client: redis.Redis | None = None
        self._token: str | None = None
        self._fence: str | None = None  # our fencing token while we own the lock
        self._lost: StateLockedError | None = None  # set once the lock was lost: never write again
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"RedisBackend(url={self.safe_url!r}, namespace={self.namespace!r})"

    # ------------------------------------------------------------ lifecycle
    def open(self, *, exclusive: bool = False) -> None:
        """Connect (and PING). With ``exclusive=True`` take the owner lock or raise ``StateLockedError``."""
        with self._mutex:
            if self._client is None:
                try:
                    client = redis.Redis.from_url(
                        self.url,
                        socket_timeout=self.socket_timeout,
                        socket_connect_timeout=self.socket_timeout,
                        retry=Retry(NoBackoff(), 1),  # one reconnect for a stale pooled connection
                    )
                except ValueError as exc:
                    raise PersistenceError(
                        f"invalid redis url {self.safe_url}: {_one_line(exc)}; use redis://host:port/db"
                    ) from None
                self._client = client
                try:
                    with self._call("ping") as r:
                        r.ping()
                except BaseException:
                    self.close()
                    raise
                self._warn_weak_durability()
            if exclusive and self._token is None:
                self._take_lock()

    def close(self) -> None:
        """Stop the heartbeat, release the lock if we own it, disconnect. Idempotent."""
        self._stop.set()
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None and heartbeat is not threading.current_thread():
            heartbeat.join()
        with self._mutex:
            client, self._client = self._client, None
            token, self._token = self._token, None
            self._fence, self._lost = None, None
            if client is None:
                return
            if token is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    client.eval(_RELEASE, 1, self.lock_key, token)
            with contextlib.suppress(redis.RedisError, OSError):
                client.close()

    # ------------------------------------------------------------ protocol
    def read(self, domain: str, key: Key) -> dict[str, Any] | None:
        name = self._key(domain, key)
        with self._call("read") as r:
            try:
                size = int(r.strlen(name))  # the size first: a huge value is refused unread
                too_big = oversized_reason(size)
                raw = None if too_big is not None else r.get(name)
            except redis.ResponseError as exc:  # WRONGTYPE: something else stands at this key
                reason = f"not a string value ({_one_line(exc)})"
            else:
                if too_big is not None:
                    reason = too_big
                else:
                    if raw is None:
                        return None
                    try:
                        return load_document(raw)
                    except ValueError as exc:
                        reason = f"not a valid JSON object: {exc}"
        if self._token is None:  # a reader (btkit serve, report) never renames the owner's documents
            raise CorruptStateError(
                f"state document {describe(domain, key)} at {self.safe_url} is corrupt ({reason}); {LEFT_IN_PLACE}"
            )
        where = self.quarantine(domain, key, reason)
        raise CorruptStateError(
            f"state document {describe(domain, key)} at {self.safe_url} is corrupt ({reason}); it was "
            f"renamed to {where} — inspect it (restore it or accept losing that state) before restarting"
        )

    def write(self, changes: Sequence[Change]) -> None:
        """Apply all ``changes`` in one MULTI/EXEC. When opened exclusively, the lock is WATCHed and
        renewed in the same transaction: a process that lost the lock writes nothing."""
        prepared: list[tuple[str, bytes | None]] = []
        for change in changes:
            name = self._key(change.domain, change.key)
            body = (
                None if change.document is None else dump_document(change.domain, change.key, change.document)
            )
            prepared.append((name, body))
        if not prepared:
            return
        # One write at a time per process (the heartbeat takes the same mutex).
        with self._mutex, self._call("write") as r:
            if self._token is None:  # not the owner (an operator tool): a plain transaction
                with r.pipeline(transaction=True) as pipe:
                    for name, body in prepared:
                        if body is None:
                            pipe.delete(name)
                        else:
                            pipe.set(name, body)
                    pipe.execute()
                return
            self._check_owner()
            args: list[Any] = [self._token, self._fence, self._ttl_ms]
            for _name, body in prepared:
                args += ["D"] if body is None else ["S", body]
            keys = [self.lock_key, self.fence_key, *(name for name, _ in prepared)]
            self._fenced(r.eval(_WRITE, len(keys), *keys, *args))

    def _check_owner(self) -> None:
        if self._lost is not None:
            raise self._lost

    def _fenced(self, result: Any) -> Any:
        """Raise (and remember) the loss of the lock reported by a fenced script."""
        if int(result[0]) != 0:
            return result
        holder = bytes(result[1]).decode("utf-8", "replace") or "nobody"
        fence = bytes(result[2]).decode("utf-8", "replace") or "none"
        self._lost = self._lost_lock(holder, fence)
        log.error("%s", self._lost)
        raise self._lost

    def keys(self, domain: str) -> list[Key]:
        check_domain(domain)
        head = f"{self.namespace}:{domain}:"
        out: list[Key] = []
        with self._call("scan") as r:
            for raw in r.scan_iter(match=f"{head}*", count=1000):
                name = raw.decode("utf-8", "replace")
                parts = tuple(name[len(head) :].split(":"))
                try:
                    key = tuple(decode_part(p) for p in parts)
                    ok = encode_key(key) == parts
                except (ValueError, PersistenceError):
                    ok = False
                if ok:
                    out.append(key)
                else:
                    log.warning("ignoring redis key %r that btkit did not write", name)
        return sorted(out)

    def quarantine(self, domain: str, key: Key, reason: str) -> str:
        """RENAME the document to ``<prefix>:<bot>:quarantine:<domain>:<parts>:<stamp>`` (value
        untouched), store the reason next to it, log an ERROR, return the new key."""
        name = self._key(domain, key)
        where = name[len(self.namespace) + 1 :]  # "<domain>:<parts>"
        target = f"{self.namespace}:quarantine:{where}:{utc_stamp()}{secrets.token_hex(2)}"
        missing = PersistenceError(
            f"no state document {describe(domain, key)} at {self.safe_url} to quarantine"
        )
        reason_text = f"{describe(domain, key)}: {reason}"
        with self._mutex, self._call("quarantine") as r:
            if self._token is not None:  # the owner: fenced like every write
                self._check_owner()
                keys = [self.lock_key, self.fence_key, name, target, f"{target}:reason"]
                done = self._fenced(
                    r.eval(_QUARANTINE, len(keys), *keys, self._token, self._fence, reason_text)
                )
                if int(done[0]) == 2:
                    raise missing
            else:
                if not r.exists(name):
                    raise missing
                with r.pipeline(transaction=True) as pipe:
                    pipe.rename(name, target)
                    pipe.set(f"{target}:reason", reason_text)
                    pipe.execute()
        log.error("quarantined state document %s to redis key %s: %s", describe(domain, key), target, reason)
        return target

    # ------------------------------------------------------------ internals
    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.lock_ttl * 1000))

    def _key(self, domain: str, key: Key) -> str:
        check_domain(domain)
        return ":".join((self.namespace, domain, *encode_key(tuple(key))))

    @contextlib.contextmanager
    def _call(self, what: str) -> Iterator[redis.Redis]:
        client = self._client
        if client is None:
            raise PersistenceError(
                f"redis persistence backend {self.safe_url} is not open; call open() first"
            )
        try:
            yield client
        except redis.AuthenticationError as exc:
            raise PersistenceError(
                f"redis at {self.safe_url} refused the credentials ({_one_line(exc)}); check the password "
                f"in {URL_ENV}"
            ) from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise PersistenceError(
                f"redis at {self.safe_url} unreachable: {_one_line(exc)}; "
                "live trading pauses until it is back"
            ) from None
        except redis.WatchError:
            raise
        except redis.RedisError as exc:
            raise PersistenceError(
                f"redis {what} at {self.safe_url} failed: {_one_line(exc)}; the change did not happen"
            ) from None

    def _take_lock(self) -> None:
        token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(8)}"
        with self._call("lock") as r:
            fence = int(r.eval(_TAKE, 2, self.lock_key, self.fence_key, token, self._ttl_ms))
            if not fence:
                holder = r.get(self.lock_key)
                pttl = r.pttl(self.lock_key)
                who = holder.decode("utf-8", "replace") if holder else "?"
                raise StateLockedError(
                    f"another btkit live process owns redis {self.safe_url} {self.namespace} (lock held by "
                    f"{who}, {max(pttl, 0) / 1000:.0f} s left unless renewed); stop it, wait if it crashed, "
                    "or use another bot name"
                )
        self._token, self._fence, self._lost = token, str(fence), None
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(
            target=self._beat,
            args=(self._stop, token, str(fence)),
            name=f"btkit-redis-lock-{self.namespace}",
            daemon=True,
        )
        self._heartbeat.start()

    @property
    def lock_lost(self) -> StateLockedError | None:
        """Why this process no longer owns the state (None while it does, or when not exclusive)."""
        return self._lost

    def _beat(self, stop: threading.Event, token: str, fence: str) -> None:
        unreachable = False
        while not stop.wait(self.lock_ttl / 3):
            client = self._client
            if client is None:
                return
            try:
                with self._mutex:
                    if stop.is_set() or self._lost is not None:
                        return
                    result = client.eval(_RENEW, 2, self.lock_key, self.fence_key, token, self._ttl_ms, fence)
                    if result == 0:
                        holder = client.get(self.lock_key)
                        now = client.get(self.fence_key)
                        self._lost = self._lost_lock(
                            holder.decode("utf-8", "replace") if holder else "nobody",
                            now.decode("utf-8", "replace") if now else "none",
                        )
            except (redis.RedisError, OSError) as exc:
                if not unreachable:
                    log.warning("cannot renew the redis lock at %s: %s", self.safe_url, _one_line(exc))
                unreachable = True
                continue
            unreachable = False
            if result == 0:
                log.error("%s", self._lost)
                return

    def _lost_lock(self, holder: str, fence: str | None = None) -> StateLockedError:
        taken = "" if fence is None else f" (fencing token {fence}, ours was {self._fence})"
        return StateLockedError(
            f"this process lost the lock on redis {self.safe_url} {self.namespace}{taken} to {holder}; "
            "nothing was written and this process writes nothing more — stop it (another process may "
            "own the state now)"
        )

    def _warn_weak_durability(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            config = {str(k): str(v) for k, v in client.config_get("*").items()}
        except (redis.RedisError, OSError):
            return  # CONFIG disabled (managed Redis): nothing to check
        aof, fsync = config.get("appendonly"), config.get("appendfsync")
        if aof != "yes" or fsync != "always":
            log.warning(
                "redis at %s runs with appendonly=%s appendfsync=%s: acknowledged btkit state can be lost "
                "when redis or its machine crashes; set appendonly yes and appendfsync always",
                self.safe_url,
                aof,
                fsync,
            )
        policy = config.get("maxmemory-policy", "noeviction")
        if config.get("maxmemory", "0") != "0" and policy != "noeviction":
            log.warning(
                "redis at %s may evict keys (maxmemory-policy=%s): btkit state could silently disappear; "
                "set maxmemory-policy noeviction",
                self.safe_url,
                policy,
            )
