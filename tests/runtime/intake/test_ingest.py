from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from runtime.config import DriftloopConfig
from runtime.intake.directory_source import read_file
from runtime.intake.ingest import Ingestor
from runtime.intake.sources import Batch
from runtime.store import events as ev
from runtime.store.db import Database, quarantine
from runtime.store.events import EventLog
from runtime.store.rows import (
    count_labelled,
    labelled_rows,
    last_late_label,
    late_labels_after,
    rows_after,
)
from tests.conftest import FEATURES


@pytest.fixture
def ingest(small_cfg: DriftloopConfig) -> tuple[Ingestor, EventLog, Database]:
    small_cfg.state_dir.mkdir(parents=True)
    db = Database.for_state_dir(small_cfg.state_dir, None)
    db.create_all()
    events = EventLog(db)
    return Ingestor(db, small_cfg.schema, events), events, db


def _good_frame(n: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    frame = pd.DataFrame(rng.uniform(0, 100, size=(n, len(FEATURES))), columns=FEATURES)
    frame["class"] = rng.integers(0, 2, n)
    frame["row_id"] = [f"r{start + i}" for i in range(n)]
    return frame


def test_good_rows_accepted_bad_rows_quarantined_with_one_event(ingest, tmp_path: Path) -> None:
    ing, events, _db = ingest
    frame = _good_frame(10).astype(object)
    frame.loc[2, "age"] = "forty"  # wrong type
    frame.loc[4, "salary"] = ""  # missing
    frame.loc[6, "class"] = 7  # unknown label
    frame.loc[8, "loan"] = "inf"  # not finite
    path = tmp_path / "batch.csv"
    frame.to_csv(path, index=False)
    acc = ing.ingest(read_file(path, ing.schema))
    assert acc.count == 6 and acc.rejected == 4
    rejected = events.list(kinds=[ev.INGEST_REJECTED])
    assert len(rejected) == 1
    p = rejected[0].raw
    assert p["accepted"] == 6 and p["rejected"] == 4 and p["source"] == str(path)
    reasons = " | ".join(e["reason"] for e in p["examples"])
    assert "'age' is not a number" in reasons and "unknown label" in reasons
    assert "'salary' is missing" in reasons and "'loan' is not finite" in reasons
    assert [e["row"] for e in p["examples"]] == [4, 6, 8, 10]  # CSV line numbers


def test_whole_file_problems_reject_every_row_and_keep_going(ingest, tmp_path: Path) -> None:
    ing, events, _ = ingest
    extra = _good_frame(3)
    extra["weather"] = "sunny"
    p1 = tmp_path / "extra.csv"
    extra.to_csv(p1, index=False)
    p2 = tmp_path / "missing.csv"
    _good_frame(3).drop(columns=["age"]).to_csv(p2, index=False)
    p3 = tmp_path / "broken.parquet"
    p3.write_bytes(b"not parquet at all")
    for p in (p1, p2, p3):
        assert ing.ingest(read_file(p, ing.schema)).count == 0
    got = [e.raw for e in events.list(kinds=[ev.INGEST_REJECTED])]
    assert "unexpected column(s) 'weather'" in got[0]["examples"][0]["reason"]
    assert "missing column(s) 'age'" in got[1]["examples"][0]["reason"]
    assert got[2]["whole_file"] and "cannot read parquet file" in got[2]["examples"][0]["reason"]
    # good data after bad files still goes in
    assert ing.ingest(read_file(_write(tmp_path / "ok.csv", _good_frame(5)), ing.schema)).count == 5


def _write(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_row_ids_make_ingest_idempotent(ingest, tmp_path: Path) -> None:
    ing, _, db = ingest
    a = ing.ingest(read_file(_write(tmp_path / "a.csv", _good_frame(5)), ing.schema))
    b = ing.ingest(read_file(_write(tmp_path / "b.csv", _good_frame(8)), ing.schema))
    assert a.count == 5 and b.count == 3 and b.duplicates == 5
    assert count_labelled(db, 0) == 8


def test_late_labels_join_by_row_id(ingest, tmp_path: Path) -> None:
    ing, events, db = ingest
    frame = _good_frame(6)
    frame["class"] = None
    ing.ingest(read_file(_write(tmp_path / "rows.csv", frame), ing.schema))
    assert count_labelled(db, 0) == 0
    labels = pd.DataFrame({"row_id": [" r1", "r3 ", "nope"], "class": [1, 0, 1]})
    acc = ing.ingest(Batch(origin="labels", frame=labels))  # ids trimmed, as rows' ids are
    assert len(acc.labels_joined) == 2
    _seqs, _, y = labelled_rows(db, len(FEATURES), since=0)
    assert list(y) == [1, 0]
    p = events.list(kinds=[ev.INGEST_REJECTED])[-1].raw
    assert "unknown row id 'nope'" in p["examples"][0]["reason"]


def test_late_labels_mixed_with_new_rows_in_one_batch_are_joined(ingest) -> None:
    """A broker delivers label-only entries (id and label) among full rows: the frame has
    every column, blank features on those entries. They join their rows, not quarantine."""
    ing, events, db = ingest
    first = _good_frame(4)
    first["class"] = None
    ing.ingest(Batch(origin="redis:1", frame=first))
    late = pd.DataFrame({"row_id": ["r1", "r3", "nope", "r5"], "class": [1, 0, 1, 1]})
    late_bad = pd.DataFrame({"row_id": ["r2"], "class": [7]})
    new = _good_frame(2, start=4)  # r4, r5: r5's label-only entry comes after its row
    new["class"] = None
    mixed = pd.concat([new.iloc[[0]], late, new.iloc[[1]], late_bad], ignore_index=True)
    acc = ing.ingest(Batch(origin="redis:2", frame=mixed))
    assert acc.count == 2 and acc.row_ids == ["r4", "r5"]
    assert len(acc.labels_joined) == 3  # r1, r3, and r5 stored in this very batch
    assert acc.rejected == 2
    _seqs, _, y = labelled_rows(db, len(FEATURES), since=0)
    assert list(y) == [1, 0, 1]
    reasons = sorted(
        e["reason"] for e in events.list(kinds=[ev.INGEST_REJECTED])[-1].raw["examples"]
    )
    assert reasons[0].startswith("unknown label '7'") and "unknown row id 'nope'" in reasons[1]


def test_late_labels_are_numbered_in_the_order_they_were_joined(
    db: Database, small_cfg: DriftloopConfig
) -> None:
    """The numbers a saved daemon state refers to: a crash replay feeds the labels joined
    since, each after the rows stored before it, and those rows without them."""
    ing = Ingestor(db, small_cfg.schema, EventLog(db))
    first = _good_frame(4)  # r0 … r3: seqs 1 … 4
    first["class"] = None
    ing.ingest(Batch(origin="rows", frame=first))
    ids = pd.DataFrame({"row_id": ["r2", "r0"], "class": [1, 0]})
    a = ing.ingest(Batch(origin="labels", frame=ids))
    new = _good_frame(2, start=4)  # r4 (labelled), r5: seqs 5, 6
    new["class"] = [1, None]
    late = pd.DataFrame({"row_id": ["r5", "r1", "r0"], "class": [1, 1, 1]})  # r0 keeps its 0
    b = ing.ingest(Batch(origin="mixed", frame=pd.concat([new, late], ignore_index=True)))
    assert (a.label_seq, b.label_seq) == (2, 4) and last_late_label(db) == 4
    got = late_labels_after(db, len(FEATURES), 0, 10)
    assert got.seq.tolist() == [1, 2, 3, 4]
    assert got.rows.tolist() == [1, 3, 2, 6]  # each batch's in row order
    assert got.after_seq.tolist() == [4, 4, 6, 6]  # after the rows stored with them
    assert got.y.tolist() == [0, 1, 1, 1]
    assert late_labels_after(db, len(FEATURES), 2, 10).rows.tolist() == [2, 6]
    seqs, _, y = rows_after(db, len(FEATURES), 0, 10)
    assert seqs.tolist() == [1, 2, 3, 4, 5, 6]
    assert y.tolist() == [-1, -1, -1, -1, 1, -1]  # late labels are not the rows'
    assert rows_after(db, len(FEATURES), 1, 10, upto=4)[0].tolist() == [2, 3, 4]


def test_a_row_that_failed_parsing_is_not_taken_for_a_late_label(ingest) -> None:
    """An entry with only an id and a label is a late label, unless parsing already found
    it broken (a ragged HTTP row, a JSON line with an unknown key): it keeps that reason."""
    ing, events, _ = ingest
    unlabelled = _good_frame(2)
    unlabelled["class"] = None
    ing.ingest(Batch(origin="rows", frame=unlabelled))
    late = pd.DataFrame({"row_id": ["r0", "r1"], "class": [1, 0]})
    frame = pd.concat([_good_frame(1, start=2), late], ignore_index=True)
    acc = ing.ingest(Batch(origin="mixed", frame=frame, row_errors={2: "expected 9 values, got 3"}))
    assert acc.count == 1 and len(acc.labels_joined) == 1 and acc.rejected == 1
    examples = events.list(kinds=[ev.INGEST_REJECTED])[-1].raw["examples"]
    assert examples == [{"row": 2, "reason": "expected 9 values, got 3"}]


def test_jsonl_rows_with_missing_extra_and_broken_lines(ingest, tmp_path: Path) -> None:
    ing, events, _ = ingest
    good = {f: 1.0 for f in FEATURES} | {"class": 1}
    lines = [
        json.dumps(good | {"row_id": "j1"}),
        json.dumps({k: v for k, v in good.items() if k != "age"} | {"row_id": "j2"}),
        json.dumps(good | {"row_id": "j3", "colour": "red"}),
        "{not json",
        json.dumps(good | {"row_id": "j5"}),
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    acc = ing.ingest(read_file(path, ing.schema))
    assert acc.row_ids == ["j1", "j5"]
    p = events.list(kinds=[ev.INGEST_REJECTED])[-1].raw
    reasons = [e["reason"] for e in p["examples"]]
    assert any("'age' is missing" in r for r in reasons)
    assert any("unexpected key(s) 'colour'" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)


def test_a_file_of_only_broken_lines_is_quarantined_with_their_own_reasons(
    ingest, tmp_path: Path
) -> None:
    ing, events, _ = ingest
    path = tmp_path / "broken.jsonl"
    path.write_text("{not json\n[1, 2]\n")
    acc = ing.ingest(read_file(path, ing.schema))
    assert acc.count == 0 and acc.rejected == 2
    reasons = [e["reason"] for e in events.list(kinds=[ev.INGEST_REJECTED])[-1].raw["examples"]]
    assert reasons == [
        "line 1 is not valid JSON (Expecting property name enclosed in double quotes)",
        "line 2 is not a JSON object",
    ]


def test_row_ids_the_database_cannot_hold_are_quarantined_not_fatal(
    db: Database, small_cfg: DriftloopConfig
) -> None:
    ing = Ingestor(db, small_cfg.schema, EventLog(db))
    bad = ["x" * 129, "nul\x00id", "lone\ud800surrogate"]
    x = np.ones((4, len(FEATURES)))
    acc = ing.ingest_arrays("api", x, np.ones(4), [*bad, "fine"])  # used to fail the write
    assert acc.row_ids == ["fine"] and acc.rejected == 3
    frame = pd.DataFrame({"row_id": [*bad, "fine"], "class": [0, 0, 0, 0]})
    labels = ing.ingest(Batch(origin="labels", frame=frame))  # a late-labels batch too
    assert labels.rejected == 3 and len(labels.labels_joined) == 0
    with db.connect() as conn:
        reasons = sorted(r for (r,) in conn.execute(select(quarantine.c.reason)))
    assert reasons.count("row id is longer than 128 characters") == 2
    assert reasons.count("row id contains a NUL or a character that is not UTF-8") == 4


def test_nan_allowed_when_the_schema_says_so(tmp_path: Path, small_cfg: DriftloopConfig) -> None:
    schema = small_cfg.schema.model_copy(update={"allow_nan": True})
    small_cfg.state_dir.mkdir(parents=True)
    db = Database.for_state_dir(small_cfg.state_dir, None)
    db.create_all()
    ing = Ingestor(db, schema, EventLog(db))
    frame = _good_frame(3).astype(object)
    frame.loc[1, "age"] = ""
    acc = ing.ingest(read_file(_write(tmp_path / "n.csv", frame), schema))
    assert acc.count == 3 and np.isnan(acc.x[1, FEATURES.index("age")])


# -- the array path (HTTP API): SQLite and PostgreSQL -----------------------------------


def _arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).astype(np.float64)
    labels[::3] = np.nan  # every third row unlabelled
    return rng.uniform(0, 100, size=(n, len(FEATURES))), labels


def test_clean_arrays_are_stored_in_order_and_duplicates_skipped(
    db: Database, small_cfg: DriftloopConfig
) -> None:
    ing = Ingestor(db, small_cfg.schema, EventLog(db))
    x, labels = _arrays(6, seed=1)
    first = ing.ingest_arrays("api:1", x, labels, [f"a{i}" for i in range(6)])
    assert first.count == 6 and first.duplicates == 0 and first.rejected == 0
    assert list(np.diff(first.seqs)) == [1] * 5
    assert first.y.tolist() == [-1 if np.isnan(v) else int(v) for v in labels]
    x2, labels2 = _arrays(4, seed=2)
    again = ing.ingest_arrays("api:2", x2, labels2, ["b0", "a2", "b2", "a5"])  # two stored
    assert again.count == 2 and again.duplicates == 2 and again.row_ids == ["b0", "b2"]
    assert np.array_equal(again.x, x2[[0, 2]]) and again.seqs.min() > first.seqs.max()
    seqs, stored, y = labelled_rows(db, len(FEATURES), since=0)
    want = np.concatenate([x[~np.isnan(labels)], x2[[0, 2]][~np.isnan(labels2[[0, 2]])]])
    assert np.array_equal(stored, want) and list(seqs) == sorted(seqs)
    assert count_labelled(db, 0) == len(y)


def test_arrays_with_bad_rows_are_judged_like_a_file(
    db: Database, small_cfg: DriftloopConfig
) -> None:
    events = EventLog(db)
    ing = Ingestor(db, small_cfg.schema, events)
    x, labels = _arrays(6, seed=3)
    x[1, 0] = np.inf
    labels[2] = 7
    ids = ["c0", "c1", "c2", "c3", "c3", "c5"]
    acc = ing.ingest_arrays("api:3", x, labels, ids, {6: "expected 9 values, got 2"})
    assert acc.row_ids == ["c0", "c3"] and acc.rejected == 4
    reasons = [e["reason"] for e in events.list(kinds=[ev.INGEST_REJECTED])[-1].raw["examples"]]
    assert "feature 'salary' is not finite" in reasons[0]
    assert "unknown label" in reasons[1]
    assert "duplicate row id 'c3'" in reasons[2] and "expected 9 values" in reasons[3]
