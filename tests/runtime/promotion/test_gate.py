"""The regression gate: rules, noise-awareness, every fail-closed path, monotonicity."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from runtime.promotion.evidence import NEW_DATA, EvalSet, Evidence
from runtime.promotion.gate import Check, GateDecision, evaluate, refused, rules_of
from runtime.promotion.settings import GateConfig, Rule

FEATURES = ("age", "salary")

LEGACY = GateConfig(min_gain=0.02, obsolete_golden="keep", forgetting="bounded")
"""The gate as it was before issue 16: a shown gain on new data, every golden row judged,
forgetting refused unless shown to be within the tolerance."""


def probs(y: np.ndarray, right: np.ndarray, sure: float = 0.8) -> np.ndarray:
    """Two-class probabilities that are right exactly where ``right`` is True."""
    pred = np.where(right, y, 1 - y)
    p = np.full((len(y), 2), 1 - sure)
    p[np.arange(len(y)), pred] = sure
    return p


def make_set(
    name: str,
    n: int,
    champ_acc: float,
    cand_acc: float,
    *,
    shared: float | None = None,
    seed: int = 0,
) -> EvalSet:
    """A set where the champion is right on ``champ_acc`` of rows and the candidate on
    ``cand_acc``; both are right together on ``shared`` of rows (default: as much as
    possible, so they disagree as little as the accuracies allow)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a, b = round(champ_acc * n), round(cand_acc * n)
    both = min(a, b) if shared is None else round(shared * n)
    champ = np.zeros(n, dtype=bool)
    cand = np.zeros(n, dtype=bool)
    champ[:both] = cand[:both] = True
    champ[both:a] = True
    cand[a : a + b - both] = True
    order = rng.permutation(n)
    x = np.column_stack([rng.uniform(20, 80, n), rng.uniform(0, 1, n)])
    return EvalSet(name, y, probs(y, champ[order]), probs(y, cand[order]), x)


def evidence(*sets: EvalSet) -> Evidence:
    return Evidence("classification", FEATURES, (0, 1), {s.name: s for s in sets})


def default_evidence(
    new: tuple[float, float] = (0.80, 0.90), gold: tuple[float, float] = (0.95, 0.95)
) -> Evidence:
    return evidence(make_set(NEW_DATA, 400, *new), make_set("v1", 400, *gold, seed=1))


def check(decision: GateDecision, name: str, metric: str = "accuracy") -> Check:
    return next(c for c in decision.checks if c.name == name and c.metric == metric)


# -- the simple config is the default rule set ---------------------------------------------


def test_simple_thresholds_make_the_default_rules() -> None:
    rules = rules_of(GateConfig(min_gain=0.05, min_accuracy=0.8, max_forgetting=0.01))
    assert [(r.on, r.min_improvement, r.at_least, r.require) for r in rules[:1]] == [
        ("new_data", 0.05, 0.8, "any")
    ]
    # forgetting: shown (the default) refuses only a loss shown above the tolerance
    assert (rules[1].on, rules[1].max_shown_worsening) == ("golden", 0.01)
    bounded = rules_of(GateConfig(max_forgetting=0.01, forgetting="bounded"))
    assert (bounded[1].on, bounded[1].max_worsening) == ("golden", 0.01)


def test_passes_with_a_gain_and_no_forgetting() -> None:
    d = evaluate(default_evidence(), LEGACY, ["v1"])
    assert d.passed, d.reasons
    assert d.reasons == ("All 2 checks passed.",)
    assert [c.name for c in d.checks] == ["new_data", "golden:v1"]
    new = check(d, "new_data")
    assert (new.champion, new.candidate, new.n) == (0.80, 0.90, 400)
    assert new.threshold == "gain >= 0.02 or candidate >= 0.90"
    assert "gained 0.100" in new.reason and "95% confidence" in new.reason
    assert check(d, "golden:v1").threshold == "loss <= 0.02"


def test_fails_without_gain_below_the_floor() -> None:
    d = evaluate(default_evidence(new=(0.80, 0.80)), LEGACY, ["v1"])
    assert not d.passed
    (reason,) = d.reasons
    assert reason.startswith("On the new-data holdout (400 rows), the candidate's accuracy")
    assert "short of the required gain of 0.02" in reason and "0.90 floor" in reason


def test_fails_on_forgetting_a_golden_set_and_says_by_how_much() -> None:
    d = evaluate(default_evidence(gold=(0.95, 0.85)), LEGACY, ["v1"])
    assert not d.passed
    c = check(d, "golden:v1")
    assert not c.passed
    assert c.numbers["loss"] == pytest.approx(0.10)
    assert c.numbers["loss_upper"] is not None and c.numbers["loss_upper"] > 0.10
    assert "it lost 0.100 and may have lost up to" in c.reason and "allowed 0.02" in c.reason


def test_every_check_has_numbers_and_one_sentence() -> None:
    d = evaluate(default_evidence(gold=(0.95, 0.85)), LEGACY, ["v1"])
    payload = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert payload["confidence"] == pytest.approx(0.95)
    for c in payload["checks"]:
        assert {
            "name",
            "metric",
            "champion",
            "candidate",
            "threshold",
            "passed",
            "reason",
            "n",
        } <= set(c)
        assert c["reason"].endswith(".") and c["reason"].count(". ") == 0


# -- fail closed ---------------------------------------------------------------------------


def test_no_evidence_fails_closed() -> None:
    d = evaluate(None, LEGACY)
    assert not d.passed and d.reasons == ("The evaluation evidence is missing.",)


def test_an_expected_golden_set_that_was_not_evaluated_fails() -> None:
    d = evaluate(evidence(make_set(NEW_DATA, 400, 0.8, 0.9)), LEGACY, ["v1"])
    assert not d.passed
    assert d.reasons == ("Golden set 'v1' was expected but not evaluated.",)


def test_a_tiny_golden_set_fails_closed() -> None:
    ev = evidence(make_set(NEW_DATA, 400, 0.8, 0.9), make_set("v1", 20, 0.95, 0.95))
    d = evaluate(ev, LEGACY, ["v1"])
    assert not d.passed
    assert check(d, "golden:v1").reason == (
        "Only 20 rows of golden set 'v1' were evaluated; at least 50 are needed to decide."
    )


def test_a_small_holdout_fails_closed() -> None:
    d = evaluate(evidence(make_set(NEW_DATA, 10, 0.5, 1.0)), LEGACY)
    assert not d.passed and "Only 10 rows of the new-data holdout" in d.reasons[0]


@pytest.mark.parametrize("who", ["champion", "candidate"])
def test_a_nan_prediction_fails_closed(who: str) -> None:
    s = make_set("v1", 400, 0.95, 0.95)
    bad = getattr(s, who).copy()
    bad[7] = np.nan
    champ, cand = (bad, s.candidate) if who == "champion" else (s.champion, bad)
    s = EvalSet(s.name, s.y, champ, cand, s.x)
    ev = evidence(make_set(NEW_DATA, 400, 0.8, 0.9), s)
    d = evaluate(ev, LEGACY, ["v1"])
    assert not d.passed
    c = check(d, "golden:v1")
    assert f"the {who}'s accuracy is NaN" in c.reason
    json.dumps(d.to_dict(), allow_nan=False)


@pytest.mark.parametrize("metric", ["macro_f1", "log_loss", "ece"])
def test_nan_fails_closed_for_every_metric(metric: str) -> None:
    s = make_set("v1", 400, 0.95, 0.95)
    cand = s.candidate.copy()
    cand[0] = np.nan
    ev = evidence(EvalSet("v1", s.y, s.champion, cand, s.x))
    d = evaluate(ev, GateConfig(rules=[Rule(metric=metric, max_worsening=0.5)]), ["v1"])  # type: ignore[arg-type]
    assert not d.passed and "NaN" in d.reasons[0]


def test_a_regression_metric_on_a_classifier_fails_closed() -> None:
    d = evaluate(default_evidence(), GateConfig(rules=[Rule(metric="mae", at_most=1.0)]))
    assert not d.passed and "applies to regression models" in d.reasons[0]


def test_slices_that_are_undefined_or_name_unknown_features_fail_closed() -> None:
    cfg = GateConfig(
        rules=[Rule(by="slice", max_worsening=0.05)],
        slices={"bad": {"height": (None, 2.0)}},
    )
    d = evaluate(default_evidence(), cfg, ["v1"])
    assert not d.passed and "names unknown feature(s) height" in d.reasons[0]
    cfg = GateConfig(rules=[Rule(by="slice", only=["nope"], max_worsening=0.05)])
    assert "Slice 'nope' is not defined" in evaluate(default_evidence(), cfg).reasons[0]


def test_class_and_slice_rules_with_nothing_to_judge_fail_closed() -> None:
    # each used to give 'All 0 checks passed.' while the golden set lost 35 points
    forgot = default_evidence(gold=(0.95, 0.60))
    d = evaluate(forgot, GateConfig(rules=[Rule(by="slice", max_worsening=0.02)]), ["v1"])
    assert not d.passed and d.reasons == ("No slices are defined (gate.slices).",)
    d = evaluate(forgot, GateConfig(rules=[Rule(by="class", only=["7"], max_worsening=0.02)]))
    assert not d.passed and d.reasons == ("Class 7 is not one of the model's classes (0, 1).",)
    s = make_set(NEW_DATA, 400, 0.8, 0.9)
    only_0 = evidence(s.subset(np.asarray(s.y) == 0))  # class 1 missing from the new data
    rule = Rule(on="new_data", by="class", only=["1"], min_improvement=0.0)
    d = evaluate(only_0, GateConfig(rules=[rule]))
    assert not d.passed
    assert d.reasons == ("The new-data holdout has no rows of any class the rule names.",)
    # a class absent beside one present is still no evidence either way
    d = evaluate(only_0, GateConfig(rules=[Rule(on="new_data", by="class", min_improvement=0.0)]))
    assert d.passed and [c.name for c in d.checks] == ["new_data/class=0"]


def test_refused_is_a_one_check_failure() -> None:
    d = refused("the candidate v3 failed its integrity check: sha256 differs", GateConfig())
    assert not d.passed and d.checks[0].name == "evidence"
    assert d.reasons == ("The candidate v3 failed its integrity check: sha256 differs.",)


def test_expected_golden_must_not_be_a_bare_string() -> None:
    with pytest.raises(TypeError, match="sequence of set names"):
        evaluate(default_evidence(), GateConfig(), "v1")


# -- rules ---------------------------------------------------------------------------------


def test_per_class_rule_catches_a_class_the_overall_number_hides() -> None:
    s = make_set("v1", 1000, 0.9, 0.9)
    y = s.y
    cand_right = s.candidate.argmax(axis=1) == y
    # the candidate trades class 1 for class 0: same overall accuracy, class 1 collapses
    cand_right = np.where(y == 1, np.arange(len(y)) % 2 == 0, True)
    s = EvalSet("v1", y, s.champion, probs(y, cand_right), s.x)
    cfg = GateConfig(rules=[Rule(max_worsening=0.2), Rule(by="class", max_worsening=0.05)])
    d = evaluate(evidence(s), cfg, ["v1"])
    assert not d.passed
    assert not check(d, "golden:v1/class=1").passed
    assert "class 1 of golden set 'v1'" in check(d, "golden:v1/class=1").reason


def test_slice_rule_measures_only_the_rows_in_the_slice() -> None:
    s = make_set("v1", 1000, 0.9, 0.9)
    old = s.x[:, 0] >= 60
    cand_right = np.where(old, False, s.champion.argmax(axis=1) == s.y)
    s = EvalSet("v1", s.y, s.champion, probs(s.y, cand_right), s.x)
    cfg = GateConfig(
        rules=[Rule(by="slice", max_worsening=0.05)],
        slices={"old": {"age": (60, None)}, "young": {"age": (None, 60)}},
    )
    d = evaluate(evidence(s), cfg)
    assert not check(d, "golden:v1/slice=old").passed
    assert check(d, "golden:v1/slice=young").passed
    assert check(d, "golden:v1/slice=old").n == int(old.sum())


def test_absolute_bound_on_log_loss_and_relative_change() -> None:
    ev = default_evidence()
    assert evaluate(ev, GateConfig(rules=[Rule(on="all", metric="log_loss", at_most=2.0)])).passed
    d = evaluate(ev, GateConfig(rules=[Rule(on="all", metric="log_loss", at_most=0.1)]))
    assert not d.passed and "ceiling" in d.reasons[0]
    rel = GateConfig(rules=[Rule(on="golden", max_worsening=0.05, relative=True)])
    worse = default_evidence(gold=(0.90, 0.80))  # lost 11% of the champion's accuracy
    d = evaluate(worse, rel)
    assert not d.passed and "of the champion's value" in d.reasons[0]


def test_negative_flip_rate_bound() -> None:
    ev = evidence(make_set("v1", 1000, 0.9, 0.9, shared=0.8))  # 10% of rows flip each way
    cfg = GateConfig(rules=[Rule(metric="negative_flip_rate", at_most=0.05)])
    d = evaluate(ev, cfg)
    c = check(d, "golden:v1", "negative_flip_rate")
    assert not c.passed and c.candidate == pytest.approx(0.10) and c.champion is None
    assert evaluate(ev, GateConfig(rules=[Rule(metric="negative_flip_rate", at_most=0.2)])).passed


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"metric": "negative_flip_rate", "max_worsening": 0.1},
        {"by": "overall", "only": ["1"], "max_worsening": 0.1},
        {"max_worsening": -0.1},
        {"metric": "f1", "at_least": 0.5},
        {"max_worsening": 0.1, "typo": 1},
    ],
)
def test_bad_rules_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Rule(**bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"alpha": 0.0},
        {"alpha": 0.7},
        {"resamples": 10},
        {"mode": "yolo"},
        {"min_gain": float("nan")},
    ],
)
def test_bad_gate_configs_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GateConfig(**bad)


# -- noise -----------------------------------------------------------------------------------


def _simulate(true_loss: float, n: int, runs: int, test: str, seed: int) -> float:
    """Fraction of candidates refused when they truly lost ``true_loss`` accuracy on a golden
    set of ``n`` rows (each row independently: 5% flip right→wrong, 5% - loss the reverse)."""
    rng = np.random.default_rng(seed)
    cfg = GateConfig(rules=[Rule(max_worsening=0.03)], resamples=200, test=test)  # type: ignore[arg-type]
    refused_ = 0
    for i in range(runs):
        y = rng.integers(0, 2, n)
        champ = rng.random(n) < 0.9
        u = rng.random(n)
        lose, gain = 0.05 + true_loss / 2, 0.05 - true_loss / 2
        cand = np.where(champ, u >= lose / 0.9, u < gain / 0.1)
        s = EvalSet("v1", y, probs(y, champ), probs(y, cand), np.zeros((n, 2)))
        refused_ += not evaluate(evidence(s), cfg.model_copy(update={"seed": i})).passed
    return refused_ / runs


@pytest.mark.parametrize("test", ["bootstrap", "mcnemar"])
def test_identical_quality_is_refused_at_most_alpha(test: str) -> None:
    assert _simulate(0.0, 2000, 50, test, seed=1) <= 0.05 + 0.05  # α plus sampling slack


@pytest.mark.parametrize("test", ["bootstrap", "mcnemar"])
def test_a_regression_of_the_tolerance_is_caught(test: str) -> None:
    assert _simulate(0.04, 2000, 40, test, seed=2) >= 0.9


def test_a_too_small_set_says_it_cannot_tell_the_tolerance_from_noise() -> None:
    ev = evidence(make_set("v1", 60, 0.9, 0.9, shared=0.8))
    d = evaluate(ev, GateConfig(rules=[Rule(max_worsening=0.03)]))
    assert not d.passed and "too few to tell a loss of 0.03 from noise" in d.reasons[0]
    assert (
        "would fail this check" in d.reasons[0] and "rows would bring that to 0.05" in d.reasons[0]
    )


def _risk_of(n: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    champ = rng.random(n) < 0.9
    u = rng.random(n)
    cand = np.where(champ, u >= 0.05 / 0.9, u < 0.05 / 0.1)
    s = EvalSet("v1", y, probs(y, champ), probs(y, cand), np.zeros((n, 2)))
    d = evaluate(evidence(s), GateConfig(rules=[Rule(max_worsening=0.03)], resamples=200))
    risk = d.to_dict()["false_refusal_risk"]
    assert isinstance(risk, float)
    return risk


def test_false_refusal_risk_predicts_how_often_an_identical_candidate_is_refused() -> None:
    predicted = _risk_of(400)
    assert 0.2 < predicted < 0.6  # 400 rows, 10% discordant: se 0.016 against a 0.03 tolerance
    assert abs(_simulate(0.0, 400, 60, "bootstrap", seed=3) - predicted) < 0.2
    assert _risk_of(4000) < 0.01


def test_false_refusal_risk_is_the_union_bound_over_tolerance_checks() -> None:
    cfg = GateConfig(
        rules=[Rule(max_worsening=0.05), Rule(by="class", max_worsening=0.05)], resamples=200
    )
    d = evaluate(evidence(make_set("v1", 1000, 0.9, 0.9, shared=0.85)), cfg).to_dict()
    risks = [c["numbers"]["false_refusal_risk"] for c in d["checks"]]
    assert len(risks) == 3 and all(0 < r < 1 for r in risks)
    assert d["false_refusal_risk"] == pytest.approx(sum(risks)) and sum(risks) < 1
    assert d["noise"].startswith("At these set sizes, a candidate of identical quality")
    small = evaluate(evidence(make_set("v1", 200, 0.9, 0.9, shared=0.8)), cfg).to_dict()
    assert small["false_refusal_risk"] == 1.0
    assert small["noise"].startswith("These sets are too small for the tolerances")
    floor_only = evaluate(default_evidence(), GateConfig(rules=[Rule(on="new_data", at_least=0.5)]))
    assert floor_only.to_dict()["false_refusal_risk"] is None


def test_decisions_are_reproducible() -> None:
    ev = default_evidence(gold=(0.95, 0.93))
    assert evaluate(ev, GateConfig()).to_dict() == evaluate(ev, GateConfig()).to_dict()


# -- monotonicity --------------------------------------------------------------------------


def test_more_rows_right_never_turns_a_pass_into_a_fail() -> None:
    base = make_set("v1", 300, 0.9, 0.88, seed=5)
    cfg = GateConfig(rules=[Rule(max_worsening=0.03), Rule(at_least=0.8)], min_golden=10)
    right = base.candidate.argmax(axis=1) == base.y
    passes = []
    for fixed in range(0, 30, 3):
        r = right.copy()
        r[np.flatnonzero(~r)[:fixed]] = True
        s = EvalSet("v1", base.y, base.champion, probs(base.y, r), base.x)
        passes.append(evaluate(evidence(s), cfg).passed)
    assert passes == sorted(passes), passes  # once it passes, it keeps passing


def test_tightening_a_tolerance_never_turns_a_fail_into_a_pass() -> None:
    ev = evidence(make_set("v1", 400, 0.92, 0.9, seed=3))
    verdicts = [
        evaluate(ev, GateConfig(rules=[Rule(max_worsening=t)])).passed
        for t in (0.1, 0.06, 0.04, 0.03, 0.02, 0.01, 0.0)
    ]
    assert verdicts == sorted(verdicts, reverse=True), verdicts
