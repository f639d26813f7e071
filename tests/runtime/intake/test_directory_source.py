"""The directory source reads complete lines only, reads on where a file grew, and
rejects (with an event) a file rewritten after it was read."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from runtime.config import DriftloopConfig
from runtime.intake.directory_source import DirectorySource
from runtime.intake.ingest import Ingestor
from runtime.intake.settings import DirectorySourceConfig
from runtime.intake.sources import FileStamp
from runtime.store import events as ev
from runtime.store.db import Database, processed_files, quarantine, rows
from runtime.store.events import EventLog
from tests.conftest import FEATURES

HEADER = ",".join(["row_id", *FEATURES, "class"]) + "\n"


def _line(i: int) -> str:
    return (
        ",".join([f"tr-{i}", *(f"{(i * 7 + j) % 97}.5" for j in range(len(FEATURES))), "1"]) + "\n"
    )


@pytest.fixture
def setup(small_cfg: DriftloopConfig, tmp_path: Path):
    small_cfg.state_dir.mkdir(parents=True)
    db = Database.for_state_dir(small_cfg.state_dir, None)
    db.create_all()
    events = EventLog(db)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    cfg = DirectorySourceConfig(path=inbox, settle_seconds=0.0, incomplete_seconds=30)
    return Ingestor(db, small_cfg.schema, events), events, db, cfg


def _seen(db: Database) -> set[FileStamp]:
    """What a restarted daemon hands the source (runtime/daemon.py, _make_source)."""
    with db.connect() as conn:
        got = conn.execute(
            select(processed_files.c.path, processed_files.c.size, processed_files.c.mtime)
        )
        return {FileStamp(p, s, m) for p, s, m in got}


def _drain(source: DirectorySource, ing: Ingestor) -> int:
    stored = 0
    while (batch := source.poll()) is not None:
        stored += ing.ingest(batch).count
    return stored


def _count(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(rows)).scalar_one())


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_growing_file_is_read_on_from_where_it_stopped(setup) -> None:
    ing, events, db, cfg = setup
    path = cfg.path / "grow.csv"
    half = _line(500)[:20]
    path.write_text(HEADER + "".join(_line(i) for i in range(500)) + half)
    source = DirectorySource(cfg, ing.schema, _seen(db))
    assert _drain(source, ing) == 500  # the cut line waits
    with path.open("a") as fh:
        fh.write(_line(500)[20:] + "".join(_line(i) for i in range(501, 1000)))
    assert _drain(source, ing) == 500
    assert _count(db) == 1000
    # a restart reads nothing again; what is appended later is read once
    source = DirectorySource(cfg, ing.schema, _seen(db))
    assert _drain(source, ing) == 0
    with path.open("a") as fh:
        fh.write(_line(1000))
    restarted = DirectorySource(cfg, ing.schema, _seen(db))
    assert _drain(restarted, ing) == 1 and _count(db) == 1001
    with db.connect() as conn:
        mark = conn.execute(select(processed_files)).one()
    assert mark.accepted == 1001 and mark.size == path.stat().st_size
    assert events.list(kinds=[ev.INGEST_REJECTED]) == []


def test_a_cut_last_line_is_held_back_then_quarantined_never_defaulted(setup) -> None:
    ing, events, db, cfg = setup
    path = cfg.path / "cut.csv"
    path.write_text(HEADER + "".join(_line(i) for i in range(3)) + "tr-499,0.32652,0.69648,0.")
    source = DirectorySource(cfg, ing.schema, _seen(db))
    assert _drain(source, ing) == 3
    assert _drain(source, ing) == 0  # still held back
    _age(path, 60)  # no newline came: read as the last line, and it lacks fields
    assert _drain(source, ing) == 0
    assert _count(db) == 3
    with db.connect() as conn:
        reasons = conn.execute(select(quarantine.c.reason)).scalars().all()
    assert len(reasons) == 1 and "fields" in reasons[0]
    assert len(events.list(kinds=[ev.INGEST_REJECTED])) == 1


def test_a_young_file_waits_until_it_is_still(setup) -> None:
    ing, _, db, cfg = setup
    path = cfg.path / "young.csv"
    path.write_text(HEADER + _line(1))
    source = DirectorySource(cfg.model_copy(update={"settle_seconds": 5.0}), ing.schema, set())
    assert source.poll() is None
    _age(path, 10)
    assert _drain(source, ing) == 1
    (cfg.path / "late.csv.tmp").write_text(HEADER + _line(2))  # not a pattern: never read
    (cfg.path / ".hidden.csv").write_text(HEADER + _line(3))
    _age(cfg.path / ".hidden.csv", 10)
    assert _drain(source, ing) == 0 and _count(db) == 1


def test_a_file_rewritten_after_it_was_read_is_rejected_with_an_event(setup) -> None:
    ing, events, db, cfg = setup
    path = cfg.path / "rewrite.csv"
    path.write_text(HEADER + "".join(_line(i) for i in range(10)))
    source = DirectorySource(cfg, ing.schema, _seen(db))
    assert _drain(source, ing) == 10
    path.write_text(HEADER + "".join(_line(i) for i in range(100, 103)))  # shorter
    assert _drain(source, ing) == 0
    got = events.list(kinds=[ev.INGEST_REJECTED])
    assert len(got) == 1 and got[0].raw["whole_file"]
    assert "file changed after" in got[0].raw["examples"][0]["reason"]
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(quarantine)).scalar_one() == 1
    assert _drain(DirectorySource(cfg, ing.schema, _seen(db)), ing) == 0  # once, not each poll
    assert _count(db) == 10
