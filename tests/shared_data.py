"""Provides access to ../shared/data for tests, skipping cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    override = os.environ.get("TRADEBOT_SHARED_DATA")
    return Path(override) if override else _REPO_ROOT.parent / "shared" / "data"


def shared_data_path(name: str) -> Path:
    """Path of one file in ../shared/data; skips the calling test when the file is missing."""
    path = shared_data_dir() / name
    if not path.is_file():
        pytest.skip(f"shared data file {path} is not available")
    return path
