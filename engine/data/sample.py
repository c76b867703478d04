"""Provides the real Binance candles bundled in ``engine/sample_data`` (see its PROVENANCE.md).

Used by the default console (replay) and the examples, so that both run without any download.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from engine.data.csv_import import read_candle_file
from engine.domain.errors import DataException
from engine.domain.models import Candles

SAMPLE_PACKAGE = "engine"
SAMPLE_DIRECTORY = "sample_data"
_FILE_NAME = re.compile(r"(?P<base>[A-Z0-9]+)_(?P<quote>[A-Z0-9]+)-(?P<timeframe>[0-9]+[smhdw])\.csv\.gz")


@dataclass(frozen=True)
class SampleFile:
    """One bundled candle file.

    Attributes:
        symbol: ``BASE/QUOTE``, e.g. ``"BTC/USDT"``.
        timeframe: e.g. ``"1h"``.
        path: location of the file (a filesystem path when the package is installed as files).
    """

    symbol: str
    timeframe: str
    path: Traversable


def sample_directory() -> Traversable:
    """The ``engine/sample_data`` resource directory."""
    return resources.files(SAMPLE_PACKAGE) / SAMPLE_DIRECTORY


def sample_files() -> list[SampleFile]:
    """Every bundled candle file, sorted by symbol, then timeframe name."""
    found: list[SampleFile] = []
    for entry in sample_directory().iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is not None and entry.is_file():
            symbol = f"{match['base']}/{match['quote']}"
            found.append(SampleFile(symbol, match["timeframe"], entry))
    return sorted(found, key=lambda sample: (sample.symbol, sample.timeframe))


def load_sample(symbol: str, timeframe: str) -> Candles:
    """Candles of one bundled file, validated like any imported file (blocking; small files, ~10 ms each).

    Args:
        symbol: e.g. ``"BTC/USDT"``.
        timeframe: e.g. ``"1h"``.

    Raises:
        DataException: no sample file for that symbol and timeframe; the message lists what exists.
    """
    for sample in sample_files():
        if sample.symbol == symbol and sample.timeframe == timeframe:
            with resources.as_file(sample.path) as path:
                return read_candle_file(Path(path), symbol, timeframe)
    available = ", ".join(f"{sample.symbol} {sample.timeframe}" for sample in sample_files())
    raise DataException(f"no bundled sample candles for {symbol} {timeframe}; available: {available}")
