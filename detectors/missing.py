"""Windowed missing-value rate per feature, against the reference's rate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from detectors.base import ReferenceDetector
from detectors.ring import FloatArray
from detectors.shares import ShareJudge
from detectors.windowed import WindowedDetector, WindowFields, Windows


class Config(WindowFields):
    """Alarm when a feature's share of missing values (NaN, as stored) in the window
    rises more than ``rise`` above its share in the reference (and a one-sided binomial
    test at the reference's share is below the level; see :mod:`detectors.shares`)."""

    kind: Literal["missing"] = "missing"
    rise: Annotated[float, Field(gt=0, lt=1)] = 0.05


def _missing(j: int, values: FloatArray) -> tuple[FloatArray, FloatArray]:
    return np.isnan(values).astype(float), np.ones(len(values))


def build(cfg: Config, features: Sequence[str]) -> ReferenceDetector:
    """Per-feature missing-value rates.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(), features=["a", "b"])
    >>> det.set_reference(rng.normal(size=(2000, 2)))
    >>> cur = rng.normal(size=(500, 2))
    >>> cur[rng.random(500) < 0.3, 1] = np.nan
    >>> det.update(cur)
    >>> s = det.check()
    >>> s.status, s.details["drifted"]
    ('drift', ['b'])
    >>> s.details["reason"]
    'missing values: b 25.0% of 200 rows (reference 0.0%)'
    """
    watched = list(features) if cfg.features is None else list(cfg.features)
    judge = ShareJudge(
        "missing", watched, cfg.rise, cfg.level, cfg.min_samples, _missing,
        what="missing values",
    )
    windows = Windows(cfg.reference_size, cfg.window_size, cfg.min_samples, cfg.stride)
    return WindowedDetector(cfg.name or cfg.kind, cfg.signal, features, watched, windows, judge)
