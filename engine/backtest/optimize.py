"""Provides parameter optimisation: grid and random search with an in-/out-of-sample walk-forward split.

Every evaluation is a pure function of (data, parameters, window): :func:`evaluate_task`. Locally the
tasks run on a process pool (the data is sent once per worker); with a cluster address they run on Dask
distributed with the data scattered once to every worker (``broadcast=True``). Results are ordered by
task, so both executors give identical output.

Windows: the traded span is split so that the last ``out_of_sample`` fraction is out-of-sample. With
``folds`` > 1 the split rolls forward (walk-forward): fold i's in-sample window has the same length and
is followed by the i-th slice of the out-of-sample span. Each window is backtested with the history
before it as indicator warm-up. Ranking uses the in-sample objective (mean over folds); the out-of-sample
columns show how the choice held up. The walk-forward summary picks each fold's best in-sample
parameters and reports their out-of-sample result.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.backtest.engine import BacktestEngine
from engine.backtest.params import ParameterSet
from engine.backtest.result import plain
from engine.config import BacktestConfig
from engine.domain.errors import BacktestException
from engine.domain.models import Candles, MarketLimits

ParamSpace = Mapping[str, Sequence[Any] | tuple[float, float]]


@dataclass(frozen=True)
class OptimizationContext:
    """The data every task shares (scattered once)."""

    data: dict[str, Candles]
    parameters: ParameterSet
    backtest: BacktestConfig
    market_limits: dict[str, MarketLimits]
    unattended: bool
    symbols: tuple[str, ...]


@dataclass(frozen=True)
class Window:
    fold: int
    sample: str  # "in" | "out"
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class EvaluationTask:
    index: int
    overrides: dict[str, Any]
    window: Window


@dataclass(frozen=True)
class Evaluation:
    index: int
    metrics: dict[str, Any]
    error: str | None = None


def evaluate_task(context: OptimizationContext, task: EvaluationTask) -> Evaluation:
    """Backtest one parameter set on one window (pure: same inputs, same output)."""
    engine = BacktestEngine(
        context.data,
        context.parameters.strategy,
        risk=context.parameters.risk,
        breaker=context.parameters.breaker,
        backtest=context.backtest,
        market_limits=context.market_limits,
        unattended=context.unattended,
    )
    try:
        result = engine.run_backtest(
            task.window.start_ms, task.window.end_ms, list(context.symbols), overrides=task.overrides
        )
    except (BacktestException, ValueError) as exc:
        return Evaluation(task.index, {}, str(exc))
    return Evaluation(task.index, plain(result.metrics_dict()))


_WORKER_CONTEXT: OptimizationContext | None = None


def _init_worker(context: OptimizationContext) -> None:
    global _WORKER_CONTEXT
    _WORKER_CONTEXT = context


def _evaluate_in_worker(task: EvaluationTask) -> Evaluation:
    assert _WORKER_CONTEXT is not None, "worker not initialised"
    return evaluate_task(_WORKER_CONTEXT, task)


# ------------------------------------------------------------------------------------------ parameter sets
def grid(space: ParamSpace) -> list[dict[str, Any]]:
    """Every combination of the listed values, in the order given."""
    names = list(space)
    values = [list(space[name]) for name in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def random_sets(space: ParamSpace, samples: int, seed: int) -> list[dict[str, Any]]:
    """``samples`` random parameter sets: a list is sampled uniformly, a (low, high) tuple uniformly in range
    (integers when both bounds are int). Duplicates are dropped; seeded, so reproducible."""
    rng = np.random.default_rng(seed)
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(samples * 10):
        if len(found) >= samples:
            break
        choice: dict[str, Any] = {}
        for name, spec in space.items():
            if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(v, int | float) for v in spec):
                low, high = spec
                if isinstance(low, int) and isinstance(high, int):
                    choice[name] = int(rng.integers(low, high + 1))
                else:
                    choice[name] = float(f"{rng.uniform(low, high):.6g}")
            else:
                options = list(spec)
                choice[name] = options[int(rng.integers(len(options)))]
        key = repr(sorted(choice.items()))
        if key not in seen:
            seen.add(key)
            found.append(choice)
    return found


def walk_forward_windows(first_ms: int, end_ms: int, out_of_sample: float, folds: int, bar_ms: int) -> list[Window]:
    """In/out-of-sample windows over ``[first_ms, end_ms)`` (see the module docstring), aligned to bars."""
    if not 0.0 < out_of_sample < 1.0:
        raise BacktestException("out_of_sample must be a ratio in (0, 1)")
    if folds < 1:
        raise BacktestException("folds must be >= 1")
    span = end_ms - first_ms
    in_length = int(span * (1.0 - out_of_sample)) // bar_ms * bar_ms
    out_length = (span - in_length) // folds // bar_ms * bar_ms
    if in_length <= 0 or out_length <= 0:
        raise BacktestException("the data is too short for this split")
    windows = []
    for fold in range(folds):
        in_start = first_ms + fold * out_length
        in_end = in_start + in_length
        out_end = end_ms if fold == folds - 1 else in_end + out_length
        windows += [Window(fold, "in", in_start, in_end), Window(fold, "out", in_end, out_end)]
    return windows


# ------------------------------------------------------------------------------------------ executors
TaskProgress = Callable[[int, int], None]  # (evaluations done, evaluations in all)


def run_local(context: OptimizationContext, tasks: Sequence[EvaluationTask], workers: int | None,
              progress: TaskProgress | None = None) -> list[Evaluation]:
    if workers == 1 or len(tasks) <= 1:
        return _collect((evaluate_task(context, task) for task in tasks), len(tasks), progress)
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(context,)) as pool:
        return _collect(pool.map(_evaluate_in_worker, tasks, chunksize=1), len(tasks), progress)


def _collect(evaluations: Iterable[Evaluation], total: int, progress: TaskProgress | None) -> list[Evaluation]:
    collected: list[Evaluation] = []
    for evaluation in evaluations:
        collected.append(evaluation)
        if progress is not None:
            progress(len(collected), total)
    return collected


def run_on_dask(context: OptimizationContext, tasks: Sequence[EvaluationTask], cluster: Any,
                progress: TaskProgress | None = None) -> list[Evaluation]:
    """Run on Dask distributed; ``cluster`` is a scheduler address or a ``distributed.Client``."""
    from distributed import Client, as_completed

    client: Any = cluster if isinstance(cluster, Client) else Client(cluster)  # type: ignore[no-untyped-call]
    try:
        # hash=False: a content-hashed key is shared with any other client that scattered equal data, and
        # when that client lets go the workers drop it under our tasks ("lost dependencies").
        shared = client.scatter(context, broadcast=True, hash=False)
        futures = [client.submit(evaluate_task, shared, task, pure=False) for task in tasks]
        _collect((future.result() for future in as_completed(futures)), len(futures), progress)  # type: ignore[no-untyped-call]
        return list(client.gather(futures))
    finally:
        if client is not cluster:
            client.close()


# ------------------------------------------------------------------------------------------ results
def score_of(metrics: Mapping[str, Any], objective: str) -> float | None:
    value = metrics.get(objective)
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present and len(present) == len(values) else None


@dataclass(frozen=True)
class OptimizationRow:
    params: dict[str, Any]
    in_sample: list[dict[str, Any]]  # metrics per fold
    out_of_sample: list[dict[str, Any]]
    in_score: float | None
    out_score: float | None
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OptimizationReport:
    """Ranked parameter sets (best in-sample objective first) and the walk-forward summary."""

    method: str
    objective: str
    windows: list[Window]
    rows: list[OptimizationRow]
    walk_forward: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        plain_dict: dict[str, Any] = plain(
            {
                "method": self.method,
                "objective": self.objective,
                "windows": [vars(w) for w in self.windows],
                "rows": [vars(r) for r in self.rows],
                "walk_forward": self.walk_forward,
            }
        )
        return plain_dict

    def table(self, limit: int = 20) -> str:
        """Ranked plain-text table: in-sample and out-of-sample objective side by side."""

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        lines = [
            f"{'rank':>4}  {'IS ' + self.objective:>20}  {'OOS ' + self.objective:>20}  "
            f"{'IS trades':>9}  {'OOS trades':>10}  params"
        ]
        for rank, row in enumerate(self.rows[:limit], 1):
            is_trades = sum(m.get("total_trades", 0) or 0 for m in row.in_sample)
            oos_trades = sum(m.get("total_trades", 0) or 0 for m in row.out_of_sample)
            params = " ".join(f"{k}={v}" for k, v in row.params.items())
            lines.append(
                f"{rank:>4}  {fmt(row.in_score):>20}  {fmt(row.out_score):>20}  {is_trades:>9}  "
                f"{oos_trades:>10}  {params}"
            )
        for fold in self.walk_forward:
            lines.append(
                f"walk-forward fold {fold['fold']}: best IS {fmt(fold['in_score'])} -> OOS "
                f"{fmt(fold['out_score'])} with {fold['params']}"
            )
        return "\n".join(lines)


def optimize(
    engine: BacktestEngine,
    space: ParamSpace,
    *,
    method: str = "grid",
    samples: int = 20,
    seed: int = 0,
    objective: str = "sharpe_ratio",
    start: int | None = None,
    end: int | None = None,
    symbols: Sequence[str] | None = None,
    out_of_sample: float = 0.3,
    folds: int = 1,
    workers: int | None = None,
    cluster: Any = None,
    progress: TaskProgress | None = None,
) -> OptimizationReport:
    """Evaluate parameter sets of ``space`` on in- and out-of-sample windows; rank by in-sample objective.

    Args:
        space: parameter name -> values (grid, random) or (low, high) (random only).
        method: ``"grid"`` or ``"random"`` (``samples`` sets drawn with ``seed``).
        objective: a metric name of ``PerformanceMetrics`` (higher is better).
        out_of_sample: ratio in (0, 1) of the span kept out of sample.
        folds: walk-forward folds (1 = one split).
        workers: local process pool size (None = CPU count; 1 = in this process).
        cluster: Dask scheduler address or ``distributed.Client``; None = local pool.
        progress: called with (evaluations done, evaluations in all) as each one finishes (any order).
    """
    if method == "grid":
        sets = grid(space)
    elif method == "random":
        sets = random_sets(space, samples, seed)
    else:
        raise BacktestException(f"unknown optimisation method {method!r} (grid or random)")
    if not sets:
        raise BacktestException("the parameter space is empty")
    for overrides in sets:  # fail fast on a misspelt name
        engine.parameters.with_overrides(overrides)
    chosen = tuple(sorted(symbols) if symbols else engine.data)
    first = min(int(engine.data[s].open_time_ms[0]) for s in chosen)
    last = max(int(engine.data[s].open_time_ms[-1]) for s in chosen)
    bar_ms = int(np.diff(engine.data[chosen[0]].open_time_ms[:2])[0]) if len(engine.data[chosen[0]]) > 1 else 1
    first = max(first, start) if start is not None else first
    stop = min(last + bar_ms, end) if end is not None else last + bar_ms
    windows = walk_forward_windows(first, stop, out_of_sample, folds, bar_ms)
    tasks = [
        EvaluationTask(i * len(windows) + j, dict(overrides), window)
        for i, overrides in enumerate(sets)
        for j, window in enumerate(windows)
    ]
    context = OptimizationContext(
        engine.data, engine.parameters, engine.backtest_config, engine.market_limits, engine.unattended, chosen
    )
    if cluster is not None:
        evaluations = run_on_dask(context, tasks, cluster, progress)
    else:
        evaluations = run_local(context, tasks, workers, progress)
    evaluations.sort(key=lambda e: e.index)
    rows = []
    for i, overrides in enumerate(sets):
        mine = evaluations[i * len(windows) : (i + 1) * len(windows)]
        ins = [e.metrics for e, w in zip(mine, windows, strict=True) if w.sample == "in"]
        outs = [e.metrics for e, w in zip(mine, windows, strict=True) if w.sample == "out"]
        rows.append(
            OptimizationRow(
                params=dict(overrides),
                in_sample=ins,
                out_of_sample=outs,
                in_score=_mean([score_of(m, objective) for m in ins]),
                out_score=_mean([score_of(m, objective) for m in outs]),
                errors=[e.error for e in mine if e.error],
            )
        )
    order = sorted(range(len(rows)), key=lambda k: (rows[k].in_score is None, -(rows[k].in_score or 0.0), k))
    walk: list[dict[str, Any]] = []
    for fold in range(folds):
        fold_in = [score_of(row.in_sample[fold], objective) for row in rows]
        candidates = [k for k in range(len(rows)) if fold_in[k] is not None]
        if not candidates:
            walk.append({"fold": fold, "params": None, "in_score": None, "out_score": None})
            continue
        best = max(candidates, key=lambda k: (fold_in[k] or 0.0, -k))
        walk.append(
            {
                "fold": fold,
                "params": rows[best].params,
                "in_score": fold_in[best],
                "out_score": score_of(rows[best].out_of_sample[fold], objective),
                "out_metrics": rows[best].out_of_sample[fold],
            }
        )
    return OptimizationReport(method, objective, windows, [rows[k] for k in order], walk)


async def save_optimization(database_path: Any, name: str, report: OptimizationReport) -> int:
    """Store the run (``backtest_runs``) and one ranked row per parameter set; returns the run id."""
    from engine.store import Store

    best = report.rows[0] if report.rows else None
    summary = {
        "objective": report.objective,
        "best_in_score": best.in_score if best else None,
        "best_out_score": best.out_score if best else None,
        "evaluated": len(report.rows),
    }
    async with await Store.open(database_path) as store:
        run_id = await store.save_backtest_run(
            name,
            plain({"method": report.method, "best_params": best.params if best else None}),
            plain(summary),
            report.to_dict(),
        )
        await store.save_optimization_results(
            run_id,
            [
                (
                    plain(row.params),
                    plain({"in_sample": row.in_sample, "out_of_sample": row.out_of_sample, "out_score": row.out_score}),
                    row.in_score,
                )
                for row in report.rows
            ],
        )
    return run_id
