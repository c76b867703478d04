"""Provides the help screen: every key and what it does, and what happens to positions on quit."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP_TEXT = """\
# tradebot console keys

| key | action |
|---|---|
| `h` | **halt**: no new entries; open positions keep their stops |
| `r` | **resume** new entries (lifting a loss-limit halt or the emergency latch asks for the passphrase) |
| `x` | **emergency exit**: cancel every order, close every position at market, halt (type EXIT to confirm) |
| `c` | **close** the position under the cursor at market (asks first) |
| `b` | **backtest** screen (runs in the background; `h` and `x` keep working) |
| `l` | **limits**: change a risk or breaker setting (asks for the risk-change passphrase) |
| `u` | **reset** a tripped breaker or latch (`emergency`, `loss_limit`) under the cursor, or enter; passphrase |
| `?` | this help |
| `q` | **leave**: `d` detaches (the engine trades on), `s` also stops the engine |
| `tab` | move between panes; arrows move the cursor |

The header shows the mode (PAPER or LIVE), the exchange, feed health, the trading state
(ACTIVE, or HALTED = no new entries while open positions keep their stops and exits) and the
engine's state, then the engine service this console is attached to (pid, uptime), red
DISCONNECTED while the connection is lost (it re-attaches by itself). A new trading state is shown
only when the engine reports it.

**The engine is a service.** Detaching, closing the terminal or losing SSH leaves it trading;
`tradebot` from any SSH session attaches again. Stopping it with open live positions leaves them
on the exchange with their exchange-side stop orders, but trailing stops stop moving until an
engine runs again; see the README.

Press escape or `?` to close.
"""


class HelpScreen(ModalScreen[None]):
    """Key reference."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 90; max-width: 95%; height: 90%; border: thick $primary; background: $surface;
    }
    """
    BINDINGS = [Binding("escape,question_mark,q", "dismiss_help", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(HELP_TEXT)

    def action_dismiss_help(self) -> None:
        self.dismiss(None)
