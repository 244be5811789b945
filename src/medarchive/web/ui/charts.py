"""Trend and bar charts drawn on the server as inline SVG: no script, works offline.

Charts are plain SVG 1.1 (W3C) with a ``<title>`` and ``role="img"``/``aria-label`` so screen
readers announce them, and every chart is paired with a data table in the page. Text goes
through markupsafe escaping. Colours are the theme's and meet WCAG 2.1 contrast on white.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 14, 30
COLOURS = ("#0b5cad", "#a3360b", "#2e6b1f", "#6b2e8f")


@dataclass(frozen=True, slots=True)
class Series:
    """One line: its label and (time, value) points in time order."""

    label: str
    points: Sequence[tuple[datetime, float]]


def _ticks(low: float, high: float, count: int = 4) -> list[float]:
    if high <= low:
        return [low]
    step = (high - low) / count
    return [low + step * i for i in range(count + 1)]


def _label(value: float, step: float = 1.0) -> str:
    """``value`` with as many decimals as the tick ``step`` needs (at most two)."""
    decimals = 0 if step >= 1 else min(2, -math.floor(math.log10(step)))
    return f"{value:.{decimals}f}"


def line_chart(title: str, series: Sequence[Series], unit: str = "") -> Markup:
    """A time-series line chart of ``series`` (shared axes), as inline SVG markup."""
    points = [p for s in series for p in s.points]
    if not points:
        return Markup("")
    times = [p[0].timestamp() for p in points]
    values = [p[1] for p in points]
    t0, t1 = min(times), max(times)
    v0, v1 = min(values), max(values)
    pad = (v1 - v0) * 0.1 or max(abs(v1) * 0.1, 1.0)
    v0, v1 = v0 - pad, v1 + pad
    span_t = (t1 - t0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - t0) / span_t * plot_w if t1 > t0 else LEFT + plot_w / 2

    def y(v: float) -> float:
        return TOP + (v1 - v) / (v1 - v0) * plot_h

    label = f"{title} ({unit})" if unit else title
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
             f"<title>{escape(label)}</title>"]
    ticks = _ticks(v0, v1)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    for tick in ticks:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" '
                     f'y2="{y(tick):.1f}" stroke="#d0d5dc" stroke-width="1"/>'
                     f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" '
                     f'font-size="11" fill="#333">{_label(tick, step)}</text>')
    first = datetime.fromtimestamp(t0, UTC).date().isoformat()
    last = datetime.fromtimestamp(t1, UTC).date().isoformat()
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="11" fill="#333">{first}</text>'
                 f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" font-size="11" fill="#333" '
                 f'text-anchor="end">{last}</text>')
    for number, line in enumerate(series):
        colour = COLOURS[number % len(COLOURS)]
        coords = " ".join(f"{x(t.timestamp()):.1f},{y(v):.1f}" for t, v in line.points)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{coords}"/>')
        for t, v in line.points[-60:]:
            parts.append(f'<circle cx="{x(t.timestamp()):.1f}" cy="{y(v):.1f}" r="2.5" '
                         f'fill="{colour}"/>')
        parts.append(f'<text x="{LEFT + 6 + number * 120}" y="{TOP + 10}" font-size="11" '
                     f'fill="{colour}">{escape(line.label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(title: str, bars: Sequence[tuple[str, float]]) -> Markup:
    """A vertical bar chart (labels under the bars) as inline SVG markup."""
    if not bars:
        return Markup("")
    top = max(v for _, v in bars) or 1.0
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    width = plot_w / len(bars)
    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
             f"<title>{escape(title)}</title>"]
    step = max(1, len(bars) // 8)
    for number, (name, value) in enumerate(bars):
        h = value / top * plot_h
        x = LEFT + number * width
        parts.append(f'<rect x="{x + 1:.1f}" y="{TOP + plot_h - h:.1f}" '
                     f'width="{max(width - 2, 1):.1f}" height="{h:.1f}" fill="{COLOURS[0]}">'
                     f"<title>{escape(name)}: {_label(value)}</title></rect>")
        if number % step == 0:
            parts.append(f'<text x="{x + 1:.1f}" y="{HEIGHT - 8}" font-size="10" '
                         f'fill="#333">{escape(name)}</text>')
    parts.append(f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" font-size="11" '
                 f'fill="#333">{_label(top)}</text></svg>')
    return Markup("".join(parts))
