"""Specification of the console keys: every key, every confirmation and every cancel path.

The engine double records commands and never changes state by itself, so each test also shows
that the console sends a command and otherwise waits for the engine.
"""

from __future__ import annotations

from textual.widgets import Input

from engine.config import Settings
from engine.domain.commands import ClosePosition, EmergencyExit, Halt, Resume
from engine.domain.models import TradingState
from tests.tui.conftest import publish_and_wait
from tests.tui.engine_double import RecordingEngine, crafted_snapshot
from tradebot_tui.app import EMERGENCY_WORD, create_app, quit_consequence
from tradebot_tui.screens.backtest import BacktestScreen
from tradebot_tui.screens.confirm import ConfirmScreen, TypedConfirmScreen
from tradebot_tui.screens.help import HelpScreen

SIZE = (120, 40)


async def test_h_sends_halt(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("h")
        await pilot.pause()
    assert [type(c) for c in engine.commands] == [Halt]
    assert engine.commands[0].source == "console"


async def test_h_is_dimmed_and_sends_nothing_while_halted(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot(trading_state=TradingState.HALTED))
        assert app.check_action("halt", ()) is None
        await pilot.press("h")
        await pilot.pause()
    assert engine.commands == []


async def test_r_sends_resume_when_halted(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot(trading_state=TradingState.HALTED))
        await pilot.press("r")
        await pilot.pause()
    assert [type(c) for c in engine.commands] == [Resume]


async def test_r_is_dimmed_and_sends_nothing_while_active(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        assert app.check_action("resume", ()) is None
        await pilot.press("r")
        await pilot.pause()
    assert engine.commands == []


async def test_x_with_the_typed_word_sends_emergency_exit(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, TypedConfirmScreen)
        await pilot.press(*EMERGENCY_WORD, "enter")
        await pilot.pause()
        assert not isinstance(app.screen, TypedConfirmScreen)
    assert [type(c) for c in engine.commands] == [EmergencyExit]


async def test_x_with_a_wrong_word_sends_nothing_and_keeps_asking(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("x")
        await pilot.pause()
        await pilot.press(*"exit", "enter")  # lower case is not the word
        await pilot.pause()
        assert isinstance(app.screen, TypedConfirmScreen)
        assert app.screen.query_one(Input).value == ""
        assert engine.commands == []


async def test_x_then_escape_cancels_and_sends_nothing(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("x")
        await pilot.pause()
        await pilot.press(*"EXI", "escape")
        await pilot.pause()
        assert not isinstance(app.screen, TypedConfirmScreen)
    assert engine.commands == []


async def test_keys_of_the_dashboard_do_not_act_behind_an_open_dialog(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("c")
        await pilot.pause()
        await pilot.press("h", "x", "b")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
    assert engine.commands == []


async def test_c_then_y_closes_the_position_under_the_cursor(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("down", "c")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "ETH/USDT" in app.screen.body_text
        await pilot.press("y")
        await pilot.pause()
    assert engine.commands == [ClosePosition(source="console", symbol="ETH/USDT")]


async def test_c_then_n_or_escape_or_the_default_button_closes_nothing(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        for cancel_key in ("n", "escape", "enter"):  # enter presses the focused No button
            await pilot.press("c")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press(cancel_key)
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen)
    assert engine.commands == []


async def test_c_is_dimmed_without_positions(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot(positions=()))
        assert app.check_action("close_position", ()) is None
        await pilot.press("c")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmScreen)


async def test_question_mark_opens_help_and_escape_closes_it(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_b_opens_the_backtest_screen_and_escape_returns(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await pilot.pause()
        assert isinstance(app.screen, BacktestScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, BacktestScreen)


async def test_q_without_positions_quits_at_once(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot(positions=()))
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    assert engine.commands == []


async def test_q_with_positions_asks_and_n_keeps_running(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "abandoned" in app.screen.body_text
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and not isinstance(app.screen, ConfirmScreen)
    assert engine.commands == []


async def test_q_with_positions_then_y_quits_without_sending_anything(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        await publish_and_wait(pilot, engine, crafted_snapshot())
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
    assert app.return_code == 0
    assert engine.commands == []


def test_quit_message_in_live_mode_says_exchange_side_stops_stay() -> None:
    text = quit_consequence("live", crafted_snapshot().positions)
    assert "exchange-side stop" in text and "BTC/USDT long" in text and "abandoned" not in text


def test_quit_message_in_paper_mode_says_positions_are_abandoned() -> None:
    text = quit_consequence("paper", crafted_snapshot().positions)
    assert "abandoned" in text and "2 paper position(s)" in text


async def test_engine_keys_are_dimmed_when_no_engine_could_be_started() -> None:
    from tradebot_tui.app import TradebotApp as App

    app = App(Settings(), None, engine_problem="engine unavailable: test")
    async with app.run_test(size=SIZE) as pilot:
        for action in ("halt", "resume", "emergency_exit", "close_position"):
            assert app.check_action(action, ()) is None
        await pilot.press("x")
        await pilot.pause()
        assert not isinstance(app.screen, TypedConfirmScreen)
        assert "engine unavailable" in str(app.query_one("#status").status_text())


async def test_emergency_exit_dialog_counts_the_open_positions(engine: RecordingEngine) -> None:
    app = create_app(Settings(), engine)
    async with app.run_test(size=SIZE) as pilot:
        snapshot = crafted_snapshot()
        await publish_and_wait(pilot, engine, snapshot)
        await pilot.press("x")
        await pilot.pause()
        assert isinstance(app.screen, TypedConfirmScreen)
        assert f"close all {len(snapshot.positions)} position(s)" in app.screen.body_text
        assert len(snapshot.positions) > 0
