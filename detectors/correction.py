"""Multiple-testing corrections across the features of one windowed test."""

from __future__ import annotations

from typing import Literal

import numpy as np

from detectors.ring import FloatArray

Correction = Literal["bonferroni", "holm", "bh", "none"]


def adjust(p: FloatArray, correction: str) -> FloatArray:
    """Adjust p-values for testing ``len(p)`` features.

    ``"bonferroni"`` and Holm's step-down (``"holm"``) control the family-wise error
    rate; Benjamini-Hochberg (``"bh"``) controls the false discovery rate. Under the
    global null (no feature moved) all three bound the probability that any adjusted
    p-value falls below ``alpha`` by ``alpha``, which is what the windowed detectors'
    false-alarm calibration relies on. NaN p-values stay NaN and do not count as tests.

    >>> adjust(np.array([0.01, 0.04, 0.03]), "holm").round(2).tolist()
    [0.03, 0.06, 0.06]
    >>> adjust(np.array([0.01, 0.04, 0.03]), "bh").round(2).tolist()
    [0.03, 0.04, 0.04]
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    q = p[ok]
    m = len(q)
    if m == 0:
        return out
    if correction == "none":
        out[ok] = q
    elif correction == "bonferroni":
        out[ok] = np.minimum(q * m, 1.0)
    elif correction == "holm":
        order = np.argsort(q, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * q[order])
        out[ok[order]] = np.minimum(stepped, 1.0)
    elif correction == "bh":
        order = np.argsort(q, kind="stable")
        scaled = q[order] * m / np.arange(1, m + 1)
        out[ok[order]] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    else:
        raise ValueError(f"unknown correction {correction!r}")
    return out
