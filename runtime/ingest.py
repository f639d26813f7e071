"""Validate incoming rows and append the good ones durably; quarantine the rest.

A bad row never stops a file: good rows are accepted, bad rows go to the ``quarantine``
table with their reason, and one ``ingest.rejected`` event per batch carries the counts
and a few examples. Rows are idempotent by row id (a row seen before is skipped, not
rejected). A labels-only batch (id and label columns) joins late labels by row id.
Accepted rows, quarantined rows and the file's ``processed_files`` mark are written in
one transaction, so a crash never half-ingests a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from runtime import events as ev
from runtime.config import SchemaConfig
from runtime.db import Database, processed_files, quarantine, rows, utcnow
from runtime.events import EventLog
from runtime.rowstore import encode_features
from runtime.sources import Batch

MAX_EXAMPLES = 5


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

    # -- validation ------------------------------------------------------------------
    def _validate(self, batch: Batch) -> tuple[pd.DataFrame, dict[int, str], str]:
        """Returns (clean frame of good rows, reasons by position, mode)."""
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
            return frame.iloc[0:0], {i: whole for i in range(n)}, "rows"
        missing = [f for f in s.features if f not in cols]
        if missing and cols <= {s.id_column, s.label} and s.id_column in cols and s.label in cols:
            return self._validate_labels(frame, reasons), reasons, "labels"
        if missing:
            whole = f"missing column(s) {', '.join(map(repr, missing))}"
            return frame.iloc[0:0], {i: whole for i in range(n)}, "rows"
        x = np.empty((n, len(s.features)), dtype=np.float64)
        for j, f in enumerate(s.features):
            x[:, j] = self._feature(frame[f], f, reasons)
        out = pd.DataFrame(x, columns=list(s.features), index=frame.index)
        out["__label"] = self._labels(frame, reasons)
        out["__id"] = self._ids(frame, batch)
        dup = out["__id"].duplicated().to_numpy()
        for pos in np.flatnonzero(dup):
            rid = out["__id"].iloc[pos]
            reasons.setdefault(int(pos), f"duplicate row id {rid!r} in this batch")
        good = np.ones(n, dtype=bool)
        good[list(reasons)] = False
        return out[good], reasons, "rows"

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
        blank = raw.isna().to_numpy()
        if raw.dtype == object:
            blank |= (raw.astype(str).str.strip() == "").to_numpy()
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

    def _validate_labels(self, frame: pd.DataFrame, reasons: dict[int, str]) -> pd.DataFrame:
        out = pd.DataFrame(index=frame.index)
        out["__label"] = self._labels(frame, reasons)
        out["__id"] = frame[self.schema.id_column].astype(str)
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
        clean, reasons, mode = self._validate(batch)
        now = utcnow()
        with self.db.begin() as conn:
            if mode == "labels":
                joined = self._join_labels(conn, clean, reasons, now)
                result = Accepted(
                    seqs=np.zeros(0, dtype=np.int64),
                    x=np.zeros((0, nf)),
                    y=np.zeros(0, dtype=np.int64),
                    row_ids=[],
                    rejected=len(reasons),
                    labels_joined=joined,
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

    def _append(
        self, conn: Connection, clean: pd.DataFrame, batch: Batch, now: str, rejected: int
    ) -> Accepted:
        s = self.schema
        nf = len(s.features)
        if clean.empty:
            return Accepted(
                seqs=np.zeros(0, dtype=np.int64),
                x=np.zeros((0, nf)),
                y=np.zeros(0, dtype=np.int64),
                row_ids=[],
                rejected=rejected,
            )
        x = clean[list(s.features)].to_numpy(dtype=np.float64)
        y = clean["__label"].to_numpy(dtype=np.int64)
        ids = clean["__id"].tolist()
        params = [
            {
                "row_id": rid,
                "ingested_at": now,
                "source": batch.origin,
                "features": blob,
                "label": int(lab) if lab >= 0 else None,
                "labeled_at": now if lab >= 0 else None,
            }
            for rid, blob, lab in zip(ids, encode_features(x), y.tolist(), strict=True)
        ]
        inserted = self._insert(conn, params)
        keep = np.fromiter((rid in inserted for rid in ids), dtype=bool, count=len(ids))
        seqs = np.fromiter((inserted[r] for r in ids if r in inserted), dtype=np.int64)
        return Accepted(
            seqs=seqs,
            x=x[keep],
            y=y[keep],
            row_ids=[r for r in ids if r in inserted],
            rejected=rejected,
            duplicates=int((~keep).sum()),
        )

    @staticmethod
    def _insert(conn: Connection, params: list[dict[str, Any]]) -> dict[str, int]:
        """Insert new rows (skipping row ids already stored); returns row id → seq.

        SQLite: writers are serialised (``BEGIN IMMEDIATE``), so seqs are assigned here and
        the rows go in with one ``executemany`` (RETURNING would cost one statement per
        row). PostgreSQL: ``ON CONFLICT DO NOTHING RETURNING`` is batched by the driver.
        """
        if conn.dialect.name == "postgresql":
            stmt = (
                postgresql.insert(rows)
                .on_conflict_do_nothing(index_elements=["row_id"])
                .returning(rows.c.seq, rows.c.row_id)
            )
            return {rid: int(seq) for seq, rid in conn.execute(stmt, params).all()}
        ids = [p["row_id"] for p in params]
        known: set[str] = set()
        for i in range(0, len(ids), 900):
            part = ids[i : i + 900]
            sql = f"SELECT row_id FROM rows WHERE row_id IN ({', '.join('?' * len(part))})"
            known.update(r[0] for r in conn.exec_driver_sql(sql, tuple(part)))
        fresh = [p for p in params if p["row_id"] not in known]
        if not fresh:
            return {}
        top = conn.execute(select(func.coalesce(func.max(rows.c.seq), 0))).scalar_one()
        for n, p in enumerate(fresh, start=int(top) + 1):
            p["seq"] = n
        cols = ("seq", "row_id", "ingested_at", "source", "features", "label", "labeled_at")
        # the driver's executemany directly: SQLAlchemy's per-row parameter processing
        # would cost more than the insert itself
        conn.exec_driver_sql(
            f"INSERT INTO rows ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(p[c] for c in cols) for p in fresh],
        )
        return {p["row_id"]: p["seq"] for p in fresh}

    def _join_labels(
        self, conn: Connection, clean: pd.DataFrame, reasons: dict[int, str], now: str
    ) -> npt.NDArray[np.int64]:
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
        if todo:
            conn.execute(
                update(rows)
                .where(rows.c.row_id == bindparam("rid"), rows.c.label.is_(None))
                .values(label=bindparam("lab"), labeled_at=bindparam("now")),
                todo,
            )
        return np.array(sorted(known[t["rid"]][0] for t in todo), dtype=np.int64)

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


def _raw(frame: pd.DataFrame, i: int) -> str:
    if i >= len(frame):
        return ""
    rec = frame.iloc[i].to_dict()
    return repr({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rec.items()})[
        :500
    ]


def _insert_ignore(conn: Connection) -> Any:
    """INSERT … ON CONFLICT (row_id) DO NOTHING, for the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(rows).on_conflict_do_nothing(index_elements=["row_id"])
    return sqlite.insert(rows).on_conflict_do_nothing(index_elements=["row_id"])
