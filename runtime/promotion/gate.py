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

Where a rule is judged comes from :mod:`~runtime.promotion.scopes`, the bounds from
:mod:`~runtime.promotion.confidence` and the words of each reason from
:mod:`~runtime.promotion.reasons`; this module holds the conditions and the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from runtime.promotion.confidence import Bounds, bounds, change_bounds, identical_risk
from runtime.promotion.evidence import EvalSet, Evidence
from runtime.promotion.metrics import PairedScores, paired_scores, resample_weights, stable_seed
from runtime.promotion.reasons import (
    METRIC_LABELS,
    change,
    nan_problem,
    problem,
    sentence,
    underpowered,
)
from runtime.promotion.scopes import Scope, scopes
from runtime.promotion.settings import GateConfig, Rule, fmt_threshold

__all__ = [
    "Check",
    "GateDecision",
    "evaluate",
    "false_refusal_risk",
    "refused",
    "rules_of",
]

_EPS = 1e-9  # absorbs float error at a boundary (0.82 - 0.80 < 0.02 in binary floating point)


def rules_of(cfg: GateConfig, task: str = "classification") -> list[Rule]:
    """The rules in force: ``cfg.rules``, or the ones the simple thresholds make.

    For a regression model they are on MAE (lower is better), with the changes relative
    to the champion's MAE (target units differ from task to task): on the new data the
    candidate is refused only when shown worse (or, with ``min_gain``, it must cut the MAE
    by that fraction); on each golden set its MAE may rise by at most ``max_forgetting``
    of the champion's (``forgetting: shown``: refused only when shown to rise more).
    """
    if cfg.rules is not None:
        return list(cfg.rules)
    if task == "regression":
        gain: dict[str, Any] = {"max_shown_worsening": 0.0} if cfg.min_gain is None else {
            "min_improvement": cfg.min_gain}
        forget = "max_shown_worsening" if cfg.forgetting == "shown" else "max_worsening"
        limit: dict[str, Any] = {forget: cfg.max_forgetting}
        return [Rule(metric="mae", on="new_data", relative=True, **gain),
                Rule(metric="mae", on="golden", relative=True, **limit)]
    new = (
        Rule(on="new_data", max_shown_worsening=0.0)
        if cfg.min_gain is None
        else Rule(
            on="new_data", min_improvement=cfg.min_gain, at_least=cfg.min_accuracy, require="any"
        )
    )
    return [
        new,
        Rule(on="golden", max_shown_worsening=cfg.max_forgetting)
        if cfg.forgetting == "shown"
        else Rule(on="golden", max_worsening=cfg.max_forgetting),
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
    check = Check(name, "-", None, None, "readable and intact", False, sentence(reason), 0)
    return _decide([check], cfg)


def _judge(rule: Rule, scope: Scope, task: str, weights: Any, cfg: GateConfig) -> Check:
    """The check of ``rule`` on ``scope``; it fails closed when the scope cannot be judged."""
    threshold = rule.describe()
    unjudged = problem(rule, scope, task)
    n = len(scope.rows) if scope.rows is not None else 0
    if scope.obsolete is not None:
        return Check(scope.name, rule.metric, None, None, threshold, True,
                     sentence(scope.obsolete), n)
    if unjudged is not None or scope.rows is None:
        return Check(
            scope.name,
            rule.metric,
            None,
            None,
            threshold,
            False,
            sentence(unjudged or "nothing to judge"),
            n,
        )
    rows = scope.rows
    ps = paired_scores(rule.metric, rows.y, rows.champion, rows.candidate, weights)
    nan = nan_problem(ps, scope.label)
    if nan is not None:
        return Check(
            scope.name,
            rule.metric,
            ps.champion,
            ps.candidate,
            threshold,
            False,
            sentence(nan),
            n,
        )
    verdicts, numbers = _conditions(rule, ps, rows, cfg)
    passed = (all if rule.require == "all" else any)(ok for ok, _ in verdicts)
    shown = [text for ok, text in verdicts if ok == passed] or [t for _, t in verdicts]
    joiner = " and "
    metric = METRIC_LABELS[rule.metric]
    head = f"on {scope.label} ({n} rows), the candidate's {metric} is {ps.candidate:.3f}"
    if ps.champion is not None:
        head += f" vs the champion's {ps.champion:.3f}"
    reason = sentence(f"{head}: {joiner.join(shown)}")
    return Check(
        scope.name, rule.metric, ps.champion, ps.candidate, threshold, passed, reason, n, numbers
    )


def _conditions(
    rule: Rule, ps: PairedScores, rows: EvalSet, cfg: GateConfig
) -> tuple[list[tuple[bool, str]], dict[str, float | None]]:
    """Each condition of ``rule`` as (held, its clause of the reason), and the tested
    quantities with their confidence bounds."""
    analytic = cfg.test == "mcnemar" and rule.metric == "accuracy"
    out: list[tuple[bool, str]] = []
    numbers: dict[str, float | None] = {}
    if rule.at_least is not None or rule.at_most is not None:
        out.extend(_absolute(rule, ps, len(rows), analytic, cfg, numbers))
    changes = (rule.max_worsening, rule.min_improvement, rule.max_shown_worsening)
    if all(c is None for c in changes):
        return out, numbers
    w, unit = change_bounds(rule, ps, rows, analytic, cfg.alpha)
    numbers.update(loss=w.estimate, loss_upper=w.upper, gain=-w.estimate, gain_lower=-w.upper)
    if rule.max_worsening is not None:
        numbers["false_refusal_risk"] = identical_risk(rule.max_worsening, w, cfg.alpha)
    if not (math.isfinite(w.estimate) and math.isfinite(w.upper)):
        out.append((False, "the change versus the champion cannot be measured (NaN)"))
        return out, numbers
    if rule.max_worsening is not None:
        risk = numbers.get("false_refusal_risk")
        out.append(_worsening(rule.max_worsening, w, unit, len(rows), risk, cfg))
    if rule.min_improvement is not None:
        out.append(_improvement(rule.min_improvement, w, unit, cfg))
    if rule.max_shown_worsening is not None:
        out.append(_shown_worse(rule.max_shown_worsening, w, unit, cfg))
    return out, numbers


def _confidence(cfg: GateConfig) -> str:
    return f"{1 - cfg.alpha:.0%}"


def _absolute(
    rule: Rule,
    ps: PairedScores,
    n: int,
    analytic: bool,
    cfg: GateConfig,
    numbers: dict[str, float | None],
) -> list[tuple[bool, str]]:
    """The ``at_least`` / ``at_most`` conditions, judged on the candidate's own bounds."""
    conf = _confidence(cfg)
    out: list[tuple[bool, str]] = []
    se = math.sqrt(max(ps.candidate * (1 - ps.candidate), 0.0) / n) if analytic else None
    v = bounds(ps.candidate, ps.candidate_boot, cfg.alpha, se)
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
    return out


def _worsening(
    t: float, w: Bounds, unit: str, n: int, risk: float | None, cfg: GateConfig
) -> tuple[bool, str]:
    """The ``max_worsening`` condition: the loss's upper bound within the tolerance ``t``."""
    conf = _confidence(cfg)
    said = change(-w.estimate, unit)
    if w.upper <= t + _EPS:
        bound = (
            f"a loss of at most {w.upper:.3f}"
            if w.upper > 0
            else f"a gain of at least {-w.upper:.3f}"
        )
        return (
            True,
            f"{said} ({bound} at {conf} confidence), within the allowed {fmt_threshold(t)}",
        )
    text = (
        f"{said} and may have lost up to {w.upper:.3f} ({conf} confidence), "
        f"more than the allowed {fmt_threshold(t)}"
    )
    if w.estimate <= t and risk is not None and risk > cfg.alpha:
        text += underpowered(n, t, risk, w, cfg.alpha)
    return (False, text)


def _shown_worse(t: float, w: Bounds, unit: str, cfg: GateConfig) -> tuple[bool, str]:
    """The ``max_shown_worsening`` condition: refused only when the loss's lower bound
    exceeds ``t`` (the candidate is shown worse, not merely not shown better)."""
    conf = _confidence(cfg)
    said = change(-w.estimate, unit)
    if w.lower <= t + _EPS:
        return (True, f"{said}; it is not shown to lose more than {fmt_threshold(t)} "
                      f"({conf} lower bound of the loss {w.lower:.3f})")
    return (False, f"{said}: it is shown to lose more than {fmt_threshold(t)} "
                   f"(at {conf} confidence it lost at least {w.lower:.3f})")


def _improvement(minimum: float, w: Bounds, unit: str, cfg: GateConfig) -> tuple[bool, str]:
    """The ``min_improvement`` condition: the gain's lower bound at least ``minimum``."""
    conf = _confidence(cfg)
    g, lo = -w.estimate, -w.upper
    ok = lo >= minimum - _EPS
    bound = (
        f"a gain of at least {lo:.3f} at {conf} confidence"
        if lo >= 0
        else f"at {conf} confidence it may have lost up to {-lo:.3f}"
    )
    return (
        ok,
        f"{change(g, unit)} ({bound}), "
        f"{'meeting' if ok else 'short of'} the required gain of "
        f"{fmt_threshold(minimum)}",
    )


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
    for rule in rules_of(cfg, evidence.task):
        for scope in scopes(rule, evidence, expected_golden, cfg):
            if scope.name not in weights and scope.rows is not None:
                rng = np.random.default_rng(stable_seed(cfg.seed, scope.name))
                weights[scope.name] = resample_weights(len(scope.rows), cfg.resamples, rng)
            checks.append(_judge(rule, scope, evidence.task, weights.get(scope.name), cfg))
    return _decide(checks, cfg)
