"""Windowed share of unseen categories per categorical feature: a surge of categories
the reference does not know is drift in itself."""

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
    """Alarm when the share of a categorical feature's present values that are unseen
    (outside the categories seen at least ``min_count`` times in the reference, which is
    the data the champion was built for, so its vocabulary) rises more than ``rise`` above
    the reference's own share (see :mod:`detectors.shares`). Values are category codes;
    a missing value is neither seen nor unseen. ``features`` left out: every feature."""

    kind: Literal["unseen"] = "unseen"
    rise: Annotated[float, Field(gt=0, lt=1)] = 0.05
    min_count: Annotated[int, Field(ge=1)] = 5


class _Known:
    """Per column, the categories seen at least ``min_count`` times in the reference."""

    def __init__(self, min_count: int) -> None:
        self.min_count = min_count
        self.codes: list[FloatArray] = []

    def fit(self, reference: FloatArray) -> None:
        self.codes = []
        for j in range(reference.shape[1]):
            col = reference[:, j]
            codes, counts = np.unique(col[~np.isnan(col)], return_counts=True)
            self.codes.append(codes[counts >= self.min_count])

    def flags(self, j: int, values: FloatArray) -> tuple[FloatArray, FloatArray]:
        present = ~np.isnan(values)
        unseen = present & ~np.isin(values, self.codes[j])
        return unseen.astype(float), present.astype(float)


def build(cfg: Config, features: Sequence[str]) -> ReferenceDetector:
    """Per-feature unseen-category shares.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(features=["plan"]), features=["plan", "x"])
    >>> det.set_reference(np.column_stack([rng.integers(0, 3, 2000), rng.normal(size=2000)]))
    >>> plan = np.where(rng.random(500) < 0.2, 7, rng.integers(0, 3, 500))
    >>> det.update(np.column_stack([plan, rng.normal(size=500)]))
    >>> s = det.check()
    >>> s.status, s.details["drifted"]
    ('drift', ['plan'])
    """
    watched = list(features) if cfg.features is None else list(cfg.features)
    known = _Known(cfg.min_count)
    judge = ShareJudge(
        "unseen", watched, cfg.rise, cfg.level, cfg.min_samples, known.flags, known.fit,
        what="unseen categories",
    )
    windows = Windows(cfg.reference_size, cfg.window_size, cfg.min_samples, cfg.stride)
    return WindowedDetector(cfg.name or cfg.kind, cfg.signal, features, watched, windows, judge)
