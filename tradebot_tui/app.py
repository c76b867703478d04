"""Provides the console application and ``create_app``, the one factory main() and the tests use.

The app renders engine snapshots and sends commands; it never computes trading values and
never changes what it shows about the engine until the engine reports it. ``tradebot`` attaches it to the
engine service over the local API (a :class:`engine.runtime.api.client.RemoteEngine`, followed by an async
worker); tests may also hand it an engine to run in process (``group="engine"``). Snapshots arrive through
a throttled feed (:mod:`tradebot_tui.feed`), at most ``settings.ui.max_redraws_per_second``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, ClassVar, Protocol, runtime_checkable

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.widgets import DataTable, Footer
from textual.worker import Worker, WorkerState

from engine.config import Settings
from engine.domain.bus import EngineHandle, Subscription
from engine.domain.commands import ClosePosition, Command, EmergencyExit, Halt, Resume, StopEngine
from engine.domain.errors import EngineAlreadyRunningException
from engine.domain.models import BreakerStatus, CircuitState, Position, TradingState
from engine.domain.snapshot import EngineSnapshot
from engine.runtime.logs import configure_logging
from tradebot_tui.backtest_process import run_backtest_in_process
from tradebot_tui.backtest_runner import BacktestRunner
from tradebot_tui.feed import EventsArrived, SnapshotArrived, pump_snapshots
from tradebot_tui.hangup import TerminalLossGuard
from tradebot_tui.screens.backtest import BacktestScreen
from tradebot_tui.screens.confirm import ConfirmScreen, QuitChoice, QuitChoiceScreen, TypedConfirmScreen
from tradebot_tui.screens.help import HelpScreen
from tradebot_tui.screens.risk import NO_PASSPHRASE_MESSAGE, RiskChangeScreen
from tradebot_tui.widgets.account import DrawdownPane, PnlPane
from tradebot_tui.widgets.events import EventLog, EventTicker
from tradebot_tui.widgets.status import StatusBar
from tradebot_tui.widgets.tables import BreakersTable, PositionsTable, SignalsTable

logger = logging.getLogger(__name__)

EMERGENCY_WORD = "EXIT"
ENGINE_STOP_TIMEOUT_S = 10.0
SUBSCRIPTION_NAME = "console"
COMMAND_SOURCE = "console"


@runtime_checkable
class RunnableEngine(EngineHandle, Protocol):
    """An engine the console can also start and stop (``engine.runtime.engine.TradingEngine``)."""

    async def run(self) -> None:
        """Trade until stopped."""
        ...

    def stop(self) -> object:
        """Ask ``run`` to finish (may return an awaitable)."""
        ...


@runtime_checkable
class AttachedEngine(EngineHandle, Protocol):
    """An engine service this console is attached to (``engine.runtime.api.client.RemoteEngine``)."""

    info: dict[str, Any]
    connected: bool
    on_connection: Any

    async def run(self) -> None:
        """Follow the engine, re-attaching after a lost connection, until cancelled."""
        ...


def stop_consequence(mode: str, positions: tuple[Position, ...]) -> str:
    """What stopping an engine service does to its open positions (the quit dialog of an attached console)."""
    if not positions:
        return "No position is open."
    listed = ", ".join(f"{p.symbol} {p.side.value}" for p in positions)
    if mode == "live":
        return (f"{len(positions)} position(s) open: {listed}. Stopping the engine leaves them open on the "
                "exchange with their exchange-side stop orders, but trailing stops stop moving and no exit "
                "signal is acted on until an engine runs again.")
    return f"{len(positions)} paper position(s) open: {listed}. A replayed paper session ends with the engine."


def quit_consequence(mode: str, positions: tuple[Position, ...]) -> str:
    """What quitting does to open positions, in the words the quit dialog shows."""
    listed = ", ".join(f"{p.symbol} {p.side.value}" for p in positions)
    if mode == "live":
        return (
            f"{len(positions)} position(s) open: {listed}.\n"
            "They stay open on the exchange, protected by their exchange-side stop orders, but trailing "
            "stops stop moving and no exit signal is acted on until the engine runs again. "
            "For unattended trading use tmux or `tradebot run --headless`."
        )
    return (
        f"{len(positions)} paper position(s) open: {listed}.\n"
        "Paper positions live only in this session: they are simply abandoned when it ends "
        "(no order is sent anywhere)."
    )


class TradebotApp(App[int]):
    """The tradebot console: live panes over one engine, and keys that send it commands."""

    TITLE = "tradebot"
    CSS_PATH = "tradebot.tcss"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-medium"), (150, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "halt", "Halt"),
        Binding("r", "resume", "Resume"),
        Binding("x", "emergency_exit", "Emergency exit"),
        Binding("c", "close_position", "Close"),
        Binding("b", "backtest", "Backtest"),
        Binding("l", "risk_limits", "Limits", show=False),
        Binding("u", "reset_breaker", "Reset breaker", show=False),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    snapshot: reactive[EngineSnapshot | None] = reactive(None, bindings=True)

    def __init__(
        self,
        settings: Settings,
        engine: EngineHandle | None,
        *,
        run_engine: bool = False,
        engine_problem: str = "",
        backtest_runner: BacktestRunner = run_backtest_in_process,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.engine = engine
        self.run_engine = run_engine
        self.attached = isinstance(engine, AttachedEngine)  # to a service: quitting detaches by default
        self.engine_problem = engine_problem
        self.backtest_runner = backtest_runner
        self.submitted: list[Command] = []  # what this console asked for, newest last (for the log and tests)
        self.engine_worker: Worker[None] | None = None
        self.feed_worker: Worker[None] | None = None
        self.subscription: Subscription | None = None
        self.hangup_guard = TerminalLossGuard(self)
        self._log_seeded = False
        self._shutting_down = False
        self.engine_refusal: EngineAlreadyRunningException | None = None  # another engine holds the database

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        exchange = self.settings.exchange
        yield StatusBar(exchange.mode, exchange.name, id="status")
        with Container(id="dashboard"):
            yield PnlPane(id="pnl", classes="pane")
            yield DrawdownPane(self.settings.risk.warning_threshold_ratio, id="drawdown", classes="pane")
            yield PositionsTable(id="positions", classes="pane")
            yield SignalsTable(self.settings.mtf.timeframes, id="signals", classes="pane")
            yield BreakersTable(id="breakers", classes="pane")
            yield EventLog(id="events", classes="pane")
        yield EventTicker("", id="ticker")
        yield Footer()

    def on_mount(self) -> None:
        if not self.is_headless:  # log lines on the terminal would tear the screen; they go to the log file
            configure_logging(self.settings.storage.log_dir, to_stdout=False)
        self.query_one(PositionsTable).focus()
        if self.engine_problem:
            self.query_one(StatusBar).set_engine_note(self.engine_problem)
        if self.engine is None:
            return
        self.subscription = self.engine.bus.subscribe(SUBSCRIPTION_NAME)
        if isinstance(self.engine, AttachedEngine):
            self.engine.on_connection = self.connection_changed
            self.set_interval(1.0, self.query_one(StatusBar).refresh_line)  # the engine's uptime
            self.engine_worker = self.run_worker(self.engine.run(), name="attachment", group="engine",
                                                 exit_on_error=False)
        elif self.run_engine and isinstance(self.engine, RunnableEngine):
            self.engine_worker = self.run_worker(self.engine.run(), name="engine", group="engine", exit_on_error=False)
        self.feed_worker = self.run_worker(
            pump_snapshots(self.subscription, self.post_message, self.settings.ui.max_redraws_per_second),
            name="snapshot-feed",
            group="feed",
            exit_on_error=False,
        )
        if not self.is_headless:
            self.hangup_guard.install()

    def on_unmount(self) -> None:
        self.hangup_guard.uninstall()
        if self.subscription is not None:
            self.subscription.close()

    def connection_changed(self, connected: bool) -> None:
        """The attachment to the engine service was made (again) or lost; the header says which."""
        if not self.screen_stack:
            return
        info = getattr(self.engine, "info", {}) if connected else None
        try:
            self.query_one(StatusBar).set_attachment(info, connected)
        except NoMatches:  # the console is closing
            return
        if not connected:
            self.notify("Lost the connection to the engine; retrying. The engine keeps trading on its own.",
                        severity="warning", timeout=10)

    # ------------------------------------------------------------------ snapshots and events
    def on_snapshot_arrived(self, message: SnapshotArrived) -> None:
        if not self.screen_stack:  # a snapshot queued while the console is closing
            return
        try:
            self.apply_snapshot(message.snapshot)
        except NoMatches:  # the console is closing and its panes are already unmounted
            return

    def apply_snapshot(self, snapshot: EngineSnapshot) -> None:
        """Hand one snapshot to every pane in a single batch (one redraw)."""
        if self.hangup_guard.detached:
            return  # nobody is looking; skip rendering work
        with self.batch_update():
            self.snapshot = snapshot
            self.query_one(StatusBar).snapshot = snapshot
            self.query_one(PnlPane).snapshot = snapshot
            self.query_one(DrawdownPane).snapshot = snapshot
            self.query_one(PositionsTable).snapshot = snapshot
            self.query_one(SignalsTable).snapshot = snapshot
            self.query_one(BreakersTable).snapshot = snapshot
            if not self._log_seeded:
                self._log_seeded = True
                self.show_events(list(snapshot.recent_events))

    def on_events_arrived(self, message: EventsArrived) -> None:
        self._log_seeded = True  # live events from here on; the snapshot's history would duplicate them
        try:
            self.show_events(message.events)
        except NoMatches:  # the console is closing and its panes are already unmounted
            return

    def show_events(self, events: list[Any]) -> None:
        if not events:
            return
        self.query_one(EventLog).add_events(events)
        self.query_one(EventTicker).show(events[-1])

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        if isinstance(message.data_table, PositionsTable):
            self.refresh_bindings()

    async def on_data_table_row_selected(self, message: DataTable.RowSelected) -> None:
        if isinstance(message.data_table, BreakersTable):  # enter on a breaker: reset it
            await self.action_reset_breaker()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is not self.engine_worker:
            return
        if event.state is WorkerState.ERROR and isinstance(event.worker.error, EngineAlreadyRunningException):
            self.engine_refusal = event.worker.error  # run_console reports it (one line) once the terminal is back
            self.exit(return_code=2)
        elif event.state is WorkerState.ERROR:
            logger.error("engine stopped with an error", exc_info=event.worker.error)
            self.query_one(StatusBar).set_engine_note(f"engine failed: {event.worker.error}")
            self.notify(f"The engine stopped: {event.worker.error}", severity="error", timeout=30)
        elif event.state is WorkerState.SUCCESS and not self._shutting_down:
            self.query_one(StatusBar).set_engine_note("engine stopped")

    # ------------------------------------------------------------------ key availability
    def selected_position(self) -> Position | None:
        return self.query_one(PositionsTable).selected_position()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Dim keys that do not apply right now (None = shown dimmed)."""
        on_dashboard = len(self.screen_stack) == 1
        engine_commands = {"halt", "resume", "emergency_exit", "close_position", "risk_limits", "reset_breaker"}
        if action in engine_commands and self.engine is None:
            return None
        state = self.snapshot.trading_state if self.snapshot else None
        if action == "halt":
            return True if state is not TradingState.HALTED else None
        if action == "resume":
            return True if state is not None and state is not TradingState.ACTIVE else None
        if action == "close_position":
            return True if on_dashboard and self.selected_position() is not None else None
        if action == "backtest":
            return True if on_dashboard else None
        return True

    # ------------------------------------------------------------------ commands
    async def submit(self, command: Command) -> None:
        """Send one command to the engine; its outcome arrives as events and snapshots."""
        if self.engine is None:
            self.notify("No engine is running.", severity="error")
            return
        self.submitted.append(command)
        logger.info("console command: %s", command)
        try:
            await self.engine.submit(command)
        except (ConnectionError, ValueError) as problem:  # attached: the engine is unreachable or refused it
            self.notify(f"{type(command).__name__} not sent: {problem}", severity="error", timeout=15)

    async def action_halt(self) -> None:
        await self.submit(Halt(source=COMMAND_SOURCE, reason="halted from the console"))
        self.notify("Halt sent: no new entries once the engine confirms.", title="halt")

    async def action_resume(self) -> None:
        """Resume; lifting a latched loss-limit halt or the emergency latch asks for the passphrase first."""
        command = Resume(source=COMMAND_SOURCE)
        gate = getattr(self.engine, "risk_gate", None)
        if gate is not None and await self.refreshed(gate) and gate.needs_grant(command):
            await self.open_risk_dialog(resume=True)
            return
        await self.submit(command)  # the engine refuses it if a latch needs a grant after all
        self.notify("Resume sent; the state changes once the engine reports it.", title="resume")

    def action_emergency_exit(self) -> None:
        count = len(self.snapshot.positions) if self.snapshot else 0
        body = (
            f"Cancel every open order, close all {count} position(s) at market, then halt trading.\n"
            "This cannot be undone."
        )

        async def answered(confirmed: bool | None) -> None:
            if confirmed:
                await self.submit(EmergencyExit(source=COMMAND_SOURCE, reason="emergency exit from the console"))
                self.notify("Emergency exit sent.", title="emergency exit", severity="warning")
            else:
                self.notify("Emergency exit cancelled; nothing was sent.")

        self.push_screen(TypedConfirmScreen("EMERGENCY EXIT", body, EMERGENCY_WORD), answered)

    def action_close_position(self) -> None:
        position = self.selected_position()
        if position is None:
            return
        body = (
            f"Close {position.symbol} {position.side.value} {position.quantity:g} at market "
            f"(unrealised {position.unrealized_pnl:+,.2f})?"
        )

        async def answered(confirmed: bool | None) -> None:
            if confirmed:
                await self.submit(ClosePosition(source=COMMAND_SOURCE, symbol=position.symbol))
                self.notify(f"Close {position.symbol} sent.", title="close")

        self.push_screen(ConfirmScreen(f"Close {position.symbol}?", body, yes_label="Close"), answered)

    def selected_breaker(self) -> BreakerStatus | None:
        """The breaker under the cursor when the breakers pane has focus, else the first one not closed."""
        statuses = self.snapshot.breakers if self.snapshot else ()
        table = self.query_one(BreakersTable)
        if table.has_focus:
            return next((s for s in statuses if s.name == table.selected_key()), None)
        return next((s for s in statuses if s.state is not CircuitState.CLOSED), None)

    async def refreshed(self, gate: Any) -> bool:
        """Whether the gate's answers could be brought up to date (an attached gate asks the engine)."""
        try:
            await gate.refresh()
        except (ConnectionError, ValueError) as problem:
            self.notify(f"The engine's risk gate did not answer: {problem}", severity="error")
            return False
        return True

    async def open_risk_dialog(self, breaker: BreakerStatus | None = None, *, resume: bool = False) -> None:
        """The passphrase-authenticated risk-change dialog (a limit, a breaker or latch reset, or a resume
        that lifts a latch); only a granted command is submitted."""
        gate = getattr(self.engine, "risk_gate", None)
        if gate is None:
            self.notify("Risk changes are available once the engine runs.", severity="error")
            return
        if not await self.refreshed(gate):
            return
        if not gate.passphrase_configured:
            self.notify(NO_PASSPHRASE_MESSAGE, title="risk change refused", severity="error", timeout=20)
            return

        async def answered(granted: Command | None) -> None:
            if granted is None:
                self.notify("Risk change cancelled; nothing was sent.")
                return
            await self.submit(granted)
            self.notify("Authorised change sent; the event log shows when the engine applied it.", title="risk")

        self.push_screen(RiskChangeScreen(gate, breaker=breaker, resume=resume), answered)

    async def action_risk_limits(self) -> None:
        await self.open_risk_dialog()

    async def action_reset_breaker(self) -> None:
        breaker = self.selected_breaker()
        if breaker is None:
            self.notify("No tripped breaker to reset.")
            return
        await self.open_risk_dialog(breaker)

    def action_backtest(self) -> None:
        if not self.is_screen_installed("backtest"):
            self.install_screen(BacktestScreen(self.settings, self.backtest_runner), "backtest")
        self.push_screen("backtest")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        positions = self.snapshot.positions if self.snapshot else ()
        mode = self.snapshot.mode if self.snapshot else self.settings.exchange.mode
        if self.attached:
            self.push_screen(QuitChoiceScreen(self.detach_or_stop_text(mode, positions)), self.quit_chosen)
            return
        if not positions:
            await self.shutdown()
            return

        async def answered(confirmed: bool | None) -> None:
            if confirmed:
                await self.shutdown()

        self.push_screen(
            ConfirmScreen("Quit with open positions?", quit_consequence(mode, positions), yes_label="Quit"), answered
        )

    def detach_or_stop_text(self, mode: str, positions: tuple[Position, ...]) -> str:
        info = getattr(self.engine, "info", {}) or {}
        pid = f" (pid {info['pid']})" if "pid" in info else ""
        return (f"Detach: the engine{pid} keeps trading; `tradebot` from any SSH session attaches again.\n\n"
                f"Stop the engine: {stop_consequence(mode, positions)}")

    async def quit_chosen(self, choice: QuitChoice | None) -> None:
        if choice is QuitChoice.STOP_ENGINE:
            await self.submit(StopEngine(source=COMMAND_SOURCE, reason="stopped from the console"))
        if choice is not None:
            await self.shutdown()

    async def shutdown(self, return_code: int = 0) -> None:
        """Stop the engine this console runs (waiting at most ENGINE_STOP_TIMEOUT_S), then exit."""
        if self._shutting_down:
            return
        self._shutting_down = True
        if self.attached and self.engine_worker is not None:
            self.engine_worker.cancel()  # detach: the engine service goes on
        elif self.run_engine and isinstance(self.engine, RunnableEngine):
            try:
                stopping = self.engine.stop()
                if inspect.isawaitable(stopping):
                    await stopping
                if self.engine_worker is not None:
                    await asyncio.wait_for(self.engine_worker.wait(), ENGINE_STOP_TIMEOUT_S)
            except Exception:  # quitting must still work when the engine cannot stop cleanly
                logger.exception("engine did not stop cleanly")
        self.exit(return_code)

    def panic(self, *renderables: Any) -> None:
        """Textual's fatal-error exit, except when the terminal is gone: then log and keep the engine running."""
        if self.hangup_guard.detached:
            logger.error("console error after the terminal was lost (ignored): %s", renderables)
            return
        super().panic(*renderables)


def create_app(
    settings: Settings,
    engine: EngineHandle | None = None,
    *,
    live: bool = False,
    backtest_runner: BacktestRunner = run_backtest_in_process,
    risk_passphrase_hash: Any = None,
) -> TradebotApp:
    """Build the console.

    Args:
        settings: tradebot settings.
        engine: a running engine handle to attach to; None builds the real engine with
            ``engine.runtime.engine.build_engine(settings)`` and runs it as the app's ``engine`` worker.
        live: the ``--live`` flag, forwarded to ``build_engine`` (live trading needs it).
        backtest_runner: what the backtest screen calls (from a thread worker) to run one backtest; the default
            runs it in a child process.
        risk_passphrase_hash: the risk-change passphrase hash for the built engine (None: risk changes refused).
    """
    if engine is not None:
        return TradebotApp(settings, engine, backtest_runner=backtest_runner)
    try:
        from engine.runtime.engine import build_engine
    except ImportError as exc:
        logger.error("engine runtime unavailable: %s", exc)
        return TradebotApp(settings, None, engine_problem=f"engine unavailable: {exc}", backtest_runner=backtest_runner)
    engine = build_engine(settings, live=live, risk_passphrase_hash=risk_passphrase_hash)
    return TradebotApp(settings, engine, run_engine=True, backtest_runner=backtest_runner)
