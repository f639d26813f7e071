"""The retrain request queue: idempotent requests, and re-runs after an interrupted retrain."""

from __future__ import annotations

from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.retrain_queue import RequestQueue


def _queue(db: Database) -> RequestQueue:
    queue = RequestQueue(db, EventLog(db))
    assert queue.request("t1", {"trigger_id": "t1"}, "v1")
    return queue


def _start(queue: RequestQueue) -> None:
    nxt = queue.next_pending()
    assert nxt is not None and nxt["trigger_id"] == "t1"
    queue.start("t1", {"trigger_id": "t1"}, "v2")


def test_a_retrain_interrupted_by_a_crash_runs_again_once_then_fails(db: Database) -> None:
    queue = _queue(db)
    _start(queue)  # the daemon dies: the request stays 'running'
    assert queue.requeue() == 1
    _start(queue)  # and dies again
    assert queue.requeue() == 0
    got = queue.get("t1")
    assert got is not None and got[0] == "failed"
    assert queue.next_pending() is None
    failed = EventLog(db).list(kinds=[ev.RETRAIN_FAILED])
    assert [e.raw["trigger_id"] for e in failed] == ["t1"]
    assert "interrupted twice" in failed[0].raw["reason"]
    assert failed[0].model_version == "v2"  # the candidate it was training
    assert queue.requeue() == 0 and len(EventLog(db).list(kinds=[ev.RETRAIN_FAILED])) == 1


def test_a_retrain_cancelled_by_a_graceful_shutdown_is_not_a_crash(db: Database) -> None:
    queue = _queue(db)
    for _ in range(3):  # stopped cleanly, every time: it runs again every time
        _start(queue)
        queue.set_status("t1", "cancelled")
        assert queue.requeue() == 1
    _start(queue)  # then a crash: one more run
    assert queue.requeue() == 1
    _start(queue)
    queue.set_status("t1", "finished", {"passed": True})
    got = queue.get("t1")
    assert got is not None and got[0] == "finished"
    assert EventLog(db).list(kinds=[ev.RETRAIN_FAILED]) == []


def _promoted(db: Database) -> None:
    """The gate promoted t1's candidate; its daemon died before finishing the request."""
    EventLog(db).append(
        ev.MODEL_PROMOTED, {"trigger_id": "t1", "reason": "gate passed"}, model_version="v2"
    )


def test_a_retrain_whose_candidate_was_promoted_is_finished_not_run_again(db: Database) -> None:
    queue = _queue(db)
    _start(queue)
    _promoted(db)
    assert queue.requeue() == 0
    got = queue.get("t1")
    assert got is not None and got[0] == "finished"
    assert queue.next_pending() is None


def test_a_promoted_retrain_interrupted_twice_is_finished_not_failed(db: Database) -> None:
    queue = _queue(db)
    _start(queue)
    assert queue.requeue() == 1  # the first run died before its candidate was judged
    _start(queue)
    _promoted(db)  # the second run promoted, and its daemon died too
    assert queue.requeue() == 0
    got = queue.get("t1")
    assert got is not None and got[0] == "finished"
    assert EventLog(db).list(kinds=[ev.RETRAIN_FAILED]) == []


def test_a_gate_pass_whose_promotion_never_committed_runs_again(db: Database) -> None:
    queue = _queue(db)
    _start(queue)
    EventLog(db).append(
        ev.GATE_PASSED, {"trigger_id": "t1", "candidate": "v2", "next": "promote"},
        model_version="v2",
    )
    assert queue.requeue() == 1  # nothing was promoted: at most once still holds


def test_a_refused_candidate_finishes_its_retrain(db: Database) -> None:
    queue = _queue(db)
    _start(queue)
    EventLog(db).append(
        ev.GATE_FAILED, {"trigger_id": "t1", "candidate": "v2", "next": "refuse"},
        model_version="v2",
    )
    assert queue.requeue() == 0
    got = queue.get("t1")
    assert got is not None and got[0] == "finished"
