"""``btkit persistence copy`` / ``forget``: operator tools over persistence backends."""

from __future__ import annotations

import argparse
from typing import Any

from btkit.cli.common import (
    add_debug,
    parse_options,
)


def cmd_persistence(args: argparse.Namespace) -> int:
    from btkit.persist.copy import copy_state
    from btkit.plugins import collect_components, get_plugin_manager

    pm = get_plugin_manager()
    components = collect_components(pm)
    if args.persistence_verb == "forget":
        from btkit.persist.state import BackendStore

        backend = components.get("persistence", args.backend).factory(**parse_options(args.option))
        backend.open(exclusive=True)
        try:
            n = BackendStore(pm, backend).forget((args.strategy, args.symbol))
        finally:
            backend.close()
        print(f"deleted {n} documents of {args.strategy} on {args.symbol}")
        return 0
    src = components.get("persistence", args.source).factory(**parse_options(args.from_option))
    dst = components.get("persistence", args.target).factory(**parse_options(args.to_option))
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


def register(sub: Any) -> None:
    ps = sub.add_parser("persistence", help="persistence backends")
    psub = ps.add_subparsers(dest="persistence_verb", required=True)
    cp = psub.add_parser("copy", help="copy live state between backends (stop the bot first)")
    cp.add_argument("--from", dest="source", required=True)
    cp.add_argument("--to", dest="target", required=True)
    cp.add_argument("--from-option", action="append", help="source backend option key=value")
    cp.add_argument("--to-option", action="append", help="target backend option key=value")
    add_debug(cp)
    fg = psub.add_parser("forget", help="delete the live state of one strategy on one symbol (bot stopped)")
    fg.add_argument("--backend", default="file")
    fg.add_argument("--option", action="append", help="backend option key=value (file: root=./dump)")
    fg.add_argument("--strategy", required=True)
    fg.add_argument("--symbol", required=True)
    add_debug(fg)
    ps.set_defaults(func=cmd_persistence)
