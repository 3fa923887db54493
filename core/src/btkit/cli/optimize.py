"""``btkit optimize``: search a strategy's parameters (grid, random, tpe), optionally out of sample.

docs/optimizer.md and docs/walk-forward.md. Prints the ranked table, writes ``trials.csv`` (one row per
trial), a heatmap PNG, ``summary.md`` and the best trial's report under ``<dump-dir>/optimize/``.
"""

from __future__ import annotations

import argparse
import os
import sys
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
    register_risks,
    run_value,
    settings_for,
    symbols_of,
)

INTERRUPTED = 130


class _Bar:
    """A rich progress bar with ETA on stderr (a plain line per 10 % when stderr is not a terminal)."""

    def __init__(self, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.label = label
        self.progress: Any = None
        self.task: Any = None
        self.tty = sys.stderr.isatty()
        self.last = -1

    def __call__(self, done: int, total: int, record: Any) -> None:
        if not self.enabled:
            return
        if not self.tty:
            step = (10 * done) // max(1, total)
            if step != self.last:
                self.last = step
                print(f"{self.label}: {done}/{total} trials", file=sys.stderr, flush=True)
            return
        if self.progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=total, completed=done)
        self.progress.update(self.task, total=total, completed=done)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _range_of(text: str) -> tuple[Any, Any]:
    return parse_timerange(text)


def cmd_optimize(args: argparse.Namespace) -> int:
    from btkit.research import output
    from btkit.research.optimizer import OptimizeInterrupted, optimize

    settings = settings_for(args)
    load_strategy_files(args, settings)
    strategy = run_value(args, settings, "strategy", DEMO["strategy"])
    exchange = exchange_name(args, settings, DEMO["exchange"])
    symbols = symbols_of(args, settings)
    if len(symbols) != 1:
        raise CliError("btkit optimize takes one --symbol")
    symbol = symbols[0]
    risks = register_risks(settings)
    interval = run_value(args, settings, "interval", "1m")
    dump_dir = Path(args.dump_dir or "./dump")
    files = run_value(args, settings, "strategy_file", [])
    common: dict[str, Any] = dict(
        params=args.param or [],
        symbol=symbol,
        exchange=exchange,
        constraint=args.constraint,
        metric=args.metric,
        method=args.method,
        trials=args.trials,
        jobs=args.jobs,
        executor=args.executor,
        address=args.ray_address or os.environ.get("RAY_ADDRESS"),
        min_trades=args.min_trades,
        seed=args.seed,
        interval=interval,
        dump_dir=dump_dir,
        resume=args.resume,
        risks=risks,
        strategy_files=[files] if isinstance(files, str) else list(files),
        engine=settings.get("engine") or None,
    )
    bar = _Bar(not args.no_progress, f"optimize {strategy}")
    if args.walk_forward or args.train or args.test:
        return _walk_forward(args, settings, strategy, common, bar)
    start, end = parse_timerange(run_value(args, settings, "timerange", DEMO["timerange"]))
    heat = [s.strip() for s in args.heatmap.split(",")] if args.heatmap else None
    print(
        f"optimize {strategy} on {exchange} {symbol} {start:%Y-%m-%d} → {end:%Y-%m-%d}: {args.method}, "
        f"metric {args.metric}, executor {args.executor}"
    )
    try:
        result = optimize(strategy, start=start, end=end, progress=bar, heatmap=heat, **common)
    except OptimizeInterrupted as stop:
        bar.stop()
        r = stop.result
        print(
            f"interrupted: {len(r.records)} finished trial(s) kept in {r.directory}; continue with --resume"
        )
        return INTERRUPTED
    finally:
        bar.stop()
    failed = sum(1 for r in result.records if r.status == "failed")
    print(
        f"{len(result.records)} trial(s) ({result.ran} run now), {len(result.ranked)} ranked, {failed} failed"
    )
    print("\n".join(output.top_table(result, args.top)))
    if result.csv:
        print(f"trials: {result.csv}")
    if result.heatmap:
        print(f"heatmap: {result.heatmap}")
    elif len(result.names) >= 2:
        print("heatmap: skipped (matplotlib is not installed: pip install 'btkit[plot]')")
    if result.report:
        print(f"best report: {result.report}")
    if result.directory:
        print(f"summary: {result.directory / 'summary.md'}")
    if not result.ranked:
        print(
            "btkit: error: no trial ranked (all failed, non-finite metric or fewer than --min-trades trades); "
            "see the error column of trials.csv",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def _walk_forward(
    args: argparse.Namespace, settings: Any, strategy: str, common: dict[str, Any], bar: _Bar
) -> int:
    from btkit.research import wf_report
    from btkit.research.walkforward import walk_forward

    common = dict(common)
    dump = Path(common.pop("dump_dir")) / "walk-forward" / f"{strategy}-{common['symbol']}"
    kw: dict[str, Any] = {}
    if args.train or args.test:
        if not (args.train and args.test):
            raise CliError("give both --train RANGE and --test RANGE")
        kw["train"], kw["test"] = _range_of(args.train), _range_of(args.test)
    else:
        start, end = parse_timerange(run_value(args, settings, "timerange", DEMO["timerange"]))
        kw.update(start=start, end=end, windows=args.windows, mode=args.walk_forward)
    try:
        result = walk_forward(strategy, dump_dir=dump, progress=bar, **kw, **common)
    finally:
        bar.stop()
    print("\n".join(wf_report.lines(result)))
    print(f"report: {result.report}")
    print(f"out-of-sample equity: {result.equity_csv}")
    if not any(r.params for r in result.windows):
        print("btkit: error: no window produced a ranked in-sample trial", file=sys.stderr)
        return EXIT_FAILED
    return 0


def register(sub: Any) -> None:
    sp = sub.add_parser("optimize", help="search a strategy's parameters (grid, random, tpe; walk-forward)")
    sp.add_argument("--config", help="btkit.toml (default: ./btkit.toml when present)")
    sp.add_argument("--strategy", help="strategy name (default: smacross)")
    sp.add_argument("--strategy-file", action="append", help="a .py file registering strategies (repeatable)")
    sp.add_argument("--exchange", help="exchange name (default: sim)")
    sp.add_argument("--symbol", action="append", help="the symbol (default: BTCUSDT)")
    sp.add_argument("--timerange", help="YYYYMMDD-YYYYMMDD, end exclusive (default: 20240101-20240301)")
    sp.add_argument("--interval", help="frame interval (default: 1m)")
    sp.add_argument("--dump-dir", help="where trials, CSV, heatmap and reports go (default: ./dump)")
    sp.add_argument("--offline", action="store_true", help="read candles from the local candle store")
    sp.add_argument("--data-dir", help="candle store directory (default: ./data)")
    sp.add_argument(
        "--param",
        action="append",
        metavar="NAME=SPEC",
        help="NAME=lo:hi:step, NAME=a,b,c or NAME=value (repeatable)",
    )
    sp.add_argument("--constraint", action="append", help='e.g. "fast < slow" (repeatable: all must hold)')
    sp.add_argument("--metric", default="sharpe_ratio", help="what ranks trials (default: sharpe_ratio)")
    sp.add_argument(
        "--method", default="grid", help="grid, random or tpe (tpe: pip install 'btkit[optimize]')"
    )
    sp.add_argument("--trials", type=int, help="number of trials (random, tpe; caps grid)")
    sp.add_argument("--jobs", type=int, help="workers (default: the number of CPUs)")
    sp.add_argument("--executor", default="serial", help="serial, process or ray (pip install btkit-ray)")
    sp.add_argument("--ray-address", help="an existing Ray cluster (default: $RAY_ADDRESS, else a local one)")
    sp.add_argument("--min-trades", type=int, default=0, help="trials with fewer trades get no rank")
    sp.add_argument("--seed", type=int, default=1, help="seed of random and tpe (default: 1)")
    sp.add_argument(
        "--resume", action="store_true", help="continue an interrupted run: finished trials are kept"
    )
    sp.add_argument("--top", type=int, default=10, help="rows of the ranked table (default: 10)")
    sp.add_argument(
        "--heatmap", metavar="X,Y", help="the two parameters of the heatmap (default: the first two)"
    )
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.add_argument("--train", metavar="RANGE", help="in-sample timerange (with --test)")
    sp.add_argument("--test", metavar="RANGE", help="out-of-sample timerange (with --train)")
    sp.add_argument("--walk-forward", choices=("rolling", "anchored"), help="walk-forward over --timerange")
    sp.add_argument("--windows", type=int, default=3, help="walk-forward windows (default: 3)")
    add_debug(sp)
    sp.set_defaults(func=cmd_optimize)
