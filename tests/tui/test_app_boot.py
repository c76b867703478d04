"""Specification of console start-up: it shows the configured markets and quits on q."""

from __future__ import annotations

from textual.widgets import DataTable

from engine.config import Settings
from tradebot_tui.app import create_app


async def test_console_lists_each_configured_symbol_with_its_last_close_and_q_quits() -> None:
    app = create_app(Settings())
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.query_one("#markets", DataTable)
        assert table.row_count == len(Settings().exchange.symbols)
        first_row = table.get_row_at(0)
        assert first_row[0] == "BTC/USDT" and first_row[3] != "-"
        await pilot.press("q")
    assert app.return_code == 0
