"""Windowed Jensen-Shannon distance, one per feature, against a reference."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from detectors.base import ReferenceDetector
from detectors.perfeature import Fields, bin_counts, build_windowed, effective_n
from detectors.ring import FloatArray


class Config(Fields):
    """Per-feature Jensen-Shannon distance (the square root of the JS divergence, natural
    log, as ``scipy.spatial.distance.jensenshannon``) between the reference and window
    frequencies over ``bins`` reference-quantile bins (or categories).

    ``calibration="bootstrap"`` (default) gives p-values with a null estimated from the
    reference (see :mod:`detectors.perfeature`); ``"threshold"`` compares the distance with
    ``threshold`` (0.1, evidently's default).
    """

    kind: Literal["jensenshannon"] = "jensenshannon"
    calibration: Literal["bootstrap", "threshold"] = "bootstrap"
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.1
    bins: Annotated[int, Field(ge=2, le=1000)] = 10


def js_counts(ref: FloatArray, cur: FloatArray) -> float:
    """Jensen-Shannon distance of two aligned count vectors.

    >>> round(js_counts(np.array([50.0, 50.0]), np.array([30.0, 70.0])), 4)
    0.1449
    """
    p, q = ref / ref.sum(), cur / cur.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log(q / m), 0.0).sum()
    return float(np.sqrt(max((kl_p + kl_q) / 2, 0.0)))


class JSTest:
    kind = "jensenshannon"
    has_pvalue = False

    def numeric(self, ref: FloatArray, cur: FloatArray, edges: FloatArray) -> tuple[float, float]:
        return js_counts(bin_counts(ref, edges), bin_counts(cur, edges)), np.nan

    def categorical(self, ref: FloatArray, cur: FloatArray) -> tuple[float, float]:
        return js_counts(ref, cur), np.nan

    def scale(self, n_ref: int, n_cur: int, categorical: bool) -> float:
        return float(np.sqrt(effective_n(n_ref, n_cur)))


def build(cfg: Config, features: Sequence[str]) -> ReferenceDetector:
    """Per-feature Jensen-Shannon distance.

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
    return build_windowed(cfg, cfg.kind, features, JSTest(), cfg.calibration,
                          threshold=cfg.threshold, bins=cfg.bins)
