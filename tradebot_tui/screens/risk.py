"""Provides the risk-change dialog: a risk limit, a breaker or latch reset, or a resume that lifts a latch,
authorised with the risk-change passphrase.

The dialog never changes anything itself. It asks the engine's gate
(:class:`engine.runtime.risk_gate.RiskChangeGate`) to authenticate the request with the passphrase; only then
does it dismiss with the *granted* command, which the app submits. The engine refuses a risk change
without that grant, so no other widget can change a limit by accident. A wrong passphrase keeps the
dialog open (the gate audits every attempt and locks out after repeated failures); the passphrase
field is cleared after every attempt and its text is never logged.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from engine.domain.commands import Command, Resume, ResumeBreaker, SetRiskLimit
from engine.domain.models import BreakerStatus
from engine.domain.ports import RiskChangeRefused, RiskGate
from engine.runtime.latches import EMERGENCY, LOSS_LIMIT
from engine.runtime.risk_gate import settable_keys
from engine.security.auth import AuthenticationFailed
from tradebot_tui.screens.confirm import DIALOG_CSS

COMMAND_SOURCE = "console"
NO_PASSPHRASE_MESSAGE = (
    "Risk changes need the risk-change passphrase, and none is configured. "
    "Set one with `tradebot secrets set-risk-passphrase`, then restart tradebot."
)


def _reset_consequence(status: BreakerStatus) -> str:
    """What resetting the breaker or latch row does, in the dialog's words."""
    if status.name == EMERGENCY:
        return "Clearing it ends the emergency-exit latch; trading stays halted until you resume (r)"
    if status.name == LOSS_LIMIT:
        return "Lifting it re-bases the loss limits on the equity now and lets entries resume"
    return "Resetting it lets entries resume"


class RiskChangeScreen(ModalScreen[Command | None]):
    """Asks for a risk change (or a breaker reset) and the passphrase; dismisses with the granted command.

    Args:
        gate: the engine's risk-change gate.
        breaker: reset this breaker (or latch row) instead of changing a limit (only the passphrase is asked).
        resume: resume trading, lifting the latched loss-limit halt and emergency latch (only the passphrase).
    """

    DEFAULT_CSS = DIALOG_CSS.replace("ConfirmScreen, TypedConfirmScreen", "RiskChangeScreen") + """
    RiskChangeScreen #dialog { border: thick $warning; }
    RiskChangeScreen Select, RiskChangeScreen Input { margin-bottom: 1; }
    #risk-hint { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, gate: RiskGate, *, breaker: BreakerStatus | None = None, resume: bool = False) -> None:
        super().__init__()
        self.gate = gate
        self.breaker = breaker
        self.resume = resume and breaker is None
        self.attempts = 0

    def _resume_body(self) -> str:
        try:
            latched = str(self.gate.describe(Resume(source=COMMAND_SOURCE)).old_value)
        except RiskChangeRefused:
            latched = "nothing is latched any more"
        return (f"Resuming lifts what blocks entries ({latched}). The override needs the risk-change "
                "passphrase and is written to the audit log.")

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            if self.resume:
                yield Label("RESUME FROM A LATCHED HALT", id="dialog-title")
                yield Static(self._resume_body(), id="dialog-body")
            elif self.breaker is None:
                yield Label("CHANGE A RISK LIMIT", id="dialog-title")
                yield Static("Pick the setting and its new value; the change needs the risk-change passphrase "
                             "and is written to the audit log.", id="dialog-body")
                yield Select([(key, key) for key in settable_keys()], prompt="setting", id="risk-key")
                yield Static("", id="risk-current")
                yield Input(placeholder="new value", type="number", id="risk-value")
            else:
                status = self.breaker
                yield Label(f"RESET BREAKER {status.name.upper()}", id="dialog-title")
                yield Static(
                    f"The {status.name} breaker is {status.state.value.replace('_', '-')}"
                    f"{f' ({status.reason})' if status.reason else ''}. {_reset_consequence(status)}; "
                    "the override needs the risk-change passphrase and is written to the audit log.",
                    id="dialog-body",
                )
            yield Input(placeholder="risk-change passphrase", password=True, id="risk-passphrase")
            yield Static("", id="risk-hint")
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel (esc)", id="cancel", variant="primary")
                yield Button("Apply", id="apply", variant="warning")

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = not self.app.is_headless  # steady cursor in tests and screenshots
        limit_dialog = self.breaker is None and not self.resume
        self.query_one("#risk-key" if limit_dialog else "#risk-passphrase").focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        current = self.query_one("#risk-current", Static)
        if not isinstance(event.value, str):
            current.update("")
            return
        try:
            current.update(f"now: {self.gate.current_value(event.value)}")
        except RiskChangeRefused as refused:
            current.update(str(refused))

    async def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "risk-value":
            self.query_one("#risk-passphrase", Input).focus()
        else:
            await self.apply()

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            await self.apply()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def requested(self) -> SetRiskLimit | ResumeBreaker | Resume:
        """The command the fields describe (not yet authorised).

        Raises:
            ValueError: no setting picked, or the value is not a number.
        """
        if self.resume:
            return Resume(source=COMMAND_SOURCE)
        if self.breaker is not None:
            return ResumeBreaker(source=COMMAND_SOURCE, breaker=self.breaker.name)
        key = self.query_one("#risk-key", Select).value
        if not isinstance(key, str):
            raise ValueError("pick a setting first")
        text = self.query_one("#risk-value", Input).value.strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text or 'an empty value'} is not a number") from None
        return SetRiskLimit(source=COMMAND_SOURCE, key=key, value=value)

    async def apply(self) -> None:
        """Authenticate the request; dismiss with the granted command, or say why not and stay open."""
        hint = self.query_one("#risk-hint", Static)
        passphrase_field = self.query_one("#risk-passphrase", Input)
        passphrase, passphrase_field.value = passphrase_field.value, ""
        if not self.gate.passphrase_configured:
            hint.update(NO_PASSPHRASE_MESSAGE)
            return
        try:
            command = self.requested()
        except ValueError as problem:
            hint.update(str(problem))
            return
        if not passphrase:
            hint.update("Type the risk-change passphrase.")
            passphrase_field.focus()
            return
        self.attempts += 1
        try:
            granted = await self.gate.authorize_with_passphrase(command, passphrase)
        except (AuthenticationFailed, RiskChangeRefused) as refused:
            hint.update(f"Not applied: {refused}")
            passphrase_field.focus()
            return
        self.dismiss(granted)
