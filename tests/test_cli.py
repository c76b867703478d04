"""Specification of the headless ``tradebot`` subcommands of the foundation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradebot_tui.cli import build_parser, main

GOOD_CSV = (
    "timestamp_ms,open,high,low,close,volume\n"
    "1726272000000,100,110,90,105,1.5\n"
    "1726275600000,105,106,100,101,2.0\n"
    "1726286400000,101,103,99,102,0.5\n"
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("TRADEBOT_CONFIG", "TRADEBOT_STORAGE__DATABASE_PATH"):
        monkeypatch.delenv(name, raising=False)


def test_help_lists_every_subcommand() -> None:
    help_text = build_parser().format_help()
    for command in ("status", "data"):
        assert command in help_text


def test_status_json_has_the_contract_keys_on_a_fresh_store(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"trading_state", "positions", "orders", "equity", "breakers"} <= summary.keys()
    assert summary["trading_state"] == "ACTIVE"


def test_data_import_then_list_reports_rows_and_gaps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "btc.csv").write_text(GOOD_CSV)
    assert main(["data", "import", "btc.csv", "--symbol", "BTC/USDT", "--timeframe", "1h"]) == 0
    out = capsys.readouterr().out
    assert "imported 3 candles of BTC/USDT 1h" in out
    assert "gaps: 1 (missing 2 bars" in out
    assert main(["data", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1].split()[:2] == ["BTC/USDT", "1h"] and listing[1].split()[-3:] == ["3", "1", "2"]


def test_rejected_import_exits_1_naming_file_row_and_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.csv").write_text(GOOD_CSV.replace("105,106,100,101", "105,106,100,-101"))
    assert main(["data", "import", "bad.csv", "--symbol", "BTC/USDT", "--timeframe", "1h"]) == 1
    assert capsys.readouterr().err.strip().startswith("error: bad.csv, row 3: non_positive_price (")


def test_live_mode_without_the_live_flag_starts_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "live.toml").write_text('[exchange]\nmode = "live"\n')
    (tmp_path / "live.toml").chmod(0o600)
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_KEY", "dummy-key-for-cli-test")
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_SECRET", "dummy-secret-for-cli-test")
    assert main(["--config", "live.toml"]) == 2
    err = capsys.readouterr().err
    assert "--live was not given" in err
    assert "dummy-key-for-cli-test" not in err and "dummy-secret-for-cli-test" not in err
