"""A real redis-server on a free loopback port, for tests (this package's and yours).

``RedisServer(directory).start()`` runs ``redis-server`` with AOF and ``appendfsync always`` in
``directory``; ``kill()`` SIGKILLs it; ``start()`` again replays the AOF. Needs ``redis-server`` on PATH
(Debian/Ubuntu: ``apt-get install redis-server``); ``REDIS_SERVER`` is None when it is missing.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server on a free loopback port, AOF with fsync on every write, data in ``dir``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            for _ in range(200):
                if self.proc.poll() is not None:
                    pytest.fail(
                        f"redis-server exited with {self.proc.returncode}; see {self.dir / 'redis.log'}"
                    )
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
                except redis.ResponseError:  # "LOADING": still replaying the AOF
                    time.sleep(0.05)
            pytest.fail("redis-server did not answer PING within 10 s")
        finally:
            client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)
