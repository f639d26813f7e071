"""Fixtures shared by the runtime tests: the database under test, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.intake.ingest import Ingestor
from runtime.store.db import Database
from runtime.store.events import EventLog
from tests.runtime.processes import AGRAWAL_SCHEMA, postgres_schema


def postgres_database() -> Iterator[Database]:
    """A :class:`Database` on a fresh PostgreSQL schema (dropped afterwards), or a skip."""
    with postgres_schema() as url:
        database = Database(url)
        try:
            database.create_all()
            yield database
        finally:
            database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgres":
        yield from postgres_database()
        return
    database = Database.for_state_dir(tmp_path, None)
    database.create_all()
    yield database
    database.dispose()


@pytest.fixture
def ingestor(tmp_path: Path) -> Iterator[Ingestor]:
    """An ingestor of :data:`~tests.runtime.processes.AGRAWAL_SCHEMA` rows on a fresh SQLite
    state (the broker sources' tests)."""
    db = Database.for_state_dir(tmp_path, None)
    db.create_all()
    yield Ingestor(db, AGRAWAL_SCHEMA, EventLog(db))
    db.dispose()
