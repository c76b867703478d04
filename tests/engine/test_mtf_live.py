"""Specification of the incremental timeframe trends: each bar's trends equal MultiTimeframeAnalyzer.prepare's."""

from __future__ import annotations

import numpy as np
import pytest

from engine.analysis.mtf import MultiTimeframeAnalyzer, TrendMethod
from engine.analysis.mtf_live import IncrementalTrends
from engine.data.sample import load_sample
from engine.domain.models import Candles


def _trends_bar_by_bar(analyzer: MultiTimeframeAnalyzer, candles: Candles, prime_bars: int) -> dict[str, np.ndarray]:
    trends = IncrementalTrends(analyzer, candles.timeframe)
    trends.prime(candles.slice(0, prime_bars))
    rows = [
        trends.update(int(candles.open_time_ms[i]), float(candles.open[i]), float(candles.high[i]),
                      float(candles.low[i]), float(candles.close[i]), float(candles.volume[i]))
        for i in range(prime_bars, len(candles))
    ]
    return {tf: np.array([row[tf] for row in rows], dtype=np.int8) for tf in analyzer.timeframes}


def _assert_like_prepare(analyzer: MultiTimeframeAnalyzer, candles: Candles, prime_bars: int) -> None:
    expected = analyzer.prepare(candles)
    got = _trends_bar_by_bar(analyzer, candles, prime_bars)
    for timeframe in analyzer.timeframes:
        want = expected.trends[timeframe][prime_bars:]
        assert np.count_nonzero(want) > 0, f"{timeframe}: the window must hold trends"
        np.testing.assert_array_equal(got[timeframe], want, err_msg=timeframe)


@pytest.fixture(scope="module")
def btc() -> Candles:
    return load_sample("BTC/USDT", "1h").slice(3, 2403)  # opens at 03:00: partial first 4h and 1d buckets


@pytest.mark.parametrize("method", ["magic_trend_and_ema", "ema", "magic_trend"])
@pytest.mark.parametrize("prime_bars", [1, 500])
def test_hourly_four_hour_and_daily_trends_equal_the_vectorised_frame(
    btc: Candles, method: TrendMethod, prime_bars: int
) -> None:
    analyzer = MultiTimeframeAnalyzer(("1h", "4h", "1d"), trend_method=method, ema_fast=3, ema_slow=8)
    _assert_like_prepare(analyzer, btc, prime_bars)


def test_a_history_primed_inside_an_unfinished_bucket_continues_it(btc: Candles) -> None:
    analyzer = MultiTimeframeAnalyzer(("4h", "1d"), ema_fast=3, ema_slow=8)
    _assert_like_prepare(analyzer, btc, 502)  # 502 bars from 03:00 end inside a 4h and a 1d bucket


def test_missing_bars_give_the_buckets_resample_gives(btc: Candles) -> None:
    keep = np.ones(len(btc), dtype=bool)
    keep[700:731] = False  # more than a day: a 1d bucket without any bar
    keep[900:902] = False  # inside one 4h bucket
    columns = (btc.open_time_ms, btc.open, btc.high, btc.low, btc.close, btc.volume)
    gappy = Candles(btc.symbol, btc.timeframe, *(column[keep] for column in columns))
    analyzer = MultiTimeframeAnalyzer(("1h", "4h", "1d"), ema_fast=3, ema_slow=8)
    _assert_like_prepare(analyzer, gappy, 650)


def test_five_minute_base_bars_build_hour_trends_like_the_vectorised_frame() -> None:
    candles = load_sample("BTC/USDT", "5m").slice(7, 3007)
    analyzer = MultiTimeframeAnalyzer(("5m", "1h", "4h"), ema_fast=5, ema_slow=12)
    _assert_like_prepare(analyzer, candles, 600)
