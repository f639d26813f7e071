"""Retrain triggers besides drift: each fires when it should, not otherwise, and a
restart (a new daemon on the same database) never fires the same period twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import update

from runtime.config import ConfigError, DriftloopConfig
from runtime.monitoring.alarms import Alarms
from runtime.monitoring.policy import Policy
from runtime.monitoring.triggers import Champion, Triggers
from runtime.review.story import story
from runtime.service.scheduler import next_fire
from runtime.store import events as ev
from runtime.store.db import Database, rows, utcnow
from runtime.store.events import EventLog
from runtime.store.retrain_queue import RequestQueue
from runtime.store.rows import encode_features
from tests.conftest import small_config

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class World:
    cfg: DriftloopConfig
    db: Database
    events: EventLog
    queue: RequestQueue
    now: list[datetime]
    accuracy: list[tuple[float, int] | None]
    champion: Champion

    def daemon(self) -> tuple[Alarms, Policy]:
        """A (re)started daemon's policy and alarms over the same database."""
        t = self.cfg.policy.triggers
        clock = lambda: self.now[0]  # noqa: E731
        fire = None if t.schedule is None else next_fire(t.schedule.every, t.schedule.cron,
                                                         clock())
        trig = Triggers(t, self.db, clock=clock, next_fire=fire,
                        accuracy=lambda w: self.accuracy[0])
        policy = Policy(self.cfg.policy)
        alarms = Alarms(self.cfg, self.db, self.events, policy, self.queue, lambda _: None,
                        lambda: None, trig, lambda _: self.champion)
        return alarms, policy

    def rows(self, n: int, labelled: bool = True) -> None:
        start = self.last()
        with self.db.begin() as conn:
            conn.execute(rows.insert(), [{
                "row_id": f"r{start + i}", "ingested_at": utcnow(), "source": "test",
                "features": encode_features(np.zeros((1, 9)))[0],
                "label": 1 if labelled else None,
            } for i in range(1, n + 1)])

    def last(self) -> int:
        from runtime.store.rows import last_seq
        return last_seq(self.db)

    def requested(self) -> list[ev.RetrainRequested]:
        return [e.payload_as(ev.RetrainRequested)
                for e in self.events.list(kinds=[ev.RETRAIN_REQUESTED])]

    def finish(self) -> None:
        """The pending retrain ran (the daemon marks it so)."""
        for p in self.requested():
            self.queue.set_status(p.trigger_id, "finished")


def world(tmp_path: Path, triggers: dict[str, Any], **policy: Any) -> World:
    cfg = small_config(tmp_path, policy={"min_samples": 50, "cooldown_rows": 0, **policy,
                                         "triggers": triggers})
    cfg.state_dir.mkdir(parents=True)
    db = Database.for_state_dir(cfg.state_dir, None)
    db.create_all()
    events = EventLog(db)
    return World(cfg, db, events, RequestQueue(db, events), [T0], [None],
                 Champion("v1", T0, T0))


def test_labelled_rows_fires_every_n_and_not_before(tmp_path: Path) -> None:
    w = world(tmp_path, {"labelled_rows": {"every": 100}})
    alarms, policy = w.daemon()
    w.rows(99)
    w.rows(40, labelled=False)
    alarms.maybe_request_retrain("v1")
    assert w.requested() == []
    w.rows(1)
    alarms.maybe_request_retrain("v1")
    (p,) = w.requested()
    assert (p.trigger_id, p.kind, p.onset, p.labelled_rows) == ("labelled_rows-1",
                                                               "labelled_rows", 1, 100)
    assert p.reason == "100 new labelled rows arrived (every 100)"
    w.rows(150)
    alarms.maybe_request_retrain("v1")  # one pending: nothing more
    assert len(w.requested()) == 1
    w.finish()
    policy.retrain_done()
    alarms.maybe_request_retrain("v1")
    assert [p.trigger_id for p in w.requested()] == ["labelled_rows-1", "labelled_rows-141"]


def test_labelled_rows_counter_survives_a_restart(tmp_path: Path) -> None:
    w = world(tmp_path, {"labelled_rows": {"every": 100}})
    alarms, _ = w.daemon()
    w.rows(100)
    alarms.maybe_request_retrain("v1")
    w.finish()
    w.rows(60)
    alarms, _ = w.daemon()  # restarted: the 100 rows fired already, 60 are new
    alarms.maybe_request_retrain("v1")
    assert len(w.requested()) == 1
    w.rows(40)
    alarms.maybe_request_retrain("v1")
    assert [p.trigger_id for p in w.requested()] == ["labelled_rows-1", "labelled_rows-101"]


def test_rows_labelled_after_a_request_count_for_the_next(tmp_path: Path) -> None:
    w = world(tmp_path, {"labelled_rows": {"every": 100}})
    alarms, policy = w.daemon()
    w.rows(100)
    w.rows(30, labelled=False)  # their labels come after the request
    alarms.maybe_request_retrain("v1")
    (p,) = w.requested()
    assert p.upto == 130
    w.finish()
    policy.retrain_done()
    with w.db.begin() as conn:
        conn.execute(update(rows).where(rows.c.seq > 100).values(label=1))
    w.rows(70)
    alarms.maybe_request_retrain("v1")
    assert [p.trigger_id for p in w.requested()] == ["labelled_rows-1", "labelled_rows-101"]


def test_the_first_versions_rows_are_not_new(tmp_path: Path) -> None:
    w = world(tmp_path, {"labelled_rows": {"every": 100}})
    w.rows(150)  # v1 learnt from these
    alarms, _ = w.daemon()
    assert alarms.triggers is not None
    alarms.triggers.start_after(150)
    alarms.maybe_request_retrain("v1")
    assert w.requested() == []
    w.rows(100)
    alarms.maybe_request_retrain("v1")
    assert [p.trigger_id for p in w.requested()] == ["labelled_rows-151"]


def test_cooldown_applies_to_every_trigger(tmp_path: Path) -> None:
    w = world(tmp_path, {"labelled_rows": {"every": 100}}, cooldown_rows=500)
    alarms, policy = w.daemon()
    w.rows(100)
    alarms.maybe_request_retrain("v1")
    w.finish()
    policy.retrain_done()
    w.rows(100)
    alarms.maybe_request_retrain("v1")
    assert len(w.requested()) == 1  # 100 rows after the last trigger: cooling down
    w.rows(400)
    alarms.maybe_request_retrain("v1")
    assert len(w.requested()) == 2


def test_interval_schedule_fires_once_a_period_and_not_again_after_restart(
    tmp_path: Path,
) -> None:
    w = world(tmp_path, {"schedule": {"every": "1h"}})
    alarms, _ = w.daemon()
    w.rows(60)
    w.now[0] = T0 + timedelta(minutes=59)
    alarms.maybe_request_retrain("v1")
    assert w.requested() == []
    w.now[0] = T0 + timedelta(minutes=61)
    alarms.maybe_request_retrain("v1")
    (p,) = w.requested()
    assert p.kind == "schedule" and p.trigger_id == "schedule-2026-03-02T13:00:00.000Z"
    w.finish()
    alarms, _policy = w.daemon()  # restart within the same period
    alarms.maybe_request_retrain("v1")
    assert len(w.requested()) == 1
    w.now[0] = T0 + timedelta(hours=5)  # four periods missed while down: one retrain
    w.rows(60)
    alarms.maybe_request_retrain("v1")
    alarms.maybe_request_retrain("v1")
    assert len(w.requested()) == 2


def test_cron_schedule_fires_at_its_time(tmp_path: Path) -> None:
    w = world(tmp_path, {"schedule": {"cron": "0 3 * * *"}})
    alarms, _ = w.daemon()
    w.rows(60)
    w.now[0] = datetime(2026, 3, 3, 2, 59, tzinfo=UTC)
    alarms.maybe_request_retrain("v1")
    assert w.requested() == []
    w.now[0] = datetime(2026, 3, 3, 3, 0, 5, tzinfo=UTC)
    alarms.maybe_request_retrain("v1")
    assert [p.trigger_id for p in w.requested()] == ["schedule-2026-03-03T03:00:00.000Z"]


def test_schedule_waits_for_min_samples(tmp_path: Path) -> None:
    w = world(tmp_path, {"schedule": {"every": 60}})
    alarms, _ = w.daemon()
    w.rows(10)
    w.now[0] = T0 + timedelta(minutes=2)
    alarms.maybe_request_retrain("v1")
    assert w.requested() == []  # 10 labelled rows: nothing to learn from yet
    w.rows(40)
    alarms.maybe_request_retrain("v1")
    assert len(w.requested()) == 1


def test_accuracy_floor_fires_below_the_floor_on_a_full_window(tmp_path: Path) -> None:
    w = world(tmp_path, {"accuracy_floor": {"below": 0.7, "window": 200}})
    alarms, _ = w.daemon()
    w.rows(300)
    for acc in [None, (0.5, 120), (0.75, 200)]:  # none yet, window not full, above
        w.accuracy[0] = acc
        alarms.maybe_request_retrain("v1")
    assert w.requested() == []
    w.accuracy[0] = (0.62, 200)
    alarms.maybe_request_retrain("v1")
    (p,) = w.requested()
    assert p.kind == "accuracy_floor" and p.trigger_id == "accuracy_floor-v1-1"
    assert p.reason is not None and "0.620" in p.reason
    w.finish()
    alarms, _ = w.daemon()
    alarms.maybe_request_retrain("v1")  # restarted, no new labelled rows: not again
    assert len(w.requested()) == 1


def test_max_age_fires_once_per_champion(tmp_path: Path) -> None:
    w = world(tmp_path, {"max_age": {"champion_older_than": "7d"}})
    alarms, _ = w.daemon()
    w.rows(60)
    w.now[0] = T0 + timedelta(days=6)
    alarms.maybe_request_retrain("v1")
    assert w.requested() == []
    w.now[0] = T0 + timedelta(days=8)
    alarms.maybe_request_retrain("v1")
    (p,) = w.requested()
    assert p.trigger_id == "max_age-v1" and p.reason == "champion v1 is 8.0d old"
    w.finish()
    w.rows(60)
    alarms, _policy = w.daemon()
    alarms.maybe_request_retrain("v1")
    assert len(w.requested()) == 1  # restarted: v1 was retrained for its age already


def test_max_age_on_the_data(tmp_path: Path) -> None:
    w = world(tmp_path, {"max_age": {"data_older_than": "30d"}})
    w.champion = Champion("v3", T0 + timedelta(days=20), T0)
    alarms, _ = w.daemon()
    w.rows(60)
    w.now[0] = T0 + timedelta(days=25)
    alarms.maybe_request_retrain("v3")
    assert w.requested() == []
    w.now[0] = T0 + timedelta(days=31)
    alarms.maybe_request_retrain("v3")
    (p,) = w.requested()
    assert p.reason == "champion v3 was trained on data 31.0d old"


def test_combine_all_waits_for_every_trigger(tmp_path: Path) -> None:
    w = world(tmp_path, {"combine": "all", "drift": False, "labelled_rows": {"every": 100},
                         "schedule": {"every": "1d"}})
    alarms, _ = w.daemon()
    w.rows(150)
    alarms.maybe_request_retrain("v1")  # enough rows, not the day
    w.now[0] = T0 + timedelta(days=1, minutes=1)
    w.rows(1, labelled=False)
    assert w.requested() == []
    alarms.maybe_request_retrain("v1")
    (p,) = w.requested()
    assert p.kind == "all" and p.trigger_id.startswith("all-labelled_rows-1+schedule-")


def test_story_says_why_a_trigger_retrained(tmp_path: Path) -> None:
    w = world(tmp_path, {"labelled_rows": {"every": 5000}})
    alarms, _ = w.daemon()
    w.rows(5000)
    alarms.maybe_request_retrain("v1")
    started = ev.RetrainStarted(trigger_id="labelled_rows-1", champion="v1", candidate="v4",
                                onset=1, upto=5000, strategy="replay")
    w.events.append(ev.RETRAIN_STARTED, started, model_version="v4")
    (chapter,) = (c for c in story(w.events.list()) if c.kind == "retrain")
    assert ("Why: v4 was retrained because 5,000 new labelled rows arrived (every 5,000) "
            "(trigger labelled_rows-1).") in chapter.lines


def test_old_retrain_requests_read_their_kind_from_the_id() -> None:
    old = ev.RetrainRequested.from_json({"trigger_id": "drift-7", "onset": 1, "upto": 9,
                                         "detector": "adwin", "labelled_rows": 5})
    assert old.kind == "drift" and "trigger" not in old.to_json()
    manual = ev.RetrainRequested.from_json({"trigger_id": "manual-abc", "detector": "manual"})
    assert manual.kind == "manual"
    new = ev.RetrainRequested(trigger_id="max_age-v1", trigger="max_age", reason="old")
    assert ev.RetrainRequested.from_json(new.to_json()) == new


@pytest.mark.parametrize(("triggers", "says"), [
    ({"schedule": {}}, "exactly one of every or cron"),
    ({"schedule": {"cron": "0 3 *"}}, "five fields"),
    ({"schedule": {"every": "3 days"}}, "is not a duration"),
    ({"max_age": {}}, "champion_older_than or data_older_than"),
    ({"labelled_rows": {"every": 0}}, "every"),
])
def test_trigger_config_errors_are_one_line(
    tmp_path: Path, triggers: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigError, match=says) as err:
        small_config(tmp_path, policy={"triggers": triggers})
    assert "\n" not in str(err.value)


def test_the_labelled_rows_backstop_is_on_by_default(tmp_path: Path) -> None:
    t = small_config(tmp_path).policy.triggers
    assert t.labelled_rows is not None and t.labelled_rows.every == 2000
    assert t.kinds == ["labelled_rows"]
    off = small_config(tmp_path, policy={"triggers": {"labelled_rows": None}})
    assert off.policy.triggers.kinds == []


def test_durations_read_with_units(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, policy={"triggers": {
        "schedule": {"every": "2w"}, "max_age": {"champion_older_than": "12h"},
        "labelled_rows": None}})
    t = cfg.policy.triggers
    assert t.schedule is not None and t.schedule.every == 14 * 86400
    assert t.max_age is not None and t.max_age.champion_older_than == 43200
    assert t.kinds == ["schedule", "max_age"]

