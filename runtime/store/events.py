"""The event log: append-only, typed records of everything the daemon decides.

The daemon appends; the CLI, the API and the UI read. There is deliberately no update or
delete. Event ids increase in commit order for a single writer, so a reader can tail the
log with ``list(after_id=last_seen)``.

Each kind's payload is a frozen dataclass (:mod:`runtime.store.payloads`, re-exported
here): writers build one, readers get ``Event.payload`` parsed once and read its fields.
``Event.raw`` is the JSON object as stored, which is what the API and hooks send.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Insert, Row, func, insert, select

from runtime.store import db as dbm
from runtime.store.db import Database, format_ts, from_json, parse_ts, to_json, utcnow
from runtime.store.payloads import *  # noqa: F403 (the payload classes belong to the log)
from runtime.store.payloads import PAYLOADS, Payload, parse
from runtime.store.payloads import __all__ as _payloads

__all__ = [
    "DAEMON_STARTED",
    "DAEMON_STOPPED",
    "DRIFT_DETECTED",
    "GATE_FAILED",
    "GATE_PASSED",
    "HOOK_DELIVERED",
    "HOOK_FAILED",
    "INGEST_REJECTED",
    "KINDS",
    "LABELS_REQUESTED",
    "MODEL_PROMOTED",
    "MODEL_ROLLED_BACK",
    "RETRAIN_FAILED",
    "RETRAIN_FINISHED",
    "RETRAIN_PROGRESS",
    "RETRAIN_REQUESTED",
    "RETRAIN_STARTED",
    "STAGE_FINISHED",
    "Event",
    "EventLog",
    *_payloads,
]

DAEMON_STARTED = "daemon.started"
DAEMON_STOPPED = "daemon.stopped"
INGEST_REJECTED = "ingest.rejected"
DRIFT_DETECTED = "drift.detected"
RETRAIN_REQUESTED = "retrain.requested"
RETRAIN_STARTED = "retrain.started"
RETRAIN_PROGRESS = "retrain.progress"
RETRAIN_FINISHED = "retrain.finished"
RETRAIN_FAILED = "retrain.failed"
GATE_PASSED = "gate.passed"
GATE_FAILED = "gate.failed"
MODEL_PROMOTED = "model.promoted"
MODEL_ROLLED_BACK = "model.rolled_back"
STAGE_FINISHED = "stage.finished"
HOOK_DELIVERED = "hook.delivered"
HOOK_FAILED = "hook.failed"
LABELS_REQUESTED = "labels.requested"

KINDS: frozenset[str] = frozenset(
    {
        DAEMON_STARTED,
        DAEMON_STOPPED,
        INGEST_REJECTED,
        DRIFT_DETECTED,
        RETRAIN_REQUESTED,
        RETRAIN_STARTED,
        RETRAIN_PROGRESS,
        RETRAIN_FINISHED,
        RETRAIN_FAILED,
        GATE_PASSED,
        GATE_FAILED,
        MODEL_PROMOTED,
        MODEL_ROLLED_BACK,
        STAGE_FINISHED,
        HOOK_DELIVERED,
        HOOK_FAILED,
        LABELS_REQUESTED,
    }
)


P = TypeVar("P", bound=Payload)
_NO_RAW: dict[str, Any] = {}


@dataclass(frozen=True)
class Event:
    """One stored event.

    ``payload`` is the kind's dataclass (a JSON object given here is parsed into it);
    ``raw`` the object as stored, kept so that what is served is what was written,
    whichever version of the code wrote it.
    """

    id: int
    ts: str
    kind: str
    model_version: str | None
    payload: Payload
    raw: dict[str, Any] = field(default_factory=lambda: _NO_RAW, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.payload, Mapping):
            object.__setattr__(self, "raw", dict(self.payload))
            object.__setattr__(self, "payload", parse(self.kind, self.raw))
        elif self.raw is _NO_RAW:
            object.__setattr__(self, "raw", self.payload.to_json())

    def payload_as(self, cls: type[P]) -> P:
        """The payload as ``cls``, for a reader that knows the kind (TypeError if not)."""
        if not isinstance(self.payload, cls):
            raise TypeError(f"a {self.kind} event's payload is a "
                            f"{type(self.payload).__name__}, not a {cls.__name__}")
        return self.payload

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape: ``{"id", "ts", "kind", "model_version", "payload"}``."""
        return {
            "id": self.id,
            "ts": self.ts,
            "kind": self.kind,
            "model_version": self.model_version,
            "payload": self.raw,
        }


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}")


def _canonical_ts(text: str, name: str) -> str:
    try:
        return format_ts(parse_ts(text))
    except ValueError:
        raise ValueError(f"{name}={text!r} is not an ISO-8601 timestamp") from None


def _insert(conn: Connection, stmt: Insert) -> int:
    key = conn.execute(stmt).inserted_primary_key
    assert key is not None  # a single-row INSERT always reports its key
    return int(key[0])


def _event(row: Row[Any]) -> Event:
    raw = from_json(row.payload)
    return Event(
        id=int(row.id),
        ts=row.ts,
        kind=row.kind,
        model_version=row.model_version,
        payload=parse(row.kind, raw),
        raw=raw,
    )


class EventLog:
    """Append and read events.

    Parameters
    ----------
    db
        The database holding the ``events`` table.
    clock
        Source of event timestamps (tests inject one); defaults to the system clock.
    """

    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.clock = clock

    def append(
        self,
        kind: str,
        payload: Payload | Mapping[str, Any],
        model_version: str | None = None,
        *,
        conn: Connection | None = None,
    ) -> Event:
        """Append one event and return it as stored.

        Parameters
        ----------
        kind
            One of :data:`KINDS`.
        payload
            The kind's payload dataclass, or a JSON object (string keys; no NaN or
            infinity). The returned event carries the payload as it reads back.
        model_version
            The model version the event is about, if any.
        conn
            Write inside this open transaction instead of a new one, so the event commits
            or rolls back together with the caller's other writes.

        Raises
        ------
        ValueError
            Unknown kind, a payload of another kind, or one that is not a JSON object
            of finite values.
        """
        _check_kind(kind)
        if isinstance(payload, Payload):
            if not isinstance(payload, PAYLOADS[kind]):
                raise ValueError(f"{kind} payload must be a {PAYLOADS[kind].__name__}, "
                                 f"got {type(payload).__name__}")
            payload = payload.to_json()
        if not isinstance(payload, Mapping):
            raise ValueError(f"{kind} payload must be a JSON object, got {type(payload).__name__}")
        bad_keys = [k for k in payload if not isinstance(k, str)]
        if bad_keys:
            raise ValueError(f"{kind} payload keys must be strings, got {bad_keys[0]!r}")
        try:
            text = to_json(dict(payload))
        except ValueError as exc:
            raise ValueError(f"{kind} payload rejected: {exc}") from None
        ts = utcnow(self.clock)
        stmt = insert(dbm.events).values(
            ts=ts, kind=kind, model_version=model_version, payload=text
        )
        if conn is not None:
            new_id = _insert(conn, stmt)
        else:
            with self.db.begin() as own:
                new_id = _insert(own, stmt)
        raw = from_json(text)
        return Event(
            id=new_id, ts=ts, kind=kind, model_version=model_version,
            payload=parse(kind, raw), raw=raw,
        )

    def list(
        self,
        *,
        kinds: Sequence[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        model_version: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> builtins.list[Event]:
        """Events matching every given filter, in id order (newest first if ``descending``).

        Parameters
        ----------
        kinds
            Only these kinds (each must be known).
        since, until
            ISO-8601 timestamps; ``since <= ts < until``. Offsets are converted to UTC and
            a bare date means its midnight UTC.
        model_version
            Only events about this version.
        after_id
            Only events with ``id > after_id`` (for tailing the log).
        limit
            At most this many, taken after ordering: ``descending=True, limit=10`` gives
            the ten newest.
        """
        stmt = select(dbm.events)
        if kinds is not None:
            if isinstance(kinds, str):
                raise ValueError("kinds must be a sequence of kinds, not a single string")
            for kind in kinds:
                _check_kind(kind)
            stmt = stmt.where(dbm.events.c.kind.in_(builtins.list(kinds)))
        if since is not None:
            stmt = stmt.where(dbm.events.c.ts >= _canonical_ts(since, "since"))
        if until is not None:
            stmt = stmt.where(dbm.events.c.ts < _canonical_ts(until, "until"))
        if model_version is not None:
            stmt = stmt.where(dbm.events.c.model_version == model_version)
        if after_id is not None:
            stmt = stmt.where(dbm.events.c.id > after_id)
        order = dbm.events.c.id.desc() if descending else dbm.events.c.id.asc()
        stmt = stmt.order_by(order)
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0, got {limit}")
            stmt = stmt.limit(limit)
        with self.db.connect() as conn:
            return [_event(row) for row in conn.execute(stmt)]

    def last(self, kind: str) -> Event | None:
        """The newest event of ``kind``, or None."""
        found = self.list(kinds=[kind], limit=1, descending=True)
        return found[0] if found else None

    def last_id(self) -> int:
        """The id of the newest event (0: none)."""
        with self.db.connect() as conn:
            return int(
                conn.execute(select(func.coalesce(func.max(dbm.events.c.id), 0))).scalar_one()
            )

    def count(self, kind: str | None = None) -> int:
        """How many events there are (of ``kind`` if given)."""
        stmt = select(func.count()).select_from(dbm.events)
        if kind is not None:
            _check_kind(kind)
            stmt = stmt.where(dbm.events.c.kind == kind)
        with self.db.connect() as conn:
            return int(conn.execute(stmt).scalar_one())
