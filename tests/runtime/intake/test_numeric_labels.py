"""Numeric (regression) labels through ingest: parsed as floats, NaN where missing, a
non-number quarantined with its reason, delayed labels joined by id as class labels are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from runtime.config import parse_config
from runtime.intake.ingest import Ingestor
from runtime.intake.sources import Batch
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.rows import labelled_rows, rows_after


def _ingestor(tmp_path: Path) -> tuple[Ingestor, Database]:
    cfg = parse_config({
        "state_dir": str(tmp_path / "state"), "task": "regression",
        "schema": {"features": ["a"], "label": "y", "id_column": "id"},
        "source": {"kind": "directory", "path": str(tmp_path)},
    })
    cfg.state_dir.mkdir(parents=True)
    db = Database.for_state_dir(cfg.state_dir, None)
    db.create_all()
    return Ingestor(db, cfg.schema, EventLog(db)), db


def test_numeric_labels_are_stored_as_values_and_joined_late_by_id(tmp_path: Path) -> None:
    ing, db = _ingestor(tmp_path)
    rows = pd.DataFrame({"id": ["r1", "r2", "r3", "r4"], "a": [1.0, 2.0, 3.0, 4.0],
                         "y": [-1.5, None, "abc", 42]})
    acc = ing.ingest(Batch(origin="rows", frame=rows))
    assert acc.count == 3 and acc.rejected == 1  # r3's label is not a number
    assert acc.y[0] == -1.5 and np.isnan(acc.y[1]) and acc.y[2] == 42.0  # -1.5 is a value
    late = pd.DataFrame({"id": ["r2", "r1"], "y": [7.25, 99.0]})  # r1 has one: it keeps it
    joined = ing.ingest(Batch(origin="labels", frame=late))
    assert len(joined.labels_joined) == 1
    _, _, y = labelled_rows(db, 1, since=0, numeric=True)
    assert y.dtype == np.float64 and list(y) == [-1.5, 7.25, 42.0]
    _, _, fed = rows_after(db, 1, after=0, limit=10, numeric=True)
    assert fed[0] == -1.5 and np.isnan(fed[1]) and fed[2] == 42.0  # r2's came late


def test_arrays_with_numeric_labels_take_the_fast_path(tmp_path: Path) -> None:
    ing, db = _ingestor(tmp_path)
    acc = ing.ingest_arrays("http", np.array([[1.0], [2.0]]), np.array([0.5, np.nan]),
                            ["h1", "h2"])
    assert acc.count == 2 and acc.y[0] == 0.5 and np.isnan(acc.y[1])
    _, _, y = labelled_rows(db, 1, since=0, numeric=True)
    assert list(y) == [0.5]
