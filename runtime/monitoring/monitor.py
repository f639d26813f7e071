"""The champion scores every incoming row; per-row signals feed the detectors.

Signals: ``confidence`` (max class probability) for every row; ``error`` (0/1) and
``loss`` (cross-entropy) where the label is known, NaN elsewhere; and the class
probabilities calibrated by the champion's calibration (``calibrated``, the label-free
estimate's input, :mod:`runtime.monitoring.estimate`). This is where the runtime converts
numpy to tensors and back. A regression champion's ``error`` is the absolute residual
``|prediction - target|`` and its ``loss`` the squared one (``confidence`` is NaN and
``calibrated`` None: a value has neither); with a fitted loss model its
``expected_error`` is that model's expected ``|prediction - target|`` for every row,
labelled or not (the label-free estimate of its MAE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from strategies.calibration import Calibration
from strategies.evaluation import predict_logits, predict_proba
from strategies.loss_model import LossModel

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Signals:
    """Per-row signals for one batch (aligned with the batch's rows)."""

    prediction: npt.NDArray[np.int64]  # class values; float64 values for regression
    confidence: F64
    error: F64  # NaN where unlabeled
    loss: F64  # NaN where unlabeled
    calibrated: F64 | None = None  # [n, classes] calibrated probabilities
    expected_error: F64 | None = None  # regression: the loss model's |error| per row

    def get(self, name: str) -> F64:
        if name == "error":
            return self.error
        if name == "loss":
            return self.loss
        if name == "confidence":
            return self.confidence
        raise KeyError(name)


class Monitor:
    """Holds the champion model and scores rows with it."""

    def __init__(
        self, model: nn.Module, classes: list[int], calibration: Calibration | None = None,
        regression: bool = False, loss: LossModel | None = None,
    ) -> None:
        self.model = model
        self.regression = regression
        self.loss = loss if loss is not None and loss.fitted else None
        self.calibration = calibration or Calibration()
        self.classes = np.asarray(classes, dtype=np.int64)
        self._index = {c: i for i, c in enumerate(classes)}

    def class_index(self, y: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Labels (class values, -1 for unlabeled) → class positions (-1 kept);
        regression targets (NaN for unlabeled) as they are."""
        if self.regression:
            return y
        out = np.full(len(y), -1, dtype=np.int64)
        for value, pos in self._index.items():
            out[y == value] = pos
        return out

    def score(self, x: F64, y: npt.NDArray[np.int64]) -> Signals:
        n = len(x)
        if n == 0:
            empty = np.zeros(0)
            return Signals(np.zeros(0, dtype=np.int64), empty, empty, empty,
                           np.zeros((0, len(self.classes))))
        if self.regression:
            return self._residuals(x, y)
        probs = predict_proba(self.model, torch.as_tensor(x, dtype=torch.float32)).numpy()
        pred_pos = probs.argmax(axis=1)
        confidence = probs[np.arange(n), pred_pos].astype(np.float64)
        pos = self.class_index(y)
        labeled = pos >= 0
        error = np.full(n, np.nan)
        loss = np.full(n, np.nan)
        error[labeled] = (pred_pos[labeled] != pos[labeled]).astype(np.float64)
        p_true = probs[np.flatnonzero(labeled), pos[labeled]]
        loss[labeled] = -np.log(np.clip(p_true, 1e-12, 1.0))
        calibrated = self.calibration.apply(probs)
        return Signals(self.classes[pred_pos], confidence, error, loss, calibrated)

    def _residuals(self, x: F64, y: npt.NDArray[np.generic]) -> Signals:
        """A regression champion's signals: its values, absolute and squared residuals."""
        out = predict_logits(self.model, torch.as_tensor(x, dtype=torch.float32))
        pred = out.numpy().astype(np.float64).reshape(len(x))
        residual = pred - np.asarray(y, dtype=np.float64)  # NaN where unlabeled
        expected = None if self.loss is None else self.loss.apply(x, pred)
        return Signals(pred, np.full(len(x), np.nan), np.abs(residual), residual**2,  # type: ignore[arg-type]
                       expected_error=expected)
