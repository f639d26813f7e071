"""Reading ingested rows back: the data a retrain trains on and the reference window."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select

from runtime.db import Database, rows

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def encode_features(x: F64) -> list[bytes]:
    """Rows of a float64 matrix as little-endian blobs (the ``rows.features`` column)."""
    x = np.ascontiguousarray(x, dtype="<f8")
    return [r.tobytes() for r in x]


def decode_features(blobs: Sequence[bytes], n_features: int) -> F64:
    if not blobs:
        return np.zeros((0, n_features))
    return np.frombuffer(b"".join(blobs), dtype="<f8").reshape(len(blobs), n_features).copy()


def labelled_rows(
    db: Database, n_features: int, since: int, upto: int | None = None, limit: int | None = None
) -> tuple[I64, F64, I64]:
    """Labelled rows with ``since <= seq <= upto``; the most recent ``limit`` of them."""
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
    y = np.array([r[2] for r in got], dtype=np.int64)
    return seqs, x, y


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


def rows_after(db: Database, n_features: int, after: int, limit: int) -> tuple[I64, F64, I64]:
    """The first ``limit`` rows (labelled or not) with ``seq > after``, in seq order;
    labels are -1 where unknown."""
    q = select(rows.c.seq, rows.c.features, rows.c.label).where(rows.c.seq > after)
    with db.connect() as conn:
        got = list(conn.execute(q.order_by(rows.c.seq).limit(limit)).all())
    seqs = np.array([r[0] for r in got], dtype=np.int64)
    x = decode_features([r[1] for r in got], n_features)
    y = np.array([-1 if r[2] is None else r[2] for r in got], dtype=np.int64)
    return seqs, x, y


def count_labelled(db: Database, since: int) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(rows)
                .where(rows.c.seq >= since, rows.c.label.is_not(None))
            ).scalar_one()
        )


def last_seq(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(rows.c.seq), 0))).scalar_one())
