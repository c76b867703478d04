"""Benchmark: key-to-header latency of the console while a backtest runs (issue 16: p99 under 100 ms).

The real engine service (``tradebot run --headless`` in a subprocess, paper replay of the bundled candles) and
the real console (Textual, headless through Pilot, 120x40) attached to it over the API. A key (``h`` halt,
then ``r`` resume, alternating) is timed from the key event until the status bar shows the new state, i.e.
console -> API -> engine -> snapshot -> websocket -> console render. Three conditions, in the same run:

1. idle: nothing else runs;
2. thread: backtests of the bundled BTC/USDT 1m data (130k bars) run back to back in a thread of the
   console's process (how the backtest screen ran them before);
3. process: the same backtests through ``run_backtest_in_process`` (how the screen runs them now).

Printed: p50 / p99 / max in ms per condition, p99 against idle as a ratio, and the load average.
Run: ``.venv/bin/python benchmarks/bench_console_keys.py [--presses N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual import events  # noqa: E402

from engine.config import Settings  # noqa: E402
from engine.domain.models import TradingState  # noqa: E402
from engine.runtime.api.client import EngineClient, EngineUnreachable, RemoteEngine  # noqa: E402
from engine.runtime.service import api_socket_path  # noqa: E402
from tradebot_tui.app import TradebotApp, create_app  # noqa: E402
from tradebot_tui.backtest_process import run_backtest_in_process  # noqa: E402
from tradebot_tui.backtest_runner import BacktestRequest, run_backtest  # noqa: E402
from tradebot_tui.widgets.status import StatusBar  # noqa: E402

REQUEST = BacktestRequest("BTC/USDT", "1m", None)
TIMEOUT_S = 30.0


class Background:
    """Backtests back to back in a thread until stopped; counts them."""

    def __init__(self, runner: Callable[..., object], settings: Settings) -> None:
        self.runner, self.settings = runner, settings
        self.stopping = threading.Event()
        self.done = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.runner(self.settings, REQUEST, lambda _: None, self.stopping.is_set)
                self.done += 1
            except Exception:  # cancelled when stopping
                return

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(TIMEOUT_S)


async def key_latencies(app: TradebotApp, pilot: object, presses: int) -> list[float]:
    latencies: list[float] = []
    status = app.query_one(StatusBar)
    for n in range(presses):
        key, state = ("h", TradingState.HALTED) if n % 2 == 0 else ("r", TradingState.ACTIVE)
        start = time.perf_counter()
        # Posted like the terminal driver posts a key (Pilot.press would also wait for the app to go idle,
        # which a replaying engine never does).
        app.post_message(events.Key(key, key))
        deadline = start + TIMEOUT_S
        while state.value not in str(status.status_text()):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{key} never showed {state.value}")
            await asyncio.sleep(0.002)
        latencies.append((time.perf_counter() - start) * 1000.0)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def until_answering(socket: Path, service: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120.0
    while True:
        try:
            async with EngineClient(socket, timeout_s=2.0) as client:
                await client.engine_info()
                return
        except EngineUnreachable:
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the engine service did not start") from None
            await asyncio.sleep(0.1)


async def main(presses: int) -> None:
    logging.disable(logging.WARNING)  # the console's log lines would land on this terminal
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {presses} presses per condition")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        database, logs = root / "data" / "tradebot.sqlite3", root / "logs"
        config = root / "config.toml"
        config.write_text('[exchange]\nsymbols = ["BTC/USDT", "ETH/USDT"]\nreplay_speed = 8.0\n'
                          f'[storage]\ndatabase_path = "{database}"\nlog_dir = "{logs}"\n')
        config.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEBOT_")}
        env.update(PYTHONPATH=str(ROOT), TRADEBOT_CONFIG=str(config), TRADEBOT_SECRETS_FILE=str(root / "none"))
        service = subprocess.Popen([sys.executable, "-m", "tradebot_tui.cli", "run", "--headless"], env=env,
                                   cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        settings = Settings(exchange={"symbols": ["BTC/USDT", "ETH/USDT"]},
                            storage={"database_path": database, "log_dir": logs})
        results: dict[str, list[float]] = {}
        try:
            socket = api_socket_path(database)
            await until_answering(socket, service)
            app = create_app(settings, RemoteEngine(socket))
            assert isinstance(app, TradebotApp)
            async with app.run_test(size=(120, 40)) as pilot:
                while app.snapshot is None:
                    await pilot.pause(0.05)
                results["idle"] = await key_latencies(app, pilot, presses)
                for name, runner in (("thread", run_backtest), ("process", run_backtest_in_process)):
                    with Background(runner, settings) as background:
                        await asyncio.sleep(1.0)  # let the first backtest get going
                        results[name] = await key_latencies(app, pilot, presses)
                    print(f"  ({name}: {background.done} backtests of 130k 1m bars finished while measuring)")
                app.exit()
        finally:
            service.terminate()
            service.wait(30)
    idle_p99 = percentile(results["idle"], 0.99)
    for name, values in results.items():
        p99 = percentile(values, 0.99)
        print(f"{name:>8}: p50 {percentile(values, 0.5):7.1f} ms  p99 {p99:7.1f} ms  max {max(values):7.1f} ms  "
              f"p99/idle {p99 / idle_p99:5.1f}x")
    print(f"target: p99 under 100 ms while a backtest runs -> process {percentile(results['process'], 0.99):.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=40)
    asyncio.run(main(parser.parse_args().presses))
