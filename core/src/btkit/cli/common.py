"""What every verb shares: exit codes, the demo defaults, dates, settings and the common options."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from btkit.errors import BtkitError

DEMO = {"strategy": "smacross", "exchange": "sim", "symbols": ["BTCUSDT"], "timerange": "20240101-20240301"}
EXIT_FAILED, EXIT_USAGE, EXIT_LOCKED, EXIT_CORRUPT = 1, 2, 3, 4
Settings = dict[str, dict[str, Any]]


class CliError(BtkitError):
    """A usage or configuration problem detected by the CLI itself."""


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
    check_past(start, end, f"timerange {text!r}")
    return start, end


def parse_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"option {pair!r} must look like key=value")
        out[key] = value
    return out


def settings_for(args: argparse.Namespace) -> Settings:
    from btkit.config import load_settings, set_config

    if args.config:  # plugins that read their own [exchange.<name>] tables read this file too
        os.environ["BTKIT_CONFIG"] = str(Path(args.config).resolve())
    settings = load_settings(args.config)
    if settings.get("engine"):
        set_config(**settings["engine"])
    from btkit.accounting.wallet import wallet_from_settings

    wallet_from_settings(
        settings, balance=getattr(args, "balance", None), sizing=getattr(args, "sizing", None)
    )
    if getattr(args, "dump_dir", None) is None and "dump_dir" in settings.get("run", {}):
        args.dump_dir = str(settings["run"]["dump_dir"])  # every verb then honours [run] dump_dir alike
    return settings


def register_risks(settings: Settings) -> tuple[str, ...]:
    """Register ``[risk.profiles.*]`` from btkit.toml and return the names ``[risk] apply`` puts on the run."""
    from btkit.registry import CODE
    from btkit.risk import profiles_from_settings

    specs, apply = profiles_from_settings(settings.get("risk", {}))
    for spec in specs:
        CODE.risks[spec.name] = spec
    return apply


class Loaded:
    """What ``--strategy-file`` scripts registered while they were imported."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self.strategies: list[str] = []
        self.frames: dict[str, Any] = {}


def load_strategy_files(args: argparse.Namespace, settings: Settings) -> Loaded:
    """Import ``--strategy-file`` / ``[run] strategy_file`` scripts so their ``add_strategy`` calls register.

    A file is imported as a module (not as ``__main__``): its ``if __name__ == "__main__":`` block does
    not run, and modules beside it can be imported. Returns the strategies and frames the files registered.
    """
    import importlib.util

    from btkit.registry import CODE

    loaded = Loaded()
    files = run_value(args, settings, "strategy_file", [])
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
        strategies_before, frames_before = dict(CODE.strategies), dict(CODE.frames)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(module_name, None)
            raise CliError(
                f"strategy file {name} failed to import ({type(exc).__name__}: {exc}); fix it and run again"
            ) from exc
        loaded.files.append(name)
        loaded.strategies += [k for k, v in CODE.strategies.items() if strategies_before.get(k) is not v]
        loaded.frames.update({k: v for k, v in CODE.frames.items() if frames_before.get(k) is not v})
    return loaded


def strategy_of(args: argparse.Namespace, settings: Settings, loaded: Loaded, default: str) -> str:
    """``--strategy``; else the one strategy the ``--strategy-file`` registered; else the default."""
    given = run_value(args, settings, "strategy", None)
    if given:
        return str(given)
    if not loaded.files:
        return default
    files = ", ".join(loaded.files)
    if len(loaded.strategies) == 1:
        return loaded.strategies[0]
    if loaded.strategies:
        names = ", ".join(loaded.strategies)
        raise CliError(f"{files} registers several strategies ({names}); pick one with --strategy NAME")
    raise CliError(
        f"{files} registers no strategy (no btkit.add_strategy call ran at import); add one, "
        "or name an installed strategy with --strategy"
    )


def timerange_of(
    args: argparse.Namespace, settings: Settings, loaded: Loaded
) -> tuple[datetime, datetime, str | None]:
    """``--timerange``; else the one ``add_frame`` of the ``--strategy-file``; else the demo's range.

    Returns ``[start, end)`` and the frame's interval when the range came from a frame.
    """

    text = run_value(args, settings, "timerange", None)
    if text or not loaded.frames:
        start, end = parse_timerange(str(text or DEMO["timerange"]))
        return start, end, None
    if len(loaded.frames) > 1:
        names = ", ".join(loaded.frames)
        raise CliError(
            f"{', '.join(loaded.files)} registers several frames ({names}); "
            "choose the range with --timerange YYYYMMDD-YYYYMMDD"
        )
    (name, frame), = loaded.frames.items()
    start, end = frame.start, frame.end + timedelta(minutes=1)  # a frame's end is its last candle
    check_past(start, end, f"frame {name!r} of {', '.join(loaded.files)}")
    return start, end, frame.interval


def clip_to_now(end: datetime) -> tuple[datetime, str | None]:
    """A range that spans now ends at the last closed minute (there is no data after it): the engine
    then closes what is still open at that end. Returns the (exclusive) end and the line that says so,
    once. The frame's last candle is the one before the last closed candle, so that candle — which
    closes at now — is the one on which what is still open closes (a frame closes open signals on the
    first candle after its end; with none after it, the run would end with them open)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    if end <= now:
        return end, None
    return now - timedelta(minutes=1), (
        f"the timerange ends after now: the run stops at {now:%Y-%m-%dT%H:%MZ} (the last closed candle) and "
        "closes what is still open there at that time"
    )


def check_past(start: datetime, end: datetime, what: str) -> None:
    """A range a backtest can run: it must start before now (no candle exists in the future)."""
    now = datetime.now(UTC)
    if start >= now:
        raise CliError(
            f"{what} starts {start:%Y-%m-%dT%H:%MZ}, after now ({now:%Y-%m-%dT%H:%MZ}): there are no "
            "candles yet; choose a range in the past"
        )


def strategy_params(args: argparse.Namespace, settings: Settings, strategy: str) -> dict[str, Any]:
    """``[strategy.params]`` of btkit.toml overridden by ``--param NAME=VALUE``, checked against the
    strategy's declared parameters now (unknown name or out of range: a usage error, exit 2)."""
    from btkit.params import resolve_params
    from btkit.plugins import collect_components, get_plugin_manager

    table = settings.get("strategy", {}).get("params", {})
    if not isinstance(table, dict):
        raise CliError("[strategy] params must be a table: [strategy.params] then name = value lines")
    given = {**table, **parse_options(getattr(args, "param", None))}
    if given:
        spec = collect_components(get_plugin_manager()).get("strategy", strategy)
        resolve_params(strategy, spec.params, given)
    return given


def run_value(args: argparse.Namespace, settings: Settings, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    if value not in (None, []):
        return value
    return settings.get("run", {}).get(name, default)


def exchange_name(args: argparse.Namespace, settings: Settings, default: str) -> str:
    """The exchange to use; with ``--offline`` an exchange serving the local candle store instead."""
    name = run_value(args, settings, "exchange", default)
    if getattr(args, "offline", False) or settings.get("exchange", {}).get("offline"):
        from btkit.registry import CODE
        from btkit.store import store_exchange

        data_dir = args.data_dir or settings.get("exchange", {}).get("data_dir", "./data")
        gaps = settings.get("exchange", {}).get("gaps", "reject")
        spec = store_exchange(name, data_dir, gaps=gaps, name=f"store:{name}")
        CODE.exchanges[spec.name] = spec
        return spec.name
    return name


def fmt(value: Any, suffix: str = "", digits: int = 2) -> str:
    if value is None:
        return "N/A"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def symbols_of(args: argparse.Namespace, settings: Settings) -> list[str]:
    value = run_value(args, settings, "symbol", DEMO["symbols"])
    symbols = [value] if isinstance(value, str) else [str(v) for v in value]
    for symbol in symbols:
        if symbols.count(symbol) > 1:
            raise CliError(f"symbol {symbol} is given twice; name each symbol once")
    return symbols


def has_risk(strategy: str, risks: tuple[str, ...]) -> bool:
    from btkit.plugins import collect_components, get_plugin_manager

    return bool(risks) or bool(collect_components(get_plugin_manager()).get("strategy", strategy).risk_names)


def has_wallet(args: argparse.Namespace, settings: Settings) -> bool:
    """A wallet was asked for (``--balance``, ``--sizing``, ``[wallet]``, ``[sizing]``): symbols share it."""
    given = getattr(args, "balance", None) is not None or getattr(args, "sizing", None) is not None
    return given or bool(settings.get("wallet")) or bool(settings.get("sizing"))


def add_debug(sp: argparse.ArgumentParser) -> None:
    """``--debug`` after the verb as well as before it."""
    sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_run_options(sp: argparse.ArgumentParser) -> None:
    """The options of every verb that runs a strategy (backtest, paper, live)."""
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
    sp.add_argument(
        "--balance", type=float, help="starting wallet balance in quote currency (default: 10000)"
    )
    sp.add_argument(
        "--sizing",
        help="position sizing NAME[:ARG]: fixed[:100], percent:10, risk:2, kelly[:0.25], atr:2[:2]",
    )
    sp.add_argument(
        "--strict",
        action="store_true",
        help="any strategy error or invalid signal fails the run (exit 1; a live run stops at the first)",
    )
    sp.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a strategy parameter for this run, repeatable (overrides [strategy.params]; docs/parameters.md)",
    )
    add_debug(sp)


def check_run(strategy: str, exchange: str, symbols: list[str]) -> None:
    """Every name a run uses, checked before anything is printed or written (one line, exit 2)."""
    from btkit.plugins import collect_components, get_plugin_manager

    for symbol in symbols:
        if not symbol.strip():
            raise CliError(f"--symbol {symbol!r} is empty; name a symbol, e.g. --symbol BTCUSDT")
    components = collect_components(get_plugin_manager())
    components.get("strategy", strategy)
    components.get("exchange", exchange)
    if exchange == "sim":
        from btkit.defaults.sim_exchange import check_symbols

        check_symbols(symbols)


def export_formats(values: Sequence[str] | None) -> list[str]:
    """``--export csv --export json`` or ``--export csv,json`` → ``["csv", "json"]`` (each once)."""
    out: list[str] = []
    for value in values or ():
        for part in value.split(","):
            part = part.strip().lower()
            if part not in ("csv", "json"):
                raise CliError(f"--export {value!r}: use csv, json or csv,json")
            if part not in out:
                out.append(part)
    return out


def check_backend_options(backend: str, options: dict[str, Any], where: str = "[persistence]") -> None:
    """An option the backend does not take is a usage error naming the ones it does (never a TypeError)."""
    from btkit.plugins import check_factory_options, collect_components, get_plugin_manager

    spec = collect_components(get_plugin_manager()).get("persistence", backend)
    check_factory_options("persistence backend", spec, options, where)
