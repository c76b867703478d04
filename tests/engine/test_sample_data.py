"""Bundled sample candles: listed, loadable, valid, and exactly the files PROVENANCE.md records."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from engine.data.csv_import import read_candle_file
from engine.data.sample import SampleFile, load_sample, sample_directory, sample_files
from engine.domain.errors import DataException
from engine.domain.timeframes import parse_timeframe
from tests.shared_data import shared_data_path

_PROVENANCE_ROW = re.compile(r"^\| `(?P<file>[^`]+\.csv\.gz)` \|.*\| `(?P<sha256>[0-9a-f]{64})` \|$", re.M)


def provenance_hashes() -> dict[str, str]:
    text = (sample_directory() / "PROVENANCE.md").read_text(encoding="utf-8")
    return {match["file"]: match["sha256"] for match in _PROVENANCE_ROW.finditer(text)}


def test_console_symbols_have_hourly_samples() -> None:
    hourly = {sample.symbol for sample in sample_files() if sample.timeframe == "1h"}
    assert hourly >= {"BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT"}


def test_every_bundled_file_has_the_sha256_recorded_in_provenance() -> None:
    recorded = provenance_hashes()
    bundled = {sample.path.name: sample.path for sample in sample_files()}
    assert set(recorded) == set(bundled)
    for name, path in bundled.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded[name], name


def test_bundled_data_stays_small() -> None:
    total = sum(len(sample.path.read_bytes()) for sample in sample_files())
    assert total < 3_000_000


@pytest.mark.parametrize("sample", sample_files(), ids=lambda sample: f"{sample.symbol}-{sample.timeframe}")
def test_every_sample_loads_valid_and_gap_free(sample: SampleFile) -> None:
    candles = load_sample(sample.symbol, sample.timeframe)
    assert (candles.symbol, candles.timeframe) == (sample.symbol, sample.timeframe)
    assert len(candles) > 1000
    assert np.all(np.diff(candles.open_time_ms) == parse_timeframe(sample.timeframe))


def test_hourly_sample_is_the_shared_file_unchanged() -> None:
    shared = shared_data_path("BTC_USDT-1h.csv.gz")
    bundled = next(s.path for s in sample_files() if (s.symbol, s.timeframe) == ("BTC/USDT", "1h"))
    assert bundled.read_bytes() == shared.read_bytes()


def test_five_minute_slice_is_bit_exact_with_the_shared_file() -> None:
    full = read_candle_file(shared_data_path("BTC_USDT-5m.csv.gz"), "BTC/USDT", "5m")
    cut = load_sample("BTC/USDT", "5m")
    window = full.between(int(cut.open_time_ms[0]), int(cut.open_time_ms[-1]) + 1)
    assert len(window) == len(cut) == 31 * 288
    for name in ("open_time_ms", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(window, name).view(np.int64), getattr(cut, name).view(np.int64)), name


def test_unknown_sample_names_what_is_available() -> None:
    with pytest.raises(DataException, match="BTC/USDT 1h"):
        load_sample("DOGE/USDT", "1d")
