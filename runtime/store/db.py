"""The relational store: one SQLAlchemy Core schema for SQLite and PostgreSQL.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so that a
committed transaction survives power loss (``normal`` is a config choice: durable
against the process's death only, no fsync per commit); every write transaction starts with
``BEGIN IMMEDIATE`` so two writers queue on ``busy_timeout`` instead of failing when a
read lock is upgraded. PostgreSQL is reached through psycopg 3.

JSON columns are ``Text`` holding ``json.dumps(sort_keys=True)`` written by
:func:`to_json`; NaN and infinity are refused so that every stored document is valid
JSON.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
)
from sqlalchemy.engine import make_url

from runtime.store.disk import DiskState, StorageProblem
from runtime.store.upgrades import upgrade

__all__ = [
    "Clock",
    "Database",
    "events",
    "format_ts",
    "from_json",
    "golden_sets",
    "hook_outbox",
    "kv",
    "late_labels",
    "metadata",
    "model_versions",
    "parse_ts",
    "pointers",
    "processed_files",
    "quarantine",
    "retrain_requests",
    "row_times",
    "rows",
    "served",
    "served_confidence",
    "served_expected_error",
    "served_probabilities",
    "to_json",
    "utcnow",
]

Clock = Callable[[], datetime]
"""A source of the current time; aware datetimes are converted to UTC, naive ones are UTC."""

DB_FILENAME = "driftloop.db"
SYNCHRONOUS = ("full", "normal")
AUTOCHECKPOINT_PAGES = 4000  # 16 MB of WAL at SQLite's default 4 KiB page
_PROBE_KEY = "storage.probe"  # written by Database.writable while writes fail

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", String(32), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("model_version", String(64), nullable=True),
    Column("payload", Text, nullable=False),
    Index("ix_events_kind", "kind"),
    # Ids are never reused, even after the newest row is lost: readers tail by id.
    sqlite_autoincrement=True,
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("seq", Integer, nullable=False, unique=True),
    Column("parent", String(64), nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("meta", Text, nullable=False),
)

pointers = Table(
    "pointers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(64), nullable=False),
)

rows = Table(
    "rows",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("row_id", String(128), nullable=False, unique=True),
    Column("ingested_at", String(32), nullable=False),
    Column("source", String(512), nullable=False),
    Column("features", LargeBinary, nullable=False),
    # a class value or a regression target: SQLite keeps either in INTEGER as it is;
    # PostgreSQL needs a double (runtime/store/upgrades.py widens an older integer one)
    Column("label", Integer().with_variant(Float(), "postgresql"), nullable=True),
    Column("labeled_at", String(32), nullable=True),
    sqlite_autoincrement=True,
)

# Labels joined to rows stored earlier, numbered in the order they were joined: a saved
# daemon state refers to that number, so a crash replay feeds the ones joined since, each
# after the rows stored before it. A table of its own: ``create_all`` adds it to an
# existing database. Labels joined before it existed have no entry (a replay feeds them
# with their rows).
late_labels = Table(
    "late_labels",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("row_seq", Integer, nullable=False),  # the row that got its label
    Column("after_seq", Integer, nullable=False),  # the last row stored when it was joined
    Index("ix_late_labels_row_seq", "row_seq"),
    sqlite_autoincrement=True,
)

# What the champion predicted for each row when the row was monitored, and which version
# that was: with the row's label (known at once or joined later) it is the realized
# (prequential) score of the served model. One compact row per monitored row (its seq is
# the key); rows never monitored (v1's training rows, rows stored without a champion)
# have none. A table of its own so that ``create_all`` adds it to an older state
# directory; rows monitored before it existed simply have no entry.
served = Table(
    "served",
    metadata,
    Column("row_seq", Integer, primary_key=True, autoincrement=False),
    Column("value", Float, nullable=False),  # a class value (or a regression value)
    Column("version", String(64), nullable=False),
    # each version's recent rows without scanning the others' (status asks per version)
    Index("ix_served_version_row", "version", "row_seq"),
)

# The champion's calibrated top-class probability for each monitored row (the label-free
# estimate of its accuracy, runtime/store/estimated.py). A table of its own, as ``served``
# is, so that ``create_all`` adds it to an older state directory.
served_confidence = Table(
    "served_confidence",
    metadata,
    Column("row_seq", Integer, primary_key=True, autoincrement=False),
    Column("confidence", Float, nullable=False),
    Column("version", String(64), nullable=False),
    Index("ix_served_confidence_version_row", "version", "row_seq"),
)

# ... and all its calibrated class probabilities, a JSON list in the schema's class order
# (the expected confusion matrix, so the expected macro-F1). A table of its own again.
served_probabilities = Table(
    "served_probabilities",
    metadata,
    Column("row_seq", Integer, primary_key=True, autoincrement=False),
    Column("probs", Text, nullable=False),
    Column("version", String(64), nullable=False),
    Index("ix_served_probabilities_version_row", "version", "row_seq"),
)

# A regression champion's expected absolute error for each monitored row, from the loss
# model fitted on its golden set (runtime/store/estimated_mae.py).
served_expected_error = Table(
    "served_expected_error",
    metadata,
    Column("row_seq", Integer, primary_key=True, autoincrement=False),
    Column("value", Float, nullable=False),
    Column("version", String(64), nullable=False),
    Index("ix_served_expected_error_version_row", "version", "row_seq"),
)

# Each row's event time, from ``schema.timestamp_column`` (canonical UTC ISO text, as
# event timestamps are, so they compare as strings). A table of its own so that
# ``create_all`` adds it to an older state directory; rows stored without a timestamp
# column, or before this table existed, have no entry (their time is their ingest time).
row_times = Table(
    "row_times",
    metadata,
    Column("row_seq", Integer, primary_key=True, autoincrement=False),
    Column("event_at", String(32), nullable=False),
    Index("ix_row_times_event_at", "event_at"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ingested_at", String(32), nullable=False),
    Column("source", String(512), nullable=False),
    Column("row_number", Integer, nullable=True),
    Column("reason", String(1024), nullable=False),
    Column("raw", Text, nullable=True),
    sqlite_autoincrement=True,
)

retrain_requests = Table(
    "retrain_requests",
    metadata,
    Column("trigger_id", String(128), primary_key=True),
    Column("created_at", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("payload", Text, nullable=False),
    Column("result", Text, nullable=True),
    Column("updated_at", String(32), nullable=False),
)

processed_files = Table(
    "processed_files",
    metadata,
    Column("path", String(1024), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("mtime", Float, nullable=False),
    Column("processed_at", String(32), nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
)

golden_sets = Table(
    "golden_sets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("created_at", String(32), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("provenance", Text, nullable=False),
)

# Hook deliveries owed: one row per (hook, event), written before any attempt, so an
# undelivered hook survives a crash and is delivered (at least once) after a restart.
# ``status``: pending, delivered, failed; ``due`` is the next attempt's epoch seconds.
hook_outbox = Table(
    "hook_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("hook", String(64), nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("due", Float, nullable=False),
    Column("last_error", String(1024), nullable=True),
    Column("created_at", String(32), nullable=False),
    Column("updated_at", String(32), nullable=False),
    UniqueConstraint("hook", "event_id", name="uq_hook_outbox_hook_event"),
    Index("ix_hook_outbox_status_due", "status", "due"),
    sqlite_autoincrement=True,
)

kv = Table(
    "kv",
    metadata,
    Column("key", String(256), primary_key=True),
    Column("value", Text, nullable=False),
)


def format_ts(dt: datetime) -> str:
    """Format a datetime as ISO-8601 UTC with milliseconds and a trailing ``Z``.

    Naive datetimes are taken to be UTC already.

    Examples
    --------
    >>> format_ts(datetime(2026, 1, 2, 3, 4, 5, 678901))
    '2026-01-02T03:04:05.678Z'
    """
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_ts(text: str) -> datetime:
    """Parse an ISO-8601 timestamp (``Z`` or an offset; naive means UTC) to an aware datetime.

    Raises
    ------
    ValueError
        If ``text`` is not an ISO-8601 date or date-time.
    """
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def utcnow(clock: Clock | None = None) -> str:
    """The current time as ISO-8601 UTC with milliseconds and ``Z``, from ``clock`` if given."""
    return format_ts(clock() if clock is not None else datetime.now(UTC))


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.generic):  # numpy scalars, e.g. a metric computed with numpy
        return obj.item()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def _reject_non_finite(obj: Any, path: str) -> None:
    if isinstance(obj, float | np.floating) and not math.isfinite(obj):
        raise ValueError(f"{path} is {float(obj)!r}: NaN and infinity are not valid JSON")
    if isinstance(obj, dict):
        for key, value in obj.items():
            _reject_non_finite(value, f"{path}[{key!r}]")
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _reject_non_finite(value, f"{path}[{i}]")


def to_json(obj: Any) -> str:
    """Serialize ``obj`` as canonical JSON (sorted keys, compact, ASCII).

    Numpy scalars are written as the Python numbers they hold.

    Raises
    ------
    ValueError
        If ``obj`` holds NaN or infinity (the message names where), or something JSON
        cannot represent (the message names its type).
    """
    try:
        return json.dumps(
            obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_plain
        )
    except ValueError:
        _reject_non_finite(obj, "value")
        raise
    except TypeError as exc:
        raise ValueError(f"not JSON-serializable: {exc}") from None


def from_json(text: str) -> Any:
    """Parse a JSON document written by :func:`to_json`."""
    return json.loads(text)


def _driver_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # sqlite3 would otherwise skip BEGIN before SELECT; we emit BEGIN ourselves below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 10000")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            # commits checkpoint the WAL past this many pages; a serving daemon checkpoints
            # earlier in the background (Database.checkpoint), off its requests' path
            cursor.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("driftloop_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """An engine bound to one driftloop database.

    Parameters
    ----------
    url
        ``sqlite:////abs/path/driftloop.db`` or ``postgresql://user@host/db``
        (``postgresql://`` is served by the psycopg 3 driver).
    synchronous
        SQLite's ``PRAGMA synchronous``: ``full`` (fsync every commit: durable against
        power loss) or ``normal`` (WAL: durable against the process's death, not a power
        cut). Ignored for PostgreSQL.
    """

    def __init__(self, url: str, synchronous: str = "full") -> None:
        if synchronous not in SYNCHRONOUS:
            raise ValueError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS)}: {synchronous!r}"
            )
        self.url = url
        driver_url = _driver_url(url)
        self.is_sqlite = make_url(driver_url).get_backend_name() == "sqlite"
        self.engine: Engine = create_engine(driver_url, pool_pre_ping=not self.is_sqlite)
        # SQLite has one writer at a time; this process's writers queue here, woken as soon
        # as the lock is free, instead of in SQLite's busy handler, which sleeps 1, 2, 5,
        # 10 … ms between retries (tens of ms added to an ingest that met another).
        self._write_lock = threading.RLock() if self.is_sqlite else None
        self.disk = DiskState()
        if self.is_sqlite:
            _configure_sqlite(self.engine, synchronous)

    @classmethod
    def for_state_dir(cls, state_dir: Path, url: str | None, synchronous: str = "full") -> Database:
        """The database for ``state_dir``: ``url`` if given, else ``<state_dir>/driftloop.db``."""
        if url is not None:
            return cls(url, synchronous)
        path = Path(state_dir).resolve() / DB_FILENAME
        return cls(f"sqlite:///{path}", synchronous)

    def create_all(self) -> None:
        """Create the tables and indexes that are missing, and upgrade existing ones
        written by an earlier release (:mod:`runtime.store.upgrades`)."""
        with self.begin() as conn:
            metadata.create_all(conn)
            upgrade(conn)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection inside a write transaction, committed on exit, rolled back on
        error; a full disk or read-only storage is noted in :attr:`disk`."""
        try:
            with self._write_lock or nullcontext(), self.engine.connect() as conn:
                conn.execution_options(driftloop_write=True)
                with conn.begin():
                    yield conn
        except Exception as err:
            self.disk.failed(err)
            raise
        self.disk.succeeded()

    def writable(self) -> StorageProblem | None:
        """The storage problem writes met, after one small write to see whether it is
        over (none is tried while writes succeed); None when writes succeed."""
        if self.disk.problem is None:
            return None
        try:
            with self.begin() as conn:
                conn.execute(delete(kv).where(kv.c.key == _PROBE_KEY))
                conn.execute(kv.insert().values(key=_PROBE_KEY, value=to_json(utcnow())))
        except Exception:  # noted by begin(); a failure of another kind is readiness's too
            pass
        return self.disk.problem

    def connect(self) -> Connection:
        """A connection for reads (use as a context manager)."""
        return self.engine.connect()

    def checkpoint(self) -> None:
        """Copy SQLite's write-ahead log into the database file (``PASSIVE``: writers and
        readers carry on meanwhile); a no-op for PostgreSQL."""
        if not self.is_sqlite:
            return
        raw = self.engine.raw_connection()  # autocommit: a checkpoint refuses transactions
        try:
            raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").close()
        finally:
            raw.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Database({make_url(_driver_url(self.url)).render_as_string()!r})"
