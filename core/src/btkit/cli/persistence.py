"""``btkit persistence copy`` / ``forget``: operator tools over persistence backends."""

from __future__ import annotations

import argparse
from typing import Any

from btkit.cli.common import (
    add_debug,
    check_backend_options,
    parse_options,
)


def _where(backend: Any) -> str:
    """Where a backend keeps its documents, for the line that says what was done."""
    for attr in ("root", "path", "safe_url"):
        value = getattr(backend, attr, None)
        if value is not None:
            ns = getattr(backend, "namespace", None)
            return f"{value} {ns}" if ns else str(value)
    return repr(backend)


def cmd_persistence(args: argparse.Namespace) -> int:
    from btkit.persist.copy import copy_state
    from btkit.plugins import collect_components, get_plugin_manager

    pm = get_plugin_manager()
    components = collect_components(pm)
    if args.persistence_verb == "forget":
        from btkit.persist.state import BackendStore

        options = parse_options(args.option)
        check_backend_options(args.backend, options, "--option")
        backend = components.get("persistence", args.backend).factory(**options)
        backend.open(exclusive=True)
        try:
            n = BackendStore(pm, backend).forget((args.strategy, args.symbol))
        finally:
            backend.close()
        print(f"deleted {n} documents of {args.strategy} on {args.symbol} from {args.backend} ({_where(backend)})")
        return 0
    src_options, dst_options = parse_options(args.from_option), parse_options(args.to_option)
    check_backend_options(args.source, src_options, "--from-option")
    check_backend_options(args.target, dst_options, "--to-option")
    src = components.get("persistence", args.source).factory(**src_options)
    dst = components.get("persistence", args.target).factory(**dst_options)
    src.open(exclusive=True)
    try:
        dst.open(exclusive=True)
        try:
            n = copy_state(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    print(f"copied {n} documents from {args.source} ({_where(src)}) to {args.target} ({_where(dst)})")
    return 0


def register(sub: Any) -> None:
    ps = sub.add_parser("persistence", help="persistence backends")
    psub = ps.add_subparsers(dest="persistence_verb", required=True)
    cp = psub.add_parser("copy", help="copy live state between backends (stop the bot first)")
    cp.add_argument("--from", dest="source", required=True, help="source backend: file, sqlite, redis, …")
    cp.add_argument("--to", dest="target", required=True, help="target backend: file, sqlite, redis, …")
    cp.add_argument("--from-option", action="append", help="source backend option key=value")
    cp.add_argument("--to-option", action="append", help="target backend option key=value")
    add_debug(cp)
    fg = psub.add_parser("forget", help="delete the live state of one strategy on one symbol (bot stopped)")
    fg.add_argument("--backend", default="file", help="backend holding the state (default: file)")
    fg.add_argument("--option", action="append", help="backend option key=value (file: root=./dump)")
    fg.add_argument("--strategy", required=True, help="strategy name of the instance to forget")
    fg.add_argument("--symbol", required=True, help="symbol of the instance to forget")
    add_debug(fg)
    ps.set_defaults(func=cmd_persistence)
