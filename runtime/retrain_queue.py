"""The retrain request queue: one row per trigger in ``retrain_requests``, idempotent.

A trigger id (``drift-<event id>``, ``manual-…``) names a retrain once and for all: asking
again for the same trigger changes nothing, so an alarm replayed after a restart never
retrains twice. Status moves ``pending → running → finished | failed``; ``cancelled``
(shutdown, lost leadership) and ``running`` rows left by a dead leader go back to
``pending`` once, through :meth:`RequestQueue.requeue`, when a daemon starts leading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from runtime import events as ev
from runtime.db import Database, from_json, retrain_requests, to_json, utcnow
from runtime.events import EventLog

__all__ = ["RequestQueue"]


@dataclass
class RequestQueue:
    """The daemon's view of ``retrain_requests``; every change is one transaction."""

    db: Database
    events: EventLog

    def request(self, trigger: str, payload: dict[str, Any], champion: str | None) -> bool:
        """Queue ``trigger`` with ``retrain.requested``, unless it is known; True if new."""
        with self.db.begin() as conn:
            exists = conn.execute(
                select(retrain_requests.c.trigger_id).where(
                    retrain_requests.c.trigger_id == trigger
                )
            ).first()
            if exists is not None:
                return False
            now = utcnow()
            conn.execute(
                retrain_requests.insert(),
                [
                    {
                        "trigger_id": trigger,
                        "created_at": now,
                        "status": "pending",
                        "attempts": 0,
                        "payload": to_json(payload),
                        "updated_at": now,
                    }
                ],
            )
            self.events.append(ev.RETRAIN_REQUESTED, payload, model_version=champion, conn=conn)
        return True

    def get(self, trigger: str) -> tuple[str, dict[str, Any]] | None:
        """``(status, payload)`` of ``trigger``, or None if it was never requested."""
        with self.db.connect() as conn:
            row = conn.execute(
                select(retrain_requests.c.status, retrain_requests.c.payload).where(
                    retrain_requests.c.trigger_id == trigger
                )
            ).first()
        return None if row is None else (str(row[0]), from_json(row[1]))

    def next_pending(self) -> dict[str, Any] | None:
        """The oldest pending request's payload with its ``trigger_id``, or None."""
        with self.db.connect() as conn:
            row = conn.execute(
                select(retrain_requests.c.trigger_id, retrain_requests.c.payload)
                .where(retrain_requests.c.status == "pending")
                .order_by(retrain_requests.c.created_at, retrain_requests.c.trigger_id)
            ).first()
        if row is None:
            return None
        return {"trigger_id": row[0], **from_json(row[1])}

    def start(self, trigger: str, started: dict[str, Any], candidate: str) -> None:
        """Mark ``trigger`` running (one more attempt) with its ``retrain.started`` event."""
        with self.db.begin() as conn:
            conn.execute(
                update(retrain_requests)
                .where(retrain_requests.c.trigger_id == trigger)
                .values(
                    status="running", attempts=retrain_requests.c.attempts + 1, updated_at=utcnow()
                )
            )
            self.events.append(ev.RETRAIN_STARTED, started, model_version=candidate, conn=conn)

    def set_status(self, trigger: str | None, status: str, result: Any = None) -> None:
        """Record how ``trigger`` ended (``result`` kept as JSON); no-op without a trigger."""
        if trigger is None:
            return
        values: dict[str, Any] = {"status": status, "updated_at": utcnow()}
        if result is not None:
            values["result"] = to_json(result)
        with self.db.begin() as conn:
            conn.execute(
                update(retrain_requests)
                .where(retrain_requests.c.trigger_id == trigger)
                .values(**values)
            )

    def requeue(self) -> int:
        """Retrains a leader never finished (it crashed or stopped) run again, once each."""
        with self.db.begin() as conn:
            return int(
                conn.execute(
                    update(retrain_requests)
                    .where(retrain_requests.c.status.in_(["running", "cancelled"]))
                    .values(status="pending", updated_at=utcnow())
                ).rowcount
            )
