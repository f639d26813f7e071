"""The champion's performance estimated without labels (CBPE), and what the policy does
with it.

Confidence-based performance estimation: where the champion's probabilities are
calibrated (:mod:`strategies.calibration`, fitted on its golden set when the version was
made), the top-class probability ``p_i`` of row ``i`` is the chance its prediction is
right. So over a window of rows the expected accuracy is ``mean(p_i)``, with variance
``sum p_i (1 - p_i) / n^2`` (independent Bernoulli rows), and the expected confusion
matrix gives an expected macro-F1: for each class ``k``, the expected true positives are
the rows predicted ``k`` weighted by ``p_ik``, the false positives the same rows weighted
by ``1 - p_ik``, the false negatives the rows predicted otherwise weighted by ``p_ik``
(:func:`cbpe`, :func:`runtime.store.estimated.expected_macro_f1`). The probabilities
are the ones the monitor computed to score the rows: no extra forward pass.

:class:`EstimateWatch` keeps the last ``policy.estimate.window`` rows and, once the
window is full, raises an alert (``drift.detected`` by ``estimated_accuracy``, action
``alert``) when the band's upper end is below ``alert_below`` -- once, until the estimate
recovers or the champion changes (the champion alerted for is kept in ``kv``, so a
restart does not alert again) -- and with it, if configured, ``labels.requested`` naming
the window's least confident unlabelled rows (those worth labelling first).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, select

from runtime.monitoring.settings import EstimateConfig
from runtime.store import events as ev
from runtime.store.db import from_json, kv, to_json
from runtime.store.estimated import expected_macro_f1
from runtime.store.events import EventLog

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
DETECTOR = "estimated_accuracy"
"""The name the estimate's alert goes by in ``drift.detected``."""
STATE_KEY = "estimate"
STATE_VERSION = 1


@dataclass(frozen=True)
class Estimate:
    """CBPE over ``rows`` rows: expected accuracy with its band, expected macro-F1."""

    accuracy: float
    low: float
    high: float
    macro_f1: float
    rows: int

    def to_dict(self) -> dict[str, float | int]:
        return {"accuracy": round(self.accuracy, 6), "low": round(self.low, 6),
                "high": round(self.high, 6), "macro_f1": round(self.macro_f1, 6),
                "rows": self.rows}


def cbpe(probs: F64, error: float = 0.0, z: float = 1.96) -> Estimate:
    """The estimate over the rows of calibrated probabilities ``probs`` ``[n, k]``; the
    band is ``z`` standard errors of the rows' Bernoulli spread widened by the
    calibration's own ``error``."""
    n = len(probs)
    if n == 0:
        raise ValueError("cbpe needs at least one row")
    top = probs.max(axis=1)
    acc = float(top.mean())
    half = z * math.sqrt(float((top * (1.0 - top)).sum())) / n + error
    return Estimate(acc, max(0.0, acc - half), min(1.0, acc + half),
                    expected_macro_f1(probs), n)


class EstimateWatch:
    """The estimate over the last ``cfg.window`` rows, and its alert and label requests."""

    def __init__(
        self, cfg: EstimateConfig, events: EventLog, report: Callable[[str], None],
        key: str = STATE_KEY,
    ) -> None:
        self.cfg = cfg
        self.events = events
        self.report = report
        self.key = key
        self.error = 0.0
        self.seqs: I64 = np.zeros(0, dtype=np.int64)
        self.probs: F64 = np.zeros((0, 0))
        self.unlabelled = np.zeros(0, dtype=bool)
        self.alerted = False  # latched until the estimate recovers or the champion changes
        self.last: Estimate | None = None

    def reset(self, error: float, champion: str | None = None) -> None:
        """A (new) champion with calibration ``error``: start an empty window; still
        latched if an earlier daemon alerted for this champion and it did not recover."""
        self.error = error
        self.seqs = np.zeros(0, dtype=np.int64)
        self.probs = np.zeros((0, 0))
        self.unlabelled = np.zeros(0, dtype=bool)
        self.alerted = champion is not None and self._alerted_for() == champion
        self.last = None

    def _alerted_for(self) -> str | None:
        with self.events.db.connect() as conn:
            row = conn.execute(select(kv.c.value).where(kv.c.key == self.key)).first()
        state = {} if row is None else from_json(row[0])
        return state.get("alerted") if state.get("version") == STATE_VERSION else None

    def _latch(self, champion: str | None) -> None:
        self.alerted = champion is not None
        with self.events.db.begin() as conn:
            conn.execute(delete(kv).where(kv.c.key == self.key))
            blob = to_json({"version": STATE_VERSION, "alerted": champion})
            conn.execute(kv.insert(), [{"key": self.key, "value": blob}])

    def observe(
        self, seqs: I64, probs: F64, unlabelled: npt.NDArray[np.bool_], champion: str | None
    ) -> Estimate | None:
        """Rows just scored (calibrated ``probs``); the estimate once the window is full."""
        if not self.cfg.enabled or len(seqs) == 0:
            return None
        w = self.cfg.window
        if self.probs.shape[1] != probs.shape[1]:
            self.probs = np.zeros((0, probs.shape[1]))
        self.seqs = np.concatenate([self.seqs, seqs])[-w:]
        self.probs = np.concatenate([self.probs, probs])[-w:]
        self.unlabelled = np.concatenate([self.unlabelled, unlabelled])[-w:]
        if len(self.seqs) < w:
            return None
        self.last = cbpe(self.probs, self.error, self.cfg.band_z)
        self._policy(self.last, champion)
        return self.last

    def _policy(self, est: Estimate, champion: str | None) -> None:
        below = self.cfg.alert_below
        if below is None:
            return
        if est.high >= below:
            if self.alerted:
                self._latch(None)  # recovered: the next fall alerts again
            return
        if self.alerted:
            return
        self._latch(champion)
        first, last = int(self.seqs[0]), int(self.seqs[-1])
        reason = (f"estimated accuracy {est.accuracy:.3f} (band {est.low:.3f}-{est.high:.3f}) "
                  f"over rows {first}-{last} is below {below:g}")
        self.events.append(ev.DRIFT_DETECTED, ev.DriftDetected(
            detector=DETECTOR, signal=DETECTOR, statistic=round(est.high, 6), threshold=below,
            index=last, window=(first, last), row=last, action="alert", reason=reason,
            details=est.to_dict()), model_version=champion)
        self.report(f"alert   {reason}")
        if self.cfg.request_labels:
            self._request_labels(est, champion, reason)

    def _request_labels(self, est: Estimate, champion: str | None, reason: str) -> None:
        """``labels.requested``: the least confident unlabelled rows of the window."""
        top = self.probs.max(axis=1)
        candidates = np.flatnonzero(self.unlabelled)
        order = candidates[np.argsort(top[candidates], kind="stable")]
        chosen = tuple(int(s) for s in self.seqs[order[: self.cfg.request_labels]])
        if not chosen:
            return
        self.events.append(ev.LABELS_REQUESTED, ev.LabelsRequested(
            rows=chosen, reason=f"least confident rows first: {reason}",
            estimated_accuracy=round(est.accuracy, 6), low=round(est.low, 6),
            high=round(est.high, 6), threshold=self.cfg.alert_below,
            window=(int(self.seqs[0]), int(self.seqs[-1]))), model_version=champion)
