"""The daemon, one burst over a finite synthetic stream, asserting on the event log."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from runtime.config import DriftloopConfig
from runtime.daemon import Daemon
from runtime.intake.demo_stream import evaluation_sample
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog
from runtime.store.lock import AlreadyRunning
from runtime.store.unit import load_unit
from runtime.store.versions import Registry
from runtime.training.retrain_job import class_positions
from runtime.training.worker import RetrainRunner
from strategies.evaluation import accuracy
from tests.conftest import SMALL, small_config


def _kinds(events: list[ev.Event]) -> list[str]:
    return [e.kind for e in events if e.kind != ev.RETRAIN_PROGRESS]


def _is_subsequence(needle: list[str], hay: list[str]) -> bool:
    it = iter(hay)
    return all(k in it for k in needle)


def _acc(cfg: DriftloopConfig, registry: Registry, version: str, segment: int) -> float:
    x, y = evaluation_sample(cfg.source.segments, segment, 800, cfg.source.seed)  # type: ignore[union-attr]
    unit = load_unit(registry, cfg, version)
    return accuracy(
        unit.model,
        torch.as_tensor(x, dtype=torch.float32),
        torch.as_tensor(class_positions(y, cfg.schema.classes)),
    )


def test_event_sequence_detect_rehearse_gate_promote_then_refuse(burst: Any) -> None:
    cfg, events = burst
    kinds = _kinds(events)
    first = [
        ev.DAEMON_STARTED,
        ev.STAGE_FINISHED,
        ev.MODEL_PROMOTED,  # v1
        ev.DRIFT_DETECTED,
        ev.RETRAIN_REQUESTED,
        ev.RETRAIN_STARTED,
        ev.RETRAIN_FINISHED,
        ev.GATE_PASSED,
        ev.MODEL_PROMOTED,  # v2
        ev.DRIFT_DETECTED,
        ev.RETRAIN_STARTED,
        ev.RETRAIN_FINISHED,
        ev.GATE_FAILED,
        ev.DAEMON_STOPPED,
    ]
    assert _is_subsequence(first, kinds), kinds
    promoted = [e.model_version for e in events if e.kind == ev.MODEL_PROMOTED]
    assert promoted == ["v1", "v2"]
    failed = [e for e in events if e.kind == ev.GATE_FAILED][-1]
    assert failed.model_version == "v3"
    assert any(not c["passed"] for c in failed.raw["checks"])
    for check in failed.raw["checks"]:
        assert {"name", "metric", "champion", "candidate", "threshold", "passed", "reason"} <= set(
            check
        )
    assert [e for e in events if e.kind == ev.RETRAIN_PROGRESS]
    feature_drift = [
        e for e in events if e.kind == ev.DRIFT_DETECTED and e.raw["signal"] == "features"
    ]
    assert feature_drift
    for e in feature_drift:  # each with its evidently report, linked from the payload
        html = (cfg.state_dir / e.raw["report"]).read_text()
        assert "<html" in html.lower() and len(html) > 10_000


def test_promoted_model_learned_the_new_distribution_without_forgetting(burst: Any) -> None:
    cfg, _ = burst
    db = Database.for_state_dir(cfg.state_dir, None)
    registry = Registry(db, cfg.state_dir / "models", EventLog(db))
    assert registry.champion() == "v2"
    old_v1, old_v2 = _acc(cfg, registry, "v1", 0), _acc(cfg, registry, "v2", 0)
    new_v1, new_v2 = _acc(cfg, registry, "v1", 1), _acc(cfg, registry, "v2", 1)
    assert new_v2 > new_v1 + 0.05, (new_v1, new_v2)
    assert old_v1 - old_v2 <= cfg.gate.max_forgetting, (old_v1, old_v2)


def test_every_version_is_a_complete_unit_with_lineage(burst: Any) -> None:
    cfg, _ = burst
    db = Database.for_state_dir(cfg.state_dir, None)
    registry = Registry(db, cfg.state_dir / "models", EventLog(db))
    versions = {v.version: v for v in registry.list()}
    assert versions["v2"].parent == "v1" and versions["v3"].parent == "v2"
    assert versions["v3"].status == "refused"
    for name in ("model", "buffer", "reference", "golden"):
        assert (cfg.state_dir / "models" / "v2" / f"{name}.safetensors").exists()
    meta = versions["v2"].meta
    assert meta["strategy"] == "replay" and meta["config_hash"] == cfg.config_hash()
    assert meta["golden_index"] == ["v2"]  # golden.max_sets 1: older sets expire
    buffer = load_unit(registry, cfg, "v2", with_buffer=True).buffer
    assert buffer is not None and 0 < len(buffer) <= 1000


def test_every_monitored_row_records_what_the_champion_served(burst: Any) -> None:
    """Each row after v1's training rows has its served prediction and the version that
    served it; the realized accuracy of each version is computed from them."""
    from sqlalchemy import func, select

    from runtime.store.db import served
    from runtime.store.served import realized, realized_by_version

    cfg, _ = burst
    db = Database.for_state_dir(cfg.state_dir, None)
    with db.connect() as conn:
        n, first = conn.execute(select(func.count(), func.min(served.c.row_seq))).one()
        got = dict(conn.execute(
            select(served.c.version, func.min(served.c.row_seq)).group_by(served.c.version)
        ).all())
    assert first == cfg.bootstrap.rows + 1, "v1's training rows are not served rows"
    assert set(got) == {"v1", "v2"} and got["v1"] < got["v2"]
    assert n > 0
    per = realized_by_version(db, window=100_000)
    assert per["v1"].rows + per["v2"].rows == realized(db, window=100_000).rows
    assert all(r.value is not None and 0.0 <= r.value <= 1.0 for r in per.values())
    db.dispose()


def test_second_daemon_on_the_same_state_refuses(small_cfg: DriftloopConfig) -> None:
    first = Daemon(small_cfg)
    first.lock.acquire()
    try:
        with pytest.raises(AlreadyRunning, match="another driftloop daemon"):
            Daemon(small_cfg).open()
    finally:
        first.lock.release()


def _run_with_spec_change(
    cfg: DriftloopConfig, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any]
) -> list[ev.Event]:
    original = RetrainRunner.start

    def start(self: RetrainRunner, trigger_id: str, spec: dict[str, Any]) -> None:
        original(self, trigger_id, {**spec, **change})

    monkeypatch.setattr(RetrainRunner, "start", start)
    Daemon(cfg).run(until_drained=True)
    return EventLog(Database.for_state_dir(cfg.state_dir, None)).list()


def test_a_crashing_retrain_becomes_retrain_failed_and_the_daemon_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config(tmp_path)
    events = _run_with_spec_change(cfg, monkeypatch, {"crash_for_test": True})
    failed = [e for e in events if e.kind == ev.RETRAIN_FAILED]
    assert failed and "killed by signal SIGKILL" in failed[0].raw["reason"]
    assert events[-1].kind == ev.DAEMON_STOPPED and events[-1].raw["reason"] == "drained"
    assert [e.model_version for e in events if e.kind == ev.MODEL_PROMOTED] == ["v1"]


def test_an_exception_in_the_retrain_is_reported_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = small_config(tmp_path)
    events = _run_with_spec_change(cfg, monkeypatch, {"champion": "v99"})
    failed = [e for e in events if e.kind == ev.RETRAIN_FAILED]
    assert failed and "v99" in failed[0].raw["reason"]


def test_a_retrain_past_its_timeout_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = copy.deepcopy(SMALL["retrain"])
    data["timeout_seconds"] = 0.5
    cfg = small_config(tmp_path, retrain=data)
    # the tiny retrain alone can finish inside 0.5 s on an idle machine: make it outlast it
    events = _run_with_spec_change(cfg, monkeypatch, {"sleep_for_test": 5})
    failed = [e for e in events if e.kind == ev.RETRAIN_FAILED]
    assert failed and "timed out after 0.5 s" in failed[0].raw["reason"]


def test_rows_stored_after_the_bootstrap_rows_are_monitored(tmp_path: Path) -> None:
    """A first batch longer than bootstrap.rows (one big file, a broker's backlog): v1 is
    trained on its first rows and monitors the rest. They were counted as seen and never
    fed to the detectors, so the drift at row 1,801 of this one batch went unnoticed."""
    source = {**copy.deepcopy(SMALL["source"]), "batch_size": 4000}
    policy = {**SMALL["policy"], "min_samples": 100_000}  # alarms only: no retrain
    cfg = small_config(tmp_path, source=source, policy=policy)
    Daemon(cfg).run(until_drained=True)
    log = EventLog(Database.for_state_dir(cfg.state_dir, None))
    drifts = log.list(kinds=[ev.DRIFT_DETECTED])
    assert drifts, "no drift detected in the rows after the bootstrap rows"
    assert all(int(e.raw["row"]) > 1000 for e in drifts)
    assert any(e.raw["action"] == "retrain" and int(e.raw["row"]) > 1800 for e in drifts)


def test_an_accuracy_floor_requests_a_retrain_from_the_served_predictions(
    tmp_path: Path,
) -> None:
    """The daemon's accuracy-floor trigger reads the champion's served predictions: a floor
    of 1.0 asks for a retrain once its window of labelled rows is full (v1 is not perfect), with
    the trigger named in ``retrain.requested``."""
    policy = {**copy.deepcopy(SMALL.get("policy", {})),
              "triggers": {"drift": False, "accuracy_floor": {"below": 1.0, "window": 50}}}
    cfg = small_config(tmp_path, policy=policy)
    d = Daemon(cfg)
    d.open()
    deadline = time.monotonic() + 300
    log = EventLog(d.db)
    try:
        while log.last(ev.RETRAIN_REQUESTED) is None and time.monotonic() < deadline:
            d.step()
    finally:
        d.close()
    requested = log.last(ev.RETRAIN_REQUESTED)
    assert requested is not None and requested.raw["trigger"] == "accuracy_floor"
    assert requested.raw["trigger_id"].startswith("accuracy_floor-v1-")


def test_every_version_is_calibrated_and_every_served_row_has_its_estimate(burst: Any) -> None:
    """Each version carries a calibration fitted on its golden set; each served row the
    champion's calibrated confidence, whose mean is within a few points of the realized
    accuracy where the stream has not drifted (the label-free estimate)."""
    from sqlalchemy import func, select

    from runtime.store.db import served, served_confidence
    from runtime.store.estimated import estimated, versus

    cfg, _ = burst
    db = Database.for_state_dir(cfg.state_dir, None)
    registry = Registry(db, cfg.state_dir / "models", EventLog(db))
    for mv in registry.list():
        cal = mv.meta["calibration"]
        assert cal["method"] == "temperature" and cal["rows"] > 0 and cal["temperature"] > 0
    with db.connect() as conn:
        n_served = conn.execute(select(func.count()).select_from(served)).scalar_one()
        n_conf = conn.execute(select(func.count()).select_from(served_confidence)).scalar_one()
    assert n_conf == n_served > 0
    est = estimated(db, window=100_000, version="v1")
    assert est.value is not None and 0.5 <= est.value <= 1.0
    vs = versus(db, "v1", window=200, error=0.0)
    assert vs is not None and set(vs) == {"estimated", "realized", "gap", "diverged"}
    db.dispose()
