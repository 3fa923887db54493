"""``btkit paper`` and ``btkit live``: the live runner on the wall clock or a replay clock."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from btkit.accounting.view import printable
from btkit.cli import replay as rehearsal
from btkit.cli.common import (
    DEMO,
    CliError,
    add_run_options,
    check_backend_options,
    check_run,
    exchange_name,
    fmt,
    load_strategy_files,
    parse_options,
    register_risks,
    settings_for,
    strategy_of,
    strategy_params,
    symbols_of,
)
from btkit.cli.problems import RiskProblems, StrategyProblems, ends_live_run
from btkit.context import iso
from btkit.errors import BtkitError
from btkit.secrets import mask, mask_options, register_option_secrets


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
    check_backend_options(backend, options)
    live.SETTINGS.persistence = backend
    live.SETTINGS.persistence_options = options
    register_option_secrets(options)  # a password in btkit.toml or an option is masked like an env one
    broker = dict(settings.get("broker", {}))
    name = broker.pop("name", None)
    timeout = broker.pop("timeout_seconds", None)
    if timeout is not None:
        live.SETTINGS.broker_timeout_seconds = float(timeout)
    if paper:
        if broker and not name:
            raise CliError(
                f"[broker] {', '.join(sorted(broker))} given without [broker] name: say which broker the "
                "options are for, or remove them"
            )
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
    from btkit.engine.instance import GET_SIGNAL_CALLS

    replay = rehearsal.replay_range(args)  # an impossible range is a usage error before anything runs
    settings = settings_for(args)
    configure_live(args, settings, paper=paper)
    live.SETTINGS.extra_risks = register_risks(settings)
    loaded = load_strategy_files(args, settings)
    strategy = strategy_of(args, settings, loaded, DEMO["strategy"])
    exchange = exchange_name(args, settings, DEMO["exchange"])
    symbols = symbols_of(args, settings)
    check_run(strategy, exchange, symbols)
    configure_actions(args, settings, strategy)
    clock: Any = None
    if replay is not None:  # a rehearsal: its own state, never the wall-clock one (and never resumed wrongly)
        rehearsal.apply_namespace(live.SETTINGS, rehearsal.namespace(*replay))
        rehearsal.check_state(live.SETTINGS, strategy, symbols, *replay, fresh=args.fresh)
        clock = btkit.ReplayClock(replay[0], end=replay[1], speed=args.speed)
    mode = "paper" if paper else "live"
    problems = StrategyProblems(
        strict=args.strict,
        debug=bool(getattr(args, "debug", False)),
        # the error that ends the whole run is its one closing line; with several symbols one of them
        # stopping is printed when it happens (the others trade on)
        raised=lambda e: ends_live_run(e) and (len(symbols) == 1 or str(e.where).startswith("live start-up")),
    )
    risk_lines = RiskProblems()

    def show(result: Any) -> None:
        if result.action in ("opened", "closed", "cancelled", "scheduled"):
            when = iso(result.timestamp)
            extra = ""
            price = result.current_price
            if result.action == "opened":  # where the position was entered: the broker's fill when it gave one
                price = result.signal.price_open
            if result.action == "closed":
                extra = f" {result.close_reason} pnl {result.pnl.pnl_percentage:+.2f}%"
            elif result.action == "cancelled":
                extra = f" {result.reason}"
            print(
                mask(
                    f"{when} {printable(result.symbol)} {result.action} @ {price:.8g}{extra}"
                ),
                flush=True,
            )

    btkit.listen_signal_live(show)
    btkit.listen_risk(risk_lines)  # with the time; repeats counted
    problems.install()  # each error event printed once (strategy errors collapsed); not the log line too
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
    from btkit.ops.control import ControlWatcher, Journal

    root = Path(args.dump_dir or "./dump")
    Journal(root).subscribe()  # what btkit serve shows as logs, risk rejections and recent events
    params = strategy_params(args, settings, strategy)  # docs/parameters.md
    handles = [
        btkit.Live.background(sym, strategy=strategy, exchange=exchange, clock=clock, params=params)
        for sym in symbols
    ]
    watcher = ControlWatcher(root, lambda req: apply_control(req, handles)).start()
    print(
        mask(
            f"{mode}: {strategy} on {exchange} {', '.join(map(printable, symbols))} — state in "
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
        held = [printable(h.instance.symbol) for h in handles if h.instance.state.pending is not None]
        resting = [printable(h.instance.symbol) for h in handles if h.instance.state.scheduled is not None]
        why = "nothing is open: stopping now"
        if held or resting:
            why = "; ".join(
                part
                for part in (
                    held and f"open position on {', '.join(held)} monitored until it closes (TP/SL/expiry)",
                    resting and f"resting entry on {', '.join(resting)} cancelled at the next minute",
                )
                if part
            )
        print(
            f"stopping gracefully: no new signals; {why} (Ctrl-C again to exit now)", file=sys.stderr, flush=True
        )
        for h in handles:
            h.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    while not all(h.join(0.5) for h in handles):
        if problems.fatal and not interrupts["n"]:  # --strict: the first strategy error stops the run
            interrupts["n"] += 1
            for h in handles:
                h.stop()
    watcher.close()
    from btkit.ops.actions import drain_actions

    if not drain_actions(30.0):
        print("some action events were still queued after 30 s; they are dropped", file=sys.stderr)
    failed = [h for h in handles if h.error is not None]
    never_started = {h.instance.symbol for h in failed if not h.event_list}
    for sym in symbols:
        if sym in never_started:  # refused before its first tick: no report to write
            continue
        stats = btkit.Live.get_data(sym, strategy=strategy, exchange=exchange)
        path = btkit.Live.dump(sym, strategy=strategy, exchange=exchange, path=dump_dir)
        print(
            f"{printable(sym)}: {stats.total_signals} closed, total pnl {fmt(stats.total_pnl, '%')}; report: {path}"
        )
        rejected = [r for r in live.REJECTIONS if r.symbol == sym]
        if rejected:
            print(
                f"{printable(sym)}: {len(rejected)} signal(s) rejected by risk (see the report's Risk rejections section)"
            )
    started = [sym for sym in symbols if sym not in never_started]
    if started:  # the money view (issue 12): persisted trades + open positions, from the persisted balance
        from btkit.accounting.view import terminal_lines
        from btkit.engine.accounts import live_portfolio

        until = clock.current if clock is not None else None  # a replay ends at its clock, not now
        view = live_portfolio(started, strategy=strategy, exchange=exchange, until=until)
        print(mask("\n".join(["", *terminal_lines(view)])), flush=True)
    live.Live.shutdown()
    for line in risk_lines.summary():
        print(line)
    problems.print_summary()
    for h in failed:  # the first btkit error decides the exit code and the one-line message
        if isinstance(h.error, BtkitError):
            raise h.error
    if failed:  # any other error: still the one line, naming the run it ended
        err = failed[0].error
        raise BtkitError(f"live run on {printable(failed[0].instance.symbol)} failed: {type(err).__name__}: {err}")
    problems.verdict(GET_SIGNAL_CALLS[strategy])  # no signal evaluated at all, or --strict and an error
    return 0


def configure_actions(args: argparse.Namespace, settings: dict[str, dict[str, Any]], strategy: str) -> None:
    """``--action NAME`` (repeatable) or ``[actions] apply = [...]``, with ``[actions.<name>]`` options;
    the handlers are built now, so a bad option (a missing token) stops the run before it trades."""
    from btkit.ops.actions import HUB, use_actions

    section = dict(settings.get("actions", {}))
    apply = section.pop("apply", [])
    names = list(args.action or ([apply] if isinstance(apply, str) else apply))
    options = {k: v for k, v in section.items() if isinstance(v, dict)}
    for body in options.values():
        register_option_secrets(body)
    try:
        use_actions(names, options)
        HUB.prepare(strategy)
    except BtkitError as exc:
        raise CliError(str(exc)) from None


def apply_control(req: dict[str, Any], handles: list[Any]) -> str:
    """Honour one ``btkit serve`` control request on the live loop (docs/serve-api.md)."""
    if req.get("kind") == "stop":
        for h in handles:
            h.stop()
        return "stopping gracefully: no new signals; open positions run to TP/SL/expiry"
    if req.get("kind") == "force-close":
        symbol = req.get("symbol")
        for h in handles:
            if h.instance.symbol == symbol and not h.done:
                return "closing on the next tick" if _force_close(h) else "no open position"
        return f"{symbol!r} does not run in this process"
    return f"unknown request {req.get('kind')!r}"


def _force_close(handle: Any) -> bool:
    from btkit.commands import commit_close_pending
    from btkit.context import entered

    inst = handle.instance

    async def close() -> bool:  # on the live loop, between two ticks of the instance
        with entered(inst.context(inst.run.now_ms())):
            return commit_close_pending(inst.symbol)

    return bool(handle.session.submit(close()).result(10))


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
        sp.add_argument(
            "--fresh", action="store_true", help="start the replay's own state over (only with --replay-from)"
        )
        sp.add_argument(
            "--action",
            action="append",
            help="attach an action (e.g. telegram) to the run's strategy; repeatable (docs/actions.md)",
        )
        sp.set_defaults(func=lambda a, paper=paper: cmd_live(a, paper=paper), broker=None)
