"""Provides the backtest screen: pick symbol, period and parameters, run out of process, compare runs.

The app's runner (:func:`tradebot_tui.backtest_process.run_backtest_in_process`) computes in a child process;
this screen's thread worker (``group="backtest"``) only waits on the child's pipe, so the console's keys stay
live (halt and emergency exit work from this screen while a backtest runs). Progress comes back through
``call_from_thread``; the result arrives as the worker's result; cancelling the worker stops the child.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, ProgressBar, Select, Static
from textual.worker import Worker, WorkerState, get_current_worker
from textual_plotext import PlotextPlot

from engine.config import Settings
from engine.data.sample import sample_files
from tradebot_tui import formatting as fmt
from tradebot_tui.backtest_runner import (
    PERIOD_CHOICES,
    BacktestRequest,
    BacktestRun,
    BacktestRunner,
    parse_overrides,
)

MAX_RUNS_COMPARED = 4
PROGRESS_STEP = 0.01  # forward progress to the UI only in steps of 1 % of the bars


class BacktestScreen(Screen[None]):
    """Backtests on the bundled candles, side by side."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Dashboard")]
    DEFAULT_CSS = """
    BacktestScreen #bt-form { height: auto; }
    BacktestScreen #bt-form > * { margin-right: 1; }
    BacktestScreen #bt-symbol { width: 18; }
    BacktestScreen #bt-period { width: 22; }
    BacktestScreen #bt-params { width: 1fr; min-width: 20; }
    BacktestScreen #bt-status { height: auto; padding: 0 1; }
    BacktestScreen #bt-progress { padding: 0 1; }
    BacktestScreen #bt-results { height: 18; }
    BacktestScreen #bt-metrics { width: 1fr; min-width: 36; height: 100%; }
    BacktestScreen #bt-charts { width: 2fr; height: 100%; }
    BacktestScreen PlotextPlot { height: 1fr; }
    BacktestScreen #bt-trades { height: 12; }
    BacktestScreen .section { text-style: bold; padding: 0 1; }
    """

    def __init__(self, settings: Settings, runner: BacktestRunner) -> None:
        super().__init__()
        self.settings = settings
        self.runner = runner
        self.runs: list[BacktestRun] = []
        self.worker: Worker[BacktestRun] | None = None

    def compose(self) -> ComposeResult:
        symbols = sorted({s.symbol for s in sample_files() if s.timeframe == self.settings.backtest.timeframe})
        configured = [s for s in self.settings.exchange.symbols if s in symbols]
        symbols = configured + [s for s in symbols if s not in configured] or list(self.settings.exchange.symbols)
        with VerticalScroll():
            with Horizontal(id="bt-form"):
                yield Select([(s, s) for s in symbols], value=symbols[0], allow_blank=False, id="bt-symbol")
                yield Select(
                    [(label, index) for index, (label, _) in enumerate(PERIOD_CHOICES)],
                    value=1,
                    allow_blank=False,
                    id="bt-period",
                )
                yield Input(placeholder="params, e.g. risk.risk_per_trade_percent=0.5", id="bt-params")
                yield Button("Run", id="bt-run", variant="success")
                yield Button("Clear", id="bt-clear")
            yield ProgressBar(total=1.0, show_eta=False, id="bt-progress")
            yield Static("Pick a symbol and period, then Run. Runs stay here for comparison.", id="bt-status")
            with Horizontal(id="bt-results"):
                yield DataTable(id="bt-metrics", zebra_stripes=True, cursor_type="none")
                with Vertical(id="bt-charts"):
                    yield PlotextPlot(id="bt-equity")
                    yield PlotextPlot(id="bt-drawdown")
            yield Label("Trades of the newest run", classes="section")
            yield DataTable(id="bt-trades", zebra_stripes=True, cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#bt-trades", DataTable).add_columns(
            "symbol", "side", "qty", "entry", "exit", "P&L", "exit reason"
        )
        self._draw_charts()
        self.query_one("#bt-params", Input).cursor_blink = not self.app.is_headless
        self.query_one("#bt-run", Button).focus()

    # ------------------------------------------------------------------ running
    def request_from_form(self) -> BacktestRequest:
        """The request the form describes. Raises ValueError for unreadable parameters."""
        symbol = self.query_one("#bt-symbol", Select).value
        period_index = self.query_one("#bt-period", Select).value
        assert isinstance(symbol, str) and isinstance(period_index, int)
        overrides = parse_overrides(self.query_one("#bt-params", Input).value)
        return BacktestRequest(symbol, self.settings.backtest.timeframe, PERIOD_CHOICES[period_index][1], overrides)

    def start_run(self) -> None:
        if self.worker is not None and self.worker.is_running:
            self.notify("A backtest is already running.")
            return
        try:
            request = self.request_from_form()
        except ValueError as exc:
            self.set_status(f"Parameters: {exc}")
            return
        self.set_running(True)
        self.query_one("#bt-progress", ProgressBar).update(progress=0.0)
        self.set_status(f"Running {request.label}…")
        self.worker = self.run_in_thread(request)

    @work(thread=True, exclusive=True, group="backtest", exit_on_error=False)
    def run_in_thread(self, request: BacktestRequest) -> BacktestRun:
        worker = get_current_worker()
        last_shown = [-1.0]

        def progress(ratio: float) -> None:
            if ratio - last_shown[0] >= PROGRESS_STEP or ratio >= 1.0:
                last_shown[0] = ratio
                self.app.call_from_thread(self.show_progress, ratio)

        return self.runner(self.settings, request, progress, lambda: worker.is_cancelled)

    def show_progress(self, ratio: float) -> None:
        self.query_one("#bt-progress", ProgressBar).update(progress=ratio)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.worker:
            return
        if event.state is WorkerState.SUCCESS and event.worker.result is not None:
            self.set_running(False)
            self.add_run(event.worker.result)
        elif event.state is WorkerState.ERROR:
            self.set_running(False)
            self.set_status(f"Backtest failed: {event.worker.error}")
        elif event.state is WorkerState.CANCELLED:
            self.set_running(False)
            self.set_status("Backtest cancelled.")

    def set_running(self, running: bool) -> None:
        for selector in ("#bt-symbol", "#bt-period", "#bt-params", "#bt-run", "#bt-clear"):
            self.query_one(selector).disabled = running

    def set_status(self, text: str) -> None:
        self.query_one("#bt-status", Static).update(text)

    # ------------------------------------------------------------------ results
    def add_run(self, run: BacktestRun) -> None:
        self.runs.append(run)
        del self.runs[:-MAX_RUNS_COMPARED]
        self.query_one("#bt-progress", ProgressBar).update(progress=1.0)
        self.set_status(f"Done: {run.label} ({len(run.trades)} trades). Run again with other settings to compare.")
        self._fill_metrics()
        self._fill_trades(run)
        self._draw_charts()
        self.query_one("#bt-run", Button).focus()

    def clear_runs(self) -> None:
        self.runs.clear()
        self._fill_metrics()
        self.query_one("#bt-trades", DataTable).clear()
        self._draw_charts()
        self.set_status("Runs cleared.")

    def _fill_metrics(self) -> None:
        table = self.query_one("#bt-metrics", DataTable)
        table.clear(columns=True)
        if not self.runs:
            return
        table.add_column("metric")
        for number, run in enumerate(self.runs, 1):
            table.add_column(f"#{number} {run.label}")
        names = [name for name, _ in self.runs[-1].metrics]
        values = [dict(run.metrics) for run in self.runs]
        for name in names:
            table.add_row(name, *(row.get(name, "-") for row in values))

    def _fill_trades(self, run: BacktestRun) -> None:
        table = self.query_one("#bt-trades", DataTable)
        table.clear()
        for trade in run.trades:
            table.add_row(
                trade.symbol,
                trade.side.value,
                fmt.quantity(trade.quantity),
                fmt.price(trade.entry_price),
                fmt.price(trade.exit_price),
                fmt.money(trade.pnl, signed=True),
                trade.reason or fmt.MISSING,
            )

    def _draw_charts(self) -> None:
        for selector, title, series in (
            ("#bt-equity", "equity (quote) by day", "equity"),
            ("#bt-drawdown", "drawdown % by day", "drawdown_pct"),
        ):
            plot_widget = self.query_one(selector, PlotextPlot)
            plt: Any = plot_widget.plt
            plt.clear_data()
            plt.title(title)
            for number, run in enumerate(self.runs, 1):
                values = getattr(run, series)
                if values:
                    plt.plot(
                        list(run.day),
                        [-v for v in values] if series == "drawdown_pct" else list(values),
                        label=f"#{number}",
                        marker="braille",
                    )
            plot_widget.refresh()

    # ------------------------------------------------------------------ input
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "bt-run":
            self.start_run()
        elif event.button.id == "bt-clear":
            self.clear_runs()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.start_run()

    def action_back(self) -> None:
        self.app.pop_screen()
