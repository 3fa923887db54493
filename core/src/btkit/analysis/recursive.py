"""``btkit check recursive`` (docs/checks.md): how much do indicators and signals depend on the warm-up?

Recursive indicators (EMA, RSI, ATR, …) never forget their first value: computed over 100 candles they
differ from the same indicator over 1000. Live, an array-form strategy sees only its last ``window`` bars,
so a window too short for its indicators makes live decide differently from the backtest. For a sample of
bars (every signal bar, up to ``max_bars``, and the last bar) this computes ``populate`` over the last W
bars for each warm-up W and compares the last row with the value over the whole history: per indicator the
largest and the mean relative difference, and how many ``enter`` decisions differ.
"""

from __future__ import annotations

import math
import time

import attrs
import numpy as np

from btkit.analysis.common import array_data, open_subject, row_values, same, truncated
from btkit.engine import arrays
from btkit.errors import ConfigError

__all__ = ["DEFAULT_WARMUPS", "RecursiveReport", "WarmupRow", "check_recursive", "markdown_lines"]

DEFAULT_WARMUPS = (100, 300, 1000)


@attrs.frozen(kw_only=True)
class WarmupRow:
    warmup: int
    bars: int  # bars compared (those with at least `warmup` bars of history)
    signals_changed: int
    max_rel: dict[str, float]  # indicator → largest relative difference to the full-history value
    mean_rel: dict[str, float]
    is_window: bool = False  # the strategy's own live window


@attrs.frozen(kw_only=True)
class RecursiveReport:
    strategy: str
    symbol: str
    window: int
    rows: tuple[WarmupRow, ...]
    seconds: float

    @property
    def window_row(self) -> WarmupRow | None:
        return next((r for r in self.rows if r.is_window), None)

    @property
    def unstable(self) -> bool:
        """Live (the strategy's own window) would decide differently from the backtest on some bar."""
        row = self.window_row
        return row is not None and row.signals_changed > 0


def _rel(a: float, b: float) -> float:
    if same(a, b):
        return 0.0
    if math.isnan(a) or math.isnan(b):
        return math.inf
    return abs(a - b) / max(abs(b), 1e-12)


async def check_recursive(
    symbol: str,
    *,
    strategy: str,
    exchange: str,
    frame: str,
    warmups: tuple[int, ...] = DEFAULT_WARMUPS,
    max_bars: int = 200,
    seed: int = 0,
) -> RecursiveReport:
    t0 = time.perf_counter()
    subject = open_subject(symbol, strategy=strategy, exchange=exchange, frame=frame)
    spec = subject.spec
    if spec.array is None:
        await subject.run.aclose()
        raise ConfigError(
            f"strategy {strategy!r} is in the per-tick form: its warm-up is the limit it passes to get_candles; "
            "the recursive check needs the array form (docs/array-strategies.md)"
        )
    try:
        data = await array_data(subject)
    finally:
        await subject.run.aclose()
    full = arrays.evaluate(spec, data.base, data.informative)
    decision = full.ts + data.step
    in_frame = np.flatnonzero((decision >= data.first_decision) & (decision <= subject.end))
    signal_rows = in_frame[full.enter[in_frame] != 0]
    if len(signal_rows) > max_bars:
        signal_rows = np.sort(np.random.default_rng(seed).choice(signal_rows, max_bars, replace=False))
    rows = sorted({*signal_rows.tolist(), *([int(in_frame[-1])] if len(in_frame) else [])})
    window = spec.array.window
    sizes = sorted({*warmups, window})
    out: list[WarmupRow] = []
    for w in sizes:
        usable = [j for j in rows if j - w + 1 >= 0]
        changed = 0
        rels: dict[str, list[float]] = {name: [] for name in full.indicators}
        for j in usable:
            base, informative = truncated(data, j, bars=w)
            t = arrays.evaluate(spec, base, informative)
            got = row_values(t, len(t) - 1)
            want = row_values(full, j)
            changed += got["enter"] != want["enter"]
            for name in rels:
                rels[name].append(_rel(got.get(name, math.nan), want[name]))
        out.append(
            WarmupRow(
                warmup=w,
                bars=len(usable),
                signals_changed=changed,
                max_rel={k: max(v) if v else 0.0 for k, v in rels.items()},
                mean_rel={k: (sum(v) / len(v)) if v else 0.0 for k, v in rels.items()},
                is_window=w == window,
            )
        )
    return RecursiveReport(
        strategy=strategy, symbol=symbol, window=window, rows=tuple(out), seconds=time.perf_counter() - t0
    )


def _pct(x: float) -> str:
    if math.isinf(x):
        return "NaN"
    return f"{x * 100:.4g}%"


def markdown_lines(report: RecursiveReport) -> list[str]:
    names = sorted({k for r in report.rows for k in r.max_rel})
    lines = [
        f"Strategy `{report.strategy}` on {report.symbol}: the last value of each indicator over W bars against "
        f"the value over the whole history (largest / mean relative difference), in {report.seconds:.1f} s. "
        f"The strategy's live window is {report.window} bars.",
        "",
        "| warm-up W | bars compared | signals changed | "
        + " | ".join(f"`{n}` max / mean" for n in names)
        + " |",
        "|---:|---:|---:|" + "---:|" * len(names),
    ]
    for r in report.rows:
        label = f"{r.warmup} (window)" if r.is_window else str(r.warmup)
        cells = [f"{_pct(r.max_rel[n])} / {_pct(r.mean_rel[n])}" for n in names]
        lines.append(f"| {label} | {r.bars} | {r.signals_changed} | " + " | ".join(cells) + " |")
    row = report.window_row
    lines.append("")
    if row is not None and row.signals_changed:
        lines.append(
            f"**UNSTABLE**: with its {report.window}-bar live window the strategy decides {row.signals_changed} "
            "bar(s) differently from the backtest; raise ArrayForm.window."
        )
    else:
        lines.append(
            f"Stable: with its {report.window}-bar live window every compared decision equals the backtest's."
        )
    return lines
