"""Specification of the security subcommands: secrets, audit, backup and restore, with their exit codes."""

from __future__ import annotations

import io
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from engine.security.secrets_file import RISK_PASSPHRASE_HASH_NAME, SecretsFile
from tradebot_tui.cli import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, main

PASSPHRASE = "cli-secrets-passphrase-1"
DUMMY_KEY = "cli-dummy-api-key-0d6e21"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TRADEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADEBOT_SECRETS_PASSPHRASE", PASSPHRASE)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


def feed_stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_secrets_set_reads_the_value_from_stdin_and_never_prints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, DUMMY_KEY + "\n")
    assert main(["secrets", "set", "exchange.api_key"]) == EXIT_OK
    out = capsys.readouterr()
    assert "stored exchange.api_key" in out.out
    assert DUMMY_KEY not in out.out + out.err
    stored = SecretsFile(tmp_path / "secrets.enc").read(PASSPHRASE)
    assert stored["exchange.api_key"].get_secret_value() == DUMMY_KEY


def test_secrets_file_from_the_cli_is_mode_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed_stdin(monkeypatch, DUMMY_KEY)
    assert main(["secrets", "set", "exchange.api_key"]) == EXIT_OK
    assert stat.S_IMODE((tmp_path / "secrets.enc").stat().st_mode) == 0o600


def test_secrets_list_shows_names_only(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    feed_stdin(monkeypatch, DUMMY_KEY)
    main(["secrets", "set", "exchange.api_key"])
    capsys.readouterr()
    assert main(["secrets", "list"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.splitlines() == ["exchange.api_key"]
    assert DUMMY_KEY not in out


def test_secrets_list_with_wrong_passphrase_fails_cleanly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, DUMMY_KEY)
    main(["secrets", "set", "exchange.api_key"])
    capsys.readouterr()
    monkeypatch.setenv("TRADEBOT_SECRETS_PASSPHRASE", "wrong-passphrase")
    assert main(["secrets", "list"]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "wrong passphrase" in err
    assert "Traceback" not in err


def test_secrets_without_a_passphrase_and_no_terminal_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TRADEBOT_SECRETS_PASSPHRASE")
    feed_stdin(monkeypatch, DUMMY_KEY)
    assert main(["secrets", "set", "exchange.api_key"]) == EXIT_FAILURE
    assert "TRADEBOT_SECRETS_PASSPHRASE" in capsys.readouterr().err


def test_secrets_set_refuses_an_unknown_name_as_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["secrets", "set", "exchange.apikey"])
    assert info.value.code == EXIT_USAGE


def test_secrets_set_refuses_an_empty_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    feed_stdin(monkeypatch, "\n")
    assert main(["secrets", "set", "exchange.api_key"]) == EXIT_FAILURE
    assert "no value given" in capsys.readouterr().err


def test_secrets_file_option_chooses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed_stdin(monkeypatch, DUMMY_KEY)
    assert main(["secrets", "set", "exchange.api_key", "--file", str(tmp_path / "k" / "s.enc")]) == EXIT_OK
    assert (tmp_path / "k" / "s.enc").is_file()


def test_set_risk_passphrase_stores_only_a_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADEBOT_RISK_PASSPHRASE", "risk-pass-77")
    assert main(["secrets", "set-risk-passphrase"]) == EXIT_OK
    stored = SecretsFile(tmp_path / "secrets.enc").read(PASSPHRASE)
    assert stored[RISK_PASSPHRASE_HASH_NAME].get_secret_value().startswith("scrypt$32768$8$1$")
    assert "risk-pass-77" not in stored[RISK_PASSPHRASE_HASH_NAME].get_secret_value()


def test_audit_verify_without_a_database_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify"]) == EXIT_FAILURE
    assert "no database" in capsys.readouterr().err


def test_audit_verify_passes_on_an_intact_log_and_fails_after_an_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["status"])  # creates the store
    database = tmp_path / "data" / "tradebot.sqlite3"
    monkeypatch.setenv("TRADEBOT_BACKUP_PASSPHRASE", "backup-pass-1")
    assert main(["backup", str(tmp_path / "b1.enc")]) == EXIT_OK  # each backup writes an audit row
    assert main(["backup", str(tmp_path / "b2.enc")]) == EXIT_OK
    capsys.readouterr()
    assert main(["audit", "verify"]) == EXIT_OK
    assert "audit log intact: 2 rows" in capsys.readouterr().out
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    connection.close()
    assert main(["audit", "verify"]) == EXIT_FAILURE
    out = capsys.readouterr().out
    assert "BROKEN at seq 1" in out
    assert "actor=mallory" in out


def test_audit_show_lists_entries_with_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["status"])
    monkeypatch.setenv("TRADEBOT_BACKUP_PASSPHRASE", "backup-pass-1")
    for name in ("a", "b", "c"):
        main(["backup", str(tmp_path / f"{name}.enc")])
    capsys.readouterr()
    assert main(["audit", "show", "--limit", "2"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].split()[0] == "2"
    assert "backup_created" in lines[1] and "c.enc" in lines[1]


def test_backup_then_restore_round_trips_and_audits_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["status"])
    monkeypatch.setenv("TRADEBOT_BACKUP_PASSPHRASE", "backup-pass-1")
    assert main(["backup", str(tmp_path / "b.enc")]) == EXIT_OK
    assert stat.S_IMODE((tmp_path / "b.enc").stat().st_mode) == 0o600
    assert main(["restore", str(tmp_path / "b.enc")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "restored" in out and ".pre-restore" in out
    capsys.readouterr()
    main(["audit", "show", "--json"])
    lines = capsys.readouterr().out.splitlines()
    # The backup row is written after the snapshot, so the restored log holds only the restore row.
    assert len(lines) == 1
    assert '"database_restored"' in lines[0]
    assert main(["audit", "verify"]) == EXIT_OK


def test_backup_refuses_to_overwrite_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["status"])
    monkeypatch.setenv("TRADEBOT_BACKUP_PASSPHRASE", "backup-pass-1")
    (tmp_path / "b.enc").write_bytes(b"old")
    assert main(["backup", str(tmp_path / "b.enc")]) == EXIT_FAILURE
    assert "already exists" in capsys.readouterr().err
    assert main(["backup", str(tmp_path / "b.enc"), "--force"]) == EXIT_OK


def test_restore_with_wrong_passphrase_exits_1_and_keeps_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["status"])
    monkeypatch.setenv("TRADEBOT_BACKUP_PASSPHRASE", "backup-pass-1")
    main(["backup", str(tmp_path / "b.enc")])
    database = tmp_path / "data" / "tradebot.sqlite3"
    before = database.read_bytes()
    monkeypatch.setenv("TRADEBOT_BACKUP_PASSPHRASE", "not-it")
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "b.enc")]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "wrong passphrase" in err and "Traceback" not in err
    assert database.read_bytes() == before


def test_backup_without_a_database_fails(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TRADEBOT_BACKUP_PASSPHRASE", "backup-pass-1")
    assert main(["backup", "b.enc"]) == EXIT_FAILURE
    assert "no database to back up" in capsys.readouterr().err
