"""``btkit backtest``: one symbol at a time, or a lockstep portfolio when symbols share risk limits."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from btkit.cli.common import (
    DEMO,
    add_run_options,
    check_run,
    clip_to_now,
    exchange_name,
    export_formats,
    fmt,
    has_risk,
    has_wallet,
    load_strategy_files,
    register_risks,
    run_value,
    settings_for,
    strategy_of,
    strategy_params,
    symbols_of,
    timerange_of,
)
from btkit.cli.problems import StrategyProblems, ends_backtest


class _Progress:
    """Backtest progress events → one bar per symbol (one labelled "portfolio" for a lockstep run)."""

    def __init__(self) -> None:
        from btkit.cli.terminal import ProgressBars

        self.bars = ProgressBars()
        self.portfolio: str | None = None  # set: one bar for the lockstep run, labelled "portfolio"

    def __call__(self, p: Any) -> None:
        label = p.symbol
        if self.portfolio is not None:
            if p.symbol != self.portfolio:
                return
            label = "portfolio"
        self.bars.update(label, p.processed_frames, p.total_frames)


def _cells(label: str, s: Any) -> list[str]:
    return [
        label,
        str(s.total_signals),
        fmt(s.win_rate, "%"),
        fmt(s.total_return, "%"),
        fmt(s.total_pnl, "%"),
        fmt(s.total_pnl_cost),
        fmt(s.sharpe_ratio, digits=3),
        fmt(s.max_drawdown, "%"),
    ]


def _summary(rows: list[tuple[str, Any]], total: Any | None = None) -> str:
    """Per-symbol rows and, for several symbols, a totals row over all their trades (taken one after
    another by close time: the compounded return and drawdown of that sequence, not of a portfolio)."""
    from btkit.cli.terminal import table

    # compounded return first; the sum of per-trade percentages is labelled as such (never a return)
    header = ("symbol", "trades", "win rate", "return", "Σ trade %", "pnl $", "sharpe/trade", "max drawdown")
    body = [_cells(symbol, s) for symbol, s in rows]
    return table(header, body, total=_cells("total", total) if total is not None else None)


NO_HTML_NOTE = "note: no HTML report (bokeh is not installed: pip install 'btkit[plot]'); wrote markdown"


def _formats(args: argparse.Namespace) -> tuple[str, ...]:
    """``--report`` (default html,md): HTML needs bokeh, PNG matplotlib (extra ``btkit[plot]``). Asked for
    explicitly and missing → a usage error before the run; the default HTML is dropped (the command
    prints :data:`NO_HTML_NOTE` once it has written the markdown)."""
    from btkit.reporting.charts import require
    from btkit.reporting.dump import DEFAULT_FORMATS, parse_formats, plot_extra_installed

    if args.report is None:
        return DEFAULT_FORMATS if plot_extra_installed("bokeh") else ("md",)
    formats = parse_formats(args.report)
    if "html" in formats and not plot_extra_installed("bokeh"):
        require("bokeh", "--report html")
    if "png" in formats and not plot_extra_installed("matplotlib"):
        require("matplotlib", "--report png")
    return formats


def cmd_backtest(args: argparse.Namespace) -> int:
    import btkit
    from btkit.accounting.view import terminal_lines
    from btkit.engine.accounts import backtest_portfolio
    from btkit.engine.instance import GET_SIGNAL_CALLS
    from btkit.market import wall_clock_ms
    from btkit.reporting.dump import dump_portfolio_report
    from btkit.reporting.family import PERFORMANCE
    from btkit.reporting.files import export_trades, report_filename
    from btkit.stats import compute_statistics

    formats = _formats(args)
    settings = settings_for(args)
    loaded = load_strategy_files(args, settings)
    strategy = strategy_of(args, settings, loaded, DEMO["strategy"])
    exchange = exchange_name(args, settings, DEMO["exchange"])
    symbols = symbols_of(args, settings)
    start, end, frame_interval = timerange_of(args, settings, loaded)
    end, clipped = clip_to_now(end)
    interval = run_value(args, settings, "interval", frame_interval or "1m")
    exports = export_formats(args.export)
    check_run(strategy, exchange, symbols)  # names first: an error is the only line, nothing printed before
    params = strategy_params(args, settings, strategy)  # docs/parameters.md
    problems = StrategyProblems(
        strict=args.strict, debug=bool(getattr(args, "debug", False)), raised=ends_backtest
    )
    problems.install()
    frame = f"{start:%Y%m%d}-{end:%Y%m%d}"
    btkit.add_frame(frame, start, end - timedelta(minutes=1), interval=interval)
    dump_dir = Path(args.dump_dir or "./dump") / "backtest"
    progress = _Progress()
    btkit.listen_backtest_progress(progress)
    print(
        f"backtest {strategy} on {exchange} {', '.join(symbols)} {start:%Y-%m-%d} → {end:%Y-%m-%d} ({interval})"
    )
    if clipped:
        print(clipped)
    rows, reports = [], []
    risks = register_risks(settings)
    wallet = has_wallet(args, settings)
    shared = has_risk(strategy, risks) or wallet
    if len(symbols) > 1 and shared:  # shared limits (risk profiles, one wallet) need the symbols in lockstep
        print(
            f"portfolio: {len(symbols)} symbols share risk profiles or a wallet; run in lockstep minute by minute"
        )
        progress.portfolio = symbols[0]
        try:
            with PERFORMANCE.timed("backtest: portfolio run"):
                for _ in btkit.Backtest.run_portfolio(
                    symbols,
                    strategy=strategy,
                    exchange=exchange,
                    frame=frame,
                    risks=risks,
                    params={strategy: params},
                ):
                    if problems.fatal:
                        break
        finally:
            progress.bars.close()
    else:
        try:
            for symbol in symbols:
                with PERFORMANCE.timed("backtest: run per symbol"):
                    for _ in btkit.Backtest.run(
                        symbol, strategy=strategy, exchange=exchange, frame=frame, risks=risks, params=params
                    ):
                        if problems.fatal:
                            break
                if problems.fatal:
                    break
        finally:
            progress.bars.close()
    problems.verdict(GET_SIGNAL_CALLS[strategy])  # no report of a run that could not evaluate the strategy
    for symbol in symbols:
        with PERFORMANCE.timed("backtest: statistics"):
            stats = btkit.Backtest.get_data(symbol, strategy=strategy, exchange=exchange, frame=frame)
        rows.append((symbol, stats))
        money = None  # with a wallet, the HTML chart shows this symbol's equity in money
        if wallet and "html" in formats:
            money = backtest_portfolio([symbol], strategy=strategy, exchange=exchange, frame=frame)
        reports.append(
            btkit.Backtest.dump(
                symbol,
                strategy=strategy,
                exchange=exchange,
                frame=frame,
                path=dump_dir,
                formats=formats,
                portfolio=money,
            )
        )
        report = reports[-1]
        if "html" in formats:
            reports.append(report.with_suffix(".html"))
        for kind in exports:
            target = report.with_suffix(f".{kind}")
            export_trades(stats.closed, target, kind)
            reports.append(target)
    everything = [c for _, s in rows for c in s.closed]
    combined = compute_statistics(
        everything, slippage_pct=rows[0][1].slippage_pct, fee_pct=rows[0][1].fee_pct
    )
    print(_summary(rows, combined if len(rows) > 1 else None))
    view = backtest_portfolio(symbols, strategy=strategy, exchange=exchange, frame=frame)  # money (issue 12)
    print("\n".join(["", *terminal_lines(view)]))
    name = report_filename("portfolio", strategy, exchange, frame, "backtest", wall_clock_ms())[:-3]
    title = f"Portfolio · {strategy} · {exchange} · {frame}"
    family = None
    if "html" in formats:
        from btkit.reporting.family import family_data

        family = family_data(everything, slippage_pct=combined.slippage_pct, fee_pct=combined.fee_pct)
    portfolio = dump_portfolio_report(
        dump_dir, title, view, name=name, formats=formats, stats=combined, family=family
    )
    for path in reports:
        print(f"report: {path}")
    print(f"portfolio report: {portfolio}")
    if "html" in formats:
        print(f"portfolio report: {portfolio.with_suffix('.html')}")
    if args.report is None and "html" not in formats:
        print(NO_HTML_NOTE, file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    bt = sub.add_parser("backtest", help="run a backtest (no options: the offline demo)")
    add_run_options(bt)
    bt.add_argument("--timerange", help="YYYYMMDD-YYYYMMDD, end exclusive (default: 20240101-20240301)")
    bt.add_argument("--interval", help="frame interval (default: 1m)")
    bt.add_argument(
        "--export",
        action="append",
        metavar="csv|json",
        help="also export the trades: csv, json, csv,json (repeatable)",
    )
    bt.add_argument(
        "--report",
        metavar="FORMATS",
        help="report formats, comma-separated: html,md,png (default html,md; html/png need btkit[plot])",
    )
    bt.set_defaults(func=cmd_backtest)
