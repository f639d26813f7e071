"""The promotion settings a config names: the gate's rules and the rollback watch.

Pure pydantic models (no numpy, no torch), so :mod:`runtime.config` can compose them
without importing what judges a candidate.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime.promotion.metrics import Metric

Bound = tuple[float | None, float | None]


def fmt_threshold(x: float) -> str:
    """A threshold as a rule prints it: two decimals when exact, else four digits."""
    return f"{x:.2f}" if round(x, 2) == x else f"{x:.4g}"


class Rule(BaseModel):
    """One rule: a metric, where it is measured, and the conditions it must meet.

    ``on`` picks the sets (``new_data``, every ``golden`` set, or ``all``); ``by`` splits
    each set (``overall``, per ``class``, per ``slice`` of :attr:`GateConfig.slices`).
    Changes are in the metric's own direction (a worsening of log loss is a rise);
    ``relative`` reads them as fractions of the champion's value. ``require: any`` passes
    when one condition holds (e.g. a gain, or a good enough score outright).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    metric: Metric = "accuracy"
    on: Literal["new_data", "golden", "all"] = "golden"
    by: Literal["overall", "class", "slice"] = "overall"
    only: list[str] | None = None
    """Restrict ``by: class`` to these class labels or ``by: slice`` to these slices."""
    at_least: float | None = None
    at_most: float | None = None
    max_worsening: float | None = Field(default=None, ge=0)
    max_shown_worsening: float | None = Field(default=None, ge=0)
    """Refuse only when the evidence shows a loss above this (the loss's lower bound)."""
    min_improvement: float | None = None
    relative: bool = False
    require: Literal["all", "any"] = "all"

    @model_validator(mode="after")
    def _conditions(self) -> Rule:
        given = [self.at_least, self.at_most, self.max_worsening, self.min_improvement,
                 self.max_shown_worsening]
        if all(c is None for c in given):
            raise ValueError(
                "a rule needs a condition: at_least, at_most, max_worsening, "
                "max_shown_worsening or min_improvement"
            )
        if self.metric == "negative_flip_rate" and (
            self.max_worsening is not None
            or self.min_improvement is not None
            or self.max_shown_worsening is not None
            or self.at_least
        ):
            raise ValueError("negative_flip_rate is already relative to the champion: use at_most")
        if self.only is not None and self.by == "overall":
            raise ValueError("'only' applies to by: class or by: slice")
        return self

    def describe(self) -> str:
        parts = []
        unit = " (relative)" if self.relative else ""
        if self.min_improvement is not None:
            parts.append(f"gain >= {fmt_threshold(self.min_improvement)}{unit}")
        if self.max_worsening is not None:
            parts.append(f"loss <= {fmt_threshold(self.max_worsening)}{unit}")
        if self.max_shown_worsening is not None:
            parts.append(f"not shown to lose > {fmt_threshold(self.max_shown_worsening)}{unit}")
        if self.at_least is not None:
            parts.append(f"candidate >= {fmt_threshold(self.at_least)}")
        if self.at_most is not None:
            parts.append(f"candidate <= {fmt_threshold(self.at_most)}")
        return (" or " if self.require == "any" else " and ").join(parts)


class GateConfig(BaseModel):
    """The gate's rules and how much noise it tolerates.

    Without ``rules``, the simple thresholds make the rule set: on the new data the
    candidate is refused only when it is shown worse than the champion (its accuracy loss's
    lower bound above 0), or, when ``min_gain`` is set, it must gain ``min_gain`` over the
    champion or reach ``min_accuracy``; on each golden set it may lose at most
    ``max_forgetting``. Retrained on the new data, a candidate that is merely "not shown
    better" on a small holdout is still the likelier fit to the present, so requiring a
    shown gain refused most adaptations on real streams (issue 16).
    ``forgetting: shown`` refuses on a golden set only when the candidate is shown to
    lose more than ``max_forgetting`` there (the loss's lower bound above it); ``bounded``
    refuses unless the loss is shown to stay within it (the upper bound), which under
    real concept drift refused most candidates that fit the present (issue 16).
    ``obsolete_golden: exclude`` leaves out of the golden checks the golden rows that the
    new data contradicts (:mod:`runtime.promotion.agreement`); a golden set left with too
    few rows that way is obsolete and passes, saying so.
    ``min_holdout``/``min_golden``/``min_subset_rows`` are the fewest rows that count as
    evidence for the new data, a golden set, and a class or slice.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_gain: float | None = None
    min_accuracy: float = Field(default=0.9, ge=0.0, le=1.0)
    max_forgetting: float = Field(default=0.02, ge=0.0)
    forgetting: Literal["shown", "bounded"] = "shown"
    min_holdout: int = Field(default=50, ge=1)
    min_golden: int = Field(default=50, ge=1)
    min_subset_rows: int = Field(default=30, ge=1)
    rules: list[Rule] | None = None
    obsolete_golden: Literal["exclude", "keep"] = "exclude"
    slices: dict[str, dict[str, Bound]] = Field(default_factory=dict)
    """Slice name → ``{feature: [low, high)}`` (either end may be null)."""
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    test: Literal["bootstrap", "mcnemar"] = "bootstrap"
    """``mcnemar`` uses the paired-proportion (McNemar) variance for accuracy checks."""
    resamples: int = Field(default=1000, ge=100)
    seed: int = 0
    mode: Literal["auto", "manual", "shadow"] = "auto"
    """``auto`` promotes on pass; ``manual`` waits for ``driftloop approve``; ``shadow``
    scores the candidate on live labelled rows next to the champion first."""
    shadow_rows: int = Field(default=500, ge=1)
    appeal: Literal["shadow", "refuse"] = "shadow"
    """A candidate that passed the new-data checks and failed only golden ones: ``shadow``
    judges it on the next ``shadow_rows`` live labelled rows beside the champion (promoted
    when at least as good there; :mod:`runtime.promotion.appeal`), ``refuse`` refuses it."""


class WatchConfig(BaseModel):
    """The automatic rollback watch after each promotion (``rows: 0`` turns it off)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(default=1000, ge=0)
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5)
