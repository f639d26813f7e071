"""Issue 16's gate: golden rows the new data contradicts are not judged, and the new data
refuses a candidate only when it is shown worse."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.promotion.agreement import contradicted
from runtime.promotion.evidence import NEW_DATA, EvalSet, Evidence
from runtime.promotion.gate import evaluate
from runtime.promotion.settings import GateConfig
from runtime.training.retrain_job import kept_golden
from tests.conftest import small_config


def _probs(pred: np.ndarray) -> np.ndarray:
    return np.eye(2)[pred] * 0.8 + 0.1


def _concept_drift(n: int = 600, seed: int = 0) -> Evidence:
    """Old concept: y = x0 > 0. New concept: flipped. Champion fits the old, the candidate
    the new; on the golden set (old labels) the candidate is 'wrong' everywhere."""
    rng = np.random.default_rng(seed)
    gx, nx = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    gy, ny = (gx[:, 0] > 0).astype(int), (nx[:, 0] <= 0).astype(int)
    gold = EvalSet("v1", gy, _probs(gy), _probs(1 - gy), gx)
    new = EvalSet(NEW_DATA, ny, _probs(1 - ny), _probs(ny), nx)
    return Evidence("classification", ("a", "b"), (0, 1), {NEW_DATA: new, "v1": gold})


def test_contradicted_golden_rows_are_found() -> None:
    ev = _concept_drift()
    gone = contradicted(ev.sets["v1"], ev.sets[NEW_DATA])
    assert gone.mean() > 0.9


def test_a_golden_set_the_new_data_contradicts_is_obsolete_and_passes() -> None:
    d = evaluate(_concept_drift(), GateConfig(), ["v1"])
    assert d.passed, d.reasons
    gold = next(c for c in d.checks if c.name == "golden:v1")
    assert "obsolete" in gold.reason
    kept = evaluate(_concept_drift(), GateConfig(obsolete_golden="keep"), ["v1"])
    assert not kept.passed


def test_forgetting_what_still_holds_is_still_refused() -> None:
    """Same concept in old and new data: a candidate that lost the golden set is refused."""
    rng = np.random.default_rng(1)
    gx, nx = rng.normal(size=(600, 2)), rng.normal(size=(600, 2))
    gy, ny = (gx[:, 0] > 0).astype(int), (nx[:, 0] > 0).astype(int)
    wrong = rng.random(600) < 0.3
    cand = np.where(wrong, 1 - gy, gy)
    gold = EvalSet("v1", gy, _probs(gy), _probs(cand), gx)
    new = EvalSet(NEW_DATA, ny, _probs(ny), _probs(ny), nx)
    ev = Evidence("classification", ("a", "b"), (0, 1), {NEW_DATA: new, "v1": gold})
    assert contradicted(gold, new).mean() < 0.05
    d = evaluate(ev, GateConfig(), ["v1"])
    assert not d.passed
    assert [c.name for c in d.checks if not c.passed] == ["golden:v1"]


def _new_only(champion_acc: float, candidate_acc: float, n: int = 400) -> Evidence:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, n)
    right_a, right_b = rng.random(n) < champion_acc, rng.random(n) < candidate_acc
    a, b = np.where(right_a, y, 1 - y), np.where(right_b, y, 1 - y)
    s = EvalSet(NEW_DATA, y, _probs(a), _probs(b), rng.normal(size=(n, 1)))
    return Evidence("classification", ("f",), (0, 1), {NEW_DATA: s})


def test_new_data_refuses_only_a_candidate_shown_worse() -> None:
    same = evaluate(_new_only(0.75, 0.75), GateConfig())
    assert same.passed, same.reasons  # not shown better, but not shown worse either
    worse = evaluate(_new_only(0.80, 0.60), GateConfig())
    assert not worse.passed
    assert "shown to lose" in worse.reasons[0]
    legacy = evaluate(_new_only(0.75, 0.75), GateConfig(min_gain=0.02))
    assert not legacy.passed  # a set min_gain still asks for a shown gain


def test_a_version_keeps_only_the_newest_golden_sets(tmp_path: Path) -> None:
    index = ["v1", "v2", "v3"]
    one = small_config(tmp_path)
    assert one.golden.max_sets == 1 and kept_golden(index, one) == ["v3"]
    every = small_config(tmp_path, golden={"max_sets": None})
    assert kept_golden(index, every) == index
