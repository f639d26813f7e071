"""Validate incoming rows and append the good ones durably; quarantine the rest.

A bad row never stops a file: good rows are accepted, bad rows go to the ``quarantine``
table with their reason, and one ``ingest.rejected`` event per batch carries the counts
and a few examples. Rows are idempotent by row id (a row seen before is skipped, not
rejected). A labels-only batch (id and label columns) joins late labels by row id, and so
do label-only entries (every feature blank) mixed among the rows of a batch.
Accepted rows, quarantined rows and the file's ``processed_files`` mark are written in
one transaction, so a crash never half-ingests a file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from itertools import chain, repeat
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql

from runtime.config import SchemaConfig
from runtime.intake.sources import Batch
from runtime.store import events as ev
from runtime.store.db import Database, late_labels, processed_files, quarantine, rows, utcnow
from runtime.store.events import EventLog
from runtime.store.rows import encode_features

MAX_EXAMPLES = 5
MAX_ID_CHARS = 128  # rows.row_id is String(128); PostgreSQL refuses longer ones


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


def _empty(n_features: int) -> Accepted:
    return Accepted(
        seqs=np.zeros(0, dtype=np.int64),
        x=np.zeros((0, n_features)),
        y=np.zeros(0, dtype=np.int64),
        row_ids=[],
    )


class Ingestor:
    """Validates batches against the schema and writes them."""

    def __init__(self, db: Database, schema: SchemaConfig, events: EventLog) -> None:
        self.db = db
        self.schema = schema
        self.events = events
        self.classes = set(schema.classes)
        self._class_values = np.array(sorted(self.classes), dtype=np.float64)

    # -- validation ------------------------------------------------------------------
    def _validate(
        self, batch: Batch
    ) -> tuple[pd.DataFrame, dict[int, str], str, pd.DataFrame | None]:
        """Returns (clean frame of good rows, reasons by position, mode, the late labels
        among the rows of a batch of rows, see :meth:`_late_labels`)."""
        s = self.schema
        frame = batch.frame.reset_index(drop=True)
        n = len(frame)
        reasons: dict[int, str] = {
            i: r for i, r in ((k - 1, v) for k, v in batch.row_errors.items())
        }
        cols = set(frame.columns)
        extra = sorted(cols - {*s.features, s.label, s.id_column})
        if extra:
            whole = f"unexpected column(s) {', '.join(map(repr, extra))}"
            return frame.iloc[0:0], {i: whole for i in range(n)}, "rows", None
        missing = [f for f in s.features if f not in cols]
        if missing and cols <= {s.id_column, s.label} and s.id_column in cols and s.label in cols:
            return self._validate_labels(frame, reasons), reasons, "labels", None
        if missing:
            whole = f"missing column(s) {', '.join(map(repr, missing))}"
            # a row that could not be parsed keeps its own reason (it lacks every column)
            return frame.iloc[0:0], {i: reasons.get(i, whole) for i in range(n)}, "rows", None
        x = np.empty((n, len(s.features)), dtype=np.float64)
        for j, f in enumerate(s.features):
            x[:, j] = self._feature(frame[f], f, reasons)
        out = pd.DataFrame(x, columns=list(s.features), index=frame.index)
        out["__label"] = self._labels(frame, reasons)
        out["__id"] = self._ids(frame, batch)
        _check_ids(out["__id"].tolist(), reasons)
        late = self._late_mask(frame, batch.row_errors)  # label-only: not rows, not duplicates
        dup = np.zeros(n, dtype=bool)
        dup[~late] = out["__id"][~late].duplicated().to_numpy()
        for pos in np.flatnonzero(dup):
            rid = out["__id"].iloc[pos]
            reasons.setdefault(int(pos), f"duplicate row id {rid!r} in this batch")
        good = ~late
        good[list(reasons)] = False
        return out[good], reasons, "rows", self._late_labels(frame, late, reasons)

    def _feature(self, raw: pd.Series, f: str, reasons: dict[int, str]) -> npt.NDArray[np.float64]:
        """One feature column as floats; problems recorded by row position."""
        if raw.dtype.kind in "fiub":  # already numeric: no parsing, only NaN/inf checks
            num = raw.to_numpy(dtype=np.float64)
            blank = np.isnan(num)
            bad_type = np.zeros(len(num), dtype=bool)
        else:
            blank = raw.isna().to_numpy()
            blank |= (raw.astype(str).str.strip() == "").to_numpy()
            num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
            bad_type = np.isnan(num) & ~blank
        for i in np.flatnonzero(bad_type):
            reasons.setdefault(int(i), f"feature '{f}' is not a number: {str(raw.iloc[i])[:40]!r}")
        if not self.schema.allow_nan:
            for i in np.flatnonzero(blank):
                reasons.setdefault(int(i), f"feature '{f}' is missing or NaN")
        for i in np.flatnonzero(np.isinf(num)):
            reasons.setdefault(int(i), f"feature '{f}' is not finite")
        return np.asarray(num, dtype=np.float64)

    def _labels(self, frame: pd.DataFrame, reasons: dict[int, str]) -> pd.Series:
        s = self.schema
        if s.label not in frame.columns:
            return pd.Series(-1, index=frame.index, dtype=np.int64)
        raw = frame[s.label]
        blank = _blank(raw)
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(num) & (num == np.round(num))
        known = whole & np.isin(np.where(whole, num, 0), sorted(self.classes))
        labels = np.where(known, np.where(whole, num, -1), -1).astype(np.int64)
        for i in np.flatnonzero(~blank & ~known):
            reasons.setdefault(
                int(i), f"unknown label {str(raw.iloc[i])[:40]!r} (classes: {sorted(self.classes)})"
            )
        return pd.Series(labels, index=frame.index)

    def _ids(self, frame: pd.DataFrame, batch: Batch) -> pd.Series:
        s = self.schema
        generated = [f"{batch.origin}#{batch.first_row + i}" for i in range(len(frame))]
        if s.id_column not in frame.columns:
            return pd.Series(generated, index=frame.index)
        raw = frame[s.id_column]
        text = raw.astype(str).str.strip()
        missing = raw.isna() | (text == "")
        return text.where(~missing, pd.Series(generated, index=frame.index))

    def _late_mask(
        self, frame: pd.DataFrame, row_errors: Mapping[int, str]
    ) -> npt.NDArray[np.bool_]:
        """Rows of a batch of rows that carry only a row id and a label (every feature
        blank): late labels for rows stored earlier (or earlier in this batch), as a
        broker delivers them mixed with new rows. A row that failed parsing
        (``row_errors``, 1-based: a ragged HTTP row, a broken JSON line) is not one."""
        s = self.schema
        if s.id_column not in frame.columns or s.label not in frame.columns:
            return np.zeros(len(frame), dtype=bool)
        late = ~_blank(frame[s.id_column]) & ~_blank(frame[s.label])
        for f in s.features:
            if f in frame.columns:
                late &= _blank(frame[f])
        late[[k - 1 for k in row_errors if 0 < k <= len(late)]] = False
        return late

    def _late_labels(
        self, frame: pd.DataFrame, late: npt.NDArray[np.bool_], reasons: dict[int, str]
    ) -> pd.DataFrame | None:
        """The late labels (rows ``late`` of ``frame``, see :meth:`_late_mask`), validated
        as a labels-only batch would be, indexed by their positions in ``frame``; their
        feature-missing reasons replaced by their own. ``None`` when there are none."""
        pos = np.flatnonzero(late)
        if not len(pos):
            return None
        sub = frame.iloc[pos].reset_index(drop=True)
        sub_reasons: dict[int, str] = {}
        clean = self._validate_labels(sub, sub_reasons)
        clean.index = pd.Index(pos[clean.index.to_numpy()])
        for i in pos:
            reasons.pop(int(i), None)
        reasons.update({int(pos[k]): v for k, v in sub_reasons.items()})
        return clean

    def _validate_labels(self, frame: pd.DataFrame, reasons: dict[int, str]) -> pd.DataFrame:
        out = pd.DataFrame(index=frame.index)
        out["__label"] = self._labels(frame, reasons)
        out["__id"] = frame[self.schema.id_column].astype(str).str.strip()  # as rows' ids are
        _check_ids(out["__id"].tolist(), reasons)
        for i, lab in enumerate(out["__label"].tolist()):
            if lab < 0:
                reasons.setdefault(i, "label is missing")
        good = np.ones(len(frame), dtype=bool)
        good[list(reasons)] = False
        return out[good]

    # -- writing ---------------------------------------------------------------------
    def ingest(self, batch: Batch) -> Accepted:
        """Validate and write one batch; never raises on bad data."""
        nf = len(self.schema.features)
        if batch.read_error is not None:
            with self.db.begin() as conn:
                self._mark_file(conn, batch, 0, 1)
                self._reject_event(conn, batch, 0, {0: batch.read_error}, whole_file=True)
            return _empty(nf)
        clean, reasons, mode, late = self._validate(batch)
        now = utcnow()
        with self.db.begin() as conn:
            if late is not None:  # rows, and late labels for earlier rows, in one batch
                result = self._append(conn, clean, batch, now, 0)
                joined, label_seq = self._join_labels(conn, late, reasons, now)
                result = replace(
                    result, rejected=len(reasons), labels_joined=joined, label_seq=label_seq
                )
                accepted = result.count + len(joined)
            elif mode == "labels":
                joined, label_seq = self._join_labels(conn, clean, reasons, now)
                result = Accepted(
                    seqs=np.zeros(0, dtype=np.int64),
                    x=np.zeros((0, nf)),
                    y=np.zeros(0, dtype=np.int64),
                    row_ids=[],
                    rejected=len(reasons),
                    labels_joined=joined,
                    label_seq=label_seq,
                )
                accepted = len(joined)
            else:
                result = self._append(conn, clean, batch, now, len(reasons))
                accepted = result.count
            if reasons:
                conn.execute(
                    quarantine.insert(),
                    [
                        {
                            "ingested_at": now,
                            "source": batch.origin,
                            "row_number": batch.first_row + i,
                            "reason": r,
                            "raw": _raw(batch.frame, i),
                        }
                        for i, r in sorted(reasons.items())
                    ],
                )
                self._reject_event(conn, batch, accepted, reasons)
            self._mark_file(conn, batch, accepted, len(reasons))
        return result

    def ingest_arrays(
        self,
        origin: str,
        x: npt.NDArray[np.float64],
        labels: npt.NDArray[np.float64] | None,
        ids: list[str],
        row_errors: dict[int, str] | None = None,
    ) -> Accepted:
        """Validate and write rows given as arrays (the HTTP API's path).

        ``x`` holds the features in schema order (NaN where missing), ``labels`` the
        labels as floats (NaN where missing) or None, ``ids`` one row id each;
        ``row_errors`` are problems found while parsing (1-based, like a file's). A clean
        batch (every value finite, every label a class or missing, ids distinct and
        trimmed) is written without pandas; any other goes through :meth:`ingest`, so
        bad rows are judged and quarantined exactly as from a file.
        """
        n = len(x)
        y = self._clean_labels(labels, n)
        clean = (
            not row_errors
            and y is not None
            and x.ndim == 2
            and x.shape[1] == len(self.schema.features)
            and len(ids) == n
            and bool(np.isfinite(x).all())
            and _plain_ids(ids)
        )
        if not clean:
            frame = pd.DataFrame(x, columns=list(self.schema.features))
            if labels is not None:
                frame[self.schema.label] = labels
            frame[self.schema.id_column] = ids
            return self.ingest(Batch(origin=origin, frame=frame, row_errors=row_errors or {}))
        assert y is not None
        params = _prepare(self.db.is_sqlite, origin, utcnow(), ids, x, y)
        with self.db.begin() as conn:
            stored = _store(conn, ids, params)
        return _accepted(x, y, ids, *stored, rejected=0)

    def _clean_labels(
        self, labels: npt.NDArray[np.float64] | None, n: int
    ) -> npt.NDArray[np.int64] | None:
        """Labels as class values (-1 where missing), or None if any is not a class."""
        if labels is None:
            return np.full(n, -1, dtype=np.int64)
        if len(labels) != n:
            return None
        missing = np.isnan(labels)
        known = np.isin(labels, self._class_values)
        if not bool((missing | known).all()):
            return None
        return np.where(known, labels, -1).astype(np.int64)

    def _append(
        self, conn: Connection, clean: pd.DataFrame, batch: Batch, now: str, rejected: int
    ) -> Accepted:
        if clean.empty:  # no column but the input's when a whole batch was refused
            return replace(_empty(len(self.schema.features)), rejected=rejected)
        x = clean[list(self.schema.features)].to_numpy(dtype=np.float64)
        y = clean["__label"].to_numpy(dtype=np.int64)
        return self._write(conn, batch.origin, now, x, y, clean["__id"].tolist(), rejected)

    def _write(
        self,
        conn: Connection,
        origin: str,
        now: str,
        x: npt.NDArray[np.float64],
        y: npt.NDArray[np.int64],
        ids: list[str],
        rejected: int,
    ) -> Accepted:
        """Store validated rows (row ids distinct) inside the caller's transaction."""
        if not ids:
            return replace(_empty(len(self.schema.features)), rejected=rejected)
        params = _prepare(self.db.is_sqlite, origin, now, ids, x, y)
        return _accepted(x, y, ids, *_store(conn, ids, params), rejected)

    def _join_labels(
        self, conn: Connection, clean: pd.DataFrame, reasons: dict[int, str], now: str
    ) -> tuple[npt.NDArray[np.int64], int]:
        """Join labels to their stored rows (a row that has a label keeps it); returns the
        seqs of the rows that got one and the number of the last in ``late_labels``."""
        ids = clean["__id"].tolist()
        known: dict[str, tuple[int, int | None]] = {}
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            for seq, rid, lab in conn.execute(
                select(rows.c.seq, rows.c.row_id, rows.c.label).where(rows.c.row_id.in_(part))
            ):
                known[rid] = (int(seq), lab)
        positions = clean.index.to_list()
        todo = []
        for pos, rid, lab in zip(positions, ids, clean["__label"].tolist(), strict=True):
            if rid not in known:
                reasons[int(pos)] = (
                    f"unknown row id {rid!r} (label arrived for a row never ingested)"
                )
            elif known[rid][1] is None:
                todo.append({"rid": rid, "lab": int(lab), "now": now})
        if not todo:
            return np.zeros(0, dtype=np.int64), 0
        conn.execute(
            update(rows)
            .where(rows.c.row_id == bindparam("rid"), rows.c.label.is_(None))
            .values(label=bindparam("lab"), labeled_at=bindparam("now")),
            todo,
        )
        seqs = sorted(known[t["rid"]][0] for t in todo)  # the order the daemon feeds them in
        after = conn.execute(select(func.max(rows.c.seq))).scalar_one()
        numbers = conn.execute(
            insert(late_labels).returning(late_labels.c.seq),
            [{"row_seq": seq, "after_seq": after} for seq in seqs],
        ).scalars()
        return np.array(seqs, dtype=np.int64), max(numbers)

    def _mark_file(self, conn: Connection, batch: Batch, accepted: int, rejected: int) -> None:
        if batch.file is None:
            return
        conn.execute(
            processed_files.insert(),
            [
                {
                    "path": batch.file.path,
                    "size": batch.file.size,
                    "mtime": batch.file.mtime,
                    "processed_at": utcnow(),
                    "accepted": accepted,
                    "rejected": rejected,
                }
            ],
        )

    def _reject_event(
        self,
        conn: Connection,
        batch: Batch,
        accepted: int,
        reasons: dict[int, str],
        whole_file: bool = False,
    ) -> None:
        by_reason: dict[str, int] = {}
        for r in reasons.values():
            key = r.split(":")[0] if "not a number" in r or "unknown label" in r else r
            by_reason[key] = by_reason.get(key, 0) + 1
        payload: dict[str, Any] = {
            "source": batch.origin,
            "accepted": accepted,
            "rejected": 0 if whole_file else len(reasons),
            "whole_file": whole_file,
            "reasons": dict(sorted(by_reason.items(), key=lambda kv: -kv[1])[:10]),
            "examples": [
                {"row": batch.first_row + i, "reason": r}
                for i, r in sorted(reasons.items())[:MAX_EXAMPLES]
            ],
        }
        self.events.append(ev.INGEST_REJECTED, payload, conn=conn)


def _accepted(
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


def _plain_ids(ids: list[str]) -> bool:
    """Row ids that :meth:`Ingestor._ids` would keep as they are, none repeated."""
    distinct = set(ids)
    if len(distinct) != len(ids) or "" in distinct or list(map(str.strip, ids)) != ids:
        return False
    return not ids or (max(map(len, ids)) <= MAX_ID_CHARS and _storable("".join(ids)))


def _blank(raw: pd.Series) -> npt.NDArray[np.bool_]:
    """Missing values of a column: NaN/None, and empty or blank text."""
    blank = raw.isna().to_numpy()
    if raw.dtype == object:
        blank |= (raw.astype(str).str.strip() == "").to_numpy()
    return np.asarray(blank, dtype=bool)


def _storable(text: str) -> bool:
    """Text the database can hold: no NUL (PostgreSQL refuses it), encodable as UTF-8
    (a JSON ``\\ud800`` escape decodes to a lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_ids(ids: list[str], reasons: dict[int, str]) -> None:
    """Quarantine rows whose id cannot be stored (it would fail the whole batch's write)."""
    for i, rid in enumerate(ids):
        if len(rid) > MAX_ID_CHARS:
            reasons.setdefault(i, f"row id is longer than {MAX_ID_CHARS} characters")
        elif not _storable(rid):
            reasons.setdefault(i, "row id contains a NUL or a character that is not UTF-8")


def _raw(frame: pd.DataFrame, i: int) -> str:
    if i >= len(frame):
        return ""
    rec = frame.iloc[i].to_dict()
    return repr({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()})[
        :500
    ]


def _prepare(
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
    labels = [lab if lab >= 0 else None for lab in y.tolist()]
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
    if (y >= 0).all():  # the common cases without a Python loop per row
        labelled: Iterable[str | None] = repeat(now)
    elif (y < 0).all():
        labelled = repeat(None)
    else:
        labelled = [None if lab is None else now for lab in labels]
    return list(chain.from_iterable(zip(ids, repeat(now), repeat(origin), blobs, labels, labelled)))


def _store(
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
