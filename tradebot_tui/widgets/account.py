"""Provides the account panes: P&L with an equity sparkline, and drawdown / daily-loss bars against limits."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Sparkline, Static

from engine.domain.snapshot import EngineSnapshot
from tradebot_tui import formatting as fmt

SPARKLINE_POINTS = 120  # newest equity points drawn; older ones would be squeezed into the same cells
LEVEL_CLASSES = {"ok": "-ok", "warn": "-warn", "limit": "-limit"}


def _signed_style(value: float) -> str:
    return "green" if value > 0 else "red" if value < 0 else ""


class PnlPane(Vertical):
    """Realised today, unrealised and total P&L, equity and cash, and a sparkline of equity."""

    BORDER_TITLE = "P&L"
    snapshot: reactive[EngineSnapshot | None] = reactive(None)

    def compose(self) -> ComposeResult:
        yield Static("no data yet", id="pnl-figures")
        yield Sparkline([], id="equity-sparkline")

    def watch_snapshot(self, snapshot: EngineSnapshot | None) -> None:
        if snapshot is None:
            return
        figures = Text()
        for label, value in (
            ("realised", snapshot.realized_pnl_today),
            ("unrealised", snapshot.unrealized_pnl),
            ("total", snapshot.total_pnl),
        ):
            figures.append(f"{label:<11}")
            figures.append(f"{fmt.money(value, signed=True):>13}\n", style=_signed_style(value))
        figures.append(f"{'equity':<11}{fmt.money(snapshot.equity):>13}\n")
        figures.append(f"{'cash':<11}{fmt.money(snapshot.cash):>13}")
        self.query_one("#pnl-figures", Static).update(figures)
        history = snapshot.equity_history[-SPARKLINE_POINTS:] or (snapshot.equity,)
        self.query_one("#equity-sparkline", Sparkline).data = list(history)


class LimitBar(Static):
    """One labelled bar of a value against its limit; its class says ``-ok``, ``-warn`` or ``-limit``.

    The bar takes whatever width is left beside the label and the figures.
    """

    LABEL_WIDTH = 9
    MIN_BAR_WIDTH = 4

    def __init__(self, placeholder: str = "", *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(placeholder, id=id)
        self.reading: tuple[str, float, float] | None = None

    def show(self, label: str, value_pct: float, limit_pct: float, warning_ratio: float) -> None:
        level = fmt.limit_level(value_pct, limit_pct, warning_ratio)
        for name in LEVEL_CLASSES.values():
            self.remove_class(name)
        self.add_class(LEVEL_CLASSES[level])
        self.reading = (label, value_pct, limit_pct)
        self.update(self.bar_text(self.content_size.width))

    def on_resize(self) -> None:
        if self.reading is not None:
            self.update(self.bar_text(self.content_size.width))

    def bar_text(self, width: int) -> str:
        assert self.reading is not None
        label, value_pct, limit_pct = self.reading
        figures = f" {fmt.pct(value_pct)}/{fmt.pct(limit_pct)}"
        bar_width = max(self.MIN_BAR_WIDTH, width - self.LABEL_WIDTH - len(figures))
        ratio = value_pct / limit_pct if limit_pct > 0 else 0.0
        return f"{label:<{self.LABEL_WIDTH}}{fmt.bar(ratio, bar_width)}{figures}"


class DrawdownPane(Vertical):
    """Current drawdown, worst drawdown and today's loss as bars: amber from the warning ratio, red at the limit."""

    BORDER_TITLE = "Drawdown"
    snapshot: reactive[EngineSnapshot | None] = reactive(None)

    def __init__(self, warning_ratio: float, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id, classes=classes)
        self.warning_ratio = warning_ratio

    def compose(self) -> ComposeResult:
        yield LimitBar("drawdown  no data yet", id="dd-current")
        yield LimitBar("", id="dd-max")
        yield LimitBar("", id="dd-daily")
        yield Static("", id="dd-peak")

    def watch_snapshot(self, snapshot: EngineSnapshot | None) -> None:
        if snapshot is None:
            return
        limit = snapshot.max_drawdown_limit_pct
        self.query_one("#dd-current", LimitBar).show("drawdown", snapshot.drawdown_pct, limit, self.warning_ratio)
        self.query_one("#dd-max", LimitBar).show("worst", snapshot.max_drawdown_pct, limit, self.warning_ratio)
        self.query_one("#dd-daily", LimitBar).show(
            "day loss", snapshot.daily_loss_pct, snapshot.daily_loss_limit_pct, self.warning_ratio
        )
        self.query_one("#dd-peak", Static).update(f"{'peak':<9}{fmt.money(snapshot.peak_equity)}")
