"""``btkit data download`` / ``btkit data import``: the local candle store."""

from __future__ import annotations

import argparse
from typing import Any

from btkit.cli.common import (
    CliError,
    add_debug,
    parse_timerange,
    settings_for,
)
from btkit.context import iso


def cmd_data(args: argparse.Namespace) -> int:
    from btkit.errors import CandleDataError
    from btkit.store import CandleStore, download, import_file

    store = CandleStore(args.data_dir or "./data")
    if args.data_verb == "import":
        if not args.symbol.strip():
            raise CliError("--symbol is empty; name the symbol the file holds, e.g. --symbol BTCUSDT")
        try:  # a missing or unreadable file is bad input (exit 2), and nothing is written
            n = import_file(args.file, args.exchange, args.symbol, args.interval, store)
        except CandleDataError as exc:
            raise CliError(f"{exc}; nothing was imported") from exc
        print(f"imported {n} candles into {store.path(args.exchange, args.symbol, args.interval)}")
        return 0
    from btkit.plugins import collect_components, get_plugin_manager

    settings_for(args)
    start, end = parse_timerange(args.timerange)
    for symbol in args.symbol:
        if not symbol.strip():
            raise CliError("--symbol is empty; name a symbol, e.g. --symbol BTC/USDT")
    spec = collect_components(get_plugin_manager()).get("exchange", args.exchange)
    total = 0
    from btkit.cli.terminal import ProgressBars

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
            span = f"{iso(first)} → {iso(last)}"  # ISO 8601 UTC, not raw milliseconds
            print(f"{symbol}: {n} new candles, store now covers {span}{gap_note}")
    finally:
        bars.close()
    return 0


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="the local candle store")
    dsub = data.add_subparsers(dest="data_verb", required=True)
    dl = dsub.add_parser("download", help="fetch candles through an exchange plugin into the store")
    dl.add_argument("--exchange", required=True, help="exchange to download from, e.g. ccxt:binance")
    dl.add_argument("--symbol", action="append", required=True, help="symbol, repeatable (e.g. BTC/USDT)")
    dl.add_argument("--interval", default="1m", help="candle interval (default: 1m)")
    dl.add_argument("--timerange", required=True, help="YYYYMMDD-YYYYMMDD, end exclusive")
    dl.add_argument("--data-dir", help="candle store directory (default: ./data)")
    dl.add_argument("--config", help="btkit.toml (exchange options, API keys)")
    imp = dsub.add_parser("import", help="import a JSON candle file into the store")
    imp.add_argument("file", help="a JSON list of candles [ts_ms, open, high, low, close, volume]")
    imp.add_argument("--exchange", required=True, help="the store's exchange name for these candles")
    imp.add_argument("--symbol", required=True, help="the symbol the file holds")
    imp.add_argument("--interval", default="1m", help="the file's candle interval (default: 1m)")
    imp.add_argument("--data-dir", help="candle store directory (default: ./data)")
    for sp in (dl, imp):
        add_debug(sp)
    data.set_defaults(func=cmd_data)
