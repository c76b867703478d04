"""Specification of the [drift] settings: defaults, file and environment overrides, bounds."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from engine.config import load_settings
from engine.domain.errors import ConfigException

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigException) as info:
        load_settings(path)
    return info.value.problems


def test_drift_alert_is_on_by_default_with_a_daily_check_two_standard_errors_and_ten_trades() -> None:
    drift = load_settings().drift
    assert drift.enabled is True
    assert drift.check_every_bars == 24
    assert drift.expectancy_std_errors == 2.0
    assert drift.min_trades == 10


def test_config_toml_lists_every_drift_setting_with_its_default() -> None:
    with (REPO_ROOT / "config.toml").open("rb") as handle:
        listed = tomllib.load(handle)["drift"]
    assert listed == load_settings().drift.model_dump()


def test_drift_settings_are_read_from_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[drift]\nenabled = false\ncheck_every_bars = 6\nexpectancy_std_errors = 3.5\n"
                                  "min_trades = 30\n")
    drift = load_settings(path).drift
    assert (drift.enabled, drift.check_every_bars, drift.expectancy_std_errors, drift.min_trades) == (False, 6, 3.5, 30)


def test_an_environment_variable_overrides_one_drift_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, "[drift]\nmin_trades = 30\ncheck_every_bars = 6\n")
    monkeypatch.setenv("TRADEBOT_DRIFT__MIN_TRADES", "12")
    drift = load_settings(path).drift
    assert drift.min_trades == 12
    assert drift.check_every_bars == 6


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("check_every_bars = 0", "drift.check_every_bars"),
        ("min_trades = 1", "drift.min_trades"),  # a standard error needs two trades
        ("expectancy_std_errors = -1", "drift.expectancy_std_errors"),
    ],
)
def test_an_out_of_range_drift_setting_is_refused_naming_its_key(tmp_path: Path, line: str, key: str) -> None:
    path = write_config(tmp_path, f"[drift]\n{line}\n")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: {key}: Input should be greater than")
