"""Windowed population stability index (PSI), one per feature, against a reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from detectors.base import ReferenceDetector
from detectors.perfeature import Fields, bin_counts, build_windowed, effective_n
from detectors.ring import FloatArray

EPS = 1e-4
"""Floor on bin proportions (an empty bin would make PSI infinite); evidently's too."""


class Config(Fields):
    """Per-feature PSI, ``sum((c - r) * ln(c / r))`` over ``bins`` reference-quantile bins
    (or categories) with proportions ``r`` (reference) and ``c`` (window).

    ``calibration="bootstrap"`` (the default) turns PSI into a p-value with a null
    estimated from the reference (see :mod:`detectors.perfeature`), so
    ``false_alarms_per_rows`` holds; ``"threshold"`` compares the raw PSI with
    ``threshold`` (0.1 is the customary "moderate shift", 0.25 "major"), as evidently does.
    """

    kind: Literal["psi"] = "psi"
    calibration: Literal["bootstrap", "threshold"] = "bootstrap"
    threshold: Annotated[float, Field(gt=0)] = 0.1
    bins: Annotated[int, Field(ge=2, le=1000)] = 10


def psi_counts(ref: FloatArray, cur: FloatArray) -> float:
    """PSI of two aligned count vectors.

    >>> round(psi_counts(np.array([50.0, 50.0]), np.array([30.0, 70.0])), 4)
    0.1695
    """
    r = np.maximum(ref / ref.sum(), EPS)
    c = np.maximum(cur / cur.sum(), EPS)
    return float(np.sum((c - r) * np.log(c / r)))


class PSITest:
    kind = "psi"
    has_pvalue = False

    def numeric(self, ref: FloatArray, cur: FloatArray, edges: FloatArray) -> tuple[float, float]:
        return psi_counts(bin_counts(ref, edges), bin_counts(cur, edges)), np.nan

    def categorical(self, ref: FloatArray, cur: FloatArray) -> tuple[float, float]:
        return psi_counts(ref, cur), np.nan

    def scale(self, n_ref: int, n_cur: int, categorical: bool) -> float:
        return effective_n(n_ref, n_cur)


def build(cfg: Config, features: Sequence[str]) -> ReferenceDetector:
    """Per-feature PSI.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(), features=["a", "b"])
    >>> det.set_reference(rng.normal(size=(2000, 2)))
    >>> det.update(rng.normal(size=(500, 2)) + [0.0, 0.5])
    >>> s = det.check()
    >>> s.status, [row["drifted"] for row in s.details["features"]]
    ('drift', [False, True])
    """
    return build_windowed(cfg, cfg.kind, features, PSITest(), cfg.calibration,
                          threshold=cfg.threshold, bins=cfg.bins)
