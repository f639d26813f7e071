"""The daemon across restarts and crashes: what a stop, a ``kill -9`` or a dying retrain
leaves, and that the next daemon goes on from it without losing or repeating work."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from runtime.daemon import Daemon
from runtime.intake.demo_stream import evaluation_sample
from runtime.intake.sources import Batch
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from tests.conftest import SMALL, small_config


def test_restart_continues_where_it_stopped(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    d = Daemon(cfg)
    d.open()
    for _ in range(8):
        d.step()
    d.close("test")
    seen = d.rows_seen
    d2 = Daemon(cfg)
    d2.run(until_drained=True)
    db = Database.for_state_dir(cfg.state_dir, None)
    from runtime.store.rows import last_seq

    assert last_seq(db) == sum(s["rows"] for s in SMALL["source"]["segments"])
    assert seen > 0 and np.isfinite(seen)


def test_a_retrain_cancelled_by_shutdown_runs_again_exactly_once(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)
    d = Daemon(cfg)
    d.open()
    deadline = time.monotonic() + 300
    while not d.runner.running and time.monotonic() < deadline:
        d.step()
    assert d.runner.running
    trigger = d.runner.trigger_id
    d.close("test stop")
    log = EventLog(Database.for_state_dir(cfg.state_dir, None))
    cancelled = log.last(ev.RETRAIN_FAILED)
    assert cancelled is not None and cancelled.raw["cancelled"] is True
    assert cancelled.raw["trigger_id"] == trigger
    Daemon(cfg).run(until_drained=True)
    started = [e.raw["trigger_id"] for e in log.list(kinds=[ev.RETRAIN_STARTED])]
    finished = [e.raw["trigger_id"] for e in log.list(kinds=[ev.RETRAIN_FINISHED])]
    assert started.count(trigger) == 2 and finished.count(trigger) == 1
    assert log.list(kinds=[ev.DAEMON_STARTED])[-1].raw["requeued_retrains"] == 1


def _abandon(d: Daemon) -> None:
    """What ``kill -9`` leaves: no ``close`` (no save, no events); the OS frees the lock,
    the database connections and the warm worker."""
    d.runner.close()
    d.lock.release()
    d.db.dispose()


@pytest.mark.parametrize("periodic_save", [True, False], ids=["saved", "never-saved"])
def test_a_crash_loses_no_monitoring_the_stored_rows_are_fed_again(
    tmp_path: Path, periodic_save: bool
) -> None:
    """Also when the daemon dies before its first periodic save: adopting v1 saved the
    point the detectors start from, so the rows stored after it are fed again."""
    cfg = small_config(tmp_path)
    d = Daemon(cfg)
    d.open()
    d._last_save = float("inf")  # no periodic save unless the test makes one
    deadline = time.monotonic() + 300
    while d.unit is None and time.monotonic() < deadline:
        d.step()
    if periodic_save:
        d._save_state()  # the last periodic save, before the drift
    log = EventLog(d.db)

    def retrain_alarms() -> list[ev.Event]:
        return [e for e in log.list(kinds=[ev.DRIFT_DETECTED]) if e.raw["action"] == "retrain"]

    while not retrain_alarms() and time.monotonic() < deadline:
        d.step()
    (alarm,) = retrain_alarms()
    assert log.last(ev.RETRAIN_REQUESTED) is None  # the episode waits for labelled rows
    _abandon(d)

    Daemon(cfg).run(until_drained=True)
    log = EventLog(Database.for_state_dir(cfg.state_dir, None))
    requested = [e.raw["trigger_id"] for e in log.list(kinds=[ev.RETRAIN_REQUESTED])]
    assert requested[:1] == [f"drift-{alarm.id}"], requested
    # the replayed alarm is the one already logged, not a second event for the same drift
    assert [e.id for e in retrain_alarms()][:1] == [alarm.id]
    again = [e for e in retrain_alarms() if e.raw["detector"] == alarm.raw["detector"]]
    assert len(again) == len({e.raw["row"] for e in again})


def test_a_retrain_its_daemon_dies_during_twice_fails_and_the_daemon_goes_on(
    tmp_path: Path,
) -> None:
    cfg = small_config(tmp_path)
    deadline = time.monotonic() + 300
    triggers = []
    for _ in range(2):  # kill -9 during the retrain, twice
        d = Daemon(cfg)
        d.open()
        while not d.runner.running and time.monotonic() < deadline:
            d.step()
        assert d.runner.running
        triggers.append(d.runner.trigger_id)
        _abandon(d)
    assert triggers[0] == triggers[1]
    Daemon(cfg).run(until_drained=True)
    log = EventLog(Database.for_state_dir(cfg.state_dir, None))
    mine = [e for e in log.list() if e.raw.get("trigger_id") == triggers[0]]
    kinds = [e.kind for e in mine if e.kind != ev.RETRAIN_PROGRESS]
    assert kinds == [ev.RETRAIN_REQUESTED, ev.RETRAIN_STARTED, ev.RETRAIN_STARTED,
                     ev.RETRAIN_FAILED], kinds
    assert "interrupted twice" in mine[-1].raw["reason"]
    assert log.list()[-1].kind == ev.DAEMON_STOPPED
    assert log.list()[-1].raw["reason"] == "drained"


def test_a_crash_replays_the_late_labels_joined_after_the_save_once_in_order(
    tmp_path: Path,
) -> None:
    """Labels that arrive after the last save for rows the saved state had seen (their
    error is known only then) are fed again after a crash, where they were joined among
    the new rows, and only those: the error detector ends as the crashed daemon left it.
    The alarm they raised keeps its one drift.detected event."""
    policy = {**SMALL["policy"], "min_samples": 100_000}  # no retrain in this story
    cfg = small_config(tmp_path, policy=policy)
    d = Daemon(cfg)
    d.open()
    deadline = time.monotonic() + 300
    while (d.unit is None or d.rows_seen < 1600) and time.monotonic() < deadline:
        d.step()
    assert d.monitor is not None
    x, _ = evaluation_sample(cfg.source.segments, 0, 300, cfg.source.seed)  # type: ignore[union-attr]
    ids = [f"late{i}" for i in range(len(x))]
    rows = pd.DataFrame(x, columns=d.features).assign(row_id=ids)
    d._after_ingest(d.ingestor.ingest(Batch(origin="rows", frame=rows)))  # labels come later
    labelled_before = d.ingestor.ingest(
        Batch(origin="labels:0", frame=pd.DataFrame({"row_id": ids[:20], "class": 0}))
    )
    d._after_ingest(labelled_before)  # seen before the save: not fed again
    d._save_state()  # the last periodic save
    d._last_save = float("inf")  # and none after it
    wrong = 1 - d.monitor.score(x, np.full(len(x), -1)).prediction  # every label an error

    def late(part: slice) -> None:
        frame = pd.DataFrame({"row_id": ids[part], "class": wrong[part]})
        d._after_ingest(d.ingestor.ingest(Batch(origin=f"labels:{part.start}", frame=frame)))

    late(slice(20, 120))
    assert d.step()  # new rows (after the saved seq) between two batches of late labels
    late(slice(120, 300))
    log = EventLog(d.db)
    error = next(det for det in d.detectors if det.signal == "error")
    left = error.state()
    alarms = [e.id for e in log.list(kinds=[ev.DRIFT_DETECTED]) if e.raw["signal"] == "error"]
    assert alarms, "the wrong late labels raise an error-rate alarm"
    _abandon(d)

    d2 = Daemon(cfg)
    d2.open()
    try:
        replayed = next(det for det in d2.detectors if det.signal == "error")
        assert replayed.state() == left  # each late label fed once, in the same order
        assert [
            e.id for e in log.list(kinds=[ev.DRIFT_DETECTED]) if e.raw["signal"] == "error"
        ] == alarms
    finally:
        d2.close("test")


def test_a_late_label_does_not_feed_its_row_to_the_confidence_detectors_again(
    tmp_path: Path,
) -> None:
    """Confidence needs no label: a row is fed to the confidence detectors when it arrives,
    and its late label feeds only the detectors that needed it (error, loss)."""
    confidence = {"kind": "adwin", "signal": "confidence", "delta": 0.002, "name": "conf"}
    detectors = [*SMALL["detectors"], confidence]
    policy = {**SMALL["policy"], "min_samples": 100_000}
    d = Daemon(small_config(tmp_path, detectors=detectors, policy=policy))
    d.open()
    try:
        deadline = time.monotonic() + 300
        while d.unit is None and time.monotonic() < deadline:
            d.step()
        fed: dict[str, int] = {}
        for det in d.detectors:
            def counting(values: Any, seqs: Any, _det: Any = det, _orig: Any = det.update) -> Any:
                fed[_det.signal] = fed.get(_det.signal, 0) + len(seqs)
                return _orig(values, seqs)

            det.update = counting  # type: ignore[method-assign]
        x, y = evaluation_sample(d.cfg.source.segments, 0, 300, d.cfg.source.seed)  # type: ignore[union-attr]
        ids = [f"late{i}" for i in range(len(x))]
        rows = pd.DataFrame(x, columns=d.features).assign(row_id=ids)
        d._after_ingest(d.ingestor.ingest(Batch(origin="rows", frame=rows)))
        assert fed.get("confidence") == 300 and "error" not in fed
        labels = pd.DataFrame({"row_id": ids, "class": y})
        d._after_ingest(d.ingestor.ingest(Batch(origin="labels:0", frame=labels)))
        assert fed["confidence"] == 300  # not fed the same rows twice
        assert fed["error"] == 300
    finally:
        d.close("test")


class _Killed(BaseException):
    """The daemon's death at one point (``kill -9``), raised out of its step."""


def test_a_crash_between_promotion_and_the_request_finishing_promotes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.store.retrain_queue import RequestQueue

    cfg = small_config(tmp_path)
    finish = RequestQueue.set_status

    def killed_before_finishing(self: RequestQueue, trigger: Any, status: str, *a: Any) -> None:
        if status == "finished":
            raise _Killed  # model.promoted is committed, the request still 'running'
        finish(self, trigger, status, *a)

    monkeypatch.setattr(RequestQueue, "set_status", killed_before_finishing)
    d = Daemon(cfg)
    d.open()
    deadline = time.monotonic() + 300
    with pytest.raises(_Killed):
        while time.monotonic() < deadline:
            d.step()
    _abandon(d)
    monkeypatch.undo()
    log = EventLog(Database.for_state_dir(cfg.state_dir, None))
    (promoted,) = [e for e in log.list(kinds=[ev.MODEL_PROMOTED]) if e.model_version != "v1"]
    trigger = promoted.raw["trigger_id"]

    Daemon(cfg).run(until_drained=True)
    mine = [e.kind for e in log.list() if e.raw.get("trigger_id") == trigger]
    assert mine.count(ev.MODEL_PROMOTED) == 1, mine
    assert mine.count(ev.RETRAIN_STARTED) == 1, mine  # finished, not trained again
    assert ev.RETRAIN_FAILED not in mine
    got = RequestQueue(log.db, log).get(trigger)
    assert got is not None and got[0] == "finished"


def test_after_a_crash_rows_stored_after_a_pending_retrain_wait_for_its_gate(
    tmp_path: Path,
) -> None:
    """A ``kill -9`` while a retrain waits: the next daemon replays the rows up to the
    retrain's row to the champion's detectors and holds the rest for the champion the gate
    leaves, as a daemon that never died holds them (they must not be spent on the old
    champion's detectors and then skipped when the new one re-baselines)."""
    source = copy.deepcopy(SMALL["source"]) | {"block_on_retrain": False}
    cfg = small_config(tmp_path, source=source)
    d = Daemon(cfg)
    d.open()
    deadline = time.monotonic() + 300
    while d.unit is None and time.monotonic() < deadline:
        d.step()
    d._save_state()  # the last periodic save, before the drift
    d._last_save = float("inf")
    d._lead = lambda: False  # type: ignore[method-assign]  # the retrain stays pending
    while d.requests.next_pending() is None and time.monotonic() < deadline:
        d.step()
    upto = int(d.requests.next_pending()["upto"])  # type: ignore[index]
    while d.backlog.rows < 300 and time.monotonic() < deadline:
        d.step()
    held = d.backlog.rows
    _abandon(d)

    again = Daemon(cfg)
    again.open()
    assert again.recovery.seq == upto  # replayed up to the request, no further
    assert again.backlog.rows >= held
    seqs = np.concatenate([b.seqs for b in again.backlog.batches])
    assert seqs.min() == upto + 1 and np.all(np.diff(seqs) == 1)
    again.close()
    again.db.dispose()
