"""Provides the guard that keeps the engine running when the console's terminal goes away.

On SIGHUP (SSH dropped, terminal closed) the default would be to die on the spot, or for
Textual to fail writing to a dead terminal. Instead the guard, in order:

1. at once, in the signal handler: marks the console detached, stops Textual's input thread
   and points stdin/stdout/stderr at ``/dev/null`` so no write blocks or fails;
2. then on the loop: logs a critical line, publishes a ``ConsoleDisconnected`` critical event
   on the engine bus (Telegram forwards critical events) and stops rendering.

Nothing is submitted to the engine: it keeps running and protecting positions (stops,
trailing stops, breakers) until SIGTERM, which stops it cleanly. SIGTERM is also handled when
the terminal is still there.

A console attached to the engine service has nothing to keep alive: after step 1 it simply detaches and
exits (SIGTERM too), and the service trades on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from engine.domain.events import Event, Severity

if TYPE_CHECKING:
    from tradebot_tui.app import TradebotApp

logger = logging.getLogger(__name__)



@dataclass(frozen=True, kw_only=True)
class ConsoleDisconnected(Event):
    """The console's terminal was lost (SIGHUP); the engine goes on. ``pid``: the console's process."""

    pid: int
    severity: Severity = Severity.CRITICAL


DISCONNECTED_KIND = ConsoleDisconnected.__name__


class TerminalLossGuard:
    """SIGHUP and SIGTERM handling for one running console."""

    def __init__(self, app: TradebotApp) -> None:
        self.app = app
        self.detached = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_hup: Any = None
        self._installed = False

    def install(self) -> None:
        """Install the handlers (call on the app's loop, in the main thread)."""
        self._loop = asyncio.get_running_loop()
        # signal.signal rather than loop.add_signal_handler: it runs before any queued callback,
        # so the terminal is silenced before Textual's threads can trip over the dead terminal.
        self._previous_hup = signal.signal(signal.SIGHUP, self._on_sighup)
        self._loop.add_signal_handler(signal.SIGTERM, self._on_sigterm)
        self._installed = True

    def uninstall(self) -> None:
        if not self._installed:
            return
        self._installed = False
        signal.signal(signal.SIGHUP, self._previous_hup if self._previous_hup is not None else signal.SIG_DFL)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_signal_handler(signal.SIGTERM)

    def _on_sighup(self, signum: int, frame: FrameType | None) -> None:
        if self.detach(silence_terminal=not self.app.is_headless) and self._loop is not None:
            self._loop.call_soon_threadsafe(self.leave if self.app.attached else self.announce)

    def leave(self) -> None:
        """An attached console whose terminal is gone detaches from the service and exits."""
        logger.warning("console terminal lost (SIGHUP): detaching; the engine service keeps trading")
        self.app.call_later(self.app.shutdown)

    def _on_sigterm(self) -> None:
        logger.warning("SIGTERM: %s", "detaching the console" if self.app.attached
                       else "stopping the engine and the console")
        self.app.call_later(self.app.shutdown)

    def detach(self, *, silence_terminal: bool) -> bool:
        """Stop using the terminal; True the first time. Signal-safe: no logging, no asyncio calls."""
        if self.detached:
            return False
        self.detached = True
        if silence_terminal:
            _silence_terminal(self.app)
        return True

    def announce(self) -> None:
        """Log and publish the disconnection (runs on the loop after :meth:`detach`)."""
        message = (
            "Console terminal lost (SIGHUP). The engine keeps running and protecting positions; "
            "stop it with SIGTERM or reattach via tmux next time."
        )
        logger.critical(message)
        if self.app.engine is not None:
            event = ConsoleDisconnected(time_ms=int(time.time() * 1000), message=message, pid=os.getpid())
            self.app.engine.bus.publish_event(event)

    def handle_hangup(self) -> None:
        """What SIGHUP does, callable from tests without sending a signal (never silences a test's fds)."""
        if self.detach(silence_terminal=False):
            self.announce()


def _silence_terminal(app: TradebotApp) -> None:
    driver: Any = app._driver
    exit_event = getattr(driver, "exit_event", None)
    if exit_event is not None:
        exit_event.set()  # ends Textual's input thread before it reads EIO from the dead terminal
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    writer = getattr(driver, "_writer_thread", None)
    if writer is not None and not writer.is_alive():  # died on a write to the dead terminal
        from textual.drivers._writer_thread import WriterThread

        replacement = WriterThread(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
        replacement.start()
        driver._writer_thread = replacement
