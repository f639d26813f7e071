"""Feeding the detectors: which values each one watches, its check, its trace point.

A detector watches one signal: ``features`` (every feature column of a batch), one feature
column by name, or a score of the champion's (``error``, ``loss``, ``confidence``, from
:class:`~runtime.monitoring.monitor.Signals`). :func:`watched` is the one place that choice
is made, for the detectors' updates and for their trace alike. A late label brings only the
scores that need a label (``error``, ``loss``); the rest was fed when its row arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.base import Detector, DriftSignal, ReferenceDetector
from runtime.monitoring.monitor import Signals
from runtime.monitoring.trace import DetectorTrace

SCORES = ("error", "loss", "confidence")
"""Signals computed from the champion's predictions (NaN where a row has no value)."""
NEEDS_LABEL = ("error", "loss")
"""The scores a late label makes available for rows stored earlier."""


def watched(
    signal: str, features: list[str], x: npt.NDArray[np.float64] | None, sig: Signals
) -> npt.NDArray[np.float64] | None:
    """The values a detector on ``signal`` watches in a batch; None when the batch has
    none of them (late labels carry no feature values)."""
    if signal in SCORES:
        return sig.get(signal)
    if x is None:
        return None
    if signal == "features":
        return x
    return x[:, features.index(signal)]


def finite(v: float | None) -> float | None:
    """``v`` as a float for JSON, None where it is missing or not finite."""
    if v is None or not np.isfinite(v):
        return None
    return float(v)


@dataclass(frozen=True)
class Alarm:
    """A detector's check that found drift, at row ``row``."""

    detector: Detector
    signal: DriftSignal
    row: int


class DetectorFeed:
    """The configured detectors, their last signals and their trace for the review."""

    def __init__(
        self, detectors: list[Detector], features: list[str], trace: DetectorTrace
    ) -> None:
        self.detectors = detectors
        self.features = features
        self.trace = trace
        self.last_signals: dict[str, DriftSignal] = {}

    def observe(
        self,
        seqs: npt.NDArray[np.int64],
        x: npt.NDArray[np.float64] | None,
        sig: Signals,
        champion: str | None,
        late_labels: bool = False,
    ) -> list[Alarm]:
        """Update and check every detector with the rows ``seqs``; the alarms, in order.

        ``late_labels``: the batch is labels joined to rows stored earlier (``x`` None).
        """
        alarms = []
        for det in self.detectors:
            if late_labels and det.signal not in NEEDS_LABEL:
                continue
            values = watched(det.signal, self.features, x, sig)
            if values is None:
                continue
            if det.signal in SCORES:
                keep = ~np.isnan(values)
                if keep.any():
                    det.update(values[keep], seqs[keep])
            else:
                det.update(values, seqs)
            s = det.check()
            self.last_signals[det.name] = s
            self._trace(det, s, seqs, None if det.signal == "features" else values, champion)
            if s.drift:
                alarms.append(Alarm(det, s, int(s.index if s.index is not None else seqs[-1])))
        return alarms

    def _trace(
        self,
        det: Detector,
        s: DriftSignal,
        seqs: npt.NDArray[np.int64],
        values: npt.NDArray[np.float64] | None,
        champion: str | None,
    ) -> None:
        """One point of the detector's statistic for the review charts (monitoring.trace)."""
        value = None
        if values is not None and np.isfinite(values).any():
            value = float(np.nanmean(np.where(np.isfinite(values), values, np.nan)))
        self.trace.record(
            det.name,
            det.signal,
            int(seqs[-1]),
            value=value,
            statistic=s.statistic,
            threshold=s.threshold,
            drift=s.drift,
            champion=champion,
        )

    def rebaseline(self, reference: npt.NDArray[np.float64]) -> None:
        """Start every detector afresh, the reference ones on ``reference``."""
        for det in self.detectors:
            det.reset()
            if isinstance(det, ReferenceDetector) and len(reference):
                det.set_reference(reference)

    def state(self) -> dict[str, Any]:
        return {d.name: d.state() for d in self.detectors}

    def status(self) -> dict[str, dict[str, Any]]:
        """The last signal of each detector (the API's status and metrics)."""
        return {
            name: {
                "signal": s.signal,
                "statistic": finite(s.statistic),
                "threshold": finite(s.threshold),
                "drift": bool(s.drift),
            }
            for name, s in list(self.last_signals.items())
        }
