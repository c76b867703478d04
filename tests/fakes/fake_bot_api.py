"""Provides a loopback fake of the Telegram Bot API for tests of the real python-telegram-bot client.

An aiohttp server on 127.0.0.1 that speaks the Bot API wire format: ``POST /bot<token>/<method>``
with form-encoded (or JSON) parameters, replies ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": ..., "description": ..., "parameters": {"retry_after": ...}}``.

Implemented methods: getMe, deleteWebhook (``drop_pending_updates`` clears the queue), getUpdates
(``offset`` acknowledges, long-polls up to ``timeout`` seconds), sendMessage, close/logOut.
A wrong token gets 401 like the real server. Tests queue incoming chat messages with
:meth:`FakeBotApi.queue_text`, inject faults with :meth:`FakeBotApi.fail_next`, take the server
down and back up on the same port with :meth:`stop` / :meth:`start`, and wait on what the bot sent
with :meth:`wait_for_sent`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BOT_USER = {
    "id": 7000001,
    "is_bot": True,
    "first_name": "tradebot",
    "username": "tradebot_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


@dataclass
class SentMessage:
    """One sendMessage call the fake accepted."""

    chat_id: int
    text: str
    parse_mode: str | None
    message_id: int


@dataclass
class Fault:
    """A canned error reply for the next call(s) of one method."""

    method: str
    status: int
    description: str
    retry_after: int | None = None
    remaining: int = 1
    hang_s: float = 0.0  # > 0: hold the request this long before answering (a hung server)


@dataclass
class FakeBotApi:
    """The fake server; ``async with FakeBotApi(token) as api`` starts it on a free loopback port."""

    token: str
    port: int = 0
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sent: list[SentMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._faults: list[Fault] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The value for ``telegram.base_url`` (python-telegram-bot appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> None:
        """Starts (or restarts, on the same port) serving."""
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server  # noqa: SLF001 - the only way to learn the bound port of port 0
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stops serving: connections are refused until :meth:`start` is called again."""
        if self._runner is not None:
            async with self._changed:
                self._changed.notify_all()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotApi:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- test controls -----------------------------------------------------------------------

    def queue_text(self, chat_id: int, text: str, *, chat_type: str = "private", user_id: int = 42) -> int:
        """Queues a text message from ``chat_id`` as the next update; returns its update_id.

        A leading ``/command`` gets a ``bot_command`` entity, as Telegram's clients send it.
        """
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": chat_type, "first_name": "Trader"}
            if chat_type == "private"
            else {"id": chat_id, "type": chat_type, "title": "Desk"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Trader"},
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, "message": message})
        asyncio.get_running_loop().create_task(self._notify())
        return update_id

    def fail_next(
        self, method: str, status: int, description: str = "", *, retry_after: int | None = None, times: int = 1
    ) -> None:
        """Makes the next ``times`` calls of ``method`` fail with HTTP ``status``."""
        self._faults.append(Fault(method, status, description or f"error {status}", retry_after, times))

    def hang_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """Makes the next ``times`` calls of ``method`` hang for ``seconds`` (then fail with 504)."""
        self._faults.append(Fault(method, 504, "Gateway Timeout", None, times, hang_s=seconds))

    def texts_to(self, chat_id: int) -> list[str]:
        return [message.text for message in self.sent if message.chat_id == chat_id]

    def call_count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    @property
    def pending_updates(self) -> int:
        return len(self._updates)

    async def wait_for_sent(
        self, predicate: Callable[[SentMessage], bool], timeout: float = 5.0, count: int = 1
    ) -> list[SentMessage]:
        """Waits until ``count`` sent messages match ``predicate``; returns them."""

        async def matched() -> list[SentMessage]:
            async with self._changed:
                while True:
                    found = [message for message in self.sent if predicate(message)]
                    if len(found) >= count:
                        return found
                    await self._changed.wait()

        return await asyncio.wait_for(matched(), timeout)

    async def wait_for_call(self, method: str, count: int = 1, timeout: float = 5.0) -> None:
        """Waits until ``method`` has been called ``count`` times (faults included)."""

        async def reached() -> None:
            async with self._changed:
                while self.call_count(method) < count:
                    await self._changed.wait()

        await asyncio.wait_for(reached(), timeout)

    async def wait_until_acknowledged(self, timeout: float = 5.0) -> None:
        """Waits until the bot has confirmed (via ``offset``) every queued update."""

        async def drained() -> None:
            async with self._changed:
                while self._updates:
                    await self._changed.wait()

        await asyncio.wait_for(drained(), timeout)

    # --- the wire ----------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        params = await _params(request)
        self.calls.append((method, params))
        await self._notify()
        fault = next((f for f in self._faults if f.method == method and f.remaining > 0), None)
        if fault is not None:
            fault.remaining -= 1
            if fault.hang_s > 0:
                await asyncio.sleep(fault.hang_s)
            return _error(fault.status, fault.description, fault.retry_after)
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        result = await handler(params)
        return web.json_response({"ok": True, "result": result})

    async def _api_getMe(self, params: dict[str, Any]) -> Any:  # noqa: N802 - Bot API method name
        return BOT_USER

    async def _api_deleteWebhook(self, params: dict[str, Any]) -> Any:  # noqa: N802
        if str(params.get("drop_pending_updates", "")).lower() in ("true", "1"):
            self._updates.clear()
            await self._notify()
        return True

    async def _api_close(self, params: dict[str, Any]) -> Any:
        return True

    async def _api_logOut(self, params: dict[str, Any]) -> Any:  # noqa: N802
        return True

    async def _api_getUpdates(self, params: dict[str, Any]) -> Any:  # noqa: N802
        offset = int(params.get("offset", 0) or 0)
        limit = int(params.get("limit", 100) or 100)
        timeout = float(params.get("timeout", 0) or 0)
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        await self._notify()
        if not self._updates and timeout > 0:
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(self._updates)), timeout)
                except TimeoutError:
                    pass
        return self._updates[:limit]

    async def _api_sendMessage(self, params: dict[str, Any]) -> Any:  # noqa: N802
        chat_id = int(params["chat_id"])
        message_id = next(self._message_ids)
        self.sent.append(SentMessage(chat_id, str(params["text"]), params.get("parse_mode"), message_id))
        await self._notify()
        return {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "from": BOT_USER,
            "text": params["text"],
        }


async def _params(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        body = await request.json()
        return dict(body) if isinstance(body, dict) else {}
    form = await request.post()
    params: dict[str, Any] = {key: value for key, value in form.items() if isinstance(value, str)}
    params.update(request.query)
    return params


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
