"""Windowed two-sample Kolmogorov-Smirnov tests, one per feature, against a reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats

from detectors.base import ReferenceDetector
from detectors.chi2 import chi2_counts
from detectors.perfeature import Fields, build_windowed, effective_n
from detectors.ring import FloatArray


class Config(Fields):
    """Per-feature KS tests of the latest ``window_size`` rows against a reference window.

    The fields shared by every per-feature test (windows, ``false_alarms_per_rows`` or
    ``alpha``, ``correction``, ``drift_share``, ``categorical``) are described in
    :mod:`detectors.perfeature`. p-values are Smirnov's asymptotic ones (as
    ``scipy.stats.ks_2samp(..., method="asymp")``), or ``"bootstrap"`` ones for data with
    many ties; categorical features get a chi-squared test.
    """

    kind: Literal["ks"] = "ks"
    calibration: Literal["asymptotic", "bootstrap"] = "asymptotic"


def ks_distance(a: FloatArray, b: FloatArray) -> float:
    """Two-sample KS distance of sorted, finite samples, in ``O(len(b) log len(a))``.

    Both empirical CDFs are step functions, so ``|F_a - F_b|`` is constant between
    consecutive data points; between two points of ``b`` it is monotone (only ``F_a``
    moves). Its maximum is therefore reached at a point of ``b`` or just before one (or
    past the last one, where it only shrinks): two lookups of ``b`` in ``a`` per point
    of ``b`` instead of one lookup of every point of both. The same integer counts as
    evaluating both CDFs at every point, so the same float.

    >>> a, b = np.array([0.0, 1.0, 2.0, 3.0]), np.array([2.5, 3.0, 4.0])
    >>> ks_distance(a, b) == float(np.abs(np.searchsorted(a, np.r_[a, b], "right") / 4
    ...     - np.searchsorted(b, np.r_[a, b], "right") / 3).max())
    True
    """
    n, m = len(a), len(b)
    at_b = np.abs(np.searchsorted(a, b, side="right") / n
                  - np.searchsorted(b, b, side="right") / m)
    before_b = np.abs(np.searchsorted(a, b, side="left") / n
                      - np.searchsorted(b, b, side="left") / m)
    return float(max(at_b.max(), before_b.max()))


class KSTest:
    kind = "ks"
    has_pvalue = True

    def numeric(self, ref: FloatArray, cur: FloatArray, edges: FloatArray) -> tuple[float, float]:
        d = ks_distance(ref, cur)
        en = np.round(effective_n(len(ref), len(cur)))
        return d, float(np.clip(stats.kstwo.sf(d, en), 0.0, 1.0))

    def categorical(self, ref: FloatArray, cur: FloatArray) -> tuple[float, float]:
        return chi2_counts(ref, cur)

    def scale(self, n_ref: int, n_cur: int, categorical: bool) -> float:
        return 1.0 if categorical else float(np.sqrt(effective_n(n_ref, n_cur)))


def build(cfg: Config, features: Sequence[str]) -> ReferenceDetector:
    """A per-feature KS detector over ``cfg.features`` (all of ``features`` if ``None``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(), features=["a", "b"])
    >>> det.update(rng.normal(size=(2500, 2)))   # 2000 rows fill the reference
    >>> det.check().status
    'ok'
    >>> det.update(rng.normal(size=(500, 2)) + [0.0, 1.0])
    >>> s = det.check()
    >>> s.status, [row["drifted"] for row in s.details["features"]]
    ('drift', [False, True])
    """
    return build_windowed(cfg, cfg.kind, features, KSTest(), cfg.calibration)
