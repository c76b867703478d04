"""Provides ``tradebot backtest``, ``tradebot optimize`` and ``tradebot compare`` (headless, no Textual)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from engine.config import Settings
from engine.domain.errors import BacktestException, ConfigException


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="FILE|SYMBOL",
        help="candle CSV/CSV.gz file, or a symbol stored in the SQLite store (default: the bundled sample)",
    )
    parser.add_argument(
        "--symbol",
        action="append",
        metavar="SYMBOL",
        help="market symbol, e.g. BTC/USDT; repeat for a portfolio of bundled/stored symbols",
    )
    parser.add_argument("--timeframe", help="bar size (default: [backtest] timeframe)")
    parser.add_argument("--start", metavar="ISO", help="first bar open time, UTC (e.g. 2025-01-01)")
    parser.add_argument("--end", metavar="ISO", help="end (exclusive), UTC")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="parameter override, e.g. risk.stop_atr_multiple=2.5",
    )
    parser.add_argument(
        "--attended",
        action="store_true",
        help="keep latching breakers latched (by default a backtest runs unattended: no breaker latches)",
    )


def register(subparsers: Any) -> None:
    backtest = subparsers.add_parser("backtest", help="backtest the strategy on candles (the live decision path)")
    _add_data_arguments(backtest)
    backtest.add_argument("--json", action="store_true", help="print only the metrics JSON on stdout")
    backtest.add_argument("--export", metavar="DIR", help="write trades.csv and equity.csv into DIR")
    backtest.add_argument("--report", metavar="FILE.html", help="write a self-contained HTML report")
    backtest.add_argument("--name", default="backtest", help="name of the stored run")
    backtest.add_argument("--no-save", action="store_true", help="do not store the run in SQLite")
    backtest.set_defaults(handler=handle_backtest)

    optimize = subparsers.add_parser("optimize", help="grid/random parameter search with walk-forward validation")
    _add_data_arguments(optimize)
    optimize.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="NAME=V1,V2|LOW:HIGH",
        help="parameter values (list) or range (random search), e.g. signal.fade_bars=1,2,3",
    )
    optimize.add_argument("--method", choices=("grid", "random"), default="grid")
    optimize.add_argument("--samples", type=int, default=20, help="random search: parameter sets to draw")
    optimize.add_argument("--seed", type=int, default=0)
    optimize.add_argument("--objective", default="sharpe_ratio", help="metric to maximise (in-sample)")
    optimize.add_argument("--oos", type=float, default=0.3, help="out-of-sample ratio of the span, in (0, 1)")
    optimize.add_argument("--folds", type=int, default=1, help="walk-forward folds (1 = a single split)")
    optimize.add_argument("--workers", type=int, default=None, help="local processes (default: CPU count)")
    optimize.add_argument("--cluster", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://10.0.0.5:8786")
    optimize.add_argument("--top", type=int, default=20, help="rows to show")
    optimize.add_argument("--json", action="store_true", help="print the ranked results as JSON")
    optimize.add_argument("--name", default="optimize")
    optimize.set_defaults(handler=handle_optimize)

    compare = subparsers.add_parser("compare", help="compare stored backtest runs side by side")
    compare.add_argument("run_ids", nargs="+", type=int, metavar="RUN_ID")
    compare.add_argument("--json", action="store_true", help="print {run_id: metrics} as JSON")
    compare.set_defaults(handler=handle_compare)


def _overrides(pairs: list[str]) -> dict[str, Any]:
    from engine.backtest.params import parse_value

    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise BacktestException(f"expected NAME=VALUE, got {pair!r}")
        values[name.strip()] = parse_value(text)
    return values


def _checked_overrides(engine: Any, pairs: list[str]) -> dict[str, Any]:
    """The ``--set`` overrides, refused with one line naming the parameter when a value is invalid."""
    values = _overrides(pairs)
    try:
        engine.parameters.with_overrides(values)
    except ValueError as exc:
        raise ConfigException([f"--set: {exc}"]) from None
    return values


def _space(pairs: list[str], method: str) -> dict[str, Any]:
    from engine.backtest.params import parse_value

    space: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name or not text:
            raise BacktestException(f"expected NAME=V1,V2 or NAME=LOW:HIGH, got {pair!r}")
        if ":" in text and "," not in text:
            if method != "random":
                raise BacktestException(f"a range ({pair}) needs --method random")
            low, _, high = text.partition(":")
            space[name.strip()] = (parse_value(low), parse_value(high))
        else:
            space[name.strip()] = [parse_value(v) for v in text.split(",")]
    return space


async def _load(args: argparse.Namespace, settings: Settings) -> tuple[dict[str, Any], str]:
    from engine.backtest.data_source import load_candles, looks_like_file

    timeframe = args.timeframe or settings.backtest.timeframe
    symbols = args.symbol or []
    if args.data and looks_like_file(args.data):
        if len(symbols) > 1:
            raise BacktestException("a candle file holds one symbol: pass one --symbol")
        symbol = symbols[0] if symbols else "BTC/USDT"
        candles = await load_candles(args.data, symbol, timeframe, settings.storage.database_path)
        return {symbol: candles}, timeframe
    if args.data:
        symbols = [args.data] if not symbols else symbols
        data = {s: await load_candles(s, s, timeframe, settings.storage.database_path) for s in symbols}
        return data, timeframe
    symbols = symbols or ["BTC/USDT"]
    return {s: await load_candles(None, s, timeframe, settings.storage.database_path) for s in symbols}, timeframe


def _engine(args: argparse.Namespace, settings: Settings, data: dict[str, Any]) -> Any:
    from engine.analysis.strategy import StrategyParams
    from engine.backtest import BacktestEngine

    return BacktestEngine(data, StrategyParams.from_settings(settings), settings, unattended=not args.attended)


def handle_backtest(args: argparse.Namespace, settings: Settings) -> int:
    from engine.backtest.data_source import save_run
    from engine.backtest.result import dumps
    from tradebot_tui.progress import Progress

    data, _ = asyncio.run(_load(args, settings))
    engine = _engine(args, settings, data)
    overrides = _checked_overrides(engine, args.set) or None
    progress = Progress("backtest")
    result = engine.run_backtest(args.start, args.end, overrides=overrides, progress=progress.update)
    progress.finish(f"{len(result.trades)} trades")
    notes = sys.stderr if args.json else sys.stdout
    if args.json:
        print(dumps(result.metrics_dict()))
    else:
        from engine.backtest.report import compare_table

        print(
            f"{', '.join(result.symbols)} {result.timeframe}  {result.to_dict(False)['start']} -> "
            f"{result.to_dict(False)['end']}"
        )
        print(compare_table([("result", result.metrics_dict())]))
    if args.export:
        trades_path, equity_path = result.export_csv(args.export)
        print(f"wrote {trades_path} and {equity_path}", file=notes)
    if args.report:
        engine.generate_report(result, args.report)
        print(f"wrote {args.report}", file=notes)
    if not args.no_save:
        run_id = asyncio.run(save_run(settings.storage.database_path, args.name, result))
        print(f"stored as run {run_id} in {settings.storage.database_path}", file=notes)
    return 0


def handle_optimize(args: argparse.Namespace, settings: Settings) -> int:
    from engine.backtest.engine import to_ms
    from engine.backtest.optimize import save_optimization
    from engine.backtest.result import dumps

    data, _ = asyncio.run(_load(args, settings))
    engine = _engine(args, settings, data)
    base = _checked_overrides(engine, args.set)
    if base:
        engine.parameters = engine.parameters.with_overrides(base)
    from tradebot_tui.progress import Progress

    progress = Progress("optimize")
    report = engine.optimize_parameters(
        _space(args.param, args.method),
        progress=lambda done, total: progress.update(done / total, f"{done}/{total} evaluations"),
        method=args.method,
        samples=args.samples,
        seed=args.seed,
        objective=args.objective,
        start=to_ms(args.start),
        end=to_ms(args.end),
        out_of_sample=args.oos,
        folds=args.folds,
        workers=args.workers,
        cluster=args.cluster,
    )
    progress.finish(f"{len(report.rows)} parameter sets")
    run_id = asyncio.run(save_optimization(settings.storage.database_path, args.name, report))
    if args.json:
        print(dumps({"run_id": run_id, **report.to_dict()}))
    else:
        print(report.table(args.top))
        print(f"stored as run {run_id} in {settings.storage.database_path}")
    return 0


def handle_compare(args: argparse.Namespace, settings: Settings) -> int:
    from engine.backtest.data_source import load_runs
    from engine.backtest.report import best_optimisation_row, compare_table, comparison_columns

    runs = asyncio.run(load_runs(settings.storage.database_path, list(args.run_ids)))
    if args.json:
        print(json.dumps({str(r.id): r.metrics for r in runs}, sort_keys=True))
        return 0
    for run in runs:
        best = best_optimisation_row(run.result)
        if best is not None:
            params = " ".join(f"{k}={v}" for k, v in best["params"].items())
            print(f"#{run.id} {run.name} is an optimisation; its best parameter set: {params}")
    print(compare_table([column for r in runs for column in comparison_columns(r.id, r.name, r.metrics, r.result)]))
    return 0
