"""Provides run_backtest_in_process: the backtest screen's runs happen in a child process, never in the console's.

A backtest is seconds of pure CPU; in a thread of the console it holds the GIL and a halt key waited up to 8 s
for the screen to redraw (issue 16). Here the console's worker thread only waits on a pipe (which releases the
GIL): the child (``python -m tradebot_tui.backtest_process``) reads one JSON request on stdin, runs
:func:`tradebot_tui.backtest_runner.run_backtest` and writes JSON lines on stdout - ``{"progress": r}`` as the
bars advance, then ``{"run": ...}`` or ``{"error": "one line"}``. Cancelling kills the child.

The child gets the console's settings without any secret (a backtest needs no keys) and in paper mode.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from typing import Any

from engine.config import Settings
from engine.runtime.api.wire import decode_record, encode
from tradebot_tui.backtest_runner import BacktestRequest, BacktestRun, CancelCheck, ProgressCallback

CANCEL_POLL_S = 0.1  # how often a waiting run looks at the cancel flag
SECRET_FIELDS = {"exchange": {"api_key", "api_secret"}, "telegram": {"token"}, "api": {"token"}}


class BacktestFailed(RuntimeError):
    """The child reported an error (its one line) or died."""


class BacktestCancelled(RuntimeError):
    """The run was cancelled; the child was stopped."""


def child_settings(settings: Settings) -> dict[str, Any]:
    data = settings.model_dump(mode="json", exclude=SECRET_FIELDS)
    data["exchange"]["mode"] = "paper"
    return data


def run_backtest_in_process(settings: Settings, request: BacktestRequest, progress: ProgressCallback,
                            cancel: CancelCheck) -> BacktestRun:
    """Run one backtest in a child process (blocking: call it from a thread worker, as the screen does)."""
    payload = json.dumps({"settings": child_settings(settings), "request": encode(request)})
    # stderr goes to a file: a chatty child must never block on a full pipe nobody reads.
    errors = tempfile.TemporaryFile()
    child = subprocess.Popen([sys.executable, "-m", "tradebot_tui.backtest_process"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=errors)
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(payload.encode())
        child.stdin.close()
        pending = b""
        while True:
            if cancel():
                raise BacktestCancelled("backtest cancelled")
            ready, _, _ = select.select([child.stdout], [], [], CANCEL_POLL_S)
            if not ready:
                continue
            chunk = os.read(child.stdout.fileno(), 65_536)
            if not chunk:
                child.wait()
                errors.seek(0)
                last = errors.read().decode(errors="replace").strip().splitlines()[-1:]
                raise BacktestFailed(f"the backtest process ended early: {(last or [f'exit {child.wait()}'])[0]}")
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                message = json.loads(line)
                if "progress" in message:
                    progress(float(message["progress"]))
                elif "run" in message:
                    return decode_record(BacktestRun, message["run"], "run")
                else:
                    raise BacktestFailed(str(message.get("error", "unknown reply")))
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdout.close()
        errors.close()


def main() -> int:
    """The child: one request in on stdin, JSON lines out (see the module docstring)."""
    from tradebot_tui.backtest_runner import run_backtest

    def send(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    try:
        data = json.loads(sys.stdin.read())
        settings = Settings.model_validate(data["settings"])
        request = decode_record(BacktestRequest, data["request"], "request")
        run = run_backtest(settings, request, lambda ratio: send({"progress": ratio}), lambda: False)
    except Exception as error:  # one line for the screen; the console shows it as "Backtest failed: ..."
        send({"error": f"{type(error).__name__}: {error}".splitlines()[0]})
        return 1
    send({"run": encode(run)})
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
