"""Specification of the strategy's vectorised half: parameters, entry rules and freedom from look-ahead."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.strategy import PreparedSymbol, Strategy, StrategyParams
from engine.analysis.volume_rules import DOWNSIZE_BITS
from engine.config import Settings
from engine.data.sample import load_sample

ARRAYS = (
    "entry_direction",
    "entry_strength",
    "entry_multiplier",
    "exit_long",
    "exit_short",
    "atr",
    "volatility_ratio",
    "normal_volatility",
    "volatility_alarm",
    "swing_low",
    "swing_high",
    "volume_rule_effect",
)


@pytest.fixture(scope="module")
def btc() -> object:
    return load_sample("BTC/USDT", "1h").slice(0, 2500)


def _prepare(candles: object, params: StrategyParams | None = None) -> PreparedSymbol:
    settings = Settings()
    return Strategy(params or StrategyParams(), settings.risk, settings.breaker).prepare(candles)  # type: ignore[arg-type]


def test_with_overrides_reaches_nested_signal_parameters() -> None:
    params = StrategyParams().with_overrides(**{"signal.fade_bars": 4, "min_entry_strength": 0.3})
    assert params.signal.fade_bars == 4 and params.min_entry_strength == 0.3


def test_with_overrides_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown strategy parameter"):
        StrategyParams().with_overrides(no_such_field=1)


def test_ratio_parameters_outside_0_1_are_rejected() -> None:
    with pytest.raises(ValueError, match="ratio"):
        StrategyParams(volume_weight=1.5)


def test_flat_lists_signal_parameters_with_their_prefix() -> None:
    flat = StrategyParams().flat()
    assert flat["signal.fade_bars"] == StrategyParams().signal.fade_bars
    assert isinstance(flat["mtf_timeframes"], list)


@pytest.mark.parametrize("cut", [700, 1400, 2100])
def test_prepared_arrays_up_to_t_do_not_depend_on_later_bars(btc: object, cut: int) -> None:
    full = _prepare(btc)
    truncated = _prepare(btc.slice(0, cut))  # type: ignore[attr-defined]
    for name in ARRAYS:
        expected, actual = getattr(full, name)[:cut], getattr(truncated, name)
        if expected.dtype.kind == "f":
            # The indicators' blocked recurrences may differ in the last ulp with the series length.
            np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=0, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=name)


def test_shorts_are_never_entered_unless_allowed(btc: object) -> None:
    assert not (_prepare(btc).entry_direction < 0).any()
    assert (_prepare(btc, StrategyParams(allow_short=True)).entry_direction < 0).any()


def test_entries_need_aligned_timeframes_and_the_minimum_strength(btc: object) -> None:
    item = _prepare(btc)
    entering = item.entry_direction != 0
    assert entering.any()
    assert (item.entry_multiplier[entering] > 0).all()
    full_size = entering & ((item.volume_rule_effect & DOWNSIZE_BITS) == 0)  # downsizing may go below
    assert (item.entry_strength[full_size] >= StrategyParams().min_entry_strength).all()
    assert (item.entry_strength[~entering] == 0).all()


def test_a_higher_minimum_strength_never_adds_entries(btc: object) -> None:
    loose = _prepare(btc, StrategyParams(min_entry_strength=0.1)).entry_direction != 0
    strict = _prepare(btc, StrategyParams(min_entry_strength=0.6)).entry_direction != 0
    assert not (strict & ~loose).any()
