"""Provides the Telegram notifier: engine events to the outbox, outbox to Telegram, commands back to the engine.

Lifecycle (inside the engine's running loop; never ``Application.run_polling``, which owns the loop)::

    notifier = create_notifier(settings, store, engine, clock)   # None when no token is set
    if notifier is not None:
        await notifier.start()      # returns at once; connects in the background
    ...
    await notifier.stop()

Tasks started by :meth:`TelegramNotifier.start`:

* events: takes every event from the bus subscription ``"telegram"``, formats it
  (:mod:`engine.notify.formatting`) and inserts it into the outbox table. This is the only thing
  that happens per event, so a Telegram outage never slows the engine: rows simply wait.
* connect: ``initialize`` (getMe), ``start`` and ``updater.start_polling`` with backoff until it
  works; a rejected token is logged once and the notifier stays offline (rows keep waiting).
* sender: :class:`engine.notify.outbox.OutboxSender` (retries, rate limits, coalescing). Rows
  left pending by a previous run are sent first.
* daily report: at ``telegram.daily_report_utc`` of the injected clock's day, a report row.

Wiring notes for the runtime: call ``start()`` before the engine publishes (the bus subscription
begins at start), ``stop()`` before closing the store; the clock decides the daily report, so a
replay clock yields a report per simulated day. Commands arrive as ``engine.submit(Halt|Resume|
EmergencyExit(source="telegram:<chat id>"))``; their outcome should come back as events
(``TradingStateChanged``, ``EmergencyExitStarted``/``Completed``), which are sent as alerts. Risk
changes (``/set``, ``/resume_breaker``) need the engine's :class:`engine.runtime.risk_gate.RiskChangeGate`
(``risk_gate``); without one they are refused. :mod:`engine.runtime.remote_control` does this wiring for
:class:`engine.runtime.engine.TradingEngine`. ``stop()`` gives alerts already queued one last delivery
round (at most ``NotifierTuning.stop_flush_s``) when connected; the rest wait for the next run.

The bot token never reaches a log line or an exception text: the HTTP client loggers (which
print request URLs, and a Bot API URL contains the token) are set to WARNING, the token is
registered with :func:`engine.security.redaction.install_secret_redaction`, and errors are
redacted before they are logged or stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram import Bot, Update
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application, ContextTypes

from engine.config import Settings, TelegramConfig
from engine.domain.bus import EngineHandle, Subscription
from engine.domain.clock import Clock
from engine.domain.events import Event
from engine.domain.ports import RiskGate
from engine.notify.commands import AuditSink, ExitConfirmations, TelegramCommands
from engine.notify.formatting import format_event
from engine.notify.outbox import ChatRateLimiter, OutboxSender, RetryPolicy, wall_ms
from engine.notify.report import DailySchedule
from engine.notify.views import DailyTally, format_daily_report
from engine.security.audit import AuditLog
from engine.security.redaction import SecretRedactor, install_secret_redaction
from engine.store import Store

logger = logging.getLogger(__name__)

TELEGRAM_BASE_URL = "https://api.telegram.org/bot"
# These loggers write request URLs (httpx at INFO, httpcore/telegram at DEBUG) and a URL holds the token.
HTTP_LOGGERS = ("httpx", "httpcore", "telegram")
SUBSCRIPTION_NAME = "telegram"
REPORT_KIND = "DailyReport"


@dataclass(frozen=True)
class NotifierTuning:
    """Timing knobs; the defaults suit production, tests pass small values.

    Attributes:
        poll_timeout_s: getUpdates long-poll timeout (seconds).
        retry: backoff for failed alert sends.
        connect_retry: backoff for (re)connecting at start; ``max_attempts`` 0 = keep trying.
        private_chat_interval_s: spacing of messages to one private chat (Telegram: ~1/s).
        group_chat_interval_s: spacing of messages to one group (Telegram: 20/min).
        coalesce_window_s: wait after new rows so a burst goes out as one message.
        idle_poll_s: how often the sender looks for rows whose retry time has come.
        report_check_interval_s: how often the daily-report schedule looks at the clock.
        confirm_window_s: how long an /exit_all confirmation stays valid.
        submit_timeout_s: how long a command handler waits for ``engine.submit``.
        stop_flush_s: at stop, how long one last delivery of queued alerts may take (0 = none).
    """

    poll_timeout_s: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    connect_retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(base_delay_s=2.0, max_delay_s=120.0, max_attempts=0)
    )
    private_chat_interval_s: float = 1.0
    group_chat_interval_s: float = 3.0
    coalesce_window_s: float = 0.5
    idle_poll_s: float = 1.0
    report_check_interval_s: float = 1.0
    confirm_window_s: float = 60.0
    submit_timeout_s: float = 5.0
    stop_flush_s: float = 3.0


class TelegramNotifier:
    """Alerts and remote control over Telegram for one running engine.

    Args:
        config: the ``telegram`` settings section; must have a token.
        store: the open store (outbox table and audit log).
        engine: the running engine.
        clock: the engine clock, for the daily report schedule and audit times.
        tuning: timing knobs.
        audit: where commands are audited; defaults to the store's hash-chained AuditLog.
        risk_gate: authenticates ``/set`` and ``/resume_breaker``; None refuses them.
    """

    def __init__(
        self,
        config: TelegramConfig,
        store: Store,
        engine: EngineHandle,
        clock: Clock,
        *,
        tuning: NotifierTuning | None = None,
        audit: AuditSink | None = None,
        risk_gate: RiskGate | None = None,
    ) -> None:
        if config.token is None or not config.enabled:
            raise ValueError("TelegramNotifier needs telegram.token; use create_notifier to get None instead")
        self._config = config
        self._token = config.token.get_secret_value().strip()
        self._store = store
        self._engine = engine
        self._clock = clock
        self._tuning = tuning or NotifierTuning()
        self._audit: AuditSink = audit or AuditLog(store)
        self._redactor = SecretRedactor([self._token])
        self._chat_ids = tuple(config.allowed_chat_ids)
        self._tally = DailyTally(since_ms=clock.now_ms())
        self._application: Application[Any, Any, Any, Any, Any, Any] | None = None
        self._subscription: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: asyncio.Future[None] | None = None
        self._connected = asyncio.Event()
        self.status = "stopped"  # stopped | connecting | connected | token_rejected
        self.sender = OutboxSender(
            store,
            self._ready_bot,
            self._chat_ids,
            retry=self._tuning.retry,
            limiter=ChatRateLimiter(self._tuning.private_chat_interval_s, self._tuning.group_chat_interval_s),
            redact=self._redactor.redact,
            coalesce_window_s=self._tuning.coalesce_window_s,
            idle_poll_s=self._tuning.idle_poll_s,
        )
        self.commands = TelegramCommands(
            engine,
            self._audit,
            self._chat_ids,
            self.report_text,
            ExitConfirmations(self._tuning.confirm_window_s),
            clock.now_ms,
            self._tuning.submit_timeout_s,
            risk_gate=risk_gate,
        )

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def connected(self) -> asyncio.Event:
        """Set while the bot is initialised and polling."""
        return self._connected

    async def start(self) -> None:
        """Subscribes to the bus and starts the background tasks; never waits on Telegram."""
        if self._tasks:
            return
        quiet_http_loggers()
        install_secret_redaction([self._token])
        if not self._chat_ids:
            logger.warning("telegram.allowed_chat_ids is empty: alerts go nowhere and every command is refused")
        self._application = self._build_application()
        self._subscription = self._engine.bus.subscribe(SUBSCRIPTION_NAME)
        self.status = "connecting"
        self._spawn(self._consume_events(self._subscription), "telegram-events")
        self._spawn(self._connect(), "telegram-connect")
        self._spawn(self.sender.run(), "telegram-sender")
        self._spawn(self._daily_reports(), "telegram-daily-report")
        self.sender.wake()  # rows left pending by a previous run

    async def stop(self) -> None:
        """Stops polling and the tasks; events already published are written to the outbox first.

        Call it before closing the store.
        """
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._inflight is not None:
            await asyncio.gather(self._inflight, return_exceptions=True)
            self._inflight = None
        if self._subscription is not None:
            await self._enqueue_events(self._subscription.drain_events())
            self._subscription.close()
            self._subscription = None
        await self._flush_outbox()
        # Bounded: python-telegram-bot's updater waits for its pending long poll, which a Bot API that stops
        # answering (or a loaded machine) can hold open; stopping the engine must not wait on it for ever.
        try:
            await asyncio.wait_for(self._shutdown_application(), 2 * self._config.request_timeout_s)
        except TimeoutError:
            logger.warning("Telegram shutdown did not finish within %.0f s; abandoned",
                           2 * self._config.request_timeout_s)
        self.status = "stopped"

    async def _flush_outbox(self) -> None:
        """One last bounded delivery round, so the alerts of a short run are not left for the next one."""
        if self._tuning.stop_flush_s <= 0 or not self._connected.is_set():
            return
        try:
            await asyncio.wait_for(self.sender.deliver_due(), self._tuning.stop_flush_s)
        except Exception as error:  # noqa: BLE001 - undelivered rows stay pending for the next run
            logger.warning("Telegram: queued alerts not flushed at stop (%s)", type(error).__name__)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coroutine, name=name))

    def _build_application(self) -> Application[Any, Any, Any, Any, Any, Any]:
        timeout = self._config.request_timeout_s
        application = (
            Application.builder()
            .token(self._token)
            .base_url(bot_api_base_url(self._config.base_url))
            .base_file_url(bot_api_base_url(self._config.base_url).removesuffix("/bot") + "/file/bot")
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .write_timeout(timeout)
            .pool_timeout(timeout)
            .get_updates_connect_timeout(timeout)
            .get_updates_read_timeout(timeout + self._tuning.poll_timeout_s)
            .get_updates_write_timeout(timeout)
            .get_updates_pool_timeout(timeout)
            .job_queue(None)
            .build()
        )
        for handler, group in self.commands.handlers():
            application.add_handler(handler, group)
        application.add_error_handler(self._on_handler_error)
        return application

    async def _connect(self) -> None:
        """initialize → start → start_polling, retried with backoff while Telegram is unreachable."""
        application = self._application
        assert application is not None
        rng = random.Random()
        failures = 0
        while True:
            try:
                await application.initialize()
                break
            except InvalidToken:
                # python-telegram-bot's message for this error quotes the token: never log it.
                self.status = "token_rejected"
                logger.error("Telegram rejected the bot token: alerts stay queued in the outbox, commands are off")
                return
            except TelegramError as error:
                failures += 1
                delay = self._tuning.connect_retry.delay_s(failures, rng)
                logger.warning(
                    "Telegram unreachable at start (%s); retrying in %.1f s", self._redactor.redact(str(error)), delay
                )
                await asyncio.sleep(delay)
        await application.start()
        updater = application.updater
        assert updater is not None
        await updater.start_polling(
            timeout=dt.timedelta(seconds=self._tuning.poll_timeout_s),
            allowed_updates=[Update.MESSAGE],
            # Commands typed while the bot was offline are dropped, not executed late.
            drop_pending_updates=True,
            error_callback=self._on_polling_error,
        )
        self.status = "connected"
        self._connected.set()
        self.sender.wake()
        logger.info("Telegram notifier connected; alerts to %d chat(s)", len(self._chat_ids))

    async def _shutdown_application(self) -> None:
        application, self._application = self._application, None
        self._connected.clear()
        if application is None:
            return
        try:
            if application.updater is not None and application.updater.running:
                await application.updater.stop()
            if application.running:
                await application.stop()
            await application.shutdown()
            # An application whose getMe never succeeded is not "initialised", but its HTTP clients are open.
            await application.bot.shutdown()
        except Exception as error:  # noqa: BLE001 - shutting down must not fail the engine's shutdown
            logger.warning("Telegram shutdown: %s", self._redactor.redact(repr(error)))

    def _ready_bot(self) -> Bot | None:
        if self._application is None or not self._connected.is_set():
            return None
        bot: Bot = self._application.bot
        return bot

    def _on_polling_error(self, error: TelegramError) -> None:
        logger.warning("Telegram polling failed: %s", self._redactor.redact(f"{type(error).__name__}: {error}"))

    async def _on_handler_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        error = context.error
        logger.error(
            "Telegram command handler failed: %s",
            self._redactor.redact(f"{type(error).__name__}: {error}" if error else "unknown error"),
        )

    # --- events and reports ----------------------------------------------------------------------

    async def _consume_events(self, subscription: Subscription) -> None:
        while True:
            first = await subscription.next_event()
            # Shielded so that stop() cancelling this task cannot roll back events already taken off the bus.
            self._inflight = asyncio.ensure_future(self._enqueue_events([first, *subscription.drain_events()]))
            await asyncio.shield(self._inflight)

    async def _enqueue_events(self, events: list[Event]) -> None:
        rows = []
        for event in events:
            self._tally.record(event)
            text = format_event(event)
            if text is not None:
                rows.append((event.kind, text))
        if not rows:
            return
        created = wall_ms()
        try:
            async with self._store.transaction():
                for kind, text in rows:
                    await self._store.enqueue_notification(kind, text, created_ms=created)
        except Exception as error:  # noqa: BLE001 - a full disk must not kill the consumer task
            logger.error("could not queue %d Telegram alert(s): %r", len(rows), error)
            return
        self.sender.wake()

    def report_text(self) -> str:
        """The daily report as of now (``engine.domain.snapshot()`` plus events tallied since the last report)."""
        return format_daily_report(self._engine.snapshot(), self._tally, self._clock.now_ms())

    async def send_daily_report(self) -> None:
        """Queues the daily report and starts a new tally."""
        text = self.report_text()
        self._tally = DailyTally(since_ms=self._clock.now_ms())
        await self._store.enqueue_notification(REPORT_KIND, text, created_ms=wall_ms())
        self.sender.wake()

    async def _daily_reports(self) -> None:
        schedule = DailySchedule(self._config.daily_report_utc, self._clock.now_ms())
        while True:
            await asyncio.sleep(self._tuning.report_check_interval_s)
            if schedule.due(self._clock.now_ms()):
                try:
                    await self.send_daily_report()
                except Exception as error:  # noqa: BLE001
                    logger.error("daily report failed: %r", error)


def create_notifier(
    settings: Settings,
    store: Store,
    engine: EngineHandle,
    clock: Clock,
    *,
    tuning: NotifierTuning | None = None,
    risk_gate: RiskGate | None = None,
) -> TelegramNotifier | None:
    """The notifier for ``settings.telegram``, or None when no token is configured (Telegram off).

    Args:
        risk_gate: the engine's risk-change gate, for ``/set`` and ``/resume_breaker``.
    """
    if not settings.telegram.enabled:
        logger.info("Telegram is off (no telegram.token configured)")
        return None
    return TelegramNotifier(settings.telegram, store, engine, clock, tuning=tuning, risk_gate=risk_gate)


def bot_api_base_url(base_url: str) -> str:
    """The Bot API URL prefix that python-telegram-bot appends ``<token>/<method>`` to.

    ``""`` means Telegram's own server. A self-hosted server may be given as ``http://host:8081``
    or ``http://host:8081/bot``; both become ``http://host:8081/bot``.
    """
    if not base_url.strip():
        return TELEGRAM_BASE_URL
    url = base_url.strip().rstrip("/")
    return url if url.endswith("/bot") else url + "/bot"


def quiet_http_loggers() -> None:
    """Raises the HTTP client loggers to WARNING, where no request URL (and so no token) is logged."""
    for name in HTTP_LOGGERS:
        http_logger = logging.getLogger(name)
        if http_logger.level < logging.WARNING:
            http_logger.setLevel(logging.WARNING)
