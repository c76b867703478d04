"""Provides the tabular panes: open positions, circuit breakers, and signals & confluence per symbol."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import DataTable

from engine.domain.models import BreakerStatus, CircuitState, Position
from engine.domain.snapshot import EngineSnapshot, SymbolView
from tradebot_tui import formatting as fmt

BREAKER_STATE_STYLES = {
    CircuitState.CLOSED: "green",
    CircuitState.HALF_OPEN: "dark_orange",
    CircuitState.OPEN: "bold red",
}
SIGNAL_STYLES = {"LONG": "bold green", "SHORT": "bold red", "EXIT": "dark_orange"}


def _pnl_text(value: float) -> Text:
    return Text(fmt.money(value, signed=True), style="green" if value > 0 else "red" if value < 0 else "")


class SnapshotTable(DataTable[str | Text]):
    """A DataTable fed with whole snapshots; rows are keyed so the cursor stays on the same item."""

    snapshot: reactive[EngineSnapshot | None] = reactive(None)
    COLUMNS: tuple[str, ...] = ()

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.add_columns(*self.columns_for_display())

    def columns_for_display(self) -> Sequence[str]:
        return self.COLUMNS

    def rows_of(self, snapshot: EngineSnapshot) -> list[tuple[str, tuple[str | Text, ...]]]:
        """``(row key, cells)`` for every row the snapshot holds."""
        raise NotImplementedError

    def watch_snapshot(self, snapshot: EngineSnapshot | None) -> None:
        if snapshot is None:
            return
        selected = self.selected_key()
        self.clear()
        for key, cells in self.rows_of(snapshot):
            self.add_row(*cells, key=key)
        if selected is not None and selected in self.rows:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def selected_key(self) -> str | None:
        """Key of the row under the cursor, or None when the table is empty."""
        if self.row_count == 0:
            return None
        row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        return row_key.value


class PositionsTable(SnapshotTable):
    """Open positions: symbol, side, quantity, entry, last, unrealised P&L, stop, trailing stop."""

    BORDER_TITLE = "Positions"
    COLUMNS = ("symbol", "side", "qty", "entry", "last", "uPnL", "stop", "trail")

    def rows_of(self, snapshot: EngineSnapshot) -> list[tuple[str, tuple[str | Text, ...]]]:
        return [(position.symbol, self._cells(position)) for position in snapshot.positions]

    @staticmethod
    def _cells(position: Position) -> tuple[str | Text, ...]:
        return (
            position.symbol,
            position.side.value,
            fmt.quantity(position.quantity),
            fmt.price(position.entry_price),
            fmt.price(position.last_price),
            _pnl_text(position.unrealized_pnl),
            fmt.price(position.stop_price),
            fmt.price(position.trailing_stop_price),
        )

    def selected_position(self) -> Position | None:
        """The position under the cursor in the newest snapshot."""
        key = self.selected_key()
        if key is None or self.snapshot is None:
            return None
        return next((p for p in self.snapshot.positions if p.symbol == key), None)


class BreakersTable(SnapshotTable):
    """Each circuit breaker: state, value against threshold, reason, since when, resume time."""

    BORDER_TITLE = "Circuit breakers"
    COLUMNS = ("breaker", "state", "value/thr", "resume", "since", "reason")  # least needed last: cut first

    def rows_of(self, snapshot: EngineSnapshot) -> list[tuple[str, tuple[str | Text, ...]]]:
        return [(status.name, self._cells(status, snapshot.time_ms)) for status in snapshot.breakers]

    @staticmethod
    def _cells(status: BreakerStatus, now_ms: int) -> tuple[str | Text, ...]:
        name = f"{status.name}{' ⚓' if status.latching else ''}"
        state = Text(status.state.value.replace("_", "-"), style=BREAKER_STATE_STYLES.get(status.state, ""))
        since = fmt.clock(status.since_ms)
        if status.resume_after_ms is not None:
            resume = f"{fmt.clock(status.resume_after_ms)} ({fmt.duration(status.resume_after_ms - now_ms)})"
        elif status.latching and status.state is not CircuitState.CLOSED:
            resume = "manual"
        else:
            resume = fmt.MISSING
        return (name, state, f"{status.value:g}/{status.threshold:g}", resume, since, status.reason or fmt.MISSING)


class SignalsTable(SnapshotTable):
    """Per symbol: last price, a trend arrow per confluence timeframe, squeeze, volume flag and the signal."""

    BORDER_TITLE = "Signals & confluence"

    def __init__(self, timeframes: Sequence[str], *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        self.timeframes = tuple(timeframes)
        super().__init__(id=id, classes=classes)

    def columns_for_display(self) -> Sequence[str]:
        return ("symbol", *self.timeframes, "sqz", "signal", "volume", "last")  # least needed last: cut first

    def rows_of(self, snapshot: EngineSnapshot) -> list[tuple[str, tuple[str | Text, ...]]]:
        return [(view.symbol, self._cells(view)) for view in snapshot.symbols]

    def _cells(self, view: SymbolView) -> tuple[str | Text, ...]:
        trends = dict(view.trends)
        arrows = []
        for timeframe in self.timeframes:
            direction = trends.get(timeframe)
            if direction is None:
                arrows.append(Text(fmt.MISSING))
            else:
                style = "green" if direction > 0 else "red" if direction < 0 else "dim"
                arrows.append(Text(fmt.trend_arrow(direction), style=style))
        squeeze = Text(view.squeeze, style="bold yellow" if view.squeeze == "on" else "dim")
        signal = Text(view.signal, style=SIGNAL_STYLES.get(view.signal, "dim"))
        if view.signal != "NONE":
            signal.append(f" {view.signal_strength:.2f}")
        return (view.symbol, *arrows, squeeze, signal, view.volume_flag or fmt.MISSING, fmt.price(view.last_price))
