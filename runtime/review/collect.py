"""The review of a state directory: what happened, why the model changed, and the evidence.

:func:`collect` reads the event log, the registry, the detector trace and (given the
config) each version's accuracy on each distribution, into a :class:`Review`.
:func:`runtime.review.page.write_report` renders it as one self-contained HTML file
(``driftloop report``);
:mod:`runtime.service.ui` serves the same page at ``/ui``. The page itself is
:func:`runtime.review.page.render`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from runtime.config import DriftloopConfig
from runtime.intake.settings import SyntheticSourceConfig
from runtime.monitoring.trace import Point, read_traces
from runtime.promotion.approval import approvals
from runtime.review.page_realized import POINTS, RealizedView, realized_view
from runtime.review.story import Chapter, story
from runtime.review.text import status_dict
from runtime.store import events as ev
from runtime.store.db import Database, rows, utcnow
from runtime.store.estimated import estimated_series
from runtime.store.events import Event, EventLog
from runtime.store.rows import event_times, has_times
from runtime.store.served import Point as ServedPoint
from runtime.store.versions import ModelVersion, Registry

__all__ = ["Matrix", "Review", "collect", "drift_reports", "open_review"]

REPORT_NAME = re.compile(r"^drift-(?:event-)?(\d+)(?:[-.].*)?\.html$")


@dataclass(frozen=True)
class Matrix:
    """Accuracy of each version (rows) on each distribution (columns): the forgetting matrix."""

    distributions: tuple[str, ...]
    rows: tuple[tuple[str, str, tuple[float | None, ...]], ...]


@dataclass(frozen=True)
class Review:
    """Everything the review page shows, read from one state directory."""

    state_dir: str
    generated_at: str
    champion: str | None
    status: dict[str, Any]
    events: tuple[Event, ...]
    total_events: int
    versions: tuple[ModelVersion, ...]
    chapters: tuple[Chapter, ...]
    traces: dict[str, tuple[str, list[Point]]]
    matrix: Matrix | None
    matrix_note: str
    reports: dict[int, str] = field(default_factory=dict)
    """Event id → file name of its drift report under ``<state_dir>/reports/``."""
    segments: tuple[tuple[int, str], ...] = ()
    """``(row, name)`` where each known data segment begins (synthetic sources)."""
    awaiting: tuple[str, ...] = ()
    stale: dict[str, str] = field(default_factory=dict)
    """Version awaiting approval → why approving it would be refused (its evidence is stale)."""
    rollback_targets: tuple[str, ...] = ()
    realized: RealizedView = field(default_factory=RealizedView)
    """The served predictions' realized accuracy over the stream and per version."""
    estimated: tuple[ServedPoint, ...] = ()
    """The label-free estimated accuracy over the stream (runtime/store/estimated.py)."""
    row_times: dict[int, str] = field(default_factory=dict)
    """Row → its event time (``schema.timestamp_column``), for the rows the drift events
    name; empty when rows carry no time."""


def drift_reports(state_dir: Path, events: Sequence[Event]) -> dict[int, str]:
    """Drift report files of events: named in the payload (``report``) or by event id
    (``drift-<id>….html`` / ``drift-event-<id>-….html``)."""
    folder = Path(state_dir) / "reports"
    if not folder.is_dir():
        return {}
    found: dict[int, str] = {}
    for path in sorted(folder.glob("drift-*.html")):
        m = REPORT_NAME.match(path.name)
        if m:
            found.setdefault(int(m.group(1)), path.name)
    for e in events:
        named = e.payload.report_file if isinstance(e.payload, ev.DriftDetected) else None
        if isinstance(named, str) and (folder / Path(named).name).is_file():
            found[e.id] = Path(named).name
    return found


def _segments(cfg: DriftloopConfig | None, db: Database) -> tuple[tuple[int, str], ...]:
    if cfg is None or not isinstance(cfg.source, SyntheticSourceConfig):
        return ()
    from runtime.intake.demo_stream import drift_points

    segs = cfg.source.segments
    out = []
    with db.connect() as conn:
        for i, offset in enumerate(drift_points(segs), start=1):
            seq = conn.execute(select(rows.c.seq).where(rows.c.row_id == f"syn-{offset}")).scalar()
            if seq is not None and i < len(segs):
                out.append((int(seq), segs[i].name or f"segment {i}"))
    return tuple(out)


def _matrix(cfg: DriftloopConfig | None, registry: Registry) -> tuple[Matrix | None, str]:
    if cfg is None:
        return None, "Give the config (--config) to evaluate every version on every distribution."
    if not registry.list():
        return None, "No model versions yet."
    if cfg.task == "regression":
        return None, "The forgetting matrix is computed for classifiers only (so far)."
    try:
        from runtime.review.summary import accuracy_matrix

        names, table = accuracy_matrix(cfg, registry)
    except Exception as err:  # a review must still render; the note says what went wrong
        return None, f"The forgetting matrix could not be computed: {type(err).__name__}: {err}"
    if not names:
        return None, "No distributions to evaluate on (no golden sets yet)."
    clean = tuple(
        (v, s, tuple(a if math.isfinite(a) else None for a in accs)) for v, s, accs in table
    )
    return Matrix(tuple(names), clean), ""


def collect(
    state_dir: Path,
    db: Database,
    events: EventLog,
    registry: Registry,
    cfg: DriftloopConfig | None = None,
    *,
    matrix: bool = True,
    max_events: int | None = None,
) -> Review:
    """Read a state into a :class:`Review`.

    Parameters
    ----------
    state_dir, db, events, registry
        The state to review (as the daemon, the CLI or the API opened it).
    cfg
        The daemon's config: needed for the forgetting matrix and the known segments of
        a synthetic source; without it those parts say so.
    matrix
        Evaluate every version on every distribution (loads each model once).
    max_events
        Show at most the newest this many events (the story is still told from all).
    """
    everything = events.list()
    shown = everything[-max_events:] if max_events else everything
    versions = registry.list()
    champion = registry.champion()
    promoted = registry.promoted_versions()
    targets = tuple(
        v.version
        for v in versions
        if v.version in promoted and v.version != champion and v.status != "refused"
    )
    mat, note = _matrix(cfg, registry) if matrix else (None, "Not computed for this view.")
    waiting = approvals(registry, events)
    stale = {v: why for v, why in waiting.items() if why is not None}
    return Review(
        state_dir=str(state_dir),
        generated_at=utcnow(),
        champion=champion,
        status=status_dict(Path(state_dir), db, events, registry),
        events=tuple(shown),
        total_events=len(everything),
        versions=tuple(versions),
        chapters=tuple(story(everything, stale)),
        traces=read_traces(db),
        matrix=mat,
        matrix_note=note,
        reports=drift_reports(Path(state_dir), everything),
        segments=_segments(cfg, db),
        awaiting=tuple(waiting),
        stale=stale,
        rollback_targets=targets,
        realized=realized_view(
            db, metric="mae" if cfg is not None and cfg.task == "regression" else "accuracy"),
        estimated=tuple(estimated_series(db, points=POINTS)),
        row_times=_row_times(db, shown),
    )


def _row_times(db: Database, shown: Sequence[Event]) -> dict[int, str]:
    """The event times of the rows the shown drift events name (alarm row, onset)."""
    if not has_times(db):
        return {}
    named = [n for e in shown if isinstance(e.payload, ev.DriftDetected)
             for n in (e.payload.row, e.payload.onset) if n]
    return event_times(db, named)


def open_review(
    cfg: DriftloopConfig | None, state_dir: Path, database_url: str | None = None, **kw: Any
) -> Review:
    """Open the state (read-only use), :func:`collect` it, close it again."""
    db = Database.for_state_dir(state_dir, database_url)
    try:
        log = EventLog(db)
        return collect(state_dir, db, log, Registry(db, state_dir / "models", log), cfg, **kw)
    finally:
        db.dispose()
