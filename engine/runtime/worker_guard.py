"""Provides the runtime's failure handling: nothing the engine runs dies silently.

:class:`engine.runtime.engine.TradingEngine` uses it two ways:

* **A symbol worker fails** (its candle processing raises): :meth:`WorkerGuard.run_worker` isolates that
  symbol. It stops trading (later candles are taken off its queue and counted, never decided on), its open
  position is left as it is (a live stop rests on the exchange; no order is sent from here), it is listed
  in ``EngineSnapshot.failed_symbols``, the exception is logged once with its traceback and a critical
  ``SystemError`` event is emitted (bus, console, log, Telegram). The other symbols keep trading.
* **One of the engine's own tasks fails** (commands, snapshots, store writer, system health, or the feed
  raising): :func:`wait_for_failure` names it, :meth:`WorkerGuard.engine_failed` logs it and emits a
  critical ``EngineFailed`` event, :func:`wait_for_notifier` gives Telegram a bounded moment to connect so
  the alert goes out at stop, and ``run()`` raises :class:`engine.domain.errors.EngineFailedException` after its
  clean shutdown (``tradebot run --headless`` then exits 1, and systemd restarts it).

Error texts are ``"<ExceptionType>: <text>"`` on one line, with the configured secrets and anything
credential-shaped masked (:class:`engine.security.redaction.SecretRedactor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from engine.domain.errors import EngineFailedException
from engine.domain.events import EngineFailed, Event, SystemError
from engine.security.redaction import SecretRedactor

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.data.live_feed import ClosedCandle

log = logging.getLogger(__name__)

ERROR_TEXT_MAX_CHARS = 300
# How long a failing engine waits for a still-connecting Telegram notifier before it shuts down (seconds);
# once connected, the notifier's own stop flush (NotifierTuning.stop_flush_s) delivers the queued alerts.
NOTIFIER_CONNECT_WAIT_S = 5.0

CandleQueue = asyncio.Queue[tuple["ClosedCandle", int]]
ProcessCandle = Callable[["ClosedCandle", int], Awaitable[object]]


def settings_secrets(settings: Settings) -> list[str]:
    """The secret values of ``settings`` (exchange keys, Telegram and API tokens) that an error text must never hold."""
    values = (settings.exchange.api_key, settings.exchange.api_secret, settings.telegram.token, settings.api.token)
    return [value.get_secret_value() for value in values if value is not None]


class WorkerGuard:
    """Isolates failing symbol workers and reports failed engine tasks, through the engine's ``emit``.

    Args:
        emit: the engine's event publisher (``TradingEngine.emit``).
        now_ms: the engine clock (UTC ms), for event times.
        secrets: values masked in every error text (see :func:`settings_secrets`).

    Attributes:
        failed: symbol -> the error text that stopped it, in failure order.
        skipped: symbol -> candles taken off its queue after it failed (not decided on).
    """

    def __init__(self, emit: Callable[[Event], None], now_ms: Callable[[], int], secrets: Iterable[str] = ()) -> None:
        self._emit = emit
        self._now_ms = now_ms
        self._redactor = SecretRedactor(secrets)
        self.failed: dict[str, str] = {}
        self.skipped: dict[str, int] = {}

    @property
    def failed_symbols(self) -> tuple[str, ...]:
        return tuple(self.failed)

    def describe(self, error: BaseException) -> str:
        """``"<ExceptionType>: <text>"`` on one line, secrets masked, at most ``ERROR_TEXT_MAX_CHARS``."""
        name = type(error).__name__
        text = str(error)
        raw = f"{name}: {text}" if text else name
        clean = " ".join(self._redactor.redact(raw).split())
        return clean if len(clean) <= ERROR_TEXT_MAX_CHARS else clean[: ERROR_TEXT_MAX_CHARS - 1] + "…"

    # ------------------------------------------------------------------------------ symbol workers
    async def run_worker(self, symbol: str, queue: CandleQueue, allowed: asyncio.Event,
                         process: ProcessCandle) -> None:
        """One symbol's worker: its candles one at a time through ``process`` until cancelled.

        ``allowed`` holds the worker before each candle (a paused replay). Once ``process`` raised, the symbol
        is isolated (:meth:`isolate`) and its later candles are only counted in :attr:`skipped`.
        """
        task = asyncio.current_task()
        name = task.get_name() if task is not None else f"worker {symbol}"
        while True:
            candle, received_ns = await queue.get()
            try:
                await allowed.wait()
                if symbol in self.failed:
                    self.skipped[symbol] = self.skipped.get(symbol, 0) + 1
                else:
                    await process(candle, received_ns)
            except Exception as error:  # noqa: BLE001 - one symbol's bug must not stop the others
                self.isolate(symbol, name, error)
            finally:
                queue.task_done()

    def isolate(self, symbol: str, task_name: str, error: BaseException) -> Event:
        """Marks ``symbol`` failed, logs ``error`` with its traceback and emits the critical ``SystemError``."""
        text = self.describe(error)
        self.failed[symbol] = text
        log.error("%s: candle processing failed; %s stops trading, the other symbols go on", task_name, symbol,
                  exc_info=error)
        event = SystemError(
            time_ms=self._now_ms(),
            message=f"{symbol} stopped trading: {text}. The other symbols go on; an open {symbol} position keeps "
            f"its stop. Restart the engine to trade {symbol} again.",
            symbol=symbol, error=text, task=task_name, component=task_name,
        )
        self._emit(event)
        return event

    # -------------------------------------------------------------------------------- engine tasks
    def engine_failed(self, task: asyncio.Task[Any]) -> EngineFailedException:
        """Logs the failed engine task once (with its traceback), emits ``EngineFailed``; the error to raise."""
        name = task.get_name()
        error = None if task.cancelled() else task.exception()
        if error is not None:
            text = self.describe(error)
        else:
            text = "was cancelled" if task.cancelled() else "ended unexpectedly"
        log.error("engine task %s failed: the engine stops", name, exc_info=error)
        self._emit(EngineFailed(
            time_ms=self._now_ms(),
            message=f"Engine stopping: its {name} task failed: {text}. Open positions are left with their stops; "
            "the process exits with an error.",
            task=name, error=text,
        ))
        return EngineFailedException(name, text)


async def wait_for_failure(
    stop: asyncio.Event, critical: Sequence[asyncio.Task[Any]], optional: asyncio.Task[Any]
) -> asyncio.Task[Any] | None:
    """Until ``stop`` is set (None) or a task ends badly (that task; a failure wins over a stop).

    Critical tasks run until cancelled, so one ending at all is a failure; ``optional`` (the feed: a replay
    ends) fails only by raising or being cancelled.
    """
    stop_wait = asyncio.create_task(stop.wait(), name="stop")
    watched = [*critical, optional]
    pending: set[asyncio.Task[Any]] = {stop_wait, *watched}
    try:
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in watched:
                if task in done and (task is not optional or task.cancelled() or task.exception() is not None):
                    return task
            if stop_wait in done:
                return None
    finally:
        stop_wait.cancel()


async def wait_for_notifier(notifier: Any, timeout_s: float = NOTIFIER_CONNECT_WAIT_S) -> None:
    """Gives a still-connecting Telegram notifier up to ``timeout_s`` to connect (so its stop flushes alerts).

    Returns at once without a notifier, when it is connected already, or when it is not trying (token rejected);
    undelivered alerts stay in the outbox for the next run.
    """
    connected = getattr(notifier, "connected", None)
    if not isinstance(connected, asyncio.Event) or connected.is_set():
        return
    if getattr(notifier, "status", None) != "connecting":
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(connected.wait(), timeout_s)
