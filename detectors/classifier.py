"""A classifier two-sample test: can a model tell the window from the reference?"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field
from scipy import stats
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from detectors.base import ReferenceDetector, Status
from detectors.ring import FloatArray
from detectors.windowed import Verdict, WindowedDetector, WindowFields, Windows


class Config(WindowFields):
    """A domain classifier (scikit-learn's histogram gradient boosting, which takes NaN as
    is) is trained to tell window rows from reference rows; its cross-fitted
    (``folds``-fold, out-of-fold) ROC AUC is the statistic (Lopez-Paz & Oquab, ICLR 2017).
    Under no drift the out-of-fold scores of the two groups are exchangeable and the AUC is
    a Mann-Whitney U statistic: the p-value is its one-sided normal approximation,
    ``z = (AUC - 1/2) / sqrt((n1 + n2 + 1) / (12 n1 n2))``. The reference is subsampled to
    ``max_reference`` rows. Heavier than the other tests (a model fit per test): the
    default ``stride`` is 500.
    """

    kind: Literal["classifier"] = "classifier"
    stride: Annotated[int, Field(ge=1)] = 500
    folds: Annotated[int, Field(ge=2, le=10)] = 5
    max_reference: Annotated[int, Field(ge=10)] = 2000
    max_iter: Annotated[int, Field(ge=1)] = 50


class ClassifierJudge:
    """The domain-classifier AUC test as a :class:`~detectors.windowed.Judge`."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.threshold: float | None = cfg.level
        self._ref: FloatArray | None = None

    def fit(self, reference: FloatArray) -> None:
        rng = np.random.default_rng(self.cfg.seed)
        ref = reference
        if len(ref) > self.cfg.max_reference:
            ref = ref[rng.choice(len(ref), self.cfg.max_reference, replace=False)]
        self._ref = ref if len(ref) >= self.cfg.min_samples else None

    def evaluate(self, current: FloatArray) -> Verdict:
        cfg = self.cfg
        details: dict[str, Any] = {"test": "classifier", "rows_used": len(current)}
        if self._ref is None or len(current) < cfg.min_samples:
            return Verdict("not_enough_data", None, self.threshold, details)
        x = np.concatenate([self._ref, current])
        if not (np.fmax.reduce(x, axis=0) > np.fmin.reduce(x, axis=0)).any():  # all one point
            return Verdict("not_enough_data", None, self.threshold, {**details, "constant": True})
        y = np.r_[np.zeros(len(self._ref)), np.ones(len(current))]
        seed = cfg.seed
        model = HistGradientBoostingClassifier(max_iter=cfg.max_iter, random_state=seed)
        folds = StratifiedKFold(cfg.folds, shuffle=True, random_state=seed)
        score = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
        auc = float(roc_auc_score(y, score))
        n1, n2 = len(self._ref), len(current)
        z = (auc - 0.5) / np.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
        p = float(stats.norm.sf(z))
        details.update({"auc": auc, "p_value": p})
        if not np.isfinite(p):
            return Verdict("not_enough_data", None, self.threshold, details)
        status: Status = "drift" if self.threshold is not None and p < self.threshold else "ok"
        return Verdict(status, p, self.threshold, details)


def build(cfg: Config, features: Sequence[str]) -> ReferenceDetector:
    """A classifier two-sample test over ``cfg.features`` (all of ``features`` if ``None``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(max_iter=20), features=["a", "b"])
    >>> det.set_reference(rng.normal(size=(1000, 2)))
    >>> det.update(rng.normal(size=(500, 2)))
    >>> det.check().status
    'ok'
    >>> det.update(rng.normal(size=(500, 2)) * [1.0, 2.0])
    >>> det.check().status
    'drift'
    """
    watched = list(features) if cfg.features is None else list(cfg.features)
    windows = Windows(cfg.reference_size, cfg.window_size, cfg.min_samples, cfg.stride)
    return WindowedDetector(cfg.name or cfg.kind, cfg.signal, features, watched, windows,
                            ClassifierJudge(cfg))
