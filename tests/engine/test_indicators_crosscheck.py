"""Cross-checks engine.analysis.indicators against independent libraries: TA-Lib, pandas-ta-classic and ta.

Where a peer's definition is the same we require 1e-9 relative agreement; where it differs by design (ATR
start-up, CCI on a flat window, pandas-ta's squeeze sigma, rma seed) the test pins the expected difference.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import talib

from engine.analysis import indicators as ind
from tests.shared_data import shared_data_path

RTOL = 1e-9

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pandas_ta_classic as pta
    import ta


def _load(name: str) -> pd.DataFrame:
    return pd.read_csv(shared_data_path(name))


def _synthetic(length: int = 3000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, length)))
    spread = close * rng.uniform(0.0005, 0.02, length)
    high = np.maximum(close, np.roll(close, 1)) + spread * rng.uniform(0, 1, length)
    low = np.minimum(close, np.roll(close, 1)) - spread * rng.uniform(0, 1, length)
    return pd.DataFrame({"high": high, "low": low, "close": close})


@pytest.fixture(scope="module", params=["BTC_USDT-1h.csv.gz", "ETH_USDT-5m.csv.gz", "synthetic"])
def candles(request: pytest.FixtureRequest) -> pd.DataFrame:
    if request.param == "synthetic":
        return _synthetic()
    frame = _load(request.param)
    return frame.iloc[-20000:].reset_index(drop=True)


def _hlc(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return frame["high"].to_numpy(), frame["low"].to_numpy(), frame["close"].to_numpy()


def assert_close(ours: np.ndarray, peer: np.ndarray, scale: np.ndarray | float, rtol: float = RTOL) -> None:
    """Same NaN positions, and |ours - peer| <= rtol * scale elsewhere."""
    ours, peer = np.asarray(ours, dtype=float), np.asarray(peer, dtype=float)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(peer))
    valid = ~np.isnan(ours)
    scale = np.broadcast_to(np.abs(scale), ours.shape)
    excess = np.abs(ours[valid] - peer[valid]) - rtol * scale[valid]
    assert excess.size == 0 or excess.max() <= 0.0, f"worst excess {excess.max()} at {np.argmax(excess)}"


def test_true_range_equals_talib_trange(candles: pd.DataFrame) -> None:
    high, low, close = _hlc(candles)
    np.testing.assert_array_equal(ind.true_range(high, low, close), talib.TRANGE(high, low, close))


@pytest.mark.parametrize("period", [1, 5, 20, 200])
def test_sma_matches_talib(candles: pd.DataFrame, period: int) -> None:
    close = candles["close"].to_numpy()
    assert_close(ind.sma(close, period), talib.SMA(close, period), close)


@pytest.mark.parametrize("period", [2, 9, 50, 200])
def test_ema_matches_talib_sma_seeded_ema(candles: pd.DataFrame, period: int) -> None:
    close = candles["close"].to_numpy()
    assert_close(ind.ema(close, period), talib.EMA(close, period), close)


@pytest.mark.parametrize("period", [5, 20])
def test_stdev_matches_talib_population_stddev(candles: pd.DataFrame, period: int) -> None:
    close = candles["close"].to_numpy()
    ours = ind.stdev(close, period)
    # TA-Lib keeps running sums of x and x^2, which loses ~eps * x^2 / var relative in the variance: allow
    # for that on top of 1e-9 (our two-pass deviations do not have this loss).
    cancellation = 64 * np.finfo(float).eps * period * close**2 / np.maximum(ours, 1e-300)
    assert_close(ours, talib.STDDEV(close, period, 1.0), RTOL * ours + cancellation, rtol=1.0)


def test_stdev_matches_ta_bollinger_width(candles: pd.DataFrame) -> None:
    close = candles["close"]
    peer = ta.volatility.BollingerBands(close, window=20, window_dev=2).bollinger_hband().to_numpy()
    bands = ind.bollinger(close.to_numpy(), 20, 2.0)
    assert_close(bands.upper, peer, close.to_numpy())


def test_bollinger_matches_talib_bbands(candles: pd.DataFrame) -> None:
    close = candles["close"].to_numpy()
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0, 0)
    bands = ind.bollinger(close, 20, 2.0)
    for ours, peer in ((bands.upper, upper), (bands.basis, middle), (bands.lower, lower)):
        assert_close(ours, peer, close)


@pytest.mark.parametrize("period", [2, 20, 50])
def test_linreg_matches_talib_linearreg(candles: pd.DataFrame, period: int) -> None:
    close = candles["close"].to_numpy()
    assert_close(ind.linreg(close, period), talib.LINEARREG(close, period), close)


@pytest.mark.parametrize("period", [5, 20])
def test_highest_and_lowest_equal_talib_max_min(candles: pd.DataFrame, period: int) -> None:
    high, low, _ = _hlc(candles)
    np.testing.assert_array_equal(ind.highest(high, period), talib.MAX(high, period))
    np.testing.assert_array_equal(ind.lowest(low, period), talib.MIN(low, period))


def _reference_mean_deviation(source: np.ndarray, period: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(source, period)
    out = np.full(len(source), np.nan)
    out[period - 1 :] = np.abs(windows - windows.mean(axis=1, keepdims=True)).mean(axis=1)
    return out


@pytest.mark.parametrize("period", [14, 20])
def test_cci_of_close_matches_talib_cci_given_close_as_typical_price(candles: pd.DataFrame, period: int) -> None:
    close = candles["close"].to_numpy()
    ours = ind.cci(close, period)
    peer = talib.CCI(close, close, close, period)
    # Near zero the two differ by rounding of (close - mean): scale by price / (0.015 * mean deviation).
    scale = close / (0.015 * _reference_mean_deviation(close, period))
    flat = np.isnan(ours) & ~np.isnan(peer)
    assert np.all(peer[flat] == 0.0), "only a flat window may be NaN for us, and TA-Lib says 0 there"
    peer = np.where(flat, np.nan, peer)
    assert_close(ours, peer, np.nan_to_num(scale))


def test_talib_cci_uses_typical_price_so_differs_from_cci_of_close(candles: pd.DataFrame) -> None:
    high, low, close = _hlc(candles)
    by_design = talib.CCI(high, low, close, 20)
    ours = ind.cci(close, 20)
    valid = ~np.isnan(ours)
    assert np.nanmax(np.abs(ours[valid] - by_design[valid])) > 1.0


def test_cci_of_flat_window_is_nan_where_talib_gives_zero() -> None:
    close = np.full(40, 101.37)
    assert np.isnan(ind.cci(close, 20)).all()
    assert np.all(talib.CCI(close, close, close, 20)[19:] == 0.0)


def test_atr_rma_of_builtin_true_range_equals_talib_atr_exactly_from_bar_n(candles: pd.DataFrame) -> None:
    high, low, close = _hlc(candles)
    # TA-Lib seeds from tr[1..n]: the rma of Pine's built-in tr (bar 0 NaN) does exactly that.
    assert_close(ind.rma(ind.true_range(high, low, close), 14), talib.ATR(high, low, close, 14), close)


def test_atr_starts_one_bar_before_talib_and_converges_after_warmup(candles: pd.DataFrame) -> None:
    high, low, close = _hlc(candles)
    ours, peer = ind.atr(high, low, close, 14), talib.ATR(high, low, close, 14)
    assert np.isnan(ours[:13]).all() and not np.isnan(ours[13])
    assert np.isnan(peer[13]) and not np.isnan(peer[14])
    # The seed difference decays as (13/14)^k = e^(-0.074 k): below 1e-9 relative well before bar 500.
    assert_close(ours[500:], peer[500:], ours[500:])
    assert abs(ours[14] - peer[14]) > 0.0


def test_atr_matches_ta_library_tradingview_startup(candles: pd.DataFrame) -> None:
    high, low, close = _hlc(candles)
    peer = ta.volatility.AverageTrueRange(candles["high"], candles["low"], candles["close"], 14).average_true_range()
    peer = peer.to_numpy().copy()
    peer[:13] = np.nan  # ta fills the warm-up with 0
    assert_close(ind.atr(high, low, close, 14), peer, close)


@pytest.mark.parametrize("period", [3, 14, 100])
def test_rma_matches_pandas_ta_classic_sma_seeded_rma(candles: pd.DataFrame, period: int) -> None:
    close = candles["close"].to_numpy()
    peer = pta.rma(candles["close"], length=period).to_numpy()
    assert_close(ind.rma(close, period), peer, close)


def test_rma_seeds_after_a_leading_nan_run_like_pandas_ta_classic(candles: pd.DataFrame) -> None:
    close = candles["close"].to_numpy().copy()
    close[:7] = np.nan
    peer = pta.rma(pd.Series(close), length=14).to_numpy()
    assert_close(ind.rma(close, 14), peer, np.nan_to_num(close))


@pytest.mark.parametrize("use_true_range", [True, False])
def test_squeeze_matches_pandas_ta_lazybear_with_bb_std_equal_to_kc_mult(
    candles: pd.DataFrame, use_true_range: bool
) -> None:
    high, low, close = _hlc(candles)
    ours = ind.squeeze_momentum(high, low, close, use_true_range=use_true_range)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = pta.squeeze(
            candles["high"], candles["low"], candles["close"], bb_std=1.5, lazybear=True, tr=use_true_range
        )
    peer_value = peer.iloc[:, 0].to_numpy()  # column SQZ_20_1.5_20_1.5_LB (SQZhlr_... without true range)
    assert_close(ours.value, peer_value, close)
    _assert_same_flags(ours, peer)


def _assert_same_flags(ours: ind.SqueezeMomentum, peer: pd.DataFrame) -> None:
    valid = ours.squeeze_on | ours.squeeze_off | ~np.isnan(ours.value)
    np.testing.assert_array_equal(ours.squeeze_on[valid], peer["SQZ_ON"].to_numpy()[valid] == 1)
    np.testing.assert_array_equal(ours.squeeze_off[valid], peer["SQZ_OFF"].to_numpy()[valid] == 1)


def test_squeeze_without_lazybear_compat_matches_pandas_ta_default_two_sigma(candles: pd.DataFrame) -> None:
    high, low, close = _hlc(candles)
    ours = ind.squeeze_momentum(high, low, close, lazybear_compat=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = pta.squeeze(candles["high"], candles["low"], candles["close"], lazybear=True)
    _assert_same_flags(ours, peer)


def test_lazybear_compat_squeezes_far_more_bars_than_two_sigma_on_btc_1h() -> None:
    high, low, close = _hlc(_load("BTC_USDT-1h.csv.gz"))
    compat = ind.squeeze_momentum(high, low, close).squeeze_on.mean()
    two_sigma = ind.squeeze_momentum(high, low, close, lazybear_compat=False).squeeze_on.mean()
    assert compat == pytest.approx(0.56, abs=0.03)
    assert two_sigma == pytest.approx(0.29, abs=0.03)


def _pine_magic_trend(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """The Pine script transcribed bar by bar, on TA-Lib's CCI and SMA(TRANGE)."""
    cci = talib.CCI(close, close, close, 20)
    atr = talib.SMA(talib.TRANGE(high, low, close), 5)
    out, prev = [], math.nan
    for t in range(len(close)):
        up, down = low[t] - atr[t], high[t] + atr[t]
        nz_prev = 0.0 if math.isnan(prev) else prev
        if cci[t] >= 0:
            value = nz_prev if up < nz_prev else up
        else:
            value = nz_prev if down > nz_prev else down
        out.append(value)
        prev = value
    return np.asarray(out)


def test_magic_trend_equals_pine_transcription_on_talib_components(candles: pd.DataFrame) -> None:
    high, low, close = _hlc(candles.iloc[:6000])
    ours = ind.magic_trend(high, low, close)
    reference = _pine_magic_trend(high, low, close)
    np.testing.assert_array_equal(ours.line[19:], reference[19:])
    np.testing.assert_array_equal(ours.direction[19:], np.where(talib.CCI(close, close, close, 20)[19:] >= 0, 1, -1))
