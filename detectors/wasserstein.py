"""Windowed Wasserstein-1 distance, one per feature, against a reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from detectors.base import ReferenceDetector
from detectors.perfeature import Fields, build_windowed, effective_n
from detectors.ring import FloatArray


class Config(Fields):
    """Per-feature Wasserstein-1 (earth mover's) distance between the window and the
    reference, divided by the reference's standard deviation (evidently's "normed"
    version, so ``threshold`` is in reference standard deviations). Categorical features
    use the total variation distance (Wasserstein-1 under the discrete metric).

    ``calibration="bootstrap"`` (default) gives p-values with a null estimated from the
    reference (see :mod:`detectors.perfeature`); ``"threshold"`` compares the distance with
    ``threshold`` (0.1, evidently's default).
    """

    kind: Literal["wasserstein"] = "wasserstein"
    calibration: Literal["bootstrap", "threshold"] = "bootstrap"
    threshold: Annotated[float, Field(gt=0)] = 0.1


def wasserstein_sorted(a: FloatArray, b: FloatArray) -> float:
    """Wasserstein-1 distance of two sorted finite samples (as
    ``scipy.stats.wasserstein_distance``)."""
    both = np.sort(np.concatenate([a, b]))
    grid = both[:-1]
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.dot(np.abs(fa - fb), np.diff(both)))


class WassersteinTest:
    kind = "wasserstein"
    has_pvalue = False

    def numeric(self, ref: FloatArray, cur: FloatArray, edges: FloatArray) -> tuple[float, float]:
        sd = float(ref.std())
        return (wasserstein_sorted(ref, cur) / sd if sd > 0 else np.nan), np.nan

    def categorical(self, ref: FloatArray, cur: FloatArray) -> tuple[float, float]:
        return float(0.5 * np.abs(ref / ref.sum() - cur / cur.sum()).sum()), np.nan

    def scale(self, n_ref: int, n_cur: int, categorical: bool) -> float:
        return float(np.sqrt(effective_n(n_ref, n_cur)))


def build(cfg: Config, features: Sequence[str]) -> ReferenceDetector:
    """Per-feature normed Wasserstein distance.

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
    return build_windowed(cfg, cfg.kind, features, WassersteinTest(), cfg.calibration,
                          threshold=cfg.threshold)
