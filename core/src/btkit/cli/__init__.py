"""The ``btkit`` command: ``backtest``, ``paper``, ``live``, ``plugins``, ``report``, ``data``, ``persistence``.

One module per verb; each has ``register(subparsers)``. A new verb is a new module named in ``VERBS``.
Errors are one line on stderr (a traceback only with ``--debug``). Exit codes: 0 success, 1 the run
failed, 2 bad usage or configuration, 3 the state directory is owned by another live process,
4 corrupt persisted state, 130 interrupted twice.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from btkit.cli.common import (
    EXIT_CORRUPT,
    EXIT_FAILED,
    EXIT_LOCKED,
    EXIT_USAGE,
    CliError,
    parse_day,
    parse_timerange,
)
from btkit.errors import (
    BtkitError,
    ConfigError,
    CorruptStateError,
    StateLockedError,
    UnknownComponentError,
)
from btkit.secrets import mask

__all__ = ["CliError", "build_parser", "main", "parse_day", "parse_timerange"]

VERBS = ("backtest", "live", "plugins", "report", "data", "persistence", "new", "check", "serve", "optimize", "walk")


def version_lines() -> list[str]:
    """``btkit --version``: btkit's version and plugin API, then one line per plugin distribution."""
    import platform

    from btkit import __version__
    from btkit.plugins import PLUGIN_API_VERSION, get_plugin_manager

    lines = [f"btkit {__version__} (plugin API {PLUGIN_API_VERSION}, Python {platform.python_version()})"]
    by_dist: dict[tuple[str, str], list[str]] = {}
    for r in get_plugin_manager().records:
        if r.dist in ("btkit", "<code>", "<extra>"):
            continue
        by_dist.setdefault((r.dist, r.version), []).append(
            r.name if r.status == "loaded" else f"{r.name} {r.status}"
        )
    for (dist, version), names in sorted(by_dist.items()):
        lines.append(f"{dist} {version} ({', '.join(names)})")
    return lines


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=str(kwargs["help"]))

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        try:
            print("\n".join(version_lines()))
        except BtkitError as exc:  # e.g. a bad BTKIT_PLUGIN_TIMEOUT: still one line
            parser.exit(EXIT_USAGE, f"btkit: error: {exc}\n")
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="btkit", description="Backtest and live-trade the same strategy code.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument(
        "--version", action=_VersionAction, help="print btkit's version and every plugin's, then exit"
    )
    sub = p.add_subparsers(dest="verb", required=True)
    for verb in VERBS:
        importlib.import_module(f"btkit.cli.{verb}").register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("ccxt").setLevel(logging.INFO)
    from btkit.secrets import install_log_masking, install_output_masking, load_dotenv

    load_dotenv()
    install_log_masking()
    install_output_masking()  # issue 10 #4: every printed value passes through the secret masker
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
