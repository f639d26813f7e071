"""Served predictions and the realized score: recorded once, windows, versions, series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import inspect, select

from runtime.store.db import Database, row_times, rows, served
from runtime.store.served import (
    realized,
    realized_by_version,
    realized_series,
    realized_summary,
    record,
    served_versions,
)


def _rows(db: Database, labels: list[int | None]) -> None:
    with db.begin() as conn:
        conn.execute(
            rows.insert(),
            [
                {"row_id": f"r{i}", "ingested_at": "2026-01-01T00:00:00.000Z", "source": "t",
                 "features": b"", "label": lab}
                for i, lab in enumerate(labels)
            ],
        )


def _serve(db: Database, seqs: list[int], values: list[float], version: str) -> int:
    with db.begin() as conn:
        return record(conn, np.array(seqs, dtype=np.int64), np.array(values), version)


def test_empty_state_has_no_realized_score(db: Database) -> None:
    r = realized(db)
    assert (r.value, r.rows, r.first_row, r.metric) == (None, 0, None, "accuracy")
    assert realized_by_version(db) == {} and realized_series(db) == []


def test_the_first_recorded_prediction_stands(db: Database) -> None:
    _rows(db, [1, 0, 1])
    assert _serve(db, [1, 2], [1, 0], "v1") == 2
    assert _serve(db, [1, 2, 3], [0, 1, 1], "v2") == 1  # a replay: rows 1, 2 keep v1's
    with db.connect() as conn:
        got = conn.execute(select(served).order_by(served.c.row_seq)).all()
    assert [(s, v, ver) for s, v, ver in got] == [(1, 1.0, "v1"), (2, 0.0, "v1"), (3, 1.0, "v2")]


def test_window_counts_only_labelled_served_rows(db: Database) -> None:
    _rows(db, [1, 0, None, 1, 1, 0])
    _serve(db, [1, 2, 3, 4, 5], [1, 1, 1, 1, 0], "v1")  # row 6 never served
    r = realized(db, window=10)
    assert (r.rows, r.first_row, r.last_row) == (4, 1, 5)
    assert r.value == pytest.approx(2 / 4)
    recent = realized(db, window=2)  # rows 4 and 5: right, wrong
    assert (recent.value, recent.first_row) == (0.5, 4)
    assert realized(db, window=10, upto=2).value == 0.5
    late = realized(db, window=10, since=4)  # rows 4 and 5 only (a re-baseline at row 3)
    assert (late.rows, late.first_row, late.value) == (2, 4, 0.5)
    assert realized(db, metric="mae").value == pytest.approx((0 + 1 + 0 + 1) / 4)
    with pytest.raises(ValueError, match="window"):
        realized(db, window=0)


def test_each_version_is_scored_on_its_own_rows(db: Database) -> None:
    _rows(db, [1] * 6)
    _serve(db, [1, 2, 3], [0, 0, 1], "v1")
    _serve(db, [4, 5, 6], [1, 1, 1], "v2")
    per = realized_by_version(db)
    assert list(per) == ["v1", "v2"] == served_versions(db)
    assert per["v1"].value == pytest.approx(1 / 3) and per["v2"].value == 1.0
    assert realized(db, window=3).value == 1.0  # the recent window: v2's rows


def test_series_marks_the_version_of_each_span(db: Database) -> None:
    _rows(db, [1] * 10)
    _serve(db, list(range(1, 6)), [0, 0, 1, 1, 1], "v1")
    _serve(db, list(range(6, 11)), [1] * 5, "v2")
    points = realized_series(db, points=2)
    assert [(p.first_row, p.last_row, p.version, p.rows) for p in points] == [
        (1, 5, "v1", 5), (6, 10, "v2", 5)
    ]
    assert points[0].value == pytest.approx(0.6)
    fine = realized_series(db, points=100)
    assert len(fine) == 10 and {p.rows for p in fine} == {1}


def test_the_summary_gives_recent_windows_and_the_latest_versions(db: Database) -> None:
    _rows(db, [1] * 6)
    _serve(db, [1, 2, 3], [0, 0, 1], "v1")
    _serve(db, [4, 5], [1, 1], "v2")
    _serve(db, [6], [0], "v4")
    got = realized_summary(db, windows=(2, 10), max_versions=2)
    assert got["metric"] == "accuracy"
    assert [(r["window"], r["rows"], r["value"]) for r in got["recent"]] == [
        (2, 2, 0.5), (10, 6, 0.5)
    ]
    assert list(got["by_version"]) == ["v2", "v4"]
    assert got["by_version"]["v2"]["value"] == 1.0


def test_with_event_times_each_window_names_the_data_time_it_spans(db: Database) -> None:
    _rows(db, [1] * 4)
    _serve(db, [1, 2, 3, 4], [1, 1, 0, 1], "v1")
    assert "first_time" not in realized_summary(db, windows=(2,))["recent"][0]  # no times
    with db.begin() as conn:
        conn.execute(row_times.insert(), [{"row_seq": s, "event_at": f"2026-03-0{s}T00:00:00.000Z"}
                                          for s in (1, 3, 4)])
    got = realized_summary(db, windows=(2, 10))["recent"]
    assert [(w["first_time"], w["last_time"]) for w in got] == [
        ("2026-03-03T00:00:00.000Z", "2026-03-04T00:00:00.000Z"),
        ("2026-03-01T00:00:00.000Z", "2026-03-04T00:00:00.000Z"),
    ]


def test_an_old_state_directory_gains_the_table(tmp_path: Path) -> None:
    db = Database.for_state_dir(tmp_path, None)
    db.create_all()
    with db.begin() as conn:
        served.drop(conn)  # a database made before served predictions were recorded
    db.create_all()
    assert "ix_served_version_row" in {
        ix["name"] for ix in inspect(db.engine).get_indexes("served")
    }
    assert realized(db).rows == 0
    db.dispose()
