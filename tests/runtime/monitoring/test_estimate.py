"""The label-free estimate (CBPE): right in expectation on a calibrated model, and its
alert and label requests fire when they should and not otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.monitoring.estimate import DETECTOR, EstimateWatch, cbpe, expected_macro_f1
from runtime.monitoring.settings import EstimateConfig
from runtime.store import events as ev
from runtime.store.db import Database
from runtime.store.events import EventLog


def _calibrated(rng: np.random.Generator, n: int, k: int = 3, scale: float = 1.5):
    """Probabilities and labels drawn from them: a perfectly calibrated model."""
    z = rng.normal(size=(n, k)) * scale
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)
    return p, np.minimum(y, k - 1)


def _macro_f1(pred: np.ndarray, y: np.ndarray, k: int) -> float:
    scores = []
    for c in range(k):
        tp = np.sum((pred == c) & (y == c))
        denom = np.sum(pred == c) + np.sum(y == c)
        if denom:
            scores.append(2 * tp / denom)
    return float(np.mean(scores))


def test_cbpe_equals_the_true_accuracy_in_expectation_on_a_calibrated_model() -> None:
    rng = np.random.default_rng(0)
    gaps, inside, f1_gaps = [], 0, []
    for _ in range(300):
        p, y = _calibrated(rng, 500)
        est = cbpe(p)
        real = float((p.argmax(axis=1) == y).mean())
        gaps.append(est.accuracy - real)
        inside += est.low <= real <= est.high
        f1_gaps.append(est.macro_f1 - _macro_f1(p.argmax(axis=1), y, 3))
    assert abs(np.mean(gaps)) < 0.003  # unbiased
    assert 0.90 <= inside / 300 <= 0.99  # the band covers about 95 %
    assert abs(np.mean(f1_gaps)) < 0.01 and np.std(f1_gaps) < 0.04


def test_expected_macro_f1_of_certain_predictions_is_one() -> None:
    p = np.eye(3)[[0, 1, 2, 1]]
    assert expected_macro_f1(p) == pytest.approx(1.0)
    assert cbpe(p).accuracy == 1.0


def _watch(tmp_path: Path, **cfg: object) -> tuple[EstimateWatch, EventLog]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = Database.for_state_dir(tmp_path, None)
    db.create_all()
    events = EventLog(db)
    return EstimateWatch(EstimateConfig(window=100, **cfg), events, lambda _: None), events


def _rows(start: int, n: int, top: float, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows numbered from ``start`` whose top probability is about ``top``."""
    rng = np.random.default_rng(start)
    c = np.clip(top + rng.normal(scale=0.02, size=n), 1 / k + 0.01, 1.0)
    p = np.stack([c, 1 - c], axis=1)
    return np.arange(start, start + n), p


def test_the_alert_and_label_request_fire_once_below_the_threshold(tmp_path: Path) -> None:
    watch, events = _watch(tmp_path, alert_below=0.8, request_labels=5)
    watch.reset(error=0.01)
    for start in range(1, 301, 50):  # confident rows: no alert
        watch.observe(*_rows(start, 50, 0.95), np.ones(50, bool), "v1")
    assert events.count() == 0 and watch.last is not None and watch.last.accuracy > 0.9
    s1, p1 = _rows(301, 50, 0.6)
    known = np.ones(50, bool)
    known[:10] = False  # rows 301-310 are labelled already: never requested
    watch.observe(s1, p1, known, "v1")  # half the window: the band still reaches 0.8
    assert events.count() == 0
    s2, p2 = _rows(351, 50, 0.6)
    watch.observe(s2, p2, np.ones(50, bool), "v1")  # rows 301-400 all uncertain: alert
    for start in (401, 451):  # still below: no second alert while latched
        watch.observe(*_rows(start, 50, 0.6), np.ones(50, bool), "v1")
    alerts = events.list(kinds=[ev.DRIFT_DETECTED])
    assert len(alerts) == 1
    alert = alerts[0].payload_as(ev.DriftDetected)
    assert alert.detector == DETECTOR and alert.action == "alert" and alert.threshold == 0.8
    assert alert.statistic is not None and alert.statistic < 0.8 and alert.window == (301, 400)
    asked = events.list(kinds=[ev.LABELS_REQUESTED])
    assert len(asked) == 1 and asked[0].model_version == "v1"
    req = asked[0].payload_as(ev.LabelsRequested)
    assert len(req.rows) == 5 and req.threshold == 0.8
    seqs, top = np.concatenate([s1[10:], s2]), np.concatenate([p1[10:], p2]).max(axis=1)
    assert list(req.rows) == seqs[np.argsort(top, kind="stable")][:5].tolist()
    for start in range(501, 701, 50):  # recovered, then falls again: a second alert
        watch.observe(*_rows(start, 50, 0.97), np.ones(50, bool), "v1")
    watch.observe(*_rows(701, 100, 0.55), np.ones(100, bool), "v1")
    assert len(events.list(kinds=[ev.DRIFT_DETECTED])) == 2
    again = EstimateWatch(watch.cfg, events, lambda _: None)  # a restart, still below
    again.reset(error=0.01, champion="v1")
    again.observe(*_rows(801, 100, 0.55), np.ones(100, bool), "v1")
    assert len(events.list(kinds=[ev.DRIFT_DETECTED])) == 2  # not alerted twice
    again.reset(error=0.01, champion="v2")  # a new champion may alert afresh
    again.observe(*_rows(901, 100, 0.55), np.ones(100, bool), "v2")
    assert len(events.list(kinds=[ev.DRIFT_DETECTED])) == 3


def test_no_threshold_or_no_request_means_no_event(tmp_path: Path) -> None:
    watch, events = _watch(tmp_path)  # alert_below unset
    watch.observe(*_rows(1, 200, 0.55), np.ones(200, bool), "v1")
    assert watch.last is not None and events.count() == 0
    watch, events = _watch(tmp_path / "b", alert_below=0.9)  # request_labels 0
    watch.observe(*_rows(1, 200, 0.55), np.ones(200, bool), "v1")
    assert [e.kind for e in events.list()] == [ev.DRIFT_DETECTED]


def test_a_disabled_estimate_watches_nothing(tmp_path: Path) -> None:
    watch, events = _watch(tmp_path, enabled=False, alert_below=0.9)
    assert watch.observe(*_rows(1, 200, 0.55), np.ones(200, bool), "v1") is None
    assert events.count() == 0
