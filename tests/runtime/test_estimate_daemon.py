"""The label-free estimate end to end: one daemon burst over a finite directory source
where the champion's confidence falls on a covariate shift, so ``policy.estimate``'s alert
fires with its band, ``labels.requested`` names the least confident unlabelled rows, and a
hook fires on it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from runtime.config import DriftloopConfig, parse_config
from runtime.daemon import Daemon
from runtime.intake.demo_stream import segment_rows
from runtime.intake.settings import Segment
from runtime.store import events as ev
from runtime.store.db import Database, served_confidence
from runtime.store.estimated import calibration_error, estimated, estimated_summary
from runtime.store.events import EventLog
from runtime.store.versions import Registry
from tests.conftest import FEATURES
from tests.runtime.handoff.receiver import Receiver

TRAIN_ROWS, SHIFT_ROWS, WINDOW, ASK = 1200, 400, 200, 25


def _frame(segment: Segment, seed: int, labelled: bool) -> pd.DataFrame:
    got = list(segment_rows(segment, seed))
    frame = pd.DataFrame([x for x, _ in got], columns=FEATURES)
    frame["class"] = [y for _, y in got] if labelled else None
    return frame


def _config(tmp_path: Path, url: str) -> DriftloopConfig:
    return parse_config({
        "state_dir": str(tmp_path / "state"), "seed": 3,
        "schema": {"features": FEATURES, "label": "class", "classes": [0, 1]},
        "source": {"kind": "directory", "path": str(tmp_path / "inbox"), "settle_seconds": 0,
                   "poll_seconds": 0.05},
        "model": {"kind": "mlp", "hidden": [32, 32]},
        "bootstrap": {"rows": TRAIN_ROWS, "epochs": 30},
        "detectors": [{"kind": "adwin", "signal": "error"}],
        "policy": {"estimate": {"window": WINDOW, "alert_below": 0.9, "request_labels": ASK}},
        "hooks": [{"name": "labelling", "on": ["labels.requested"], "url": url,
                   "backoff_seconds": 0.05}],
    }, origin="test")


def test_a_falling_confidence_alerts_requests_labels_and_fires_the_hook(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    # v1 learns Agrawal function 1 over all ages and salaries; unlabelled rows from the
    # same region follow (no alert), then only young customers earning near the 50K
    # boundary: the same labelling function (a covariate shift), where v1 is unsure
    everyone = Segment(rows=TRAIN_ROWS, function=1)
    _frame(everyone, 11, True).to_csv(inbox / "a.csv", index=False)
    _frame(everyone.model_copy(update={"rows": SHIFT_ROWS}), 12, False).to_csv(
        inbox / "b.csv", index=False)
    near = Segment(rows=SHIFT_ROWS, function=1,
                   where={"age": (20.0, 40.0), "salary": (45_000.0, 55_000.0)})
    _frame(near, 13, False).to_csv(inbox / "c.csv", index=False)
    with Receiver() as rx:
        cfg = _config(tmp_path, rx.url)
        Daemon(cfg).run(until_drained=True)
        bodies = rx.bodies()
    db = Database.for_state_dir(cfg.state_dir, None)
    log = EventLog(db)
    shift_first = TRAIN_ROWS + SHIFT_ROWS + 1  # row numbers start at 1
    alerts = [e for e in log.list(kinds=[ev.DRIFT_DETECTED])
              if e.raw["detector"] == "estimated_accuracy"]
    assert len(alerts) == 1, [a.raw for a in alerts]
    alert = alerts[0].raw
    assert alert["action"] == "alert" and alert["threshold"] == 0.9
    assert alert["window"][0] >= shift_first  # the shifted rows, not the ones before
    before = estimated(db, WINDOW, "v1", error=calibration_error(
        Registry(db, cfg.state_dir / "models", log).get("v1").meta), upto=shift_first - 1)
    assert before.high is not None and before.high >= 0.9  # the rows before: no alert
    band = alert["details"]
    assert band["low"] <= band["accuracy"] <= band["high"] < 0.9
    assert f"(band {band['low']:.3f}-{band['high']:.3f})" in alert["reason"]

    summary = estimated_summary(db, "v1", Registry(db, cfg.state_dir / "models", log).get(
        "v1").meta, window=WINDOW)  # what status, the API and the metrics show
    assert summary is not None and summary["value"] == pytest.approx(band["accuracy"])
    assert summary["macro_f1"] == pytest.approx(band["macro_f1"], abs=1e-5)

    (asked,) = log.list(kinds=[ev.LABELS_REQUESTED])
    rows = asked.raw["rows"]
    assert asked.model_version == "v1" and len(rows) == ASK
    assert asked.raw["high"] == band["high"] and asked.raw["threshold"] == 0.9
    first, last = asked.raw["window"]
    with db.connect() as conn:
        conf = dict(conn.execute(select(served_confidence.c.row_seq,
                                        served_confidence.c.confidence).where(
            served_confidence.c.row_seq >= first, served_confidence.c.row_seq <= last)).all())
    assert set(rows) <= set(conf) and min(rows) >= shift_first
    others = [c for s, c in conf.items() if s not in set(rows)]
    assert max(conf[s] for s in rows) <= min(others)  # the least confident first

    (body,) = [b for b in bodies if b["trigger"] == ev.LABELS_REQUESTED]
    assert body["event"]["payload"]["rows"] == rows
    delivered = log.list(kinds=[ev.HOOK_DELIVERED])
    assert [(e.raw["hook"], e.raw["kind"]) for e in delivered] == [
        ("labelling", ev.LABELS_REQUESTED)]
    db.dispose()
