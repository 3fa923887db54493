"""``btkit report``: reports rendered from live state; ``btkit report open``: the newest report's link."""

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


def cmd_open(args: argparse.Namespace) -> int:
    """Print a ``file://`` link to the newest report under the dump directory; open it in a browser with
    ``--open`` (or on a terminal unless ``--no-open``)."""
    import sys

    from btkit.cli.common import CliError
    from btkit.reporting.dump import newest_report

    settings_for(args)
    root = Path(args.out or args.dump_dir or "./dump")
    path = newest_report(root)
    if path is None:
        raise CliError(f"no report under {root}; run btkit backtest (or btkit report) first")
    uri = path.resolve().as_uri()
    print(uri)
    if args.open or (args.open is None and sys.stdout.isatty()):
        import webbrowser

        webbrowser.open(uri)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import sys

    if args.what == "open":
        return cmd_open(args)
    from btkit.config import get_config
    from btkit.engine import live
    from btkit.persist.state import BackendStore
    from btkit.plugins import collect_components, get_plugin_manager
    from btkit.reporting.dump import dump_report, fetch_chart_candles
    from btkit.reporting.family import family_data
    from btkit.stats import compute_statistics

    formats = _formats(args)
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
            family = family_data(closed, slippage_pct=cfg.percent_slippage, fee_pct=cfg.percent_fee)
            candles = None
            if "html" in formats and closed and exchange != "-":
                first = min(c.signal.scheduled_at for c in closed if c.signal is not None)
                candles = fetch_chart_candles(exchange, symbol, first, max(c.close_timestamp for c in closed))
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
                formats=formats,
                family=family,
                candles=candles,
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
    elif args.report is None and "html" not in formats:
        from btkit.cli.backtest import NO_HTML_NOTE

        print(NO_HTML_NOTE, file=sys.stderr)
    return 0


def _formats(args: argparse.Namespace) -> tuple[str, ...]:
    from btkit.cli.backtest import _formats as formats_of

    return formats_of(args)


def register(sub: Any) -> None:
    rp = sub.add_parser(
        "report", help="render reports from live state; `btkit report open` links the newest report"
    )
    rp.add_argument("what", nargs="?", choices=("open",), help="open: print (and open) the newest report")
    rp.add_argument("--config", help="btkit.toml (default: ./btkit.toml when present)")
    rp.add_argument("--dump-dir", help="the live state folder to read (default: ./dump); must exist")
    rp.add_argument("--persistence", help="persistence backend: file (default), sqlite, redis, …")
    rp.add_argument("--persistence-option", action="append", help="backend option key=value (repeatable)")
    rp.add_argument("--out", help="output directory (default: <dump-dir>/live; open: where to look)")
    rp.add_argument(
        "--report",
        metavar="FORMATS",
        help="report formats, comma-separated: html,md,png (default html,md; html/png need btkit[plot])",
    )
    rp.add_argument(
        "--open", dest="open", action="store_true", default=None, help="open: open it in a browser"
    )
    rp.add_argument("--no-open", dest="open", action="store_false", help="open: only print the link")
    add_debug(rp)
    rp.set_defaults(func=cmd_report)
