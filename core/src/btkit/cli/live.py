"""``btkit paper`` and ``btkit live``: the live runner on the wall clock or a replay clock."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from btkit.cli.common import (
    DEMO,
    EXIT_FAILED,
    CliError,
    add_run_options,
    exchange_name,
    fmt,
    load_strategy_files,
    parse_day,
    parse_options,
    register_risks,
    run_value,
    settings_for,
    strategy_params,
    symbols_of,
)
from btkit.errors import BtkitError
from btkit.secrets import mask, mask_options, register_option_secrets


def _printable(name: str) -> str:
    """A symbol as one printable line: a newline or control character is shown escaped, never raw."""
    return name if name.isprintable() else name.encode("unicode_escape").decode("ascii")


def configure_live(args: argparse.Namespace, settings: dict[str, dict[str, Any]], *, paper: bool) -> None:
    from btkit.engine import live

    persistence = dict(settings.get("persistence", {}))
    backend = args.persistence or persistence.pop("backend", "file")
    persistence.pop("backend", None)
    options = {**persistence, **parse_options(args.persistence_option)}
    if backend == "file":
        root = args.dump_dir or options.pop("root", None) or options.pop("path", None) or "./dump"
        options["root"] = root
    elif args.dump_dir and "path" not in options and backend == "sqlite":
        options["path"] = str(Path(args.dump_dir) / "btkit.sqlite3")
    live.SETTINGS.persistence = backend
    live.SETTINGS.persistence_options = options
    register_option_secrets(options)  # a password in btkit.toml or an option is masked like an env one
    broker = dict(settings.get("broker", {}))
    name = broker.pop("name", None)
    timeout = broker.pop("timeout_seconds", None)
    if timeout is not None:
        live.SETTINGS.broker_timeout_seconds = float(timeout)
    if paper:
        live.SETTINGS.broker = "paper"
        live.SETTINGS.broker_options = {}
    else:
        name = args.broker or name
        if not name or name == "paper":
            raise CliError(
                "btkit live needs a real broker: set [broker] name in btkit.toml or --broker; "
                "use btkit paper for paper trading"
            )
        live.SETTINGS.broker = name
        live.SETTINGS.broker_options = broker
        register_option_secrets(broker)


def cmd_live(args: argparse.Namespace, *, paper: bool) -> int:
    import btkit
    from btkit.engine import live

    settings = settings_for(args)
    configure_live(args, settings, paper=paper)
    live.SETTINGS.extra_risks = register_risks(settings)
    load_strategy_files(args, settings)
    strategy = run_value(args, settings, "strategy", DEMO["strategy"])
    exchange = exchange_name(args, settings, DEMO["exchange"])
    symbols = symbols_of(args, settings)
    clock: Any = None
    if args.replay_from:
        end = parse_day(args.replay_to) if args.replay_to else None
        clock = btkit.ReplayClock(parse_day(args.replay_from), end=end, speed=args.speed)
    mode = "paper" if paper else "live"

    def show(result: Any) -> None:
        if result.action in ("opened", "closed", "cancelled", "scheduled"):
            when = datetime.fromtimestamp(result.timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            extra = ""
            if result.action == "closed":
                extra = f" {result.close_reason} pnl {result.pnl.pnl_percentage:+.2f}%"
            elif result.action == "cancelled":
                extra = f" {result.reason}"
            print(
                mask(
                    f"{when} {_printable(result.symbol)} {result.action} @ {result.current_price:.8g}{extra}"
                ),
                flush=True,
            )

    def show_risk(rejection: Any) -> None:
        print(
            mask(f"risk {rejection.risk_name} rejected {_printable(rejection.symbol)}: {rejection.note}"),
            flush=True,
        )

    def show_error(event: Any) -> None:
        print(mask(f"error: {event}"), file=sys.stderr, flush=True)

    btkit.listen_signal_live(show)
    btkit.listen_risk(show_risk)
    btkit.listen_error(show_error)
    for handler in logging.getLogger().handlers:  # show_error prints each error event once; not the log too
        handler.addFilter(lambda record: not getattr(record, "btkit_error_event", False))
    dump_dir = Path(args.dump_dir or "./dump") / "live"
    from btkit.persist.paths import check_paths, live_run_paths

    state_root = (
        live.SETTINGS.persistence_options.get("root") if live.SETTINGS.persistence == "file" else None
    )
    paths = live_run_paths(
        report_dir=dump_dir,
        symbols=symbols,
        strategy=strategy,
        exchange=exchange,
        state_root=Path(state_root) if state_root else None,
    )
    check_paths(paths, what=f"btkit {mode}")  # every path it will write, before anything trades
    params = strategy_params(args, settings, strategy)  # docs/parameters.md
    handles = [
        btkit.Live.background(sym, strategy=strategy, exchange=exchange, clock=clock, params=params)
        for sym in symbols
    ]
    print(
        mask(
            f"{mode}: {strategy} on {exchange} {', '.join(map(_printable, symbols))} — state in "
            f"{live.SETTINGS.persistence} {mask_options(live.SETTINGS.persistence_options)}; "
            "Ctrl-C stops gracefully"
        ),
        flush=True,
    )
    interrupts = {"n": 0}

    def on_signal(signum: int, frame: Any) -> None:
        interrupts["n"] += 1
        if interrupts["n"] > 1 and signum == signal.SIGINT:
            print("second interrupt: exiting now (state on disk is consistent)", file=sys.stderr, flush=True)
            os._exit(130)
        if interrupts["n"] > 1:  # a repeated SIGTERM: already stopping
            return
        print(
            "stopping gracefully: no new signals; open positions are monitored until they close "
            "(Ctrl-C again to exit now)",
            file=sys.stderr,
            flush=True,
        )
        for h in handles:
            h.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    while not all(h.join(0.5) for h in handles):
        pass
    failed = [h for h in handles if h.error is not None]
    never_started = {h.instance.symbol for h in failed if not h.event_list}
    for sym in symbols:
        if sym in never_started:  # refused before its first tick: no report to write
            continue
        stats = btkit.Live.get_data(sym, strategy=strategy, exchange=exchange)
        path = btkit.Live.dump(sym, strategy=strategy, exchange=exchange, path=dump_dir)
        print(
            f"{_printable(sym)}: {stats.total_signals} closed, total pnl {fmt(stats.total_pnl, '%')}; report: {path}"
        )
        rejected = [r for r in live.REJECTIONS if r.symbol == sym]
        if rejected:
            print(
                f"{_printable(sym)}: {len(rejected)} signal(s) rejected by risk (see the report's Risk rejections section)"
            )
    live.Live.shutdown()
    for h in failed:  # the first btkit error decides the exit code and the one-line message
        if isinstance(h.error, BtkitError):
            raise h.error
    return EXIT_FAILED if failed else 0


def register(sub: Any) -> None:
    for verb, paper in (("paper", True), ("live", False)):
        sp = sub.add_parser(
            verb, help="paper trading (no orders)" if paper else "live trading through a broker"
        )
        add_run_options(sp)
        sp.add_argument("--persistence", help="persistence backend: file (default), sqlite, redis, …")
        sp.add_argument("--persistence-option", action="append", help="backend option key=value (repeatable)")
        if not paper:
            sp.add_argument("--broker", help="broker name (or [broker] name in btkit.toml)")
        sp.add_argument(
            "--replay-from", help="rehearse on a replay clock from YYYYMMDD instead of the wall clock"
        )
        sp.add_argument("--replay-to", help="end of the replay (YYYYMMDD); default: run on")
        sp.add_argument("--speed", type=float, help="replay speed (600 = 10 simulated minutes per second)")
        sp.set_defaults(func=lambda a, paper=paper: cmd_live(a, paper=paper), broker=None)
