"""Validate incoming rows and append the good ones durably; quarantine the rest.

A bad row never stops a file: good rows are accepted, bad rows go to the ``quarantine``
table with their reason, and one ``ingest.rejected`` event per batch carries the counts
and a few examples. Rows are idempotent by row id (a row seen before is skipped, not
rejected). A labels-only batch (id and label columns) joins late labels by row id, and so
do label-only entries (every feature blank) mixed among the rows of a batch.
Accepted rows, quarantined rows and the file's ``processed_files`` mark are written in
one transaction, so a crash never half-ingests a file.

The steps live beside this module: :mod:`~runtime.intake.validation` judges the rows,
:mod:`~runtime.intake.row_append` stores them, :mod:`~runtime.intake.label_join` joins
late labels and :mod:`~runtime.intake.rejections` keeps the refused ones.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pandas as pd
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite as sqlite_dialect

from runtime.config import SchemaConfig
from runtime.intake.label_join import join_labels
from runtime.intake.rejections import quarantine_rows, reject_event
from runtime.intake.row_append import (
    Accepted,
    accepted_rows,
    empty,
    prepare,
    store,
    store_times,
)
from runtime.intake.schema_state import load_state, save_state
from runtime.intake.sources import Batch
from runtime.intake.validation import Validator, plain_ids
from runtime.store.db import Database, processed_files, utcnow
from runtime.store.events import EventLog

__all__ = ["Accepted", "Ingestor"]


class Ingestor:
    """Validates batches against the schema and writes them."""

    def __init__(self, db: Database, schema: SchemaConfig, events: EventLog) -> None:
        self.db = db
        self.schema = schema
        self.events = events
        self.validator = Validator(schema)
        stored = load_state(db)
        for f, t in stored["types"].items():
            if self.validator.types.get(f, "") is None:
                self.validator.types[f] = t
        self.validator.codes.update({float(k): v for k, v in stored["names"].items()})
        self._saved = (dict(stored["types"]), len(self.validator.codes))

    def _keep_schema_state(self) -> None:
        """Store newly inferred types and category names (see schema_state)."""
        v = self.validator
        types = {f: t for f, t in v.types.items() if t is not None and f in v.inferred}
        types = {**self._saved[0], **types}
        if (types, len(v.codes)) != self._saved:
            save_state(self.db, types, v.codes)
            self._saved = (types, len(v.codes))

    def ingest(self, batch: Batch) -> Accepted:
        """Validate and write one batch; never raises on bad data."""
        nf = len(self.schema.features)
        if batch.read_error is not None:
            with self.db.begin() as conn:
                self._mark_file(conn, batch, 0, 1)
                quarantine_rows(conn, batch, {0: batch.read_error}, utcnow())
                reject_event(self.events, conn, batch, 0, {0: batch.read_error}, whole_file=True)
            return empty(nf)
        clean, reasons, mode, late = self.validator.validate(batch)
        self._keep_schema_state()
        now = utcnow()
        with self.db.begin() as conn:
            if late is not None:  # rows, and late labels for earlier rows, in one batch
                result = self._append(conn, clean, batch, now, 0)
                joined, label_seq = join_labels(conn, late, reasons, now)
                result = replace(
                    result, rejected=len(reasons), labels_joined=joined, label_seq=label_seq
                )
                accepted = result.count + len(joined)
            elif mode == "labels":
                joined, label_seq = join_labels(conn, clean, reasons, now)
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
                quarantine_rows(conn, batch, reasons, now)
                reject_event(self.events, conn, batch, accepted, reasons)
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
        y = self.validator.clean_labels(labels, n)
        clean = (
            not row_errors
            and y is not None
            and x.ndim == 2
            and x.shape[1] == len(self.schema.features)
            and len(ids) == n
            and bool(np.isfinite(x).all())
            and plain_ids(ids)
        )
        if not clean:
            frame = pd.DataFrame(x, columns=list(self.schema.features))
            if labels is not None:
                frame[self.schema.label] = labels
            frame[self.schema.id_column] = ids
            return self.ingest(Batch(origin=origin, frame=frame, row_errors=row_errors or {}))
        assert y is not None
        params = prepare(self.db.is_sqlite, origin, utcnow(), ids, x, y)
        with self.db.begin() as conn:
            stored = store(conn, ids, params)
        return accepted_rows(x, y, ids, *stored, rejected=0)

    def _append(
        self, conn: Connection, clean: pd.DataFrame, batch: Batch, now: str, rejected: int
    ) -> Accepted:
        if clean.empty:  # no column but the input's when a whole batch was refused
            return replace(empty(len(self.schema.features)), rejected=rejected)
        x = clean[list(self.schema.features)].to_numpy(dtype=np.float64)
        y = clean["__label"].to_numpy(
            dtype=np.float64 if self.schema.numeric_label else np.int64)
        acc = self._write(conn, batch.origin, now, x, y, clean["__id"].tolist(), rejected)
        if "__ts" in clean.columns and acc.count:
            store_times(conn, acc, dict(zip(clean["__id"], clean["__ts"], strict=True)))
        return acc

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
            return replace(empty(len(self.schema.features)), rejected=rejected)
        params = prepare(self.db.is_sqlite, origin, now, ids, x, y)
        return accepted_rows(x, y, ids, *store(conn, ids, params), rejected)

    def _mark_file(self, conn: Connection, batch: Batch, accepted: int, rejected: int) -> None:
        """Record how far the file was read (``size``: bytes read); a file read on from
        where it stopped updates its row, its counts adding up."""
        if batch.file is None:
            return
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite_dialect
        stmt = dialect.insert(processed_files).values(
            path=batch.file.path,
            size=batch.file.size,
            mtime=batch.file.mtime,
            processed_at=utcnow(),
            accepted=accepted,
            rejected=rejected,
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["path"],
                set_={
                    "size": stmt.excluded.size,
                    "mtime": stmt.excluded.mtime,
                    "processed_at": stmt.excluded.processed_at,
                    "accepted": processed_files.c.accepted + stmt.excluded.accepted,
                    "rejected": processed_files.c.rejected + stmt.excluded.rejected,
                },
            )
        )
