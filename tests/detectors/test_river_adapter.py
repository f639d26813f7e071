"""The river adapter: what the conformance suite does not cover."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from detectors import adwin, ddm, eddm, fhddm, hddm_a, hddm_w, kswin, pagehinkley
from detectors.river_adapter import ENGINES, StreamDetector, change_point


def errors(n: int, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < rate).astype(np.float64)


def test_change_point() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 3000), rng.normal(1, 1, 40)])
    assert abs(change_point(x) - 3000) <= 10
    assert change_point(np.zeros(0)) == 0
    assert change_point(np.ones(1)) == 0
    assert 1 <= change_point(np.ones(10)) <= 9  # flat: any split, never the ends


def test_every_engine_builds_and_runs() -> None:
    for engine in ENGINES:
        det = StreamDetector(engine, {}, name=engine, signal="error")
        det.update(errors(300, 0.1, 0))
        assert det.check().status in ("ok", "drift")


def test_index_defaults_to_a_running_count_and_follows_the_given_one() -> None:
    det = adwin.build(adwin.Config(min_samples=0), [])
    det.update(np.zeros(5))
    assert det.check().window == (0, 4)
    det.update(np.zeros(3), np.array([100, 101, 103]))
    det.update(np.zeros(2))
    assert det.check().window == (0, 105)


def test_first_alarm_latched_and_alarms_counted() -> None:
    det = adwin.build(adwin.Config(), [])
    x = np.concatenate([errors(2000, 0.1, 0), errors(2000, 0.9, 1), errors(2000, 0.1, 2)])
    det.update(x)  # one batch, several alarms
    sig = det.check()
    assert sig.drift and sig.details["alarms"] >= 2
    assert sig.index is not None and 2000 <= sig.index < 2200
    assert sig.details["adwin_window_start"] <= sig.index
    assert sig.statistic is not None and sig.statistic > 0.5
    assert sig.details["mean_after"] > sig.details["mean_before"]
    assert not det.check().drift


def test_alarms_before_min_samples_are_ignored() -> None:
    det = adwin.build(adwin.Config(min_samples=10_000), [])
    det.update(np.concatenate([errors(2000, 0.1, 0), errors(2000, 0.9, 1)]))
    assert det.check().status == "not_enough_data"


def test_fhddm_watches_rising_errors() -> None:
    x = np.concatenate([errors(1000, 0.1, 0), errors(500, 0.5, 1)])
    det = fhddm.build(fhddm.Config(), [])
    det.update(x)
    assert det.check().drift
    raw = StreamDetector("FHDDM", {}, name="raw", signal="error", invert=False)
    raw.update(x)
    assert not raw.check().drift  # river's FHDDM alone alarms only on falling values


def test_pagehinkley_mode_up_ignores_falling_error() -> None:
    x = np.concatenate([errors(1000, 0.2, 0), np.zeros(2000)])
    for mode, alarm in (("up", False), ("both", True)):
        det = pagehinkley.build(pagehinkley.Config.model_validate({"mode": mode}), [])
        det.update(x)
        assert det.check().drift is alarm


def test_error_detectors_reject_values_outside_unit_interval() -> None:
    det = StreamDetector("DDM", {}, name="ddm", signal="error")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        det.update(np.array([0.0, 2.5]))
    with pytest.raises(ValueError, match="loss"):
        ddm.build(ddm.Config(signal="loss"), [])


@pytest.mark.parametrize("module", [ddm, eddm, fhddm, hddm_a, hddm_w])
def test_error_detectors_refuse_a_feature_at_build(module: Any) -> None:
    # a numeric feature (ages 20..80) used to pass validate and fail every batch at runtime
    with pytest.raises(ValueError, match="not feature 'age'"):
        module.build(module.Config(signal="age"), ["age"])


@pytest.mark.parametrize("module", [ddm, fhddm, hddm_a])
def test_error_detectors_on_confidence_alarm_when_it_falls(module: Any) -> None:
    rng = np.random.default_rng(0)
    sure = np.clip(rng.normal(0.9, 0.05, 3000), 0, 1)
    unsure = np.clip(rng.normal(0.6, 0.1, 3000), 0, 1)
    for first, then, alarm in ((sure, unsure, True), (unsure, sure, False)):
        det = module.build(module.Config(signal="confidence"), [])
        det.update(first)
        assert not det.check().drift
        det.update(then)
        assert det.check().drift is alarm


def test_signal_and_shape_are_checked() -> None:
    with pytest.raises(ValueError, match="'y'"):
        adwin.build(adwin.Config(signal="y"), ["x"])
    with pytest.raises(ValueError, match="features"):
        adwin.build(adwin.Config(signal="features"), ["x"])
    det = adwin.build(adwin.Config(), [])
    with pytest.raises(ValueError, match="1-D"):
        det.update(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="index"):
        det.update(np.zeros(3), np.arange(2))
    with pytest.raises(ValueError, match="ADWIN"):
        det.load_state({**det.state(), "engine": "DDM"})


def test_state_is_bounded_and_restores_past_the_history_cap() -> None:
    det = StreamDetector("ADWIN", {}, name="a", signal="error", history_size=500)
    det.update(errors(3000, 0.1, 0))
    state = json.loads(json.dumps(det.state()))
    assert len(state["history"]["values"]) == 500
    other = StreamDetector("ADWIN", {}, name="a", signal="error", history_size=500)
    other.load_state(state)
    shift = errors(1000, 0.6, 1)
    det.update(shift)
    other.update(shift)
    a, b = det.check(), other.check()
    assert a.drift and b.drift  # approximate past the cap: both still see the shift
    assert a.onset == b.onset


def test_kswin_seed_makes_runs_reproducible() -> None:
    x = np.random.default_rng(0).normal(size=400)
    x[250:] += 2.0
    signals = []
    for _ in range(2):
        det = kswin.build(kswin.Config(), [])
        det.update(x)
        signals.append(det.check())
    assert signals[0] == signals[1] and signals[0].drift


def test_compiled_engines_restore_exactly_past_the_history_cap() -> None:
    x = np.concatenate([errors(3000, 0.1, 0), errors(1500, 0.4, 1)])
    signals = []
    for restore in (False, True):
        det = StreamDetector("HDDMW", {}, name="h", signal="error", history_size=500)
        det.update(x[:3000])
        if restore:
            state = json.loads(json.dumps(det.state()))
            assert len(state["history"]["values"]) == 500 and state["engine_state"]
            det = StreamDetector("HDDMW", {}, name="h", signal="error", history_size=500)
            det.load_state(state)
        out = []
        for i in range(3000, len(x), 100):
            det.update(x[i : i + 100], np.arange(i, i + 100))
            out.append(det.check())
        signals.append(out)
    assert signals[0] == signals[1] and any(s.drift for s in signals[0])
