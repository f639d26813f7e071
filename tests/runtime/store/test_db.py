"""Storage primitives: the Database (SQLite settings, schema), JSON, timestamps, atomic files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, insert, inspect, select

from runtime.store.atomic import sha256_file, write_bytes_atomic, write_json_atomic
from runtime.store.db import (
    Database,
    format_ts,
    from_json,
    kv,
    late_labels,
    metadata,
    parse_ts,
    retrain_requests,
    rows,
    to_json,
    utcnow,
)

TABLES = {
    "events",
    "model_versions",
    "pointers",
    "rows",
    "quarantine",
    "retrain_requests",
    "processed_files",
    "golden_sets",
    "kv",
    "late_labels",
    "hook_outbox",
    "served",
    "served_confidence",
    "row_times",
    "served_probabilities",
    "served_expected_error",
}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.for_state_dir(tmp_path, None)
    database.create_all()
    yield database
    database.dispose()


# -- timestamps -------------------------------------------------------------------------


def test_utcnow_has_milliseconds_and_z() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", utcnow())


def test_utcnow_uses_the_injected_clock_and_converts_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert utcnow(lambda: datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=plus2)) == (
        "2026-03-01T10:00:00.123Z"
    )
    assert utcnow(lambda: datetime(2026, 3, 1, 12, 0, 0)) == "2026-03-01T12:00:00.000Z"


def test_parse_ts_round_trips_and_rejects_garbage() -> None:
    ts = "2026-03-01T10:00:00.123Z"
    assert format_ts(parse_ts(ts)) == ts
    assert parse_ts("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="not an ISO-8601 timestamp"):
        parse_ts("yesterday")


# -- JSON ---------------------------------------------------------------------------------


def test_to_json_is_canonical_and_round_trips() -> None:
    obj = {"b": [1, 2.5, None], "a": {"z": True, "y": "é"}}
    text = to_json(obj)
    assert text == '{"a":{"y":"\\u00e9","z":true},"b":[1,2.5,null]}'
    assert from_json(text) == obj


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_to_json_refuses_non_finite_floats_and_says_where(bad: float) -> None:
    with pytest.raises(ValueError, match=r"value\['m'\]\[1\] is .*NaN and infinity"):
        to_json({"m": [0.5, bad]})


def test_to_json_writes_numpy_scalars_as_numbers() -> None:
    assert to_json({"n": np.int64(3), "x": np.float32(0.5), "b": np.bool_(True)}) == (
        '{"b":true,"n":3,"x":0.5}'
    )
    with pytest.raises(ValueError, match=r"value\['x'\] is nan"):
        to_json({"x": np.float32("nan")})
    with pytest.raises(ValueError, match="ndarray"):
        to_json({"a": np.zeros(2)})


def test_to_json_refuses_unserializable_values() -> None:
    with pytest.raises(ValueError, match=r"not JSON-serializable.*set"):
        to_json({"s": {1, 2}})


# -- Database -----------------------------------------------------------------------------


def test_for_state_dir_defaults_to_sqlite_file(tmp_path: Path) -> None:
    database = Database.for_state_dir(tmp_path, None)
    assert database.is_sqlite
    assert database.url == f"sqlite:///{tmp_path.resolve() / 'driftloop.db'}"
    other = Database.for_state_dir(tmp_path, "sqlite:////tmp/elsewhere.db")
    assert other.url == "sqlite:////tmp/elsewhere.db"


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h/db"])
def test_postgresql_urls_use_psycopg3(url: str) -> None:
    database = Database(url)
    assert database.engine.dialect.driver == "psycopg"
    assert not database.is_sqlite


def test_repr_hides_the_password() -> None:
    assert "secret" not in repr(Database("postgresql://u:secret@h/db"))


def test_sqlite_connections_are_durable_and_wait_for_locks(db: Database) -> None:
    with db.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,
        "busy_timeout": 10000,
        "foreign_keys": 1,
    }


def test_create_all_makes_every_table_and_is_idempotent(db: Database) -> None:
    db.create_all()
    assert set(inspect(db.engine).get_table_names()) == TABLES == set(metadata.tables)
    assert [ix["name"] for ix in inspect(db.engine).get_indexes("events")] == ["ix_events_kind"]


def test_create_all_adds_a_table_new_since_to_an_existing_database(db: Database) -> None:
    blob = bytes(8)
    with db.begin() as conn:
        conn.execute(
            insert(rows).values(row_id="r1", ingested_at=utcnow(), source="s", features=blob)
        )
        late_labels.drop(conn)  # a database made before late labels were numbered
    db.create_all()
    with db.connect() as conn:
        assert conn.execute(select(rows.c.row_id)).scalars().all() == ["r1"]
        assert conn.execute(select(late_labels)).all() == []
    assert [ix["name"] for ix in inspect(db.engine).get_indexes("late_labels")] == [
        "ix_late_labels_row_seq"
    ]


def test_write_transactions_begin_immediate_and_reads_deferred(db: Database) -> None:
    seen: list[str] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def record(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if statement.startswith("BEGIN"):
            seen.append(statement)

    with db.begin() as conn:
        conn.execute(select(kv))
    with db.connect() as conn:
        conn.execute(select(kv))
    assert seen == ["BEGIN IMMEDIATE", "BEGIN DEFERRED"]


def test_begin_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError), db.begin() as conn:
        conn.execute(insert(kv).values(key="k", value=to_json(1)))
        raise RuntimeError("boom")
    with db.connect() as conn:
        assert conn.execute(select(kv)).all() == []


def test_rows_and_defaults_round_trip(db: Database) -> None:
    blob = b"".join(x.to_bytes(8, "little") for x in range(3))
    with db.begin() as conn:
        conn.execute(
            insert(rows).values(row_id="r1", ingested_at=utcnow(), source="s", features=blob)
        )
        conn.execute(
            insert(retrain_requests).values(
                trigger_id="t1",
                created_at=utcnow(),
                status="pending",
                payload=to_json({}),
                updated_at=utcnow(),
            )
        )
    with db.connect() as conn:
        row = conn.execute(select(rows)).one()
        attempts = conn.execute(select(retrain_requests.c.attempts)).scalar_one()
    assert (row.seq, row.features, row.label, row.labeled_at) == (1, blob, None, None)
    assert attempts == 0


# -- atomic files -------------------------------------------------------------------------


def test_write_bytes_atomic_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    write_bytes_atomic(path, b"one")
    path.chmod(0o600)
    write_bytes_atomic(path, b"two")
    assert path.read_bytes() == b"two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f.bin"]


def test_new_files_are_world_readable(tmp_path: Path) -> None:
    write_bytes_atomic(tmp_path / "f.bin", b"x")
    assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.bin"
    write_bytes_atomic(path, b"old")

    def fail(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_write_json_atomic_and_sha256(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_json_atomic(path, {"b": 1, "a": [1.5]})
    assert json.loads(path.read_text()) == {"a": [1.5], "b": 1}
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "nan.json", {"x": float("nan")})
    assert not (tmp_path / "nan.json").exists()


def test_sqlite_synchronous_is_a_choice(tmp_path: Path) -> None:
    def level(database: Database) -> int:
        with database.connect() as conn:
            return int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())

    full, normal = (
        Database.for_state_dir(tmp_path, None),
        Database(f"sqlite:///{tmp_path / 'n.db'}", "normal"),
    )
    assert (level(full), level(normal)) == (2, 1)  # FULL, NORMAL
    with pytest.raises(ValueError, match="synchronous must be one of full, normal: 'off'"):
        Database(f"sqlite:///{tmp_path / 'o.db'}", "off")
    full.dispose()
    normal.dispose()


def test_a_normal_synchronous_commit_survives_kill_9(tmp_path: Path) -> None:
    """``sqlite_synchronous: normal`` keeps its promise: what was committed is there after
    the process is killed right after the commit (it is the power cut it gives up)."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    child = (
        "import os, signal, sys\n"
        "from runtime.store.db import Database, kv\n"
        "db = Database(sys.argv[1], 'normal')\n"
        "db.create_all()\n"
        "with db.begin() as conn:\n"
        "    conn.execute(kv.insert(), [{'key': 'acked', 'value': 'yes'}])\n"
        "print('committed', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", child, url], cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL and done.stdout == "committed\n", done.stderr
    database = Database(url)
    with database.connect() as conn:
        assert conn.execute(select(kv.c.value).where(kv.c.key == "acked")).scalar() == "yes"
    database.dispose()


def test_checkpoint_copies_the_wal_into_the_database_file(tmp_path: Path) -> None:
    database = Database.for_state_dir(tmp_path, None)
    database.create_all()
    with database.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 4000
    with database.begin() as conn:
        conn.execute(kv.insert(), [{"key": f"k{i}", "value": "x" * 2000} for i in range(200)])
    main = tmp_path / "driftloop.db"
    before = main.stat().st_size
    database.checkpoint()
    assert main.stat().st_size > before + 200 * 2000  # the rows' pages left the WAL
    database.dispose()
    Database("postgresql://nobody@127.0.0.1:1/none").checkpoint()  # no-op, no connection
