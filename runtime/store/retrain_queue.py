"""The retrain request queue: one row per trigger in ``retrain_requests``, idempotent.

A trigger id (``drift-<event id>``, ``manual-…``) names a retrain once and for all: asking
again for the same trigger changes nothing, so an alarm replayed after a restart never
retrains twice. Status moves ``pending → running → finished | failed``. When a daemon
starts leading, :meth:`RequestQueue.requeue` sends ``cancelled`` rows (a graceful shutdown,
lost leadership: not counted as an attempt) back to ``pending``, and ``running`` rows (their
daemon died during the retrain) too, once: a retrain interrupted twice by its daemon's death
(``attempts`` reaches :data:`MAX_ATTEMPTS`) is marked ``failed`` with ``retrain.failed``
instead of running again, so a retrain that kills its daemon cannot crash it forever.

A trigger promotes at most once: a request whose candidate the gate had judged before its
daemon died (``model.promoted`` for the trigger, or a gate decision other than promoting
it) is marked ``finished`` by :meth:`RequestQueue.requeue`, neither re-run nor failed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, select, update

from runtime.store import events as ev
from runtime.store.db import Database, from_json, retrain_requests, to_json, utcnow
from runtime.store.events import EventLog

__all__ = ["MAX_ATTEMPTS", "RequestQueue"]

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 2
"""Runs of one retrain its daemon may die during: the first run and one re-run."""
UNFINISHED = ("running", "cancelled")


@dataclass
class RequestQueue:
    """The daemon's view of ``retrain_requests``; every change is one transaction."""

    db: Database
    events: EventLog

    def request(
        self, trigger: str, payload: ev.RetrainRequested | Mapping[str, Any], champion: str | None
    ) -> bool:
        """Queue ``trigger`` with ``retrain.requested``, unless it is known; True if new.

        The queue keeps the event's payload as the request's."""
        body = payload.to_json() if isinstance(payload, ev.RetrainRequested) else dict(payload)
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
                        "payload": to_json(body),
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

    def start(
        self, trigger: str, started: ev.RetrainStarted | Mapping[str, Any], candidate: str
    ) -> None:
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
        """Record how ``trigger`` ended (``result`` kept as JSON); no-op without a trigger.

        ``cancelled`` (the daemon stopped it on purpose) takes back the attempt that
        :meth:`start` counted: only a daemon's death counts against :data:`MAX_ATTEMPTS`.
        """
        if trigger is None:
            return
        values: dict[str, Any] = {"status": status, "updated_at": utcnow()}
        if status == "cancelled":
            attempts = retrain_requests.c.attempts
            values["attempts"] = case((attempts > 0, attempts - 1), else_=0)
        if result is not None:
            values["result"] = to_json(result)
        with self.db.begin() as conn:
            conn.execute(
                update(retrain_requests)
                .where(retrain_requests.c.trigger_id == trigger)
                .values(**values)
            )

    def requeue(self) -> int:
        """Retrains a leader never finished (it crashed or stopped) run again; returns how
        many. One whose candidate was judged already is finished instead; one its daemon
        died during :data:`MAX_ATTEMPTS` times fails, its ``retrain.failed`` event under
        the candidate version its last start named."""
        self._finish_judged()
        with self.db.connect() as conn:
            dead = conn.execute(
                select(retrain_requests.c.trigger_id, retrain_requests.c.attempts).where(
                    retrain_requests.c.status == "running",
                    retrain_requests.c.attempts >= MAX_ATTEMPTS,
                )
            ).all()
        candidates = {  # trigger -> the candidate its latest retrain.started named
            e.payload_as(ev.RetrainStarted).trigger_id: e.model_version
            for e in (self.events.list(kinds=[ev.RETRAIN_STARTED]) if dead else [])
        }
        with self.db.begin() as conn:
            for trigger, attempts in dead:
                reason = (
                    f"interrupted {'twice' if attempts == 2 else f'{attempts} times'}: "
                    "the daemon died during every run of this retrain; it is not run again"
                )
                conn.execute(
                    update(retrain_requests)
                    .where(retrain_requests.c.trigger_id == trigger)
                    .values(
                        status="failed", result=to_json({"reason": reason}), updated_at=utcnow()
                    )
                )
                self.events.append(
                    ev.RETRAIN_FAILED,
                    ev.RetrainFailed(
                        trigger_id=trigger,
                        reason=reason,
                        attempts=int(attempts),
                        interrupted=True,
                    ),
                    model_version=candidates.get(str(trigger)),
                    conn=conn,
                )
            return int(
                conn.execute(
                    update(retrain_requests)
                    .where(retrain_requests.c.status.in_(UNFINISHED))
                    .values(status="pending", updated_at=utcnow())
                ).rowcount
            )

    def _finish_judged(self) -> None:
        """Mark ``finished`` the unfinished requests whose candidate the gate judged: the
        daemon died between the decision (a promotion) and the request's completion."""
        with self.db.connect() as conn:
            unfinished = {
                str(t)
                for (t,) in conn.execute(
                    select(retrain_requests.c.trigger_id).where(
                        retrain_requests.c.status.in_(UNFINISHED)
                    )
                )
            }
        judged = judgements(self.events, unfinished) if unfinished else {}
        if not judged:
            return
        with self.db.begin() as conn:
            for trigger, result in judged.items():
                conn.execute(
                    update(retrain_requests)
                    .where(retrain_requests.c.trigger_id == trigger)
                    .values(status="finished", result=to_json(result), updated_at=utcnow())
                )
        for trigger, result in judged.items():
            log.warning(
                "retrain %s: its candidate %s was judged before the daemon died; "
                "finished, not run again", trigger, result["candidate"],
            )


def judgements(events: EventLog, triggers: set[str]) -> dict[str, dict[str, Any]]:
    """trigger → ``{"candidate", "passed", "recovered"}`` for those of ``triggers`` whose
    candidate the gate decided on: promoted (``passed``), or refused, awaiting approval or
    shadowing. A gate pass that was to promote but whose promotion never committed is no
    decision: that trigger runs again (it promoted nothing)."""
    out: dict[str, dict[str, Any]] = {}
    for e in events.list(kinds=[ev.GATE_PASSED, ev.GATE_FAILED, ev.MODEL_PROMOTED]):
        p = e.payload
        trigger = str(p.trigger_id) if isinstance(p, ev.Gate | ev.ModelPromoted) else None
        if trigger not in triggers:
            continue
        if isinstance(p, ev.ModelPromoted):
            out[trigger] = {"candidate": e.model_version, "passed": True, "recovered": True}
        elif isinstance(p, ev.Gate) and p.next != "promote" and trigger not in out:
            candidate = p.candidate or e.model_version
            out[trigger] = {"candidate": candidate, "passed": False, "recovered": True}
    return out
