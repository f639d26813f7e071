"""Fixtures shared by the runtime tests: the database under test, SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from runtime.db import Database

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_database() -> Iterator[Database]:
    """A fresh schema on the PostgreSQL server (dropped afterwards), or a skip."""
    admin = Database(PG_URL + "?connect_timeout=3")
    try:
        with admin.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {exc.orig}")
    schema = f"driftloop_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    database = Database(f"{PG_URL}?options=-csearch_path%3D{schema}")
    try:
        database.create_all()
        yield database
    finally:
        database.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgres":
        yield from postgres_database()
        return
    database = Database.for_state_dir(tmp_path, None)
    database.create_all()
    yield database
    database.dispose()
