"""Up-front checks of every path a live run will write (issue 10 #8).

A name that is too long for the filesystem must be refused before the first trade, not when the
report is written after hours of trading. :func:`live_run_paths` lists the longest path of each kind
a run writes (state documents with their temp, lock and quarantine names, the report, its PNG and
their temp files); :func:`check_paths` refuses any whose name or full length the filesystem cannot
hold, in one line naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from btkit.errors import ConfigError
from btkit.persist.backend import DOMAINS
from btkit.persist.file import DIR_LOCK_NAME, DOC_SUFFIX, QUARANTINE_DIR, TMP_SUFFIX
from btkit.persist.keys import encode_key

#: ``.<name>.<pid>.<uuid hex>.tmp``: the longest temp name a report write uses
_REPORT_TMP = ".{name}.4194304.0123456789abcdef0123456789abcdef.tmp"
_STAMP = "20260101T000000.000000Z0000"  # utc_stamp() + 4 hex digits, as the file backend's quarantine


def _limits(path: Path) -> tuple[int, int]:
    existing = path
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    try:
        return os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def check_paths(paths: Iterable[Path], *, what: str = "this run") -> None:
    """Raise :class:`ConfigError` (one line) for the first path the filesystem cannot hold."""
    for path in paths:
        path = path.absolute()
        name_max, path_max = _limits(path)
        for part in path.parts:
            size = len(os.fsencode(part))
            if size > name_max:
                shown = part if len(part) <= 60 else part[:57] + "..."
                raise ConfigError(
                    f"{what} would write {shown!r} in {path.parent}, a name of {size} bytes; the filesystem "
                    f"allows {name_max} — use a shorter symbol, strategy or exchange name (nothing was traded)"
                )
        size = len(os.fsencode(str(path)))
        if size > path_max:
            raise ConfigError(
                f"{what} would write a path of {size} bytes under {path.parts[1] if len(path.parts) > 1 else path}"
                f"; the filesystem allows {path_max} — use a shorter --dump-dir or names (nothing was traded)"
            )


def live_run_paths(
    *,
    report_dir: Path,
    symbols: Sequence[str],
    strategy: str,
    exchange: str,
    state_root: Path | None,
) -> list[Path]:
    """The longest path of every kind a live run over ``symbols`` writes."""
    from btkit.reporting.files import report_filename

    out: list[Path] = []
    for symbol in symbols:
        name = report_filename(symbol, strategy, exchange, "live", "live", 10**13 - 1)
        stem = name[: -len(".md")]
        others = [f"{stem}.png", f"{stem}.html"]
        out += [report_dir / name, *(report_dir / o for o in others)]
        out += [report_dir / _REPORT_TMP.format(name=n) for n in (name, *others)]
        if state_root is None:
            continue
        enc = encode_key((strategy, symbol))
        stem = enc[-1]
        for domain in DOMAINS:
            if domain == "risk":
                continue
            folder = state_root.joinpath(domain, *enc[:-1])
            out += [
                folder / f"{stem}{DOC_SUFFIX}",
                folder / f".{stem}{DOC_SUFFIX}.0123456789ab{TMP_SUFFIX}",
                folder / f".{stem}.lock",
                state_root.joinpath(QUARANTINE_DIR, domain, *enc[:-1], f"{stem}.{_STAMP}.json.reason"),
            ]
    if state_root is not None:
        out.append(state_root / DIR_LOCK_NAME)
    return out
