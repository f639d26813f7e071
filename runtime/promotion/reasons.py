"""The words of the gate: each check's reason in a plain sentence an operator can act on.

A refused check says what fails and by how much; one refused on the uncertainty alone
says so, and how many rows would make the check decisive. A scope that cannot be judged
(too few rows, a metric that does not apply, a NaN metric) says why in the same voice.
"""

from __future__ import annotations

import math
from statistics import NormalDist

from runtime.promotion.confidence import Bounds
from runtime.promotion.metrics import CLASSIFICATION, REGRESSION, PairedScores
from runtime.promotion.scopes import Scope
from runtime.promotion.settings import Rule, fmt_threshold

METRIC_LABELS = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "log_loss": "log loss",
    "ece": "calibration error (ECE)",
    "negative_flip_rate": "negative flip rate",
    "mae": "MAE",
    "rmse": "RMSE",
}


def change(gain: float, unit: str) -> str:
    """The change versus the champion, as a gain or a loss."""
    if gain > -5e-4:  # never print "gained -0.000"
        return f"it gained {max(gain, 0.0) + 0.0:.3f}{unit}"  # + 0.0: never "-0.000"
    return f"it lost {-gain:.3f}{unit}"


def sentence(text: str) -> str:
    """``text`` as a sentence: capitalised, with a full stop."""
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def underpowered(n: int, tolerance: float, risk: float, w: Bounds, alpha: float) -> str:
    """The clause saying a set is too small to tell the tolerance from noise."""
    z = NormalDist().inv_cdf(1 - alpha)
    se = (w.upper - w.estimate) / z
    needed = math.ceil(n * (2 * z * se / tolerance) ** 2) if tolerance > 0 else None
    more = f"; about {needed} rows would bring that to {alpha:g}" if needed else ""
    return (
        f"; {n} rows are too few to tell a loss of {fmt_threshold(tolerance)} from noise: "
        "a candidate "
        f"of identical quality would fail this check {risk:.0%} of the time{more}"
    )


def problem(rule: Rule, scope: Scope, task: str) -> str | None:
    """Why ``rule`` cannot be judged on ``scope`` (None: it can)."""
    if scope.problem is not None:
        return scope.problem
    assert scope.rows is not None
    if rule.metric in REGRESSION and task != "regression":
        return (
            f"{METRIC_LABELS[rule.metric]} applies to regression models, this one is a classifier"
        )
    if rule.metric in CLASSIFICATION and task != "classification":
        return f"{METRIC_LABELS[rule.metric]} applies to classifiers, this model is a regressor"
    if len(scope.rows) < scope.minimum:
        return (
            f"only {len(scope.rows)} rows of {scope.label} were evaluated; at least "
            f"{scope.minimum} are needed to decide"
        )
    return None


def nan_problem(ps: PairedScores, label: str) -> str | None:
    """Why scores that are not finite cannot be judged (None: they are finite)."""
    metric = METRIC_LABELS[ps.metric]
    if not math.isfinite(ps.candidate):
        return f"on {label}, the candidate's {metric} is NaN (its predictions are not finite)"
    if ps.champion is not None and not math.isfinite(ps.champion):
        return f"on {label}, the champion's {metric} is NaN (its predictions are not finite)"
    return None
