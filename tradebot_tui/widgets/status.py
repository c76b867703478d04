"""Provides the status line: mode (PAPER / LIVE, loud), exchange, feed health, trading and engine state, and
for an attached console which engine service it is attached to (pid, uptime) or that the connection is lost."""

from __future__ import annotations

import time

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from engine.domain.models import EngineState, TradingState
from engine.domain.snapshot import EngineSnapshot
from tradebot_tui import formatting as fmt

MODE_STYLES = {"paper": "bold black on yellow", "live": "bold white on red"}
STATE_STYLES = {
    TradingState.ACTIVE: "bold green",
    TradingState.HALTED: "bold white on dark_red",
}
ENGINE_STATE_STYLES = {
    EngineState.RUNNING: "green",
    EngineState.STARTING: "yellow",
    EngineState.STOPPING: "yellow",
    EngineState.STOPPED: "red",
    EngineState.ERROR: "bold red",
}


class StatusBar(Static):
    """One line at the top of the dashboard. Before the first snapshot it shows the configured mode."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; }
    """

    snapshot: reactive[EngineSnapshot | None] = reactive(None, layout=False)

    def __init__(self, mode: str, exchange: str, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        self._configured_mode = mode
        self._configured_exchange = exchange
        self.engine_note = ""
        self.attachment: dict[str, object] | None = None  # the engine service's /v1/engine answer
        self.connected: bool | None = None  # None: not attached to a service (engine in process)

    def watch_snapshot(self) -> None:
        self.update(self.status_text())

    def set_engine_note(self, note: str) -> None:
        """Show a console-side note about the engine worker (e.g. it failed to start)."""
        self.engine_note = note
        self.update(self.status_text())

    def set_attachment(self, info: dict[str, object] | None, connected: bool) -> None:
        """Attached (again) to the service ``info`` describes, or lost it (``connected`` False)."""
        if info is not None:
            self.attachment = info
        self.connected = connected
        self.refresh_line()

    def refresh_line(self) -> None:
        self.update(self.status_text())

    def attachment_text(self, now_s: float | None = None) -> Text:
        """`` pid 4242 · up 2h05m `` when attached, a red ``DISCONNECTED`` while the connection is lost."""
        if self.connected is None:
            return Text()
        if not self.connected:
            return Text(" DISCONNECTED: retrying ", style="bold white on red")
        info = self.attachment or {}
        started = info.get("started_ms")
        up = ""
        if isinstance(started, int):
            up = " · up " + fmt.duration(int((time.time() if now_s is None else now_s) * 1000) - started)
        return Text(f" pid {info.get('pid', '?')}{up} ", style="dim")

    def status_text(self) -> Text:
        snapshot = self.snapshot
        mode = snapshot.mode if snapshot else self._configured_mode
        exchange = snapshot.exchange if snapshot else self._configured_exchange
        line = Text()
        line.append(f" {mode.upper()} ", style=MODE_STYLES.get(mode, "bold white on red"))
        line.append(f" {exchange} ")
        if snapshot is None:
            line.append("│ waiting for the engine… ", style="italic")
        else:
            feed_style = "green" if snapshot.feed_healthy else "bold red"
            line.append("│ feed ")
            troubled = [f"{f.symbol} {f.state}" for f in snapshot.feed_status if f.state != "OK"]
            line.append("OK" if snapshot.feed_healthy else ", ".join(troubled) or "STALE", style=feed_style)
            line.append(" │ ")
            line.append(f" {snapshot.trading_state.value} ", style=STATE_STYLES.get(snapshot.trading_state, "bold"))
            line.append(" │ engine ")
            line.append(snapshot.engine_state.value, style=ENGINE_STATE_STYLES.get(snapshot.engine_state, "bold"))
            line.append(f" │ {fmt.timestamp(snapshot.time_ms)}")
        attachment = self.attachment_text()
        if attachment:
            line.append(" │")
            line.append_text(attachment)
        if self.engine_note:
            line.append(f" │ {self.engine_note}", style="bold red")
        return line
