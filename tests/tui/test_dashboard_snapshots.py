"""Layout of the dashboard in paper mode at 80x24 and 160x48, from one fixed crafted snapshot.

Baselines live in ``tests/tui/__snapshots__``; regenerate with ``pytest --snapshot-update`` after a
deliberate layout change. Every text on screen comes from the snapshot (no wall clock).
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot

from engine.config import Settings
from tests.tui.conftest import wait_until_shown
from tests.tui.engine_double import RecordingEngine, crafted_snapshot
from tradebot_tui.app import create_app


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_dashboard_layout_in_paper_mode(snap_compare: Any, size: tuple[int, int]) -> None:
    engine = RecordingEngine()
    snapshot = crafted_snapshot()
    engine.publish(snapshot)
    app = create_app(Settings(), engine)

    async def shown(pilot: Pilot[int]) -> None:
        await wait_until_shown(pilot, snapshot)

    assert snap_compare(app, terminal_size=size, run_before=shown)
