"""The gate on a regression model: MAE rules, lower is better, changes relative to the
champion's MAE, the same noise-aware bounds as accuracy."""

from __future__ import annotations

import numpy as np

from runtime.promotion.evidence import EvalSet, Evidence
from runtime.promotion.gate import evaluate, rules_of
from runtime.promotion.settings import GateConfig


def _evidence(new_err: tuple[float, float], gold_err: tuple[float, float]) -> Evidence:
    """Champion and candidate with absolute errors of the given sizes (noisy)."""
    rng = np.random.default_rng(0)
    sets = {}
    for name, (champ, cand) in (("new_data", new_err), ("v1", gold_err)):
        y = rng.normal(50.0, 5.0, 300)
        noise = rng.normal(0.0, 1.0, 300)
        sets[name] = EvalSet(name, y, y + champ * noise, y + cand * noise, np.zeros((300, 1)))
    return Evidence("regression", ("f",), (), sets)


def test_default_rules_for_regression_are_on_mae_and_relative() -> None:
    rules = rules_of(GateConfig(), "regression")
    assert [(r.metric, r.on, r.relative) for r in rules] == [
        ("mae", "new_data", True), ("mae", "golden", True)]
    assert rules_of(GateConfig())[0].metric == "accuracy"  # classification unchanged


def test_a_candidate_that_cuts_the_mae_and_keeps_the_golden_set_passes() -> None:
    decision = evaluate(_evidence((3.0, 1.0), (1.0, 1.01)), GateConfig(), ["v1"])
    assert decision.passed, decision.reasons
    new = next(c for c in decision.checks if c.name == "new_data")
    assert new.metric == "mae" and new.candidate < new.champion
    assert "MAE" in new.reason


def test_a_candidate_shown_worse_on_new_data_or_forgetting_is_refused() -> None:
    worse = evaluate(_evidence((1.0, 2.0), (1.0, 1.0)), GateConfig(), ["v1"])
    assert not worse.passed and any("new-data" in r and "MAE" in r for r in worse.reasons)
    forgot = evaluate(_evidence((3.0, 1.0), (1.0, 1.5)), GateConfig(max_forgetting=0.1), ["v1"])
    assert not forgot.passed
    assert any("golden set 'v1'" in r and "MAE" in r for r in forgot.reasons)


def test_the_rollback_watch_compares_live_absolute_errors() -> None:
    import torch

    from runtime.promotion.watch import PairedLive, worse_than_before

    good, bad = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        for m, bias in ((good, 0.0), (bad, 3.0)):
            m.weight.fill_(1.0)
            m.bias.fill_(bias)
    x = np.linspace(-5, 5, 200)[:, None]
    y = x[:, 0] + np.random.default_rng(0).normal(0, 0.5, 200)
    y[::10] = np.nan  # unlabelled rows are skipped
    live = PairedLive("v1", "v2", good, bad, wanted=150)
    live.add(np.arange(200), x, y)
    found = worse_than_before(live, alpha=0.01)
    assert found is not None and found["mae"] > found["predecessor_mae"]
    assert found["rows"] == 180 and "MAE" in found["summary"]
    fine = PairedLive("v1", "v2", bad, good, wanted=150)
    fine.add(np.arange(200), x, y)
    assert worse_than_before(fine, alpha=0.01) is None
