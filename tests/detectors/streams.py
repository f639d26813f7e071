"""Synthetic streams for the detector tests.

Each detector is checked on the input it is meant for: the 0/1 detectors (DDM, EDDM,
HDDM-A/W, FHDDM) and Page-Hinkley (whose ``threshold`` is in units of the signal and
defaults to an error stream's) on a Bernoulli error stream, error rate 0.1 shifting to
0.5; KSWIN and the KS test (continuous data) on N(0, 1) shifting to N(1, 1) (the KS test on
2 features, the second one shifting); ADWIN on both. The missing-value detector on N(0, 1)
rows with 2% of values missing, the second feature's share rising to 25%; the
unseen-category detector on category codes 0-4, the second feature's values turning to a
new code 9 a quarter of the time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from detectors.base import Detector, DriftSignal

FEATURES = ["a", "b"]
F64 = npt.NDArray[np.float64]


def stream(kind: str, n: int, shifted: bool, rng: np.random.Generator, width: int = 0) -> F64:
    """``n`` values (``width == 0``) or rows of ``width`` features of a stream."""
    if kind == "bernoulli":
        return (rng.random(n) < (0.5 if shifted else 0.1)).astype(np.float64)
    if kind == "missing":
        rows = rng.standard_normal((n, width))
        rows[rng.random((n, width)) < 0.02] = np.nan
        if shifted:
            rows[rng.random(n) < 0.25, -1] = np.nan
        return rows
    if kind == "categories":
        rows = rng.integers(0, 5, (n, width)).astype(np.float64)
        if shifted:
            rows[rng.random(n) < 0.25, -1] = 9.0
        return rows
    if width == 0:
        return rng.standard_normal(n) + (1.0 if shifted else 0.0)
    rows = rng.standard_normal((n, width))
    if shifted:
        rows[:, -1] += 1.0
    return rows


def feed(det: Detector, data: F64, start: int = 0, batch: int = 100) -> list[DriftSignal]:
    """Feed ``data`` in batches with row indices from ``start``; one check per batch."""
    out = []
    for i in range(0, len(data), batch):
        chunk = data[i : i + batch]
        det.update(chunk, np.arange(start + i, start + i + len(chunk), dtype=np.int64))
        out.append(det.check())
    return out


def first_drift(signals: Sequence[DriftSignal]) -> DriftSignal | None:
    return next((s for s in signals if s.drift), None)
