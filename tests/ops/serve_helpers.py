"""Real ``btkit paper`` and ``btkit serve`` processes for the API and dashboard tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

TOKEN = "serve-test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def btkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "btkit.cli", *args]


def paper(dump: Path, *extra: str, start: str = "20240201", end: str = "202402011230") -> list[str]:
    return btkit("paper", "--dump-dir", str(dump), "--replay-from", start, "--replay-to", end, *extra)


def run_paper(dump: Path, *extra: str, **kw: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(paper(dump, *extra, **kw), capture_output=True, text=True, timeout=120, cwd=dump.parent)
    assert proc.returncode == 0, proc.stderr
    return proc


class Served:
    """``btkit serve`` on a free port, stopped on exit."""

    def __init__(
        self,
        dump: Path,
        *extra: str,
        token: str | None = TOKEN,
        replay: tuple[str, str] | None = ("20240201", "202402011230"),
    ) -> None:
        """``replay``: the range of the paper replay whose own state is served (as ``paper`` above)."""
        self.port = free_port()
        if replay is not None:
            extra = (*extra, "--replay-from", replay[0], "--replay-to", replay[1])
        env = {k: v for k, v in os.environ.items() if k != "BTKIT_SERVE_TOKEN"}
        if token is not None:
            env["BTKIT_SERVE_TOKEN"] = token
        self.token = token
        self.proc = subprocess.Popen(
            btkit("serve", "--dump-dir", str(dump), "--port", str(self.port), *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=dump.parent,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"btkit serve exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                status, _ = self.get("/health", auth=False)
                if status in (200, 503):
                    return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("btkit serve did not answer within 60 s")

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        try:
            self.out, self.err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, self.err = self.proc.communicate()

    def request(
        self, method: str, path: str, *, auth: bool = True, body: bytes | None = None, token: str | None = None
    ) -> tuple[int, Any]:
        headers = {}
        if auth:
            headers["Authorization"] = f"Bearer {token or self.token}"
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())

    def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> tuple[int, Any]:
        return self.request("POST", path, body=kw.pop("body", b""), **kw)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
