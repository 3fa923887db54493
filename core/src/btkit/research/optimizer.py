"""The optimiser (docs/optimizer.md): grid, random or TPE search over a strategy's parameters.

Every trial is a real btkit backtest (:func:`btkit.research.trial.run_trial`). The trial set and the ranking
depend only on the inputs and the seed, never on ``jobs`` or the executor: grid and random points are fixed
before anything runs, and TPE asks Optuna in fixed batches and tells the results in trial order.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from btkit.context import datetime_to_ms
from btkit.errors import ConfigError
from btkit.research.space import Constraint, Space, parse_dimension
from btkit.research.study import Study, TrialRecord, TrialStore, rank, record_of
from btkit.research.trial import Task, check_metric

__all__ = ["METHODS", "OptimizeResult", "optimize", "search_space"]

METHODS = ("grid", "random", "tpe")
TPE_BATCH = 8  # TPE asks this many points, runs them, tells them in order: independent of jobs
MINUTE_MS = 60_000


@attrs.define(kw_only=True)
class OptimizeResult:
    """Every trial (by index), the ranked ones (best first), the metric and where the files are."""

    metric: str
    records: list[TrialRecord]
    ranked: list[TrialRecord]
    names: list[str]
    directory: Path | None = None
    csv: Path | None = None
    heatmap: Path | None = None
    report: Path | None = None
    interrupted: bool = False
    ran: int = 0  # trials run by this call (not taken from a resumed store)

    @property
    def best(self) -> TrialRecord | None:
        return self.ranked[0] if self.ranked else None


def _as_ms(value: datetime | str | int) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        from btkit.cli.common import parse_day

        value = parse_day(value)
    return datetime_to_ms(value)


def search_space(
    strategy: str, params: Sequence[str] | Mapping[str, Any], constraint: str | Sequence[str] | None
) -> Space:
    """The :class:`Space` of ``params`` (``["fast=5:50:5", …]`` or ``{"fast": "5:50:5"}`` / lists)."""
    from btkit.plugins import collect_components, get_plugin_manager

    spec = collect_components(get_plugin_manager()).get("strategy", strategy)
    if isinstance(params, Mapping):
        texts = [
            f"{k}={','.join(str(x) for x in v) if isinstance(v, (list, tuple)) else v}"
            for k, v in params.items()
        ]
    else:
        texts = list(params)
    if not texts:
        raise ConfigError(
            f"give at least one --param NAME=lo:hi:step to optimise (parameters of {strategy}: "
            f"{', '.join(spec.params) or 'none'})"
        )
    dims = [parse_dimension(t, spec.params, strategy) for t in texts]
    names = [d.name for d in dims]
    if len(set(names)) != len(names):
        raise ConfigError("each parameter may be given once with --param")
    fixed = {n: p.default for n, p in spec.params.items() if n not in names}
    texts_c = [constraint] if isinstance(constraint, str) else list(constraint or ())
    constraints = [Constraint(c, [*names, *fixed]) for c in texts_c]
    return Space(dims=dims, constraints=constraints, fixed=fixed)


def _identity(**kw: Any) -> dict[str, Any]:
    return json.loads(json.dumps(kw, sort_keys=True, default=str))


def _digest(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def optimize(
    strategy: str,
    *,
    params: Sequence[str] | Mapping[str, Any],
    start: datetime | str | int,
    end: datetime | str | int,
    symbol: str = "BTCUSDT",
    exchange: str = "sim",
    constraint: str | Sequence[str] | None = None,
    metric: str = "sharpe_ratio",
    method: str = "grid",
    trials: int | None = None,
    jobs: int | None = None,
    executor: str = "serial",
    address: str | None = None,
    min_trades: int = 0,
    seed: int = 1,
    interval: str = "1m",
    dump_dir: str | Path | None = None,
    resume: bool = False,
    risks: Sequence[str] = (),
    strategy_files: Sequence[str] = (),
    engine: Mapping[str, Any] | None = None,
    progress: Callable[[int, int, TrialRecord | None], None] | None = None,
    heatmap: Sequence[str] | None = None,
    report: bool = True,
    study: Study | None = None,
) -> OptimizeResult:
    """Optimise ``strategy``'s parameters over ``[start, end)``; see docs/optimizer.md. With ``dump_dir``
    the trials are stored as they finish (``--resume`` continues), and the CSV, the heatmap and the best
    trial's report are written there."""
    check_metric(metric)
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if trials is not None and trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    space = search_space(strategy, params, constraint)
    start_ms, end_ms = _as_ms(start), _as_ms(end)
    if end_ms <= start_ms:
        raise ConfigError("the optimisation range is empty: end must be after start")
    end_ms -= MINUTE_MS  # [start, end): the frame's last minute
    grid = space.grid() if method != "tpe" else []
    if method != "tpe" and not grid:
        raise ConfigError(
            f"no parameter combination satisfies the constraint(s) {', '.join(c.text for c in space.constraints)}; "
            "widen the ranges or relax the constraint"
        )
    if method == "random":
        grid = space.random(trials or min(len(grid), 100), seed)
    elif method == "grid" and trials is not None:
        grid = grid[:trials]
    identity = _identity(
        strategy=strategy, symbol=symbol, exchange=exchange, params=[d.text for d in space.dims],
        constraint=[c.text for c in space.constraints], metric=metric, method=method, trials=trials,
        min_trades=min_trades, seed=seed, start=start_ms, end=end_ms, interval=interval,
    )  # fmt: skip
    directory = store = None
    if dump_dir is not None:
        directory = Path(dump_dir) / "optimize" / f"{strategy}-{symbol}-{_digest(identity)}"
        store = TrialStore(directory / "trials.jsonl", identity, resume=resume)
    own = study is None
    interrupted = False
    records: dict[int, TrialRecord] = {
        k[1]: v for k, v in (store.done.items() if store else ()) if k[0] is None
    }
    ran = 0
    try:
        if study is None:
            study = Study(
                strategy=strategy, symbol=symbol, exchange=exchange, start_ms=start_ms, end_ms=end_ms,
                executor=executor, jobs=jobs, address=address, risks=risks, strategy_files=strategy_files,
                engine=engine,
            )  # fmt: skip
        total = len(grid) if method != "tpe" else (trials or 50)
        if progress:
            progress(len(records), total, None)

        def finished(rec: TrialRecord) -> None:
            nonlocal ran
            ran += 1
            records[rec.index] = rec
            if store:
                store.add(rec)
            if progress:
                progress(len(records), total, rec)

        try:
            if method == "tpe":
                _tpe(
                    study,
                    space,
                    records,
                    finished,
                    total,
                    seed,
                    metric,
                    min_trades,
                    start_ms,
                    end_ms,
                    interval,
                )
            else:
                todo = [(i, p) for i, p in enumerate(grid) if i not in records]
                tasks = [
                    Task(params={**p}, start_ms=start_ms, end_ms=end_ms, interval=interval) for _, p in todo
                ]
                study.run(tasks, lambda k, res: finished(record_of(todo[k][0], todo[k][1], res)))
        except KeyboardInterrupt:
            interrupted = True
    finally:
        if own and study is not None:
            study.close()
        if store:
            store.close()
    ordered = [records[i] for i in sorted(records)]
    result = OptimizeResult(
        metric=metric,
        records=ordered,
        ranked=rank(ordered, metric, min_trades),
        names=space.names,
        directory=directory,
        interrupted=interrupted,
        ran=ran,
    )
    if directory is not None:
        from btkit.research import output

        result.csv = output.write_csv(directory / "trials.csv", result)
        if len(space.names) >= 2 or heatmap:
            result.heatmap = output.heatmap(directory, result, heatmap)
        if report and result.best is not None and not interrupted:
            result.report = output.best_report(
                directory, strategy, symbol, exchange, start_ms, end_ms, interval, result.best.params, risks
            )
        output.write_summary(directory / "summary.md", result, strategy, symbol)
    if interrupted:
        raise OptimizeInterrupted(result)
    return result


class OptimizeInterrupted(KeyboardInterrupt):
    """Ctrl-C during an optimisation: ``result`` holds (and the store kept) the trials that finished."""

    def __init__(self, result: OptimizeResult) -> None:
        super().__init__("interrupted")
        self.result = result


def _tpe(
    study: Study,
    space: Space,
    records: dict[int, TrialRecord],
    finished: Callable[[TrialRecord], None],
    total: int,
    seed: int,
    metric: str,
    min_trades: int,
    start_ms: int,
    end_ms: int,
    interval: str,
) -> None:
    try:
        import optuna
    except ImportError:
        raise ConfigError("--method tpe needs Optuna: pip install 'btkit[optimize]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {d.name: optuna.distributions.CategoricalDistribution(list(d.values)) for d in space.dims}
    for d in space.dims:
        vals = d.values
        if len(vals) > 1 and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            steps = {b - a for a, b in itertools.pairwise(vals)}
            if len(steps) == 1 and min(steps) > 0:
                dists[d.name] = optuna.distributions.IntDistribution(vals[0], vals[-1], step=steps.pop())
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, total))
    ostudy = optuna.create_study(direction="maximize", sampler=sampler)
    index = 0
    while index < total:
        batch: list[tuple[int, Any, dict[str, Any]]] = []
        while len(batch) < TPE_BATCH and index + len(batch) < total:
            for _attempt in range(200):
                trial = ostudy.ask(dists)
                point = {n: trial.params[n] for n in space.names}
                if space.ok(point):
                    break
                ostudy.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                raise ConfigError("TPE found no point satisfying the constraint(s) in 200 tries; relax them")
            batch.append((index + len(batch), trial, point))
        todo = [(i, p) for i, _, p in batch if i not in records]
        tasks = [Task(params=p, start_ms=start_ms, end_ms=end_ms, interval=interval) for _, p in todo]
        study.run(tasks, lambda k, res, todo=todo: finished(record_of(todo[k][0], todo[k][1], res)))
        for i, trial, _ in batch:  # told in trial order: the next batch does not depend on who finished first
            rec = records.get(i)
            score = rec.score(metric, min_trades) if rec is not None else None
            if score is None:
                ostudy.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                ostudy.tell(trial, score)
        index += len(batch)
