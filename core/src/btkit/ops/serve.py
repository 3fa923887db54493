"""``btkit serve``: an HTTP API and a small dashboard over the persisted live state (docs/serve-api.md).

aiohttp (the ``btkit[serve]`` extra; ccxt installs it too) is imported only here. ``GET /health`` needs no
token; everything under ``/api/`` needs ``Authorization: Bearer <BTKIT_SERVE_TOKEN>`` (401 without).
Reads never take the live lock; ``POST /api/stop`` and ``POST /api/force-close/{symbol}`` exist only with
``allow_control`` and write a control request the live runner honours (``btkit.ops.control``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from btkit.ops import control
from btkit.ops.state_view import Snapshot, StateReader

log = logging.getLogger("btkit.serve")

MAX_BODY_BYTES = 16 * 1024  # the control calls have no body worth more; larger requests get 413
MAX_LIMIT = 5000
ASSET_NAME = re.compile(r"^[a-z][a-z0-9-]*\.(html|js|css)$")
SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
ASSET_TYPES = {"html": "text/html", "js": "text/javascript", "css": "text/css"}


@attrs.frozen(kw_only=True)
class ServeConfig:
    dump_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = ""
    allow_control: bool = False
    currency: str = "USDT"
    default_balance: float = 10_000.0
    slippage_pct: float = 0.1
    fee_pct: float = 0.1


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


# ---------------------------------------------------------------- views (pure: snapshot -> JSON)
def positions_view(snap: Snapshot) -> dict[str, Any]:
    def row(key: tuple[str, ...], r: Any, status: str) -> dict[str, Any]:
        return {
            "strategy": key[0],
            "symbol": key[1],
            "status": status,
            "id": r.id,
            "position": r.position,
            "price_open": r.price_open,
            "price_take_profit": r.price_take_profit,
            "price_stop_loss": r.price_stop_loss,
            "cost": r.cost,
            "opened_at": r.pending_at,
            "scheduled_at": r.scheduled_at,
            "note": r.note,
        }

    return {
        "positions": [row(k, r, "open") for k, r in snap.rows("signal") if r.pending_at is not None],
        "scheduled": [row(k, r, "scheduled") for k, r in snap.rows("schedule")],
        "consistent": snap.consistent,
    }


def trade_of(c: Any) -> dict[str, Any]:
    s = c.signal
    return {
        "symbol": c.symbol,
        "strategy": c.strategy_name,
        "id": s.id if s is not None else None,
        "position": s.position if s is not None else None,
        "opened_at": (s.pending_at or s.scheduled_at) if s is not None else None,
        "closed_at": c.close_timestamp,
        "close_reason": c.close_reason,
        "price_open": c.pnl.price_open,
        "price_close": c.pnl.price_close,
        "pnl_percentage": c.pnl.pnl_percentage,
        "pnl_cost": c.pnl.pnl_cost,
    }


def history_view(snap: Snapshot, limit: int) -> dict[str, Any]:
    closed = snap.closed()
    return {"total": len(closed), "trades": [trade_of(c) for c in closed[-limit:]][::-1]}


def stats_view(snap: Snapshot, cfg: ServeConfig) -> dict[str, Any]:
    from btkit.stats import compute_statistics

    stats = compute_statistics(snap.closed(), slippage_pct=cfg.slippage_pct, fee_pct=cfg.fee_pct)
    out = {}
    for field in attrs.fields(type(stats)):
        value = getattr(stats, field.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[field.name] = _num(float(value)) if isinstance(value, float) else value
    return out


def equity_view(snap: Snapshot, cfg: ServeConfig) -> dict[str, Any]:
    """Realised equity: the starting balance plus the pnl of each closed trade, at its close time."""
    balance = snap.wallet_balance() or cfg.default_balance
    closed = snap.closed()
    points: list[list[float]] = []
    equity = balance
    if closed:
        first = closed[0].signal
        start = (first.pending_at or first.scheduled_at) if first is not None else closed[0].close_timestamp
        points.append([start, balance])
    for c in closed:
        equity += c.pnl.pnl_cost
        points.append([c.close_timestamp, round(equity, 8)])
    return {"currency": cfg.currency, "starting_balance": balance, "equity": equity, "points": points}


def risk_view(snap: Snapshot, cfg: ServeConfig, limit: int) -> dict[str, Any]:
    return {
        "active": snap.risk(),
        "rejections": control.read_journal(cfg.dump_dir, limit, kinds=("risk",)),
    }


# ---------------------------------------------------------------- the aiohttp application
def build_app(cfg: ServeConfig, reader: StateReader) -> Any:
    from aiohttp import web

    if not cfg.token:
        raise ValueError("a token is required (BTKIT_SERVE_TOKEN)")

    def json_response(body: Any, status: int = 200) -> Any:
        return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, allow_nan=False))

    def error(status: int, message: str) -> Any:
        return json_response({"error": message}, status)

    @web.middleware
    async def guard(request: Any, handler: Any) -> Any:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return error(413, f"request body over {MAX_BODY_BYTES} bytes")
        if request.path.startswith("/api/") or request.path == "/api":
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {cfg.token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return error(401, "missing or wrong token: send Authorization: Bearer <BTKIT_SERVE_TOKEN>")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 413:
                return error(413, f"request body over {MAX_BODY_BYTES} bytes")
            if exc.status >= 400:
                return error(exc.status, exc.reason)
            raise
        except Exception as exc:  # a state that cannot be read: say so, never a stack trace
            log.warning("%s %s failed: %s: %s", request.method, request.path, type(exc).__name__, exc)
            return error(503, f"state unavailable: {type(exc).__name__}: {exc}")

    async def snapshot() -> Snapshot:
        import asyncio

        return await asyncio.to_thread(reader.snapshot)

    def limit_of(request: Any, default: int = 200) -> int:
        raw = request.query.get("limit", str(default))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise web.HTTPBadRequest(reason=f"limit must be a whole number from 1 to {MAX_LIMIT}")
        return int(raw)

    async def health(request: Any) -> Any:
        try:
            snap = await snapshot()
            last = snap.last_tick()
            n = len(positions_view(snap)["positions"])
        except Exception as exc:
            return json_response({"status": "error", "error": f"{type(exc).__name__}: {exc}"}, 503)
        return json_response(
            {
                "status": "ok",
                "backend": reader.name,
                "last_tick": last,
                "last_tick_iso": control.iso(last),
                "open_positions": n,
                "control": cfg.allow_control,
            }
        )

    async def positions(request: Any) -> Any:
        return json_response(positions_view(await snapshot()))

    async def history(request: Any) -> Any:
        limit = limit_of(request)
        return json_response(history_view(await snapshot(), limit))

    async def stats(request: Any) -> Any:
        return json_response(stats_view(await snapshot(), cfg))

    async def equity(request: Any) -> Any:
        return json_response(equity_view(await snapshot(), cfg))

    async def risk(request: Any) -> Any:
        limit = limit_of(request)
        return json_response(risk_view(await snapshot(), cfg, limit))

    async def logs(request: Any) -> Any:
        limit = limit_of(request)
        return json_response({"events": control.read_journal(cfg.dump_dir, limit)})

    async def control_list(request: Any) -> Any:
        return json_response({"allowed": cfg.allow_control, "requests": control.list_requests(cfg.dump_dir)})

    def require_control() -> None:
        if not cfg.allow_control:
            raise web.HTTPForbidden(reason="control is off: start btkit serve with --allow-control")

    async def stop(request: Any) -> Any:
        require_control()
        req = control.write_request(cfg.dump_dir, "stop")
        return json_response({"accepted": req}, 202)

    async def force_close(request: Any) -> Any:
        require_control()
        symbol = request.match_info["symbol"]
        if not SYMBOL.match(symbol):
            return error(400, "invalid symbol")
        open_symbols = {p["symbol"] for p in positions_view(await snapshot())["positions"]}
        if symbol not in open_symbols:
            return error(404, f"no open position on {symbol}")
        req = control.write_request(cfg.dump_dir, "force-close", symbol)
        return json_response({"accepted": req}, 202)

    async def index(request: Any) -> Any:
        return asset_response("dashboard.html")

    async def asset(request: Any) -> Any:
        return asset_response(request.match_info["name"])

    def asset_response(name: str) -> Any:
        # only names of the shipped files: no path ever reaches the file system
        if not ASSET_NAME.match(name):
            return error(404, "not found")
        files = resources.files("btkit.ops") / "dashboard"
        item = files / name
        if not item.is_file():
            return error(404, "not found")
        headers = {
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }
        kind = ASSET_TYPES[name.rsplit(".", 1)[1]]
        return web.Response(body=item.read_bytes(), content_type=kind, charset="utf-8", headers=headers)

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app.add_routes(
        [
            web.get("/", index),
            web.get("/assets/{name}", asset),
            web.get("/health", health),
            web.get("/api/positions", positions),
            web.get("/api/history", history),
            web.get("/api/stats", stats),
            web.get("/api/equity", equity),
            web.get("/api/risk", risk),
            web.get("/api/logs", logs),
            web.get("/api/control", control_list),
            web.post("/api/stop", stop),
            web.post("/api/force-close/{symbol:.+}", force_close),
        ]
    )
    app.on_cleanup.append(lambda _app: _close(reader))
    return app


async def _close(reader: StateReader) -> None:
    reader.close()


def run(cfg: ServeConfig, reader: StateReader, *, print_fn: Any = print) -> None:
    """Serve until interrupted (SIGINT/SIGTERM)."""
    from aiohttp import web

    app = build_app(cfg, reader)
    mode = "on" if cfg.allow_control else "off"
    print_fn(f"btkit serve: http://{cfg.host}:{cfg.port}/ (state: {reader.name}; control {mode})")
    web.run_app(app, host=cfg.host, port=cfg.port, print=None, access_log=None, handle_signals=True)
