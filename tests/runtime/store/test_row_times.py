"""Each row's event time (``schema.timestamp_column``) is stored beside it, an older state
directory gains the table on open, and ``driftloop events --since`` and the review page
read the data's time where rows carry one."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select, text, update

from runtime.cli.main import main
from runtime.config import SchemaConfig
from runtime.intake.ingest import Ingestor
from runtime.intake.sources import Batch
from runtime.review.collect import open_review
from runtime.review.page import render
from runtime.store import events as ev
from runtime.store.db import Database, row_times, rows
from runtime.store.events import EventLog
from runtime.store.rows import event_times, has_times, stored_since

SCHEMA = SchemaConfig(features=["a"], classes=[0, 1], timestamp_column="at")


def _batch(ids: list[str], times: list[object]) -> Batch:
    frame = pd.DataFrame({"row_id": ids, "a": ["1"] * len(ids), "label": ["0"] * len(ids),
                          "at": times}, dtype=object)
    return Batch(origin="t", frame=frame)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database.for_state_dir(tmp_path, None)
    database.create_all()
    return database


def test_ingest_stores_each_rows_time_in_utc_and_in_time_order(db: Database) -> None:
    ing = Ingestor(db, SCHEMA, EventLog(db))
    acc = ing.ingest(_batch(["late", "early", "epoch"],
                            ["2024-03-01T12:00:00+02:00", "2024-02-01", 1700000000]))
    assert acc.row_ids == ["epoch", "early", "late"]  # the batch taken in time order
    times = event_times(db, acc.seqs.tolist())
    assert [times[int(s)] for s in acc.seqs] == [
        "2023-11-14T22:13:20.000Z", "2024-02-01T00:00:00.000Z", "2024-03-01T10:00:00.000Z"]
    assert has_times(db)
    db.dispose()


def test_an_older_state_directory_gains_the_table_and_reads_without_times(
    tmp_path: Path,
) -> None:
    old = Database.for_state_dir(tmp_path, None)
    old.create_all()
    with old.begin() as conn:
        conn.execute(text("DROP TABLE row_times"))
    plain = pd.DataFrame({"row_id": ["r1"], "a": ["1"], "label": ["0"]})  # no timestamp
    Ingestor(old, SchemaConfig(features=["a"], classes=[0, 1]), EventLog(old)).ingest(
        Batch(origin="t", frame=plain))
    old.dispose()
    db = Database.for_state_dir(tmp_path, None)
    db.create_all()  # as every command opens a state
    assert not has_times(db)
    Ingestor(db, SCHEMA, EventLog(db)).ingest(_batch(["r2"], ["2024-01-02"]))
    with db.connect() as conn:
        assert [tuple(r) for r in conn.execute(select(row_times))] == [
            (2, "2024-01-02T00:00:00.000Z")]
    db.dispose()


def _state_with_two_days(tmp_path: Path) -> None:
    """Rows of January stored on 1 Jan 2026, rows of June on 2 Jan; an event after each."""
    db = Database.for_state_dir(tmp_path, None)
    db.create_all()
    ing = Ingestor(db, SCHEMA, EventLog(db))
    jan = ing.ingest(_batch(["j1", "j2"], ["2024-01-05", "2024-01-06"]))
    jun = ing.ingest(_batch(["u1", "u2"], ["2024-06-05", "2024-06-06"]))
    with db.begin() as conn:
        for acc, day in ((jan, "01"), (jun, "02")):
            conn.execute(update(rows).where(rows.c.seq.in_(acc.seqs.tolist()))
                         .values(ingested_at=f"2026-01-{day}T00:00:00.000Z"))
    for day, row in ((1, int(jan.seqs[-1])), (2, int(jun.seqs[-1]))):
        log = EventLog(db, clock=lambda d=day: datetime(2026, 1, d, 12, tzinfo=UTC))
        log.append(ev.DRIFT_DETECTED, ev.DriftDetected(detector="adwin", signal="error",
                                                       row=row, action="alert"))
    db.dispose()


def _events(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[int]:
    assert main(["events", "--state-dir", str(tmp_path), "--json", *args]) == 0
    out = capsys.readouterr().out
    return [json.loads(line)["payload"]["row"] for line in out.splitlines()]


def test_events_since_reads_the_datas_time_where_rows_carry_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    _state_with_two_days(tmp_path)
    assert _events(tmp_path, capsys, "--since", "2024-06-01") == [4]
    assert _events(tmp_path, capsys, "--since", "2024-01-06") == [2, 4]
    assert _events(tmp_path, capsys, "--since", "2025-01-01") == []
    assert _events(tmp_path, capsys, "--since", "2026-01-01T06:00", "--wall-clock") == [2, 4]
    db = Database.for_state_dir(tmp_path, None)
    assert stored_since(db, "2024-06-01T00:00:00.000Z") == "2026-01-02T00:00:00.000Z"
    db.dispose()


def test_the_page_shows_the_data_time_of_a_drift_alarm(tmp_path: Path) -> None:
    _state_with_two_days(tmp_path)
    review = open_review(None, tmp_path, matrix=False)
    assert review.row_times == {2: "2024-01-06T00:00:00.000Z", 4: "2024-06-06T00:00:00.000Z"}
    page = render(review, report_href=lambda name: name)
    assert "4 (data time 2024-06-06T00:00:00.000Z)" in page
