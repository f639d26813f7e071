"""False-alarm calibration: from "at most one false alarm per N rows" to a test level, and
p-values for statistics without a closed-form null distribution.

A windowed or multivariate detector tests every ``stride`` rows. If each test, under no
drift, alarms with probability at most ``alpha`` (after the correction across features),
then by linearity of expectation the expected number of false alarms in ``N`` rows is at
most ``(N / stride) * alpha`` -- whatever the overlap of consecutive windows. So
``alpha = stride / false_alarms_per_rows`` gives at most one expected false alarm per
``false_alarms_per_rows`` rows (:func:`level_for_rows`). Overlapping windows only make
alarms cluster (fewer distinct episodes), never more frequent.

Where a statistic has no usable closed-form null distribution (PSI, Wasserstein,
Jensen-Shannon, MMD, or any test on data with many ties), :func:`gamma_pvalues` turns it
into a p-value with a null distribution estimated from the reference alone: ``B`` pairs
of samples are drawn from the reference (a pseudo-reference and a pseudo-window), the
statistic of each pair is computed, and a gamma distribution is fitted to the ``B`` null
statistics by their mean and variance (the Satterthwaite / Welch approximation Gretton et
al. use for MMD). The gamma tail gives p-values far below ``1 / B``, which a plain
permutation count cannot: ``alpha`` is often 1e-4 / features.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.ring import FloatArray


def level_for_rows(stride: int, false_alarms_per_rows: int) -> float:
    """Per-test level for at most one expected false alarm per ``false_alarms_per_rows``
    rows when a test runs every ``stride`` rows.

    >>> level_for_rows(100, 100_000)
    0.001
    """
    return min(stride / false_alarms_per_rows, 0.5)


def gamma_pvalues(observed: FloatArray, null: FloatArray) -> FloatArray:
    """Upper-tail p-values of ``observed`` (one per column of ``null``) under gamma
    distributions fitted by moments to the columns of ``null`` (``draws x columns``).

    A column whose null has no spread gives NaN (no usable null); NaN in ``observed``
    stays NaN.

    >>> rng = np.random.default_rng(0)
    >>> null = rng.chisquare(3, size=(2000, 1))
    >>> float(gamma_pvalues(np.array([7.81]), null)[0].round(2))  # chi2(3) 95 % point
    0.05
    """
    null = np.asarray(null, dtype=np.float64).reshape(len(null), -1)
    mean = np.nanmean(null, axis=0) if len(null) else np.full(null.shape[1], np.nan)
    var = np.nanvar(null, axis=0, ddof=1) if len(null) > 1 else np.full(null.shape[1], np.nan)
    ok = (mean > 0) & (var > 0)
    shape = np.where(ok, mean**2 / np.where(ok, var, 1.0), 1.0)
    scale = np.where(ok, var / np.where(ok, mean, 1.0), 1.0)
    p = stats.gamma.sf(np.asarray(observed, dtype=np.float64), shape, scale=scale)
    return np.where(ok, p, np.nan)


def sorted_resample(values: FloatArray, size: int, rng: np.random.Generator) -> FloatArray:
    """A bootstrap sample of ``size`` drawn from sorted ``values``, already sorted, in
    O(n): sorted uniform order statistics from normalised cumulative exponential gaps.

    >>> v = np.arange(10.0)
    >>> s = sorted_resample(v, 5, np.random.default_rng(0))
    >>> bool(np.all(np.diff(s) >= 0)) and set(s) <= set(v)
    True
    """
    gaps = rng.standard_exponential(size + 1)
    u = np.cumsum(gaps[:-1]) / gaps.sum()
    idx = np.minimum((u * len(values)).astype(np.int64), len(values) - 1)
    out: FloatArray = values[idx]
    return out
