"""The windowed per-feature KS test."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from detectors import ks
from detectors.base import DriftSignal, ReferenceDetector
from detectors.correction import adjust
from detectors.windowed import WindowedDetector

FEATURES = ["a", "b", "c", "d"]


def make(**kw: Any) -> WindowedDetector:
    det = ks.build(ks.Config(**kw), FEATURES)
    assert isinstance(det, WindowedDetector) and isinstance(det, ReferenceDetector)
    return det


def normal(n: int, seed: int, shift: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, len(FEATURES))) + shift


def test_per_feature_table() -> None:
    det = make()
    det.set_reference(normal(2000, 0))
    det.update(normal(500, 1, shift=(0.0, 1.0, 0.0, -0.5)))
    sig = det.check()
    assert sig.drift and sig.threshold == 0.001  # 100 rows / 100,000 rows
    table = sig.details["features"]
    assert [r["feature"] for r in table] == FEATURES
    assert [r["drifted"] for r in table] == [False, True, False, True]
    assert set(table[0]) >= {
        "feature",
        "statistic",
        "p_value",
        "p_adjusted",
        "drifted",
        "ref_mean",
        "cur_mean",
    }
    assert table[1]["cur_mean"] == pytest.approx(1.0, abs=0.15)
    assert table[1]["ref_mean"] == pytest.approx(0.0, abs=0.1)
    assert sig.statistic == min(r["p_adjusted"] for r in table)
    assert sig.details["max_statistic"] == max(r["statistic"] for r in table)
    assert sig.details["tested"] == 4 and sig.details["drifted"] == 2
    assert sig.window is not None and sig.window[0] == 0
    assert sig.onset == sig.window[0] and sig.index == sig.window[1]
    json.dumps(sig.to_dict())


def test_statistics_agree_with_scipy() -> None:
    det = make(correction="none")
    ref, cur = normal(2000, 0), normal(300, 1, shift=(0.0, 0.2, 0.0, 0.0))
    ref[::7, 2] = np.nan
    cur[::5, 3] = np.inf
    cur[:, 0] = np.round(cur[:, 0])  # ties
    ref[:, 0] = np.round(ref[:, 0])
    det.set_reference(ref)
    det.update(cur)
    for j, row in enumerate(det.check().details["features"]):
        a, b = ref[:, j][np.isfinite(ref[:, j])], cur[:, j][np.isfinite(cur[:, j])]
        expected = stats.ks_2samp(a, b, method="asymp")
        assert row["statistic"] == pytest.approx(expected.statistic, abs=1e-12)
        assert row["p_value"] == pytest.approx(expected.pvalue, abs=1e-12)
        assert row["p_adjusted"] == row["p_value"]
        assert row["n_ref"] == len(a) and row["n_cur"] == len(b)


def test_corrections() -> None:
    p = np.array([0.004, 0.02, 0.01, 0.5])
    assert adjust(p, "none").tolist() == p.tolist()
    assert adjust(p, "bonferroni").tolist() == pytest.approx([0.016, 0.08, 0.04, 1.0])
    assert adjust(p, "holm").tolist() == pytest.approx([0.016, 0.04, 0.03, 0.5])
    assert adjust(np.zeros(0), "holm").tolist() == []

    ref, cur = normal(2000, 0), normal(500, 1, shift=(0.0, 0.0, 0.0, 0.17))
    p_adj = {}
    for correction in ("none", "holm", "bonferroni"):
        det = make(correction=correction)
        det.set_reference(ref)
        det.update(cur)
        table = det.check().details["features"]
        p_adj[correction] = np.array([r["p_adjusted"] for r in table])
    assert np.all(p_adj["none"] <= p_adj["holm"])
    assert np.all(p_adj["holm"] <= p_adj["bonferroni"])


@pytest.mark.parametrize(("share", "alarm"), [(0.0, True), (0.25, True), (0.5, False)])
def test_drift_share(share: float, alarm: bool) -> None:
    det = make(drift_share=share)
    det.set_reference(normal(2000, 0))
    det.update(normal(500, 1, shift=(0.0, 0.0, 0.0, 2.0)))  # one feature of four
    assert det.check().drift is alarm


def test_constant_windows_are_not_enough_data() -> None:
    det = make()
    det.set_reference(np.zeros((2000, 4)))
    det.update(np.zeros((500, 4)))
    assert det.check().status == "not_enough_data"
    det.update(np.ones((500, 4)))  # constant at another value: still untestable
    sig = det.check()
    assert sig.status == "not_enough_data"
    assert all(r["p_value"] is None and not r["drifted"] for r in sig.details["features"])


def test_one_constant_feature_is_left_out() -> None:
    det = make()
    ref = normal(2000, 0)
    ref[:, 1] = 3.0
    det.set_reference(ref)
    det.update(normal(500, 1))
    sig = det.check()
    assert sig.status == "ok" and sig.details["tested"] == 3
    assert sig.details["features"][1]["p_value"] is None


def test_tiny_windows_are_not_enough_data() -> None:
    det = make(reference_size=300, window_size=100, min_samples=50, stride=10)
    det.update(normal(300, 0))  # fills the reference
    det.update(normal(40, 1, shift=(5.0, 5.0, 5.0, 5.0)))
    assert det.check().status == "not_enough_data"
    det.update(normal(10, 2, shift=(5.0, 5.0, 5.0, 5.0)))
    assert det.check().drift


def test_nan_column_is_not_enough_data() -> None:
    det = make()
    det.set_reference(normal(2000, 0))
    det.update(np.full((500, 4), np.nan))
    sig = det.check()
    assert sig.status == "not_enough_data"
    assert sig.details["nonfinite"] == dict.fromkeys(FEATURES, 500)
    assert all(r["cur_mean"] is None for r in sig.details["features"])


def test_reference_fills_from_the_first_rows() -> None:
    det = make(reference_size=1000)
    det.update(normal(700, 0))
    assert det.check().details == {
        "alarms": 0,
        "nonfinite": dict.fromkeys(FEATURES, 0),
        "reference_rows": 700,
        "window_rows": 0,
    }
    det.update(normal(800, 1))  # 300 more complete the reference, 500 start the window
    sig = det.check()
    assert sig.details["reference_rows"] == 1000 and sig.details["window_rows"] == 500
    assert sig.window == (1000, 1499)


def test_set_reference_replaces_and_keeps_the_latest_rows() -> None:
    det = make(reference_size=1000)
    det.set_reference(normal(3000, 0, shift=(1.0, 1.0, 1.0, 1.0)))
    det.update(normal(500, 1))  # no filling: the rows go to the window
    sig = det.check()
    assert sig.drift and sig.details["reference_rows"] == 1000
    shifted = normal(2000, 2)
    det.set_reference(shifted)
    det.update(normal(100, 3))
    assert det.check().status == "ok"


def test_tests_run_every_stride_rows_within_a_batch() -> None:
    det = make()
    det.set_reference(normal(2000, 0))
    # drift inside one large batch that ends with enough normal rows to hide it
    det.update(np.concatenate([normal(500, 1, shift=(3.0, 0, 0, 0)), normal(2000, 2)]))
    sig = det.check()
    assert sig.drift and sig.details["alarms"] >= 1
    assert sig.index is not None and sig.index < 1000
    assert det.check().status == "ok"  # the latch is reported once


def test_reset_keeps_the_reference() -> None:
    det = make()
    det.set_reference(normal(2000, 0))
    det.update(normal(500, 1, shift=(2.0, 0, 0, 0)))
    det.reset()
    sig = det.check()
    assert sig.status == "not_enough_data" and sig.details["reference_rows"] == 2000


def test_state_round_trip_with_nan() -> None:
    det = make()
    ref = normal(2000, 0)
    ref[::3, 0] = np.nan
    det.set_reference(ref)
    det.update(normal(250, 1))
    state = json.loads(json.dumps(det.state(), allow_nan=False))
    other = make()
    other.load_state(state)
    later = normal(400, 2, shift=(0.0, 0.7, 0.0, 0.0))
    a, b = [], []
    for i in range(0, 400, 50):
        det.update(later[i : i + 50])
        other.update(later[i : i + 50])
        a.append(det.check())
        b.append(other.check())
    assert a == b and any(s.drift for s in a)
    with pytest.raises(ValueError, match="watches"):
        ks.build(ks.Config(features=["a"]), FEATURES).load_state(state)


def test_feature_subset_and_errors() -> None:
    det = ks.build(ks.Config(features=["c"]), FEATURES)
    det.set_reference(normal(2000, 0))
    det.update(normal(500, 1, shift=(5.0, 5.0, 0.0, 5.0)))
    sig = det.check()
    assert [r["feature"] for r in sig.details["features"]] == ["c"] and not sig.drift
    with pytest.raises(ValueError, match="unknown"):
        ks.build(ks.Config(features=["z"]), FEATURES)
    with pytest.raises(ValueError, match="rows x 4"):
        det.update(np.zeros((10, 3)))
    with pytest.raises(ValidationError):
        ks.Config(min_samples=600)
    with pytest.raises(ValidationError):
        ks.Config(signal="error")  # type: ignore[arg-type]


def test_empty_reference_never_alarms() -> None:
    det = make()
    det.set_reference(np.zeros((0, 4)))
    det.update(normal(1000, 0))
    sig = det.check()
    assert isinstance(sig, DriftSignal) and sig.status == "not_enough_data"


@pytest.mark.parametrize("kind", ["ks", "chi2", "psi", "jensenshannon", "wasserstein"])
def test_a_numeric_feature_listed_as_categorical_is_not_tested(kind: str) -> None:
    # every new value of a continuous feature is an unseen category: PSI alarmed on every
    # test of stationary data
    from detectors.registry import DETECTORS

    module = DETECTORS[kind]
    rng = np.random.default_rng(0)
    x = rng.normal(50, 10, (6000, 4))
    x[:, 1] = rng.integers(0, 3, 6000)  # a real categorical column stays tested
    det = module.build(
        module.Config.model_validate({"categorical": ["a", "b"], "features": ["a", "b"]}),
        FEATURES,
    )
    det.update(x)
    s = det.check()
    assert s.status == "ok", s
    rows = {r["feature"]: r["status"] for r in s.details["features"]}
    assert rows == {"a": "not_category_codes", "b": "tested"}


PER_FEATURE = ["ks", "cvm", "chi2", "psi", "jensenshannon", "wasserstein"]


@pytest.mark.parametrize("kind", PER_FEATURE)
def test_a_stuck_sensor_alarms(kind: str) -> None:
    """A feature whose current window is stuck at one value (a sensor frozen at its last
    reading) drifted from a reference with spread; it was marked 'constant' and never
    tested, so a stuck sensor never alarmed."""
    from detectors.registry import DETECTORS, build

    det = build(DETECTORS[kind].Config(), FEATURES)  # type: ignore[call-arg]
    assert isinstance(det, WindowedDetector)
    det.set_reference(normal(2000, 0))
    cur = normal(500, 1)
    cur[:, 2] = 0.0  # stuck at the reference's mean
    det.update(cur)
    sig = det.check()
    assert sig.drift, kind
    rows = sig.details["features"]
    assert rows[2]["drifted"] and rows[2]["status"] == "tested", kind
    assert not any(r["drifted"] for i, r in enumerate(rows) if i != 2), kind


def test_a_window_at_one_value_of_a_mostly_constant_feature_is_not_drift() -> None:
    """The test decides, not the window's spread: a feature at 0 in 99.5 % of the rows
    often fills a window with zeros alone, and that is no drift."""
    rng = np.random.default_rng(3)
    ref = normal(2000, 0)
    ref[:, 1] = (rng.random(2000) < 0.005).astype(float)
    det = make()
    det.set_reference(ref)
    cur = normal(500, 1)
    cur[:, 1] = 0.0
    det.update(cur)
    sig = det.check()
    assert not sig.drift and sig.details["features"][1]["status"] == "tested"
