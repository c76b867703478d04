"""Specification of deploy/tradebot.service, the systemd unit for an unattended engine (issue 13)."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "tradebot.service"


def load_unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"), source=str(UNIT))
    return parser


def test_the_unit_runs_the_headless_engine_and_restarts_it_only_on_failure() -> None:
    unit = load_unit()
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert Path(command[0]).name == "tradebot" and command[1:] == ["run", "--headless"]
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert int(service["RestartSec"]) == 10
    assert int(unit["Unit"]["StartLimitBurst"]) >= 1 and int(unit["Unit"]["StartLimitIntervalSec"]) > 0


def test_the_unit_stops_cleanly_and_runs_confined() -> None:
    service = load_unit()["Service"]
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 30, "longer than the store's 30 s shutdown flush"
    assert service["User"] == "tradebot" and service["WorkingDirectory"]
    assert service["UMask"] == "0077"
    assert service["NoNewPrivileges"] == "true" and service["PrivateTmp"] == "true"
    assert service["ProtectSystem"] == "strict"
    writable = service["ReadWritePaths"].split()
    assert any(path.endswith("/data") for path in writable), "the database directory stays writable"
