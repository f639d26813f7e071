"""The regression gate: a pure function from evaluation metrics to a promotion decision.

A candidate passes when it is better on the new data (a gain over the champion, or good
enough outright) and has not forgotten any golden set. The gate fails closed: a missing,
NaN or out-of-range metric, too few evaluated rows, or an expected golden set that was not
evaluated fails its check, with the reason in plain words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Check", "EvalMetrics", "GateConfig", "GateDecision", "evaluate"]

NEW_DATA = "new_data"
GOLDEN_PREFIX = "golden:"
METRIC = "accuracy"
# Absorbs float error at the boundary (0.82 - 0.80 < 0.02 in binary floating point).
_EPS = 1e-9

Score = tuple[float, float, int]


class GateConfig(BaseModel):
    """Thresholds of the gate.

    ``min_gain``/``min_accuracy`` judge the new data: the candidate must beat the champion
    by ``min_gain`` or reach ``min_accuracy``. ``max_forgetting`` bounds the accuracy the
    candidate may lose on each golden set. ``min_holdout``/``min_golden`` are the fewest
    evaluated rows that count as evidence.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_gain: float = 0.02
    min_accuracy: float = Field(default=0.9, ge=0.0, le=1.0)
    max_forgetting: float = Field(default=0.02, ge=0.0)
    min_holdout: int = Field(default=50, ge=1)
    min_golden: int = Field(default=50, ge=1)


def _json_float(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


@dataclass(frozen=True)
class Check:
    """One check of the gate; ``name`` is ``new_data`` or ``golden:<set name>``."""

    name: str
    metric: str
    champion: float | None
    candidate: float | None
    threshold: str
    passed: bool
    reason: str
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (NaN and infinity become None)."""
        out = asdict(self)
        out["champion"] = _json_float(self.champion)
        out["candidate"] = _json_float(self.candidate)
        return out


@dataclass(frozen=True)
class GateDecision:
    """The verdict: passed only if every check passed; ``reasons`` explain it."""

    passed: bool
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the ``gate.passed`` / ``gate.failed`` event payload."""
        return {
            "passed": self.passed,
            "checks": [c.to_dict() for c in self.checks],
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class EvalMetrics:
    """Accuracies of champion and candidate.

    ``holdout`` is (champion, candidate, n) on held-out new data; ``golden`` maps each
    golden set's name to (champion, candidate, n).
    """

    holdout: Score | None
    golden: dict[str, Score] = field(default_factory=dict)


def _fmt(x: float) -> str:
    return f"{x:.2f}" if round(x, 2) == x else f"{x:.4g}"


def _acc_problem(label: str, value: Any) -> str | None:
    if value is None:
        return f"{label} accuracy is missing"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{label} accuracy {value!r} is not a number"
    if math.isnan(value):
        return f"{label} accuracy is NaN"
    if not 0.0 <= value <= 1.0:
        return f"{label} accuracy {value!r} is outside [0, 1]"
    return None


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


@dataclass(frozen=True)
class _Reading:
    """A score as given, and why it cannot be judged (None when it can)."""

    champion: float | None
    candidate: float | None
    n: int
    problem: str | None


def _read(score: Any, where: str, rows: str, minimum: int) -> _Reading:
    if not (isinstance(score, tuple | list) and len(score) == 3):
        return _Reading(None, None, 0, f"{where} was expected but not evaluated")
    champion, candidate, n = score
    n_ok = isinstance(n, int) and not isinstance(n, bool)
    count = n if n_ok else 0
    reading = _Reading(_num(champion), _num(candidate), count, None)
    problem = (
        (None if n_ok else f"the row count {n!r} is not an integer")
        or _acc_problem("the champion's", champion)
        or _acc_problem("the candidate's", candidate)
    )
    if problem is not None:
        return replace(reading, problem=f"On {where}, {problem}")
    if count < minimum:
        return replace(
            reading,
            problem=f"Only {count} {rows} were evaluated; at least {minimum} are required",
        )
    return reading


def _sentence(text: str | None) -> str:
    text = text or "the metrics cannot be judged"
    return text[0].upper() + text[1:] + "."


def _gain_verdict(champion: float, candidate: float, n: int, cfg: GateConfig) -> tuple[bool, str]:
    gain = candidate - champion
    said = (
        f"The candidate scores {candidate:.3f} vs the champion's {champion:.3f} "
        f"on {n} new-data rows"
    )
    if gain >= cfg.min_gain - _EPS:
        return True, f"{said}: a gain of {gain:.3f} meets {_fmt(cfg.min_gain)}."
    if candidate >= cfg.min_accuracy - _EPS:
        return True, f"{said}: it reaches the {_fmt(cfg.min_accuracy)} floor."
    return False, (
        f"{said}: a gain of {gain:.3f} is below {_fmt(cfg.min_gain)} "
        f"and it is below the {_fmt(cfg.min_accuracy)} floor."
    )


def _forgetting_verdict(
    name: str, champion: float, candidate: float, n: int, cfg: GateConfig
) -> tuple[bool, str]:
    forgetting = champion - candidate
    said = (
        f"On golden set {name!r} the candidate scores {candidate:.3f} "
        f"vs the champion's {champion:.3f} on {n} rows"
    )
    if forgetting <= cfg.max_forgetting + _EPS:
        return True, (
            f"{said}: forgetting {max(forgetting, 0.0):.3f} is within {_fmt(cfg.max_forgetting)}."
        )
    return False, (
        f"{said}: it forgot {forgetting:.3f}, more than the allowed {_fmt(cfg.max_forgetting)}."
    )


def _new_data(score: Score | None, cfg: GateConfig) -> Check:
    threshold = f"gain >= {_fmt(cfg.min_gain)} or candidate >= {_fmt(cfg.min_accuracy)}"
    r = _read(score, "the held-out new data", "held-out new-data rows", cfg.min_holdout)
    if r.problem is None and r.champion is not None and r.candidate is not None:
        passed, reason = _gain_verdict(r.champion, r.candidate, r.n, cfg)
    else:
        passed, reason = False, _sentence(r.problem)
    return Check(NEW_DATA, METRIC, r.champion, r.candidate, threshold, passed, reason, r.n)


def _golden(name: str, score: Score | None, cfg: GateConfig) -> Check:
    threshold = f"forgetting <= {_fmt(cfg.max_forgetting)}"
    r = _read(score, f"golden set {name!r}", f"rows of golden set {name!r}", cfg.min_golden)
    if r.problem is None and r.champion is not None and r.candidate is not None:
        passed, reason = _forgetting_verdict(name, r.champion, r.candidate, r.n, cfg)
    else:
        passed, reason = False, _sentence(r.problem)
    name = GOLDEN_PREFIX + name
    return Check(name, METRIC, r.champion, r.candidate, threshold, passed, reason, r.n)


def evaluate(
    metrics: EvalMetrics, cfg: GateConfig, expected_golden: Sequence[str] = ()
) -> GateDecision:
    """Decide whether the candidate may replace the champion.

    Parameters
    ----------
    metrics
        Champion and candidate accuracies on the new-data holdout and the golden sets.
    cfg
        Thresholds.
    expected_golden
        Golden sets that must have been evaluated; a missing one fails its check.
        Every golden set present in ``metrics`` is checked as well.

    Returns
    -------
    GateDecision
        One check for the new data, then one per golden set (sorted by name).

    Examples
    --------
    >>> m = EvalMetrics(holdout=(0.80, 0.86, 200), golden={"base": (0.93, 0.92, 100)})
    >>> d = evaluate(m, GateConfig(), expected_golden=["base"])
    >>> d.passed, d.reasons
    (True, ('All 2 checks passed.',))
    >>> evaluate(EvalMetrics(holdout=None), GateConfig()).reasons
    ('The held-out new data was expected but not evaluated.',)
    """
    if isinstance(expected_golden, str):
        raise TypeError("expected_golden must be a sequence of set names, not one string")
    checks = [_new_data(metrics.holdout, cfg)]
    names = sorted(set(metrics.golden) | set(expected_golden))
    checks.extend(_golden(name, metrics.golden.get(name), cfg) for name in names)
    failed = [c.reason for c in checks if not c.passed]
    reasons = tuple(failed) if failed else (f"All {len(checks)} checks passed.",)
    return GateDecision(passed=not failed, checks=tuple(checks), reasons=reasons)
