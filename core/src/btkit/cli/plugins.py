"""``btkit plugins``: what is installed, whether it loaded, and the components it offers."""

from __future__ import annotations

import argparse
from typing import Any

from btkit.cli.common import (
    EXIT_FAILED,
    add_debug,
)
from btkit.errors import BtkitError


def cmd_plugins(args: argparse.Namespace) -> int:
    from btkit.plugins import collect_components, get_plugin_manager

    pm = get_plugin_manager()
    width = max(len(r.name) for r in pm.records)
    for r in pm.records:
        hooks = ", ".join(h.removeprefix("btkit_") for h in r.hooks)
        line = f"{r.name:<{width}}  {r.dist} {r.version}  {r.status}"
        if r.status in ("failed", "refused"):
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


def register(sub: Any) -> None:
    pl = sub.add_parser("plugins", help="installed plugins and what they offer")
    add_debug(pl)
    pl.set_defaults(func=cmd_plugins)
