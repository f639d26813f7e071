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


@dataclass(frozen=True)
class _Frame:
    """The plot area in the SVG (origin ``left, top``, size ``pw`` by ``ph``) and the data
    ranges it shows (``y0, y1`` in decades on a log axis)."""

    left: float
    top: float
    pw: float
    ph: float
    x0: float
    x1: float
    y0: float
    y1: float
    log_y: bool

    def sx(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.pw

    def sy(self, y: float) -> float:
        v = math.log10(y) if self.log_y else y
        return self.top + self.ph - (v - self.y0) / (self.y1 - self.y0) * self.ph

    def shows(self, y: float) -> bool:
        return _drawable(y, self.log_y)


def _drawable(y: float, log_y: bool) -> bool:
    """Whether ``y`` can be drawn: finite, and above 0 on a log axis."""
    return math.isfinite(y) and (y > 0 or not log_y)


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
    f = _frame(points, threshold, marks, log_y, width, height, x_range)
    out = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text class="ct" x="{f.left}" y="16">{escape(title)}</text>',
    ]
    out += _bands(f, bands)
    out += _axes(f, x_label, y_label, height)
    out += _threshold(f, threshold)
    out += _series(f, points, dots_only)
    out += _marks(f, marks, label_below_bands=bool(bands))
    out.append("</svg>")
    return "".join(out)


def _frame(
    points: Sequence[tuple[float, float]],
    threshold: float | None,
    marks: Sequence[Mark],
    log_y: bool,
    width: int,
    height: int,
    x_range: tuple[float, float] | None,
) -> _Frame:
    """The plot area and the ranges that hold every point, the threshold and the marks
    (``x_range`` when given); a linear y range is padded, down to 0 when that is near."""
    left, right, top, bottom = 64, 14, 26, 36
    ys = [y for _, y in points if _drawable(y, log_y)]
    ys += [threshold] if threshold and _drawable(threshold, log_y) else []
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
    pw, ph = width - left - right, height - top - bottom
    return _Frame(left, top, pw, ph, x0, x1, y0, y1, log_y)


def _bands(f: _Frame, bands: Sequence[Band]) -> list[str]:
    """The shaded spans, clipped to the plot area, each labelled at its top."""
    out = []
    for b in bands:
        a, z = max(f.sx(b.x0), f.left), min(f.sx(b.x1), f.left + f.pw)
        if z > a:
            out.append(
                f'<rect class="{b.cls}" x="{a:.1f}" y="{f.top}" width="{z - a:.1f}" '
                f'height="{f.ph}"/><text class="bl" x="{a + 4:.1f}" y="{f.top + 12}">'
                f"{escape(b.label)}</text>"
            )
    return out


def _axes(f: _Frame, x_label: str, y_label: str, height: int) -> list[str]:
    """Grid lines and ticks of both axes, their labels and the frame around the plot."""
    left, top, pw, ph = f.left, f.top, f.pw, f.ph
    out = []
    yticks = [10.0**k for k in range(int(f.y0), int(f.y1) + 1)] if f.log_y else _ticks(f.y0, f.y1)
    step = max(1, len(yticks) // 6)
    for t in yticks[::step]:
        y = f.sy(t)
        out.append(
            f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tk" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_fmt(t)}</text>"
        )
    for t in _ticks(f.x0, f.x1, 6):
        x = f.sx(t)
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
    return out


def _threshold(f: _Frame, threshold: float | None) -> list[str]:
    """The threshold line, when it lies within the y range."""
    if threshold is None or not f.shows(threshold):
        return []
    if not f.y0 <= (math.log10(threshold) if f.log_y else threshold) <= f.y1:
        return []
    y = f.sy(threshold)
    return [
        f'<line class="thr" x1="{f.left}" x2="{f.left + f.pw}" y1="{y:.1f}" y2="{y:.1f}"/>'
        f'<text class="thl" x="{f.left + f.pw - 4}" y="{y - 4:.1f}" text-anchor="end">'
        f"threshold {_fmt(threshold)}</text>"
    ]


def _series(f: _Frame, points: Sequence[tuple[float, float]], dots_only: bool) -> list[str]:
    """The series: a polyline per run of drawable points, a dot for a lone one."""
    segs: list[list[str]] = [[]]
    for x, y in points:
        if f.shows(y):
            segs[-1].append(f"{f.sx(x):.1f},{f.sy(y):.1f}")
            if dots_only:
                segs.append([])
        elif segs[-1]:
            segs.append([])
    out = []
    for seg in segs:
        if len(seg) > 1:
            out.append(f'<polyline class="ln" points="{" ".join(seg)}"/>')
        elif seg:
            cx, cy = seg[0].split(",")
            out.append(f'<circle class="dot" cx="{cx}" cy="{cy}" r="2.5"/>')
    return out


def _marks(f: _Frame, marks: Sequence[Mark], label_below_bands: bool) -> list[str]:
    """The vertical marks inside the plot, their labels on as many lines as keep them
    apart (below the bands' labels when there are bands)."""
    out = []
    ends: list[float] = []  # per label line: where its last label ends (no overlaps)
    for m in sorted(marks, key=lambda m: m.x):
        x = f.sx(m.x)
        if f.left <= x <= f.left + f.pw:
            line = next((i for i, end in enumerate(ends) if end < x), len(ends))
            if line == len(ends):
                ends.append(0.0)
            ends[line] = x + 3 + 6.2 * len(m.label)
            label_y = f.top + 12 + 12 * line + (13 if label_below_bands else 0)
            out.append(
                f'<line class="{m.cls}" x1="{x:.1f}" x2="{x:.1f}" y1="{f.top}" '
                f'y2="{f.top + f.ph}"><title>{escape(m.label)}</title></line>'
                f'<text class="{m.cls}l" x="{x + 3:.1f}" y="{label_y}">'
                f"{escape(m.label)}</text>"
            )
    return out
