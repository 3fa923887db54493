"""``btkit check lookahead`` (docs/checks.md): does any decision change when the future is cut off?

The strategy is run once on all the data, then again on the data truncated at each bar where it requested
a signal (and at a sample of bars where it did not): only what was known when that bar closed. An honest
decision is the same both times. Each decision that changes is reported with its bar and the columns that
moved (the ``enter`` request, the price columns and every indicator column the array function returned).

* array form: ``populate`` is called on the truncated candles (informative bars closed by then only);
* per-tick form: ``get_signal`` is called at the decision time in a fresh run whose exchange serves only
  candles closed by then, and compared with a fresh run over all the data (``btkit.get_candles`` cannot see
  the future, so this mostly proves a strategy does not read data past the ambient time some other way or
  carry state between calls).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from btkit.analysis.common import Subject, array_data, moved, open_subject, row_values, truncated
from btkit.components import ExchangeSpec, interval_ms
from btkit.context import ms_to_datetime
from btkit.engine import arrays
from btkit.engine.run import Run
from btkit.lifecycle.validation import coerce_signal
from btkit.model import Opened, Scheduled

__all__ = ["Finding", "LookaheadReport", "check_lookahead", "markdown_lines"]


@attrs.frozen(kw_only=True)
class Finding:
    bar: int  # open time (ms) of the bar the decision was made on (per-tick: the decision time)
    kind: str  # "signal" (a bar that requested a signal) or "sample" (one that did not)
    full: str  # the decision with all the data
    truncated: str  # the decision with the data cut at the bar
    moved: tuple[tuple[str, float, float], ...]  # (column, value with all data, value truncated)
    error: str | None = None  # populate failed on the truncated data


@attrs.frozen(kw_only=True)
class LookaheadReport:
    strategy: str
    symbol: str
    form: str
    signals_checked: int
    samples_checked: int
    findings: tuple[Finding, ...]
    seconds: float

    @property
    def biased(self) -> bool:
        return bool(self.findings)

    @property
    def decisions_changed(self) -> int:
        """Findings where the request itself changed (the rest: an indicator moved, the decision held)."""
        return sum(1 for f in self.findings if f.full != f.truncated)

    @property
    def columns(self) -> list[str]:
        """Columns that moved, most often first."""
        counts: dict[str, int] = {}
        for f in self.findings:
            for name, _a, _b in f.moved:
                counts[name] = counts.get(name, 0) + 1
        return sorted(counts, key=lambda k: (-counts[k], k))


def _side(v: float) -> str:
    return "none" if v == 0 else ("long" if v > 0 else "short")


def _pick(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    if n <= 0 or not len(pool):
        return pool[:0]
    return np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))


# ---------------------------------------------------------------- array form
async def _array_form(subject: Subject, samples: int, seed: int) -> tuple[int, int, list[Finding]]:
    spec = subject.spec
    data = await array_data(subject)
    full = arrays.evaluate(spec, data.base, data.informative)
    ts = full.ts
    decision = ts + data.step
    idx = np.arange(len(ts))
    in_frame = (decision >= data.first_decision) & (decision <= subject.end) & (idx >= spec.array.window - 1)
    signal_rows = np.flatnonzero(in_frame & (full.enter != 0))
    quiet = np.flatnonzero(in_frame & (full.enter == 0))
    sample_rows = _pick(np.random.default_rng(seed), quiet, samples)
    findings: list[Finding] = []
    for kind, rows in (("signal", signal_rows), ("sample", sample_rows)):
        for j in rows.tolist():
            want = row_values(full, j)
            base, informative = truncated(data, j)
            try:
                cut = arrays.evaluate(spec, base, informative)
            except arrays.ArrayOutputError as exc:
                findings.append(
                    Finding(
                        bar=int(ts[j]),
                        kind=kind,
                        full=_side(want["enter"]),
                        truncated="error",
                        moved=(),
                        error=str(exc),
                    )
                )
                continue
            got = row_values(cut, len(cut) - 1)
            diff = moved(want, got)
            if diff:
                findings.append(
                    Finding(
                        bar=int(ts[j]),
                        kind=kind,
                        full=_side(want["enter"]),
                        truncated=_side(got["enter"]),
                        moved=tuple(diff),
                    )
                )
    return len(signal_rows), len(sample_rows), findings


# ---------------------------------------------------------------- per-tick form
def _cut_exchange(spec: ExchangeSpec, horizon: Callable[[], int]) -> ExchangeSpec:
    """The exchange as it was at ``horizon()``: only candles closed by then."""
    import inspect

    from btkit import candles as ca

    def cut(arr: Any, interval: str) -> Any:
        a = ca.to_array(arr if arr is not None else [])
        return a[a[:, 0] + interval_ms(interval) <= horizon()]

    if inspect.iscoroutinefunction(spec.get_candles):

        async def get_candles_async(symbol: str, interval: str, since: Any, limit: int) -> Any:
            return cut(await spec.get_candles(symbol, interval, since, limit), interval)

        return attrs.evolve(spec, get_candles=get_candles_async, close=None)

    def get_candles(symbol: str, interval: str, since: Any, limit: int) -> Any:
        return cut(spec.get_candles(symbol, interval, since, limit), interval)

    return attrs.evolve(spec, get_candles=get_candles, close=None)


class _World:
    """A run in which the strategy decides at given times: with all the data, or (``cut``) with an exchange
    and a clock that end at the decision time. Times are visited in order, so the cut world's candle cache
    only ever holds candles closed by an earlier decision time."""

    def __init__(self, subject: Subject, *, cut: bool) -> None:
        base = subject.run
        name = subject.inst.exchange_name
        self.now = 0
        components = base.components
        if cut:
            table = dict(components.by_kind["exchange"])
            table[name] = _cut_exchange(components.get("exchange", name), lambda: self.now)
            components = attrs.evolve(components, by_kind={**components.by_kind, "exchange": table})
        self.run = Run(
            pm=base.pm,
            components=components,
            cfg=base.cfg,
            backtest=True,
            frame_end=base.frame_end,
            now_ms=(lambda: self.now) if cut else base.now_ms,
        )
        self.inst = self.run.instance(subject.inst.symbol, subject.spec.name, name, subject.inst.frame_name)

    async def decide(self, when: int) -> dict[str, Any] | None:
        self.now = when
        price = await self.inst.market.vwap(self.inst.symbol, when)
        raw = await self.inst._call_get_signal(when, price)
        if raw is None:
            return None
        return attrs.asdict(coerce_signal(raw))


def _describe(sig: dict[str, Any] | None) -> str:
    return "none" if sig is None else str(sig.get("position"))


async def _tick_form(subject: Subject, samples: int, seed: int) -> tuple[int, int, list[Finding]]:
    from btkit.engine.backtest import Backtest

    inst = subject.inst
    times = []
    async for r in Backtest.run(
        inst.symbol, strategy=subject.spec.name, exchange=inst.exchange_name, frame=inst.frame_name
    ):
        if isinstance(r, (Opened, Scheduled)):
            times.append(r.timestamp)
    step = inst.interval
    buckets = np.arange(((subject.start + step - 1) // step) * step, subject.end + 1, step, dtype=np.int64)
    quiet = np.setdiff1d(buckets, (np.asarray(times, dtype=np.int64) // step) * step)
    sample_times = _pick(np.random.default_rng(seed), quiet, samples)
    visits = sorted([(int(t), "signal") for t in times] + [(int(t), "sample") for t in sample_times.tolist()])
    full_world, cut_world = _World(subject, cut=False), _World(subject, cut=True)
    findings: list[Finding] = []
    try:
        for when, kind in visits:
            full = await full_world.decide(when)
            cut = await cut_world.decide(when)
            if full == cut:
                continue
            diff: list[tuple[str, float, float]] = []
            for key in sorted(set(full or {}) | set(cut or {})):
                a, b = (full or {}).get(key), (cut or {}).get(key)
                if a != b:
                    fa = float(a) if isinstance(a, (int, float)) else math.nan
                    fb = float(b) if isinstance(b, (int, float)) else math.nan
                    diff.append((key, fa, fb))
            findings.append(
                Finding(
                    bar=when, kind=kind, full=_describe(full), truncated=_describe(cut), moved=tuple(diff)
                )
            )
    finally:
        await full_world.run.aclose()
        await cut_world.run.aclose()
    return len(times), len(sample_times), findings


async def check_lookahead(
    symbol: str, *, strategy: str, exchange: str, frame: str, samples: int = 100, seed: int = 0
) -> LookaheadReport:
    """Re-run ``strategy`` on data truncated at every signal bar and at ``samples`` other bars."""
    t0 = time.perf_counter()
    subject = open_subject(symbol, strategy=strategy, exchange=exchange, frame=frame)
    try:
        if subject.spec.array is not None:
            form = "array"
            n_sig, n_smp, findings = await _array_form(subject, samples, seed)
        else:
            form = "per-tick"
            n_sig, n_smp, findings = await _tick_form(subject, samples, seed)
    finally:
        await subject.run.aclose()
    return LookaheadReport(
        strategy=strategy,
        symbol=symbol,
        form=form,
        signals_checked=n_sig,
        samples_checked=n_smp,
        findings=tuple(findings),
        seconds=time.perf_counter() - t0,
    )


def _v(x: float) -> str:
    return "NaN" if math.isnan(x) else f"{x:.8g}"


def markdown_lines(report: LookaheadReport, *, max_rows: int = 100) -> list[str]:
    verdict = (
        f"**BIASED**: {len(report.findings)} bar(s) differ when the future is cut off — "
        f"{report.decisions_changed} decision(s) changed, on the others an indicator moved"
        if report.biased
        else "**no look-ahead bias found**: every decision is the same with the data cut at its bar"
    )
    lines = [
        f"Strategy `{report.strategy}` ({report.form} form) on {report.symbol}: {report.signals_checked} signal "
        f"bar(s) and {report.samples_checked} other bar(s) re-run on truncated data in {report.seconds:.1f} s.",
        "",
        verdict + ".",
    ]
    if report.biased:
        lines += ["", f"Columns that moved: {', '.join(f'`{c}`' for c in report.columns) or 'none'}.", ""]
        lines += [
            "| bar (UTC) | kind | all data | truncated | what moved (all data → truncated) |",
            "|---|---|---|---|---|",
        ]
        for f in report.findings[:max_rows]:
            what = f.error or "; ".join(f"{k}: {_v(a)} → {_v(b)}" for k, a, b in f.moved[:6])
            lines.append(
                f"| {ms_to_datetime(f.bar):%Y-%m-%d %H:%M} | {f.kind} | {f.full} | {f.truncated} | "
                f"{what.replace('|', '/')} |"
            )
        if len(report.findings) > max_rows:
            lines.append(f"… and {len(report.findings) - max_rows} more.")
    return lines
