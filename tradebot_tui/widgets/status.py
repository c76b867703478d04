"""Provides the status line: mode (PAPER / LIVE, loud), exchange, feed health, trading and engine state."""

from __future__ import annotations

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

    def watch_snapshot(self) -> None:
        self.update(self.status_text())

    def set_engine_note(self, note: str) -> None:
        """Show a console-side note about the engine worker (e.g. it failed to start)."""
        self.engine_note = note
        self.update(self.status_text())

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
        if self.engine_note:
            line.append(f" │ {self.engine_note}", style="bold red")
        return line
