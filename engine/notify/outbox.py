"""Provides delivery of the notification outbox: retries with backoff and jitter, rate limits, coalescing.

The outbox is the ``notification_outbox`` table of the store. Producers only insert rows (a fast
local write), so the engine never waits on Telegram. :class:`OutboxSender` runs as its own task:
it takes the due rows, joins consecutive ones into as few messages as fit Telegram's 4096-character
limit, and sends each message to every configured chat.

Delivery rules:

* Success in at least one chat marks the rows ``sent``. Delivery is at least once: a row whose
  send succeeded in one chat but not yet in another is retried only to the missing chats while the
  process runs; after a restart it may be repeated in a chat that already had it.
* ``429 Too Many Requests`` (``RetryAfter``): the rows are due again after ``retry_after`` seconds;
  never counted towards giving up, and the sender pauses the round.
* Network errors, timeouts and 5xx replies: retried after ``RetryPolicy.delay_s`` (exponential
  backoff with jitter); after ``max_attempts`` attempts the rows are marked ``failed`` and an
  error is logged.
* Refusals that a retry cannot fix (400 Bad Request, 403 Forbidden, 401/404 token rejected, chat
  migrated) end delivery to that chat at once, logged as an error.

Rate limits (kept deliberately simple): at most one message per ``private_chat_interval_s`` to a
private chat (Telegram: about 1 msg/s) and one per ``group_chat_interval_s`` to a group (negative
chat id; Telegram: 20 msgs/min). Coalescing keeps bursts well inside Telegram's global 30 msgs/s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from telegram import Bot, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter, TelegramError

from engine.domain.backoff import exponential_ceiling_s
from engine.notify.formatting import coalesce, join_texts
from engine.store.records import OutboxMessage

logger = logging.getLogger(__name__)

LAST_ERROR_MAX_CHARS = 500


def wall_ms() -> int:
    """Wall-clock UTC ms: outbox scheduling is about real network time, not the trading clock."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter.

    Attributes:
        base_delay_s: delay after the first failure (seconds).
        max_delay_s: cap of the un-jittered delay (seconds).
        max_attempts: attempts before giving up; 0 means never give up.
        jitter_ratio: ratio in [0, 1]; the delay is scaled by a uniform factor in
            ``[1 - jitter_ratio, 1 + jitter_ratio]`` so many clients do not retry in step.
    """

    base_delay_s: float = 2.0
    max_delay_s: float = 300.0
    max_attempts: int = 8
    jitter_ratio: float = 0.2

    def delay_s(self, failed_attempts: int, rng: random.Random) -> float:
        """Seconds to wait after the ``failed_attempts``-th consecutive failure (>= 1)."""
        raw = exponential_ceiling_s(failed_attempts, self.base_delay_s, self.max_delay_s)
        return max(0.0, raw * rng.uniform(1.0 - self.jitter_ratio, 1.0 + self.jitter_ratio))

    def gives_up_after(self, attempts: int) -> bool:
        """True when ``attempts`` attempts (all failed) are the last allowed."""
        return self.max_attempts > 0 and attempts >= self.max_attempts


class OutboxStore(Protocol):
    """The store methods the sender uses (``engine.store.Store`` provides them)."""

    def transaction(self) -> AbstractAsyncContextManager[None]: ...

    async def due_notifications(self, now: int, limit: int = 50) -> list[OutboxMessage]: ...

    async def mark_notification_sent(self, message_id: int, sent_ms: int) -> None: ...

    async def mark_notification_failed(
        self, message_id: int, error: str, *, next_attempt_ms: int | None, give_up: bool = False
    ) -> None: ...


class ChatRateLimiter:
    """Spaces messages per chat: ``private_interval_s`` for private chats, ``group_interval_s`` for groups."""

    def __init__(
        self,
        private_interval_s: float,
        group_interval_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._private_interval_s = private_interval_s
        self._group_interval_s = group_interval_s
        self._monotonic = monotonic
        self._next_slot: dict[int, float] = {}

    def reserve(self, chat_id: int) -> float:
        """Books the next free slot for ``chat_id``; returns the seconds to wait before sending."""
        now = self._monotonic()
        slot = max(now, self._next_slot.get(chat_id, now))
        interval = self._group_interval_s if chat_id < 0 else self._private_interval_s
        self._next_slot[chat_id] = slot + interval
        return slot - now

    async def wait_turn(self, chat_id: int) -> None:
        """Sleeps until ``chat_id`` may receive the next message, and books that slot."""
        delay_s = self.reserve(chat_id)
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    def pause(self, chat_id: int, seconds: float) -> None:
        """No message to ``chat_id`` for ``seconds`` (after a 429)."""
        self._next_slot[chat_id] = max(self._next_slot.get(chat_id, 0.0), self._monotonic() + seconds)


class _Outcome:
    SENT = "sent"
    RETRY_LATER = "retry_later"  # transient: network, timeout, 5xx
    FLOOD = "flood"  # 429 with retry_after
    REFUSED = "refused"  # permanent for this chat


def retry_after_seconds(error: RetryAfter) -> float:
    """``retry_after`` in seconds, whether python-telegram-bot gives an int or a timedelta."""
    value: object = error._retry_after  # noqa: SLF001 - always a timedelta; the property warns in v22
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)  # type: ignore[arg-type]


class OutboxSender:
    """Delivers due outbox rows to ``chat_ids``; run :meth:`run` as a task.

    Args:
        store: where the rows live.
        bot_ready: returns the initialised bot, or None while not connected (rows then wait).
        chat_ids: recipients of every alert.
        retry: backoff policy for transient failures.
        limiter: per-chat spacing.
        redact: masks secrets in error texts before they are logged or stored.
        coalesce_window_s: after being woken, wait this long so a burst is sent as one message.
        idle_poll_s: how often to look for rows that became due while nothing woke the sender.
        batch_limit: rows taken per round.
    """

    def __init__(
        self,
        store: OutboxStore,
        bot_ready: Callable[[], Bot | None],
        chat_ids: Sequence[int],
        *,
        retry: RetryPolicy,
        limiter: ChatRateLimiter,
        redact: Callable[[str], str],
        coalesce_window_s: float = 0.5,
        idle_poll_s: float = 1.0,
        batch_limit: int = 50,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._bot_ready = bot_ready
        self._chat_ids = tuple(chat_ids)
        self._retry = retry
        self._limiter = limiter
        self._redact = redact
        self._coalesce_window_s = coalesce_window_s
        self._idle_poll_s = idle_poll_s
        self._batch_limit = batch_limit
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        # Chats that already got a row (or refused it for good), so a retry skips them.
        self._done_chats: dict[int, set[int]] = {}
        self._delivered_chats: dict[int, set[int]] = {}
        self.messages_sent = 0

    def wake(self) -> None:
        """Tells the sender new rows are waiting (called after an insert)."""
        self._wake.set()

    async def run(self) -> None:
        """Delivers forever; cancel the task to stop."""
        while True:
            woken = await self._sleep(self._idle_poll_s)
            if woken and self._coalesce_window_s > 0:
                await asyncio.sleep(self._coalesce_window_s)
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the sender must outlive any single failure
                logger.error("Telegram outbox round failed: %s", self._redact(repr(error)))

    async def _sleep(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            return False
        finally:
            self._wake.clear()
        return True

    async def deliver_due(self) -> int:
        """Sends every due row once (one round); returns the number of Telegram messages sent."""
        bot = self._bot_ready()
        if bot is None or not self._chat_ids:
            return 0
        rows = await self._store.due_notifications(wall_ms(), limit=self._batch_limit)
        sent = 0
        for group in coalesce([row.text for row in rows]):
            batch = [rows[index] for index in group]
            delivered, stop_round = await self._deliver_batch(bot, batch)
            sent += delivered
            if stop_round:
                break
        return sent

    async def _deliver_batch(self, bot: Bot, batch: list[OutboxMessage]) -> tuple[int, bool]:
        """Sends one coalesced message to every chat still missing it; returns (sent, stop the round)."""
        text = join_texts(row.text for row in batch)
        pending_chats = [
            chat for chat in self._chat_ids if not all(chat in self._done_chats.get(row.id, ()) for row in batch)
        ]
        sent = 0
        transient: tuple[str, str] | None = None  # (outcome, error text)
        flood_s = 0.0
        for chat_id in pending_chats:
            await self._limiter.wait_turn(chat_id)
            outcome, error_text, wait_s = await self._send(bot, chat_id, text)
            if outcome == _Outcome.SENT:
                sent += 1
                self.messages_sent += 1
                for row in batch:
                    self._done_chats.setdefault(row.id, set()).add(chat_id)
                    self._delivered_chats.setdefault(row.id, set()).add(chat_id)
            elif outcome == _Outcome.REFUSED:
                logger.error("Telegram refused an alert for chat %s: %s", chat_id, error_text)
                for row in batch:
                    self._done_chats.setdefault(row.id, set()).add(chat_id)
            else:
                if outcome == _Outcome.FLOOD:
                    self._limiter.pause(chat_id, wait_s)
                    flood_s = max(flood_s, wait_s)
                transient = (outcome, error_text)
                break
        if transient is None:
            await self._finish(batch)
            return sent, False
        await self._reschedule(batch, transient[0], transient[1], flood_s)
        return sent, True

    async def _send(self, bot: Bot, chat_id: int, text: str) -> tuple[str, str, float]:
        try:
            await bot.send_message(
                chat_id=chat_id,
                text=text,
                parse_mode=ParseMode.HTML,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except RetryAfter as error:
            return _Outcome.FLOOD, self._describe(error), retry_after_seconds(error)
        except (BadRequest, Forbidden, InvalidToken, ChatMigrated) as error:
            return _Outcome.REFUSED, self._describe(error), 0.0
        except TelegramError as error:  # NetworkError, TimedOut, 5xx
            return _Outcome.RETRY_LATER, self._describe(error), 0.0
        return _Outcome.SENT, "", 0.0

    def _describe(self, error: BaseException) -> str:
        return self._redact(f"{type(error).__name__}: {error}")[:LAST_ERROR_MAX_CHARS]

    async def _finish(self, batch: list[OutboxMessage]) -> None:
        async with self._store.transaction():
            await self._mark_finished(batch)

    async def _mark_finished(self, batch: list[OutboxMessage]) -> None:
        now = wall_ms()
        for row in batch:
            self._done_chats.pop(row.id, None)
            if self._delivered_chats.pop(row.id, None):
                await self._store.mark_notification_sent(row.id, now)
            else:
                await self._store.mark_notification_failed(
                    row.id, "refused by every chat", next_attempt_ms=None, give_up=True
                )

    async def _reschedule(self, batch: list[OutboxMessage], outcome: str, error_text: str, flood_s: float) -> None:
        async with self._store.transaction():
            await self._mark_rescheduled(batch, outcome, error_text, flood_s)

    async def _mark_rescheduled(
        self, batch: list[OutboxMessage], outcome: str, error_text: str, flood_s: float
    ) -> None:
        now = wall_ms()
        for row in batch:
            attempts = row.attempts + 1
            if outcome == _Outcome.FLOOD:
                delay_s, give_up = flood_s, False
            else:
                delay_s, give_up = self._retry.delay_s(attempts, self._rng), self._retry.gives_up_after(attempts)
            if give_up:
                self._done_chats.pop(row.id, None)
                delivered = self._delivered_chats.pop(row.id, None)
                if delivered:
                    await self._store.mark_notification_sent(row.id, now)
                    continue
                logger.error(
                    "Telegram alert %s (%s) failed for good after %s attempts: %s",
                    row.id,
                    row.kind,
                    attempts,
                    error_text,
                )
            else:
                logger.warning(
                    "Telegram alert %s (%s) not sent (attempt %s), retrying in %.1f s: %s",
                    row.id,
                    row.kind,
                    attempts,
                    delay_s,
                    error_text,
                )
            await self._store.mark_notification_failed(
                row.id, error_text, next_attempt_ms=now + int(delay_s * 1000), give_up=give_up
            )
