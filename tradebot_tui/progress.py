"""Provides Progress: a progress bar with an ETA on a terminal, plain lines when the output is not one.

Long commands (backtest, optimise) report through it on stderr, so ``--json`` on stdout stays one object.
On a terminal the bar is redrawn in place at most :data:`REDRAW_EVERY_S` apart; in a pipe or a log one
line per :data:`PLAIN_STEP` of the work is printed instead (``optimize: 40% (19/48 evaluations), 1m12s
left``), and nothing when the work is already done on the first report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from tradebot_tui.formatting import duration

BAR_WIDTH = 28
REDRAW_EVERY_S = 0.1
PLAIN_STEP = 0.1


class Progress:
    """Reports one long task's progress (see the module docstring).

    Args:
        label: what runs, e.g. ``backtest`` (starts each line).
        stream: where to write (default stderr); a terminal gets the bar, anything else plain lines.
        clock: seconds (injected in tests).
    """

    def __init__(self, label: str, *, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self._clock = clock
        self._started = clock()
        self._drawn_at = -1.0
        self._next_plain = PLAIN_STEP
        self._finished = False

    def update(self, fraction: float, detail: str = "") -> None:
        """``fraction`` (0..1) of the work is done; ``detail`` e.g. ``19/48 evaluations``."""
        if self._finished:
            return
        fraction = min(max(fraction, 0.0), 1.0)
        now = self._clock()
        if self.terminal:
            if now - self._drawn_at >= REDRAW_EVERY_S or fraction >= 1.0:
                self._drawn_at = now
                filled = int(round(fraction * BAR_WIDTH))
                bar = "█" * filled + "░" * (BAR_WIDTH - filled)
                self.stream.write(f"\r{self.label} {bar} {fraction:4.0%}{self._extra(fraction, now, detail)}\x1b[K")
                self.stream.flush()
        elif fraction >= self._next_plain and fraction < 1.0:
            while self._next_plain <= fraction:
                self._next_plain += PLAIN_STEP
            self.stream.write(f"{self.label}: {fraction:.0%}{self._extra(fraction, now, detail)}\n")
            self.stream.flush()

    def finish(self, detail: str = "") -> None:
        """The work is done: the bar's line ends (terminal) or one closing line is printed."""
        if self._finished:
            return
        self._finished = True
        took = duration(int((self._clock() - self._started) * 1000))
        suffix = f" ({detail})" if detail else ""
        if self.terminal:
            self.stream.write(f"\r{self.label}: done in {took}{suffix}\x1b[K\n")
        else:
            self.stream.write(f"{self.label}: done in {took}{suffix}\n")
        self.stream.flush()

    def _extra(self, fraction: float, now: float, detail: str) -> str:
        parts = [detail] if detail else []
        elapsed = now - self._started
        if 0.0 < fraction < 1.0 and elapsed > 0:
            parts.append(f"{duration(round(elapsed / fraction * (1.0 - fraction) * 1000))} left")
        return f" ({', '.join(parts)})" if parts else ""
