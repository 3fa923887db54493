"""``btkit check lookahead|recursive|intrabar``: robustness checks with the run options of ``btkit backtest``.

Each check runs the strategy (the array-form demo ``smacross-array`` by default) over the timerange, prints
its summary, and writes a markdown report to ``<dump-dir>/check/``. ``lookahead`` exits 1 when a decision
changes with the data cut at its bar; ``recursive`` exits 1 when the strategy's own live window decides a
bar differently from the backtest; ``intrabar`` reports and exits 0. See docs/checks.md.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from btkit.cli.common import (
    DEMO,
    CliError,
    add_run_options,
    check_run,
    clip_to_now,
    exchange_name,
    load_strategy_files,
    run_value,
    settings_for,
    strategy_of,
    symbols_of,
    timerange_of,
)

CHECK_DEMO = "smacross-array"  # the demo in the array form: what every check can look at


def _setup(args: argparse.Namespace) -> tuple[str, str, list[str], str]:
    import btkit

    settings = settings_for(args)
    loaded = load_strategy_files(args, settings)
    strategy = strategy_of(args, settings, loaded, CHECK_DEMO)
    exchange = exchange_name(args, settings, DEMO["exchange"])
    symbols = symbols_of(args, settings)
    start, end, frame_interval = timerange_of(args, settings, loaded)
    end, _ = clip_to_now(end)
    interval = run_value(args, settings, "interval", frame_interval or "1m")
    check_run(strategy, exchange, symbols)
    frame = f"{start:%Y%m%d}-{end:%Y%m%d}"
    btkit.add_frame(frame, start, end - timedelta(minutes=1), interval=interval)
    return strategy, exchange, symbols, frame


def _write(args: argparse.Namespace, kind: str, strategy: str, sections: list[tuple[str, list[str]]]) -> Path:
    folder = Path(args.dump_dir or "./dump") / "check"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{kind}-{strategy}.md".replace("/", "_")
    text = [f"# btkit check {kind}: {strategy}", ""]
    for title, lines in sections:
        text += [f"## {title}", "", *lines, ""]
    path.write_text("\n".join(text), encoding="utf-8")
    return path


def _warmups(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise CliError(
            f"--warmups {text!r} must be whole numbers separated by commas, e.g. 100,300,1000"
        ) from None
    if not values or any(v < 2 for v in values):
        raise CliError(f"--warmups {text!r}: give warm-up lengths of at least 2 candles")
    return values


def cmd_check(args: argparse.Namespace) -> int:
    strategy, exchange, symbols, frame = _setup(args)
    kind = args.check
    sections: list[tuple[str, list[str]]] = []
    failed = False
    for symbol in symbols:
        if kind == "lookahead":
            from btkit.analysis import lookahead

            la = asyncio.run(
                lookahead.check_lookahead(
                    symbol,
                    strategy=strategy,
                    exchange=exchange,
                    frame=frame,
                    samples=args.samples,
                    seed=args.seed,
                )
            )
            lines = lookahead.markdown_lines(la)
            failed |= la.biased
            verdict = (
                f"BIASED: {len(la.findings)} bar(s) differ, {la.decisions_changed} decision(s) changed "
                f"({', '.join(la.columns[:5]) or 'enter'} moved)"
                if la.biased
                else "no look-ahead bias found"
            )
            print(
                f"lookahead {strategy} ({la.form}) {symbol}: {la.signals_checked} signal bar(s) + {la.samples_checked} "
                f"other bar(s) checked in {la.seconds:.1f} s: {verdict}"
            )
        elif kind == "recursive":
            from btkit.analysis import recursive

            rc = asyncio.run(
                recursive.check_recursive(
                    symbol, strategy=strategy, exchange=exchange, frame=frame, warmups=_warmups(args.warmups)
                )
            )
            lines = recursive.markdown_lines(rc)
            failed |= rc.unstable
            print(f"recursive {strategy} {symbol}:")
            for row in rc.rows:
                worst = max(row.max_rel.items(), key=lambda kv: kv[1], default=("-", 0.0))
                label = f"{row.warmup} (window)" if row.is_window else str(row.warmup)
                print(
                    f"  warm-up {label:>13}: {row.signals_changed} of {row.bars} decision(s) changed; largest indicator "
                    f"difference {worst[1] * 100:.4g}% ({worst[0]})"
                )
        else:
            from btkit.analysis import intrabar
            from btkit.engine.backtest import Backtest

            for _ in Backtest.run(symbol, strategy=strategy, exchange=exchange, frame=frame):
                pass
            stats = Backtest.get_data(symbol, strategy=strategy, exchange=exchange, frame=frame)
            ib = intrabar.analyse_with_exchange(
                stats.closed, exchange, slippage_pct=stats.slippage_pct, fee_pct=stats.fee_pct
            )
            lines = intrabar.markdown_lines(ib)
            lo, hi = ib.pnl_range
            print(
                f"intrabar {strategy} {symbol}: {len(ib.ambiguous)} of {ib.trades} trade(s) closed on a candle that "
                f"reached both stop and target; total pnl {ib.headline.total_pnl:.2f}% (range {lo:.2f}% … {hi:.2f}%)"
            )
        sections.append((symbol, lines))
    print(f"report: {_write(args, kind, strategy, sections)}")
    return 1 if failed else 0


def register(sub: Any) -> None:
    ck = sub.add_parser("check", help="robustness checks: lookahead, recursive, intrabar (docs/checks.md)")
    ck.add_argument("check", choices=("lookahead", "recursive", "intrabar"), help="which check to run")
    add_run_options(ck)
    ck.add_argument("--timerange", help="YYYYMMDD-YYYYMMDD, end exclusive (default: 20240101-20240301)")
    ck.add_argument("--interval", help="frame interval (default: 1m)")
    ck.add_argument("--samples", type=int, default=100, help="lookahead: bars without a signal to check too")
    ck.add_argument("--seed", type=int, default=0, help="lookahead: seed of the sample of bars")
    ck.add_argument(
        "--warmups", default="100,300,1000", help="recursive: warm-up lengths (default: 100,300,1000)"
    )
    ck.set_defaults(func=cmd_check)
