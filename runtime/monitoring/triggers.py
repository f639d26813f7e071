"""Retrain triggers besides drift: ``schedule``, ``labelled_rows``, ``accuracy_floor``,
``max_age`` (settings in :mod:`runtime.monitoring.settings`).

Each kind says, when asked, whether it is due and under which trigger id; the id names
the period, the block of rows or the champion it is about, so that asking again after a
restart gives the same id (the request queue is idempotent by id) and a period once fired
is remembered in the ``kv`` table at once (:meth:`Triggers.fired`), never fired again.
The clock's periods come from a ``next_fire(after)`` callable (APScheduler's, built in
:mod:`runtime.service.scheduler`); realized accuracy from an ``accuracy(window)``
callable the daemon builds on the champion's scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from runtime.monitoring.cadence import paced
from runtime.monitoring.settings import TriggersConfig
from runtime.store import served
from runtime.store.db import Database, format_ts, from_json, kv, parse_ts, to_json
from runtime.store.rows import count_labelled, last_labelled

STATE_KEY = "triggers"
STATE_VERSION = 1
NextFire = Callable[[datetime], datetime]
"""The first scheduled time strictly after the given one."""
Accuracy = Callable[[int], "tuple[float, int] | None"]
"""Realized accuracy of the champion over its last ``window`` labelled rows, and how many
rows that was (None: none yet)."""


@dataclass(frozen=True)
class Champion:
    """What the age trigger needs of the champion."""

    version: str
    created_at: datetime
    data_until: datetime | None  # when its newest training row was stored


@dataclass(frozen=True)
class Due:
    """A trigger that asks for a retrain now."""

    kind: str
    trigger_id: str
    onset: int  # the first row the retrain learns from
    reason: str  # the story's words: "5,000 new labelled rows arrived"


class Triggers:
    """The non-drift triggers of one daemon, their state kept under ``key`` in ``kv``."""

    def __init__(
        self,
        cfg: TriggersConfig,
        db: Database,
        key: str = STATE_KEY,
        *,
        clock: Callable[[], datetime] | None = None,
        next_fire: NextFire | None = None,
        accuracy: Accuracy | None = None,
    ) -> None:
        self.cfg = cfg
        self.db = db
        self.key = key
        self.clock = clock or (lambda: datetime.now(UTC))
        self.next_fire = next_fire
        self.accuracy = accuracy
        self.labelled_from = 1  # rows from this seq count as new labelled rows
        self.schedule_next: datetime | None = None
        self.aged: list[str] = []  # champions the age trigger fired for
        self.cadence_factor = 1.0  # scales labelled_rows.every (monitoring/cadence.py)
        self.load()
        if cfg.schedule is not None and self.schedule_next is None:
            if next_fire is None:
                raise ValueError("policy.triggers.schedule needs a scheduler")
            self.schedule_next = next_fire(self.clock())
            self.save()

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        nxt = self.schedule_next
        return {"version": STATE_VERSION, "labelled_from": self.labelled_from,
                "schedule_next": None if nxt is None else format_ts(nxt), "aged": self.aged}

    def load(self) -> None:
        with self.db.connect() as conn:
            row = conn.execute(select(kv.c.value).where(kv.c.key == self.key)).first()
        if row is None:
            return
        state = from_json(row[0])
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"trigger state version {state.get('version')!r} is not "
                             f"{STATE_VERSION}")
        self.labelled_from = int(state["labelled_from"])
        nxt = state.get("schedule_next")
        self.schedule_next = None if nxt is None else parse_ts(nxt)
        self.aged = [str(v) for v in state.get("aged", [])]

    def save(self) -> None:
        blob = to_json(self.state())
        with self.db.begin() as conn:
            if conn.execute(select(kv.c.key).where(kv.c.key == self.key)).first() is None:
                conn.execute(kv.insert(), [{"key": self.key, "value": blob}])
            else:
                conn.execute(update(kv).where(kv.c.key == self.key).values(value=blob))

    # -- asking --------------------------------------------------------------------------
    def due(self, champion: Champion | None, min_samples: int, upto: int | None = None
            ) -> list[Due]:
        """The enabled triggers due now, in :attr:`TriggersConfig.kinds` order. A retrain
        needs ``min_samples`` labelled rows to learn from: until then none is due. Rows
        are counted up to row ``upto``, the monitoring's position: rows stored beyond it
        (held while a retrain ran) are not yet seen, so a backlog counts them when a slow
        stream would."""
        out: list[Due] = []
        for kind in self.cfg.kinds:
            got = getattr(self, f"_{kind}")(champion, upto)
            if got is not None and count_labelled(self.db, got.onset, upto) >= min_samples:
                out.append(got)
        return out

    def _labelled_rows(self, champion: Champion | None, upto: int | None) -> Due | None:
        assert self.cfg.labelled_rows is not None
        n = count_labelled(self.db, self.labelled_from, upto)
        every = max(1, round(self.cfg.labelled_rows.every * self.cadence_factor))
        if n < every:
            return None
        why = "" if every == self.cfg.labelled_rows.every else (
            f", {paced(self.cadence_factor, self.cfg.labelled_rows.every)}")
        return Due("labelled_rows", f"labelled_rows-{self.labelled_from}", self.labelled_from,
                   f"{n:,} new labelled rows arrived (every {every:,}{why})")

    def _accuracy_floor(self, champion: Champion | None, upto: int | None) -> Due | None:
        floor = self.cfg.accuracy_floor
        assert floor is not None
        got = None if self.accuracy is None or champion is None else self.accuracy(floor.window)
        if got is None or got[1] < floor.window or got[0] >= floor.below:
            return None
        acc, n = got
        assert champion is not None  # got is None without one
        return Due("accuracy_floor", f"accuracy_floor-{champion.version}-{self.labelled_from}",
                   self.labelled_from,
                   f"realized accuracy {acc:.3f} over the last {n:,} labelled rows is below "
                   f"the floor {floor.below:g}")

    def _schedule(self, champion: Champion | None, upto: int | None) -> Due | None:
        nxt, now = self.schedule_next, self.clock()
        if nxt is None or now < nxt:
            return None
        return Due("schedule", f"schedule-{format_ts(nxt)}", self.labelled_from,
                   f"the schedule's time {format_ts(nxt)} came")

    def _max_age(self, champion: Champion | None, upto: int | None) -> Due | None:
        age = self.cfg.max_age
        assert age is not None
        if champion is None or champion.version in self.aged:
            return None
        now, why = self.clock(), None
        if age.champion_older_than is not None:
            old = now - champion.created_at
            if old > timedelta(seconds=age.champion_older_than):
                why = f"champion {champion.version} is {_span(old)} old"
        if why is None and age.data_older_than is not None:
            until = champion.data_until or champion.created_at
            old = now - until
            if old > timedelta(seconds=age.data_older_than):
                why = f"champion {champion.version} was trained on data {_span(old)} old"
        if why is None:
            return None
        return Due("max_age", f"max_age-{champion.version}", self.labelled_from, why)

    # -- after a request -----------------------------------------------------------------
    def start_after(self, row: int) -> None:
        """Count new labelled rows from after ``row`` (the first version's last training
        row: the rows it learnt from are not new to it); saved at once."""
        if row + 1 > self.labelled_from:
            self.labelled_from = row + 1
            self.save()

    def fired(self, upto: int, dues: list[Due], champion: Champion | None) -> None:
        """A retrain was requested on rows up to ``upto`` (by ``dues``, or by drift alone):
        new labelled rows count from after the last of them it had a label for (a row
        whose label comes later is new to the next retrain), a schedule period or an
        aged champion is spent; saved at once."""
        self.labelled_from = max(self.labelled_from, last_labelled(self.db, upto) + 1)
        kinds = {d.kind for d in dues}
        if "schedule" in kinds and self.next_fire is not None:
            self.schedule_next = self.next_fire(self.clock())  # missed periods coalesce
        if "max_age" in kinds and champion is not None:
            self.aged = [*self.aged[-99:], champion.version]
        self.save()


def served_accuracy(
    db: Database, champion: Callable[[], str | None], since: Callable[[], int]
) -> Accuracy:
    """The accuracy-floor trigger's ``accuracy(window)``: the champion's accuracy on the
    last ``window`` labelled rows it served from row ``since()`` on (its baseline), read
    from the stored served predictions (one aggregate query, no model run)."""

    def accuracy(window: int) -> tuple[float, int] | None:
        version = champion()
        if version is None:
            return None
        got = served.realized(db, window, version=version, since=since())
        return None if got.value is None else (got.value, got.rows)

    return accuracy


def _span(delta: timedelta) -> str:
    s = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.1f}{unit}"
    return f"{s:.0f}s"
