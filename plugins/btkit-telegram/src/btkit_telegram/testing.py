"""A fake Telegram Bot API on 127.0.0.1 for tests (``api_base_url = fake.url``).

It answers ``sendMessage`` (recorded in :attr:`FakeBotApi.messages`) and ``getUpdates`` (long-polls the
updates queued with :meth:`FakeBotApi.push_text`), refuses a wrong token with 401, and can answer the
next sends with 429 ``retry_after`` (:meth:`FakeBotApi.rate_limit`), like the real one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeBotApi:
    def __init__(self, token: str) -> None:
        self.token = token
        self.messages: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []  # sends answered with 429
        self.paths: list[str] = []  # request paths, token replaced by "<token>"
        self._updates: list[dict[str, Any]] = []
        self._next_id = 1
        self._limit: list[float] = []
        self.cond = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: the request line holds the token
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                fake._handle(self, body)

            def do_GET(self) -> None:
                fake._handle(self, {})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-bot-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeBotApi:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------ test controls
    def rate_limit(self, count: int, retry_after: float = 1) -> None:
        """Answer the next ``count`` sendMessage calls with 429 and ``retry_after``."""
        with self.cond:
            self._limit += [retry_after] * count

    def push_text(self, chat_id: int, text: str) -> None:
        """Queue a user message (a command) for getUpdates."""
        with self.cond:
            self._updates.append(
                {
                    "update_id": self._next_id,
                    "message": {"message_id": self._next_id, "chat": {"id": chat_id}, "text": text},
                }
            )
            self._next_id += 1
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(list(self.messages)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [m["text"] for m in self.messages if chat_id is None or m["chat_id"] == chat_id]

    # ------------------------------------------------------------ the API
    def _reply(self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        path = handler.path.split("?", 1)[0]
        with self.cond:
            self.paths.append(path.replace(self.token, "<token>"))
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            self._reply(handler, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        method = path[len(prefix) :]
        if method == "sendMessage":
            with self.cond:
                if self._limit:
                    retry = self._limit.pop(0)
                    self.refused.append(body)
                    self._reply(
                        handler,
                        429,
                        {
                            "ok": False,
                            "error_code": 429,
                            "description": f"Too Many Requests: retry after {retry:g}",
                            "parameters": {"retry_after": retry},
                        },
                    )
                    return
                self.messages.append(
                    {"chat_id": body.get("chat_id"), "text": body.get("text"), "at": time.time()}
                )
                self.cond.notify_all()
            self._reply(handler, 200, {"ok": True, "result": {"message_id": len(self.messages)}})
        elif method == "getUpdates":
            offset = int(body.get("offset") or 0)
            timeout = min(float(body.get("timeout") or 0), 2.0)
            deadline = time.monotonic() + timeout
            with self.cond:
                while True:
                    ready = [u for u in self._updates if u["update_id"] >= offset]
                    left = deadline - time.monotonic()
                    if ready or left <= 0:
                        break
                    self.cond.wait(left)
            self._reply(handler, 200, {"ok": True, "result": ready})
        else:
            self._reply(handler, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
