"""``btkit serve`` against the state of real ``btkit paper`` replay runs (file, sqlite and redis state)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import TOKEN, Served, btkit, paper, run_paper

ENDPOINTS = ("/api/positions", "/api/history", "/api/stats", "/api/equity", "/api/risk", "/api/logs", "/api/control")


def backend_args(kind: str, tmp_path: Path) -> tuple[list[str], Any]:
    if kind == "file":
        return [], None
    if kind == "sqlite":
        return ["--persistence", "sqlite"], None
    from btkit_redis.testing import REDIS_SERVER, RedisServer

    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH (apt-get install redis-server)")
    server = RedisServer(tmp_path / "redis")
    server.start()
    return ["--persistence", "redis", "--persistence-option", f"url={server.url}"], server


@pytest.mark.parametrize("kind", ["file", "sqlite", "redis"])
def test_every_endpoint_over_a_paper_replay(kind: str, tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    args, server = backend_args(kind, tmp_path)
    try:
        out = run_paper(dump, *args).stdout  # ends at 12:30 with the 12:00 position still open
        opened = [line for line in out.splitlines() if " opened @ " in line]
        closed = [line for line in out.splitlines() if " closed @ " in line]
        with Served(dump, *args) as s:
            status, health = s.get("/health", auth=False)
            assert status == 200 and health["status"] == "ok" and health["backend"] == kind
            assert health["last_tick_iso"].startswith("2024-02-01T12:")  # the last persisted minute
            for path in ENDPOINTS:
                assert s.get(path, auth=False)[0] == 401, path
                assert s.get(path, token="wrong-token-wrong-token")[0] == 401, path
                assert s.get(path)[0] == 200, path
            _, pos = s.get("/api/positions")
            assert [(p["symbol"], p["position"], p["status"]) for p in pos["positions"]] == [
                ("BTCUSDT", "long", "open")
            ]
            assert pos["consistent"] is True
            _, hist = s.get("/api/history")
            assert hist["total"] == len(closed) == len(opened) - 1
            reasons = [line.split(" closed @ ")[1].split()[1] for line in closed][::-1]  # newest first
            assert [t["close_reason"] for t in hist["trades"]] == reasons
            _, stats = s.get("/api/stats")
            assert stats["total_signals"] == len(closed)
            assert stats["total_pnl"] == pytest.approx(sum(t["pnl_percentage"] for t in hist["trades"]))
            _, eq = s.get("/api/equity")
            assert len(eq["points"]) == len(closed) + 1 and eq["starting_balance"] == 10_000
            assert eq["equity"] == pytest.approx(10_000 + sum(t["pnl_cost"] for t in hist["trades"]))
            _, risk = s.get("/api/risk")
            assert set(risk) == {"active", "rejections"}
            assert [p["symbol"] for ps in risk["active"].values() for p in ps] == ["BTCUSDT"]
            _, logs = s.get("/api/logs?limit=500")
            actions = [e["action"] for e in logs["events"] if e["kind"] == "signal"]
            assert actions.count("opened") == len(opened) and actions.count("closed") == len(closed)
            assert s.get("/api/logs?limit=0")[0] == 400
            # read-only by default: the control calls are refused, even with the token
            assert s.post("/api/stop", auth=False)[0] == 401
            assert s.post("/api/stop")[0] == 403
            assert s.post("/api/force-close/BTCUSDT")[0] == 403
    finally:
        if server is not None:
            server.kill()


def raw_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_traversal_oversize_and_bind_rules(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    run_paper(dump)
    (tmp_path / "secret.txt").write_text("do-not-serve")
    with Served(dump, "--allow-control") as s:
        for path in (
            "/assets/../serve.py",
            "/assets/..%2Fserve.py",
            "/assets/%2e%2e%2f%2e%2e%2fsecret.txt",
            "/../secret.txt",
            "/assets/dashboard.html/../../../../secret.txt",
            "/assets/state_view.py",
        ):
            reply = raw_http(s.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            head = reply.split(b"\r\n", 1)[0]
            assert b" 404 " in head or b" 400 " in head, (path, head)
            assert b"do-not-serve" not in reply and b"import" not in reply
        assert s.get("/assets/dashboard.js", auth=False)[0] == 200
        big = b"x" * 100_000
        assert s.post("/api/stop", body=big)[0] == 413
        assert s.post("/api/force-close/" + "A" * 70)[0] == 400
        assert s.post("/api/force-close/ETHUSDT")[0] == 404  # nothing open there: no request written
        reply = raw_http(s.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 20_000 + b"\r\n\r\n")
        assert reply.split(b"\r\n", 1)[0].split()[1] in (b"400", b"431")
        assert not list((dump / "control").glob("*.json")) if (dump / "control").exists() else True
    # not loopback and no token: refused before binding, one line, exit 2
    proc = subprocess.run(
        btkit("serve", "--dump-dir", str(dump), "--host", "0.0.0.0"),
        capture_output=True, text=True, timeout=60, env=_env_without_token(),
    )
    assert proc.returncode == 2 and "needs a token" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _env_without_token() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "BTKIT_SERVE_TOKEN"}


def test_reads_while_the_live_process_writes_and_control_is_honoured(tmp_path: Path) -> None:
    """A paper replay on a slow clock; readers hammer the API; then force-close and stop are honoured."""
    dump = tmp_path / "dump"
    dump.mkdir()
    proc = subprocess.Popen(
        paper(dump, "--speed", "3000", start="202402011100", end="20240210"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        while not any(dump.rglob("signal")) and time.monotonic() < deadline:  # the replay's own state
            time.sleep(0.1)
        with Served(dump, "--allow-control", replay=("202402011100", "20240210")) as s:
            problems: list[str] = []
            seen_totals: list[int] = []
            stop = threading.Event()

            def reader() -> None:
                last_total = 0
                while not stop.is_set():
                    status, pos = s.get("/api/positions")
                    status2, hist = s.get("/api/history?limit=5000")
                    if status != 200 or status2 != 200:
                        problems.append(f"HTTP {status}/{status2}: {pos} {hist}")
                        continue
                    if hist["total"] < last_total:
                        problems.append(f"history went back from {last_total} to {hist['total']}")
                    last_total = hist["total"]
                    seen_totals.append(last_total)
                    open_ids = {p["id"] for p in pos["positions"]}
                    if len(open_ids) > 1:
                        problems.append(f"two open positions on one symbol: {open_ids}")

            threads = [threading.Thread(target=reader) for _ in range(3)]
            for t in threads:
                t.start()
            # wait for an open position, then force-close it through the API
            deadline = time.monotonic() + 60
            closed_id = None
            while time.monotonic() < deadline and closed_id is None:
                _, pos = s.get("/api/positions")
                if pos["positions"]:
                    status, _ = s.post("/api/force-close/BTCUSDT")
                    if status == 202:
                        closed_id = pos["positions"][0]["id"]
                time.sleep(0.05)
            assert closed_id is not None, "no position opened within 60 s"
            deadline = time.monotonic() + 30
            reason = None
            while time.monotonic() < deadline and reason is None:
                _, hist = s.get("/api/history?limit=5000")
                reason = next((t["close_reason"] for t in hist["trades"] if t["id"] == closed_id), None)
                time.sleep(0.1)
            assert reason in ("closed", "take_profit", "stop_loss")  # a TP/SL may win the same minute
            _, ctl = s.get("/api/control")
            assert [r["kind"] for r in ctl["requests"]][-1:] == ["force-close"]
            assert s.post("/api/stop")[0] == 202
            stop.set()
            for t in threads:
                t.join(30)
            assert not problems, problems[:5]
            assert len(seen_totals) > 10
        proc.wait(60)  # stop honoured: the run ends (graceful: an open position would run to TP/SL first)
        assert proc.returncode == 0, proc.stderr.read()
        done = [json.loads(p.read_text()) for p in (dump / "control").glob("*.done.json")]
        assert {d["kind"] for d in done} == {"stop", "force-close"}
        assert all(d.get("outcome") for d in done)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH")
def test_dashboard_in_headless_chromium(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    run_paper(dump)
    with Served(dump) as s:
        proc = subprocess.run(
            [
                "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
                f"--user-data-dir={tmp_path / 'chrome'}", "--dump-dom", f"{s.url}/#token={TOKEN}",
            ],
            capture_output=True, text=True, timeout=120,
        )
    dom = proc.stdout
    assert 'data-loaded="yes"' in dom, (dom[-2000:], proc.stderr[-2000:])
    assert 'class="position" data-symbol="BTCUSDT"' in dom
    assert '<polyline id="equity-line"' in dom
    assert "opened @" in dom  # recent events
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    assert TOKEN not in dom  # the token is moved out of the URL and never rendered
