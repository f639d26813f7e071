"""Leader election: one daemon of several on a shared PostgreSQL database leads.

The leader retrains and promotes; the others ingest, monitor and serve reads. Leadership
is a PostgreSQL *session* advisory lock held on a connection of its own: when the
leader's process dies, its session ends, the server drops the lock, and the next
follower to poll (every ``poll_seconds``) takes it. The lock key is derived from the
database, the schema and the configured name, so daemons on different schemas or
different models never contend.

A lone daemon (SQLite, or no ``leader:`` config) is :class:`Solo`: always the leader.

Fencing is by liveness only: a leader that loses its session (the server restarted, the
network broke) learns it at its next :meth:`~Leadership.poll` and stops leading; the
daemon checks again right before it promotes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from typing import Protocol

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from runtime.config import LeaderConfig
from runtime.store.db import Database
from runtime.store.lock import default_instance

log = logging.getLogger(__name__)


class Leadership(Protocol):
    instance: str

    def poll(self, force: bool = False) -> bool:
        """Whether this daemon leads now; tries to acquire or re-checks at most every
        ``poll_seconds`` (always with ``force``)."""
        ...

    def is_leader(self) -> bool:
        """The answer of the last poll (no I/O)."""
        ...

    def close(self) -> None:
        """Give leadership up (followers take over at their next poll)."""
        ...


class Solo:
    """The only daemon on its database: always the leader."""

    def __init__(self, instance: str | None = None) -> None:
        self.instance = instance or default_instance()

    def poll(self, force: bool = False) -> bool:
        return True

    def is_leader(self) -> bool:
        return True

    def close(self) -> None:
        return None


def lock_key(database: str, schema: str, name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` on one database schema."""
    digest = hashlib.sha256(f"driftloop/{database}/{schema}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class AdvisoryLock:
    """Leadership through ``pg_try_advisory_lock`` on a dedicated session.

    Parameters
    ----------
    db
        The daemon's (PostgreSQL) database; a separate connection is opened to the same URL.
    cfg
        Name of the election, this instance's name and the poll interval.
    """

    def __init__(self, db: Database, cfg: LeaderConfig) -> None:
        if db.is_sqlite:
            raise ValueError("advisory-lock leadership needs PostgreSQL")
        self.cfg = cfg
        self.instance = cfg.instance or default_instance()
        self._engine = create_engine(
            db.engine.url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            # a dead peer is noticed within seconds even without traffic
            connect_args={
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 3,
                "connect_timeout": 5,
                "application_name": f"driftloop-leader-{self.instance}"[:63],
            },
        )
        self._conn: Connection | None = None
        self._key: int | None = None
        self._leading = False
        self._last = float("-inf")

    def is_leader(self) -> bool:
        return self._leading

    def poll(self, force: bool = False) -> bool:
        now = time.monotonic()
        if not force and now - self._last < self.cfg.poll_seconds:
            return self._leading
        self._last = now
        try:
            if self._leading:
                self._ping()
            else:
                self._try_acquire()
        except DBAPIError as err:
            if self._leading:
                log.warning("leadership lost (%s): %s", self.instance, str(err).splitlines()[0])
            self._leading = False
            self._drop()
        return self._leading

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
            row = self._conn.execute(text("SELECT current_database(), current_schema()")).one()
            self._key = lock_key(str(row[0]), str(row[1]), self.cfg.name)
        return self._conn

    def _try_acquire(self) -> None:
        conn = self._connection()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar_one()
        if got:
            self._leading = True
            log.info("leader: %s leads %r", self.instance, self.cfg.name)

    def _ping(self) -> None:
        # A session-level advisory lock lives as long as its session: a live session holds it.
        assert self._conn is not None
        self._conn.execute(text("SELECT 1"))

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(DBAPIError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is not None and self._leading:
            with contextlib.suppress(DBAPIError):
                self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
        self._leading = False
        self._drop()
        self._engine.dispose()


def build(db: Database, cfg: LeaderConfig | None) -> Leadership:
    """:class:`AdvisoryLock` when ``leader:`` is configured, else :class:`Solo`."""
    if cfg is None:
        return Solo()
    return AdvisoryLock(db, cfg)
