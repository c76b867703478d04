"""Specification of the progress reporter: a bar with an ETA on a terminal, a line per tenth in a pipe."""

from __future__ import annotations

import io

from tradebot_tui.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pipe_gets_one_plain_line_per_tenth_with_the_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress("optimize", stream=out, clock=clock)
    for done in range(1, 41):
        clock.now += 1.0  # one evaluation a second
        progress.update(done / 40, f"{done}/40 evaluations")
    progress.finish("40 parameter sets")
    lines = out.getvalue().splitlines()
    assert len(lines) == 10, lines  # 10 % .. 90 %, then the closing line
    assert lines[0] == "optimize: 10% (4/40 evaluations, 36s left)"
    assert lines[-2] == "optimize: 90% (36/40 evaluations, 4s left)"
    assert lines[-1] == "optimize: done in 40s (40 parameter sets)"
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_a_jump_past_several_tenths_prints_one_line() -> None:
    out = io.StringIO()
    progress = Progress("backtest", stream=out, clock=Clock())
    progress.update(0.55)
    assert out.getvalue().splitlines() == ["backtest: 55%"]
    progress.update(0.58)
    assert len(out.getvalue().splitlines()) == 1, "the next line waits for 60 %"


def test_a_terminal_gets_a_bar_redrawn_in_place_and_a_final_line() -> None:
    out, clock = Terminal(), Clock()
    progress = Progress("backtest", stream=out, clock=clock)
    clock.now += 2.0
    progress.update(0.5)
    progress.update(0.6)  # within the redraw interval: not drawn
    clock.now += 2.0
    progress.finish("12 trades")
    text = out.getvalue()
    assert text.count("\r") == 2 and "\n" not in text[:-1]
    assert "██████████████░░░░░░░░░░░░░░  50% (2s left)" in text
    assert text.endswith("\rbacktest: done in 4s (12 trades)\x1b[K\n")
