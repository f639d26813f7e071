"""What the champion served for each row, and the realized score it earned once labelled.

The daemon records, for every row it monitors, the champion's prediction and the version
that made it (:func:`record`); a label known with the row or joined later makes that
prediction right or wrong. :func:`realized` is the one place the realized (prequential)
score over a recent window is computed: the CLI's status, the API, the Prometheus gauges,
the review page and the performance-floor trigger all call it.

The score is named by ``metric`` so that a regression task can report ``mae`` through the
same calls: ``accuracy`` is the share of predictions equal to the label, ``mae`` the mean
absolute difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, case, func, select

from runtime.store.db import Database, rows, served
from runtime.store.rows import event_times, has_times

Metric = Literal["accuracy", "mae"]
METRICS: tuple[Metric, ...] = ("accuracy", "mae")
DEFAULT_WINDOW = 1000
"""Labelled rows in the recent window that status, the API and the metrics show."""

@dataclass(frozen=True)
class Realized:
    """The realized score over a window of labelled, served rows.

    ``value`` is None when the window holds no row; ``first_row`` and ``last_row`` are
    the row numbers (seq) it spans.
    """

    metric: Metric
    value: float | None
    rows: int
    window: int
    first_row: int | None = None
    last_row: int | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "value": self.value,
            "rows": self.rows,
            "window": self.window,
            "first_row": self.first_row,
            "last_row": self.last_row,
        }


@dataclass(frozen=True)
class Point:
    """One point of the realized series: rows ``first_row..last_row`` served by ``version``."""

    first_row: int
    last_row: int
    version: str
    value: float
    rows: int


def record(
    conn: Connection, seqs: npt.NDArray[np.int64], values: npt.NDArray[np.float64], version: str
) -> int:
    """Record ``version``'s prediction ``values`` for the rows ``seqs``; a row that has one
    keeps it (the first monitoring stands: a replay after a crash records nothing new).
    Returns how many were recorded."""
    if not len(seqs):
        return 0
    lo, hi = int(seqs.min()), int(seqs.max())
    have = set(
        conn.execute(
            select(served.c.row_seq).where(served.c.row_seq >= lo, served.c.row_seq <= hi)
        ).scalars()
    )
    todo = [
        {"row_seq": int(s), "value": float(v), "version": version}
        for s, v in zip(seqs.tolist(), values.tolist(), strict=True)
        if int(s) not in have
    ]
    if todo:
        conn.execute(served.insert(), todo)
    return len(todo)


def _score(metric: Metric):  # type: ignore[no-untyped-def]
    """The per-row score as SQL: 1/0 for accuracy, the absolute error for MAE."""
    if metric == "accuracy":
        return case((served.c.value == rows.c.label, 1.0), else_=0.0)
    if metric == "mae":
        return func.abs(served.c.value - rows.c.label)
    raise ValueError(f"unknown metric {metric!r} (known: {', '.join(METRICS)})")


def realized(
    db: Database,
    window: int = DEFAULT_WINDOW,
    version: str | None = None,
    metric: Metric = "accuracy",
    upto: int | None = None,
    since: int | None = None,
) -> Realized:
    """The realized ``metric`` over the last ``window`` labelled rows that were served
    (by ``version`` if given), in stream order, from row ``since`` and up to row ``upto``
    if given."""
    if window < 1:
        raise ValueError(f"window must be at least 1 row, got {window}")
    q = (
        select(_score(metric).label("score"), rows.c.seq.label("seq"))
        .select_from(served.join(rows, rows.c.seq == served.c.row_seq))
        .where(rows.c.label.is_not(None))
    )
    if version is not None:
        q = q.where(served.c.version == version)
    if upto is not None:
        q = q.where(served.c.row_seq <= upto)
    if since is not None:
        q = q.where(served.c.row_seq >= since)
    sub = q.order_by(served.c.row_seq.desc()).limit(window).subquery()
    agg = select(func.avg(sub.c.score), func.count(), func.min(sub.c.seq), func.max(sub.c.seq))
    with db.connect() as conn:
        value, n, first, last = conn.execute(agg).one()
    return Realized(
        metric,
        None if value is None else float(value),
        int(n),
        window,
        None if first is None else int(first),
        None if last is None else int(last),
    )


def served_versions(db: Database) -> list[str]:
    """The versions that served rows, in the order each first served."""
    q = select(served.c.version, func.min(served.c.row_seq).label("first")).group_by(
        served.c.version
    )
    with db.connect() as conn:
        got = conn.execute(q.order_by("first")).all()
    return [str(v) for v, _ in got]


def realized_by_version(
    db: Database,
    window: int = DEFAULT_WINDOW,
    metric: Metric = "accuracy",
    versions: Sequence[str] | None = None,
) -> dict[str, Realized]:
    """Each version's realized ``metric`` over its last ``window`` labelled served rows
    (every version that served, in the order they first served, unless ``versions``)."""
    names = served_versions(db) if versions is None else list(versions)
    return {v: realized(db, window, version=v, metric=metric) for v in names}


def realized_series(
    db: Database, points: int = 200, metric: Metric = "accuracy"
) -> list[Point]:
    """The realized ``metric`` over the stream: rows cut into about ``points`` equal
    spans of row numbers, one point per span and serving version (a span where the
    champion changed has a point for each), in stream order."""
    with db.connect() as conn:
        lo, hi = conn.execute(
            select(func.min(served.c.row_seq), func.max(served.c.row_seq))
        ).one()
    if lo is None:
        return []
    width = max(1, -(-(int(hi) - int(lo) + 1) // max(1, points)))
    bucket = (served.c.row_seq - int(lo)) // width
    q = (
        select(
            func.min(served.c.row_seq),
            func.max(served.c.row_seq),
            served.c.version,
            func.avg(_score(metric)),
            func.count(),
        )
        .select_from(served.join(rows, rows.c.seq == served.c.row_seq))
        .where(rows.c.label.is_not(None))
        .group_by(bucket, served.c.version)
        .order_by(func.min(served.c.row_seq))
    )
    with db.connect() as conn:
        got = conn.execute(q).all()
    return [Point(int(a), int(b), str(v), float(s), int(n)) for a, b, v, s, n in got]


RECENT_WINDOWS = (100, DEFAULT_WINDOW, 10_000)
"""The recent windows (labelled served rows) that status and the API report."""
MAX_VERSIONS = 10
"""Status and the metrics show the versions that served last, at most this many."""


def realized_summary(
    db: Database,
    windows: Sequence[int] = RECENT_WINDOWS,
    metric: Metric = "accuracy",
    max_versions: int = MAX_VERSIONS,
) -> dict[str, Any]:
    """The realized score as status shows it: over each recent window of labelled served
    rows (whoever served them), and each version's over its own last
    :data:`DEFAULT_WINDOW` (the last ``max_versions`` versions that served)."""
    versions = served_versions(db)[-max_versions:]
    per = realized_by_version(db, metric=metric, versions=versions)
    return {
        "metric": metric,
        "recent": _with_times(db, [realized(db, w, metric=metric).to_dict() for w in windows]),
        "by_version": {v: r.to_dict() for v, r in per.items()},
    }


def _with_times(db: Database, windows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each window with the data time of its first and last row (``first_time``,
    ``last_time``; None where a row has none), when rows carry ``schema.timestamp_column``:
    "the last 2,000 rows" then reads as the span of the data's time it covers."""
    if not has_times(db):
        return windows
    ends = [w[k] for w in windows for k in ("first_row", "last_row") if w[k] is not None]
    times = event_times(db, ends)
    return [{**w, "first_time": times.get(w["first_row"]), "last_time": times.get(w["last_row"])}
            for w in windows]
