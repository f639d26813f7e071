"""The regression gate: a pure function from evaluation evidence to a promotion decision.

The evidence is per-row predictions of champion and candidate on the new-data holdout and
on every golden set (:mod:`runtime.promotion.evidence`). Rules in config name a metric, where it is
measured (new data, golden sets, each class, each slice) and conditions: absolute bounds
(``at_least``/``at_most``) and changes versus the champion (``max_worsening``/
``min_improvement``, absolute or relative, in the metric's own direction).

Noise: each condition is judged on a one-sided confidence bound at level ``1 - alpha``
(paired bootstrap on the same rows, or the McNemar variance for accuracy). A condition
passes only when the evidence shows it holds. The two errors the gate can make are
controlled by two different things:

- promoting a candidate that truly lost more than a tolerance: a ``max_worsening`` check
  passes only when its upper bound is within the tolerance, so such a candidate passes that
  check at most ``alpha`` of the time, whatever the set size; the candidate is promoted only
  if *every* check passes (an intersection-union test), so no correction for the number of
  checks is needed, and one (testing each at ``alpha / k``) would only refuse more good
  candidates;
- refusing a candidate of identical quality: it fails a check when noise alone pushes the
  bound past the tolerance. That is a matter of power, set by the rows a check has, not
  of the test level. Each tolerance check reports ``false_refusal_risk``, the chance an
  identical candidate fails it at this noise (``1 - Phi(tolerance / se - z)``); the decision
  reports their sum, a bound on the chance of failing at least one check that holds
  however the checks are correlated (the union bound). When a check fails on the
  uncertainty alone, its reason says so and how many rows would bring the risk to
  ``alpha``.

Near a boundary the gate fails closed: a candidate whose true loss is inside the tolerance
by less than about ``(z_(1-alpha) + z_power) * se`` is refused often (``bench/gate.py``
reports that margin zone on its own).

The gate fails closed: missing evidence, a golden set that was expected but not evaluated,
too few rows, a NaN metric, a metric that does not apply, or a ``by: class``/``by: slice``
rule with nothing to judge on a set (a class it names that the model lacks, no slices, no
rows of the classes or slices it names) fail their check, with the reason in plain words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np

from runtime.promotion.evidence import NEW_DATA, EvalSet, Evidence
from runtime.promotion.metrics import (
    CLASSIFICATION,
    HIGHER_IS_BETTER,
    REGRESSION,
    PairedScores,
    paired_scores,
    resample_weights,
    stable_seed,
)
from runtime.promotion.settings import Bound, GateConfig, Rule, fmt_threshold

__all__ = [
    "Check",
    "GateDecision",
    "evaluate",
    "false_refusal_risk",
    "refused",
    "rules_of",
]

GOLDEN_PREFIX = "golden:"
_EPS = 1e-9  # absorbs float error at a boundary (0.82 - 0.80 < 0.02 in binary floating point)
_LABELS = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "log_loss": "log loss",
    "ece": "calibration error (ECE)",
    "negative_flip_rate": "negative flip rate",
    "mae": "MAE",
    "rmse": "RMSE",
}


def rules_of(cfg: GateConfig) -> list[Rule]:
    """The rules in force: ``cfg.rules``, or the ones the simple thresholds make."""
    if cfg.rules is not None:
        return list(cfg.rules)
    return [
        Rule(
            on="new_data",
            min_improvement=cfg.min_gain,
            at_least=cfg.min_accuracy,
            require="any",
        ),
        Rule(on="golden", max_worsening=cfg.max_forgetting),
    ]


def _json_float(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class Check:
    """One check: a rule on one set (or one class or slice of it).

    ``name`` is ``new_data`` or ``golden:<set>``, plus ``/class=<c>`` or ``/slice=<s>``.
    ``numbers`` holds the tested quantities and their confidence bounds.
    """

    name: str
    metric: str
    champion: float | None
    candidate: float | None
    threshold: str
    passed: bool
    reason: str
    n: int
    numbers: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN and infinity become None)."""
        out = asdict(self)
        out["champion"] = _json_float(self.champion)
        out["candidate"] = _json_float(self.candidate)
        out["numbers"] = {k: _json_float(v) for k, v in self.numbers.items()}
        return out


@dataclass(frozen=True)
class GateDecision:
    """The verdict: passed only if every check passed; ``reasons`` explain it."""

    passed: bool
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]
    alpha: float = 0.05
    test: str = "bootstrap"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the ``gate.passed`` / ``gate.failed`` event payload."""
        risk = false_refusal_risk(self.checks)
        k = sum(c.numbers.get("false_refusal_risk") is not None for c in self.checks)
        out: dict[str, Any] = {
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
            "reasons": list(self.reasons),
            "confidence": 1 - self.alpha,
            "test": self.test,
            "false_refusal_risk": risk,
        }
        if risk is not None and risk < 1.0:
            out["noise"] = (
                f"At these set sizes, a candidate of identical quality would fail at least one "
                f"of the {k} tolerance checks by chance with probability at most {risk:.1%} "
                f"(alpha {self.alpha:g})."
            )
        elif risk is not None:
            out["noise"] = (
                f"These sets are too small for the tolerances: a candidate of identical quality "
                f"would likely fail at least one of the {k} tolerance checks by chance."
            )
        return out


def _change(gain: float, unit: str) -> str:
    if gain > -5e-4:  # never print "gained -0.000"
        return f"it gained {max(gain, 0.0) + 0.0:.3f}{unit}"  # + 0.0: never "-0.000"
    return f"it lost {-gain:.3f}{unit}"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _decide(checks: list[Check], cfg: GateConfig) -> GateDecision:
    failed = [c.reason for c in checks if not c.passed]
    reasons = tuple(failed) if failed else (f"All {len(checks)} checks passed.",)
    return GateDecision(not failed, tuple(checks), reasons, cfg.alpha, cfg.test)


def false_refusal_risk(checks: Sequence[Check]) -> float | None:
    """Chance an identical-quality candidate fails at least one tolerance check.

    The union (Bonferroni) bound: the sum of each ``max_worsening`` check's risk, capped at
    1. It holds whatever the correlation between checks (a set and its classes share rows).
    None when no check has a tolerance on a change.
    """
    risks = [c.numbers.get("false_refusal_risk") for c in checks]
    known = [r for r in risks if r is not None]
    return min(1.0, sum(known)) if known else None


def refused(reason: str, cfg: GateConfig, name: str = "evidence") -> GateDecision:
    """A decision that fails closed on one problem (integrity, unreadable evidence, ...)."""
    check = Check(name, "-", None, None, "readable and intact", False, _sentence(reason), 0)
    return _decide([check], cfg)


# -- scopes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scope:
    name: str
    label: str
    rows: EvalSet | None
    minimum: int
    problem: str | None = None


def _set_label(name: str) -> str:
    return "the new-data holdout" if name == NEW_DATA else f"golden set {name!r}"


def _set_names(rule: Rule, evidence: Evidence, expected: Sequence[str]) -> list[str]:
    out = []
    if rule.on in ("new_data", "all"):
        out.append(NEW_DATA)
    if rule.on in ("golden", "all"):
        out.extend(sorted((set(evidence.sets) - {NEW_DATA}) | set(expected)))
    return out


def _slice_mask(evidence: Evidence, rows: EvalSet, where: dict[str, Bound]) -> Any:
    mask = np.ones(len(rows), dtype=bool)
    for feature, (lo, hi) in where.items():
        col = rows.x[:, evidence.features.index(feature)]
        if lo is not None:
            mask &= col >= lo
        if hi is not None:
            mask &= col < hi
    return mask


def _scopes(
    rule: Rule, evidence: Evidence, expected: Sequence[str], cfg: GateConfig
) -> list[_Scope]:
    scopes: list[_Scope] = []
    for set_name in _set_names(rule, evidence, expected):
        name = set_name if set_name == NEW_DATA else GOLDEN_PREFIX + set_name
        label = _set_label(set_name)
        rows = evidence.sets.get(set_name)
        minimum = cfg.min_holdout if set_name == NEW_DATA else cfg.min_golden
        if rows is None:
            scopes.append(
                _Scope(name, label, None, minimum, f"{label} was expected but not evaluated")
            )
            continue
        before = len(scopes)
        if rule.by == "overall":
            scopes.append(_Scope(name, label, rows, minimum))
        elif rule.by == "class":
            known = [str(c) for c in evidence.classes]
            for c in [c for c in rule.only or () if c not in known]:
                what = f"class {c} is not one of the model's classes ({', '.join(known)})"
                scopes.append(_Scope(f"{name}/class={c}", f"class {c} of {label}", None, 0, what))
            for pos, cls in enumerate(evidence.classes):
                if rule.only is not None and str(cls) not in rule.only:
                    continue
                sub = rows.subset(np.asarray(rows.y) == pos)
                if len(sub):  # a class absent from a set is not evidence either way
                    scopes.append(
                        _Scope(
                            f"{name}/class={cls}",
                            f"class {cls} of {label}",
                            sub,
                            cfg.min_subset_rows,
                        )
                    )
        else:
            for sl in rule.only if rule.only is not None else sorted(cfg.slices):
                where = cfg.slices.get(sl)
                unknown = sorted(set(where or {}) - set(evidence.features))
                scope_name, scope_label = f"{name}/slice={sl}", f"slice {sl!r} of {label}"
                if where is None or unknown:
                    what = (
                        f"slice {sl!r} is not defined"
                        if where is None
                        else (f"slice {sl!r} names unknown feature(s) {', '.join(unknown)}")
                    )
                    scopes.append(_Scope(scope_name, scope_label, None, 0, what))
                    continue
                sub = rows.subset(_slice_mask(evidence, rows, where))
                if len(sub):
                    scopes.append(_Scope(scope_name, scope_label, sub, cfg.min_subset_rows))
        if len(scopes) == before:  # a rule with nothing to judge must not pass unseen
            what = (
                "no slices are defined (gate.slices)"
                if rule.by == "slice" and not cfg.slices
                else f"{label} has no rows of any {rule.by} the rule names"
            )
            scopes.append(_Scope(f"{name}/{rule.by}", label, None, 0, what))
    return scopes


# -- judging one rule on one scope ----------------------------------------------------------


@dataclass
class _Bounds:
    """Estimate and one-sided confidence bounds of a quantity."""

    estimate: float
    lower: float
    upper: float


def _bounds(estimate: float, boot: Any, alpha: float, se: float | None) -> _Bounds:
    if se is not None:
        z = NormalDist().inv_cdf(1 - alpha)
        return _Bounds(estimate, estimate - z * se, estimate + z * se)
    finite = boot[np.isfinite(boot)]
    if len(finite) < 0.9 * len(boot):
        return _Bounds(estimate, math.nan, math.nan)
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    return _Bounds(estimate, float(lo), float(hi))


def _identical_risk(tolerance: float, w: _Bounds, alpha: float) -> float | None:
    """Chance that a candidate of identical quality fails a ``loss <= tolerance`` check.

    With the check's noise (its standard error, read off the bound), a candidate whose
    true loss is 0 fails when its estimate plus ``z * se`` exceeds the tolerance:
    ``1 - Phi(tolerance / se - z)``. None when the noise cannot be measured.
    """
    z = NormalDist().inv_cdf(1 - alpha)
    se = (w.upper - w.estimate) / z
    if not math.isfinite(se):
        return None
    if se <= 0:
        return 0.0
    return 1.0 - NormalDist().cdf(tolerance / se - z)


def _underpowered(n: int, tolerance: float, risk: float, w: _Bounds, alpha: float) -> str:
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


def _mcnemar_se(s: EvalSet) -> float:
    """Standard error of the accuracy difference on paired rows (McNemar's variance)."""
    a = s.champion.argmax(axis=1) == s.y
    b = s.candidate.argmax(axis=1) == s.y
    n = len(s.y)
    lost, won = float(np.sum(a & ~b)), float(np.sum(~a & b))
    return math.sqrt(max(lost + won - (lost - won) ** 2 / n, 0.0)) / n


def _problem(rule: Rule, scope: _Scope, task: str) -> str | None:
    if scope.problem is not None:
        return scope.problem
    assert scope.rows is not None
    if rule.metric in REGRESSION and task != "regression":
        return f"{_LABELS[rule.metric]} applies to regression models, this one is a classifier"
    if rule.metric in CLASSIFICATION and task != "classification":
        return f"{_LABELS[rule.metric]} applies to classifiers, this model is a regressor"
    if len(scope.rows) < scope.minimum:
        return (
            f"only {len(scope.rows)} rows of {scope.label} were evaluated; at least "
            f"{scope.minimum} are needed to decide"
        )
    return None


def _nan_problem(ps: PairedScores, label: str) -> str | None:
    metric = _LABELS[ps.metric]
    if not math.isfinite(ps.candidate):
        return f"on {label}, the candidate's {metric} is NaN (its predictions are not finite)"
    if ps.champion is not None and not math.isfinite(ps.champion):
        return f"on {label}, the champion's {metric} is NaN (its predictions are not finite)"
    return None


def _judge(rule: Rule, scope: _Scope, task: str, weights: Any, cfg: GateConfig) -> Check:
    threshold = rule.describe()
    problem = _problem(rule, scope, task)
    n = len(scope.rows) if scope.rows is not None else 0
    if problem is not None or scope.rows is None:
        return Check(
            scope.name,
            rule.metric,
            None,
            None,
            threshold,
            False,
            _sentence(problem or "nothing to judge"),
            n,
        )
    rows = scope.rows
    ps = paired_scores(rule.metric, rows.y, rows.champion, rows.candidate, weights)
    problem = _nan_problem(ps, scope.label)
    if problem is not None:
        return Check(
            scope.name,
            rule.metric,
            ps.champion,
            ps.candidate,
            threshold,
            False,
            _sentence(problem),
            n,
        )
    verdicts, numbers = _conditions(rule, ps, rows, cfg)
    passed = (all if rule.require == "all" else any)(ok for ok, _ in verdicts)
    shown = [text for ok, text in verdicts if ok == passed] or [t for _, t in verdicts]
    joiner = " and "
    head = (
        f"on {scope.label} ({n} rows), the candidate's {_LABELS[rule.metric]} is {ps.candidate:.3f}"
    )
    if ps.champion is not None:
        head += f" vs the champion's {ps.champion:.3f}"
    reason = _sentence(f"{head}: {joiner.join(shown)}")
    return Check(
        scope.name, rule.metric, ps.champion, ps.candidate, threshold, passed, reason, n, numbers
    )


def _conditions(
    rule: Rule, ps: PairedScores, rows: EvalSet, cfg: GateConfig
) -> tuple[list[tuple[bool, str]], dict[str, float | None]]:
    conf = f"{1 - cfg.alpha:.0%}"
    analytic = cfg.test == "mcnemar" and rule.metric == "accuracy"
    out: list[tuple[bool, str]] = []
    numbers: dict[str, float | None] = {}
    n = len(rows)
    if rule.at_least is not None or rule.at_most is not None:
        se = math.sqrt(max(ps.candidate * (1 - ps.candidate), 0.0) / n) if analytic else None
        v = _bounds(ps.candidate, ps.candidate_boot, cfg.alpha, se)
        numbers.update(candidate_lower=v.lower, candidate_upper=v.upper)
        if rule.at_least is not None:
            ok = v.lower >= rule.at_least - _EPS
            out.append(
                (
                    ok,
                    f"it reaches the {fmt_threshold(rule.at_least)} floor ({v.lower:.3f} at "
                    f"{conf} confidence)"
                    if ok
                    else f"it is not shown to reach the {fmt_threshold(rule.at_least)} floor "
                    f"({conf} lower bound {v.lower:.3f})",
                )
            )
        if rule.at_most is not None:
            ok = v.upper <= rule.at_most + _EPS
            out.append(
                (
                    ok,
                    f"it stays under the {fmt_threshold(rule.at_most)} ceiling ({v.upper:.3f} at "
                    f"{conf} confidence)"
                    if ok
                    else f"it is not shown to stay under the {fmt_threshold(rule.at_most)} ceiling "
                    f"({conf} upper bound {v.upper:.3f})",
                )
            )
    if rule.max_worsening is None and rule.min_improvement is None:
        return out, numbers
    assert ps.champion is not None and ps.champion_boot is not None
    sign = 1.0 if HIGHER_IS_BETTER[rule.metric] else -1.0
    loss = sign * (ps.champion - ps.candidate)
    boot = sign * (ps.champion_boot - ps.candidate_boot)
    se = _mcnemar_se(rows) if analytic else None
    unit = ""
    if rule.relative:
        scale = abs(ps.champion)
        loss = loss / scale if scale > 0 else math.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            boot = boot / np.abs(ps.champion_boot)
        se = se / scale if se is not None and scale > 0 else se
        unit = " of the champion's value"
    w = _bounds(loss, boot, cfg.alpha, se)
    numbers.update(loss=w.estimate, loss_upper=w.upper, gain=-w.estimate, gain_lower=-w.upper)
    if rule.max_worsening is not None:
        numbers["false_refusal_risk"] = _identical_risk(rule.max_worsening, w, cfg.alpha)
    if not (math.isfinite(w.estimate) and math.isfinite(w.upper)):
        out.append((False, "the change versus the champion cannot be measured (NaN)"))
        return out, numbers
    if rule.max_worsening is not None:
        t = rule.max_worsening
        said = _change(-w.estimate, unit)
        if w.upper <= t + _EPS:
            bound = (
                f"a loss of at most {w.upper:.3f}"
                if w.upper > 0
                else f"a gain of at least {-w.upper:.3f}"
            )
            out.append(
                (
                    True,
                    f"{said} ({bound} at {conf} confidence), within the allowed {fmt_threshold(t)}",
                )
            )
        else:
            text = (
                f"{said} and may have lost up to {w.upper:.3f} ({conf} confidence), "
                f"more than the allowed {fmt_threshold(t)}"
            )
            risk = numbers.get("false_refusal_risk")
            if w.estimate <= t and risk is not None and risk > cfg.alpha:
                text += _underpowered(n, t, risk, w, cfg.alpha)
            out.append((False, text))
    if rule.min_improvement is not None:
        g, lo = -w.estimate, -w.upper
        ok = lo >= rule.min_improvement - _EPS
        bound = (
            f"a gain of at least {lo:.3f} at {conf} confidence"
            if lo >= 0
            else f"at {conf} confidence it may have lost up to {-lo:.3f}"
        )
        out.append(
            (
                ok,
                f"{_change(g, unit)} ({bound}), "
                f"{'meeting' if ok else 'short of'} the required gain of "
                f"{fmt_threshold(rule.min_improvement)}",
            )
        )
    return out, numbers


def evaluate(
    evidence: Evidence | None, cfg: GateConfig, expected_golden: Sequence[str] = ()
) -> GateDecision:
    """Decide whether the candidate may replace the champion.

    Parameters
    ----------
    evidence
        Per-row predictions of champion and candidate (None: nothing was evaluated).
    cfg
        Rules, noise level, minimum rows.
    expected_golden
        Golden sets that must have been evaluated; a missing one fails its checks.
        Every golden set present in ``evidence`` is checked as well.

    Returns
    -------
    GateDecision
        One check per rule and scope, in rule order; scopes sorted by name.

    Examples
    --------
    >>> import numpy as np
    >>> from runtime.promotion.evidence import EvalSet, Evidence
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400)
    >>> unsure = np.full((400, 2), 0.5)           # always predicts class 0
    >>> sure = np.eye(2)[y] * 0.8 + 0.1           # right on every row
    >>> s = EvalSet("new_data", y, unsure, sure, np.zeros((400, 1)))
    >>> ev = Evidence("classification", ("f",), (0, 1), {"new_data": s})
    >>> evaluate(ev, GateConfig()).passed
    True
    >>> evaluate(None, GateConfig()).reasons
    ('The evaluation evidence is missing.',)
    """
    if isinstance(expected_golden, str):
        raise TypeError("expected_golden must be a sequence of set names, not one string")
    if evidence is None:
        return refused("the evaluation evidence is missing", cfg)
    checks: list[Check] = []
    weights: dict[str, Any] = {}
    for rule in rules_of(cfg):
        for scope in _scopes(rule, evidence, expected_golden, cfg):
            if scope.name not in weights and scope.rows is not None:
                rng = np.random.default_rng(stable_seed(cfg.seed, scope.name))
                weights[scope.name] = resample_weights(len(scope.rows), cfg.resamples, rng)
            checks.append(_judge(rule, scope, evidence.task, weights.get(scope.name), cfg))
    return _decide(checks, cfg)
