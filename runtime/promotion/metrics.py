"""Metrics of a model's predictions, and the paired bootstrap that puts error bars on them.

Every metric is a function of sums of per-row statistics (:func:`row_stats` then
:func:`from_sums`). That makes the paired bootstrap one matrix product: a resample is a
vector of row weights, and champion and candidate are scored on the *same* resampled rows,
so the noise they share cancels out of their difference.

Classification predictions are class probabilities ``[n, k]`` with labels as class
positions ``[n]``; regression predictions are values ``[n]`` with float targets.
``negative_flip_rate`` is a property of a pair: the fraction of rows the reference model
(the champion) got right and the scored model gets wrong.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "CLASSIFICATION",
    "HIGHER_IS_BETTER",
    "METRICS",
    "REGRESSION",
    "Metric",
    "PairedScores",
    "from_sums",
    "paired_scores",
    "resample_weights",
    "row_stats",
    "stable_seed",
    "value",
]

F64 = npt.NDArray[np.float64]
Metric = Literal["accuracy", "macro_f1", "log_loss", "ece", "negative_flip_rate", "mae", "rmse"]
METRICS: tuple[str, ...] = (
    "accuracy",
    "macro_f1",
    "log_loss",
    "ece",
    "negative_flip_rate",
    "mae",
    "rmse",
)
CLASSIFICATION = frozenset({"accuracy", "macro_f1", "log_loss", "ece", "negative_flip_rate"})
REGRESSION = frozenset({"mae", "rmse"})
HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "macro_f1": True,
    "log_loss": False,
    "ece": False,
    "negative_flip_rate": False,
    "mae": False,
    "rmse": False,
}
ECE_BINS = 15
_P_MIN = 1e-15  # log loss of a probability of 0 is capped, as scikit-learn does


def _hard(pred: F64) -> npt.NDArray[np.int64]:
    return np.asarray(pred.argmax(axis=1), dtype=np.int64)


def _correct(y: npt.NDArray[np.generic], pred: F64) -> F64:
    # A NaN row makes argmax meaningless: mark it NaN so the metric comes out NaN.
    ok: F64 = (_hard(pred) == y).astype(np.float64)
    ok[np.isnan(pred).any(axis=1)] = np.nan
    return ok


def row_stats(
    metric: str, y: npt.NDArray[np.generic], pred: F64, reference: F64 | None = None
) -> F64:
    """Per-row statistics ``[n, m]`` whose column sums determine ``metric``.

    Column 0 is always 1 (the row count). ``reference`` is the champion's prediction,
    needed by ``negative_flip_rate`` only.
    """
    n = len(y)
    ones = np.ones((n, 1))
    if metric == "accuracy":
        return np.column_stack([ones, _correct(y, pred)])
    if metric == "log_loss":
        idx = np.asarray(y, dtype=np.int64)
        p_true = pred[np.arange(n), idx] if n else np.zeros(0)
        return np.column_stack([ones, -np.log(np.clip(p_true, _P_MIN, 1.0))])
    if metric == "macro_f1":
        k = pred.shape[1]
        hard = _hard(pred)
        yi = np.asarray(y, dtype=np.int64)
        cols = [ones]
        bad = np.isnan(pred).any(axis=1)
        for c in range(k):
            tp = ((hard == c) & (yi == c)).astype(np.float64)
            fp = ((hard == c) & (yi != c)).astype(np.float64)
            fn = ((hard != c) & (yi == c)).astype(np.float64)
            for col in (tp, fp, fn):
                col[bad] = np.nan
                cols.append(col[:, None])
        return np.hstack(cols)
    if metric == "ece":
        conf = pred.max(axis=1)
        correct = _correct(y, pred)
        bins = np.clip((np.nan_to_num(conf) * ECE_BINS).astype(np.int64), 0, ECE_BINS - 1)
        cols = [ones]
        for b in range(ECE_BINS):
            inside = (bins == b).astype(np.float64)
            cols.extend([inside[:, None], (inside * conf)[:, None], (inside * correct)[:, None]])
        return np.hstack(cols)
    if metric == "negative_flip_rate":
        if reference is None:
            raise ValueError("negative_flip_rate needs the champion's predictions")
        flip = (1.0 - _correct(y, pred)) * _correct(y, reference)
        return np.column_stack([ones, flip])
    if metric in REGRESSION:
        err = np.asarray(pred, dtype=np.float64).reshape(n) - np.asarray(y, dtype=np.float64)
        return np.column_stack([ones, np.abs(err), err**2])
    raise ValueError(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")


def _div(num: F64, den: F64) -> F64:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def from_sums(metric: str, sums: F64) -> F64:
    """The metric from column sums ``[..., m]`` of :func:`row_stats` (NaN with no rows)."""
    n = sums[..., 0]
    if metric in {"accuracy", "log_loss", "negative_flip_rate"}:
        return _div(sums[..., 1], n)
    if metric == "macro_f1":
        tp, fp, fn = sums[..., 1::3], sums[..., 2::3], sums[..., 3::3]
        f1 = _div(2 * tp, 2 * tp + fp + fn)
        present = ~np.isnan(f1)
        total = np.where(present, f1, 0.0).sum(axis=-1)
        out = _div(total, present.sum(axis=-1).astype(np.float64))
        # NaN predictions poison tp/fp/fn; they must poison the result too.
        poisoned = np.isnan(sums[..., 1:]).any(axis=-1)
        return np.where(poisoned, np.nan, out)
    if metric == "ece":
        conf, correct = sums[..., 2::3], sums[..., 3::3]
        return _div(np.abs(conf - correct).sum(axis=-1), n)
    if metric == "mae":
        return _div(sums[..., 1], n)
    if metric == "rmse":
        return np.sqrt(_div(sums[..., 2], n))
    raise ValueError(f"unknown metric {metric!r} (one of {', '.join(METRICS)})")


def value(
    metric: str, y: npt.NDArray[np.generic], pred: F64, reference: F64 | None = None
) -> float:
    """``metric`` of ``pred`` against ``y`` (NaN for no rows or NaN predictions).

    Examples
    --------
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> y = np.array([0, 1, 1])
    >>> round(value("accuracy", y, p), 3), round(value("log_loss", y, p), 3)
    (0.667, 0.415)
    """
    return float(from_sums(metric, row_stats(metric, y, pred, reference).sum(axis=0)))


def stable_seed(*parts: object) -> int:
    """A seed from names that is the same in every process (``hash()`` is salted)."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


def resample_weights(n: int, resamples: int, rng: np.random.Generator) -> F64:
    """Bootstrap resamples as row weights ``[resamples, n]`` (how often each row is drawn)."""
    if n == 0:
        return np.zeros((resamples, 0))
    idx = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    counts = np.bincount(idx.ravel(), minlength=resamples * n)
    return counts.reshape(resamples, n).astype(np.float64)


@dataclass(frozen=True)
class PairedScores:
    """A metric of champion and candidate on the same rows, with paired resamples.

    ``champion`` is None for ``negative_flip_rate`` (the champion is its reference).
    ``*_boot`` hold the metric on each bootstrap resample (the same resamples for both).
    """

    metric: str
    n: int
    champion: float | None
    candidate: float
    champion_boot: F64 | None
    candidate_boot: F64


def paired_scores(
    metric: str, y: npt.NDArray[np.generic], champion: F64, candidate: F64, weights: F64
) -> PairedScores:
    """Score both models on the rows and on every resample ``weights`` (``[B, n]``)."""
    if metric == "negative_flip_rate":
        stats = row_stats(metric, y, candidate, reference=champion)
        return PairedScores(
            metric,
            len(y),
            None,
            float(from_sums(metric, stats.sum(axis=0))),
            None,
            from_sums(metric, weights @ stats),
        )
    a = row_stats(metric, y, champion)
    b = row_stats(metric, y, candidate)
    return PairedScores(
        metric,
        len(y),
        float(from_sums(metric, a.sum(axis=0))),
        float(from_sums(metric, b.sum(axis=0))),
        from_sums(metric, weights @ a),
        from_sums(metric, weights @ b),
    )
