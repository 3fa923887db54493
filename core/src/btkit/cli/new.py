"""``btkit new``: scaffold a third-party package — ``btkit new strategy NAME`` / ``btkit new plugin KIND NAME``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from btkit.cli.common import CliError, add_debug


def cmd_new(args: argparse.Namespace) -> int:
    from btkit.scaffold import ScaffoldError, create

    kind = "strategy" if args.what == "strategy" else args.kind
    try:
        sc, target, written = create(kind, args.name, Path(args.dir))
    except ScaffoldError as exc:
        raise CliError(str(exc)) from exc
    print(
        f"created {sc.dist} ({kind} {sc.name!r}, module {sc.module}) in {target}/ with {len(written)} files"
    )
    print(f"next: pip install -e '{target}[test]' && (cd {target} && pytest)")
    usage = {
        "strategy": f"btkit backtest --strategy {sc.name}",
        "exchange": f"btkit backtest --exchange {sc.name}",
        "broker": f"btkit paper --broker {sc.name}",
        "persistence": f"btkit paper --persistence {sc.name} --replay-from 20240101 --replay-to 20240102",
        "risk": f'[risk] apply = ["{sc.name}"] in btkit.toml',
    }[kind]
    print(f"then: {usage}")
    return 0


def register(sub: Any) -> None:
    from btkit.scaffold import KINDS

    new = sub.add_parser("new", help="scaffold a strategy or plugin package that installs and tests at once")
    add_debug(new)
    what = new.add_subparsers(dest="what", required=True, metavar="{strategy,plugin}")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("name", help="lowercase name with hyphens (e.g. my-strategy); also the folder name")
        sp.add_argument("--dir", default=".", help="where to create the package folder (default: .)")
        add_debug(sp)
        sp.set_defaults(func=cmd_new)

    strategy = what.add_parser("strategy", help="a strategy package (btkit-strategy-NAME)")
    common(strategy)
    plugin = what.add_parser("plugin", help=f"a plugin package of one kind ({', '.join(KINDS)})")
    plugin.add_argument("kind", choices=KINDS, help="what the plugin offers")
    common(plugin)
