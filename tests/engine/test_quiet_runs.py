"""Specification of the per-symbol arrays the quiet-run skip reads (engine.core.quiet_runs)."""

from __future__ import annotations

import dataclasses

import numpy as np

from engine.analysis.strategy import PreparedSymbol
from engine.core.quiet_runs import NO_BARS, QuietArrays
from tests.engine.decision_fixtures import candles, prepared


def _item() -> PreparedSymbol:
    bars = candles([100, 103, 99], [102, 104, 101], [98, 102, 97], [101, 103, 100])
    return prepared(bars, exits=(1,))


def test_the_bar_range_includes_the_open_beyond_high_or_low() -> None:
    arrays = QuietArrays.of(_item())
    np.testing.assert_array_equal(arrays.lowest, [98, 102, 97])
    np.testing.assert_array_equal(arrays.highest, [102, 104, 101])


def test_an_exit_signal_or_an_alarm_makes_a_bar_loud_and_nan_counts_as_set() -> None:
    item = dataclasses.replace(
        _item(),
        exit_long=np.array([False, True, False]),
        exit_short=np.zeros(3, dtype=bool),
        volatility_alarm=np.array([0.0, 0.0, np.nan]),
    )
    arrays = QuietArrays.of(item)
    np.testing.assert_array_equal(arrays.calm_long, [True, False, False])
    np.testing.assert_array_equal(arrays.calm_short, [True, True, False])


def test_the_shared_empty_run_cannot_be_written() -> None:
    assert len(NO_BARS) == 0 and not NO_BARS.flags.writeable
