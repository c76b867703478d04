"""Specification of the live candle checks: the import rules per candle, the outlier rule, the feed status."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.config import Settings
from engine.data.csv_import import read_candle_file
from engine.data.live_validation import (
    OUTLIER_CONFIRM_BARS,
    OUTLIER_RULE,
    CandleValidator,
    FeedHealth,
    Quarantine,
)
from engine.data.sample import sample_files
from engine.data.validate import CandleColumns, first_violation, row_violations, timestamps_to_ms
from engine.domain.models import Candles
from engine.domain.snapshot import FEED_DEGRADED, FEED_OK, FEED_STALE
from engine.domain.timeframes import parse_timeframe
from tests.engine.manual_clock_rig import HOUR_MS, sample
from tests.shared_data import shared_data_dir

MULTIPLE = Settings().data.outlier_atr_multiple


def as_rows(candles: Candles) -> list[list[float]]:
    columns = [candles.open_time_ms.tolist()] + [getattr(candles, k).tolist()
                                                 for k in ("open", "high", "low", "close", "volume")]
    return [list(row) for row in zip(*columns, strict=True)]


def primed(bars: int = 300) -> tuple[CandleValidator, Candles]:
    candles = sample()
    validator = CandleValidator(HOUR_MS, MULTIPLE)
    validator.prime(candles.slice(0, bars))
    return validator, candles


# ------------------------------------------------------------------------- real data is never quarantined
def _real_series() -> list[tuple[str, Path]]:
    found = [(f"bundled {f.path.name}", Path(str(f.path))) for f in sample_files()]
    shared = shared_data_dir()
    if shared.is_dir():
        found += [(f"shared {p.name}", p) for p in sorted(shared.glob("*.csv.gz"))]
    return found


@pytest.mark.parametrize(("label", "path"), _real_series(), ids=[label for label, _ in _real_series()])
def test_no_bar_of_the_real_series_is_quarantined(label: str, path: Path) -> None:
    match = re.fullmatch(r"([A-Z0-9]+)_([A-Z0-9]+)-(\w+)\.csv\.gz", path.name)
    assert match is not None
    candles = read_candle_file(path, f"{match[1]}/{match[2]}", match[3])
    validator = CandleValidator(parse_timeframe(match[3]), MULTIPLE)

    refused = [c for c in validator.validate(as_rows(candles)) if c.rule is not None]

    assert refused == [], f"{label}: {refused[:3]}"


# ------------------------------------------------------------------------------------ the import rules
def bad(validator: CandleValidator, row: list[Any]) -> tuple[str | None, str]:
    [checked] = validator.validate([row])
    return checked.rule, checked.detail


@pytest.mark.parametrize(("change", "open_after_ms", "rule"), [
    ({4: math.nan}, HOUR_MS, "non_finite_value"),
    ({2: math.inf}, HOUR_MS, "non_finite_value"),
    ({4: None}, HOUR_MS, "non_numeric_value"),
    ({3: 0.0, 4: 0.0}, HOUR_MS, "non_positive_price"),
    ({5: -1.0}, HOUR_MS, "negative_volume"),
    ({2: 1.0, 3: 2.0}, HOUR_MS, "high_below_low"),
    ({}, HOUR_MS // 2, "unaligned_timestamp"),
    ({}, 0, "duplicate_timestamp"),
    ({}, -HOUR_MS, "decreasing_timestamp"),
])
def test_a_candle_breaking_an_import_rule_is_quarantined_and_the_last_good_state_kept(
    change: dict[int, float | None], open_after_ms: int, rule: str
) -> None:
    validator, candles = primed()
    good = as_rows(candles.slice(300, 301))[0]
    row: list[float | None] = [int(candles.open_time_ms[299]) + open_after_ms, *good[1:]]
    for column, value in change.items():
        row[column] = value
    state = (validator.previous_open_ms, validator.previous_close, validator.atr)

    assert bad(validator, row)[0] == rule
    assert (validator.previous_open_ms, validator.previous_close, validator.atr) == state
    assert bad(validator, good) == (None, ""), "the next good candle passes"


def test_row_violations_report_what_validate_columns_reports_first() -> None:
    t0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS
    times = np.array([t0, t0 + HOUR_MS, t0 + HOUR_MS, t0 + 3 * HOUR_MS + 5, t0 + 4 * HOUR_MS], dtype=np.int64)
    o = np.array([10.0, 10.0, 10.0, 10.0, 10.0])
    h = np.array([11.0, 9.0, 11.0, 11.0, 11.0])
    lo = np.array([9.0, 9.5, 9.0, 9.0, 9.0])
    c = np.array([10.5, 10.0, 10.0, 10.0, math.nan])
    v = np.ones(5)
    columns = CandleColumns(times, timestamps_to_ms(times)[0], o, h, lo, c, v, first_row=2)

    found = row_violations(columns, HOUR_MS)

    assert {i: r.value for i, (r, _) in found.items()} == {
        1: "high_below_low", 2: "duplicate_timestamp", 3: "unaligned_timestamp", 4: "non_finite_value"}
    first = first_violation(columns, HOUR_MS)
    assert first is not None and (first[0], first[1]) == (1, found[1][0]) and first[2] == found[1][1]


# ------------------------------------------------------------------------------------ the outlier rule
def test_a_1000x_print_is_an_outlier_and_the_next_bar_is_measured_from_the_last_good_one() -> None:
    validator, candles = primed()
    last = float(candles.close[299])
    t = int(candles.open_time_ms[300])
    up = [t, last, last * 1000, last, last * 1000, 5.0]

    rule, detail = bad(validator, up)

    assert rule == OUTLIER_RULE and "x the recent ATR" in detail
    assert validator.previous_close == last
    next_good = as_rows(candles.slice(301, 302))[0]
    assert bad(validator, next_good) == (None, "")


def test_a_real_move_to_a_new_level_is_accepted_once_confirmed() -> None:
    validator, candles = primed()
    level = float(candles.close[299]) * 0.5  # far beyond the multiple of a 1h ATR
    start = int(candles.open_time_ms[300])
    bars = [[start + k * HOUR_MS, level, level * 1.001, level * 0.999, level, 5.0] for k in range(4)]

    checked = validator.validate(bars)

    assert [c.rule for c in checked] == [OUTLIER_RULE] * (OUTLIER_CONFIRM_BARS - 1) + [None, None]
    assert validator.previous_close == level


def test_the_outlier_rule_waits_for_enough_history() -> None:
    validator = CandleValidator(HOUR_MS, MULTIPLE)
    t = 1_700_000_000_000 // HOUR_MS * HOUR_MS
    checked = validator.validate([[t, 100, 101, 99, 100, 1], [t + HOUR_MS, 100, 100_000, 99, 50_000, 1]])
    assert [c.rule for c in checked] == [None, None]


# ------------------------------------------------------------------------------------------ feed status
def quarantine(t: int) -> Quarantine:
    return Quarantine("BTC/USDT", "1h", t, "high_below_low", "high 1.0 < low 2.0")


def test_feed_status_degraded_by_a_quarantine_cleared_by_the_next_good_candle() -> None:
    health = FeedHealth(["BTC/USDT", "ETH/USDT"], "1h", HOUR_MS)
    t0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS
    health.expect("BTC/USDT", t0)
    health.expect("ETH/USDT", t0)

    health.quarantined(quarantine(t0), t0 + HOUR_MS)

    status = health.status("BTC/USDT")
    assert status.state == FEED_DEGRADED and "high_below_low" in status.reason and "2023-11-14 22:00" in status.reason
    assert not health.all_ok and health.status("ETH/USDT").state == FEED_OK
    health.accepted("BTC/USDT", t0 + 2 * HOUR_MS, t0 + 2 * HOUR_MS)
    assert health.all_ok
    assert [(b.state, a.state, q is not None) for b, a, q in health.take_changes()] == [
        (FEED_OK, FEED_DEGRADED, True), (FEED_DEGRADED, FEED_OK, False)]


def test_feed_status_stale_after_one_and_a_half_bars_once_until_a_candle() -> None:
    health = FeedHealth(["BTC/USDT"], "1h", HOUR_MS, stale_after_bars=1.5)
    t0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS
    health.expect("BTC/USDT", t0)

    health.check_stale(t0 + 3 * HOUR_MS // 2 - 1)
    assert health.status("BTC/USDT").state == FEED_OK
    for now in (t0 + 3 * HOUR_MS // 2, t0 + 2 * HOUR_MS, t0 + 5 * HOUR_MS):
        health.check_stale(now)
    assert health.status("BTC/USDT").state == FEED_STALE
    assert [a.state for _, a, _ in health.take_changes()] == [FEED_STALE]
    health.accepted("BTC/USDT", t0 + 5 * HOUR_MS, t0 + 5 * HOUR_MS)
    assert [a.state for _, a, _ in health.take_changes()] == [FEED_OK]
