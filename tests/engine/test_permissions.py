"""Specification of the file-permission checks and private atomic writes."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from engine.domain.errors import SecurityException
from engine.security.permissions import check_file_permissions, permission_problem, write_private_file


def make_file(path: Path, mode: int) -> Path:
    path.write_text("x = 1\n")
    os.chmod(path, mode)
    return path


def test_private_file_has_no_problem(tmp_path: Path) -> None:
    assert permission_problem(make_file(tmp_path / "config.toml", 0o600)) is None


def test_absent_file_has_no_problem(tmp_path: Path) -> None:
    assert permission_problem(tmp_path / "missing.toml") is None


@pytest.mark.parametrize(("mode", "who"), [(0o640, "group"), (0o604, "other users"), (0o644, "group and other")])
def test_readable_by_others_is_a_problem_naming_who_and_the_fix(tmp_path: Path, mode: int, who: str) -> None:
    path = make_file(tmp_path / "config.toml", mode)
    problem = permission_problem(path)
    assert problem is not None
    assert who in problem
    assert f"chmod 600 {path}" in problem


def test_writable_by_group_is_a_problem(tmp_path: Path) -> None:
    assert permission_problem(make_file(tmp_path / "config.toml", 0o620)) is not None


def test_paper_mode_warns_and_continues(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = make_file(tmp_path / "config.toml", 0o644)
    with caplog.at_level(logging.WARNING):
        problems = check_file_permissions([path], live=False)
    assert len(problems) == 1
    assert "insecure file permissions" in caplog.text
    assert str(path) in caplog.text


def test_live_mode_refuses_a_readable_secrets_file(tmp_path: Path) -> None:
    path = make_file(tmp_path / "secrets.enc", 0o644)
    with pytest.raises(SecurityException, match="refusing to trade live"):
        check_file_permissions([tmp_path / "config.toml", path], live=True)


def test_live_mode_accepts_private_files(tmp_path: Path) -> None:
    paths = [make_file(tmp_path / "config.toml", 0o600), make_file(tmp_path / "secrets.enc", 0o600)]
    assert check_file_permissions(paths, live=True) == []


def test_private_write_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0)
    try:
        write_private_file(tmp_path / "out.bin", b"data")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o600


def test_private_write_replaces_an_open_file_and_tightens_its_mode(tmp_path: Path) -> None:
    target = make_file(tmp_path / "out.bin", 0o644)
    write_private_file(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
