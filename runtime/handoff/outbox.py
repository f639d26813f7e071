"""The hook outbox: deliveries owed, stored before they are attempted.

:meth:`Outbox.enqueue` reads the event log after a cursor (``kv["hooks_cursor"]``) and,
in one transaction, writes a row per (hook, matching event) and moves the cursor. So
an event committed just before a crash is enqueued after the restart, and a row not yet
delivered is attempted again: every hook is delivered at least once (a receiver
deduplicates by the body's ``delivery``). Each outcome is recorded in the same
transaction as the row's change: ``hook.delivered``, or ``hook.failed`` once the retries
are spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from runtime.handoff.settings import AWAITING_APPROVAL, HookConfig, hook_names
from runtime.store import events as ev
from runtime.store.db import Database, from_json, hook_outbox, kv, to_json, utcnow
from runtime.store.events import Event, EventLog

__all__ = ["CURSOR_KEY", "Delivery", "Outbox", "trigger_of"]

CURSOR_KEY = "hooks_cursor"
BATCH = 500
AWAIT = "await approval"  # the gate's ``next`` for a candidate waiting for a person


@dataclass(frozen=True)
class Delivery:
    """One owed delivery: which hook, the body to send, attempts made so far."""

    id: int
    hook: str
    event_id: int
    kind: str
    body: bytes
    attempts: int


def trigger_of(hook: HookConfig, name: str, event: Event) -> str | None:
    """What of ``hook.on`` ``event`` matches, or None (a hook never fires on its own
    ``hook.failed``)."""
    p = event.payload
    if event.kind == ev.GATE_PASSED and isinstance(p, ev.Gate) and p.next == AWAIT and (
        AWAITING_APPROVAL in hook.on
    ):
        return AWAITING_APPROVAL
    if event.kind not in hook.on:
        return None
    if isinstance(p, ev.HookFailed) and p.hook == name:
        return None
    return event.kind


class Outbox:
    """The ``hook_outbox`` table for ``hooks`` (named by :func:`hook_names`)."""

    def __init__(
        self,
        db: Database,
        events: EventLog,
        hooks: Sequence[HookConfig],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.events = events
        self.hooks = dict(zip(hook_names(list(hooks)), hooks, strict=True))
        self.clock = clock

    def start(self) -> int:
        """The cursor; set to the newest event the first time (hooks tell what happens
        from their first start on, not the history)."""
        with self.db.begin() as conn:
            cursor = self._cursor(conn)
            if cursor is None:
                cursor = self.events.last_id()
                conn.execute(insert(kv).values(key=CURSOR_KEY, value=to_json(cursor)))
            return cursor

    def _cursor(self, conn: Connection) -> int | None:
        value = conn.execute(select(kv.c.value).where(kv.c.key == CURSOR_KEY)).scalar()
        return None if value is None else int(from_json(value))

    def enqueue(self) -> int:
        """Write the deliveries owed for the events after the cursor; returns how many."""
        with self.db.begin() as conn:
            cursor = self._cursor(conn)
            if cursor is None:
                return 0
            found = self.events.list(after_id=cursor, limit=BATCH)
            if not found:
                return 0
            now, stamp = self.clock(), utcnow()
            rows: list[dict[str, Any]] = []
            for event in found:
                for name, hook in self.hooks.items():
                    trigger = trigger_of(hook, name, event)
                    if trigger is None:
                        continue
                    body = {"hook": name, "delivery": f"{name}:{event.id}", "trigger": trigger,
                            "event": event.to_dict()}
                    rows.append({"hook": name, "event_id": event.id, "kind": trigger,
                                 "body": to_json(body), "status": "pending", "attempts": 0,
                                 "due": now, "created_at": stamp, "updated_at": stamp})
            if rows:
                taken = {
                    (h, e) for h, e in conn.execute(
                        select(hook_outbox.c.hook, hook_outbox.c.event_id)
                        .where(hook_outbox.c.event_id.in_([r["event_id"] for r in rows]))
                    )
                }
                rows = [r for r in rows if (r["hook"], r["event_id"]) not in taken]
            if rows:
                conn.execute(insert(hook_outbox), rows)
            conn.execute(update(kv).where(kv.c.key == CURSOR_KEY)
                         .values(value=to_json(found[-1].id)))
            return len(rows)

    def due(self, limit: int = 50, exclude: Sequence[int] = ()) -> list[Delivery]:
        """Pending deliveries whose time has come, oldest first."""
        stmt = (select(hook_outbox).where(hook_outbox.c.status == "pending")
                .where(hook_outbox.c.due <= self.clock())
                .where(hook_outbox.c.hook.in_(list(self.hooks)))
                .order_by(hook_outbox.c.id).limit(limit))
        if exclude:
            stmt = stmt.where(hook_outbox.c.id.not_in(list(exclude)))
        with self.db.connect() as conn:
            return [Delivery(int(r.id), r.hook, int(r.event_id), r.kind, r.body.encode(),
                             int(r.attempts)) for r in conn.execute(stmt)]

    def delivered(self, d: Delivery, detail: dict[str, Any]) -> Event:
        """Mark ``d`` delivered and record ``hook.delivered``."""
        return self._finish(d, "delivered", None, ev.HOOK_DELIVERED, detail)

    def attempt_failed(self, d: Delivery, reason: str) -> Event | None:
        """Schedule the next attempt with backoff, or, when the retries are spent, mark
        ``d`` failed and record ``hook.failed`` (returned)."""
        hook = self.hooks[d.hook]
        attempts = d.attempts + 1
        if attempts > hook.retries:
            return self._finish(d, "failed", reason, ev.HOOK_FAILED, {"reason": reason})
        delay = min(hook.max_backoff_seconds, hook.backoff_seconds * 2 ** (attempts - 1))
        with self.db.begin() as conn:
            conn.execute(update(hook_outbox).where(hook_outbox.c.id == d.id).values(
                attempts=attempts, due=self.clock() + delay, last_error=reason[:1000],
                updated_at=utcnow()))
        return None

    def _finish(self, d: Delivery, status: str, error: str | None, kind: str,
                detail: dict[str, Any]) -> Event:
        event = from_json(d.body.decode())["event"]
        payload = ev.PAYLOADS[kind].from_json({  # the detail's keys depend on the hook
            "hook": d.hook, "event_id": d.event_id, "kind": event["kind"], "trigger": d.kind,
            "attempts": d.attempts + 1, **detail})
        with self.db.begin() as conn:
            conn.execute(update(hook_outbox).where(hook_outbox.c.id == d.id).values(
                status=status, attempts=d.attempts + 1, last_error=error, updated_at=utcnow()))
            return self.events.append(kind, payload, model_version=event.get("model_version"),
                                      conn=conn)

    def counts(self) -> dict[str, int]:
        """Rows by status."""
        with self.db.connect() as conn:
            return {str(s): int(n) for s, n in conn.execute(
                select(hook_outbox.c.status, func.count()).group_by(hook_outbox.c.status))}

