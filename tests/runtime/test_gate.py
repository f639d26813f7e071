"""The regression gate: decisions, every fail-closed path, and monotonicity."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from runtime.gate import Check, EvalMetrics, GateConfig, GateDecision, evaluate

CFG = GateConfig()
GOOD_HOLDOUT = (0.80, 0.85, 200)
GOOD_GOLDEN = (0.95, 0.94, 100)


def decide(
    holdout: Any = GOOD_HOLDOUT,
    golden: dict[str, Any] | None = None,
    expected: tuple[str, ...] = (),
    cfg: GateConfig = CFG,
) -> GateDecision:
    return evaluate(EvalMetrics(holdout=holdout, golden=golden or {}), cfg, expected)


def check(decision: GateDecision, name: str) -> Check:
    return next(c for c in decision.checks if c.name == name)


# -- passing ------------------------------------------------------------------------------


def test_passes_with_a_gain_and_no_forgetting() -> None:
    d = decide(golden={"base": GOOD_GOLDEN}, expected=("base",))
    assert d.passed
    assert d.reasons == ("All 2 checks passed.",)
    assert [c.name for c in d.checks] == ["new_data", "golden:base"]
    new = check(d, "new_data")
    assert (new.metric, new.champion, new.candidate, new.n) == ("accuracy", 0.80, 0.85, 200)
    assert new.threshold == "gain >= 0.02 or candidate >= 0.90"
    assert check(d, "golden:base").threshold == "forgetting <= 0.02"


def test_new_data_passes_on_the_accuracy_floor_without_a_gain() -> None:
    d = decide(holdout=(0.95, 0.94, 100))
    assert d.passed
    assert "reaches the 0.90 floor" in d.checks[0].reason


def test_boundaries_pass_despite_float_error() -> None:
    assert 0.82 - 0.80 < 0.02  # the float error the gate must absorb
    assert decide(holdout=(0.80, 0.82, 50)).passed
    assert decide(golden={"g": (0.92, 0.90, 50)}).passed
    assert decide(holdout=(0.85, 0.90, 50), cfg=GateConfig(min_gain=0.5)).passed


# -- failing on the metrics ---------------------------------------------------------------


def test_fails_without_gain_below_the_floor() -> None:
    d = decide(holdout=(0.80, 0.81, 200))
    assert not d.passed
    assert d.reasons == (
        "The candidate scores 0.810 vs the champion's 0.800 on 200 new-data rows: "
        "a gain of 0.010 is below 0.02 and it is below the 0.90 floor.",
    )


def test_fails_on_forgetting_a_golden_set() -> None:
    d = decide(golden={"base": (0.95, 0.90, 100), "edge": GOOD_GOLDEN})
    assert not d.passed
    assert not check(d, "golden:base").passed and check(d, "golden:edge").passed
    assert d.reasons == (
        "On golden set 'base' the candidate scores 0.900 vs the champion's 0.950 on 100 rows: "
        "it forgot 0.050, more than the allowed 0.02.",
    )


# -- failing closed -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("holdout", "reason"),
    [
        (None, "The held-out new data was expected but not evaluated."),
        ((0.8, 0.9), "The held-out new data was expected but not evaluated."),
        (
            (0.8, 0.95, 49),
            "Only 49 held-out new-data rows were evaluated; at least 50 are required.",
        ),
        ((0.8, 0.95, 0), "Only 0 held-out new-data rows were evaluated; at least 50 are required."),
        ((None, 0.95, 100), "On the held-out new data, the champion's accuracy is missing."),
        ((0.8, None, 100), "On the held-out new data, the candidate's accuracy is missing."),
        ((math.nan, 0.95, 100), "On the held-out new data, the champion's accuracy is NaN."),
        ((0.8, math.nan, 100), "On the held-out new data, the candidate's accuracy is NaN."),
        ((0.8, math.inf, 100), "the candidate's accuracy inf is outside [0, 1]."),
        ((0.8, 1.5, 100), "the candidate's accuracy 1.5 is outside [0, 1]."),
        ((-0.1, 0.95, 100), "the champion's accuracy -0.1 is outside [0, 1]."),
        ((0.8, "0.9", 100), "the candidate's accuracy '0.9' is not a number."),
        ((0.8, 0.95, 100.0), "the row count 100.0 is not an integer."),
        ((0.8, 0.95, math.nan), "the row count nan is not an integer."),
    ],
)
def test_new_data_check_fails_closed(holdout: Any, reason: str) -> None:
    d = decide(holdout=holdout, golden={"base": GOOD_GOLDEN})
    assert not d.passed
    assert not d.checks[0].passed
    assert d.checks[0].reason.endswith(reason)
    assert d.reasons == (d.checks[0].reason,)


@pytest.mark.parametrize(
    ("score", "reason"),
    [
        (None, "Golden set 'base' was expected but not evaluated."),
        (
            (0.95, 0.95, 49),
            "Only 49 rows of golden set 'base' were evaluated; at least 50 are required.",
        ),
        ((math.nan, 0.95, 100), "On golden set 'base', the champion's accuracy is NaN."),
        ((0.95, None, 100), "On golden set 'base', the candidate's accuracy is missing."),
    ],
)
def test_golden_check_fails_closed(score: Any, reason: str) -> None:
    golden = {} if score is None else {"base": score}
    d = decide(golden=golden, expected=("base",))
    assert not d.passed
    assert check(d, "golden:base").reason == reason
    assert d.reasons == (reason,)


def test_unexpected_golden_sets_are_checked_too_and_checks_are_sorted() -> None:
    d = decide(golden={"z": GOOD_GOLDEN, "a": (0.9, 0.5, 100)}, expected=("m",))
    assert [c.name for c in d.checks] == ["new_data", "golden:a", "golden:m", "golden:z"]
    assert [c.passed for c in d.checks] == [True, False, False, True]
    assert len(d.reasons) == 2


def test_expected_golden_must_not_be_a_bare_string() -> None:
    with pytest.raises(TypeError, match="not one string"):
        decide(expected="base")  # type: ignore[arg-type]


def test_decision_is_json_even_with_nan_metrics() -> None:
    d = decide(holdout=(math.nan, 0.9, 100), golden={"g": (0.9, math.inf, 100)})
    data = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert data["passed"] is False
    assert data["checks"][0]["champion"] is None and data["checks"][1]["candidate"] is None
    assert data["reasons"] == list(d.reasons)
    assert set(data["checks"][0]) == {
        "name",
        "metric",
        "champion",
        "candidate",
        "threshold",
        "passed",
        "reason",
        "n",
    }


# -- config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"min_gain_": 0.1},
        {"min_accuracy": 1.5},
        {"max_forgetting": -0.1},
        {"min_holdout": 0},
        {"min_gain": math.nan},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GateConfig(**bad)


def test_config_defaults() -> None:
    assert GateConfig().model_dump() == {
        "min_gain": 0.02,
        "min_accuracy": 0.9,
        "max_forgetting": 0.02,
        "min_holdout": 50,
        "min_golden": 50,
    }


# -- monotonicity -------------------------------------------------------------------------

ACC = st.floats(0.0, 1.0) | st.integers(0, 100).map(lambda i: i / 100)
# Candidates near their champion, where the gate's decisions are close calls.
SCORE = st.builds(
    lambda champion, offset, n: (champion, min(1.0, max(0.0, champion + offset)), n),
    ACC,
    st.integers(-10, 10).map(lambda i: i / 100) | st.floats(-1.0, 1.0),
    st.integers(0, 200),
)
METRICS = st.builds(
    EvalMetrics,
    holdout=st.none() | SCORE,
    golden=st.dictionaries(st.sampled_from(["a", "b", "c"]), SCORE, max_size=3),
)
CONFIGS = st.builds(
    GateConfig,
    min_gain=st.integers(-5, 20).map(lambda i: i / 100) | st.floats(-0.2, 0.5),
    min_accuracy=ACC,
    max_forgetting=st.floats(0.0, 0.5),
    min_holdout=st.integers(1, 150),
    min_golden=st.integers(1, 150),
)
EXPECTED = st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True)


def raise_candidate(score: tuple[float, float, int] | None, delta: float) -> Any:
    if score is None:
        return None
    champion, candidate, n = score
    return (champion, min(1.0, candidate + delta), n)


@settings(max_examples=500)
@given(
    METRICS,
    CONFIGS,
    EXPECTED,
    st.integers(0, 10).map(lambda i: i / 100) | st.floats(0.0, 1.0),
    st.booleans(),
)
def test_raising_the_candidate_never_turns_a_pass_into_a_fail(
    metrics: EvalMetrics, cfg: GateConfig, expected: list[str], delta: float, everywhere: bool
) -> None:
    better = EvalMetrics(
        holdout=raise_candidate(metrics.holdout, delta),
        golden={
            name: raise_candidate(score, delta if everywhere or name == "a" else 0.0)
            for name, score in metrics.golden.items()
        },
    )
    before = evaluate(metrics, cfg, expected)
    after = evaluate(better, cfg, expected)
    for old, new in zip(before.checks, after.checks, strict=True):
        assert not old.passed or new.passed, (old, new)
    assert not before.passed or after.passed


@settings(max_examples=500)
@given(
    METRICS,
    CONFIGS,
    EXPECTED,
    st.sampled_from(
        ["min_gain", "min_accuracy", "max_forgetting", "min_holdout", "min_golden", "all"]
    ),
    st.floats(0.0, 0.5),
    st.integers(0, 100),
)
def test_tightening_a_threshold_never_turns_a_fail_into_a_pass(
    metrics: EvalMetrics,
    cfg: GateConfig,
    expected: list[str],
    which: str,
    step: float,
    rows: int,
) -> None:
    tighter = {
        "min_gain": cfg.min_gain + step,
        "min_accuracy": min(1.0, cfg.min_accuracy + step),
        "max_forgetting": max(0.0, cfg.max_forgetting - step),
        "min_holdout": cfg.min_holdout + rows,
        "min_golden": cfg.min_golden + rows,
    }
    changes = tighter if which == "all" else {which: tighter[which]}
    strict = cfg.model_copy(update=changes)
    before = evaluate(metrics, cfg, expected)
    after = evaluate(metrics, strict, expected)
    for old, new in zip(before.checks, after.checks, strict=True):
        assert old.passed or not new.passed, (old, new)
    assert before.passed or not after.passed


@pytest.mark.parametrize(
    "cfg",
    [CFG, GateConfig(min_gain=0.3, min_accuracy=0.5), GateConfig(min_gain=-0.1, max_forgetting=0)],
)
def test_checks_are_monotone_on_a_grid_of_candidates(cfg: GateConfig) -> None:
    grid = [i / 100 for i in range(101)]
    for champion in grid[::5]:
        new_data = [decide(holdout=(champion, c, 100), cfg=cfg).checks[0].passed for c in grid]
        golden = [decide(golden={"g": (champion, c, 100)}, cfg=cfg).checks[1].passed for c in grid]
        for passes in (new_data, golden):
            first = passes.index(True) if True in passes else len(passes)
            assert passes == [False] * first + [True] * (len(passes) - first), champion
