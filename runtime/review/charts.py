"""Small inline SVG charts for the review page (no JavaScript, no external files).

:func:`line_chart` draws one series against rows (or epochs) with an optional threshold
line, vertical marks (alarms, known changes) and shaded bands (who was champion). The
output is an ``<svg>`` element string; styling comes from the page's CSS classes
(``.ln``, ``.thr``, ``.alarm``, ``.mark``, ``.band``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["Band", "Mark", "line_chart"]


@dataclass(frozen=True)
class Mark:
    """A vertical line at ``x`` with a short label; ``cls`` picks its style."""

    x: float
    label: str
    cls: str = "alarm"


@dataclass(frozen=True)
class Band:
    """A shaded span ``[x0, x1]`` labelled at its top (e.g. ``champion v2``)."""

    x0: float
    x1: float
    label: str
    cls: str = "band"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    out, t = [], start
    while t <= hi + 1e-9 * step:
        out.append(round(t, 10))
        t += step
    return out


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000 or abs(v) < 1e-3:
        return f"{v:.0e}" if abs(v) < 1e-3 else f"{v:,.0f}"
    return f"{v:.3g}"


def line_chart(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    y_label: str,
    x_label: str = "row",
    threshold: float | None = None,
    log_y: bool = False,
    marks: Sequence[Mark] = (),
    bands: Sequence[Band] = (),
    width: int = 760,
    height: int = 220,
    x_range: tuple[float, float] | None = None,
    dots_only: bool = False,
) -> str:
    """An SVG line chart; points with a non-finite y (or y <= 0 on a log axis) are gaps;
    ``dots_only`` draws unconnected points (values known only at alarms)."""
    left, right, top, bottom = 64, 14, 26, 36
    pw, ph = width - left - right, height - top - bottom

    def ok(y: float) -> bool:
        return math.isfinite(y) and (y > 0 or not log_y)

    ys = [y for _, y in points if ok(y)] + ([threshold] if threshold and ok(threshold) else [])
    xs = [x for x, _ in points] + [m.x for m in marks]
    x0, x1 = x_range if x_range else ((min(xs), max(xs)) if xs else (0.0, 1.0))
    if x1 <= x0:
        x1 = x0 + 1
    if log_y:
        ly = [math.log10(y) for y in ys] or [0.0]
        y0, y1 = float(math.floor(min(ly))), float(math.ceil(max(ly)))
        if y1 <= y0:
            y1 = y0 + 1
    else:
        y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
        pad = (y1 - y0) * 0.08 or abs(y1) * 0.1 or 1.0
        y0, y1 = (0.0 if y0 >= 0 and y0 - pad < 0 else y0 - pad), y1 + pad

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        v = math.log10(y) if log_y else y
        return top + ph - (v - y0) / (y1 - y0) * ph

    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="ct" x="{left}" y="16">{escape(title)}</text>',
    ]
    for b in bands:
        a, z = max(sx(b.x0), left), min(sx(b.x1), left + pw)
        if z > a:
            out.append(
                f'<rect class="{b.cls}" x="{a:.1f}" y="{top}" width="{z - a:.1f}" '
                f'height="{ph}"/><text class="bl" x="{a + 4:.1f}" y="{top + 12}">'
                f"{escape(b.label)}</text>"
            )
    yticks = [10.0**k for k in range(int(y0), int(y1) + 1)] if log_y else _ticks(y0, y1)
    step = max(1, len(yticks) // 6)
    for t in yticks[::step]:
        y = sy(t)
        out.append(
            f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tk" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(t)}</text>"
        )
    for t in _ticks(x0, x1, 6):
        x = sx(t)
        out.append(
            f'<text class="tk" x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">'
            f"{_fmt(t)}</text>"
        )
    out.append(
        f'<text class="al" x="{left + pw}" y="{height - 4}" text-anchor="end">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<text class="al" x="12" y="{top + ph / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + ph / 2:.1f})">{escape(y_label)}</text>'
    )
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{pw}" height="{ph}"/>')
    if (
        threshold is not None
        and ok(threshold)
        and y0 <= (math.log10(threshold) if log_y else threshold) <= y1
    ):
        y = sy(threshold)
        out.append(
            f'<line class="thr" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="thl" x="{left + pw - 4}" y="{y - 4:.1f}" text-anchor="end">'
            f"threshold {_fmt(threshold)}</text>"
        )
    segs: list[list[str]] = [[]]
    for x, y in points:
        if ok(y):
            segs[-1].append(f"{sx(x):.1f},{sy(y):.1f}")
            if dots_only:
                segs.append([])
        elif segs[-1]:
            segs.append([])
    for seg in segs:
        if len(seg) > 1:
            out.append(f'<polyline class="ln" points="{" ".join(seg)}"/>')
        elif seg:
            cx, cy = seg[0].split(",")
            out.append(f'<circle class="dot" cx="{cx}" cy="{cy}" r="2.5"/>')
    ends: list[float] = []  # per label line: where its last label ends (no overlaps)
    for m in sorted(marks, key=lambda m: m.x):
        x = sx(m.x)
        if left <= x <= left + pw:
            line = next((i for i, end in enumerate(ends) if end < x), len(ends))
            if line == len(ends):
                ends.append(0.0)
            ends[line] = x + 3 + 6.2 * len(m.label)
            label_y = top + 12 + 12 * line + (13 if bands else 0)
            out.append(
                f'<line class="{m.cls}" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
                f'y2="{top + ph}"><title>{escape(m.label)}</title></line>'
                f'<text class="{m.cls}l" x="{x + 3:.1f}" y="{label_y}">'
                f"{escape(m.label)}</text>"
            )
    out.append("</svg>")
    return "".join(out)
