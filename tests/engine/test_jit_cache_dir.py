"""Specification of where numba caches the engine's kernels (``engine.jit._choose_cache_dir``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numba
import pytest

import engine.jit


@pytest.fixture
def restored_numba_config() -> Iterator[None]:
    # Restores the variable itself: monkeypatch's own restore runs after this fixture's teardown.
    chosen = os.environ["NUMBA_CACHE_DIR"]
    yield
    os.environ["NUMBA_CACHE_DIR"] = chosen
    numba.core.config.reload_config()


def test_an_unwritable_package_caches_under_the_data_directory_in_a_directory_per_kernel_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_numba_config: None
) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    monkeypatch.setenv("TRADEBOT_STORAGE__DATABASE_PATH", str(tmp_path / "data" / "tradebot.sqlite3"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    engine.jit._choose_cache_dir()
    chosen = Path(os.environ["NUMBA_CACHE_DIR"])
    assert chosen.parent == tmp_path / "data" / "numba_cache" and chosen.is_dir()
    assert chosen.name == engine.jit.kernel_code_hash()


def test_an_explicit_numba_cache_dir_is_respected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restored_numba_config: None
) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    engine.jit._choose_cache_dir()
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path)


@pytest.mark.parametrize("package", engine.jit.KERNEL_PACKAGES)
def test_the_hash_changes_when_any_kernel_module_changes(
    package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy of the kernel packages, one module of one package edited: numba keys a cache on one file only,
    # so a kernel whose callee changed elsewhere must land in another directory.
    for name in engine.jit.KERNEL_PACKAGES:
        target = tmp_path / name
        target.mkdir()
        for module in (engine.jit.ENGINE_DIRECTORY / name).glob("*.py"):
            (target / module.name).write_bytes(module.read_bytes())
    monkeypatch.setattr(engine.jit, "ENGINE_DIRECTORY", tmp_path)
    before = engine.jit.kernel_code_hash()
    edited = sorted((tmp_path / package).glob("*.py"))[-1]
    edited.write_text(edited.read_text() + "\n# edited\n")
    assert engine.jit.kernel_code_hash() != before


def test_the_engine_s_numba_cache_is_the_chosen_directory() -> None:
    assert numba.core.config.CACHE_DIR == os.environ["NUMBA_CACHE_DIR"]
