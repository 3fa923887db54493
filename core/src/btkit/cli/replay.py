"""``btkit paper/live --replay-from … --replay-to …``: a rehearsal keeps its state apart.

A replay's state lives in its own namespace per range — ``<root>/replay/<from>-<to>/`` for the file
backend, ``<dir>/replay/<from>-<to>/<name>`` for sqlite, bot ``<bot>-replay-<from>-<to>`` for redis — so a
rehearsal never resumes another range's state and wall-clock ``paper``/``live`` (and ``btkit report``)
never read it. The range is checked before anything runs (no start in the future, end after start, not
past now); a persisted time outside the range is refused with one line offering ``--fresh``.
"""

from __future__ import annotations

import argparse
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from btkit.cli.common import CliError, parse_day
from btkit.context import datetime_to_ms, iso
from btkit.errors import CorruptStateError


def _stamp(when: datetime) -> str:
    return f"{when:%Y%m%d}" if (when.hour, when.minute) == (0, 0) else f"{when:%Y%m%dT%H%M}"


def replay_range(args: argparse.Namespace) -> tuple[datetime, datetime | None] | None:
    """``--replay-from``/``--replay-to`` parsed and checked (usage errors), or None on the wall clock."""
    if not args.replay_from:
        if args.replay_to:
            raise CliError("--replay-to needs --replay-from (the start of the replay), e.g. --replay-from 20240101")
        if getattr(args, "fresh", False):
            raise CliError("--fresh only applies to a replay (--replay-from); wall-clock state is never reset")
        return None
    start = parse_day(args.replay_from)
    end = parse_day(args.replay_to) if args.replay_to else None
    now = datetime.now(UTC)
    if start >= now:
        raise CliError(
            f"--replay-from {args.replay_from} is after now ({now:%Y-%m-%dT%H:%MZ}): a replay runs on past "
            "candles; choose an earlier start, or run without --replay-from on the wall clock"
        )
    if end is not None and end <= start:
        raise CliError(
            f"--replay-to {args.replay_to} is not after --replay-from {args.replay_from}; swap them"
        )
    if end is not None and end > now:
        raise CliError(
            f"--replay-to {args.replay_to} is after now ({now:%Y-%m-%dT%H:%MZ}); end the replay in the past, "
            "or leave --replay-to out to replay up to now"
        )
    return start, end


def namespace(start: datetime, end: datetime | None) -> str:
    return f"{_stamp(start)}-{_stamp(end) if end is not None else 'open'}"


def apply_namespace(live_settings: Any, ns: str) -> str:
    """Point the persistence options at the replay's own namespace; returns where, for the start line."""
    opts = live_settings.persistence_options
    backend = live_settings.persistence
    if backend == "file":
        opts["root"] = str(Path(opts.get("root") or opts.pop("path", None) or "./dump") / "replay" / ns)
        return opts["root"]
    if backend == "sqlite":
        path = Path(opts.get("path") or "./dump/btkit.sqlite3")
        opts["path"] = str(path.parent / "replay" / ns / path.name)
        return opts["path"]
    if backend == "redis":
        opts["bot"] = f"{opts.get('bot') or 'default'}-replay-{ns}"
        return f"bot {opts['bot']}"
    raise CliError(
        f"a replay keeps its state apart from wall-clock state, and btkit does not know how to give "
        f"backend {backend!r} its own namespace; replay on the file, sqlite or redis backend"
    )


def check_state(
    live_settings: Any, strategy: str, symbols: list[str], start: datetime, end: datetime | None, *, fresh: bool
) -> None:
    """Refuse to resume a replay whose persisted time is outside its range; ``--fresh`` starts it over."""
    from btkit.persist.state import BackendStore
    from btkit.plugins import collect_components, get_plugin_manager

    pm = get_plugin_manager()
    spec = collect_components(pm).get("persistence", live_settings.persistence)
    if fresh and live_settings.persistence == "file":
        root = Path(live_settings.persistence_options["root"])
        if root.parent.name == "replay" and root.is_dir():  # only ever the replay's own folder
            shutil.rmtree(root)
        return
    opts = live_settings.persistence_options
    if live_settings.persistence == "file" and not (Path(opts["root"]) / "strategy").is_dir():
        return  # nothing persisted yet: nothing to resume, and nothing is created here
    if live_settings.persistence == "sqlite" and not Path(opts["path"]).exists():
        return
    backend = spec.factory(**opts)
    backend.open(exclusive=fresh)
    try:
        store = BackendStore(pm, backend)
        for symbol in symbols:
            if fresh:
                store.forget((strategy, symbol))
                continue
            try:
                state, _ = store.load_sync((strategy, symbol))
            except CorruptStateError:  # the run itself (holding the lock) quarantines it and exits 4
                continue
            last = state.strategy.last_tick
            if last is None:
                continue
            lo, hi = datetime_to_ms(start), datetime_to_ms(end) if end is not None else None
            if last < lo - 60_000 or (hi is not None and last >= hi):
                done = hi is not None and last >= hi
                why = "already ran to its end" if done else "is outside the range"
                raise CliError(
                    f"the replay state of {strategy} on {symbol} {why} (persisted time {iso(last)}, range "
                    f"{iso(lo)} → {iso(hi) if hi is not None else 'now'}); add --fresh to start this replay over"
                )
    finally:
        backend.close()
