"""Provides the event log pane and the one-line ticker that stands in for it on small terminals."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widgets import RichLog, Static

from engine.domain.events import Event
from tradebot_tui import formatting as fmt

SEVERITY_STYLES = {"critical": "bold red", "warning": "dark_orange", "info": ""}
EVENT_LOG_LINES = 500


def event_line(event: Event) -> Text:
    """``HH:MM Kind  message`` coloured by severity."""
    line = Text(f"{fmt.clock(event.time_ms)} ", style="dim")
    line.append(f"{event.kind:<20} ", style="bold")
    line.append(event.message, style=SEVERITY_STYLES.get(event.severity, ""))
    return line


class EventLog(RichLog):
    """Newest events at the bottom; keeps the last ``EVENT_LOG_LINES``."""

    BORDER_TITLE = "Events"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, classes=classes, max_lines=EVENT_LOG_LINES, wrap=False, markup=False, highlight=False)
        self.shown: list[Event] = []

    def add_events(self, events: Iterable[Event]) -> None:
        for event in events:
            self.shown.append(event)
            self.write(event_line(event))
        del self.shown[:-EVENT_LOG_LINES]


class EventTicker(Static):
    """The newest event on one line (shown when the terminal is too small for the event log)."""

    def show(self, event: Event) -> None:
        self.update(event_line(event))
