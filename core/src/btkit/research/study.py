"""What every research run shares: the strategy, the candles loaded once, the executor, the trial store.

A :class:`Study` loads the candles of its whole range once from the real exchange, shares them with the
workers as read-only columns (shared memory for the process pool; the columns themselves for an executor
with ``local_candles``: serial, and ray, which puts them in its object store once) and runs
:class:`~btkit.research.trial.Task` lists on the executor. Finished trials are appended to ``trials.jsonl``
(flushed and fsync-ed one by one), so an interrupted run resumes without redoing them.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from btkit.errors import ConfigError
from btkit.research.executors import ExecutorOptions, TaskError, get_executor
from btkit.research.shared import CandleHandles, SharedCandles, fetch_candles
from btkit.research.trial import Task, TrialOutcome, metric_value, run_trial

__all__ = ["Study", "TrialRecord", "TrialStore"]

DAY_MS = 86_400_000
TAIL_MS = 30 * DAY_MS  # candles kept after the range: signals open at its end still resolve


@attrs.define(kw_only=True)
class TrialRecord:
    """One finished trial: its index, parameters, ``ok`` / ``failed``, metrics (``ok``) or error."""

    index: int
    params: dict[str, Any]
    status: str
    metrics: dict[str, float | None] = attrs.Factory(dict)
    error: str = ""
    trades: int = 0
    window: int | None = None
    outcome: TrialOutcome | None = attrs.field(default=None, repr=False, eq=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "trial",
            "index": self.index,
            "window": self.window,
            "params": self.params,
            "status": self.status,
            "metrics": self.metrics,
            "error": self.error,
            "trades": self.trades,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> TrialRecord:
        return cls(
            index=int(doc["index"]),
            params=dict(doc["params"]),
            status=str(doc["status"]),
            metrics=dict(doc.get("metrics") or {}),
            error=str(doc.get("error", "")),
            trades=int(doc.get("trades", 0)),
            window=doc.get("window"),
        )

    def score(self, metric: str, min_trades: int) -> float | None:
        """The value this trial ranks by, or None (failed, non-finite metric, fewer than min_trades)."""
        if self.status != "ok" or self.trades < min_trades:
            return None
        return metric_value(self.metrics.get(metric))


def rank(records: Iterable[TrialRecord], metric: str, min_trades: int) -> list[TrialRecord]:
    """Ranked trials, best first; ties by trial index (the same order whatever ran them)."""
    scored = [r for r in records if r.score(metric, min_trades) is not None]
    return sorted(scored, key=lambda r: (-(r.score(metric, min_trades) or 0.0), r.index))


class TrialStore:
    """``trials.jsonl`` in the run directory: a header (the run's identity), then one line per trial."""

    def __init__(self, path: Path, identity: Mapping[str, Any], *, resume: bool) -> None:
        self.path = path
        self.done: dict[tuple[int | None, int], TrialRecord] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume and path.is_file():
            self._load(identity)
            self._fh = path.open("a", encoding="utf-8")
        else:
            self._fh = path.open("w", encoding="utf-8")
            self._write({"kind": "header", "identity": identity})

    def _load(self, identity: Mapping[str, Any]) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        good: list[str] = []
        for n, line in enumerate(lines):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                if n == len(lines) - 1:
                    break  # the line being written when the run was killed
                raise ConfigError(
                    f"{self.path}: line {n + 1} is not JSON; delete the file to start over"
                ) from None
            if doc.get("kind") == "header":
                if doc.get("identity") != json.loads(json.dumps(identity)):
                    raise ConfigError(
                        f"{self.path} belongs to a different optimisation; drop --resume to start over"
                    )
            elif doc.get("kind") == "trial":
                rec = TrialRecord.from_json(doc)
                self.done[(rec.window, rec.index)] = rec
            good.append(line)
        self.path.write_text("".join(g + "\n" for g in good), encoding="utf-8")  # drop a torn last line

    def _write(self, doc: Mapping[str, Any]) -> None:
        self._fh.write(json.dumps(doc, sort_keys=True, default=str) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def add(self, record: TrialRecord) -> None:
        self.done[(record.window, record.index)] = record
        self._write(record.to_json())

    def close(self) -> None:
        self._fh.close()


class Study:
    """Candles, executor and worker payload of one research run (use as a context manager)."""

    def __init__(
        self,
        *,
        strategy: str,
        symbol: str,
        exchange: str,
        start_ms: int,
        end_ms: int,
        executor: str = "serial",
        jobs: int | None = None,
        address: str | None = None,
        risks: Sequence[str] = (),
        strategy_files: Sequence[str] = (),
        engine: Mapping[str, Any] | None = None,
    ) -> None:
        from btkit.components import interval_ms
        from btkit.plugins import collect_components, get_plugin_manager

        pm = get_plugin_manager()
        self.spec = collect_components(pm).get("strategy", strategy)
        self.executor = get_executor(executor, ExecutorOptions(jobs=jobs, address=address), pm)
        self.executor_name = executor
        step = interval_ms(self.spec.interval)
        bars = 1000 if self.spec.array is None else max(1000, self.spec.array.window + 1)
        warmup = max(DAY_MS, bars * step)
        from btkit.market import wall_clock_ms

        stop = min(end_ms + TAIL_MS, wall_clock_ms())
        intervals = ["1m", self.spec.interval, *(self.spec.array.informative if self.spec.array else ())]
        columns = self._fetch(exchange, symbol, intervals, start_ms, warmup, stop)
        self._owned: SharedCandles | None = None
        if getattr(self.executor, "local_candles", False):  # in-process, or it ships them itself (ray.put)
            handles = CandleHandles(exchange=exchange, local=columns)
        else:
            self._owned = SharedCandles(exchange, columns)
            handles = self._owned.handles
        del columns
        self.shared: dict[str, Any] = {
            "token": uuid.uuid4().hex,
            "candles": handles,
            "symbol": symbol,
            "strategy": strategy,
            "risks": tuple(risks),
            "strategy_files": tuple(str(Path(f).resolve()) for f in strategy_files),
            "engine": dict(engine or {}),
        }
        self.executor.start(self.shared)

    @staticmethod
    def _fetch(
        exchange: str, symbol: str, intervals: list[str], start_ms: int, warmup: int, stop: int
    ) -> dict[tuple[str, str], Any]:
        """The candles from ``warmup`` before the start; an exchange whose data begin later (a candle store)
        refuses the early part: halve the warm-up until it serves the range (the start itself must be there)."""
        from btkit.errors import CandleDataError

        while True:
            try:
                return fetch_candles(exchange, symbol, intervals, start_ms - warmup, stop)
            except CandleDataError:
                if warmup < 3_600_000:
                    raise
                warmup //= 2

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.executor.close()
        finally:
            if self._owned is not None:
                self._owned.close()
                self._owned = None

    def run(
        self,
        tasks: Sequence[Task],
        on_result: Callable[[int, TrialOutcome | TaskError], None],
    ) -> None:
        """Run ``tasks``; ``on_result(index, outcome or error)`` as each finishes (any order)."""
        for i, result in self.executor.map(run_trial, tasks):
            on_result(i, result)


def record_of(index: int, params: Mapping[str, Any], result: Any, window: int | None = None) -> TrialRecord:
    if isinstance(result, TrialOutcome):
        return TrialRecord(
            index=index,
            params=dict(params),
            status="ok",
            metrics=dict(result.metrics),
            trades=len(result.trades),
            window=window,
            outcome=result,
        )
    error = str(result) if isinstance(result, TaskError) else f"unexpected result {type(result).__name__}"
    return TrialRecord(index=index, params=dict(params), status="failed", error=error, window=window)
