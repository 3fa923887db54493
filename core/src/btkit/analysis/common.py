"""What the checks share: a backtest-like run of one strategy, its candles, and truncating them at a bar."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from btkit.components import interval_ms
from btkit.engine import arrays
from btkit.engine.backtest import new_run
from btkit.engine.instance import StrategyInstance
from btkit.engine.run import Run

Columns = dict[str, np.ndarray]


@attrs.define
class Subject:
    """One strategy on one symbol over one frame, set up as a backtest would be."""

    run: Run
    inst: StrategyInstance
    start: int
    end: int
    step: int  # the frame's step

    @property
    def spec(self) -> Any:
        return self.inst.strategy


def open_subject(symbol: str, *, strategy: str, exchange: str, frame: str) -> Subject:
    run, start, end, step = new_run(frame, ())
    inst = run.instance(symbol, strategy, exchange, frame)
    return Subject(run=run, inst=inst, start=start, end=end, step=step)


@attrs.define
class ArrayData:
    """The candles an array-form backtest hands ``populate``: base bars with ``window`` bars of warm-up
    before the frame, and the informative bars closed by the end."""

    base: Columns
    informative: dict[str, Columns]
    step: int
    first_decision: int  # bucket of the first tick of the frame

    @property
    def ts(self) -> np.ndarray:
        return self.base["timestamp"]


async def array_data(subject: Subject) -> ArrayData:
    spec = subject.spec
    step = subject.inst.interval
    first = (subject.start // step) * step
    since = first - spec.array.window * step
    stop = (subject.end // step) * step
    market = subject.inst.market
    base = await arrays._range(market, subject.inst.symbol, spec.interval, since, stop)
    informative = await arrays._informative(market, spec, subject.inst.symbol, since, stop)
    return ArrayData(base=base, informative=informative, step=step, first_decision=first)


def truncated(data: ArrayData, j: int, *, bars: int | None = None) -> tuple[Columns, dict[str, Columns]]:
    """What was known when bar ``j`` closed: base bars up to ``j`` (the last ``bars`` of them when given)
    and the informative bars closed by then (as many as a live window of that length fetches)."""
    lo = 0 if bars is None else max(0, j - bars + 1)
    base = {k: v[lo : j + 1] for k, v in data.base.items()}
    decided = int(data.ts[j]) + data.step
    informative: dict[str, Columns] = {}
    for iv, cols in data.informative.items():
        hstep = interval_ms(iv)
        keep = cols["timestamp"].astype(np.int64) + hstep <= decided
        k = int(keep.sum())  # bars are sorted: closed ones are a prefix
        first = 0 if bars is None else max(0, k - (math.ceil((j - lo + 1) * data.step / hstep) + 1))
        informative[iv] = {name: v[first:k] for name, v in cols.items()}
    return base, informative


def same(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    return a == b or abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))


def row_values(table: arrays.Table, i: int) -> dict[str, float]:
    """Every value of row ``i``: enter, the price columns and the indicators."""
    out = {"enter": float(table.enter[i])}
    for k, v in table.prices.items():
        out[k] = float(v[i])
    for k, v in table.indicators.items():
        out[k] = float(v[i])
    return out


def moved(full: Mapping[str, float], other: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(column, value in the full run, value here) for each column that differs or is missing."""
    out = []
    for k, a in full.items():
        b = other.get(k, math.nan)
        if not same(a, b):
            out.append((k, a, b))
    for k, b in other.items():
        if k not in full:
            out.append((k, math.nan, b))
    return out
