"""Candle file import: formats, one named rule per rejection with the file row, gap report, atomic import."""

from __future__ import annotations

import gzip
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.data.csv_import import detect_format, import_candle_file, read_candle_file
from engine.data.validate import GapReport, Rule, find_gaps, validate_symbol
from engine.domain.errors import DataValidationError
from engine.store import Store
from tests.shared_data import shared_data_path

HEADER = "timestamp_ms,open,high,low,close,volume"
HOUR_MS = 3_600_000
# The first five 1h candles of the bundled BTC_USDT-1h (Binance, 2024-09-14 00:00 UTC onwards).
GOOD_ROWS: list[tuple[int, str, str, str, str, str]] = [
    (1726272000000, "60497.99", "60610.45", "60372.77", "60414.39", "753.37252"),
    (1726275600000, "60414.39", "60595.7", "60406.06", "60406.06", "590.92967"),
    (1726279200000, "60406.06", "60496.0", "60285.55", "60287.99", "465.87729"),
    (1726282800000, "60288.0", "60431.98", "60287.99", "60329.37", "465.89329"),
    (1726286400000, "60329.38", "60348.24", "60184.86", "60213.05", "480.76008"),
]
COLUMN = {"timestamp": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}


def ohlcv_text(rows: list[tuple[object, ...]], header: str = HEADER) -> str:
    return "".join(f"{line}\n" for line in [header, *(",".join(str(v) for v in row) for row in rows)])


def binance_text(rows: list[tuple[object, ...]], time_scale: int = 1) -> str:
    """Rows in Binance's 12-column headerless kline layout; times multiplied by ``time_scale`` (1000 = µs)."""
    lines = []
    for t, o, h, lo, c, v in rows:
        open_time = int(t) * time_scale  # type: ignore[call-overload]
        close_time = open_time + (HOUR_MS - 1) * time_scale
        lines.append(f"{open_time},{o},{h},{lo},{c},{v},{close_time},1234.5,42,1.5,2.5,0\n")
    return "".join(lines)


def with_value(row_index: int, column: str, value: object) -> list[tuple[object, ...]]:
    """GOOD_ROWS with one value replaced."""
    rows: list[tuple[object, ...]] = [tuple(row) for row in GOOD_ROWS]
    changed = list(rows[row_index])
    changed[COLUMN[column]] = value
    rows[row_index] = tuple(changed)
    return rows


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    def write_file(text: str, name: str = "candles.csv") -> Path:
        path = tmp_path / name
        data = text.encode()
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    return write_file


def rejection(path: Path, timeframe: str = "1h") -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        read_candle_file(path, "BTC/USDT", timeframe)
    assert caught.value.file == str(path)
    return caught.value


# --- formats ---------------------------------------------------------------------------------------------


def test_header_csv_reads_every_value_exactly(write: Callable[..., Path]) -> None:
    candles = read_candle_file(write(ohlcv_text(GOOD_ROWS)), "BTC/USDT", "1h")
    assert candles.symbol == "BTC/USDT" and candles.timeframe == "1h"
    assert candles.open_time_ms.tolist() == [row[0] for row in GOOD_ROWS]
    assert candles.high.tolist() == [float(row[2]) for row in GOOD_ROWS]
    assert candles.volume.tolist() == [float(row[5]) for row in GOOD_ROWS]


def test_gzip_csv_reads_like_plain_csv(write: Callable[..., Path]) -> None:
    plain = read_candle_file(write(ohlcv_text(GOOD_ROWS)), "BTC/USDT", "1h")
    zipped = read_candle_file(write(ohlcv_text(GOOD_ROWS), "candles.csv.gz"), "BTC/USDT", "1h")
    assert detect_format(write(ohlcv_text(GOOD_ROWS), "x.csv.gz")).compressed
    for name in ("open_time_ms", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(plain, name), getattr(zipped, name))


def test_gzip_is_detected_by_content_not_name(write: Callable[..., Path], tmp_path: Path) -> None:
    path = tmp_path / "candles.csv"
    path.write_bytes(gzip.compress(ohlcv_text(GOOD_ROWS).encode()))
    assert len(read_candle_file(path, "BTC/USDT", "1h")) == len(GOOD_ROWS)


def test_binance_kline_csv_uses_the_first_six_columns(write: Callable[..., Path]) -> None:
    path = write(binance_text(GOOD_ROWS))
    candles = read_candle_file(path, "BTC/USDT", "1h")
    assert detect_format(path).name == "binance_kline"
    assert candles.open_time_ms.tolist() == [row[0] for row in GOOD_ROWS]
    assert candles.close.tolist() == [float(row[4]) for row in GOOD_ROWS]


def test_binance_microsecond_timestamps_are_converted_to_ms(write: Callable[..., Path]) -> None:
    text = binance_text(GOOD_ROWS, time_scale=1000)
    assert len(text.split(",", 1)[0]) == 16
    candles = read_candle_file(write(text), "BTC/USDT", "1h")
    assert candles.open_time_ms.tolist() == [row[0] for row in GOOD_ROWS]


def test_binance_file_switching_from_ms_to_us_reads_consistently(write: Callable[..., Path]) -> None:
    text = binance_text(GOOD_ROWS[:2]) + binance_text(GOOD_ROWS[2:], time_scale=1000)
    candles = read_candle_file(write(text), "BTC/USDT", "1h")
    assert candles.open_time_ms.tolist() == [row[0] for row in GOOD_ROWS]


def test_binance_kline_header_is_accepted(write: Callable[..., Path]) -> None:
    header = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,"
    header += "taker_buy_quote_volume,ignore\n"
    path = write(header + binance_text(GOOD_ROWS))
    assert len(read_candle_file(path, "BTC/USDT", "1h")) == len(GOOD_ROWS)
    assert rejection(write(header + binance_text(with_value(2, "low", "x")))).row == 4


def test_shared_btc_5m_file_reads_completely() -> None:
    candles = read_candle_file(shared_data_path("BTC_USDT-5m.csv.gz"), "BTC/USDT", "5m")
    assert len(candles) == 207_624
    assert float(candles.high.max()) == 126199.63


# --- rejections: one per rule, each naming the first offending file row -----------------------------------


def test_unknown_header_is_rejected_at_row_1(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(GOOD_ROWS, header="time,open,high,low,close,volume")))
    assert (error.row, error.rule) == (1, Rule.UNKNOWN_HEADER)


def test_headerless_file_that_is_not_binance_is_a_column_count_error(write: Callable[..., Path]) -> None:
    text = ohlcv_text(GOOD_ROWS).split("\n", 1)[1]
    error = rejection(write(text))
    assert (error.row, error.rule) == (1, Rule.COLUMN_COUNT)


def test_row_with_an_extra_column_is_rejected(write: Callable[..., Path]) -> None:
    rows: list[tuple[object, ...]] = [tuple(row) for row in GOOD_ROWS]
    rows[3] = (*rows[3], "1.0")
    error = rejection(write(ohlcv_text(rows)))
    assert (error.row, error.rule) == (5, Rule.COLUMN_COUNT)


def test_row_with_a_missing_column_is_rejected(write: Callable[..., Path]) -> None:
    rows: list[tuple[object, ...]] = [tuple(row) for row in GOOD_ROWS]
    rows[2] = rows[2][:5]
    error = rejection(write(ohlcv_text(rows)))
    assert (error.row, error.rule) == (4, Rule.COLUMN_COUNT)


def test_binance_row_with_eleven_columns_is_rejected(write: Callable[..., Path]) -> None:
    lines = binance_text(GOOD_ROWS).splitlines(keepends=True)
    lines[3] = lines[3].rsplit(",", 1)[0] + "\n"
    error = rejection(write("".join(lines)))
    assert (error.row, error.rule) == (4, Rule.COLUMN_COUNT)


def test_blank_line_is_rejected_with_its_line_number(write: Callable[..., Path]) -> None:
    text = ohlcv_text(GOOD_ROWS).replace("\n", "\n\n", 3).replace("\n\n", "\n", 2)
    assert text.splitlines()[3] == ""
    error = rejection(write(text))
    assert (error.row, error.rule) == (4, Rule.COLUMN_COUNT)


def test_empty_value_is_rejected(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(with_value(1, "close", ""))))
    assert (error.row, error.rule) == (3, Rule.EMPTY_VALUE)
    assert "close" in error.detail


def test_empty_timestamp_is_rejected(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(with_value(4, "timestamp", ""))))
    assert (error.row, error.rule) == (6, Rule.EMPTY_VALUE)


def test_non_numeric_price_is_rejected(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(with_value(2, "high", "60k"))))
    assert (error.row, error.rule) == (4, Rule.NON_NUMERIC_VALUE)
    assert "60k" in error.detail


def test_fractional_timestamp_is_rejected(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(with_value(1, "timestamp", "1726275600000.5"))))
    assert (error.row, error.rule) == (3, Rule.NON_NUMERIC_VALUE)


@pytest.mark.parametrize("text", ["NaN", "nan", "inf", "-inf"])
def test_nan_or_infinite_value_is_rejected(write: Callable[..., Path], text: str) -> None:
    error = rejection(write(ohlcv_text(with_value(3, "volume", text))))
    assert (error.row, error.rule) == (5, Rule.NON_FINITE_VALUE)


@pytest.mark.parametrize("value", ["0", "-1.0"])
@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
def test_non_positive_price_is_rejected(write: Callable[..., Path], column: str, value: str) -> None:
    error = rejection(write(ohlcv_text(with_value(1, column, value))))
    assert (error.row, error.rule) == (3, Rule.NON_POSITIVE_PRICE)


def test_negative_volume_is_rejected_but_zero_volume_is_allowed(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(with_value(2, "volume", "-0.5"))))
    assert (error.row, error.rule) == (4, Rule.NEGATIVE_VOLUME)
    assert len(read_candle_file(write(ohlcv_text(with_value(2, "volume", "0.0"))), "BTC/USDT", "1h")) == 5


def test_high_below_open_or_close_is_rejected(write: Callable[..., Path]) -> None:
    # row 3 of the file: open 60414.39, close 60406.06, low 60406.06; high just under the open
    error = rejection(write(ohlcv_text(with_value(1, "high", "60410.0"))))
    assert (error.row, error.rule) == (3, Rule.HIGH_BELOW_OPEN_CLOSE)


def test_low_above_open_or_close_is_rejected(write: Callable[..., Path]) -> None:
    # row 2: open 60497.99, close 60414.39, high 60610.45; low above the close
    error = rejection(write(ohlcv_text(with_value(0, "low", "60450.0"))))
    assert (error.row, error.rule) == (2, Rule.LOW_ABOVE_OPEN_CLOSE)


def test_high_below_low_is_reported_as_such(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(with_value(4, "low", "60400.0"))))
    assert (error.row, error.rule) == (6, Rule.HIGH_BELOW_LOW)


def test_duplicate_timestamp_is_rejected_at_the_repeat(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(with_value(3, "timestamp", GOOD_ROWS[2][0]))))
    assert (error.row, error.rule) == (5, Rule.DUPLICATE_TIMESTAMP)


def test_decreasing_timestamp_is_rejected(write: Callable[..., Path]) -> None:
    rows: list[tuple[object, ...]] = [tuple(row) for row in GOOD_ROWS]
    rows[1], rows[2] = rows[2], rows[1]
    error = rejection(write(ohlcv_text(rows)))
    assert (error.row, error.rule) == (4, Rule.DECREASING_TIMESTAMP)


def test_timestamp_not_aligned_to_the_timeframe_is_rejected(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(with_value(2, "timestamp", GOOD_ROWS[2][0] + 60_000))))
    assert (error.row, error.rule) == (4, Rule.UNALIGNED_TIMESTAMP)


def test_hourly_file_declared_as_daily_is_unaligned(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(GOOD_ROWS)), timeframe="1d")
    assert (error.row, error.rule) == (3, Rule.UNALIGNED_TIMESTAMP)


def test_second_timestamps_are_rejected_as_wrong_unit(write: Callable[..., Path]) -> None:
    error = rejection(write(ohlcv_text(with_value(0, "timestamp", GOOD_ROWS[0][0] // 1000))))
    assert (error.row, error.rule) == (2, Rule.TIMESTAMP_UNIT)


def test_microsecond_timestamp_with_sub_ms_part_is_rejected(write: Callable[..., Path]) -> None:
    lines = binance_text(GOOD_ROWS, time_scale=1000).splitlines(keepends=True)
    lines[1] = lines[1].replace("000,", "001,", 1)
    error = rejection(write("".join(lines)))
    assert (error.row, error.rule) == (2, Rule.TIMESTAMP_UNIT)


def test_the_first_offending_row_wins_across_rules(write: Callable[..., Path]) -> None:
    rows = with_value(3, "volume", "-1")  # row 5
    rows[1] = (rows[1][0], "x", *rows[1][2:])  # row 3: non-numeric, found by the careful parser
    assert rejection(write(ohlcv_text(rows))).row == 3
    rows = with_value(1, "volume", "-1")  # row 3: a value rule before a parse problem at row 5
    rows[3] = (rows[3][0], "x", *rows[3][2:])
    error = rejection(write(ohlcv_text(rows)))
    assert (error.row, error.rule) == (3, Rule.NEGATIVE_VOLUME)


def test_empty_file_and_header_only_file_are_rejected(write: Callable[..., Path]) -> None:
    assert rejection(write("")).rule == Rule.EMPTY_FILE
    assert rejection(write(HEADER + "\n")).rule == Rule.EMPTY_FILE


def test_corrupt_gzip_is_rejected_as_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv.gz"
    path.write_bytes(gzip.compress(ohlcv_text(GOOD_ROWS).encode())[:40])
    assert rejection(path).rule == Rule.UNREADABLE_FILE


def test_error_message_names_file_row_and_rule(write: Callable[..., Path]) -> None:
    path = write(ohlcv_text(with_value(2, "volume", "-3")))
    message = str(rejection(path))
    assert str(path) in message and "row 4" in message and "negative_volume" in message


@pytest.mark.parametrize("symbol", ["btc/usdt", "BTCUSDT", "BTC-USDT", "BTC/", "/USDT", "BTC/USDT/X", ""])
def test_symbol_must_be_upper_case_base_slash_quote(symbol: str) -> None:
    with pytest.raises(DataValidationError) as caught:
        validate_symbol(symbol)
    assert caught.value.rule == Rule.INVALID_SYMBOL


def test_read_rejects_a_bad_symbol_or_timeframe_before_reading(write: Callable[..., Path]) -> None:
    path = write(ohlcv_text(GOOD_ROWS))
    with pytest.raises(DataValidationError, match="invalid_symbol"):
        read_candle_file(path, "BTCUSDT", "1h")
    with pytest.raises(DataValidationError, match="invalid_timeframe"):
        read_candle_file(path, "BTC/USDT", "1 hour")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad_row=st.integers(0, 4), rule=st.sampled_from(["volume", "high_low", "duplicate", "text"]))
def test_reported_row_is_the_line_number_of_the_bad_candle(write: Callable[..., Path], bad_row: int, rule: str) -> None:
    if rule == "volume":
        rows = with_value(bad_row, "volume", "-1")
    elif rule == "high_low":
        rows = with_value(bad_row, "high", "1.0")
    elif rule == "duplicate":
        rows = with_value(bad_row, "timestamp", GOOD_ROWS[bad_row - 1][0] if bad_row else GOOD_ROWS[0][0] - 1)
    else:
        rows = with_value(bad_row, "close", "abc")
    path = write(ohlcv_text(rows))
    line = path.read_text().splitlines()[rejection(path).row - 1]  # type: ignore[operator]
    assert line == ",".join(str(value) for value in rows[bad_row])


# --- gap report ------------------------------------------------------------------------------------------


def test_gap_report_counts_runs_of_missing_bars() -> None:
    hour = HOUR_MS
    times = np.array([0, 1, 2, 5, 6, 8, 20, 21], dtype=np.int64) * hour  # gaps: 3-4, 7, 9-19
    assert find_gaps(times, hour) == GapReport(
        count=3, missing_bars=2 + 1 + 11, largest_gap_bars=11, largest_gap_start_ms=9 * hour
    )


def test_gap_report_is_empty_for_contiguous_or_tiny_series() -> None:
    assert find_gaps(np.arange(10, dtype=np.int64) * 60_000, 60_000) == GapReport(0, 0, 0, None)
    assert find_gaps(np.array([0], dtype=np.int64), 60_000) == GapReport(0, 0, 0, None)


def test_gap_report_picks_the_earliest_of_equal_largest_gaps() -> None:
    times = np.array([0, 3, 4, 7], dtype=np.int64) * 300_000
    assert find_gaps(times, 300_000) == GapReport(2, 4, 2, 300_000)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 500), min_size=1, max_size=60, unique=True))
def test_gap_report_missing_bars_is_span_minus_rows(bar_indices: list[int]) -> None:
    times = np.array(sorted(bar_indices), dtype=np.int64) * 60_000
    report = find_gaps(times, 60_000)
    span = int(times[-1] - times[0]) // 60_000 + 1
    assert report.missing_bars == span - len(times)
    assert (report.count == 0) == (report.missing_bars == 0)
    assert report.largest_gap_bars <= report.missing_bars


def test_shared_ada_btc_file_has_five_gaps_of_forty_bars() -> None:
    candles = read_candle_file(shared_data_path("ADA_BTC-5m.csv.gz"), "ADA/BTC", "5m")
    report = find_gaps(candles.open_time_ms, 300_000)
    assert report == GapReport(5, 40, 33, 1516017600000)  # largest: 2018-01-15 12:00 UTC, 33 bars


# --- import into the store -------------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "store.sqlite") as opened:
        yield opened


def table_dump(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT * FROM candles ORDER BY symbol, timeframe, open_time_ms").fetchall()


async def test_import_stores_every_candle_and_reports_range_and_gaps(store: Store, write: Callable[..., Path]) -> None:
    rows = GOOD_ROWS[:2] + GOOD_ROWS[4:]  # two hours missing
    result = await import_candle_file(store, write(ohlcv_text(rows)), "BTC/USDT", "1h")
    assert (result.rows, result.inserted, result.updated, result.unchanged) == (3, 3, 0, 0)
    assert (result.first_ms, result.last_ms) == (GOOD_ROWS[0][0], GOOD_ROWS[4][0])
    assert result.gaps == GapReport(1, 2, 2, GOOD_ROWS[2][0])
    stored = await store.read_candles("BTC/USDT", "1h")
    assert stored.open_time_ms.tolist() == [row[0] for row in rows]
    assert stored.close.tolist() == [float(row[4]) for row in rows]


async def test_reimporting_the_same_file_changes_nothing(
    store: Store, write: Callable[..., Path], tmp_path: Path
) -> None:
    path = write(ohlcv_text(GOOD_ROWS))
    await import_candle_file(store, path, "BTC/USDT", "1h")
    before = table_dump(tmp_path / "store.sqlite")
    again = await import_candle_file(store, path, "BTC/USDT", "1h")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 5)
    assert table_dump(tmp_path / "store.sqlite") == before


async def test_import_of_corrected_values_counts_updates(store: Store, write: Callable[..., Path]) -> None:
    await import_candle_file(store, write(ohlcv_text(GOOD_ROWS[:3])), "BTC/USDT", "1h")
    corrected = write(ohlcv_text(with_value(1, "volume", "600.0")), "corrected.csv")
    result = await import_candle_file(store, corrected, "BTC/USDT", "1h")
    assert (result.inserted, result.updated, result.unchanged) == (2, 1, 2)
    assert (await store.read_candles("BTC/USDT", "1h")).volume[1] == 600.0


async def test_rejected_file_leaves_the_store_unchanged(
    store: Store, write: Callable[..., Path], tmp_path: Path
) -> None:
    await import_candle_file(store, write(ohlcv_text(GOOD_ROWS[:3])), "BTC/USDT", "1h")
    before = table_dump(tmp_path / "store.sqlite")
    # New candles in rows 2-5 and a changed one in row 3, but row 6 is bad: none of it may be stored.
    rows = with_value(1, "close", "60410.0")
    rows[4] = (rows[4][0], "60329.38", "60348.24", "60184.86", "60213.05", "-1")
    with pytest.raises(DataValidationError) as caught:
        await import_candle_file(store, write(ohlcv_text(rows), "bad.csv"), "BTC/USDT", "1h")
    assert (caught.value.row, caught.value.rule) == (6, Rule.NEGATIVE_VOLUME)
    assert table_dump(tmp_path / "store.sqlite") == before


async def test_import_of_binance_microsecond_dump_matches_the_csv_import(
    store: Store, write: Callable[..., Path]
) -> None:
    await import_candle_file(store, write(binance_text(GOOD_ROWS, 1000), "k.csv.gz"), "BTC/USDT", "1h")
    result = await import_candle_file(store, write(ohlcv_text(GOOD_ROWS)), "BTC/USDT", "1h")
    assert (result.inserted, result.updated, result.unchanged) == (0, 0, 5)
