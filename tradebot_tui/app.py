"""Provides the console application and ``create_app``, the one factory main() and tests use."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from engine.config import Settings


class TradebotApp(App[int]):
    """The tradebot console."""

    TITLE = "tradebot"
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self._mode_line(), id="mode")
        yield DataTable(id="markets", cursor_type="row")
        yield Footer()

    def _mode_line(self) -> str:
        exchange = self.settings.exchange
        return f"{exchange.mode.upper()} | {exchange.name} | feed: {exchange.feed} | {exchange.base_timeframe}"

    def on_mount(self) -> None:
        from engine.data.sample import load_sample

        table = self.query_one("#markets", DataTable)
        table.add_columns("symbol", "timeframe", "candles", "last close")
        for symbol in self.settings.exchange.symbols:
            try:
                candles = load_sample(symbol, self.settings.exchange.base_timeframe)
            except Exception as exc:  # a missing sample is shown, not fatal
                table.add_row(symbol, self.settings.exchange.base_timeframe, "-", f"unavailable: {exc}")
                continue
            table.add_row(symbol, candles.timeframe, str(len(candles)), f"{candles.close[-1]:,.2f}")

    def action_quit(self) -> None:
        self.exit(0)


def create_app(settings: Settings) -> TradebotApp:
    return TradebotApp(settings)
