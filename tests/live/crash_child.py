"""The process the crash-loop tests kill: a live paper replay over the simulated exchange.

It runs ``Live.background`` for a few symbols on one :class:`btkit.ReplayClock` (speed None) with the
file persistence backend in ``--dump-dir``, a strategy that opens every few minutes with short
lifetimes (some entries scheduled), and a paper broker that logs every call. Two logs (JSON lines,
each appended with ``fsync``) go to ``--log-dir``:

- ``events.jsonl`` — every opened/scheduled/closed/cancelled result, written *after* the engine
  reported it: these are acknowledged writes that must survive any crash;
- ``broker.jsonl`` — every broker call, written *before* the broker confirms it: the side effects.

Usage::

    python crash_child.py --dump-dir D --log-dir L [--start MS] [--minutes N] [--symbols A,B]
    python crash_child.py --serve   # fork server: one JSON object of options per stdin line

The fork server imports btkit once and forks a fresh process per request (a real process, killed
with a real SIGKILL) so hundreds of rounds fit in a CI budget. It answers ``pid <n>`` per request
and ``exit <n> <status>`` when that process ends.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import signal
import sys
import threading
from datetime import datetime
from typing import Any

START_MS = 1_706_745_600_000  # 2024-02-01 00:00 UTC
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BTC/USDT:USDT")
STRATEGY = "crashy"
EVERY_MINUTES = 4
LIFETIME_MINUTES = 12
DISTANCE = 0.0025  # TP/SL distance from the entry (0.25 %)
ENGINE_CONFIG: dict[str, Any] = {
    "percent_slippage": 0.05,
    "percent_fee": 0.05,
    "min_takeprofit_distance_percent": 0.2,
    "min_stoploss_distance_percent": 0.2,
    "schedule_await_minutes": 6,
}


def append_line(path: str, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync it: once this returns, the line survives a SIGKILL."""
    data = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def get_signal(symbol: str, when: datetime, current_price: float) -> dict[str, Any] | None:
    """Every EVERY_MINUTES minutes: a long or short, sometimes as a resting limit entry."""
    minute = int(when.timestamp()) // 60
    if minute % EVERY_MINUTES:
        return None
    salt = int.from_bytes(hashlib.sha256(f"{symbol}{minute}".encode()).digest()[:2], "big")
    long = salt % 2 == 0
    entry = current_price
    signal: dict[str, Any] = {
        "position": "long" if long else "short",
        "minute_estimated_time": LIFETIME_MINUTES,
    }
    if salt % 5 == 0:  # a resting entry a little away from the price: fills or times out
        entry = current_price * (1 - 0.0004 if long else 1 + 0.0004)
        signal["price_open"] = entry
    up, down = entry * (1 + DISTANCE), entry * (1 - DISTANCE)
    signal["price_take_profit"] = up if long else down
    signal["price_stop_loss"] = down if long else up
    return signal


class LoggingPaperBroker:
    """Confirms every action like the paper broker, after logging it durably. With ``kill_at`` the
    process kills itself when the broker is called for the ``kill_at``-th time (before it answers)."""

    def __init__(self, path: str, kill_at: int | None = None) -> None:
        self.path = path
        self.kill_at = kill_at
        self.count = 0

    def _log(self, method: str, p: Any) -> bool:
        self.count += 1
        if self.count == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        append_line(
            self.path,
            {
                "pid": os.getpid(),
                "method": method,
                "client_order_id": p.client_order_id,
                "signal_id": p.signal_id,
                "symbol": p.symbol,
                "attempt": p.attempt,
                "when": p.when,
            },
        )
        return True

    def on_signal_open_commit(self, p: Any) -> bool:
        return self._log("open" if p.type == "open" else "schedule", p)

    def on_signal_close_commit(self, p: Any) -> bool:
        return self._log("close", p)

    def on_signal_cancel_commit(self, p: Any) -> bool:
        return self._log("cancel", p)


def kill_before_write(number: int) -> dict[str, Any]:
    """SIGKILL this process just before the ``number``-th state document write or delete.

    No write is exempt: the interval bucket is written together with the decision it leads to, so a
    kill while get_signal runs just asks the strategy again after the restart.
    """
    from btkit.persist.file import FileBackend

    count = {"n": 0}
    real_replace, real_delete = FileBackend._replace, FileBackend._delete

    def before(change: Any) -> None:
        count["n"] += 1
        if count["n"] == number:
            os.kill(os.getpid(), signal.SIGKILL)

    def replace(self: Any, change: Any, path: Any, data: bytes) -> None:
        before(change)
        real_replace(self, change, path, data)

    def delete(self: Any, change: Any, path: Any) -> None:
        before(change)
        real_delete(self, change, path)

    FileBackend._replace = replace  # type: ignore[method-assign]
    FileBackend._delete = delete  # type: ignore[method-assign]
    return count


def log_writes(path: str) -> None:
    """Log every Redis state write: ``attempt`` before it is sent, ``done`` once it returned."""
    from btkit_redis.backend import RedisBackend

    real = RedisBackend.write

    def write(self: Any, changes: Any) -> None:
        append_line(path, {"pid": os.getpid(), "what": "attempt", "n": len(changes)})
        real(self, changes)
        append_line(path, {"pid": os.getpid(), "what": "done", "n": len(changes)})

    RedisBackend.write = write  # type: ignore[method-assign]


def run(options: dict[str, Any]) -> int:
    import btkit
    from btkit.engine import live

    writes = (
        kill_before_write(int(options["kill_before_write"])) if options.get("kill_before_write") else None
    )

    dump_dir, log_dir = options["dump_dir"], options["log_dir"]
    start = int(options.get("start", START_MS))
    minutes = int(options.get("minutes", 600))
    symbols = options.get("symbols") or list(SYMBOLS)
    events_log = os.path.join(log_dir, "events.jsonl")
    broker_log = os.path.join(log_dir, "broker.jsonl")

    btkit.set_config(**ENGINE_CONFIG)
    if options.get("persistence") == "sqlite":  # the same crash loop over btkit-sqlite (issue 6)
        os.makedirs(dump_dir, exist_ok=True)
        btkit.use_persistence("sqlite", path=os.path.join(dump_dir, "btkit.sqlite3"))
    elif options.get("persistence") == "redis":  # the freeze loop over btkit-redis (issue 10)
        btkit.use_persistence(
            "redis", url=options["redis_url"], bot=options["bot"], lock_ttl=options.get("lock_ttl", 15)
        )
        log_writes(os.path.join(log_dir, "writes.jsonl"))
    else:
        btkit.use_persistence("file", root=dump_dir)
    btkit.add_strategy(STRATEGY, get_signal, interval="1m")
    btkit.Broker.use_adapter(LoggingPaperBroker(broker_log, options.get("kill_in_broker_call")))
    btkit.Broker.enable()

    def acknowledge(result: Any) -> None:
        if result.action not in ("opened", "scheduled", "closed", "cancelled"):
            return
        append_line(
            events_log,
            {
                "pid": os.getpid(),
                "action": result.action,
                "symbol": result.symbol,
                "signal_id": result.signal.id,
                "timestamp": result.timestamp,
                "price": result.current_price,
                "reason": getattr(result, "close_reason", None) or getattr(result, "reason", None),
            },
        )

    errors: list[str] = []
    btkit.listen_signal_live(acknowledge)
    btkit.listen_error(lambda event: errors.append(str(event)))
    clock = btkit.ReplayClock(start, end=start + (minutes - 1) * 60_000)
    handles = [btkit.Live.background(s, strategy=STRATEGY, exchange="sim", clock=clock) for s in symbols]
    for h in handles:
        h.join()
    live.Live.shutdown()
    if writes is not None:  # the run was not killed: say how many writes it made
        append_line(os.path.join(log_dir, "writes.jsonl"), {"writes": writes["n"]})
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    failed = [h for h in handles if h.error is not None]
    if any(isinstance(h.error, btkit.StateLockedError) for h in failed):
        return 3  # the state-locked exit code of the CLI: this process lost the lock
    return 1 if failed or errors else 0


def serve() -> int:
    """Fork server: import everything once, then fork one fresh child per request line.

    Single-threaded on purpose (forking a process with threads can leave locks held in the child):
    it polls stdin and reaps children with ``waitpid(WNOHANG)`` in one loop.
    """
    import btkit  # noqa: F401  (warm imports before forking)
    from btkit.plugins import get_plugin_manager

    get_plugin_manager()
    if threading.active_count() != 1:
        print("crash_child: the fork server must not run threads", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        os.write(1, (text + "\n").encode())

    def reap(block: bool) -> int:
        alive = 0
        while True:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                return alive
            if pid == 0:
                return 1
            say(f"exit {pid} {os.waitstatus_to_exitcode(status)}")

    buffer = b""
    while True:
        ready = select.select([0], [], [], 0.005)[0]
        reap(block=False)
        if not ready:
            continue
        chunk = os.read(0, 65536)
        if not chunk:  # EOF: wait for the children still running, then stop
            reap(block=True)
            return 0
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if not line.strip():
                continue
            options = json.loads(line)
            pid = os.fork()
            if pid == 0:  # the child: a fresh live process on the same dump directory
                code = 70
                try:
                    code = run(options)
                except BaseException as exc:
                    print(f"crash_child: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                finally:
                    sys.stderr.flush()
                    os._exit(code)
            say(f"pid {pid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true")
    parser.add_argument("--dump-dir")
    parser.add_argument("--log-dir")
    parser.add_argument("--start", type=int, default=START_MS)
    parser.add_argument("--minutes", type=int, default=600)
    parser.add_argument("--symbols", help="comma-separated")
    args = parser.parse_args()
    if args.serve:
        return serve()
    if not args.dump_dir or not args.log_dir:
        parser.error("--dump-dir and --log-dir are required")
    symbols = args.symbols.split(",") if args.symbols else None
    return run(
        {
            "dump_dir": args.dump_dir,
            "log_dir": args.log_dir,
            "start": args.start,
            "minutes": args.minutes,
            "symbols": symbols,
        }
    )


if __name__ == "__main__":
    sys.exit(main())
