"""Append validated rows to the ``rows`` table, idempotent by row id, and say what was stored.

A row whose id is stored already is skipped (a duplicate, not a rejection). The INSERT
parameters are made before the write transaction, and SQLite gets multi-row statements,
so a batch holds the database's write lock only for the statements themselves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain, repeat
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql

from runtime.store.db import row_times, rows
from runtime.store.rows import encode_features, labelled


@dataclass(frozen=True)
class Accepted:
    """Rows accepted by one ingest call (new rows only; duplicates are skipped)."""

    seqs: npt.NDArray[np.int64]
    x: npt.NDArray[np.float64]
    y: npt.NDArray[np.int64]  # -1 where unlabeled
    row_ids: list[str]
    rejected: int = 0
    duplicates: int = 0
    labels_joined: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )  # seqs of earlier rows that just got their label
    label_seq: int = 0  # the number of the last of them in ``late_labels`` (0: none)

    @property
    def count(self) -> int:
        return len(self.seqs)


def empty(n_features: int) -> Accepted:
    """The result of a call that stored no row."""
    return Accepted(
        seqs=np.zeros(0, dtype=np.int64),
        x=np.zeros((0, n_features)),
        y=np.zeros(0, dtype=np.int64),
        row_ids=[],
    )


def accepted_rows(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    ids: list[str],
    keep: npt.NDArray[np.bool_],
    seqs: npt.NDArray[np.int64],
    rejected: int,
) -> Accepted:
    """The stored rows (``keep``); the others' ids were stored before: duplicates."""
    if keep.all():
        return Accepted(seqs=seqs, x=x, y=y, row_ids=ids, rejected=rejected)
    return Accepted(
        seqs=seqs,
        x=x[keep],
        y=y[keep],
        row_ids=[r for r, k in zip(ids, keep.tolist(), strict=True) if k],
        rejected=rejected,
        duplicates=int((~keep).sum()),
    )


def prepare(
    sqlite: bool,
    origin: str,
    now: str,
    ids: list[str],
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
) -> list[Any]:
    """The INSERT parameters of validated rows, made before the write transaction so that
    it holds SQLite's single write lock only for the statements themselves. SQLite: one
    flat list, :data:`_ROW_COLUMNS` values a row; PostgreSQL: one dict a row."""
    known = labelled(y)
    labels = [lab if k else None for lab, k in zip(y.tolist(), known.tolist(), strict=True)]
    blobs = encode_features(x)
    if not sqlite:
        return [
            {
                "row_id": rid,
                "ingested_at": now,
                "source": origin,
                "features": blob,
                "label": lab,
                "labeled_at": None if lab is None else now,
            }
            for rid, blob, lab in zip(ids, blobs, labels, strict=True)
        ]
    if known.all():  # the common cases without a Python loop per row
        labelled_at: Iterable[str | None] = repeat(now)
    elif not known.any():
        labelled_at = repeat(None)
    else:
        labelled_at = [None if lab is None else now for lab in labels]
    return list(chain.from_iterable(
        zip(ids, repeat(now), repeat(origin), blobs, labels, labelled_at)))


def store(
    conn: Connection, ids: list[str], params: list[Any]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.int64]]:
    """Insert the rows whose id is not stored yet; returns (inserted mask, their seqs).

    PostgreSQL: ``ON CONFLICT DO NOTHING RETURNING`` (batched by the driver). SQLite:
    multi-row ``INSERT … ON CONFLICT DO NOTHING`` statements, one per batch rather than
    one per row, because sqlite3 releases the GIL around every statement step and this
    thread then waits, each time, for the thread running the detectors to hand it back.
    Writers are serialised (``BEGIN IMMEDIATE``), so the new rows get the seqs after the
    largest one, in batch order; a row id stored already gets none.
    """
    n = len(ids)
    if conn.dialect.name == "postgresql":
        stmt = (
            postgresql.insert(rows)
            .on_conflict_do_nothing(index_elements=["row_id"])
            .returning(rows.c.seq, rows.c.row_id)
        )
        got = {rid: int(seq) for seq, rid in conn.execute(stmt, params).all()}
    else:
        top = int(conn.exec_driver_sql("SELECT coalesce(max(seq), 0) FROM rows").scalar_one())
        per = _rows_per_statement(conn)
        stored, last = 0, top
        for start in range(0, n, per):
            part = params[start * _ROW_COLUMNS : (start + per) * _ROW_COLUMNS]
            res = conn.exec_driver_sql(_insert_sql(len(part) // _ROW_COLUMNS), tuple(part))
            stored += res.rowcount
            last = res.lastrowid or last
        if stored == n and last == top + n:  # every row, seqs top+1 … top+n in order
            return np.ones(n, dtype=np.bool_), np.arange(top + 1, last + 1, dtype=np.int64)
        found = conn.exec_driver_sql("SELECT seq, row_id FROM rows WHERE seq > ?", (top,))
        got = {rid: int(seq) for seq, rid in found}
    keep = np.fromiter((rid in got for rid in ids), dtype=np.bool_, count=n)
    return keep, np.fromiter((got[r] for r in ids if r in got), dtype=np.int64)


def store_times(conn: Connection, acc: Accepted, times: dict[str, str | None]) -> None:
    """Record the event time of each row just stored (``times``: by row id; a row
    without one gets no entry), in the caller's transaction."""
    params = [{"row_seq": int(seq), "event_at": times[rid]}
              for seq, rid in zip(acc.seqs.tolist(), acc.row_ids, strict=True)
              if times.get(rid)]
    if params:
        conn.execute(row_times.insert(), params)


_ROW_COLUMNS = 6


@lru_cache(maxsize=64)
def _insert_sql(n: int) -> str:
    values = ", ".join(["(?, ?, ?, ?, ?, ?)"] * n)
    return (
        "INSERT INTO rows (row_id, ingested_at, source, features, label, labeled_at) "
        f"VALUES {values} ON CONFLICT (row_id) DO NOTHING"
    )


def _rows_per_statement(conn: Connection) -> int:
    """Rows per INSERT: 2,000 (a typical HTTP batch in one statement), fewer where SQLite
    allows fewer bound variables (32,766 since 3.32, 999 before)."""
    raw = conn.connection.dbapi_connection
    getlimit = getattr(raw, "getlimit", None)  # Python 3.11+
    limit = getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if getlimit is not None else 999
    return max(1, min(2000, limit // _ROW_COLUMNS))
