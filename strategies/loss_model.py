"""A regression model's expected absolute error, predicted from its inputs (direct loss
estimation).

Without labels a regression model's error cannot be measured, but how large it tends to
be where the inputs lie can be learnt on held-out rows whose targets are known: a second
model, fitted on the golden set, maps a row's features and the prediction made for it to
that prediction's absolute error (NannyML's DLE, with a ridge regression in place of a
gradient-boosted one, so the fitted model is a few numbers of JSON). Its mean over a
window of live rows is the window's expected MAE. It follows a covariate shift towards
rows the golden set shows harder; it cannot see a change of the target's relation to the
inputs (concept drift), nor extrapolate far beyond the golden rows.

Inputs are standardised on the golden rows; the absolute values and squares of the
standardised inputs and of the prediction enter too, so an error that grows towards both
ends of a feature is caught. The fitted model (:meth:`LossModel.to_json`) carries the
sha256 of its own content, checked when read back (:meth:`LossModel.from_json`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
FORMAT = 1
MIN_ROWS = 20
"""Fewer golden rows than this fit nothing (:attr:`LossModel.fitted` False)."""
RIDGE = 1.0


@dataclass(frozen=True)
class LossModel:
    """Ridge regression of the absolute error on standardised ``[x, pred]``, their
    absolute values and squares; ``mean``/``scale`` standardise ``[x, pred]``; ``error``
    is the golden set's own MAE (what a model that learnt nothing predicts everywhere)."""

    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    coef: tuple[float, ...] = ()
    intercept: float = 0.0
    rows: int = 0
    error: float = 0.0

    @property
    def fitted(self) -> bool:
        return bool(self.coef)

    def apply(self, x: F64, pred: F64) -> F64:
        """The expected absolute error of each row's prediction (never below 0)."""
        if not self.fitted:
            return np.full(len(x), np.nan)
        z = _design(x, pred, np.asarray(self.mean), np.asarray(self.scale))
        out: F64 = np.maximum(z @ np.asarray(self.coef) + self.intercept, 0.0)
        return out

    def to_json(self) -> dict[str, Any]:
        body = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {"format": FORMAT, **body, "sha256": _digest(body)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> LossModel:
        """The loss model stored as ``data``; unfitted for ``None`` (a version saved
        without one). ValueError when its sha256 does not match."""
        if data is None:
            return cls()
        if data.get("format") != FORMAT:
            raise ValueError(f"loss model format {data.get('format')!r} is not {FORMAT}")
        body = {k: v for k, v in data.items() if k not in ("format", "sha256")}
        if _digest(body) != data.get("sha256"):
            raise ValueError("loss model does not match its recorded sha256")
        return cls(tuple(body["mean"]), tuple(body["scale"]), tuple(body["coef"]),
                   float(body["intercept"]), int(body["rows"]), float(body["error"]))


def _digest(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _design(x: F64, pred: F64, mean: F64, scale: F64) -> F64:
    raw = np.column_stack([np.asarray(x, dtype=np.float64),
                           np.asarray(pred, dtype=np.float64).reshape(-1)])
    z = (raw - mean) / scale
    return np.hstack([z, np.abs(z), z**2])


def fit(x: F64, pred: F64, y: F64, ridge: float = RIDGE) -> LossModel:
    """The loss model of predictions ``pred`` of rows ``x`` whose targets are ``y`` (the
    golden set); unfitted with fewer than :data:`MIN_ROWS` rows."""
    x = np.asarray(x, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    err = np.abs(pred - np.asarray(y, dtype=np.float64))
    n = len(err)
    if n < MIN_ROWS or not np.isfinite(err).all():
        return LossModel(rows=n)
    raw = np.column_stack([x, pred])
    mean, scale = raw.mean(axis=0), raw.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = _design(x, pred, mean, scale)
    zc = z - z.mean(axis=0)
    coef = np.linalg.solve(zc.T @ zc + ridge * np.eye(z.shape[1]), zc.T @ (err - err.mean()))
    intercept = float(err.mean() - z.mean(axis=0) @ coef)
    return LossModel(tuple(mean.tolist()), tuple(scale.tolist()), tuple(coef.tolist()),
                     intercept, n, round(float(err.mean()), 6))
