"""What a person reads in the terminal: progress bars with ETA (rich) and tables with a totals row.

Rich output only on a terminal without ``NO_COLOR``; otherwise plain, parseable lines: progress as
``progress <label> <pct>% eta <seconds>s`` every 25 %, tables as aligned columns with a dashed rule.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO


def fancy(stream: TextIO | None = None) -> bool:
    """Rich output: a TTY and ``NO_COLOR`` unset (https://no-color.org) and ``TERM`` not ``dumb``."""
    s = stream or sys.stderr
    return s.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


class ProgressBars:
    """One bar per label (symbol, download …), with percentage, elapsed and ETA.

    ``update(label, done, total)``; ``close()`` at the end (idempotent). Plain mode prints at 0/25/50/75/100 %."""

    def __init__(self, stream: TextIO | None = None, *, unit: str = "", plain: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.unit = unit
        self.plain = plain  # False: nothing at all when not fancy (the command prints its own summary)
        self._rich: Any = None
        self._tasks: dict[str, Any] = {}
        self._plain: dict[str, tuple[int, float]] = {}  # label → (last quarter, start time)
        if fancy(self.stream):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._rich = Progress(
                TextColumn("{task.description:<14}"),
                BarColumn(),
                TaskProgressColumn(),
                MofNCompleteColumn(),
                TextColumn("elapsed"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=False,
            )
            self._rich.start()

    def update(self, label: str, done: int, total: int) -> None:
        total = max(int(total), 1)
        done = min(max(int(done), 0), total)
        if self._rich is not None:
            task = self._tasks.get(label)
            if task is None:
                task = self._tasks[label] = self._rich.add_task(label, total=total)
            self._rich.update(task, completed=done, total=total)
            return
        if not self.plain:
            return
        quarter = done * 4 // total
        last, t0 = self._plain.get(label, (-1, time.monotonic()))
        if quarter == last:
            return
        self._plain[label] = (quarter, t0)
        pct = done * 100 // total
        elapsed = time.monotonic() - t0
        eta = "?" if done == 0 else f"{elapsed * (total - done) / done:.0f}s"
        self.stream.write(f"progress {label} {pct}% eta {eta}\n")
        self.stream.flush()

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    total: Sequence[str] | None = None,
    title: str | None = None,
    stream: TextIO | None = None,
) -> str:
    """A table as text: rich box-drawing on a terminal (see :func:`fancy`), plain aligned columns
    otherwise; ``total`` is a last row under a rule. The first column is left-aligned, the rest right."""
    out = stream or sys.stdout
    if fancy(out):
        import io

        from rich.console import Console
        from rich.table import Table

        t = Table(title=title, show_footer=False)
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i == 0 else "right")
        for r in rows:
            t.add_row(*r)
        if total is not None:
            t.add_section()
            t.add_row(*total, style="bold")
        buf = io.StringIO()
        Console(file=buf, force_terminal=True, width=max(80, _width(out))).print(t)
        return buf.getvalue().rstrip("\n")
    body = [list(header), *(list(r) for r in rows)] + ([list(total)] if total is not None else [])
    widths = [max(len(r[i]) for r in body) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    lines = ([title] if title else []) + [line(header), rule, *(line(r) for r in rows)]
    if total is not None:
        lines += [rule, line(total)]
    return "\n".join(lines)


def _width(stream: TextIO) -> int:
    import shutil

    return shutil.get_terminal_size((120, 24)).columns
