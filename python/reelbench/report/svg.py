"""Small inline SVG line charts for per-frame metrics (no JavaScript, no CDN)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["PALETTE", "Series", "line_chart"]

#: Colour-blind-friendly categorical palette (Okabe-Ito, then Tableau extras).
PALETTE = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#cc79a7",
    "#56b4e9",
    "#d55e00",
    "#f0e442",
    "#000000",
    "#8c564b",
    "#7f7f7f",
)


@dataclass(frozen=True)
class Series:
    """One line: a run's per-frame values (None = undefined, e.g. first frame's ``*_prev``)."""

    label: str
    color: str
    values: Sequence[float | None]
    dashed: bool = False


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100_000 or abs(value) < 0.01:
        return f"{value:.1e}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    width: int = 300,
    height: int = 110,
    last_frame: int | None = None,
) -> str:
    """An SVG chart of several series over frame index; gaps where values are missing.

    ``last_frame`` labels the x axis when the series are sampled (every n-th
    frame); by default it is the longest series' last index. Every string
    placed in the SVG is escaped: labels come from user spec keys.
    """
    left, right, top, bottom = 50, 6, 16, 16
    plot_w, plot_h = width - left - right, height - top - bottom
    finite = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    head = (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
        f'<text x="{left}" y="11" class="chart-title">{escape(title)}</text>'
    )
    if not finite:
        return (
            head
            + f'<text x="{left}" y="{top + plot_h // 2}" class="chart-empty">no data</text>'
            + "</svg>"
        )

    lo, hi = min(finite), max(finite)
    if hi == lo:  # a flat line still needs a visible range
        pad = abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    n = max(len(s.values) for s in series)
    step = plot_w / max(n - 1, 1)

    def y_of(v: float) -> float:
        return top + plot_h - (v - lo) / (hi - lo) * plot_h

    parts = [
        head,
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" class="chart-frame"/>',
        f'<text x="{left - 3}" y="{top + 4}" class="chart-axis" text-anchor="end">'
        f"{_fmt(hi)}</text>",
        f'<text x="{left - 3}" y="{top + plot_h}" class="chart-axis" text-anchor="end">'
        f"{_fmt(lo)}</text>",
        f'<text x="{left}" y="{height - 3}" class="chart-axis">0</text>',
        f'<text x="{left + plot_w}" y="{height - 3}" class="chart-axis" text-anchor="end">'
        f"frame {n - 1 if last_frame is None else last_frame}</text>",
    ]
    for s in series:
        # Split at missing values so a gap is drawn as a gap, not a straight jump.
        runs: list[list[str]] = [[]]
        for i, v in enumerate(s.values):
            if v is None or not math.isfinite(v):
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append(f"{left + i * step:.1f},{y_of(v):.1f}")
        dash = ' stroke-dasharray="4 3"' if s.dashed else ""
        for points in runs:
            if len(points) == 1:
                x, y = points[0].split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="1.8" fill="{escape(s.color)}"/>')
            elif points:
                parts.append(
                    f'<polyline points="{" ".join(points)}" fill="none" '
                    f'stroke="{escape(s.color)}" stroke-width="1.4"{dash}>'
                    f"<title>{escape(s.label)}</title></polyline>"
                )
    parts.append("</svg>")
    return "".join(parts)
