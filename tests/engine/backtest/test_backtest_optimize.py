"""Specification of optimisation: parameter sets, walk-forward windows, executors that agree, storage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.backtest import BacktestEngine
from engine.backtest.optimize import (
    OptimizationReport,
    grid,
    random_sets,
    save_optimization,
    walk_forward_windows,
)
from engine.data.sample import load_sample
from engine.domain.errors import BacktestException

SPACE = {"signal.fade_bars": [1, 3], "risk.stop_atr_multiple": [1.5, 2.5]}


@pytest.fixture(scope="module")
def engine() -> BacktestEngine:
    return BacktestEngine({"BTC/USDT": load_sample("BTC/USDT", "1h").slice(0, 2000)})


@pytest.fixture(scope="module")
def serial_report(engine: BacktestEngine) -> OptimizationReport:
    return engine.optimize_parameters(SPACE, workers=1, folds=2)


def test_grid_lists_every_combination_in_order() -> None:
    assert grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]


def test_random_search_is_reproducible_from_its_seed_and_stays_in_range() -> None:
    space = {"signal.fade_bars": (1, 5), "risk.stop_atr_multiple": (1.0, 3.0), "allow_short": [True, False]}
    first, again = random_sets(space, 8, seed=42), random_sets(space, 8, seed=42)
    assert first == again and len(first) == 8
    assert all(1 <= s["signal.fade_bars"] <= 5 and 1.0 <= s["risk.stop_atr_multiple"] <= 3.0 for s in first)
    assert random_sets(space, 8, seed=43) != first


def test_walk_forward_windows_roll_with_fixed_in_sample_length() -> None:
    hour = 3_600_000
    windows = walk_forward_windows(0, 1000 * hour, 0.3, 3, hour)
    ins = [w for w in windows if w.sample == "in"]
    outs = [w for w in windows if w.sample == "out"]
    assert {w.end_ms - w.start_ms for w in ins} == {700 * hour}
    assert all(o.start_ms == i.end_ms for i, o in zip(ins, outs, strict=True))
    assert outs[-1].end_ms == 1000 * hour and outs[0].end_ms == outs[1].start_ms


def test_rows_are_ranked_by_in_sample_objective_with_out_of_sample_beside(serial_report: OptimizationReport) -> None:
    scores = [row.in_score for row in serial_report.rows if row.in_score is not None]
    assert scores == sorted(scores, reverse=True) and len(serial_report.rows) == 4
    assert all(len(row.in_sample) == 2 and len(row.out_of_sample) == 2 for row in serial_report.rows)
    assert len(serial_report.walk_forward) == 2
    assert "OOS sharpe_ratio" in serial_report.table()


def test_each_evaluation_equals_a_plain_backtest_of_its_window(
    engine: BacktestEngine, serial_report: OptimizationReport
) -> None:
    row = serial_report.rows[0]
    window = serial_report.windows[1]  # fold 0, out of sample
    direct = engine.run_backtest(window.start_ms, window.end_ms, overrides=row.params)
    assert row.out_of_sample[0]["total_trades"] == direct.metrics.total_trades
    assert row.out_of_sample[0]["final_equity"] == pytest.approx(direct.metrics.final_equity)


def test_unknown_parameter_names_fail_before_any_work(engine: BacktestEngine) -> None:
    with pytest.raises(ValueError, match="unknown"):
        engine.optimize_parameters({"risk.no_such_thing": [1]}, workers=1)
    with pytest.raises(BacktestException):
        engine.optimize_parameters(SPACE, method="annealing", workers=1)


def test_local_process_pool_gives_the_serial_result(engine: BacktestEngine, serial_report: OptimizationReport) -> None:
    pooled = engine.optimize_parameters(SPACE, workers=2, folds=2)
    assert pooled.to_dict() == serial_report.to_dict()


def test_dask_cluster_gives_the_local_pool_result(engine: BacktestEngine, serial_report: OptimizationReport) -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_cluster = engine.optimize_parameters(SPACE, cluster=client, folds=2)
        by_address = engine.optimize_parameters({"signal.fade_bars": [1]}, cluster=cluster.scheduler_address, folds=1)
    assert on_cluster.to_dict() == serial_report.to_dict()
    assert by_address.rows[0].params == {"signal.fade_bars": 1}


def test_results_are_stored_ranked(serial_report: OptimizationReport, tmp_path: Path) -> None:
    from engine.store import Store

    database = tmp_path / "store.sqlite3"
    run_id = asyncio.run(save_optimization(database, "opt", serial_report))

    async def read() -> list:
        async with await Store.open(database) as store:
            return await store.optimization_results(run_id)

    stored = asyncio.run(read())
    assert [r.params for r in stored] == [row.params for row in serial_report.rows]
    assert stored[0].metrics["out_score"] == pytest.approx(serial_report.rows[0].out_score)


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_counts_every_evaluation_as_it_finishes(engine: BacktestEngine, workers: int) -> None:
    reports: list[tuple[int, int]] = []
    engine.optimize_parameters({"signal.fade_bars": [1, 3]}, workers=workers, folds=1,
                               progress=lambda done, total: reports.append((done, total)))
    assert reports == [(1, 4), (2, 4), (3, 4), (4, 4)]  # 2 sets x (in, out)
