"""Provides the volume analyser: move confirmation, spikes, breakout volume, divergence and volume strength.

Every measure at bar ``t`` compares bar ``t`` with a window of bars *before* it (``t - lookback .. t - 1``), so
a spike never inflates its own baseline and no value uses a later bar. All windows are finite, so the newest
bar can be computed from the last ``warmup_bars + 1`` candles alone (the live path), with the same numbers as
the vectorised pass over the whole history.

Definitions (``rel`` is the relative volume ``volume[t] / median(volume[t-L .. t-1])``, ``L`` =
``lookback_periods``; with a zero median, ``rel`` is 1 for zero volume and ``MAX_RELATIVE_VOLUME`` otherwise):

- Confirmation: the bar moved (close against the previous close) in the trade direction on above-median volume;
  strength rises linearly from 0 at ``rel = 1`` to 1 at ``rel = confirmation_volume_ratio``.
- Institutional activity (spike): ``rel >= spike_multiple``; strength ``rel / (2 * spike_multiple)`` capped at 1
  (0.5 at the threshold). Its direction is the bar's body (close against open): +1 buying, -1 selling.
- Breakout: the close beyond the highest high (lowest low) of the previous ``breakout_lookback`` bars with
  ``rel >= breakout_volume_multiple``; strength ``rel / (2 * breakout_volume_multiple)`` capped at 1.
- Divergence: the close makes a new high (low) against the previous ``divergence_lookback`` closes while the
  mean volume of the last ``divergence_window`` bars is below ``divergence_volume_ratio`` times the mean of the
  ``divergence_window`` bars before them. New high on falling volume = bearish (-1), new low on falling volume
  = bullish (+1, selling exhaustion). Strength ``divergence_volume_ratio / (2 * ratio)`` capped at 1.
- Volume strength: percentile rank of the bar's volume among the previous ``L`` volumes (ties count half).
- Recent institutional direction: the direction of the latest spike among the last ``spike_memory`` bars
  (bar ``t`` included; 0 when none, or when the latest was a doji), so a later spike supersedes an earlier one.
  Recent divergence direction: likewise the latest divergence among the last ``divergence_memory`` bars.
  With a memory of 1 (the default) they are the bar's own spike direction and divergence direction.

Warm-up: float arrays are NaN and flags False/0 until their window is full (``lookback_periods`` bars for the
relative volume, ``max(lookback_periods, breakout_lookback)`` for breakouts, ``max(divergence_lookback,
2 * divergence_window - 1)`` for divergence, plus ``memory - 1`` for the recent directions); after it, no value
is NaN or infinite, including for zero volume and flat prices. The typed per-bar results report
``ready=False`` and strength 0.0 in warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped]
from numpy.lib.stride_tricks import sliding_window_view

from engine.domain.models import Candles, FloatArray, IntArray, SignalType

MAX_RELATIVE_VOLUME = 1_000.0  # cap on volume / baseline so a zero baseline never yields inf

Int8Array = npt.NDArray[np.int8]
BoolArray = npt.NDArray[np.bool_]

_DIRECTION_SIGN: dict[SignalType, int] = {SignalType.LONG: 1, SignalType.SHORT: -1}


def _sign_of(direction: SignalType) -> int:
    if direction not in _DIRECTION_SIGN:
        raise ValueError(f"direction must be LONG or SHORT, got {direction!r}")
    return _DIRECTION_SIGN[direction]


def _previous_windows(values: FloatArray, length: int) -> npt.NDArray[np.float64]:
    """Row ``k`` holds ``values[k .. k+length-1]``, the window *before* bar ``k + length``."""
    return sliding_window_view(values, length)[: len(values) - length]


def _previous_median(values: FloatArray, length: int) -> FloatArray:
    """Median of the ``length`` values before each bar from bar ``length`` on.

    pandas' rolling median (a skiplist over the exact window values, even windows averaging the middle two
    as numpy does) gives the same numbers as ``np.median`` per window, about 5x faster.
    """
    medians: FloatArray = pd.Series(values).rolling(length).median().to_numpy(dtype=np.float64)
    return medians[length - 1 : len(values) - 1]


def _ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """numerator / denominator, 1 for 0/0, MAX_RELATIVE_VOLUME for x/0 and capped at it; NaN stays NaN."""
    out = np.full(numerator.shape, np.nan)
    positive = denominator > 0
    np.divide(numerator, denominator, out=out, where=positive)
    zero = denominator == 0
    out[zero] = np.where(numerator[zero] > 0, MAX_RELATIVE_VOLUME, 1.0)
    capped: FloatArray = np.minimum(out, MAX_RELATIVE_VOLUME)
    return capped


def _optional(value: np.floating | float) -> float | None:
    """A frame value for a typed result: None where the frame holds NaN (warm-up)."""
    return None if np.isnan(value) else float(value)


def _latest_within(direction: Int8Array, detected: BoolArray, memory: int) -> Int8Array:
    """``direction`` of the latest detected bar among the last ``memory`` bars (bar t included), else 0."""
    index = np.arange(len(direction))
    latest = np.maximum.accumulate(np.where(detected, index, -1))
    recent = (latest >= 0) & (index - latest < memory)
    return np.where(recent, direction[np.maximum(latest, 0)], 0).astype(np.int8)


def _capped(values: FloatArray) -> FloatArray:
    return np.minimum(np.maximum(values, 0.0), 1.0)


def _directional_confirmation(strength: FloatArray, move: Int8Array, sign: int) -> FloatArray:
    """Confirmation strength where the bar moved the ``sign`` way, 0 where it did not, NaN kept (warm-up)."""
    return np.asarray(np.where((move == sign) | np.isnan(strength), strength, 0.0), dtype=np.float64)


@dataclass(frozen=True)
class VolumeConfirmation:
    """Whether volume backs a move in ``direction`` on the bar opened at ``time_ms``; strength in [0, 1]."""

    time_ms: int
    direction: SignalType
    ready: bool
    confirmed: bool
    strength: float
    relative_volume: float | None  # None in warm-up


@dataclass(frozen=True)
class InstitutionalActivity:
    """A volume spike; ``direction`` is the bar's body: +1 buying, -1 selling, 0 doji. Strength in [0, 1]."""

    time_ms: int
    ready: bool
    detected: bool
    strength: float
    relative_volume: float | None  # None in warm-up
    direction: int


@dataclass(frozen=True)
class VolumeBreakout:
    """A close beyond the rolling high (+1) or low (-1) on heavy volume; ``level`` is the broken price."""

    time_ms: int
    ready: bool
    direction: int
    strength: float
    level: float | None  # None in warm-up
    relative_volume: float | None  # None in warm-up

    @property
    def detected(self) -> bool:
        return self.direction != 0


@dataclass(frozen=True)
class VolumeDivergence:
    """Price/volume divergence: +1 bullish (new low, falling volume), -1 bearish (new high, falling volume)."""

    time_ms: int
    ready: bool
    direction: int
    strength: float
    volume_ratio: float | None  # recent mean volume / earlier mean volume; None in warm-up

    @property
    def detected(self) -> bool:
        return self.direction != 0


@dataclass(frozen=True)
class VolumeStrength:
    """Percentile rank (ratio in [0, 1]) of the bar's volume among the previous ``lookback_periods`` bars."""

    time_ms: int
    ready: bool
    strength: float
    relative_volume: float | None  # None in warm-up


@dataclass(frozen=True, eq=False)
class VolumeFrame:
    """Volume measures for every bar, aligned with the analysed candles (see the module docstring)."""

    open_time_ms: IntArray
    relative_volume: FloatArray
    move_direction: Int8Array  # sign(close[t] - close[t-1]); 0 on the first bar
    body_direction: Int8Array  # sign(close[t] - open[t])
    confirmation_strength: FloatArray  # for a move in the bar's own direction
    spike: BoolArray
    spike_strength: FloatArray
    breakout_direction: Int8Array
    breakout_strength: FloatArray
    breakout_level: FloatArray
    divergence_direction: Int8Array
    divergence_strength: FloatArray
    divergence_volume_ratio: FloatArray
    volume_strength: FloatArray
    recent_spike_direction: Int8Array  # body direction of the latest spike within ``spike_memory`` bars
    recent_divergence_direction: Int8Array  # the latest divergence within ``divergence_memory`` bars

    def __len__(self) -> int:
        return len(self.open_time_ms)

    @property
    def breakout(self) -> BoolArray:
        return np.asarray(self.breakout_direction != 0)

    @property
    def divergence(self) -> BoolArray:
        return np.asarray(self.divergence_direction != 0)

    def confirmation_for(self, direction: SignalType) -> FloatArray:
        """Confirmation strength of a move in ``direction`` per bar: 0 where the bar moved the other way."""
        return _directional_confirmation(self.confirmation_strength, self.move_direction, _sign_of(direction))

    def _time(self, index: int) -> int:
        return int(self.open_time_ms[index])

    def confirmation_at(self, index: int, direction: SignalType) -> VolumeConfirmation:
        strength = float(
            _directional_confirmation(
                self.confirmation_strength[index], self.move_direction[index], _sign_of(direction)
            )
        )
        ready = not np.isnan(strength)
        return VolumeConfirmation(
            self._time(index),
            direction,
            ready,
            ready and strength > 0.0,
            strength if ready else 0.0,
            _optional(self.relative_volume[index]),
        )

    def institutional_at(self, index: int) -> InstitutionalActivity:
        strength = float(self.spike_strength[index])
        ready = not np.isnan(strength)
        return InstitutionalActivity(
            self._time(index),
            ready,
            bool(self.spike[index]),
            strength if ready else 0.0,
            _optional(self.relative_volume[index]),
            int(self.body_direction[index]),
        )

    def breakout_at(self, index: int) -> VolumeBreakout:
        strength = float(self.breakout_strength[index])
        ready = not np.isnan(strength)
        return VolumeBreakout(
            self._time(index),
            ready,
            int(self.breakout_direction[index]),
            strength if ready else 0.0,
            _optional(self.breakout_level[index]),
            _optional(self.relative_volume[index]),
        )

    def divergence_at(self, index: int) -> VolumeDivergence:
        strength = float(self.divergence_strength[index])
        ready = not np.isnan(strength)
        return VolumeDivergence(
            self._time(index),
            ready,
            int(self.divergence_direction[index]),
            strength if ready else 0.0,
            _optional(self.divergence_volume_ratio[index]),
        )

    def volume_strength_at(self, index: int) -> VolumeStrength:
        strength = float(self.volume_strength[index])
        ready = not np.isnan(strength)
        return VolumeStrength(
            self._time(index), ready, strength if ready else 0.0, _optional(self.relative_volume[index])
        )


class VolumeAnalyzer:
    """Volume analysis with named thresholds; ``analyze`` for history, the ``*_latest`` methods for live.

    Args:
        lookback_periods: bars in the volume baseline (median and percentile rank), >= 2.
        confirmation_volume_ratio: relative volume at which confirmation strength reaches 1, > 1.
        spike_multiple: relative volume from which a bar counts as institutional activity, > 1.
        breakout_lookback: bars whose highest high / lowest low form the breakout level, >= 1.
        breakout_volume_multiple: relative volume a breakout needs, > 0.
        divergence_lookback: bars a close must exceed to be a new high/low, >= 1.
        divergence_window: bars in each of the two volume means compared for divergence, >= 1.
        divergence_volume_ratio: recent/earlier volume ratio below which volume is falling, in (0, 1).
        spike_memory: bars (the newest included) a spike stays in ``recent_spike_direction``, >= 1.
        divergence_memory: bars a divergence stays in ``recent_divergence_direction``, >= 1.
    """

    def __init__(
        self,
        lookback_periods: int = 50,
        confirmation_volume_ratio: float = 1.5,
        spike_multiple: float = 3.0,
        breakout_lookback: int = 20,
        breakout_volume_multiple: float = 1.5,
        divergence_lookback: int = 20,
        divergence_window: int = 10,
        divergence_volume_ratio: float = 0.8,
        spike_memory: int = 1,
        divergence_memory: int = 1,
    ) -> None:
        problems = []
        if lookback_periods < 2:
            problems.append(f"lookback_periods must be >= 2, got {lookback_periods}")
        if confirmation_volume_ratio <= 1.0:
            problems.append(f"confirmation_volume_ratio must be > 1, got {confirmation_volume_ratio}")
        if spike_multiple <= 1.0:
            problems.append(f"spike_multiple must be > 1, got {spike_multiple}")
        if breakout_lookback < 1 or divergence_lookback < 1 or divergence_window < 1:
            problems.append("breakout_lookback, divergence_lookback and divergence_window must be >= 1")
        if breakout_volume_multiple <= 0.0:
            problems.append(f"breakout_volume_multiple must be > 0, got {breakout_volume_multiple}")
        if not 0.0 < divergence_volume_ratio < 1.0:
            problems.append(f"divergence_volume_ratio must be in (0, 1), got {divergence_volume_ratio}")
        if spike_memory < 1 or divergence_memory < 1:
            problems.append(f"spike_memory and divergence_memory must be >= 1, got {spike_memory}, {divergence_memory}")
        if problems:
            raise ValueError("; ".join(problems))
        self.lookback_periods = lookback_periods
        self.confirmation_volume_ratio = confirmation_volume_ratio
        self.spike_multiple = spike_multiple
        self.breakout_lookback = breakout_lookback
        self.breakout_volume_multiple = breakout_volume_multiple
        self.divergence_lookback = divergence_lookback
        self.divergence_window = divergence_window
        self.divergence_volume_ratio = divergence_volume_ratio
        self.spike_memory = spike_memory
        self.divergence_memory = divergence_memory

    @property
    def warmup_bars(self) -> int:
        """Bars before the first bar on which every measure is defined."""
        return max(
            self.lookback_periods + self.spike_memory - 1,
            self.breakout_lookback,
            max(self.divergence_lookback, 2 * self.divergence_window - 1) + self.divergence_memory - 1,
        )

    def analyze(self, candles: Candles) -> VolumeFrame:
        """Every measure for every bar of ``candles`` (vectorised; bar t uses bars 0..t only)."""
        n = len(candles)
        close, volume = candles.close, candles.volume
        lookback = self.lookback_periods

        relative = np.full(n, np.nan)
        rank = np.full(n, np.nan)
        if n > lookback:
            windows = _previous_windows(volume, lookback)
            current = volume[lookback:, None]
            relative[lookback:] = _ratio(volume[lookback:], _previous_median(volume, lookback))
            below = np.count_nonzero(windows < current, axis=1)
            ties = np.count_nonzero(windows == current, axis=1)
            rank[lookback:] = (below + 0.5 * ties) / lookback

        move = np.zeros(n, dtype=np.int8)
        move[1:] = np.sign(np.diff(close)).astype(np.int8)
        body = np.sign(close - candles.open).astype(np.int8)

        confirmation = _capped((relative - 1.0) / (self.confirmation_volume_ratio - 1.0))
        confirmation[np.isnan(relative)] = np.nan
        spike = np.nan_to_num(relative, nan=0.0) >= self.spike_multiple
        spike_strength = _capped(relative / (2.0 * self.spike_multiple))
        spike_strength[np.isnan(relative)] = np.nan

        breakout_direction, breakout_strength, breakout_level = self._breakouts(candles, relative)
        divergence_direction, divergence_strength, divergence_ratio = self._divergences(close, volume)
        return VolumeFrame(
            open_time_ms=candles.open_time_ms,
            relative_volume=relative,
            move_direction=move,
            body_direction=body,
            confirmation_strength=confirmation,
            spike=spike,
            spike_strength=spike_strength,
            breakout_direction=breakout_direction,
            breakout_strength=breakout_strength,
            breakout_level=breakout_level,
            divergence_direction=divergence_direction,
            divergence_strength=divergence_strength,
            divergence_volume_ratio=divergence_ratio,
            volume_strength=rank,
            recent_spike_direction=_latest_within(body, spike, self.spike_memory),
            recent_divergence_direction=_latest_within(
                divergence_direction, divergence_direction != 0, self.divergence_memory
            ),
        )

    def _breakouts(self, candles: Candles, relative: FloatArray) -> tuple[Int8Array, FloatArray, FloatArray]:
        n = len(candles)
        span = self.breakout_lookback
        first = max(span, self.lookback_periods)
        direction = np.zeros(n, dtype=np.int8)
        strength = np.full(n, np.nan)
        level = np.full(n, np.nan)
        if n <= first:
            return direction, strength, level
        highest = _previous_windows(candles.high, span).max(axis=1)[first - span :]
        lowest = _previous_windows(candles.low, span).min(axis=1)[first - span :]
        close = candles.close[first:]
        heavy = relative[first:] >= self.breakout_volume_multiple
        up = heavy & (close > highest)
        down = heavy & (close < lowest)
        direction[first:] = up.astype(np.int8) - down.astype(np.int8)
        strength[first:] = np.where(up | down, _capped(relative[first:] / (2.0 * self.breakout_volume_multiple)), 0)
        level[first:] = np.where(down, lowest, highest)
        return direction, strength, level

    def _divergences(self, close: FloatArray, volume: FloatArray) -> tuple[Int8Array, FloatArray, FloatArray]:
        n = len(close)
        span, window = self.divergence_lookback, self.divergence_window
        first = max(span, 2 * window - 1)
        direction = np.zeros(n, dtype=np.int8)
        strength = np.full(n, np.nan)
        ratio = np.full(n, np.nan)
        if n <= first:
            return direction, strength, ratio
        means = sliding_window_view(volume, window).mean(axis=1)  # means[k] = mean(volume[k .. k+window-1])
        recent = means[first - window + 1 :]
        earlier = means[first - 2 * window + 1 : n - 2 * window + 1]
        volume_ratio = _ratio(recent, earlier)
        falling = volume_ratio < self.divergence_volume_ratio
        current = close[first:]
        new_high = current > _previous_windows(close, span).max(axis=1)[first - span :]
        new_low = current < _previous_windows(close, span).min(axis=1)[first - span :]
        bearish = falling & new_high
        bullish = falling & new_low
        direction[first:] = bullish.astype(np.int8) - bearish.astype(np.int8)
        raw = _capped(self.divergence_volume_ratio / (2.0 * np.maximum(volume_ratio, 1e-12)))
        strength[first:] = np.where(bullish | bearish, raw, 0.0)
        ratio[first:] = volume_ratio
        return direction, strength, ratio

    # --- newest bar (live): the same computation over the shortest tail that determines it -------------

    def analyze_latest(self, candles: Candles) -> VolumeFrame:
        """The frame over only the last ``warmup_bars + 1`` candles; its last row equals ``analyze``'s.

        Raises:
            ValueError: ``candles`` is empty (there is no newest bar).
        """
        if len(candles) == 0:
            raise ValueError(f"no candles for {candles.symbol} {candles.timeframe}: nothing to analyse")
        return self.analyze(candles.slice(max(0, len(candles) - self.warmup_bars - 1)))

    def confirm_volume(self, candles: Candles, direction: SignalType) -> VolumeConfirmation:
        """Volume confirmation of a move in ``direction`` on the newest bar."""
        return self.analyze_latest(candles).confirmation_at(-1, direction)

    def detect_institutional_activity(self, candles: Candles) -> InstitutionalActivity:
        """Volume spike on the newest bar."""
        return self.analyze_latest(candles).institutional_at(-1)

    def detect_breakout(self, candles: Candles) -> VolumeBreakout:
        """Breakout with volume on the newest bar."""
        return self.analyze_latest(candles).breakout_at(-1)

    def detect_divergence(self, candles: Candles) -> VolumeDivergence:
        """Price/volume divergence on the newest bar."""
        return self.analyze_latest(candles).divergence_at(-1)

    def calculate_volume_strength(self, candles: Candles) -> VolumeStrength:
        """Percentile-rank volume strength of the newest bar."""
        return self.analyze_latest(candles).volume_strength_at(-1)
