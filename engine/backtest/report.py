"""Provides the self-contained HTML report of a backtest and the side-by-side comparison of runs.

The report is one file with inline SVG charts (equity, drawdown, trades on price) and tables; it loads
nothing from the network and runs no JavaScript.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from engine.backtest.metrics import drawdown_series
from engine.backtest.result import BacktestResult, iso, plain
from engine.domain.models import Candles

CHART_WIDTH = 960
CHART_HEIGHT = 220
MAX_POINTS = 1500  # points per polyline; longer curves are reduced to per-bucket min/max
MAX_TRADE_ROWS = 500

# Metric keys shown in tables, with how to format them.
METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("total_return", "Total return", "pct"),
    ("annual_return", "Annual return (CAGR)", "pct"),
    ("sharpe_ratio", "Sharpe (daily, 365)", "num"),
    ("sortino_ratio", "Sortino (daily, 365)", "num"),
    ("calmar_ratio", "Calmar", "num"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("max_drawdown_duration_days", "Max drawdown duration (days)", "num"),
    ("recovery_factor", "Recovery factor", "num"),
    ("total_trades", "Trades", "int"),
    ("winning_trades", "Winning trades", "int"),
    ("losing_trades", "Losing trades", "int"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("expectancy", "Expectancy (quote per trade)", "money"),
    ("exposure", "Exposure", "pct"),
    ("max_consecutive_losses", "Max consecutive losses", "int"),
    ("net_profit", "Net profit", "money"),
    ("total_fees", "Fees", "money"),
    ("final_equity", "Final equity", "money"),
    ("stop_and_target_in_one_bar_trades", "Stop and target in one bar", "int"),
    ("entries_sized_by_risk", "Entries sized by risk", "int"),
    ("entries_sized_by_max_risk", "Entries capped: max risk", "int"),
    ("entries_sized_by_max_notional", "Entries capped: max notional", "int"),
    ("entries_sized_by_balance", "Entries capped: balance", "int"),
    ("signals_candidates", "Entry signals before volume rules", "int"),
    ("signals_vetoed_breakout_volume", "Vetoed: breakout without volume", "int"),
    ("signals_vetoed_institutional", "Vetoed: institutional against", "int"),
    ("signals_vetoed_divergence", "Vetoed: divergence against", "int"),
    ("entries_downsized_institutional", "Entries downsized: institutional", "int"),
    ("entries_downsized_divergence", "Entries downsized: divergence", "int"),
)


def format_metric(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if kind == "pct":
        return f"{100.0 * value:.2f}%"
    if kind == "int":
        return str(int(value))
    if kind == "money":
        return f"{value:,.2f}"
    return f"{value:.3f}"


def _reduce(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most ~MAX_POINTS points keeping each bucket's min and max (so spikes stay visible)."""
    if len(x) <= MAX_POINTS:
        return x, y
    buckets = np.array_split(np.arange(len(x)), MAX_POINTS // 2)
    keep = sorted(
        {int(b[np.argmin(y[b])]) for b in buckets if len(b)} | {int(b[np.argmax(y[b])]) for b in buckets if len(b)}
    )
    return x[keep], y[keep]


class _Scale:
    def __init__(self, x: np.ndarray, y: np.ndarray, pad: float = 0.0) -> None:
        self.x0, self.x1 = float(x.min()), float(x.max())
        lo, hi = float(np.nanmin(y)), float(np.nanmax(y))
        span = hi - lo or abs(hi) or 1.0
        self.y0, self.y1 = lo - pad * span, hi + pad * span

    def px(self, x: float) -> float:
        return 40 + (x - self.x0) / ((self.x1 - self.x0) or 1.0) * (CHART_WIDTH - 50)

    def py(self, y: float) -> float:
        return 10 + (self.y1 - y) / ((self.y1 - self.y0) or 1.0) * (CHART_HEIGHT - 30)


def _polyline(scale: _Scale, x: np.ndarray, y: np.ndarray, color: str) -> str:
    points = " ".join(f"{scale.px(a):.1f},{scale.py(b):.1f}" for a, b in zip(x.tolist(), y.tolist(), strict=True))
    return f'<polyline fill="none" stroke="{color}" stroke-width="1.2" points="{points}"/>'


def _frame(title: str, scale: _Scale, body: str, value_format: str = "{:,.2f}") -> str:
    labels = (
        f'<text x="4" y="18" class="axis">{html.escape(value_format.format(scale.y1))}</text>'
        f'<text x="4" y="{CHART_HEIGHT - 22}" class="axis">{html.escape(value_format.format(scale.y0))}</text>'
        f'<text x="40" y="{CHART_HEIGHT - 4}" class="axis">{iso(int(scale.x0))[:10]}</text>'
        f'<text x="{CHART_WIDTH - 80}" y="{CHART_HEIGHT - 4}" class="axis">{iso(int(scale.x1))[:10]}</text>'
    )
    return (
        f"<h2>{html.escape(title)}</h2>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" aria-label="{html.escape(title)}">'
        f'<rect x="40" y="10" width="{CHART_WIDTH - 50}" height="{CHART_HEIGHT - 30}" class="plot"/>'
        f"{body}{labels}</svg>"
    )


def equity_svg(result: BacktestResult) -> str:
    x, y = _reduce(result.equity_time_ms.astype(np.float64), result.equity)
    scale = _Scale(x, y, 0.05)
    return _frame("Equity", scale, _polyline(scale, x, y, "#1f6feb"))


def drawdown_svg(result: BacktestResult) -> str:
    ratio, _ = drawdown_series(result.equity, result.initial_capital)
    x, y = _reduce(result.equity_time_ms.astype(np.float64), -100.0 * ratio)
    scale = _Scale(x, np.append(y, 0.0))
    area = _polyline(scale, x, y, "#cf222e")
    return _frame("Drawdown (% of running peak)", scale, area, "{:.2f}%")


def trades_svg(result: BacktestResult, candles: Candles) -> str:
    window = candles.between(result.start_ms, result.end_ms)
    if len(window) == 0:
        return ""
    x, y = _reduce(window.open_time_ms.astype(np.float64), window.close)
    scale = _Scale(x, np.concatenate([y, window.low[:1], window.high[:1]]), 0.05)
    marks = []
    for record in result.trades:
        trade = record.trade
        if trade.symbol != candles.symbol:
            continue
        color = "#1a7f37" if trade.pnl > 0 else "#cf222e"
        x0, y0 = scale.px(trade.entry_ms), scale.py(trade.entry_price)
        x1, y1 = scale.px(trade.exit_ms), scale.py(trade.exit_price)
        marks.append(
            f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{color}" stroke-width="1.5"/>'
            f'<circle cx="{x0:.1f}" cy="{y0:.1f}" r="2.5" fill="#1f6feb"/>'
            f'<circle cx="{x1:.1f}" cy="{y1:.1f}" r="2.5" fill="{color}"/>'
        )
    body = _polyline(scale, x, y, "#57606a") + "".join(marks)
    return _frame(f"{candles.symbol} close with trades (entry blue, exit green/red)", scale, body)


def metrics_table(rows: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """A table with one column per run (``rows`` = (column title, metrics dict))."""
    head = "".join(f"<th>{html.escape(title)}</th>" for title, _ in rows)
    body = []
    for key, label, kind in METRIC_ROWS:
        cells = "".join(f"<td>{format_metric(metrics.get(key), kind)}</td>" for _, metrics in rows)
        body.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"


def _trades_table(result: BacktestResult) -> str:
    rows = []
    for record in result.trades[:MAX_TRADE_ROWS]:
        t = record.trade
        flag = " ⚠" if record.stop_and_target_in_one_bar else ""
        rows.append(
            f"<tr><td>{html.escape(t.symbol)}</td><td>{t.side.value}</td><td>{iso(t.entry_ms)}</td>"
            f"<td>{iso(t.exit_ms)}</td><td>{t.quantity:g}</td><td>{t.entry_price:,.6g}</td>"
            f"<td>{t.exit_price:,.6g}</td><td>{t.fees:,.2f}</td><td>{t.pnl:+,.2f}</td>"
            f"<td>{html.escape(record.exit_kind.value)}{flag}</td></tr>"
        )
    more = len(result.trades) - MAX_TRADE_ROWS
    note = f"<p>{more} more trades not shown (see trades.csv).</p>" if more > 0 else ""
    header = "<tr><th>symbol</th><th>side</th><th>entry</th><th>exit</th><th>qty</th><th>entry price</th>"
    header += "<th>exit price</th><th>fees</th><th>pnl</th><th>exit</th></tr>"
    return f"<table>{header}{''.join(rows)}</table>{note}"


def _key_values(values: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(plain(v)))}</td></tr>"
        for k, v in sorted(values.items())
    )
    return f"<table>{rows}</table>"


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1f2328}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #d0d7de;padding:3px 8px;font-size:13px}
th{text-align:left;background:#f6f8fa}.plot{fill:#fff;stroke:#d0d7de}.axis{font-size:11px;fill:#57606a}
"""


def render_report(result: BacktestResult, candles: Mapping[str, Candles], title: str = "Backtest report") -> str:
    """The report's HTML text (deterministic for a given result)."""
    charts = [equity_svg(result), drawdown_svg(result)]
    charts += [trades_svg(result, candles[s]) for s in result.symbols if s in candles]
    span = f"{', '.join(result.symbols)} {result.timeframe} · {iso(result.start_ms)} → {iso(result.end_ms)}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(span)}</p>"
        f"{metrics_table([('this run', result.metrics_dict())])}{''.join(charts)}"
        f"<h2>Fill assumptions</h2>{_key_values(result.assumptions['fills'])}"
        f"<h2>Trades</h2>{_trades_table(result)}"
        f"<h2>Parameters</h2>{_key_values(result.params)}</body></html>"
    )


def compare_table(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """Plain-text table of metrics side by side (``runs`` = (title, metrics dict))."""
    width = max(12, *(len(title) for title, _ in runs)) if runs else 12
    lines = [f"{'metric':<30}" + "".join(f"{title:>{width + 2}}" for title, _ in runs)]
    for key, label, kind in METRIC_ROWS:
        lines.append(f"{label:<30}" + "".join(f"{format_metric(m.get(key), kind):>{width + 2}}" for _, m in runs))
    return "\n".join(lines)


def best_optimisation_row(result: Any) -> Mapping[str, Any] | None:
    """The best parameter set of a stored optimisation run's result (its rows are ranked); None otherwise."""
    rows = result.get("rows") if isinstance(result, Mapping) else None
    return rows[0] if rows else None


def comparison_columns(
    run_id: int, name: str, metrics: Mapping[str, Any], result: Any
) -> list[tuple[str, Mapping[str, Any]]]:
    """The columns a stored run contributes to :func:`compare_table`.

    A backtest is one column of its metrics. An optimisation's stored metrics are only a summary, so it
    contributes its best parameter set's metrics instead: in-sample and out-of-sample, per fold.
    """
    best = best_optimisation_row(result)
    if best is None:
        return [(f"#{run_id} {name}", metrics)]
    columns: list[tuple[str, Mapping[str, Any]]] = []
    for fold, (inside, outside) in enumerate(zip(best["in_sample"], best["out_of_sample"], strict=True), 1):
        columns.append((f"#{run_id} best IS{fold}", inside))
        columns.append((f"#{run_id} best OOS{fold}", outside))
    return columns
