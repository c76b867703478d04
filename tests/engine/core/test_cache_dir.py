"""Specification of where the compiled core caches its kernels (``engine.core._choose_cache_dir``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numba
import pytest

import engine.core


@pytest.fixture
def restored_numba_config() -> Iterator[None]:
    yield
    numba.core.config.reload_config()  # after monkeypatch restored the environment


def test_an_unwritable_package_caches_under_the_data_directory_in_a_directory_per_core_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_numba_config: None
) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("TRADEBOT_STORAGE__DATABASE_PATH", str(tmp_path / "data" / "tradebot.sqlite3"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    engine.core._choose_cache_dir()
    chosen = Path(os.environ["NUMBA_CACHE_DIR"])
    assert chosen.parent == tmp_path / "data" / "numba_cache" and chosen.is_dir()
    assert len(chosen.name) == 16  # the hash of the core's modules: a changed kernel never loads stale code


def test_an_explicit_numba_cache_dir_is_respected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_numba_config: None
) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    engine.core._choose_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path)
