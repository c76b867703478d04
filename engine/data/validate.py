"""Provides the named validation rules for imported candles, symbol checks and the gap report.

Every rule is a vectorised check over whole columns; when several rows break rules, the error names the first
offending row in the file (if one row breaks several rules: the first of them in the order ``Rule`` lists them).
Row numbers are 1-based physical line numbers in the file, header line included: in a file with a header the
first candle is row 2, in a headerless Binance kline file it is row 1.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.domain.errors import DataValidationError
from engine.domain.models import FloatArray, IntArray
from engine.domain.timeframes import is_aligned

BoolArray = npt.NDArray[np.bool_]


class Rule(enum.StrEnum):
    """Names of the validation rules; the value is what ``DataValidationError.rule`` carries."""

    UNREADABLE_FILE = "unreadable_file"
    EMPTY_FILE = "empty_file"
    UNKNOWN_HEADER = "unknown_header"
    COLUMN_COUNT = "column_count"
    EMPTY_VALUE = "empty_value"
    NON_NUMERIC_VALUE = "non_numeric_value"
    NON_FINITE_VALUE = "non_finite_value"
    TIMESTAMP_UNIT = "timestamp_unit"
    NON_POSITIVE_PRICE = "non_positive_price"
    NEGATIVE_VOLUME = "negative_volume"
    HIGH_BELOW_LOW = "high_below_low"
    HIGH_BELOW_OPEN_CLOSE = "high_below_open_close"
    LOW_ABOVE_OPEN_CLOSE = "low_above_open_close"
    DUPLICATE_TIMESTAMP = "duplicate_timestamp"
    DECREASING_TIMESTAMP = "decreasing_timestamp"
    UNALIGNED_TIMESTAMP = "unaligned_timestamp"
    INVALID_SYMBOL = "invalid_symbol"
    INVALID_TIMEFRAME = "invalid_timeframe"


# Millisecond epoch timestamps have 13 digits from 2001-09-09 to 2286-11-20; microsecond ones have 16.
MS_TIMESTAMP_MIN = 10**12
MS_TIMESTAMP_MAX = 10**13 - 1
US_TIMESTAMP_MIN = 10**15
US_TIMESTAMP_MAX = 10**16 - 1
US_PER_MS = 1_000

_SYMBOL_PATTERN = re.compile(r"[A-Z0-9]{1,20}/[A-Z0-9]{1,20}")


def validate_symbol(symbol: str, file: str = "") -> str:
    """Return ``symbol`` if it has the ``BASE/QUOTE`` upper-case form, e.g. ``BTC/USDT``.

    Raises:
        DataValidationError: rule ``invalid_symbol``; the detail shows the expected form.
    """
    if not isinstance(symbol, str) or _SYMBOL_PATTERN.fullmatch(symbol) is None:
        raise DataValidationError(
            file,
            None,
            Rule.INVALID_SYMBOL,
            f"symbol {symbol!r} is not of the form BASE/QUOTE in upper case, e.g. 'BTC/USDT'",
        )
    return symbol


def timestamps_to_ms(raw_times: IntArray) -> tuple[IntArray, BoolArray]:
    """Convert open times given in ms (13 digits) or µs (16 digits, Binance dumps from 2025) to ms.

    Each value is judged on its own, so a file that switches unit part-way still imports.

    Returns:
        ``(times_ms, bad_unit)``: the converted times and a mask of values that are neither whole ms nor
        whole-ms µs timestamps (those keep their raw value and must be rejected by the caller).
    """
    is_ms = (raw_times >= MS_TIMESTAMP_MIN) & (raw_times <= MS_TIMESTAMP_MAX)
    is_us = (raw_times >= US_TIMESTAMP_MIN) & (raw_times <= US_TIMESTAMP_MAX) & (raw_times % US_PER_MS == 0)
    times_ms = np.where(is_us, raw_times // US_PER_MS, raw_times).astype(np.int64)
    return times_ms, ~(is_ms | is_us)


@dataclass(frozen=True)
class CandleColumns:
    """Parsed columns of a candle file before validation.

    Attributes:
        raw_open_time: open times as written in the file (ms or µs).
        open_time_ms: open times converted to UTC ms (see ``timestamps_to_ms``).
        open, high, low, close: prices in quote currency (NaN where a value could not be parsed).
        volume: volume in the base asset.
        first_row: file row number of the first candle (2 with a header line, 1 without).
        parse_problem_index: index of the first candle whose line could not be parsed, or -1.
        parse_problem: ``(rule, detail)`` of that line.
    """

    raw_open_time: IntArray
    open_time_ms: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    first_row: int
    parse_problem_index: int = -1
    parse_problem: tuple[str, str] = ("", "")


def _first(mask: BoolArray) -> int:
    """Index of the first True in ``mask``, or -1."""
    index = int(np.argmax(mask)) if len(mask) else 0
    return index if len(mask) and bool(mask[index]) else -1


def _shifted(mask_of_pairs: BoolArray) -> BoolArray:
    """Map a mask over ``diff`` pairs (i, i+1) to the later row of each pair."""
    return np.concatenate(([False], mask_of_pairs))


def _value_checks(columns: CandleColumns, timeframe_ms: int) -> list[tuple[Rule, BoolArray]]:
    """Masks of rows breaking each value rule, in reporting order for ties on one row."""
    prices = (columns.open, columns.high, columns.low, columns.close)
    with np.errstate(invalid="ignore"):
        non_finite = ~np.isfinite(columns.volume)
        for price in prices:
            non_finite |= ~np.isfinite(price)
        _, bad_unit = timestamps_to_ms(columns.raw_open_time)
        non_positive = np.zeros(len(columns.open), dtype=np.bool_)
        for price in prices:
            non_positive |= price <= 0.0
        top = np.maximum(columns.open, columns.close)
        bottom = np.minimum(columns.open, columns.close)
        steps = np.diff(columns.open_time_ms)
        return [
            (Rule.NON_FINITE_VALUE, non_finite),
            (Rule.TIMESTAMP_UNIT, bad_unit),
            (Rule.NON_POSITIVE_PRICE, non_positive),
            (Rule.NEGATIVE_VOLUME, columns.volume < 0.0),
            (Rule.HIGH_BELOW_LOW, columns.high < columns.low),
            (Rule.HIGH_BELOW_OPEN_CLOSE, columns.high < top),
            (Rule.LOW_ABOVE_OPEN_CLOSE, columns.low > bottom),
            (Rule.DUPLICATE_TIMESTAMP, _shifted(steps == 0)),
            (Rule.DECREASING_TIMESTAMP, _shifted(steps < 0)),
            (Rule.UNALIGNED_TIMESTAMP, ~np.asarray(is_aligned(columns.open_time_ms, timeframe_ms))),
        ]


def _detail(rule: Rule, columns: CandleColumns, index: int, timeframe_ms: int) -> str:
    """Human-readable values of the offending row for the error message."""
    t = int(columns.raw_open_time[index])
    o, h, lo, c, v = (
        float(columns.open[index]),
        float(columns.high[index]),
        float(columns.low[index]),
        float(columns.close[index]),
        float(columns.volume[index]),
    )
    previous = int(columns.open_time_ms[index - 1]) if index > 0 else None
    match rule:
        case Rule.TIMESTAMP_UNIT:
            return f"timestamp {t} is neither UTC ms (13 digits) nor whole-ms µs (16 digits)"
        case Rule.NON_FINITE_VALUE | Rule.NON_POSITIVE_PRICE | Rule.NEGATIVE_VOLUME:
            return f"open={o!r} high={h!r} low={lo!r} close={c!r} volume={v!r}"
        case Rule.HIGH_BELOW_LOW:
            return f"high {h!r} < low {lo!r}"
        case Rule.HIGH_BELOW_OPEN_CLOSE:
            return f"high {h!r} < max(open {o!r}, close {c!r})"
        case Rule.LOW_ABOVE_OPEN_CLOSE:
            return f"low {lo!r} > min(open {o!r}, close {c!r})"
        case Rule.DUPLICATE_TIMESTAMP:
            return f"timestamp {t} repeats the previous row"
        case Rule.DECREASING_TIMESTAMP:
            return f"timestamp {t} is before the previous row's {previous}"
        case Rule.UNALIGNED_TIMESTAMP:
            return f"timestamp {t} is not a multiple of the {timeframe_ms} ms timeframe"
        case _:
            return ""


def first_violation(columns: CandleColumns, timeframe_ms: int) -> tuple[int, str, str] | None:
    """The first offending row of ``columns``: ``(index, rule, detail)``, or None when every row passes.

    Ties on one row go to the parse problem, then to the earlier rule in :class:`Rule`'s order.
    """
    best_index = columns.parse_problem_index
    best_rule, best_detail = columns.parse_problem
    for rule, mask in _value_checks(columns, timeframe_ms):
        index = _first(mask)
        # Strictly earlier only: on a tie the parse problem, then the earlier rule in the list, wins.
        if index >= 0 and (best_index < 0 or index < best_index):
            best_index, best_rule, best_detail = index, rule, ""
    if best_index < 0:
        return None
    if not best_detail:
        best_detail = _detail(Rule(best_rule), columns, best_index, timeframe_ms)
    return best_index, best_rule, best_detail


def validate_columns(columns: CandleColumns, timeframe_ms: int, file: str) -> None:
    """Check every rule and raise for the first offending row of the file.

    Args:
        columns: parsed candle columns.
        timeframe_ms: bar length in ms, for the alignment rule.
        file: file name for the error message.

    Raises:
        DataValidationError: naming the file, the 1-based file row and the rule broken there.
    """
    found = first_violation(columns, timeframe_ms)
    if found is not None:
        index, rule, detail = found
        raise DataValidationError(file, columns.first_row + index, rule, detail)


def row_violations(columns: CandleColumns, timeframe_ms: int) -> dict[int, tuple[Rule, str]]:
    """Every offending row of ``columns`` (e.g. live candles): index -> ``(rule, detail)`` of the first rule it breaks.

    The same checks as :func:`validate_columns` (finite values, ms open times, positive prices, volume >= 0,
    high >= low, high >= max(open, close), low <= min(open, close), strictly increasing open times on the
    timeframe grid), reported per row instead of for the first row only; ``parse_problem`` is not looked at.
    A row breaking several rules reports the first in :class:`Rule`'s order.
    """
    checks = _value_checks(columns, timeframe_ms)
    if len(columns.open) == 0:
        return {}
    stacked = np.stack([mask for _, mask in checks])
    first_rule = np.argmax(stacked, axis=0)
    found: dict[int, tuple[Rule, str]] = {}
    for index in np.flatnonzero(stacked.any(axis=0)).tolist():
        rule = checks[int(first_rule[index])][0]
        found[index] = (rule, _detail(rule, columns, index, timeframe_ms))
    return found


@dataclass(frozen=True)
class GapReport:
    """Missing bars between the first and last candle; reported, never filled.

    Attributes:
        count: number of gaps (runs of consecutive missing bars).
        missing_bars: total number of missing bars.
        largest_gap_bars: length of the longest gap in bars (0 when there is no gap).
        largest_gap_start_ms: open time (UTC ms) of the first missing bar of the longest gap (the earliest
            one on a tie), or None when there is no gap.
    """

    count: int
    missing_bars: int
    largest_gap_bars: int
    largest_gap_start_ms: int | None


def find_gaps(open_time_ms: IntArray, timeframe_ms: int) -> GapReport:
    """Gap report of strictly increasing, aligned open times.

    Args:
        open_time_ms: candle open times (UTC ms), strictly increasing.
        timeframe_ms: bar length in ms.
    """
    if len(open_time_ms) < 2:
        return GapReport(0, 0, 0, None)
    missing = np.diff(open_time_ms) // timeframe_ms - 1
    gap_mask = missing > 0
    count = int(np.count_nonzero(gap_mask))
    if count == 0:
        return GapReport(0, 0, 0, None)
    largest = int(np.argmax(missing))
    return GapReport(
        count=count,
        missing_bars=int(missing[gap_mask].sum()),
        largest_gap_bars=int(missing[largest]),
        largest_gap_start_ms=int(open_time_ms[largest]) + timeframe_ms,
    )
