"""Specification of ``tradebot backtest``, ``optimize`` and ``compare`` and of the HTML report."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from engine.data.sample import sample_directory
from tradebot_tui.cli import main

RANGE = ["--start", "2025-03-01", "--end", "2025-05-01"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("TRADEBOT_CONFIG", "TRADEBOT_STORAGE__DATABASE_PATH"):
        monkeypatch.delenv(name, raising=False)


def _csv(tmp_path: Path) -> Path:
    source = sample_directory() / "BTC_USDT-1h.csv.gz"
    target = tmp_path / "btc.csv"
    target.write_bytes(gzip.decompress(source.read_bytes()))
    return target


def test_json_prints_only_the_metrics_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", *RANGE, "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {
        "total_trades",
        "win_rate",
        "sharpe_ratio",
        "max_drawdown",
        "calmar_ratio",
        "exposure",
        "stop_and_target_in_one_bar_trades",
    } <= metrics.keys()


def test_a_csv_file_and_the_bundled_sample_give_the_same_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backtest", *RANGE, "--json", "--no-save"]) == 0
    from_sample = capsys.readouterr().out
    assert main(["backtest", "--data", str(_csv(tmp_path)), "--symbol", "BTC/USDT", *RANGE, "--json", "--no-save"]) == 0
    assert capsys.readouterr().out == from_sample


def test_a_symbol_stored_in_sqlite_can_be_the_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "import", str(_csv(tmp_path)), "--symbol", "BTC/USDT", "--timeframe", "1h"]) == 0
    capsys.readouterr()
    assert main(["backtest", "--data", "BTC/USDT", *RANGE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bars"] > 0


def test_export_and_report_write_their_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", *RANGE, "--export", "out", "--report", "report.html"]) == 0
    assert (tmp_path / "out" / "trades.csv").read_text().startswith("symbol,side,quantity,entry_time")
    assert (tmp_path / "out" / "equity.csv").read_text().startswith("timestamp_ms,equity\n")
    report = (tmp_path / "report.html").read_text()
    assert report.count("<svg") >= 3 and "<script" not in report
    assert not re.search(r'(src|href)="(https?:)?//', report)
    assert "Max drawdown" in report and "Fill assumptions" in report


def test_compare_shows_stored_runs_side_by_side(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", *RANGE, "--name", "base"]) == 0
    assert main(["backtest", *RANGE, "--name", "wide", "--set", "risk.stop_atr_multiple=3"]) == 0
    capsys.readouterr()
    assert main(["compare", "1", "2", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert set(runs) == {"1", "2"} and runs["1"] != runs["2"]
    assert main(["compare", "1", "2"]) == 0
    assert "#1 base" in capsys.readouterr().out


def test_compare_shows_an_optimisation_as_its_best_parameter_sets_folds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", *RANGE, "--name", "base"]) == 0
    assert main(["optimize", *RANGE, "--param", "signal.fade_bars=1,3", "--workers", "1", "--folds", "2"]) == 0
    capsys.readouterr()
    assert main(["compare", "1", "2"]) == 0
    out = capsys.readouterr().out
    assert "#2 optimize is an optimisation; its best parameter set: signal.fade_bars=" in out
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert header.split()[1:] == ["#1", "base", "#2", "best", "IS1", "#2", "best", "OOS1", "#2", "best", "IS2",
                                  "#2", "best", "OOS2"]
    trades = next(line for line in out.splitlines() if line.startswith("Trades"))
    assert "n/a" not in trades


def test_compare_of_an_unknown_run_fails_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "99"]) == 1
    assert "no backtest run with id 99" in capsys.readouterr().err


def test_optimize_prints_ranked_in_and_out_of_sample(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["optimize", *RANGE, "--param", "signal.fade_bars=1,3", "--workers", "1", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["rows"]) == 2 and report["run_id"] == 1
    assert {"in_sample", "out_of_sample", "in_score", "out_score"} <= report["rows"][0].keys()


def test_a_bad_override_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", *RANGE, "--set", "nonsense"]) == 1
    assert "NAME=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("risk.max_notional_percent=500", "risk.max_notional_percent"),
        ("divergence_against_action=bogus", "StrategyParams.divergence_against_action"),
        ("volume_weight=2", "StrategyParams.volume_weight"),
        ("no_such_parameter=1", "no_such_parameter"),
    ],
)
def test_an_invalid_override_is_one_line_naming_it_and_exit_2(
    override: str, named: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["backtest", "--no-save", "--set", override]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and named in err and "Traceback" not in err
