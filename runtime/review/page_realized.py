"""The review page's live accuracy: what the served predictions earned once labelled.

One chart of the realized (prequential) accuracy over the stream, shaded by the version
that served each span and marked where a new version took over (promoted, or rolled back
to), and one line per version with its realized accuracy on the rows it served. Read
from the ``served`` table (:mod:`runtime.store.served`) by :func:`realized_view`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runtime.review.charts import Band, Mark, line_chart
from runtime.review.page_html import esc, num
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import Event
from runtime.store.served import (
    Metric,
    Point,
    Realized,
    realized,
    realized_by_version,
    realized_series,
)

__all__ = ["RealizedView", "realized_section", "realized_view"]

POINTS = 120
"""Points of the chart over the whole stream."""


@dataclass(frozen=True)
class RealizedView:
    """The served predictions' realized accuracy: the series over the stream, each
    version's over all the rows it served, and the whole stream's."""

    series: tuple[Point, ...] = ()
    by_version: tuple[tuple[str, Realized], ...] = ()
    overall: Realized | None = None
    metric: Metric = "accuracy"
    """``mae`` for a regression model (lower is better)."""

    @property
    def label(self) -> str:
        """The metric as the page names it."""
        return "MAE" if self.metric == "mae" else "accuracy"


def realized_view(db: Database, points: int = POINTS, metric: Metric = "accuracy") -> RealizedView:
    everything = 1 << 62  # every labelled served row
    per = realized_by_version(db, window=everything, metric=metric)
    return RealizedView(
        tuple(realized_series(db, points=points, metric=metric)),
        tuple(per.items()),
        realized(db, window=everything, metric=metric),
        metric,
    )


def _spans(series: Sequence[Point]) -> list[tuple[float, float, float]]:
    """One ``(first_row, last_row, accuracy)`` per span of rows, the versions that served
    in it weighed by their rows."""
    out: list[tuple[float, float, float]] = []
    weights: list[int] = []
    for p in series:
        if out and p.first_row <= out[-1][1]:  # another version in the same span
            a, b, v = out[-1]
            n = weights[-1] + p.rows
            out[-1] = (a, max(b, p.last_row), (v * weights[-1] + p.value * p.rows) / n)
            weights[-1] = n
        else:
            out.append((float(p.first_row), float(p.last_row), p.value))
            weights.append(p.rows)
    return out


def _bands_and_marks(series: Sequence[Point], events: Sequence[Event]) -> tuple[list[Band],
                                                                               list[Mark]]:
    """A band per run of rows one version served; a mark where each later one began."""
    back_to = {e.payload.to for e in events if isinstance(e.payload, ev.ModelRolledBack)}
    bands: list[Band] = []
    marks: list[Mark] = []
    for p in series:
        label = f"served by {p.version}"
        if bands and bands[-1].label == label:
            bands[-1] = Band(bands[-1].x0, p.last_row, label, bands[-1].cls)
            continue
        if bands:
            how = f"back to {p.version}" if p.version in back_to else f"{p.version} promoted"
            marks.append(Mark(float(p.first_row), how, "mark"))
        cls = "band" if len(bands) % 2 == 0 else "band alt"
        bands.append(Band(p.first_row, p.last_row, label, cls))
    return bands, marks


def _point_means(view: RealizedView) -> str:
    if view.metric == "mae":
        return "the mean absolute difference between the served values and the labels"
    return "the share of served predictions that matched the label"


def realized_section(view: RealizedView, events: Sequence[Event]) -> str:
    """The section's body: the chart and one line per version (or why there is none)."""
    if not view.series or view.overall is None:
        return (f'<p class="note">No labelled row has been served yet: the realized '
                f"{view.label} appears once monitored rows have their labels.</p>")
    spans = _spans(view.series)
    points = [((a + b) / 2, v) for a, b, v in spans]
    bands, marks = _bands_and_marks(view.series, events)
    chart = line_chart(points, title=f"realized {view.label} of the served predictions",
                       y_label=view.label, marks=marks, bands=bands,
                       x_range=(spans[0][0], spans[-1][1]))
    lines = "".join(
        f'<li data-version="{esc(v)}"><b>{esc(v)}</b>: {num(r.value)} on the {num(r.rows)} '
        f"labelled rows it served (rows {num(r.first_row)}..{num(r.last_row)})</li>"
        for v, r in view.by_version if r.rows
    )
    o = view.overall
    return (
        f"{chart}"
        f'<p class="cap">Each point: {_point_means(view)} '
        f"over a span of rows, whichever version served them; shading: which version served; "
        f"dashed lines: where a new version took over. Over the whole stream "
        f"{num(o.value)} on {num(o.rows)} labelled served rows.</p>"
        f'<ul class="realized">{lines}</ul>'
    )
