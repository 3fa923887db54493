"""``btkit backtest``: one symbol at a time, or a lockstep portfolio when symbols share risk limits."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs

from btkit.cli.common import (
    DEMO,
    add_run_options,
    exchange_name,
    fmt,
    has_risk,
    has_wallet,
    load_strategy_files,
    parse_timerange,
    register_risks,
    run_value,
    settings_for,
    strategy_params,
    symbols_of,
)


class _Progress:
    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = -1
        self.quarter = -1
        self.portfolio: str | None = None  # set: one line for the lockstep run, labelled "portfolio"

    def __call__(self, p: Any) -> None:
        if self.portfolio is not None:
            if p.symbol != self.portfolio:
                return
            p = attrs.evolve(p, symbol="portfolio")
        pct = int(p.progress * 100)
        if pct == self.last:
            return
        self.last = pct
        if self.tty:
            bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
            sys.stderr.write(f"\r{p.symbol:<12} [{bar}] {pct:3d}%")
            if pct >= 100:
                sys.stderr.write("\n")
            sys.stderr.flush()
        elif pct // 25 != self.quarter:
            self.quarter = pct // 25
            sys.stderr.write(f"{p.symbol}: {pct}%\n")


def _summary(rows: list[tuple[str, Any]]) -> str:
    # compounded return first; the sum of per-trade percentages is labelled as such (never a return)
    header = ("symbol", "trades", "win rate", "return", "Σ trade %", "pnl $", "sharpe/trade", "max drawdown")
    table = [header]
    for symbol, s in rows:
        table.append(
            (
                symbol,
                str(s.total_signals),
                fmt(s.win_rate, "%"),
                fmt(s.total_return, "%"),
                fmt(s.total_pnl, "%"),
                fmt(s.total_pnl_cost),
                fmt(s.sharpe_ratio, digits=3),
                fmt(s.max_drawdown, "%"),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_backtest(args: argparse.Namespace) -> int:
    import btkit
    from btkit.accounting.view import terminal_lines
    from btkit.engine.accounts import backtest_portfolio
    from btkit.market import wall_clock_ms
    from btkit.report import dump_portfolio_report, export_trades, report_filename

    settings = settings_for(args)
    load_strategy_files(args, settings)
    strategy = run_value(args, settings, "strategy", DEMO["strategy"])
    exchange = exchange_name(args, settings, DEMO["exchange"])
    symbols = symbols_of(args, settings)
    start, end = parse_timerange(run_value(args, settings, "timerange", DEMO["timerange"]))
    interval = run_value(args, settings, "interval", "1m")
    params = strategy_params(args, settings, strategy)  # docs/parameters.md
    frame = f"{start:%Y%m%d}-{end:%Y%m%d}"
    btkit.add_frame(frame, start, end - timedelta(minutes=1), interval=interval)
    dump_dir = Path(args.dump_dir or "./dump") / "backtest"
    progress = _Progress()
    btkit.listen_backtest_progress(progress)
    print(
        f"backtest {strategy} on {exchange} {', '.join(symbols)} {start:%Y-%m-%d} → {end:%Y-%m-%d} ({interval})"
    )
    rows, reports = [], []
    risks = register_risks(settings)
    shared = has_risk(strategy, risks) or has_wallet(args, settings)
    if len(symbols) > 1 and shared:  # shared limits (risk profiles, one wallet) need the symbols in lockstep
        print(
            f"portfolio: {len(symbols)} symbols share risk profiles or a wallet; run in lockstep minute by minute"
        )
        progress.portfolio = symbols[0]
        for _ in btkit.Backtest.run_portfolio(
            symbols, strategy=strategy, exchange=exchange, frame=frame, risks=risks, params={strategy: params}
        ):
            pass
    else:
        for symbol in symbols:
            for _ in btkit.Backtest.run(
                symbol, strategy=strategy, exchange=exchange, frame=frame, risks=risks, params=params
            ):
                pass
    for symbol in symbols:
        stats = btkit.Backtest.get_data(symbol, strategy=strategy, exchange=exchange, frame=frame)
        rows.append((symbol, stats))
        reports.append(
            btkit.Backtest.dump(symbol, strategy=strategy, exchange=exchange, frame=frame, path=dump_dir)
        )
        if args.export:
            target = reports[-1].with_suffix(f".{args.export}")
            export_trades(stats.closed, target, args.export)
            reports.append(target)
    print(_summary(rows))
    view = backtest_portfolio(symbols, strategy=strategy, exchange=exchange, frame=frame)  # money (issue 12)
    print("\n".join(["", *terminal_lines(view)]))
    name = report_filename("portfolio", strategy, exchange, frame, "backtest", wall_clock_ms())[:-3]
    title = f"Portfolio · {strategy} · {exchange} · {frame}"
    portfolio = dump_portfolio_report(dump_dir, title, view, name=name)
    for path in reports:
        print(f"report: {path}")
    print(f"portfolio report: {portfolio}")
    return 0


def register(sub: Any) -> None:
    bt = sub.add_parser("backtest", help="run a backtest (no options: the offline demo)")
    add_run_options(bt)
    bt.add_argument("--timerange", help="YYYYMMDD-YYYYMMDD, end exclusive (default: 20240101-20240301)")
    bt.add_argument("--interval", help="frame interval (default: 1m)")
    bt.add_argument("--export", choices=("csv", "json"), help="also export the trades")
    bt.set_defaults(func=cmd_backtest)
