"""``btkit report``: statistics and reports rendered from live state."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from btkit.cli.common import (
    CliError,
    add_debug,
    fmt,
    settings_for,
)
from btkit.cli.live import configure_live
from btkit.secrets import mask_options


def cmd_report(args: argparse.Namespace) -> int:
    from btkit.config import get_config
    from btkit.engine import live
    from btkit.persist.state import BackendStore
    from btkit.plugins import collect_components, get_plugin_manager
    from btkit.report import dump_report
    from btkit.stats import compute_statistics

    settings = settings_for(args)
    state = Path(args.dump_dir or "./dump")
    if args.dump_dir is not None and not state.is_dir():  # reading state must never create folders
        raise CliError(f"--dump-dir {args.dump_dir} does not exist; pass the folder btkit paper/live wrote")
    configure_live(args, settings, paper=True)
    pm = get_plugin_manager()
    spec = collect_components(pm).get("persistence", live.SETTINGS.persistence)
    backend = spec.factory(**live.SETTINGS.persistence_options)
    backend.open(exclusive=False)
    cfg = get_config()
    written = 0
    try:
        store = BackendStore(pm, backend)
        for key in backend.keys("history"):
            strategy, symbol = key
            closed = store.load_history((strategy, symbol))
            stats = compute_statistics(closed, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee)
            exchange = closed[0].exchange_name if closed else "-"
            out = Path(args.out or Path(args.dump_dir or "./dump") / "live")
            path = dump_report(
                out,
                f"Live {symbol} · {strategy} · {exchange}",
                stats,
                symbol=symbol,
                strategy=strategy,
                exchange=exchange,
                frame="live",
                mode="live",
                ts_ms=int(datetime.now(UTC).timestamp() * 1000),
            )
            print(
                f"{symbol} {strategy}: {stats.total_signals} closed, total pnl {fmt(stats.total_pnl, '%')}; report: {path}"
            )
            written += 1
    finally:
        backend.close()
    if not written:  # nothing rendered is not a success
        from btkit.errors import BtkitError

        raise BtkitError(
            f"no live history in {live.SETTINGS.persistence} {mask_options(live.SETTINGS.persistence_options)}; "
            "run btkit paper or btkit live first (a replay's history is under <dump-dir>/replay/<range>)"
        )
    return 0


def register(sub: Any) -> None:
    rp = sub.add_parser("report", help="render reports from live state")
    rp.add_argument("--config", help="btkit.toml (default: ./btkit.toml when present)")
    rp.add_argument("--dump-dir", help="the live state folder to read (default: ./dump); must exist")
    rp.add_argument("--persistence", help="persistence backend: file (default), sqlite, redis, …")
    rp.add_argument("--persistence-option", action="append", help="backend option key=value (repeatable)")
    rp.add_argument("--out", help="output directory (default: <dump-dir>/live)")
    add_debug(rp)
    rp.set_defaults(func=cmd_report)
