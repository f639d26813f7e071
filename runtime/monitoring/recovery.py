"""Crash recovery of the monitoring: the saved state, restoring it, replaying what followed.

The daemon saves its monitoring state (source cursor, the last row and late label it
handled, the policy, each detector's state) in the ``kv`` table every 30 s and when it
stops. A daemon that starts on the same champion restores it and :meth:`Recovery.replay`
feeds the detectors what was stored after the save, so a ``kill -9`` loses no monitoring.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select, update

from runtime.intake.row_append import Accepted
from runtime.monitoring.alarms import Alarms
from runtime.monitoring.feed import DetectorFeed
from runtime.monitoring.policy import Policy
from runtime.monitoring.stored_walk import REPLAY_ROWS, StoredWalk
from runtime.monitoring.trace import write_trace
from runtime.store import events as ev
from runtime.store.db import Database, from_json, kv, to_json
from runtime.store.events import EventLog
from runtime.store.rows import last_late_label, last_seq, rows_after

log = logging.getLogger(__name__)
STATE_KEY = "daemon_state"
STATE_VERSION = 1
Feed = Callable[[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]], None]
"""``(seqs, x, y)`` of stored rows → the detectors (and the alarms they raise)."""


class Recovery:
    """Where the monitoring stands (:attr:`seq`, :attr:`label_seq`), saved and restored."""

    def __init__(
        self, db: Database, events: EventLog, features: list[str], key: str, shared_rows: bool,
        numeric: bool = False,
    ) -> None:
        """``key``: the ``kv`` key of this daemon's state; ``shared_rows``: several daemons
        store into one database (``leader:``), so the stored rows are not this one's to
        replay; ``numeric``: the labels are regression targets."""
        self.db = db
        self.events = events
        self.features = features
        self.key = key
        self.shared_rows = shared_rows
        self.numeric = numeric
        self.seq = 0  # the last stored row the daemon has handled (saved as "seq")
        self.label_seq = 0  # the last late label it has handled (saved as "label_seq")

    def handled(self, seq: int, label_seq: int) -> None:
        self.seq = max(self.seq, seq)
        self.label_seq = max(self.label_seq, label_seq)

    def caught_up(self) -> None:
        """Count every stored row and late label as handled: the detectors start after
        them (re-baselined, or restored without a replay), so a replay after a later crash
        must not feed them."""
        self.handled(last_seq(self.db), last_late_label(self.db))

    def load(self) -> dict[str, Any]:
        with self.db.connect() as conn:
            row = conn.execute(select(kv.c.value).where(kv.c.key == self.key)).first()
        if row is None:
            return {}
        state = from_json(row[0])
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            log.warning("ignoring saved daemon state of an unknown version")
            return {}
        return state

    def save(
        self, cursor: Any, champion: str | None, policy: Policy, feed: DetectorFeed, trace_key: str
    ) -> None:
        state = {
            "version": STATE_VERSION,
            "cursor": cursor,
            "seq": self.seq,
            "label_seq": self.label_seq,
            "event": self.events.last_id(),  # alarms after it are logged after this save
            "champion": champion,
            "policy": policy.state(),
            "detectors": feed.state(),
        }
        blob = to_json(state)
        with self.db.begin() as conn:
            write_trace(conn, trace_key, feed.trace)
            if conn.execute(select(kv.c.key).where(kv.c.key == self.key)).first() is None:
                conn.execute(kv.insert(), [{"key": self.key, "value": blob}])
            else:
                conn.execute(update(kv).where(kv.c.key == self.key).values(value=blob))

    def resume(
        self,
        saved: dict[str, Any],
        champion: str,
        feed: DetectorFeed,
        observe: Callable[..., None],
        alarms: Alarms,
        held_after: Callable[[], int | None] = lambda: None,
        hold: Callable[[Accepted], None] | None = None,
    ) -> None:
        """Restore the detectors and the policy the last daemon saved on ``champion``, then
        replay what was stored after it through ``observe(seqs, x, y, late=False)``, up
        to a pending retrain's row; the rest goes to ``hold`` (:meth:`replay`)."""
        self.restore(saved, feed, alarms.policy)
        late = functools.partial(observe, late=True)
        self.replay(saved, champion, observe, late, alarms, held_after, hold)

    @staticmethod
    def restore(saved: dict[str, Any], feed: DetectorFeed, policy: Policy) -> None:
        states = saved.get("detectors", {})
        for det in feed.detectors:
            if det.name in states:
                try:
                    det.load_state(states[det.name])
                except (ValueError, KeyError) as err:
                    log.warning("detector %s state not restored: %s", det.name, err)
        if "policy" in saved:
            policy.load_state(saved["policy"])

    def replay(
        self, saved: dict[str, Any], champion: str | None, rows: Feed, labels: Feed,
        alarms: Alarms, held_after: Callable[[], int | None] = lambda: None,
        hold: Callable[[Accepted], None] | None = None,
    ) -> None:
        """Feed the restored detectors what was stored after the saved state's last row
        and late label.

        The rows stored and acknowledged since the save, and the late labels joined since
        (to those rows or to earlier ones), are fed again in the order they were stored,
        each late label after the rows stored before it and before any new row. A row
        whose label came late is fed without it (its label is fed where it was joined);
        labels joined before the save are not fed again. The restored policy decides on
        their alarms again; an alarm the crashed daemon had logged since the save (same
        detector, same action, in order) keeps its ``drift.detected`` event and so its
        retrain trigger (``drift-<event id>``, idempotent in the queue): a replay never
        logs a drift twice nor retrains twice. Not with ``shared_rows``.

        Once ``held_after()`` names a row (a retrain is pending, requested up to that
        row; the replay may request it) the rows after it go to ``hold`` instead, in the
        same order: they belong to the champion the gate leaves, as when no crash came.
        """
        after = saved.get("seq")
        if after is None or self.shared_rows:
            self.caught_up()
            return
        # a state saved before late labels were numbered: every numbered one came after it
        walk = StoredWalk(self.db, len(self.features), int(after),
                          int(saved.get("label_seq", 0)), self.numeric)
        alarms.logged = self.alarms_since(saved, champion)
        n_rows = n_labels = 0
        try:
            for step in walk.steps(until=held_after):
                (labels if step.late else rows)(step.seqs, step.x, step.y)  # type: ignore[arg-type]
                if step.late:
                    n_labels += len(step.seqs)
                else:
                    n_rows += len(step.seqs)
                self.handled(walk.rows_at, walk.labels_at)  # where a request made now ends
                alarms.maybe_request_retrain(champion)
        finally:
            alarms.logged = {}
        # busy is not saved: a queued retrain sets it again when it starts
        alarms.policy.busy = False
        self.handled(walk.rows_at, walk.labels_at)
        held = self._hold_rest(walk, hold) if held_after() is not None else 0
        if n_rows or n_labels or held:
            log.warning(
                "fed the detectors %d stored row(s) after row %d and %d late label(s) again;"
                " %d row(s) held for the retrain's gate",
                n_rows, int(after), n_labels, held,
            )
            alarms.report(
                f"replayed {n_rows} stored rows after row {after} and {n_labels} late labels"
                f" (not monitored before){f'; {held} rows held for the gate' if held else ''}"
            )

    def _hold_rest(self, walk: StoredWalk, hold: Callable[[Accepted], None] | None) -> int:
        """Hand the rest of the walk to ``hold``; returns how many rows it held."""
        n = 0
        for step in walk.steps():
            if hold is not None:
                hold(step.accepted(len(self.features)))
            n += 0 if step.late else len(step.seqs)
        return n

    def feed_after(self, after: int, rows: Feed, alarms: Alarms, champion: str | None) -> int:
        """Feed the detectors the rows stored after row ``after`` (v1's last training row),
        in order; returns how many. They came in the same batch as v1's last training rows
        or while v1 trained: a drift in such a backlog is noticed too."""
        n = 0
        while True:
            seqs, x, y = rows_after(self.db, len(self.features), after, REPLAY_ROWS,
                                    numeric=self.numeric)
            if not len(seqs):
                return n
            rows(seqs, x, y)
            after, n = int(seqs[-1]), n + len(seqs)
            alarms.maybe_request_retrain(champion)

    def alarms_since(
        self, saved: dict[str, Any], champion: str | None
    ) -> dict[str, list[ev.Event]]:
        """The alarms logged since the state was saved, by detector, oldest first (a state
        saved without the last event's id: those on rows after its last row)."""
        event = saved.get("event")
        logged: dict[str, list[ev.Event]] = {}
        for e in self.events.list(
            kinds=[ev.DRIFT_DETECTED],
            model_version=champion,
            after_id=None if event is None else int(event),
        ):
            alarm = e.payload_as(ev.DriftDetected)
            if event is not None or int(alarm.row or 0) > int(saved["seq"]):
                logged.setdefault(alarm.detector, []).append(e)
        return logged
