"""Probability calibration of a classifier on held-out rows: temperature scaling.

A trained network's softmax is often over- (or under-) confident, so its mean top-class
probability is not its accuracy. Temperature scaling (Guo et al., "On Calibration of
Modern Neural Networks", ICML 2017) divides the logits by one scalar ``T`` chosen to
minimise the negative log-likelihood of held-out labels; the predicted class never
changes, only how sure the model says it is. Optionally a monotone (isotonic) map of the
top-class probability is fitted after it (pool-adjacent-violators), for confidence curves
that one scalar cannot straighten.

The fitted calibration is a small JSON object (:meth:`Calibration.to_json`) carrying the
sha256 of its own content, checked when it is read back (:meth:`Calibration.from_json`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Method = Literal["none", "temperature", "isotonic"]
FORMAT = 1
MIN_ROWS = 20
"""Fewer held-out rows than this fit nothing: the calibration stays the identity."""
ECE_BINS = 15


@dataclass(frozen=True)
class Calibration:
    """A fitted calibration and how it did on the rows it was fitted on.

    ``error`` is the calibration's own uncertainty about accuracy: the gap left between
    mean calibrated confidence and accuracy on those rows, plus the standard error of
    that accuracy (a band built on the calibration cannot be narrower than this).
    """

    method: Method = "none"
    temperature: float = 1.0
    iso_x: tuple[float, ...] = ()  # isotonic knots: top-class probability after T ...
    iso_y: tuple[float, ...] = ()  # ... and the calibrated probability there
    rows: int = 0
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    error: float = 0.0

    @property
    def identity(self) -> bool:
        return self.method == "none"

    def apply(self, probs: F64) -> F64:
        """Calibrated class probabilities, rows summing to one (``probs`` ``[n, k]``)."""
        p = np.asarray(probs, dtype=np.float64)
        if self.identity or len(p) == 0:
            return p
        out = _temper(np.log(np.clip(p, 1e-12, 1.0)), self.temperature)
        if self.method == "isotonic" and self.iso_x:
            out = _top_mapped(out, np.asarray(self.iso_x), np.asarray(self.iso_y))
        return out

    # -- JSON both ways --------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["iso_x"], body["iso_y"] = list(self.iso_x), list(self.iso_y)
        return {"format": FORMAT, **body, "sha256": _digest(body)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Calibration:
        """The calibration stored as ``data``; the identity for ``None`` (a version saved
        before calibrations existed). ValueError when its sha256 does not match."""
        if data is None:
            return cls()
        if data.get("format") != FORMAT:
            raise ValueError(f"calibration format {data.get('format')!r} is not {FORMAT}")
        body = {k: v for k, v in data.items() if k not in ("format", "sha256")}
        if _digest(body) != data.get("sha256"):
            raise ValueError("calibration does not match its recorded sha256")
        body["iso_x"], body["iso_y"] = tuple(body["iso_x"]), tuple(body["iso_y"])
        return cls(**body)


def _digest(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _temper(logits: F64, temperature: float) -> F64:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: F64 = e / e.sum(axis=1, keepdims=True)
    return out


def _top_mapped(p: F64, xs: F64, ys: F64) -> F64:
    """``p`` with each row's top probability replaced by the isotonic map's value (never
    so low that another class overtakes it) and the other classes rescaled to fill the
    rest (their ratios kept)."""
    n = len(p)
    top = p.argmax(axis=1)
    old = p[np.arange(n), top]
    rest = np.clip(1.0 - old, 1e-12, None)
    second = np.sort(p, axis=1)[:, -2] if p.shape[1] > 1 else np.zeros(n)
    keeps_top = second / (rest + second) + 1e-6  # the top class stays on top
    new = np.clip(np.maximum(np.interp(old, xs, ys), keeps_top), 1e-6, 1.0 - 1e-6)
    out: F64 = p * ((1.0 - new) / rest)[:, None]
    out[np.arange(n), top] = new
    return out


def nll(probs: F64, y: npt.NDArray[np.int64]) -> float:
    """Mean negative log-likelihood of the labels ``y`` (class positions)."""
    p = probs[np.arange(len(y)), y]
    return float(-np.log(np.clip(p, 1e-12, 1.0)).mean())


def ece(probs: F64, y: npt.NDArray[np.int64], bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top class: the row-weighted mean, over equal-width
    confidence bins, of |accuracy - mean confidence|."""
    conf = probs.max(axis=1)
    right = (probs.argmax(axis=1) == y).astype(np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(which):
        m = which == b
        total += m.sum() * abs(right[m].mean() - conf[m].mean())
    return float(total / max(1, len(y)))


def _isotonic(x: F64, y: F64) -> tuple[F64, F64]:
    """Pool-adjacent-violators fit of ``y`` non-decreasing in ``x``: knots and values."""
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], y[order]
    vals, weights, lefts = [], [], []
    for i in range(len(xs)):
        vals.append(ys[i])
        weights.append(1.0)
        lefts.append(i)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = weights[-2] + weights[-1]
            vals[-2] = (vals[-2] * weights[-2] + vals[-1] * weights[-1]) / w
            weights[-2] = w
            vals.pop(), weights.pop(), lefts.pop()
    rights = [*(j - 1 for j in lefts[1:]), len(xs) - 1]
    knots_x = np.array([(xs[a] + xs[b]) / 2 for a, b in zip(lefts, rights, strict=True)])
    return knots_x, np.array(vals)


def fit(logits: F64, y: npt.NDArray[np.int64], method: Method = "temperature") -> Calibration:
    """The calibration of a model whose held-out ``logits`` (``[n, k]``) have labels ``y``
    (class positions). Too few rows or one class only: the identity."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    if method == "none" or n < MIN_ROWS or z.ndim != 2 or z.shape[1] < 2:
        return Calibration(rows=n)
    from scipy.optimize import minimize_scalar  # here: the monitor imports this module

    raw = _temper(z, 1.0)
    best = minimize_scalar(lambda t: nll(_temper(z, math.exp(t)), y), bounds=(-3.0, 3.0),
                           method="bounded", options={"xatol": 1e-4})
    temperature = float(math.exp(best.x))
    tempered = _temper(z, temperature)
    iso_x: tuple[float, ...] = ()
    iso_y: tuple[float, ...] = ()
    after = tempered
    if method == "isotonic":
        right = (tempered.argmax(axis=1) == y).astype(np.float64)
        kx, ky = _isotonic(tempered.max(axis=1), right)
        iso_x, iso_y = tuple(kx.tolist()), tuple(ky.tolist())
        after = _top_mapped(tempered, kx, ky)
    acc = float((after.argmax(axis=1) == y).mean())
    bias = abs(float(after.max(axis=1).mean()) - acc)
    return Calibration(
        method=method, temperature=temperature, iso_x=iso_x, iso_y=iso_y, rows=n,
        nll_before=round(nll(raw, y), 6), nll_after=round(nll(after, y), 6),
        ece_before=round(ece(raw, y), 6), ece_after=round(ece(after, y), 6),
        error=round(bias + math.sqrt(acc * (1.0 - acc) / n), 6),
    )
