"""``btkit serve``: the status API and dashboard over the persisted live state (docs/serve-api.md)."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path
from typing import Any

from btkit.cli.common import CliError, add_debug, settings_for
from btkit.secrets import mask_options, register_secret

TOKEN_ENV = "BTKIT_SERVE_TOKEN"


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise CliError("btkit serve needs aiohttp: pip install 'btkit[serve]'") from None
    from btkit.cli.live import configure_live
    from btkit.config import get_config
    from btkit.engine import live
    from btkit.ops.serve import ServeConfig, is_loopback, run
    from btkit.ops.state_view import reader_for

    if not 0 < args.port < 65536:
        raise CliError(f"--port must be from 1 to 65535, got {args.port}")
    settings = settings_for(args)
    configure_live(args, settings, paper=True)
    from btkit.cli import replay as rehearsal

    replay = rehearsal.replay_range(args)
    if replay is not None:  # a replay's state lives apart (its own namespace): serve that one
        rehearsal.apply_namespace(live.SETTINGS, rehearsal.namespace(*replay))
    token = os.environ.get(TOKEN_ENV, "")
    generated = False
    if not token:
        if not is_loopback(args.host):
            raise CliError(
                f"btkit serve on {args.host} (not loopback) needs a token: set {TOKEN_ENV} "
                "(e.g. openssl rand -hex 24), or bind --host 127.0.0.1"
            )
        token, generated = secrets.token_urlsafe(24), True
    elif len(token) < 16:
        raise CliError(f"{TOKEN_ENV} is too short ({len(token)} characters); use at least 16")
    if generated:  # printed once, on the terminal of the user who started it; masked in every log after
        print(f"no {TOKEN_ENV} set: this run's token is in the dashboard link below", flush=True)
        print(f"dashboard: http://{args.host}:{args.port}/#token={token}", flush=True)
    register_secret(token)
    from btkit.accounting.wallet import get_wallet

    cfg_engine, wallet = get_config(), get_wallet()
    cfg = ServeConfig(
        dump_dir=Path(args.dump_dir or "./dump"),
        host=args.host,
        port=args.port,
        token=token,
        allow_control=args.allow_control,
        currency=wallet.currency,
        default_balance=wallet.balance,
        slippage_pct=cfg_engine.percent_slippage,
        fee_pct=cfg_engine.percent_fee,
    )
    reader = reader_for(live.SETTINGS.persistence, live.SETTINGS.persistence_options)
    print(
        f"state: {live.SETTINGS.persistence} {mask_options(live.SETTINGS.persistence_options)}; "
        f"journal and control: {cfg.dump_dir}",
        flush=True,
    )
    run(cfg, reader, print_fn=lambda line: print(line, flush=True))
    return 0


def register(sub: Any) -> None:
    sp = sub.add_parser("serve", help="HTTP status API and dashboard over the live state")
    sp.add_argument("--config", help="btkit.toml (default: ./btkit.toml when present)")
    sp.add_argument("--dump-dir", help="the live run's --dump-dir (default: ./dump)")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    sp.add_argument(
        "--allow-control",
        action="store_true",
        help="enable POST /api/stop and /api/force-close/{symbol} (token required)",
    )
    sp.add_argument("--replay-from", help="serve a replay's own state: the --replay-from of that paper run")
    sp.add_argument("--replay-to", help="… and its --replay-to")
    sp.add_argument("--persistence", help="persistence backend of the live run: file (default), sqlite, redis")
    sp.add_argument("--persistence-option", action="append", help="backend option key=value (repeatable)")
    add_debug(sp)
    sp.set_defaults(func=cmd_serve, broker=None, balance=None, sizing=None)
