"""Reading ingested rows back: the data a retrain trains on and the reference window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import exists, func, select

from runtime.store.db import Database, late_labels, parse_ts, row_times, rows

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Labels = npt.NDArray[Any]
"""Labels as read back: int64 classes (-1 where missing) or float64 regression targets
(NaN where missing); which one is decided at run time (``numeric``)."""


def labelled(y: Labels) -> npt.NDArray[np.bool_]:
    """Which labels are known: class values are -1 where missing, numeric (regression)
    labels NaN."""
    if y.dtype.kind == "f":
        return ~np.isnan(y)
    return np.asarray(y >= 0)


def label_array(values: Sequence[object], numeric: bool) -> Labels:
    """Stored labels as an array: int64 classes, or float64 targets (None: NaN)."""
    if numeric:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    return np.array(values, dtype=np.int64)


def encode_features(x: F64) -> list[bytes]:
    """Rows of a float64 matrix as little-endian blobs (the ``rows.features`` column)."""
    x = np.ascontiguousarray(x, dtype="<f8")
    return [r.tobytes() for r in x]


def decode_features(blobs: Sequence[bytes], n_features: int) -> F64:
    if not blobs:
        return np.zeros((0, n_features))
    return np.frombuffer(b"".join(blobs), dtype="<f8").reshape(len(blobs), n_features).copy()


def labelled_rows(
    db: Database, n_features: int, since: int, upto: int | None = None, limit: int | None = None,
    numeric: bool = False,
) -> tuple[I64, F64, Labels]:
    """Labelled rows with ``since <= seq <= upto``; the most recent ``limit`` of them
    (``numeric``: the labels as float64 regression targets)."""
    q = select(rows.c.seq, rows.c.features, rows.c.label).where(
        rows.c.seq >= since, rows.c.label.is_not(None)
    )
    if upto is not None:
        q = q.where(rows.c.seq <= upto)
    q = q.order_by(rows.c.seq.desc())
    if limit is not None:
        q = q.limit(limit)
    with db.connect() as conn:
        got = list(conn.execute(q).all())
    got.reverse()
    seqs = np.array([r[0] for r in got], dtype=np.int64)
    x = decode_features([r[1] for r in got], n_features)
    y = label_array([r[2] for r in got], numeric)
    return seqs, x, y


def labelled_rows_by_seq(
    db: Database, n_features: int, seqs: I64, numeric: bool = False
) -> tuple[I64, F64, Labels]:
    """The labelled rows among the row numbers ``seqs``, in order."""
    s, x, y = labelled_rows(db, n_features, since=int(seqs.min()), upto=int(seqs.max()),
                            numeric=numeric)
    keep = np.isin(s, seqs)
    return s[keep], x[keep], y[keep]


def recent_rows(
    db: Database, n_features: int, n: int, since: int = 0, upto: int | None = None
) -> tuple[I64, F64]:
    """The last ``n`` rows (labelled or not) with ``since <= seq <= upto``."""
    q = select(rows.c.seq, rows.c.features).where(rows.c.seq >= since)
    if upto is not None:
        q = q.where(rows.c.seq <= upto)
    with db.connect() as conn:
        got = list(conn.execute(q.order_by(rows.c.seq.desc()).limit(n)).all())
    got.reverse()
    return np.array([r[0] for r in got], dtype=np.int64), decode_features(
        [r[1] for r in got], n_features
    )


def rows_after(
    db: Database, n_features: int, after: int, limit: int, upto: int | None = None,
    numeric: bool = False,
) -> tuple[I64, F64, Labels]:
    """The first ``limit`` rows (labelled or not) with ``after < seq <= upto``, in seq
    order; labels are -1 (``numeric``: NaN) where unknown, and where the label came late
    (it is fed where it was joined: :func:`late_labels_after`)."""
    late = exists().where(late_labels.c.row_seq == rows.c.seq)
    q = select(rows.c.seq, rows.c.features, rows.c.label, late).where(rows.c.seq > after)
    if upto is not None:
        q = q.where(rows.c.seq <= upto)
    with db.connect() as conn:
        got = list(conn.execute(q.order_by(rows.c.seq).limit(limit)).all())
    seqs = np.array([r[0] for r in got], dtype=np.int64)
    x = decode_features([r[1] for r in got], n_features)
    if numeric:
        return seqs, x, label_array([None if r[3] else r[2] for r in got], numeric)
    y = np.array([-1 if r[2] is None or r[3] else r[2] for r in got], dtype=np.int64)
    return seqs, x, y


@dataclass(frozen=True)
class LateLabels:
    """Late labels in the order they were joined, with their rows."""

    seq: I64  # their numbers (``late_labels.seq``)
    after_seq: I64  # the last row stored when each was joined
    rows: I64  # the labelled rows' seqs
    x: F64
    y: Labels


def late_labels_after(
    db: Database, n_features: int, after: int, limit: int, numeric: bool = False
) -> LateLabels:
    """The first ``limit`` late labels numbered after ``after``, in the order they were
    joined."""
    q = (
        select(
            late_labels.c.seq, late_labels.c.after_seq, rows.c.seq, rows.c.features, rows.c.label
        )
        .join_from(late_labels, rows, rows.c.seq == late_labels.c.row_seq)
        .where(late_labels.c.seq > after)
        .order_by(late_labels.c.seq)
        .limit(limit)
    )
    with db.connect() as conn:
        got = list(conn.execute(q).all())
    return LateLabels(
        seq=np.array([r[0] for r in got], dtype=np.int64),
        after_seq=np.array([r[1] for r in got], dtype=np.int64),
        rows=np.array([r[2] for r in got], dtype=np.int64),
        x=decode_features([r[3] for r in got], n_features),
        y=label_array([r[4] for r in got], numeric),
    )


def last_late_label(db: Database) -> int:
    """The number of the late label joined last (0: none)."""
    with db.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(late_labels.c.seq), 0))).scalar_one())


def count_labelled(db: Database, since: int, upto: int | None = None) -> int:
    """Labelled rows with ``since <= seq`` (and ``seq <= upto`` if given)."""
    q = select(func.count()).select_from(rows).where(rows.c.seq >= since, rows.c.label.is_not(None))
    if upto is not None:
        q = q.where(rows.c.seq <= upto)
    with db.connect() as conn:
        return int(conn.execute(q).scalar_one())


def last_labelled(db: Database, upto: int) -> int:
    """The number of the last labelled row at or before ``upto`` (0: none)."""
    q = select(func.coalesce(func.max(rows.c.seq), 0)).where(
        rows.c.seq <= upto, rows.c.label.is_not(None))
    with db.connect() as conn:
        return int(conn.execute(q).scalar_one())


def last_seq(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(rows.c.seq), 0))).scalar_one())


def ingested_at(db: Database, seq: int) -> datetime | None:
    """When row ``seq`` was stored (None: no such row)."""
    with db.connect() as conn:
        got = conn.execute(select(rows.c.ingested_at).where(rows.c.seq == seq)).first()
    return None if got is None else parse_ts(got[0])


def has_times(db: Database) -> bool:
    """Whether any row was stored with an event time (``schema.timestamp_column``)."""
    with db.connect() as conn:
        return conn.execute(select(row_times.c.row_seq).limit(1)).first() is not None


def stored_since(db: Database, event_at: str) -> str | None:
    """When the first row (in stored order) whose event time is at or after
    ``event_at`` was stored (canonical UTC text, as events' ``ts``); None if none is."""
    q = (select(rows.c.ingested_at)
         .join_from(row_times, rows, rows.c.seq == row_times.c.row_seq)
         .where(row_times.c.event_at >= event_at)
         .order_by(rows.c.seq).limit(1))
    with db.connect() as conn:
        got = conn.execute(q).first()
    return None if got is None else str(got[0])


def event_times(db: Database, seqs: Sequence[int]) -> dict[int, str]:
    """The event time of each of rows ``seqs`` that has one."""
    wanted = sorted({int(s) for s in seqs})
    out: dict[int, str] = {}
    with db.connect() as conn:
        for i in range(0, len(wanted), 500):
            q = select(row_times.c.row_seq, row_times.c.event_at).where(
                row_times.c.row_seq.in_(wanted[i:i + 500]))
            out.update({int(r[0]): str(r[1]) for r in conn.execute(q)})
    return out
