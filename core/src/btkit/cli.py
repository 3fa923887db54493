"""The ``btkit`` command: ``backtest``, ``paper``, ``live``, ``plugins``, ``report``, ``data``, ``persistence``.

Errors are one line on stderr (a traceback only with ``--debug``). Exit codes: 0 success, 1 the run
failed, 2 bad usage or configuration, 3 the state directory is owned by another live process,
4 corrupt persisted state, 130 interrupted twice.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from btkit.errors import (
    BtkitError,
    ConfigError,
    CorruptStateError,
    StateLockedError,
    UnknownComponentError,
)
from btkit.secrets import mask

DEMO = {"strategy": "smacross", "exchange": "sim", "symbols": ["BTCUSDT"], "timerange": "20240101-20240301"}
EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_CORRUPT = 1, 2, 3, 4


class CliError(BtkitError):
    """A usage or configuration problem detected by the CLI itself."""


# ---------------------------------------------------------------- helpers
def parse_day(text: str) -> datetime:
    for fmt in ("%Y%m%d", "%Y-%m-%d", "%Y%m%d%H%M", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise CliError(f"cannot read date {text!r}; use YYYYMMDD (e.g. 20240101)")


def parse_timerange(text: str) -> tuple[datetime, datetime]:
    """``20240101-20240301`` → [start, end) as datetimes (end exclusive); ``20240101-`` runs until now."""
    if "-" not in text.replace("-", "", 0) and text.count("-") != 1:
        raise CliError(f"timerange {text!r} must look like 20240101-20240301")
    start_s, _, end_s = text.partition("-")
    start = parse_day(start_s)
    end = parse_day(end_s) if end_s else datetime.now(UTC)
    if end <= start:
        raise CliError(f"timerange {text!r}: the end must be after the start")
    return start, end


def _options(pairs: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"option {pair!r} must look like key=value")
        out[key] = value
    return out


def _settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from btkit.config import load_settings, set_config

    if args.config:  # plugins that read their own [exchange.<name>] tables read this file too
        os.environ["BTKIT_CONFIG"] = str(Path(args.config).resolve())
    settings = load_settings(args.config)
    if settings.get("engine"):
        set_config(**settings["engine"])
    if getattr(args, "dump_dir", None) is None and "dump_dir" in settings.get("run", {}):
        args.dump_dir = str(settings["run"]["dump_dir"])  # every verb then honours [run] dump_dir alike
    return settings


def _risks(settings: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """Register ``[risk.profiles.*]`` from btkit.toml and return the names ``[risk] apply`` puts on the run."""
    from btkit.registry import CODE
    from btkit.risk import profiles_from_settings

    specs, apply = profiles_from_settings(settings.get("risk", {}))
    for spec in specs:
        CODE.risks[spec.name] = spec
    return apply


def _load_strategy_files(args: argparse.Namespace, settings: dict[str, dict[str, Any]]) -> None:
    """Import ``--strategy-file`` / ``[run] strategy_file`` scripts so their ``add_strategy`` calls register.

    A file is imported as a module (not as ``__main__``): its ``if __name__ == "__main__":`` block does
    not run, and modules beside it can be imported.
    """
    import importlib.util

    files = _run_value(args, settings, "strategy_file", [])
    for name in [files] if isinstance(files, str) else list(files):
        path = Path(name)
        if not path.is_file():
            raise CliError(f"strategy file {name} does not exist; pass the path of a .py file")
        module_name = f"btkit_user_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise CliError(f"strategy file {name} is not a Python file; pass the path of a .py file")
        module = importlib.util.module_from_spec(spec)
        folder = str(path.resolve().parent)
        if folder not in sys.path:  # modules next to the script import like the script's own
            sys.path.insert(0, folder)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise CliError(
                f"strategy file {name} failed to import ({type(exc).__name__}: {exc}); fix it and run again"
            ) from exc


def _run_value(args: argparse.Namespace, settings: dict[str, dict[str, Any]], name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    if value not in (None, []):
        return value
    return settings.get("run", {}).get(name, default)


def _exchange_name(args: argparse.Namespace, settings: dict[str, dict[str, Any]], default: str) -> str:
    """The exchange to use; with ``--offline`` an exchange serving the local candle store instead."""
    name = _run_value(args, settings, "exchange", default)
    if getattr(args, "offline", False) or settings.get("exchange", {}).get("offline"):
        from btkit.registry import CODE
        from btkit.store import store_exchange

        data_dir = args.data_dir or settings.get("exchange", {}).get("data_dir", "./data")
        gaps = settings.get("exchange", {}).get("gaps", "reject")
        spec = store_exchange(name, data_dir, gaps=gaps, name=f"store:{name}")
        CODE.exchanges[spec.name] = spec
        return spec.name
    return name


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


def _fmt(value: Any, suffix: str = "", digits: int = 2) -> str:
    if value is None:
        return "N/A"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _summary(rows: list[tuple[str, Any]]) -> str:
    header = ("symbol", "trades", "win rate", "total pnl", "pnl $", "sharpe", "max drawdown")
    table = [header]
    for symbol, s in rows:
        table.append(
            (
                symbol,
                str(s.total_signals),
                _fmt(s.win_rate, "%"),
                _fmt(s.total_pnl, "%"),
                _fmt(s.total_pnl_cost),
                _fmt(s.sharpe_ratio, digits=3),
                _fmt(s.max_drawdown, "%"),
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


# ---------------------------------------------------------------- verbs
def cmd_backtest(args: argparse.Namespace) -> int:
    import btkit
    from btkit.report import export_trades

    settings = _settings(args)
    _load_strategy_files(args, settings)
    strategy = _run_value(args, settings, "strategy", DEMO["strategy"])
    exchange = _exchange_name(args, settings, DEMO["exchange"])
    symbols = _symbols(args, settings)
    start, end = parse_timerange(_run_value(args, settings, "timerange", DEMO["timerange"]))
    interval = _run_value(args, settings, "interval", "1m")
    frame = f"{start:%Y%m%d}-{end:%Y%m%d}"
    btkit.add_frame(frame, start, end - timedelta(minutes=1), interval=interval)
    dump_dir = Path(args.dump_dir or "./dump") / "backtest"
    progress = _Progress()
    btkit.listen_backtest_progress(progress)
    print(
        f"backtest {strategy} on {exchange} {', '.join(symbols)} {start:%Y-%m-%d} → {end:%Y-%m-%d} ({interval})"
    )
    rows, reports = [], []
    risks = _risks(settings)
    if len(symbols) > 1 and _has_risk(strategy, risks):  # shared limits need the symbols in lockstep
        print(f"portfolio: {len(symbols)} symbols share risk profiles; run in lockstep minute by minute")
        progress.portfolio = symbols[0]
        for _ in btkit.Backtest.run_portfolio(
            symbols, strategy=strategy, exchange=exchange, frame=frame, risks=risks
        ):
            pass
    else:
        for symbol in symbols:
            for _ in btkit.Backtest.run(
                symbol, strategy=strategy, exchange=exchange, frame=frame, risks=risks
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
    for path in reports:
        print(f"report: {path}")
    return 0


def _symbols(args: argparse.Namespace, settings: dict[str, dict[str, Any]]) -> list[str]:
    value = _run_value(args, settings, "symbol", DEMO["symbols"])
    symbols = [value] if isinstance(value, str) else [str(v) for v in value]
    for symbol in symbols:
        if symbols.count(symbol) > 1:
            raise CliError(f"symbol {symbol} is given twice; name each symbol once")
    return symbols


def _has_risk(strategy: str, risks: tuple[str, ...]) -> bool:
    from btkit.plugins import collect_components, get_plugin_manager

    return bool(risks) or bool(collect_components(get_plugin_manager()).get("strategy", strategy).risk_names)


def _configure_live(args: argparse.Namespace, settings: dict[str, dict[str, Any]], *, paper: bool) -> None:
    from btkit.engine import live

    persistence = dict(settings.get("persistence", {}))
    backend = args.persistence or persistence.pop("backend", "file")
    persistence.pop("backend", None)
    options = {**persistence, **_options(args.persistence_option)}
    if backend == "file":
        root = args.dump_dir or options.pop("root", None) or options.pop("path", None) or "./dump"
        options["root"] = root
    elif args.dump_dir and "path" not in options and backend == "sqlite":
        options["path"] = str(Path(args.dump_dir) / "btkit.sqlite3")
    live.SETTINGS.persistence = backend
    live.SETTINGS.persistence_options = options
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


def cmd_live(args: argparse.Namespace, *, paper: bool) -> int:
    import btkit
    from btkit.engine import live

    settings = _settings(args)
    _configure_live(args, settings, paper=paper)
    live.SETTINGS.extra_risks = _risks(settings)
    _load_strategy_files(args, settings)
    strategy = _run_value(args, settings, "strategy", DEMO["strategy"])
    exchange = _exchange_name(args, settings, DEMO["exchange"])
    symbols = _symbols(args, settings)
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
                mask(f"{when} {result.symbol} {result.action} @ {result.current_price:.8g}{extra}"),
                flush=True,
            )

    def show_risk(rejection: Any) -> None:
        print(mask(f"risk {rejection.risk_name} rejected {rejection.symbol}: {rejection.note}"), flush=True)

    def show_error(event: Any) -> None:
        print(mask(f"error: {event}"), file=sys.stderr, flush=True)

    btkit.listen_signal_live(show)
    btkit.listen_risk(show_risk)
    btkit.listen_error(show_error)
    for handler in logging.getLogger().handlers:  # show_error prints each error event once; not the log too
        handler.addFilter(lambda record: not getattr(record, "btkit_error_event", False))
    handles = [
        btkit.Live.background(sym, strategy=strategy, exchange=exchange, clock=clock) for sym in symbols
    ]
    print(
        f"{mode}: {strategy} on {exchange} {', '.join(symbols)} — state in "
        f"{live.SETTINGS.persistence} {live.SETTINGS.persistence_options}; Ctrl-C stops gracefully",
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
    dump_dir = Path(args.dump_dir or "./dump") / "live"
    never_started = {h.instance.symbol for h in failed if not h.event_list}
    for sym in symbols:
        if sym in never_started:  # refused before its first tick: no report to write
            continue
        stats = btkit.Live.get_data(sym, strategy=strategy, exchange=exchange)
        path = btkit.Live.dump(sym, strategy=strategy, exchange=exchange, path=dump_dir)
        print(f"{sym}: {stats.total_signals} closed, total pnl {_fmt(stats.total_pnl, '%')}; report: {path}")
        rejected = [r for r in live.REJECTIONS if r.symbol == sym]
        if rejected:
            print(
                f"{sym}: {len(rejected)} signal(s) rejected by risk (see the report's Risk rejections section)"
            )
    live.Live.shutdown()
    for h in failed:  # the first btkit error decides the exit code and the one-line message
        if isinstance(h.error, BtkitError):
            raise h.error
    return EXIT_FAILED if failed else 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from btkit.plugins import collect_components, get_plugin_manager

    pm = get_plugin_manager()
    width = max(len(r.name) for r in pm.records)
    for r in pm.records:
        hooks = ", ".join(h.removeprefix("btkit_") for h in r.hooks)
        line = f"{r.name:<{width}}  {r.dist} {r.version}  {r.status}"
        if r.status == "failed":
            line += f": {r.error}"
        elif hooks:
            line += f"  [{hooks}]"
        print(line)
    try:
        components = collect_components(pm)
    except BtkitError as exc:
        print(f"problem: {exc}")
        return EXIT_FAILED
    for kind in ("strategy", "exchange", "broker", "persistence", "risk", "frame"):
        names = components.names(kind)
        if kind == "exchange":
            ccxt = [n for n in names if n.startswith("ccxt:")]
            names = [n for n in names if not n.startswith("ccxt:")] + (
                [f"ccxt:<id> ({len(ccxt)} ids)"] if ccxt else []
            )
        print(f"{kind}: {', '.join(names) or '-'}")
    for problem in components.problems:
        print(f"problem: {problem}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from btkit.config import get_config
    from btkit.engine import live
    from btkit.persist.state import BackendStore
    from btkit.plugins import collect_components, get_plugin_manager
    from btkit.report import dump_report
    from btkit.stats import compute_statistics

    settings = _settings(args)
    _configure_live(args, settings, paper=True)
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
            )
            print(
                f"{symbol} {strategy}: {stats.total_signals} closed, total pnl {_fmt(stats.total_pnl, '%')}; report: {path}"
            )
            written += 1
    finally:
        backend.close()
    if not written:
        print("no live history found; run btkit paper or btkit live first")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from btkit.store import CandleStore, download, import_file

    store = CandleStore(args.data_dir or "./data")
    if args.data_verb == "import":
        n = import_file(args.file, args.exchange, args.symbol, args.interval, store)
        print(f"imported {n} candles into {store.path(args.exchange, args.symbol, args.interval)}")
        return 0
    from btkit.plugins import collect_components, get_plugin_manager

    _settings(args)
    spec = collect_components(get_plugin_manager()).get("exchange", args.exchange)
    start, end = parse_timerange(args.timerange)
    total = 0
    for symbol in args.symbol:
        n = download(
            spec,
            symbol,
            args.interval,
            int(start.timestamp() * 1000),
            int(end.timestamp() * 1000),
            store=store,
            close_exchange=True,  # each symbol's download runs its own event loop: close the client in it
        )
        total += n
        first, last, gaps = store.coverage(args.exchange, symbol, args.interval)
        gap_note = f", {len(gaps)} gap(s) — the exchange has no candles there" if gaps else ""
        print(f"{symbol}: {n} new candles, store now covers {first} → {last}{gap_note}")
    return 0


def cmd_persistence(args: argparse.Namespace) -> int:
    from btkit.persist.copy import copy_state
    from btkit.plugins import collect_components, get_plugin_manager

    pm = get_plugin_manager()
    components = collect_components(pm)
    if args.persistence_verb == "forget":
        from btkit.persist.state import BackendStore

        backend = components.get("persistence", args.backend).factory(**_options(args.option))
        backend.open(exclusive=True)
        try:
            n = BackendStore(pm, backend).forget((args.strategy, args.symbol))
        finally:
            backend.close()
        print(f"deleted {n} documents of {args.strategy} on {args.symbol}")
        return 0
    src = components.get("persistence", args.source).factory(**_options(args.from_option))
    dst = components.get("persistence", args.target).factory(**_options(args.to_option))
    src.open(exclusive=True)
    try:
        dst.open(exclusive=True)
        try:
            n = copy_state(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    print(f"copied {n} documents from {args.source} to {args.target}")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="btkit", description="Backtest and live-trade the same strategy code.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = p.add_subparsers(dest="verb", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", help="btkit.toml (default: ./btkit.toml when present)")
        sp.add_argument("--strategy", help="strategy name (default: smacross)")
        sp.add_argument(
            "--strategy-file",
            action="append",
            help="a .py file whose add_strategy/add_risk/add_exchange calls register before the run (repeatable)",
        )
        sp.add_argument("--exchange", help="exchange name (default: sim, the offline simulated exchange)")
        sp.add_argument("--symbol", action="append", help="symbol, repeatable (default: BTCUSDT)")
        sp.add_argument("--dump-dir", help="where reports (and live state) go (default: ./dump)")
        sp.add_argument("--offline", action="store_true", help="read candles from the local candle store")
        sp.add_argument("--data-dir", help="candle store directory (default: ./data)")
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    bt = sub.add_parser("backtest", help="run a backtest (no options: the offline demo)")
    common(bt)
    bt.add_argument("--timerange", help="YYYYMMDD-YYYYMMDD, end exclusive (default: 20240101-20240301)")
    bt.add_argument("--interval", help="frame interval (default: 1m)")
    bt.add_argument("--export", choices=("csv", "json"), help="also export the trades")
    bt.set_defaults(func=cmd_backtest)

    for verb, paper in (("paper", True), ("live", False)):
        sp = sub.add_parser(
            verb, help="paper trading (no orders)" if paper else "live trading through a broker"
        )
        common(sp)
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

    pl = sub.add_parser("plugins", help="installed plugins and what they offer")
    pl.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    pl.set_defaults(func=cmd_plugins)

    rp = sub.add_parser("report", help="render reports from live state")
    rp.add_argument("--config")
    rp.add_argument("--dump-dir")
    rp.add_argument("--persistence")
    rp.add_argument("--persistence-option", action="append")
    rp.add_argument("--out", help="output directory (default: <dump-dir>/live)")
    rp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    rp.set_defaults(func=cmd_report)

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
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    data.set_defaults(func=cmd_data)

    ps = sub.add_parser("persistence", help="persistence backends")
    psub = ps.add_subparsers(dest="persistence_verb", required=True)
    cp = psub.add_parser("copy", help="copy live state between backends (stop the bot first)")
    cp.add_argument("--from", dest="source", required=True)
    cp.add_argument("--to", dest="target", required=True)
    cp.add_argument("--from-option", action="append", help="source backend option key=value")
    cp.add_argument("--to-option", action="append", help="target backend option key=value")
    cp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    fg = psub.add_parser("forget", help="delete the live state of one strategy on one symbol (bot stopped)")
    fg.add_argument("--backend", default="file")
    fg.add_argument("--option", action="append", help="backend option key=value (file: root=./dump)")
    fg.add_argument("--strategy", required=True)
    fg.add_argument("--symbol", required=True)
    fg.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    ps.set_defaults(func=cmd_persistence)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("ccxt").setLevel(logging.INFO)
    from btkit.secrets import install_log_masking, load_dotenv

    load_dotenv()
    install_log_masking()
    try:
        return int(args.func(args) or 0)
    except (CliError, ConfigError, UnknownComponentError) as exc:  # a misspelt name is a usage error
        code, exc_out = EXIT_USAGE, exc
    except StateLockedError as exc:
        code, exc_out = EXIT_LOCKED, exc
    except CorruptStateError as exc:
        code, exc_out = EXIT_CORRUPT, exc
    except BtkitError as exc:
        code, exc_out = EXIT_FAILED, exc
    except KeyboardInterrupt:
        print("btkit: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else: still one line unless --debug
        code, exc_out = EXIT_FAILED, exc
        if not debug:
            print(
                mask(f"btkit: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)"),
                file=sys.stderr,
            )
            return code
    if debug:
        import traceback

        print(mask("".join(traceback.format_exception(exc_out))), file=sys.stderr)
    print(mask(f"btkit: error: {exc_out}"), file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
