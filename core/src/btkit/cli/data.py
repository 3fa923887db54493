"""``btkit data download`` / ``btkit data import``: the local candle store."""

from __future__ import annotations

import argparse
from typing import Any

from btkit.cli.common import (
    add_debug,
    parse_timerange,
    settings_for,
)


def cmd_data(args: argparse.Namespace) -> int:
    from btkit.store import CandleStore, download, import_file

    store = CandleStore(args.data_dir or "./data")
    if args.data_verb == "import":
        n = import_file(args.file, args.exchange, args.symbol, args.interval, store)
        print(f"imported {n} candles into {store.path(args.exchange, args.symbol, args.interval)}")
        return 0
    from btkit.plugins import collect_components, get_plugin_manager

    settings_for(args)
    spec = collect_components(get_plugin_manager()).get("exchange", args.exchange)
    start, end = parse_timerange(args.timerange)
    total = 0
    from btkit.cli.terminal import ProgressBars
    from btkit.reporting.markdown import fmt_time

    bars = ProgressBars(plain=False)  # a bar on a terminal; otherwise only the summary lines below

    def shown(p: Any) -> None:
        bars.update(f"{p.symbol} {p.interval}", p.done, p.total)

    try:
        for symbol in args.symbol:
            n = download(
                spec,
                symbol,
                args.interval,
                int(start.timestamp() * 1000),
                int(end.timestamp() * 1000),
                store=store,
                on_progress=shown,
                close_exchange=True,  # each symbol's download runs its own event loop: close the client in it
            )
            total += n
            first, last, gaps = store.coverage(args.exchange, symbol, args.interval)
            gap_note = f", {len(gaps)} gap(s) — the exchange has no candles there" if gaps else ""
            span = f"{fmt_time(first)} → {fmt_time(last)}"  # ISO 8601 UTC, not raw milliseconds
            print(f"{symbol}: {n} new candles, store now covers {span}{gap_note}")
    finally:
        bars.close()
    return 0


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="the local candle store")
    dsub = data.add_subparsers(dest="data_verb", required=True)
    dl = dsub.add_parser("download", help="fetch candles through an exchange plugin into the store")
    dl.add_argument("--exchange", required=True)
    dl.add_argument("--symbol", action="append", required=True)
    dl.add_argument("--interval", default="1m")
    dl.add_argument("--timerange", required=True)
    dl.add_argument("--data-dir")
    dl.add_argument("--config")
    imp = dsub.add_parser("import", help="import a JSON candle file into the store")
    imp.add_argument("file")
    imp.add_argument("--exchange", required=True)
    imp.add_argument("--symbol", required=True)
    imp.add_argument("--interval", default="1m")
    imp.add_argument("--data-dir")
    for sp in (dl, imp):
        add_debug(sp)
    data.set_defaults(func=cmd_data)
