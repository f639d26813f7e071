"""Windowed chi-squared tests of category (or binned) frequencies, one per feature."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from scipy import stats

from detectors.base import ReferenceDetector
from detectors.perfeature import Fields, bin_counts, build_windowed
from detectors.ring import FloatArray


class Config(Fields):
    """Pearson's chi-squared test of homogeneity on the 2 x k table of counts: categories
    of a categorical feature, ``bins`` reference-quantile bins of a numeric one.

    The fields shared by every per-feature test are described in
    :mod:`detectors.perfeature`; ``calibration`` is ``"asymptotic"`` (chi-squared with
    ``k - 1`` degrees of freedom) or ``"bootstrap"``.
    """

    kind: Literal["chi2"] = "chi2"
    calibration: Literal["asymptotic", "bootstrap"] = "asymptotic"
    bins: Annotated[int, Field(ge=2, le=1000)] = 10


def chi2_counts(ref: FloatArray, cur: FloatArray) -> tuple[float, float]:
    """Chi-squared statistic and p-value of two aligned count vectors (empty categories
    dropped); NaN when fewer than two categories remain.

    >>> s, p = chi2_counts(np.array([50.0, 50.0]), np.array([30.0, 70.0]))
    >>> round(s, 3), round(p, 4)
    (8.333, 0.0039)
    """
    keep = (ref + cur) > 0
    r, c = ref[keep], cur[keep]
    if len(r) < 2 or r.sum() == 0 or c.sum() == 0:
        return np.nan, np.nan
    n_r, n_c = r.sum(), c.sum()
    col = (r + c) / (n_r + n_c)
    er, ec = col * n_r, col * n_c
    stat = float(((r - er) ** 2 / er).sum() + ((c - ec) ** 2 / ec).sum())
    return stat, float(stats.chi2.sf(stat, len(r) - 1))


class Chi2Test:
    kind = "chi2"
    has_pvalue = True

    def numeric(self, ref: FloatArray, cur: FloatArray, edges: FloatArray) -> tuple[float, float]:
        return chi2_counts(bin_counts(ref, edges), bin_counts(cur, edges))

    def categorical(self, ref: FloatArray, cur: FloatArray) -> tuple[float, float]:
        return chi2_counts(ref, cur)

    def scale(self, n_ref: int, n_cur: int, categorical: bool) -> float:
        return 1.0


def build(cfg: Config, features: Sequence[str]) -> ReferenceDetector:
    """Per-feature chi-squared tests.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(categorical=["color"]), features=["color", "x"])
    >>> ref = np.column_stack([rng.integers(0, 3, 2000), rng.normal(size=2000)])
    >>> det.set_reference(ref)
    >>> cur = np.column_stack([rng.choice(3, 500, p=[0.6, 0.2, 0.2]), rng.normal(size=500)])
    >>> det.update(cur)
    >>> s = det.check()
    >>> s.status, [row["drifted"] for row in s.details["features"]]
    ('drift', [True, False])
    """
    return build_windowed(cfg, cfg.kind, features, Chi2Test(), cfg.calibration, bins=cfg.bins)
