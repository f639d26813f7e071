"""Typed event payloads: each kind's payload, as its writers store it, reads into its
dataclass and writes back to the same JSON; older payloads read with defaults."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.store import events as ev
from runtime.store import payloads as pl
from runtime.store.db import Database, to_json
from runtime.store.events import KINDS, Event, EventLog

CHECK = {
    "name": "new_data", "metric": "accuracy", "champion": 0.605, "candidate": 0.573,
    "threshold": "gain >= 0.02", "passed": False, "reason": "no gain", "n": 200,
    "numbers": {"gain": -0.032, "gain_lower": -0.08, "false_refusal_risk": None},
}
VERDICT = {
    "passed": False, "checks": [CHECK], "reasons": ["no gain"], "confidence": 0.95,
    "test": "bootstrap", "false_refusal_risk": None,
}
PROGRESS = {"trigger_id": "drift-7", "epoch": 2, "step": 40, "samples": 640, "loss": 0.41,
            "seconds": 1.25}

# Each writer's payload, as it is stored today (one entry per distinct shape).
WRITTEN: list[tuple[str, dict[str, Any]]] = [
    (ev.DAEMON_STARTED, {"state_dir": "/s", "champion": "v1", "source": "csv:x.csv",
                         "requeued_retrains": 0, "detectors": ["adwin", "ks"]}),
    (ev.DAEMON_STARTED, {"state_dir": "/s", "champion": None, "source": "http",
                         "requeued_retrains": 2, "detectors": []}),
    (ev.DAEMON_STOPPED, {"reason": "stopped", "rows_seen": 1200}),
    (ev.INGEST_REJECTED, {"source": "a.csv", "accepted": 9, "rejected": 1, "whole_file": False,
                          "reasons": {"x: not a number": 1},
                          "examples": [{"row": 3, "reason": "x: not a number: 'a'"}]}),
    (ev.DRIFT_DETECTED, {"detector": "adwin", "signal": "error", "statistic": 0.31,
                         "threshold": None, "index": 900, "onset": 850, "window": [800, 900],
                         "row": 901, "action": "retrain", "reason": "error rose",
                         "details": {"mean_before": 0.1, "mean_after": 0.4}}),
    (ev.DRIFT_DETECTED, {"detector": "ks", "signal": "features", "statistic": 4.2,
                         "threshold": 3.0, "index": None, "onset": None, "window": None,
                         "row": 50, "action": "alert", "reason": "cooldown",
                         "details": {"features": [{"feature": "f0", "drifted": True}]},
                         "report": "reports/row50-ks.html"}),
    (ev.RETRAIN_REQUESTED, {"trigger_id": "drift-7", "onset": 850, "upto": 1200,
                            "detector": "adwin", "labelled_rows": 300, "alarm_row": 901}),
    (ev.RETRAIN_REQUESTED, {"trigger_id": "manual-k", "onset": 0, "upto": 10,
                            "detector": "manual", "labelled_rows": 9, "alarm_row": None,
                            "reason": "manual retrain through the API"}),
    (ev.RETRAIN_STARTED, {"trigger_id": "drift-7", "champion": "v1", "candidate": "v2",
                          "onset": 850, "upto": 1200, "strategy": "replay"}),
    (ev.RETRAIN_PROGRESS, {**PROGRESS, "val_accuracy": 0.8}),
    (ev.RETRAIN_PROGRESS, {**PROGRESS, "val_accuracy": None}),
    (ev.RETRAIN_PROGRESS, {**PROGRESS, "trigger_id": "bootstrap"}),  # no validation
    (ev.RETRAIN_FINISHED, {"trigger_id": "drift-7", "candidate": "v2", "samples": 640,
                           "steps": 40, "epochs": 2, "seconds": 1.5, "final_loss": 0.4,
                           "stopped_by": "epochs", "resumed_from_epoch": 0, "device": "cpu",
                           "rows_train": 240, "rows_holdout": 60, "wall_seconds": 2.1}),
    (ev.RETRAIN_FAILED, {"trigger_id": "drift-7", "reason": "boom", "seconds": 0.5}),
    (ev.RETRAIN_FAILED, {"trigger_id": "drift-7", "reason": "cancelled: stopping",
                         "seconds": 0.5, "cancelled": True}),
    (ev.RETRAIN_FAILED, {"trigger_id": "drift-7", "reason": "interrupted twice",
                         "attempts": 2, "interrupted": True}),
    (ev.GATE_FAILED, {"trigger_id": "drift-7", "candidate": "v2", "champion": "v1",
                      "mode": "auto", "stage": "gate", "next": "refuse", **VERDICT}),
    (ev.GATE_PASSED, {"trigger_id": "drift-7", "candidate": "v2", "champion": "v1",
                      "mode": "shadow", "stage": "gate", "next": "shadow", **VERDICT,
                      "passed": True, "false_refusal_risk": 0.04, "noise": "At these sizes"}),
    (ev.GATE_FAILED, {"trigger_id": None, "candidate": "v2", "champion": "v1",
                      "passed": False, "checks": [], "reasons": ["void"], "next": "refuse"}),
    (ev.GATE_FAILED, {"trigger_id": "drift-7", "candidate": "v2", "champion": "v1",
                      "passed": False, "checks": [], "reasons": ["Rejected by ann: no."],
                      "rejected_by": "ann", "gate_event": 12}),
    (ev.MODEL_PROMOTED, {"reason": "bootstrap", "metrics": {"val_accuracy": 0.9},
                         "previous_champion": None}),
    (ev.MODEL_PROMOTED, {"reason": "adopted", "metrics": {"golden_accuracy": 0.8},
                         "adopted": {"file": "m.onnx", "format": "onnx", "sha256": "ab"},
                         "previous_champion": None}),
    (ev.MODEL_PROMOTED, {"trigger_id": "drift-7", "reason": "gate passed",
                         "gate": {**VERDICT, "passed": True, "noise": "n"},
                         "previous_champion": "v1"}),
    (ev.MODEL_PROMOTED, {"trigger_id": "drift-7", "reason": "gate passed and approved by x",
                         "gate_event": 12, "previous_champion": "v1"}),
    (ev.MODEL_PROMOTED, {"reason": "manual", "by": "api", "previous_champion": "v1"}),
    (ev.MODEL_PROMOTED, {"reason": "bootstrap", "metrics": {}, "stages": ["warm", "adapt"],
                         "previous_champion": None}),
    (ev.MODEL_ROLLED_BACK, {"from": "v3", "to": "v2", "reason": "manual"}),
    (ev.MODEL_ROLLED_BACK, {"from": "v3", "to": "v2", "reason": "automatic",
                            "evidence": {"summary": "worse", "rows": 200}}),
    (ev.STAGE_FINISHED, {"stage": "bootstrap", "passed": True,
                         "metrics": {"val_accuracy": 0.9, "train_rows": 80},
                         "exit_criteria": {"val_accuracy": ">= 0.5"}}),
    (ev.STAGE_FINISHED, {"stage": "warm", "index": 1, "passed": False,
                         "metrics": {"accuracy": 0.4}, "exit_criteria": {"accuracy": ">= 0.5"},
                         "missed": ["accuracy 0.4000 < 0.5"], "checkpoint": "/c/model",
                         "sha256": "cd"}),
    (ev.STAGE_FINISHED, {"stage": "warm", "index": 1, "passed": True, "metrics": {},
                         "exit_criteria": {}, "missed": [], "checkpoint": "/c", "sha256": "e"}),
    (ev.HOOK_DELIVERED, {"hook": "ops", "event_id": 5, "kind": "gate.passed",
                         "trigger": "awaiting_approval", "attempts": 1, "status": 200,
                         "seconds": 0.01}),
    (ev.HOOK_DELIVERED, {"hook": "cmd", "event_id": 5, "kind": "gate.passed",
                         "trigger": "gate.passed", "attempts": 2, "exit": 0, "seconds": 0.2}),
    (ev.HOOK_FAILED, {"hook": "ops", "event_id": 5, "kind": "gate.passed",
                      "trigger": "gate.passed", "attempts": 4, "reason": "HTTP 500"}),
    (ev.LABELS_REQUESTED, {"rows": [17, 4, 9], "reason": "estimated accuracy 0.62 < 0.8",
                           "estimated_accuracy": 0.62, "low": 0.58, "high": 0.66,
                           "threshold": 0.8, "window": [1, 500]}),
]


def test_every_kind_has_a_payload_class_and_a_written_example() -> None:
    assert set(pl.PAYLOADS) == KINDS
    assert {kind for kind, _ in WRITTEN} == KINDS


@pytest.mark.parametrize(("kind", "data"), WRITTEN, ids=[k for k, _ in WRITTEN])
def test_payload_round_trips_to_the_same_json(kind: str, data: dict[str, Any]) -> None:
    payload = pl.parse(kind, data)
    assert type(payload) is pl.PAYLOADS[kind]
    assert payload.extra == {}  # every key a writer stores is a field
    assert to_json(payload.to_json()) == to_json(data)
    again = type(payload).from_json(payload.to_json())
    assert again == payload


def test_constructed_payloads_write_what_the_writers_wrote() -> None:
    bootstrap = pl.RetrainProgress(trigger_id="bootstrap", epoch=2, step=40, samples=640,
                                   loss=0.41, seconds=1.25, validated=False)
    assert bootstrap.to_json() == {**PROGRESS, "trigger_id": "bootstrap"}
    assert pl.RetrainProgress(**{**PROGRESS, "val_accuracy": None}).to_json() == {
        **PROGRESS, "val_accuracy": None}
    refused = pl.Gate(trigger_id=None, candidate="v2", champion="v1", passed=False,
                      reasons=("void",), next="refuse")
    assert refused.to_json() == WRITTEN[18][1]
    back = pl.ModelRolledBack(from_="v3", to="v2", reason="manual")
    assert back.to_json() == {"from": "v3", "to": "v2", "reason": "manual"}
    cancelled = pl.RetrainFailed(trigger_id="drift-7", reason="cancelled: stopping",
                                 seconds=0.5, cancelled=True)
    assert cancelled.to_json() == WRITTEN[14][1]


def test_fields_are_typed_values() -> None:
    gate = pl.parse(ev.GATE_FAILED, WRITTEN[16][1])
    assert isinstance(gate, pl.Gate)
    assert gate.checks == (pl.GateCheck(**CHECK),)
    assert gate.checks[0].numbers["gain"] == -0.032
    drift = pl.parse(ev.DRIFT_DETECTED, WRITTEN[4][1])
    assert isinstance(drift, pl.DriftDetected) and drift.window == (800, 900)
    promoted = pl.parse(ev.MODEL_PROMOTED, WRITTEN[22][1])
    assert isinstance(promoted, pl.ModelPromoted) and isinstance(promoted.gate, pl.GateVerdict)
    assert promoted.gate.noise == "n" and promoted.gate.checks[0].name == "new_data"


def test_an_old_format_payload_reads_with_defaults() -> None:
    # a retrain.finished from before steps, device and resumed_from_epoch were recorded,
    # and a drift.detected naming its report under the older key
    old = {"trigger_id": "drift-3", "candidate": "v2", "samples": 100, "epochs": 1,
           "seconds": 0.2, "final_loss": 0.5, "stopped_by": "epochs", "rows_train": 80,
           "rows_holdout": 20}
    got = pl.parse(ev.RETRAIN_FINISHED, old)
    assert isinstance(got, pl.RetrainFinished)
    assert (got.steps, got.device, got.resumed_from_epoch, got.wall_seconds) == (None,) * 4
    assert got.to_json() == old
    drift = pl.parse(ev.DRIFT_DETECTED, {"detector": "adwin", "row": 5,
                                         "report_path": "reports/r.html"})
    assert isinstance(drift, pl.DriftDetected)
    assert drift.report_file == "reports/r.html" and drift.signal == "" and drift.details == {}
    gate = pl.parse(ev.GATE_PASSED, {"candidate": "v2", "passed": True, "checks": [{}]})
    assert isinstance(gate, pl.Gate) and gate.checks[0].passed is False and not gate.has_risk


def test_unknown_keys_and_kinds_are_kept() -> None:
    newer = {"reason": "stopped", "rows_seen": 3, "uptime": 9.5}
    got = pl.parse(ev.DAEMON_STOPPED, newer)
    assert isinstance(got, pl.DaemonStopped) and got.extra == {"uptime": 9.5}
    assert got.to_json() == newer
    future = pl.parse("model.archived", {"version": "v1"})
    assert isinstance(future, pl.Unknown) and future.to_json() == {"version": "v1"}


def test_the_log_stores_a_dataclass_as_its_json(db: Database) -> None:
    log = EventLog(db)
    kind, data = WRITTEN[12]
    written = log.append(kind, pl.parse(kind, data), model_version="v2")
    [read] = log.list()
    assert read.raw == data == written.raw
    assert isinstance(read.payload, pl.RetrainFinished) and read.payload.rows_train == 240
    assert read == written
    assert Event(**read.to_dict()) == read
    with pytest.raises(ValueError, match="must be a RetrainFailed, got DaemonStopped"):
        log.append(ev.RETRAIN_FAILED, pl.DaemonStopped())
