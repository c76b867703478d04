"""Provides the Telegram command handlers: read-only views, halt/resume, and a confirmed emergency exit.

Commands (only from chats in ``telegram.allowed_chat_ids``):

``/status`` ``/positions`` ``/pnl`` ``/breakers``
    Answered from ``engine.domain.snapshot()``.
``/halt`` ``/resume``
    ``engine.submit(Halt(source="telegram:<chat id>"))`` / ``Resume``; the reply says the command
    was queued, and the engine's ``TradingStateChanged`` event (sent as an alert) says it happened.
    A resume that would lift a latched loss-limit halt or the emergency-exit latch is a breaker
    override: it is confirmed with a code like ``/resume_breaker`` below.
``/exit_all``
    Asks for confirmation with a one-time 4-digit code: the same chat must answer
    ``/confirm <code>`` (``/confirm EXIT <code>`` also works) or reply ``YES <code>`` within the
    confirmation window (60 s); ``/cancel`` or any wrong code abandons it. Only then
    ``EmergencyExit`` is submitted.
``/set KEY VALUE`` ``/resume_breaker NAME``
    A runtime risk change (``SetRiskLimit``, e.g. ``/set risk.max_daily_loss_percent 3``) or a
    breaker override (``ResumeBreaker``; the names of ``/breakers``, including the ``emergency`` and
    ``loss_limit`` latches). The request is checked first (unknown setting or invalid
    value: refused and audited), then the chat is asked to confirm it with a code exactly like
    ``/exit_all``. Only a confirmed request from an allowed chat gets a grant from the engine's
    :class:`engine.runtime.risk_gate.RiskChangeGate` and is submitted; every outcome (authorised, wrong
    code, expired, cancelled) is audited with the old and new value.
``/report``
    The daily report now (does not reset the daily tally).
``/help``, ``/start``
    The list of commands.

A message from any other chat is ignored (no reply) and written to the audit log as
``telegram.unauthorised``; every accepted command is audited as ``telegram.command`` with its
chat id before it is executed.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from telegram import Update
from telegram.constants import ParseMode
from telegram.ext import (
    ApplicationHandlerStop,
    BaseHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from engine.domain.bus import EngineHandle
from engine.domain.commands import Command, EmergencyExit, Halt, Resume, ResumeBreaker, SetRiskLimit
from engine.domain.ports import RiskChangeRefused, RiskGate
from engine.domain.snapshot import EngineSnapshot
from engine.notify import formatting, views
from engine.security.auth import AuthenticationFailed

logger = logging.getLogger(__name__)

AUDIT_ACTION_COMMAND = "telegram.command"
AUDIT_ACTION_UNAUTHORISED = "telegram.unauthorised"
AUDIT_TEXT_MAX_CHARS = 200
CONFIRM_CODE_DIGITS = 4

HELP_TEXT = (
    "<b>tradebot commands</b>\n"
    "/status – trading state, equity, P&amp;L\n"
    "/positions – open positions\n"
    "/pnl – profit and loss today\n"
    "/breakers – circuit breakers\n"
    "/halt – stop new entries\n"
    "/resume – allow new entries (lifting a latched loss limit or emergency exit asks for confirmation)\n"
    "/exit_all – close everything (asks for confirmation)\n"
    "/set KEY VALUE – change a risk setting, e.g. /set risk.max_daily_loss_percent 3 (asks for confirmation)\n"
    "/resume_breaker NAME – reset a tripped breaker or latch, e.g. emergency (asks for confirmation)\n"
    "/report – the daily report now"
)

_YES_PATTERN = re.compile(r"^\s*yes\b\s*(\d+)?\s*$", re.IGNORECASE)


class AuditSink(Protocol):
    """Appends one audit record (``engine.security.audit.AuditLog`` has this shape)."""

    async def append(self, actor: str, action: str, detail: dict[str, Any], now_ms: int) -> Any: ...


@dataclass(frozen=True)
class PendingExit:
    """A confirmation waiting for its code; ``action`` None is the emergency exit, else the command asked for."""

    code: str
    expires_at_s: float  # monotonic seconds
    action: Any = None


class ExitConfirmations:
    """One pending confirmation per chat (an emergency exit or a risk change), valid for ``window_s`` seconds."""

    def __init__(self, window_s: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._monotonic = monotonic
        self._pending: dict[int, PendingExit] = {}

    def ask(self, chat_id: int, action: Any = None) -> str:
        """Starts (or replaces) the confirmation of ``action`` for ``chat_id``; returns the code to repeat."""
        code = f"{secrets.randbelow(10**CONFIRM_CODE_DIGITS):0{CONFIRM_CODE_DIGITS}d}"
        self._pending[chat_id] = PendingExit(code, self._monotonic() + self.window_s, action)
        return code

    def answer(self, chat_id: int, code: str | None) -> str:
        """Consumes the pending confirmation: ``confirmed``, ``wrong_code``, ``expired`` or ``none``."""
        return self.take(chat_id, code)[0]

    def take(self, chat_id: int, code: str | None) -> tuple[str, Any]:
        """Like :meth:`answer`, also returning the pending action (None for an emergency exit or none)."""
        pending = self._pending.pop(chat_id, None)
        if pending is None:
            return "none", None
        if self._monotonic() > pending.expires_at_s:
            return "expired", pending.action
        if code is None or not secrets.compare_digest(code, pending.code):
            return "wrong_code", pending.action
        return "confirmed", pending.action

    def pending_action(self, chat_id: int) -> Any:
        """The action awaiting confirmation in ``chat_id`` (None: an emergency exit, or nothing pending)."""
        pending = self._pending.get(chat_id)
        return None if pending is None else pending.action

    def cancel(self, chat_id: int) -> bool:
        """Drops the pending confirmation; True if there was one."""
        return self._pending.pop(chat_id, None) is not None


class TelegramCommands:
    """The handlers behind the bot's commands; :meth:`handlers` registers them on an Application.

    Args:
        engine: the running engine (commands go to ``engine.submit``).
        audit: where accepted and refused commands are recorded.
        allowed_chat_ids: chats that may command.
        report_text: builds the daily report text on demand.
        confirmations: pending /exit_all confirmations.
        now_ms: UTC ms for audit rows.
        submit_timeout_s: how long a handler waits for ``engine.submit`` to accept a command.
        risk_gate: authenticates ``/set`` and ``/resume_breaker``; None refuses them.
    """

    def __init__(
        self,
        engine: EngineHandle,
        audit: AuditSink,
        allowed_chat_ids: Sequence[int],
        report_text: Callable[[], str],
        confirmations: ExitConfirmations,
        now_ms: Callable[[], int],
        submit_timeout_s: float = 5.0,
        *,
        risk_gate: RiskGate | None = None,
    ) -> None:
        self._engine = engine
        self._audit = audit
        self._allowed = frozenset(allowed_chat_ids)
        self._report_text = report_text
        self._confirmations = confirmations
        self._now_ms = now_ms
        self._submit_timeout_s = submit_timeout_s
        self._risk_gate = risk_gate

    def handlers(self) -> list[tuple[BaseHandler[Update, Any, Any], int]]:
        """(handler, group) pairs: the unauthorised gate runs first (group -1) and stops the rest."""
        allowed = filters.Chat(chat_id=sorted(self._allowed)) & filters.UpdateType.MESSAGE
        renderers: dict[str, Callable[[EngineSnapshot], str]] = {
            "status": views.format_status,
            "positions": views.format_positions,
            "pnl": views.format_pnl,
            "breakers": views.format_breakers,
        }
        entries: list[tuple[BaseHandler[Update, Any, Any], int]] = [
            (MessageHandler(filters.ALL & ~filters.Chat(chat_id=sorted(self._allowed)), self._unauthorised), -1)
        ]
        for name, view in renderers.items():
            entries.append((CommandHandler(name, self._audited(name, self._view(view)), filters=allowed), 0))
        actions: dict[str, Callable[[Update, list[str]], Awaitable[None]]] = {
            "halt": self._halt,
            "resume": self._resume,
            "exit_all": self._exit_all,
            "confirm": self._confirm,
            "set": self._set,
            "resume_breaker": self._resume_breaker,
            "cancel": self._cancel,
            "report": self._report,
            "help": self._help,
            "start": self._help,
        }
        for name, action in actions.items():
            entries.append((CommandHandler(name, self._audited(name, action), filters=allowed), 0))
        yes_filter = allowed & filters.TEXT & filters.Regex(_YES_PATTERN)
        entries.append((MessageHandler(yes_filter, self._audited("yes", self._yes)), 0))
        return entries

    # --- gate and audit --------------------------------------------------------------------------

    async def _unauthorised(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        user = update.effective_user
        message = update.effective_message
        chat_id = chat.id if chat else None
        logger.warning("Telegram message from unauthorised chat %s ignored", chat_id)
        await self._record(
            f"telegram:{chat_id}",
            AUDIT_ACTION_UNAUTHORISED,
            {
                "chat_id": chat_id,
                "user_id": user.id if user else None,
                "text": (message.text or "")[:AUDIT_TEXT_MAX_CHARS] if message else "",
            },
        )
        raise ApplicationHandlerStop

    def _audited(
        self, name: str, action: Callable[[Update, list[str]], Awaitable[None]]
    ) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
        async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            chat = update.effective_chat
            user = update.effective_user
            if chat is None or chat.id not in self._allowed:  # defence in depth behind the filter
                return
            args = list(context.args or [])
            await self._record(
                f"telegram:{chat.id}",
                AUDIT_ACTION_COMMAND,
                {"command": name, "args": args[:5], "chat_id": chat.id, "user_id": user.id if user else None},
            )
            await action(update, args)

        return handle

    async def _record(self, actor: str, action: str, detail: dict[str, Any]) -> None:
        try:
            await self._audit.append(actor, action, detail, self._now_ms())
        except Exception as error:  # noqa: BLE001 - a failed audit write is logged, never silent
            logger.error("audit write for %s %s failed: %r", actor, action, error)

    # --- replies ---------------------------------------------------------------------------------

    @staticmethod
    async def _reply(update: Update, text: str) -> None:
        message = update.effective_message
        if message is not None:
            await message.reply_text(text, parse_mode=ParseMode.HTML, do_quote=False)

    def _view(self, render: Callable[[EngineSnapshot], str]) -> Callable[[Update, list[str]], Awaitable[None]]:
        async def answer(update: Update, args: list[str]) -> None:
            snapshot = self._engine.snapshot()
            await self._reply(update, views.NO_SNAPSHOT_TEXT if snapshot is None else render(snapshot))

        return answer

    async def _submit(self, update: Update, command: Command, queued_text: str) -> None:
        try:
            await asyncio.wait_for(self._engine.submit(command), self._submit_timeout_s)
        except Exception as error:  # noqa: BLE001 - the trader must learn the command did not reach the engine
            logger.error("engine refused %s from Telegram: %r", type(command).__name__, error)
            await self._reply(update, f"⚠️ {formatting.esc(type(command).__name__)} was not accepted by the engine.")
            return
        await self._reply(update, queued_text)

    @staticmethod
    def _source(update: Update) -> str:
        chat = update.effective_chat
        return f"telegram:{chat.id if chat else '?'}"

    async def _halt(self, update: Update, args: list[str]) -> None:
        reason = " ".join(args) or "halted from Telegram"
        await self._submit(
            update,
            Halt(source=self._source(update), reason=reason),
            "⏸ Halt sent to the engine: no new entries once it confirms.",
        )

    async def _resume(self, update: Update, args: list[str]) -> None:
        command = Resume(source=self._source(update))
        if self._risk_gate is not None and self._risk_gate.needs_grant(command):
            await self._ask_risk_change(update, command)  # lifts a latch: confirmed like a breaker override
            return
        await self._submit(update, command, "▶️ Resume sent to the engine.")

    async def _exit_all(self, update: Update, args: list[str]) -> None:
        chat = update.effective_chat
        assert chat is not None
        code = self._confirmations.ask(chat.id)
        window = int(round(self._confirmations.window_s))
        await self._reply(
            update,
            "🚨 <b>Emergency exit</b>: cancel every order and close every position at market, then halt.\n"
            f"To confirm within {window} s send <code>/confirm {code}</code> or reply <code>YES {code}</code>.\n"
            "/cancel to abort.",
        )

    async def _confirm(self, update: Update, args: list[str]) -> None:
        code = next((arg for arg in args if arg.isdigit()), None)
        await self._settle_exit(update, code)

    async def _yes(self, update: Update, args: list[str]) -> None:
        message = update.effective_message
        match = _YES_PATTERN.match(message.text or "") if message else None
        await self._settle_exit(update, match.group(1) if match else None)

    async def _settle_exit(self, update: Update, code: str | None) -> None:
        chat = update.effective_chat
        assert chat is not None
        outcome, action = self._confirmations.take(chat.id, code)
        if action is not None:
            await self._settle_risk_change(update, chat.id, action, outcome)
        elif outcome == "confirmed":
            await self._submit(
                update,
                EmergencyExit(source=self._source(update), reason="emergency exit confirmed on Telegram"),
                "🚨 Emergency exit sent to the engine.",
            )
        elif outcome == "wrong_code":
            await self._reply(update, "Code does not match: emergency exit abandoned. Send /exit_all again.")
        elif outcome == "expired":
            await self._reply(update, "Confirmation expired: emergency exit abandoned. Send /exit_all again.")
        else:
            await self._reply(update, "Nothing to confirm. Send /exit_all first.")

    async def _cancel(self, update: Update, args: list[str]) -> None:
        chat = update.effective_chat
        assert chat is not None
        action = self._confirmations.pending_action(chat.id)
        cancelled = self._confirmations.cancel(chat.id)
        if action is not None:
            await self._settle_risk_change(update, chat.id, action, "cancelled")
            return
        await self._reply(update, "Emergency exit cancelled." if cancelled else "Nothing to cancel.")

    # --- risk changes ----------------------------------------------------------------------------

    async def _set(self, update: Update, args: list[str]) -> None:
        usage = "Usage: <code>/set KEY VALUE</code>, e.g. <code>/set risk.max_daily_loss_percent 3</code>"
        if len(args) != 2:
            await self._reply(update, usage)
            return
        try:
            value = float(args[1])
        except ValueError:
            await self._reply(update, f"{formatting.esc(args[1])} is not a number. {usage}")
            return
        await self._ask_risk_change(update, SetRiskLimit(source=self._source(update), key=args[0], value=value))

    async def _resume_breaker(self, update: Update, args: list[str]) -> None:
        if len(args) != 1:
            await self._reply(update, "Usage: <code>/resume_breaker NAME</code> (see /breakers for the names)")
            return
        await self._ask_risk_change(update, ResumeBreaker(source=self._source(update), breaker=args[0]))

    async def _ask_risk_change(self, update: Update, command: SetRiskLimit | ResumeBreaker | Resume) -> None:
        chat = update.effective_chat
        assert chat is not None
        if self._risk_gate is None:
            await self._reply(update, "Risk changes are not available: the engine has no authentication gate.")
            return
        try:
            change = await self._risk_gate.check(command)  # an invalid request is refused (and audited) now
        except RiskChangeRefused as refused:
            await self._reply(update, f"Refused: {formatting.esc(refused)}")
            return
        code = self._confirmations.ask(chat.id, command)
        window = int(round(self._confirmations.window_s))
        await self._reply(
            update,
            f"⚠️ <b>{_risk_change_title(command)}</b>: <code>{formatting.esc(change.parameter)}</code> "
            f"{formatting.esc(change.old_value)} → <b>{formatting.esc(change.new_value)}</b>\n"
            f"To confirm within {window} s send <code>/confirm {code}</code> or reply <code>YES {code}</code>.\n"
            "/cancel to abort.",
        )

    async def _settle_risk_change(self, update: Update, chat_id: int, command: Any, outcome: str) -> None:
        """Grant and submit a confirmed risk change; audit (through the gate) any other outcome."""
        assert self._risk_gate is not None
        title = _risk_change_title(command)
        try:
            granted = await self._risk_gate.authorize_from_chat(
                command, chat_id, self._allowed, confirmed=outcome == "confirmed"
            )
        except (AuthenticationFailed, RiskChangeRefused) as refused:
            reasons = {
                "wrong_code": "Code does not match",
                "expired": "Confirmation expired",
                "cancelled": "Cancelled",
            }
            reason = reasons.get(outcome, formatting.esc(refused))
            await self._reply(update, f"{reason}: {title.lower()} abandoned; nothing was changed.")
            return
        await self._submit(update, granted, f"✅ {title} sent to the engine; an alert confirms it once applied.")

    async def _report(self, update: Update, args: list[str]) -> None:
        await self._reply(update, self._report_text())

    async def _help(self, update: Update, args: list[str]) -> None:
        await self._reply(update, HELP_TEXT)


def _risk_change_title(command: Any) -> str:
    if isinstance(command, Resume):
        return "Resume from a latched halt"
    return "Breaker override" if isinstance(command, ResumeBreaker) else "Risk change"
