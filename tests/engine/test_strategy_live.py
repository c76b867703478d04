"""Specification of the incremental preparer: bar by bar, the same decision inputs as Strategy.prepare."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.analysis.strategy import PreparedSymbol, StrategyParams
from engine.analysis.strategy_live import IncrementalPreparer
from engine.data.sample import load_sample
from engine.domain.models import Candles
from engine.runtime.symbol_state import SymbolHistory
from tests.engine.prepared_columns import default_strategy, prepared_columns

FLOAT_TOLERANCE = 1e-9  # relative; only the recursive ATR/ema sums differ (~1e-15)


def _assert_equal_tails(actual: PreparedSymbol, expected: PreparedSymbol) -> None:
    """``actual`` holds the last len(actual) bars of ``expected``, value for value."""
    count = len(actual)
    got, want = prepared_columns(actual), prepared_columns(expected)
    assert got.keys() == want.keys()
    for name, values in want.items():
        values = values[len(values) - count :]
        assert got[name].dtype == values.dtype, name
        if values.dtype.kind == "f":
            np.testing.assert_allclose(got[name], values, rtol=FLOAT_TOLERANCE, atol=0, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], values, err_msg=name)


def _feed(preparer: IncrementalPreparer, candles: Candles, start: int, stop: int) -> PreparedSymbol:
    return preparer.update_candles(candles.slice(start, stop))


def _without(candles: Candles, drop: list[range]) -> Candles:
    keep = np.ones(len(candles), dtype=bool)
    for span in drop:
        keep[span.start : span.stop] = False
    columns = (candles.open_time_ms, candles.open, candles.high, candles.low, candles.close, candles.volume)
    return Candles(candles.symbol, candles.timeframe, *(column[keep] for column in columns))


@pytest.fixture(scope="module")
def btc() -> Candles:
    return load_sample("BTC/USDT", "1h").slice(0, 3000)


def test_every_bar_equals_the_vectorised_prepare_on_real_btc(btc: Candles) -> None:
    strategy = default_strategy()
    preparer = IncrementalPreparer(strategy, max_bars=len(btc))
    preparer.prime(btc.slice(0, 500))
    live = _feed(preparer, btc, 500, len(btc))

    vectorised = strategy.prepare(btc)
    assert len(live) == len(btc)
    assert np.count_nonzero(vectorised.entry_direction[500:]) >= 10, "the window must hold entries"
    assert np.count_nonzero(vectorised.exit_long[500:]) >= 10
    _assert_equal_tails(live, vectorised)  # prepare is free of look-ahead, so each bar is compared as of itself


@pytest.mark.parametrize("checkpoint", [501, 1217, 2000])
def test_the_prepared_returned_after_a_bar_equals_prepare_over_the_bars_so_far(btc: Candles, checkpoint: int) -> None:
    strategy = default_strategy()
    preparer = IncrementalPreparer(strategy, max_bars=len(btc))
    preparer.prime(btc.slice(0, 500))
    live = _feed(preparer, btc, 500, checkpoint)
    _assert_equal_tails(live, strategy.prepare(btc.slice(0, checkpoint)))


@pytest.mark.parametrize(
    "params",
    [
        StrategyParams(allow_short=True, require_volume_confirmation=True, min_volume_confirmation=0.1),
        StrategyParams(mtf_trend_method="ema", mtf_ema_fast=3, mtf_ema_slow=8, allow_short=True),
        StrategyParams(mtf_trend_method="magic_trend", exit_on_mtf_conflict=False, min_entry_strength=0.0),
        StrategyParams(mtf_timeframes=("4h", "1d", "1w"), mtf_ema_fast=3, mtf_ema_slow=5),
    ],
    ids=["short-and-volume", "ema-trend", "magic-trend", "higher-timeframes-only"],
)
def test_other_parameters_give_the_same_values_too(btc: Candles, params: StrategyParams) -> None:
    strategy = default_strategy(params)
    candles = btc.slice(5, 1605)  # starts mid-day: the first 4h and 1d buckets are partial
    preparer = IncrementalPreparer(strategy, max_bars=len(candles))
    preparer.prime(candles.slice(0, 300))
    _assert_equal_tails(_feed(preparer, candles, 300, len(candles)), strategy.prepare(candles))


def test_priming_on_a_few_bars_warms_every_indicator_up_like_prepare(btc: Candles) -> None:
    strategy = default_strategy(StrategyParams(mtf_ema_fast=3, mtf_ema_slow=5))
    candles = btc.slice(0, 700)
    preparer = IncrementalPreparer(strategy, max_bars=len(candles))
    preparer.prime(candles.slice(0, 3))  # before the ATR, its medians, swings, volume and signals exist
    _assert_equal_tails(_feed(preparer, candles, 3, len(candles)), strategy.prepare(candles))


def test_gaps_in_the_candles_resample_like_prepare(btc: Candles) -> None:
    strategy = default_strategy(StrategyParams(mtf_ema_fast=3, mtf_ema_slow=8))
    candles = _without(btc.slice(0, 1600), [range(700, 731), range(900, 902), range(1200, 1224)])
    preparer = IncrementalPreparer(strategy, max_bars=len(candles))
    preparer.prime(candles.slice(0, 600))
    _assert_equal_tails(_feed(preparer, candles, 600, len(candles)), strategy.prepare(candles))


def test_five_minute_bars_build_hour_and_four_hour_trends_like_prepare() -> None:
    candles = load_sample("BTC/USDT", "5m").slice(7, 2407)
    strategy = default_strategy(StrategyParams(mtf_timeframes=("15m", "1h", "4h"), mtf_ema_fast=5, mtf_ema_slow=12))
    preparer = IncrementalPreparer(strategy, max_bars=len(candles))
    preparer.prime(candles.slice(0, 400))
    _assert_equal_tails(_feed(preparer, candles, 400, len(candles)), strategy.prepare(candles))


@settings(max_examples=8, deadline=None)
@given(start=st.integers(0, 2000), prime_bars=st.integers(1, 250), allow_short=st.booleans())
def test_any_window_and_prime_point_gives_the_vectorised_values(
    btc: Candles, start: int, prime_bars: int, allow_short: bool
) -> None:
    strategy = default_strategy(StrategyParams(allow_short=allow_short, mtf_ema_fast=4, mtf_ema_slow=9))
    candles = btc.slice(start, start + 400)
    preparer = IncrementalPreparer(strategy, max_bars=len(candles))
    preparer.prime(candles.slice(0, prime_bars))
    _assert_equal_tails(_feed(preparer, candles, prime_bars, len(candles)), strategy.prepare(candles))


def test_the_held_window_is_the_last_max_bars_of_everything_since_prime(btc: Candles) -> None:
    strategy = default_strategy()
    candles = btc.slice(0, 1500)
    preparer = IncrementalPreparer(strategy, max_bars=200)
    preparer.prime(candles.slice(0, 500))
    live = _feed(preparer, candles, 500, len(candles))  # several times past the buffers' spare rows
    assert len(live) == 200
    _assert_equal_tails(live, strategy.prepare(candles))


def test_a_returned_prepared_never_changes_when_later_bars_arrive(btc: Candles) -> None:
    preparer = IncrementalPreparer(default_strategy(), max_bars=200)
    first = preparer.prime(btc.slice(0, 300))
    copies = {name: values.copy() for name, values in prepared_columns(first).items()}
    _feed(preparer, btc, 300, 900)  # moves the kept rows to new buffers more than once
    for name, values in prepared_columns(first).items():
        np.testing.assert_array_equal(values, copies[name], err_msg=name)
        assert not values.flags.writeable, name


def test_a_bar_not_newer_than_the_last_one_is_refused(btc: Candles) -> None:
    preparer = IncrementalPreparer(default_strategy(), max_bars=300)
    preparer.prime(btc.slice(0, 300))
    last = btc.slice(299, 300)
    with pytest.raises(ValueError, match="not newer"):
        preparer.update_candles(last)


def test_update_before_prime_is_refused() -> None:
    with pytest.raises(RuntimeError, match="prime"):
        IncrementalPreparer(default_strategy(), max_bars=300).update(0, 1.0, 1.0, 1.0, 1.0, 1.0)


def test_max_bars_shorter_than_the_longest_lookback_is_refused() -> None:
    with pytest.raises(ValueError, match="max_bars"):
        IncrementalPreparer(default_strategy(), max_bars=50)


def _history(candles: Candles, max_bars: int = 1500) -> SymbolHistory:
    history = SymbolHistory(candles.symbol, candles.timeframe, max_bars)
    history.extend(candles)
    return history


def test_symbol_history_prepares_once_then_feeds_only_new_bars(btc: Candles) -> None:
    strategy = default_strategy()
    history = _history(btc.slice(0, 500))
    history.prepared(strategy)
    history.extend(btc.slice(500, 503))  # three bars at once (e.g. after a reconnect)
    prepared: Any = history.prepared(strategy)
    for i in range(503, 700):
        history.extend(btc.slice(i, i + 1))
        prepared = history.prepared(strategy)
    assert len(prepared) == 700
    _assert_equal_tails(prepared, strategy.prepare(history.candles()))


def test_symbol_history_prepares_afresh_for_another_strategy(btc: Candles) -> None:
    history = _history(btc.slice(0, 600))
    history.prepared(default_strategy())
    other = default_strategy(StrategyParams(allow_short=True))
    _assert_equal_tails(history.prepared(other), other.prepare(history.candles()))


def test_symbol_history_past_its_cap_keeps_the_values_since_the_first_prepare(btc: Candles) -> None:
    strategy = default_strategy()
    candles = btc.slice(0, 1200)
    history = _history(candles.slice(0, 400), max_bars=400)
    history.prepared(strategy)
    for i in range(400, len(candles)):
        history.extend(candles.slice(i, i + 1))
        prepared = history.prepared(strategy)
    assert len(prepared) == 400
    _assert_equal_tails(prepared, strategy.prepare(candles))
    np.testing.assert_array_equal(prepared.candles.close, history.candles().close)


def test_priming_on_no_bars_then_feeding_all_equals_prepare(btc: Candles) -> None:
    strategy = default_strategy()
    candles = btc.slice(0, 400)
    preparer = IncrementalPreparer(strategy, max_bars=len(candles))
    assert len(preparer.prime(Candles.empty(candles.symbol, candles.timeframe))) == 0
    _assert_equal_tails(_feed(preparer, candles, 0, len(candles)), strategy.prepare(candles))


def test_symbol_history_with_a_cap_below_the_lookbacks_holds_what_the_newest_bar_needs(btc: Candles) -> None:
    strategy = default_strategy()
    history = _history(btc.slice(0, 300), max_bars=20)  # holds bars 280..299
    history.prepared(strategy)
    for i in range(300, 500):
        history.extend(btc.slice(i, i + 1))
        prepared = history.prepared(strategy)
    assert len(history) == 20
    assert len(prepared) == IncrementalPreparer.bars_needed(strategy)
    _assert_equal_tails(prepared, strategy.prepare(btc.slice(280, 500)))
