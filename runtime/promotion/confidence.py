"""One-sided confidence bounds of the quantities the gate tests, and the noise they show.

A bound comes from the paired bootstrap (quantiles of the resampled values) or, for
accuracy under ``test: mcnemar``, from a standard error. From a bound's distance to its
estimate the gate reads the noise of a check: the chance a candidate of identical quality
fails it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from runtime.promotion.evidence import EvalSet
from runtime.promotion.metrics import HIGHER_IS_BETTER, PairedScores
from runtime.promotion.settings import Rule


@dataclass
class Bounds:
    """Estimate and one-sided confidence bounds of a quantity."""

    estimate: float
    lower: float
    upper: float


def bounds(estimate: float, boot: Any, alpha: float, se: float | None) -> Bounds:
    """Bounds at level ``1 - alpha``: normal with ``se``, else the bootstrap's quantiles
    (NaN when more than a tenth of the resamples are not finite)."""
    if se is not None:
        z = NormalDist().inv_cdf(1 - alpha)
        return Bounds(estimate, estimate - z * se, estimate + z * se)
    finite = boot[np.isfinite(boot)]
    if len(finite) < 0.9 * len(boot):
        return Bounds(estimate, math.nan, math.nan)
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    return Bounds(estimate, float(lo), float(hi))


def change_bounds(
    rule: Rule, ps: PairedScores, rows: EvalSet, analytic: bool, alpha: float
) -> tuple[Bounds, str]:
    """Bounds of the candidate's loss versus the champion, in the metric's own direction
    (relative to the champion's value when ``rule.relative``), and the unit to print."""
    assert ps.champion is not None and ps.champion_boot is not None
    sign = 1.0 if HIGHER_IS_BETTER[rule.metric] else -1.0
    loss = sign * (ps.champion - ps.candidate)
    boot = sign * (ps.champion_boot - ps.candidate_boot)
    se = mcnemar_se(rows) if analytic else None
    unit = ""
    if rule.relative:
        scale = abs(ps.champion)
        loss = loss / scale if scale > 0 else math.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            boot = boot / np.abs(ps.champion_boot)
        se = se / scale if se is not None and scale > 0 else se
        unit = " of the champion's value"
    return bounds(loss, boot, alpha, se), unit


def identical_risk(tolerance: float, w: Bounds, alpha: float) -> float | None:
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


def mcnemar_se(s: EvalSet) -> float:
    """Standard error of the accuracy difference on paired rows (McNemar's variance)."""
    a = s.champion.argmax(axis=1) == s.y
    b = s.candidate.argmax(axis=1) == s.y
    n = len(s.y)
    lost, won = float(np.sum(a & ~b)), float(np.sum(~a & b))
    return math.sqrt(max(lost + won - (lost - won) ** 2 / n, 0.0)) / n
