"""Provides the confirmation dialogs: a yes/no question, one that needs a typed word, and the quit choice.

The first two are ``ModalScreen[bool]`` that dismiss with the answer; escape always means no. The quit
choice of an attached console dismisses with :class:`QuitChoice` (escape: stay).
"""

from __future__ import annotations

import enum

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

DIALOG_CSS = """
ConfirmScreen, TypedConfirmScreen, QuitChoiceScreen { align: center middle; }
#dialog {
    width: 72; max-width: 95%; height: auto; max-height: 95%;
    border: thick $error; background: $surface; padding: 0 1;
}
#dialog-title { text-style: bold; width: 100%; }
#dialog-body { margin: 1 0; }
#dialog-buttons { height: auto; align-horizontal: right; }
#dialog-buttons Button { margin-left: 1; }
"""


class ConfirmScreen(ModalScreen[bool]):
    """Asks a yes/no question: ``y``/enter on Yes confirms, ``n``/escape cancels."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape,n", "answer(False)", "No"), Binding("y", "answer(True)", "Yes")]

    def __init__(self, title: str, body: str, *, yes_label: str = "Yes", no_label: str = "No") -> None:
        super().__init__()
        self.title_text = title
        self.body_text = body
        self.yes_label = yes_label
        self.no_label = no_label

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.body_text, id="dialog-body")
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.no_label} (n)", id="no", variant="primary")
                yield Button(f"{self.yes_label} (y)", id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe answer is the default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class TypedConfirmScreen(ModalScreen[bool]):
    """Confirms only when ``word`` is typed exactly and enter pressed; escape cancels."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, body: str, word: str) -> None:
        super().__init__()
        self.title_text = title
        self.body_text = body
        self.word = word

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.body_text, id="dialog-body")
            yield Label(f"Type {self.word} and press enter (escape cancels):")
            yield Input(placeholder=self.word, id="confirm-word")
            yield Static("", id="confirm-hint")

    def on_mount(self) -> None:
        word_input = self.query_one("#confirm-word", Input)
        word_input.cursor_blink = not self.app.is_headless  # steady cursor in tests and screenshots
        word_input.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.word:
            self.dismiss(True)
        else:
            self.query_one("#confirm-hint", Static).update(f"That is not {self.word}; nothing was done.")
            event.input.value = ""

    def action_cancel(self) -> None:
        self.dismiss(False)


class QuitChoice(enum.Enum):
    DETACH = "detach"
    STOP_ENGINE = "stop_engine"


class QuitChoiceScreen(ModalScreen[QuitChoice | None]):
    """Leaving an attached console: ``d``/enter detaches (the default), ``s`` also stops the engine, escape stays."""

    DEFAULT_CSS = DIALOG_CSS
    BINDINGS = [
        Binding("escape", "choose(None)", "Stay"),
        Binding("d", "choose('detach')", "Detach"),
        Binding("s", "choose('stop_engine')", "Stop engine"),
    ]

    def __init__(self, body: str) -> None:
        super().__init__()
        self.body_text = body

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Leave the console?", id="dialog-title")
            yield Static(self.body_text, id="dialog-body")
            with Horizontal(id="dialog-buttons"):
                yield Button("Stay (esc)", id="stay")
                yield Button("Stop the engine (s)", id="stop_engine", variant="error")
                yield Button("Detach (d)", id="detach", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#detach", Button).focus()  # the safe answer: trading goes on

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose(None if event.button.id == "stay" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(None if choice is None else QuitChoice(choice))
