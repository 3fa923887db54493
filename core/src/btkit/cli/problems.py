"""What a run reports to the person at the terminal when something is wrong.

- :func:`suggest` — the nearest names (difflib) for "did you mean …" hints.
- :class:`StrategyProblems` — strategy errors and invalid signals during a run, collapsed: the first
  ``SHOWN`` in full on stderr, then only counted (one count per distinct message, numbers ignored), and a
  summary at the end. :meth:`StrategyProblems.verdict` turns them into the run's exit: an error when no
  ``get_signal`` call could be evaluated at all, or (``--strict``) at the first strategy error.
- :class:`RiskProblems` — risk rejections printed with their time, repeats collapsed the same way.
"""

from __future__ import annotations

import difflib
import logging
import re
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from btkit.context import iso
from btkit.errors import BtkitError
from btkit.secrets import mask

SHOWN = 3
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class StrategyFailed(BtkitError):
    """The strategy could not be evaluated (every call failed, or ``--strict`` and one did)."""


def suggest(name: str, known: Iterable[str], n: int = 1) -> list[str]:
    """The nearest known names to ``name`` (case and separators ignored first, then difflib)."""
    known = list(known)
    squash = {re.sub(r"[^0-9a-z]", "", k.lower()): k for k in known}
    exact = squash.get(re.sub(r"[^0-9a-z]", "", name.lower()))
    if exact is not None:
        return [exact]
    return difflib.get_close_matches(name, known, n=n, cutoff=0.6) or difflib.get_close_matches(
        name.upper(), known, n=n, cutoff=0.6
    )


def did_you_mean(name: str, known: Iterable[str]) -> str:
    near = suggest(name, known)
    return f"; did you mean {near[0]}?" if near else ""


def is_strategy_error(where: str) -> bool:
    """The engine's ``where`` for a failing ``get_signal`` or an invalid signal it returned."""
    return where.startswith(("get_signal of ", "strategy "))


def ends_backtest(event: Any) -> bool:
    """The error a backtest ends with (the engine reports it, then raises it)."""
    return str(event.where).startswith(("backtest ", "portfolio backtest "))


def ends_live_run(event: Any) -> bool:
    """A fatal error that ends one live run (``live <strategy> on <symbol>``, start-up refusals)."""
    return bool(event.fatal) and str(event.where).startswith("live ")


def _drop_error_events(record: logging.LogRecord) -> bool:
    return not getattr(record, "btkit_error_event", False)


class StrategyProblems:
    """Listens to ``listen_error`` for one CLI run; see the module docstring."""

    def __init__(
        self,
        *,
        strict: bool = False,
        debug: bool = False,
        out: TextIO | None = None,
        raised: Callable[[Any], bool] = lambda event: False,
    ) -> None:
        self.strict = strict
        self.raised = raised  # events the run raises at its end: that one line is printed by main, once
        self.debug = debug
        self.out = out or sys.stderr
        self.total = 0
        self.by_message: Counter[str] = Counter()
        self.example: dict[str, str] = {}
        self.other: Counter[str] = Counter()  # not the strategy's (exchange faults, …): each kind 3 times
        self.other_example: dict[str, str] = {}
        self.first: str | None = None
        self._summarised = False

    def install(self) -> None:
        import btkit

        btkit.listen_error(self.on_error)
        for handler in logging.getLogger().handlers:  # printed here, once; not as a WARNING log line too
            handler.addFilter(_drop_error_events)

    def on_error(self, event: Any) -> None:
        if self.raised(event):
            return
        text = mask(str(event))  # where: Type: message
        if not is_strategy_error(event.where):
            key = _NUMBER.sub("#", str(event))
            self.other[key] += 1
            self.other_example.setdefault(key, mask(str(event)))
            if self.other[key] <= SHOWN:
                more = " (repeats are counted, summary at the end)" if self.other[key] == SHOWN else ""
                print(mask(f"error: {event}{more}"), file=self.out, flush=True)
            return
        self.total += 1
        key = _NUMBER.sub("#", text)
        self.by_message[key] += 1
        self.example.setdefault(key, text)
        if self.first is None:
            self.first = text
        if self.total <= SHOWN:
            print(f"error: {text}", file=self.out, flush=True)
            if self.debug:
                tb = "".join(traceback.format_exception(event.error)).rstrip()
                print(mask(tb), file=self.out, flush=True)
        elif self.total == SHOWN + 1 and not self.strict:
            print(
                "strategy error: more of these are counted, not printed (summary at the end; "
                "--strict stops at the first)",
                file=self.out,
                flush=True,
            )

    @property
    def fatal(self) -> bool:
        return self.strict and self.total > 0

    def summary(self) -> list[str]:
        """Lines for stderr at the end of the run: one per distinct message with its count."""
        lines = [
            f"error repeated {n} times: {self.other_example[key]}" for key, n in self.other.items() if n > SHOWN
        ]
        if 0 < self.total <= SHOWN:
            lines.append(f"strategy errors: {self.total} (shown above)")
        elif self.total:
            lines.append(f"strategy errors: {self.total} ({len(self.by_message)} distinct)")
            lines += [f"  {n:>6} × {self.example[key]}" for key, n in self.by_message.most_common()]
        return lines

    def print_summary(self) -> None:
        """The end-of-run summary on stderr (once)."""
        if self._summarised:
            return
        self._summarised = True
        for line in self.summary():
            print(line, file=self.out, flush=True)

    def verdict(self, calls: int) -> None:
        """Raise :class:`StrategyFailed` when the run did not do what was asked."""
        self.print_summary()
        if self.fatal:
            raise StrategyFailed(
                f"--strict: the strategy failed ({self.first}); fix it, or run without --strict"
            )
        if self.total and self.total >= calls:
            raise StrategyFailed(
                f"no signal could be evaluated: all {calls} get_signal call(s) failed or returned an "
                f"invalid signal (first: {self.first}); fix the strategy (--debug shows the traceback)"
            )


class RiskProblems:
    """Risk rejections with their time; the same profile and note again is counted, not printed."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.by_key: Counter[tuple[str, str, str]] = Counter()

    def __call__(self, rejection: Any) -> None:
        key = (rejection.risk_name, rejection.symbol, _NUMBER.sub("#", str(rejection.note)))
        self.by_key[key] += 1
        n = self.by_key[key]
        if n <= SHOWN:
            sym = rejection.symbol if rejection.symbol.isprintable() else repr(rejection.symbol)
            more = " (further repeats are counted)" if n == SHOWN else ""
            print(
                mask(f"{iso(rejection.timestamp)} risk {rejection.risk_name} rejected {sym}: {rejection.note}{more}"),
                file=self.out,
                flush=True,
            )

    def summary(self) -> list[str]:
        return [
            f"risk {risk} rejected {sym} {n} times: {note}" for (risk, sym, note), n in self.by_key.items() if n > SHOWN
        ]
