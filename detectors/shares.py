"""Per-column shares of flagged values, window against reference: the judge behind the
missing-value (:mod:`detectors.missing`) and unseen-category (:mod:`detectors.unseen`)
detectors.

A column's share is the fraction of the window's rows flagged in it (missing; or present
and outside the known categories). A column drifts when its window share exceeds the
reference's by more than ``rise`` (absolute, e.g. 0.05 = five points) and a one-sided
binomial test at the reference's share, with at least ``min_samples`` rows, gives a
p-value below the detector's level (so a window of a few rows cannot alarm on chance).
An alarm's details say why in words (``reason``: each drifted column, its share and the
reference's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from detectors.ring import FloatArray
from detectors.windowed import Verdict

Flags = Callable[[int, FloatArray], tuple[FloatArray, FloatArray]]
"""``(column, values) -> (flagged, counted)``: 0/1 per value, whether it is flagged and
whether it counts at all (the denominator)."""


class ShareJudge:
    """Compares per-column flagged shares of the window with the reference's."""

    def __init__(
        self, kind: str, features: Sequence[str], rise: float, level: float, min_samples: int,
        flags: Flags,
        fit: Callable[[FloatArray], None] | None = None, what: str = "flagged values",
    ) -> None:
        self.kind = kind
        self.what = what
        self.features = list(features)
        self.rise = rise
        self.threshold: float | None = rise
        self.level = level
        self.min_samples = min_samples
        self._flags = flags
        self._fit = fit
        self._ref_share = np.zeros(len(features))

    def shares(self, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Per column the flagged share and the number of counted rows."""
        share, n = np.zeros(x.shape[1]), np.zeros(x.shape[1])
        for j in range(x.shape[1]):
            flagged, counted = self._flags(j, x[:, j])
            n[j] = counted.sum()
            share[j] = flagged.sum() / n[j] if n[j] else 0.0
        return share, n

    def fit(self, reference: FloatArray) -> None:
        if self._fit is not None:
            self._fit(reference)
        self._ref_share = self.shares(reference)[0]

    def evaluate(self, current: FloatArray) -> Verdict:
        share, n = self.shares(current)
        rows: list[dict[str, Any]] = []
        drifted = []
        for j, name in enumerate(self.features):
            ref = float(self._ref_share[j])
            enough = n[j] >= self.min_samples
            p = float(stats.binom.sf(round(share[j] * n[j]) - 1, int(n[j]), max(ref, 1e-6)))
            hit = bool(enough and share[j] - ref > self.rise and p < self.level)
            drifted.append(hit)
            rows.append({
                "feature": name, "reference_share": round(ref, 6),
                "window_share": round(float(share[j]), 6), "rows": int(n[j]),
                "p_value": p if enough else None, "drifted": hit,
            })
        if not any(n[j] >= self.min_samples for j in range(len(n))):
            return Verdict("not_enough_data", None, self.rise, {"test": self.kind})
        rise = share - self._ref_share
        hits = [r for r in rows if r["drifted"]]
        details: dict[str, Any] = {"test": self.kind, "features": rows,
                                   "drifted": [r["feature"] for r in hits]}
        if hits:
            details["reason"] = f"{self.what}: " + ", ".join(
                f"{r['feature']} {r['window_share']:.1%} of {r['rows']} rows "
                f"(reference {r['reference_share']:.1%})"
                for r in hits
            )
        return Verdict("drift" if any(drifted) else "ok", float(rise.max()), self.rise, details)
