"""Provides the runtime's shutdown: stop the tasks, save the final state (or say what was lost), close everything.

Kept apart from :mod:`engine.runtime.engine` like :mod:`engine.runtime.startup`, so the orchestrator reads as the
candle/command loop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from engine.domain.errors import StoreException
from engine.domain.models import EngineState
from engine.runtime.remote_control import stop_notifier

if TYPE_CHECKING:
    from engine.runtime.engine import TradingEngine

log = logging.getLogger("engine.runtime.engine")  # the engine's own lines ("engine stopped") keep their logger


async def shutdown_engine(engine: TradingEngine, tasks: list[asyncio.Task[Any]]) -> None:
    """Stop every task, save the final state, close everything.

    Raises:
        StoreException: the final state could not be saved (a failed write or a flush timeout; logged
            at CRITICAL naming what was lost, ``engine_state`` is ``ERROR``). Not raised when the engine
            had already failed: that error is the one ``run`` reports.
    """
    failed_before = engine.engine_state is EngineState.ERROR
    if engine.engine_state is not EngineState.ERROR:
        engine.engine_state = EngineState.STOPPING
    engine.publish_snapshot()
    # Stop producers first; the store writer finishes what is queued (a write cut off by cancellation
    # is rolled back, so it would be lost).
    writer = tasks[0] if tasks else None
    others = tasks[1:]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    unsaved: list[str] = []
    if engine.recorder is not None:
        now_ms = engine.clock.now_ms()
        final = [engine.recorder.save_core_state(now_ms), engine.recorder.save_portfolio(engine.portfolio, now_ms)]
        if writer is not None and not writer.done():
            try:
                await asyncio.wait_for(engine.recorder.flush(), 30)
            except TimeoutError:
                unsaved.append(f"{engine.recorder.pending_writes} queued writes (the store writer did not "
                               "finish within 30 s)")
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        else:
            with contextlib.suppress(Exception):
                await engine.recorder.drain_now()
        prefix = f"{engine.database_path}: "  # named once, in front of the whole message
        for write in final:
            if write.error is not None:
                unsaved.append(f"{write.what} ({str(write.error).removeprefix(prefix)})")
            elif not write.done:
                unsaved.append(f"{write.what} (not written)")
    shutdown_error: StoreException | None = None
    if unsaved:
        engine.engine_state = EngineState.ERROR
        shutdown_error = StoreException(f"{engine.database_path}: final state NOT saved at shutdown: "
                                        + "; ".join(unsaved))
        log.critical("%s", shutdown_error)
    if engine.execution is not None:
        with contextlib.suppress(Exception):
            await engine.execution.close()
    await stop_notifier(engine)  # queued events reach the outbox while the store is open
    if engine.store is not None:
        with contextlib.suppress(Exception):
            await engine.store.close()
    if engine.engine_state is not EngineState.ERROR:
        engine.engine_state = EngineState.STOPPED
    engine.publish_snapshot()
    log.info("engine %s", engine.engine_state)
    if engine.instance_lock is not None:  # last: nothing of this engine touches the database any more
        engine.instance_lock.release()
    if shutdown_error is not None and not failed_before:
        raise shutdown_error  # `tradebot run --headless` prints it as one line and exits non-zero
