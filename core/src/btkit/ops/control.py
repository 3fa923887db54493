"""Control requests and the bot journal: the files ``btkit serve`` and ``btkit live``/``paper`` share.

Both live in the dump directory, beside the state, whatever the persistence backend:

* ``<dump>/control/*.json`` — a request (``stop``, or ``force-close`` of one symbol) written atomically by
  ``btkit serve --allow-control``; the live runner polls the directory about twice a second, applies the
  request on its event loop (between ticks) and renames the file to ``*.done.json`` with the outcome.
* ``<dump>/live/events.jsonl`` — one JSON line per opened/closed/cancelled/scheduled signal, risk
  rejection and error of the running bot (the API's ``/api/logs`` and ``/api/risk``, the dashboard's
  recent events). Lines are appended whole; a reader ignores a last line without its newline.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from btkit.secrets import mask

log = logging.getLogger("btkit.ops")

CONTROL_DIR = "control"
JOURNAL = Path("live") / "events.jsonl"
KINDS = ("stop", "force-close")
POLL_SECONDS = 0.5


def private_dir(dump_dir: Path, sub: str | Path) -> Path:
    """``dump_dir/sub``, created owner-only (0700) like the state directory itself."""
    dump_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = dump_dir / sub
    folder.mkdir(exist_ok=True, mode=0o700)
    return folder


# ---------------------------------------------------------------- control requests
def write_request(dump_dir: Path, kind: str, symbol: str | None = None) -> dict[str, Any]:
    """Write one request atomically (temp file + rename); returns it (with its ``id``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown control request {kind!r}")
    folder = private_dir(dump_dir, CONTROL_DIR)
    req = {"id": uuid.uuid4().hex[:12], "kind": kind, "symbol": symbol, "requested_at": _now_ms()}
    tmp = folder / f".{req['id']}.tmp"
    tmp.write_text(json.dumps(req), encoding="utf-8")
    os.replace(tmp, folder / f"{req['id']}.json")
    return req


def list_requests(dump_dir: Path) -> list[dict[str, Any]]:
    """Every request, pending and done (newest last)."""
    out = []
    folder = dump_dir / CONTROL_DIR
    if not folder.is_dir():
        return out
    for path in folder.glob("*.json"):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda r: r.get("requested_at", 0))


class ControlWatcher:
    """Polls ``<dump>/control`` on a thread and hands each new request to ``apply(request) -> outcome``."""

    def __init__(self, dump_dir: Path, apply: Callable[[dict[str, Any]], str]) -> None:
        self.folder = dump_dir / CONTROL_DIR
        self.apply = apply
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="btkit-control", daemon=True)

    def start(self) -> ControlWatcher:
        self.thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except Exception as exc:  # never let the watcher die silently
                log.warning("control request failed: %s", exc)

    def poll(self) -> None:
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.json")):
            if path.name.endswith(".done.json"):
                continue
            try:
                req = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            try:
                outcome = self.apply(req)
            except Exception as exc:
                outcome = f"failed: {type(exc).__name__}: {exc}"
            req.update(outcome=outcome, done_at=_now_ms())
            done = path.with_name(path.name[: -len(".json")] + ".done.json")
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(req), encoding="utf-8")
            os.replace(tmp, done)
            path.unlink(missing_ok=True)
            log.warning("control request %s %s: %s", req.get("kind"), req.get("symbol") or "", outcome)


# ---------------------------------------------------------------- the journal
class Journal:
    """Appends the bot's events to ``<dump>/live/events.jsonl`` (listeners on the event streams)."""

    def __init__(self, dump_dir: Path) -> None:
        self.dump_dir = dump_dir
        self.path = dump_dir / JOURNAL
        self._lock = threading.Lock()

    def write(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"ts": _now_ms(), "kind": kind, **fields}, default=str)
        with self._lock:
            if not self.path.parent.is_dir():  # created at the first event, never before the run starts
                private_dir(self.dump_dir, JOURNAL.parent)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(mask(line) + "\n")

    def on_signal(self, result: Any) -> None:
        if result.action not in ("opened", "closed", "cancelled", "scheduled"):
            return
        fields: dict[str, Any] = {
            "symbol": result.symbol,
            "strategy": result.strategy_name,
            "action": result.action,
            "time": result.timestamp,
            "price": result.current_price,
        }
        if result.action == "closed":
            fields.update(reason=result.close_reason, pnl_percentage=result.pnl.pnl_percentage)
        elif result.action == "cancelled":
            fields.update(reason=result.reason)
        self.write("signal", **fields)

    def on_risk(self, rejection: Any) -> None:
        self.write(
            "risk",
            symbol=rejection.symbol,
            strategy=rejection.strategy_name,
            risk=rejection.risk_name,
            note=rejection.note,
            time=rejection.timestamp,
        )

    def on_error(self, event: Any) -> None:
        self.write("error", where=event.where, error=f"{type(event.error).__name__}: {event.error}")

    def subscribe(self) -> list[Callable[[], None]]:
        from btkit import events

        return [
            events.listen_signal_live(self.on_signal),
            events.listen_risk(self.on_risk),
            events.listen_error(self.on_error),
        ]


def read_journal(dump_dir: Path, limit: int = 200, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The last ``limit`` whole lines of the journal (of ``kinds`` when given), oldest first."""
    path = dump_dir / JOURNAL
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 2_000_000))  # the tail only: a journal grows for weeks
            data = fh.read()
    except FileNotFoundError:
        return []
    if size > 2_000_000:
        data = data[data.find(b"\n") + 1 :]
    if not data.endswith(b"\n"):  # a line being appended right now
        data = data[: data.rfind(b"\n") + 1]
    wanted = set(kinds) if kinds is not None else None
    out = []
    for raw in data.splitlines():
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        if wanted is None or item.get("kind") in wanted:
            out.append(item)
    return out[-limit:]


def _now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
