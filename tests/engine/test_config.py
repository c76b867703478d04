"""Specification of settings loading: precedence, every error kind, secret redaction."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.domain.errors import ConfigException

REPO_ROOT = Path(__file__).resolve().parents[2]
DUMMY_KEY = "dummy-api-key-7f3a9c"
DUMMY_SECRET = "dummy-api-secret-41be"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TRADEBOT_* variable or .env file from the developer's shell leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("TRADEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(text)
    return path


def problems_of(callable_, *args) -> list[str]:
    with pytest.raises(ConfigException) as info:
        callable_(*args)
    return info.value.problems


def test_defaults_are_safe_paper_replay_with_seed_risk_values() -> None:
    settings = load_settings()
    assert settings.exchange.mode == "paper"
    assert settings.exchange.feed == "replay"
    assert settings.storage.database_path == Path("data/tradebot.sqlite3")
    assert settings.risk.max_position_size_percent == 2.0
    assert settings.risk.max_daily_loss_percent == 5.0
    assert settings.risk.max_drawdown_percent == 10.0
    assert settings.risk.atr_lookback == 20
    assert settings.risk.trailing_stop_activation_percent == 1.0
    assert settings.risk.trailing_stop_distance_percent == 0.5
    assert settings.breaker.volatility_multiplier == 3.0
    assert settings.breaker.max_consecutive_losses == 5
    assert settings.breaker.daily_loss_percent == 5.0
    assert settings.backtest.initial_capital == 10_000.0
    assert settings.backtest.commission_percent == 0.1
    assert settings.backtest.slippage_percent == 0.05
    assert settings.backtest.timeframe == "1h"
    assert settings.mtf.timeframes == ["1h", "4h", "1d"]
    assert settings.telegram.enabled is False


def test_repository_config_toml_loads_and_equals_the_built_in_defaults() -> None:
    assert load_settings(REPO_ROOT / "config.toml") == load_settings()


def test_toml_file_overrides_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[risk]\nmax_daily_loss_percent = 3.0\n")
    assert load_settings(path).risk.max_daily_loss_percent == 3.0


def test_env_var_overrides_toml_and_keeps_sibling_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, "[risk]\nmax_daily_loss_percent = 3.0\nmax_drawdown_percent = 7.0\n")
    monkeypatch.setenv("TRADEBOT_RISK__MAX_DAILY_LOSS_PERCENT", "4.5")
    settings = load_settings(path)
    assert settings.risk.max_daily_loss_percent == 4.5
    assert settings.risk.max_drawdown_percent == 7.0


def test_tradebot_config_env_selects_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, "[backtest]\ninitial_capital = 500.0\n")
    monkeypatch.setenv("TRADEBOT_CONFIG", str(path))
    assert load_settings().backtest.initial_capital == 500.0


def test_explicit_path_beats_tradebot_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_CONFIG", str(write_config(tmp_path, "[backtest]\ninitial_capital = 500.0\n")))
    other = tmp_path / "other.toml"
    other.write_text("[backtest]\ninitial_capital = 700.0\n")
    assert load_settings(other).backtest.initial_capital == 700.0


def test_dotenv_file_is_read_below_real_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TRADEBOT_RISK__MAX_DRAWDOWN_PERCENT=8\nTRADEBOT_RISK__ATR_LOOKBACK=30\n")
    monkeypatch.setenv("TRADEBOT_RISK__ATR_LOOKBACK", "14")
    settings = load_settings()
    assert settings.risk.max_drawdown_percent == 8.0
    assert settings.risk.atr_lookback == 14


def test_missing_default_file_gives_defaults_but_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    assert load_settings().exchange.mode == "paper"
    problems = problems_of(load_settings, tmp_path / "nope.toml")
    assert problems == [f"{tmp_path / 'nope.toml'}: config file not found"]


def test_unparsable_toml_names_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[risk\nmax = 1\n")
    (line,) = problems_of(load_settings, path)
    assert line.startswith(f"{path}: not valid TOML")


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a-directory.toml"
    path.mkdir()
    (line,) = problems_of(load_settings, path)
    assert line.startswith(f"{path}: cannot read config file")


def test_wrong_type_names_the_key_path(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[risk]\natr_lookback = "twenty"\n')
    (line,) = problems_of(load_settings, path)
    assert line.startswith(f"{path}: risk.atr_lookback: ")
    assert "integer" in line and "'twenty'" in line


def test_negative_percentage_is_rejected_with_its_bound(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[risk]\nmax_daily_loss_percent = -1\n")
    (line,) = problems_of(load_settings, path)
    assert line == f"{path}: risk.max_daily_loss_percent: Input should be greater than 0 (got -1)"


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[risk]\nmax_daily_los_percent = 3\n")
    (line,) = problems_of(load_settings, path)
    assert line == f"{path}: risk.max_daily_los_percent: unknown setting"


def test_unknown_section_is_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[riks]\nx = 1\n")
    (line,) = problems_of(load_settings, path)
    assert line == f"{path}: riks: unknown setting"


def test_unknown_nested_env_key_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_RISK__NOT_A_SETTING", "1")
    (line,) = problems_of(load_settings)
    assert line.endswith("risk.not_a_setting: unknown setting")


def test_every_problem_gets_its_own_line(tmp_path: Path) -> None:
    path = write_config(
        tmp_path, '[risk]\nmax_drawdown_percent = 0\natr_lookback = "x"\n[exchange]\nbase_timeframe = "7q"\n'
    )
    problems = problems_of(load_settings, path)
    assert len(problems) == 3
    assert {p.split(": ")[1] for p in problems} == {
        "risk.max_drawdown_percent",
        "risk.atr_lookback",
        "exchange.base_timeframe",
    }


def test_malformed_symbol_is_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[exchange]\nsymbols = ["btcusdt"]\n')
    (line,) = problems_of(load_settings, path)
    assert "exchange.symbols: symbol 'btcusdt' must look like BASE/QUOTE" in line


def test_daily_times_parse_from_strings(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[telegram]\ndaily_report_utc = "07:30"\n[risk]\ndaily_reset_utc = "02:00"\n')
    settings = load_settings(path)
    assert settings.telegram.daily_report_utc == time(7, 30)
    assert settings.risk.daily_reset_utc == time(2, 0)


def test_live_mode_without_keys_is_rejected(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[exchange]\nmode = "live"\n')
    (line,) = problems_of(load_settings, path)
    assert "exchange: " in line and "api_key and api_secret" in line


def test_secrets_come_from_env_and_never_show_in_repr_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_KEY", DUMMY_KEY)
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_SECRET", DUMMY_SECRET)
    monkeypatch.setenv("TRADEBOT_TELEGRAM__TOKEN", "123:dummy-telegram-token")
    settings = load_settings()
    assert settings.exchange.api_key is not None
    assert settings.exchange.api_key.get_secret_value() == DUMMY_KEY
    assert settings.telegram.enabled
    for text in (repr(settings), str(settings), str(settings.redacted_dump()), settings.model_dump_json()):
        assert DUMMY_KEY not in text and DUMMY_SECRET not in text and "dummy-telegram-token" not in text


def test_secret_never_appears_in_error_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_KEY", DUMMY_KEY)
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_SECRET", DUMMY_SECRET)
    monkeypatch.setenv("TRADEBOT_EXCHANGE__STARTING_BALANCE", "-5")
    problems = problems_of(load_settings)
    assert problems and all(DUMMY_KEY not in p and DUMMY_SECRET not in p for p in problems)


def test_secret_never_appears_in_logs(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("TRADEBOT_EXCHANGE__API_SECRET", DUMMY_SECRET)
    settings = load_settings()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("tradebot.test").info("loaded settings %s", settings)
        logging.getLogger("tradebot.test").info("exchange %r", settings.exchange)
    assert DUMMY_SECRET not in caplog.text


def test_cli_exits_2_with_one_line_per_problem_and_no_traceback(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[risk]\nmax_drawdown_percent = -3\nbogus = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "tradebot_tui.cli", "--config", str(path), "status", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"config error: {path}: risk.") for line in lines)
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
