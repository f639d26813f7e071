"""Upgrades of databases written by earlier releases: PostgreSQL's integer ``rows.label``
becomes a double on open, keeping the class labels stored before, so regression targets
store; SQLite keeps a float in its INTEGER column as it is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert, select, text

from runtime.config import parse_config
from runtime.intake.ingest import Ingestor
from runtime.intake.sources import Batch
from runtime.store.db import Database, rows, utcnow
from runtime.store.events import EventLog
from runtime.store.rows import labelled_rows
from runtime.store.upgrades import widen_label_column
from tests.runtime.conftest import postgres_database


def _regression_ingestor(tmp_path: Path, db: Database) -> Ingestor:
    cfg = parse_config({
        "task": "regression", "state_dir": str(tmp_path / "state"),
        "schema": {"features": ["a"], "label": "y", "id_column": "id"},
        "source": {"kind": "directory", "path": str(tmp_path)},
    })
    return Ingestor(db, cfg.schema, EventLog(db))


def _label_type(db: Database) -> str:
    with db.connect() as conn:
        return str(conn.execute(text(
            "SELECT data_type FROM information_schema.columns WHERE table_schema = "
            "current_schema() AND table_name = 'rows' AND column_name = 'label'")).scalar())


def test_regression_targets_store_and_read_back_as_they_are(db: Database, tmp_path: Path) -> None:
    ing = _regression_ingestor(tmp_path, db)
    frame = pd.DataFrame({"id": ["r1", "r2", "r3"], "a": [1.0, 2.0, 3.0],
                          "y": [41.837, -0.25, None]})
    assert ing.ingest(Batch(origin="rows", frame=frame)).count == 3
    ing.ingest(Batch(origin="labels", frame=pd.DataFrame({"id": ["r3"], "y": [7.5]})))
    _, _, y = labelled_rows(db, 1, since=0, numeric=True)
    assert list(y) == [41.837, -0.25, 7.5]


@pytest.mark.postgres
def test_an_integer_label_column_is_widened_and_keeps_its_classes(tmp_path: Path) -> None:
    for db in postgres_database():
        with db.begin() as conn:  # the column as releases before regression made it
            conn.execute(text("ALTER TABLE rows ALTER COLUMN label TYPE INTEGER"))
            conn.execute(insert(rows).values(row_id="old", ingested_at=utcnow(), source="s",
                                             features=np.zeros(1).tobytes(), label=1))
        assert _label_type(db) == "integer"
        db.create_all()  # what opening the state does
        assert _label_type(db) == "double precision"
        with db.connect() as conn:
            assert conn.execute(select(rows.c.label)).scalars().all() == [1.0]
        _, _, y = labelled_rows(db, 1, since=0)
        assert y.dtype == np.int64 and list(y) == [1]  # a class, read as before
        ing = _regression_ingestor(tmp_path, db)
        ing.ingest(Batch(origin="rows", frame=pd.DataFrame({"id": ["new"], "a": [2.0],
                                                            "y": [2.5]})))
        _, _, y = labelled_rows(db, 1, since=2, numeric=True)
        assert list(y) == [2.5]
        with db.begin() as conn:
            assert not widen_label_column(conn)  # once only


def test_sqlite_needs_no_upgrade(tmp_path: Path) -> None:
    db = Database.for_state_dir(tmp_path, None)
    db.create_all()
    with db.begin() as conn:
        assert not widen_label_column(conn)
    db.dispose()
