"""``btkit walk``: compare strategies on one symbol by a metric (the Walker, docs/walker.md)."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from btkit.cli.common import (
    DEMO,
    EXIT_FAILED,
    CliError,
    add_debug,
    exchange_name,
    load_strategy_files,
    parse_timerange,
    run_value,
    settings_for,
    symbols_of,
)


def cmd_walk(args: argparse.Namespace) -> int:
    import btkit
    from btkit.research.walker import Walker, add_walker

    settings = settings_for(args)
    load_strategy_files(args, settings)
    strategies = args.strategy or ["smacross", "smacross-array"]
    exchange = exchange_name(args, settings, DEMO["exchange"])
    symbols = symbols_of(args, settings)
    if len(symbols) != 1:
        raise CliError("btkit walk takes one --symbol")
    start, end = parse_timerange(run_value(args, settings, "timerange", DEMO["timerange"]))
    frame = f"walk-{start:%Y%m%d}-{end:%Y%m%d}"
    btkit.add_frame(
        frame, start, end - timedelta(minutes=1), interval=run_value(args, settings, "interval", "1m")
    )
    name = args.name or "cli"
    add_walker(name, strategies=strategies, exchange=exchange, frame=frame, metric=args.metric)
    print(
        f"walk {', '.join(strategies)} on {exchange} {symbols[0]} {start:%Y-%m-%d} → {end:%Y-%m-%d}, metric {args.metric}"
    )
    for p in Walker.run(symbols[0], walker=name):
        value = "N/A" if p.metric_value is None else f"{p.metric_value:.4f}"
        note = f" ({p.error})" if p.error else ""
        print(
            f"[{p.index + 1}/{p.total}] {p.strategy}: {p.metric} {value}{note}; best so far {p.best_strategy}",
            file=sys.stderr,
        )
    data = Walker.get_data(symbols[0], walker=name)
    width = max(len(r.strategy) for r in data.rows)
    print(f"{'rank':>4}  {'strategy':<{width}}  {'trades':>6}  {args.metric}")
    for r in sorted(data.rows, key=lambda r: (r.rank is None, r.rank or 0)):
        trades = r.stats.total_signals if r.stats is not None else 0
        value = "N/A" if r.metric_value is None else f"{r.metric_value:.4f}"
        print(f"{r.rank or '-':>4}  {r.strategy:<{width}}  {trades:>6}  {value}")
    print(f"best: {data.best_strategy or 'none'}")
    report = Walker.dump(symbols[0], walker=name, path=Path(args.dump_dir or "./dump") / "walker")
    print(f"report: {report}")
    if data.best_strategy is None:
        print("btkit: error: no strategy has a finite metric; nothing to rank", file=sys.stderr)
        return EXIT_FAILED
    return 0


def register(sub: Any) -> None:
    sp = sub.add_parser("walk", help="compare strategies by a metric (the Walker)")
    sp.add_argument("--config", help="btkit.toml (default: ./btkit.toml when present)")
    sp.add_argument("--strategy", action="append", help="a strategy to compare (repeatable)")
    sp.add_argument("--strategy-file", action="append", help="a .py file registering strategies (repeatable)")
    sp.add_argument("--name", help="the walker's name (default: cli)")
    sp.add_argument("--exchange", help="exchange name (default: sim)")
    sp.add_argument("--symbol", action="append", help="the symbol (default: BTCUSDT)")
    sp.add_argument("--timerange", help="YYYYMMDD-YYYYMMDD, end exclusive (default: 20240101-20240301)")
    sp.add_argument("--interval", help="frame interval (default: 1m)")
    sp.add_argument("--metric", default="sharpe_ratio", help="what ranks strategies (default: sharpe_ratio)")
    sp.add_argument("--dump-dir", help="where the report goes (default: ./dump)")
    sp.add_argument("--offline", action="store_true", help="read candles from the local candle store")
    sp.add_argument("--data-dir", help="candle store directory (default: ./data)")
    add_debug(sp)
    sp.set_defaults(func=cmd_walk)
