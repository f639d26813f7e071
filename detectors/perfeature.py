"""Per-feature two-sample tests as one family: the config fields they share, the
:class:`FeatureTest` each module implements, and the :class:`PerFeatureJudge` that runs a
test over every watched feature, corrects for the number of features, and decides.

How a feature is decided (``calibration``):

``"asymptotic"``
    The test's own p-value (KS, Cramér-von Mises, chi-squared).
``"bootstrap"``
    A p-value from a null distribution estimated on the reference alone
    (:func:`detectors.calibration.gamma_pvalues`): ``bootstrap_draws`` pairs of a
    pseudo-reference and a pseudo-window are resampled from the reference; statistics are
    scaled by the test's ``scale`` so that pseudo-samples smaller than the real windows
    (the pseudo-reference is capped at ``bootstrap_reference_cap`` rows) stay comparable.
``"threshold"``
    The raw statistic against ``threshold`` (PSI, Wasserstein, Jensen-Shannon; what
    evidently does). No false-alarm guarantee; ``alpha``, ``false_alarms_per_rows``,
    ``correction`` and the ``bootstrap_*`` settings have no use here and are refused when set.

With p-values, the adjusted p-values (``correction`` across the features tested) are
compared with ``alpha`` if it is set, else with ``stride / false_alarms_per_rows``
(:func:`detectors.calibration.level_for_rows`): at most one expected false alarm per
that many stationary rows. The detector alarms when at least one feature, and at least a
``drift_share`` fraction of the features tested, drifted.

Categorical features (``categorical``, values are category codes) are compared by their
category counts: chi-squared for KS and Cramér-von Mises, the test's own statistic on
category frequencies for PSI, Jensen-Shannon and Wasserstein (total variation, the
Wasserstein distance under the discrete metric). Numeric features of the binned tests
(chi-squared, PSI, Jensen-Shannon) are binned at ``bins`` quantiles of the reference.

A feature is tested only when both windows hold at least ``min_samples`` finite values of
it and (numeric) the reference is not constant in it (a current window stuck at one value,
a stuck sensor, is tested: against a reference with spread it is drift), or (categorical)
its values are whole numbers (category codes; ``"not_category_codes"`` otherwise) and the
two windows together show at least two categories; its row says why not otherwise. A test
that gives a NaN statistic or p-value marks the feature ``"nan_statistic"``: it is never
read as "no drift", and with no feature tested the status is ``"not_enough_data"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import numpy as np
from pydantic import Field, model_validator

from detectors.base import Status
from detectors.calibration import gamma_pvalues, sorted_resample
from detectors.correction import Correction, adjust
from detectors.ring import FloatArray
from detectors.windowed import Verdict, WindowedDetector, WindowFields, Windows

Calibration = Literal["asymptotic", "bootstrap", "threshold"]

UNUSED_WITH_THRESHOLD = (
    "false_alarms_per_rows", "correction", "bootstrap_draws", "bootstrap_reference_cap",
)
"""Settings of p-values (their level, their correction, their bootstrap null) that
calibration ``"threshold"`` never reads."""


class Fields(WindowFields):
    """Fields every per-feature test's ``Config`` has (see the module docstring)."""

    categorical: list[str] = Field(default_factory=list)
    correction: Correction = "bonferroni"
    drift_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    bootstrap_draws: Annotated[int, Field(ge=20)] = 200
    bootstrap_reference_cap: Annotated[int, Field(ge=100)] = 2_000

    @model_validator(mode="after")
    def _p_value_settings_are_used(self) -> Fields:
        # each test's Config declares its own ``calibration`` (the values it supports)
        if getattr(self, "calibration", None) != "threshold":
            return self
        if self.alpha is not None:
            raise ValueError(
                f"alpha {self.alpha:g} is not used with calibration 'threshold' (the raw "
                "statistic is compared with threshold, not a p-value with alpha): remove "
                "alpha, or use calibration 'bootstrap'"
            )
        # only keys the user wrote: their defaults are harmless
        unused = [k for k in UNUSED_WITH_THRESHOLD if k in self.model_fields_set]
        if unused:
            raise ValueError(
                f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used with "
                "calibration 'threshold' (the raw statistic is compared with threshold: no "
                "p-values to hold to a false-alarm budget, correct or bootstrap): remove "
                f"{'it' if len(unused) == 1 else 'them'}, or use calibration 'bootstrap'"
            )
        return self


class FeatureTest(Protocol):
    """One two-sample statistic, on sorted finite numeric samples or on category counts."""

    kind: str
    has_pvalue: bool
    """Whether ``numeric``/``categorical`` give usable p-values (else NaN)."""

    def numeric(self, ref: FloatArray, cur: FloatArray, edges: FloatArray) -> tuple[float, float]:
        """``(statistic, p_value)`` of two sorted finite samples; ``edges`` are the inner
        bin edges at the reference's quantiles (for binned tests)."""
        ...

    def categorical(self, ref: FloatArray, cur: FloatArray) -> tuple[float, float]:
        """``(statistic, p_value)`` of two aligned category-count vectors."""
        ...

    def scale(self, n_ref: int, n_cur: int, categorical: bool) -> float:
        """Factor that makes the null distribution of the statistic free of the sample
        sizes (e.g. ``sqrt(n_ref n_cur / (n_ref + n_cur))`` for KS)."""
        ...


def bin_counts(sorted_x: FloatArray, edges: FloatArray) -> FloatArray:
    """Counts of a sorted sample in the bins that ``edges`` (inner edges) delimit; a value
    equal to an edge falls in the upper bin."""
    cut = np.searchsorted(sorted_x, edges, side="left")
    return np.diff(np.concatenate([[0], cut, [len(sorted_x)]])).astype(np.float64)


def quantile_edges(sorted_ref: FloatArray, bins: int) -> FloatArray:
    """Distinct inner bin edges at the ``bins``-quantiles of a sorted sample."""
    if len(sorted_ref) == 0:
        return np.zeros(0)
    pos = (np.arange(1, bins) * len(sorted_ref)) // bins
    return np.unique(sorted_ref[pos])


def sorted_columns(x: FloatArray) -> list[FloatArray]:
    """Each column of ``x`` (rows x columns) sorted, its NaNs dropped: one sort of the
    transposed table (NaN sorts last), then a view per column."""
    srt = np.sort(np.ascontiguousarray(x.T), axis=1)
    finite = (~np.isnan(srt)).sum(axis=1)
    return [srt[j, : finite[j]] for j in range(x.shape[1])]


def effective_n(n_ref: int, n_cur: int) -> float:
    return n_ref * n_cur / (n_ref + n_cur)


@dataclass(frozen=True)
class _Ref:
    values: FloatArray  # sorted finite values
    edges: FloatArray
    categories: FloatArray
    counts: FloatArray


class PerFeatureJudge:
    """Runs ``test`` on every watched feature (see the module docstring)."""

    def __init__(
        self, cfg: Fields, test: FeatureTest, watched: Sequence[str], calibration: Calibration,
        threshold: float | None = None, bins: int = 10,
    ) -> None:
        unknown = [c for c in cfg.categorical if c not in watched]
        if unknown:
            raise ValueError(f"categorical features are not watched: {unknown}")
        if calibration == "asymptotic" and not test.has_pvalue:
            raise ValueError(f"{test.kind} has no asymptotic p-value: use bootstrap or threshold")
        if calibration == "threshold" and threshold is None:
            raise ValueError("calibration 'threshold' needs a threshold")
        self.cfg = cfg
        self.test = test
        self.features = list(watched)
        self.is_cat = np.array([f in cfg.categorical for f in watched], dtype=np.bool_)
        self.calibration = calibration
        self.bins = bins
        self.threshold = threshold if calibration == "threshold" else cfg.level
        self._refs: list[_Ref] = []
        self._null: FloatArray | None = None

    def fit(self, reference: FloatArray) -> None:
        self._refs = []
        for j, x in enumerate(sorted_columns(reference)):
            cats, counts = np.unique(x, return_counts=True) if self.is_cat[j] else (x[:0], x[:0])
            self._refs.append(_Ref(x, quantile_edges(x, self.bins), cats, counts.astype(float)))
        self._null = self._bootstrap() if self.calibration == "bootstrap" else None

    def _bootstrap(self) -> FloatArray:
        cfg = self.cfg
        rng = np.random.default_rng(cfg.seed)
        null = np.full((cfg.bootstrap_draws, len(self.features)), np.nan)
        for j, ref in enumerate(self._refs):
            n = len(ref.values)
            if n < 2:
                continue
            nr = min(n, cfg.bootstrap_reference_cap)
            nc = min(cfg.window_size, max(nr // 4, 2))
            scale = self.test.scale(nr, nc, bool(self.is_cat[j]))
            if self.is_cat[j]:
                p = ref.counts / n
                a = rng.multinomial(nr, p, cfg.bootstrap_draws)
                b = rng.multinomial(nc, p, cfg.bootstrap_draws)
                stat = [self.test.categorical(a[i].astype(float), b[i].astype(float))[0]
                        for i in range(cfg.bootstrap_draws)]
            else:
                stat = [self.test.numeric(sorted_resample(ref.values, nr, rng),
                                          sorted_resample(ref.values, nc, rng), ref.edges)[0]
                        for _ in range(cfg.bootstrap_draws)]
            null[:, j] = np.asarray(stat) * scale
        return null

    def _one(self, j: int, cur: FloatArray) -> tuple[str, float, float]:
        """``(status, statistic, p_value)`` of feature ``j``."""
        ref, min_n = self._refs[j], self.cfg.min_samples
        if len(ref.values) < min_n or len(cur) < min_n:
            return "not_enough_data", np.nan, np.nan
        if self.is_cat[j]:
            # category codes are whole numbers; a numeric feature listed as categorical makes
            # every new value an unseen category, so it would alarm on every test
            if not (_whole(ref.categories) and _whole(cur)):
                return "not_category_codes", np.nan, np.nan
            cats = np.union1d(ref.categories, np.unique(cur))
            if len(cats) < 2:
                return "constant", np.nan, np.nan
            r = np.zeros(len(cats))
            r[np.searchsorted(cats, ref.categories)] = ref.counts
            c = np.bincount(np.searchsorted(cats, cur), minlength=len(cats)).astype(float)
            stat, p = self.test.categorical(r, c)
        else:
            if ref.values[0] == ref.values[-1]:  # no spread to compare with
                return "constant", np.nan, np.nan
            stat, p = self.test.numeric(ref.values, cur, ref.edges)
        if self._null is not None:
            scaled = stat * self.test.scale(len(ref.values), len(cur), bool(self.is_cat[j]))
            p = float(gamma_pvalues(np.array([scaled]), self._null[:, j : j + 1])[0])
        bad = not np.isfinite(stat) or (self.calibration != "threshold" and not np.isfinite(p))
        return ("nan_statistic" if bad else "tested"), stat, p

    def evaluate(self, current: FloatArray) -> Verdict:
        m = len(self.features)
        status, stat, p = [""] * m, np.full(m, np.nan), np.full(m, np.nan)
        curs = sorted_columns(current)
        for j, cur in enumerate(curs):
            status[j], stat[j], p[j] = self._one(j, cur)
        tested = np.array([s == "tested" for s in status], dtype=np.bool_)
        p_adj = np.full(m, np.nan)
        if self.calibration == "threshold":
            assert self.threshold is not None
            drifted = tested & (np.nan_to_num(stat, nan=-np.inf) >= self.threshold)
        else:
            p_adj[tested] = adjust(p[tested], self.cfg.correction)
            drifted = tested & (np.nan_to_num(p_adj, nan=1.0) < self.threshold)
        n_tested, n_drifted = int(tested.sum()), int(drifted.sum())
        alarm = n_drifted > 0 and n_drifted >= self.cfg.drift_share * n_tested
        verdict: Status = "drift" if alarm else ("ok" if n_tested else "not_enough_data")
        if not n_tested:
            statistic = None
        elif self.calibration == "threshold":
            statistic = float(np.nanmax(np.where(tested, stat, np.nan)))
        else:
            statistic = float(np.nanmin(p_adj))
        table = [self._row(j, status[j], stat[j], p[j], p_adj[j], bool(drifted[j]), curs[j])
                 for j in range(m)]
        details: dict[str, Any] = {
            "test": self.test.kind,
            "calibration": self.calibration,
            "features": table,
            "max_statistic": float(np.nanmax(np.where(tested, stat, np.nan))) if n_tested else None,
            "tested": n_tested,
            "drifted": n_drifted,
            "correction": self.cfg.correction,
        }
        return Verdict(verdict, statistic, self.threshold, details)

    def _row(self, j: int, status: str, stat: float, p: float, p_adj: float, drifted: bool,
             cur: FloatArray) -> dict[str, Any]:
        ref = self._refs[j].values
        return {
            "feature": self.features[j],
            "type": "categorical" if self.is_cat[j] else "numeric",
            "status": status,
            "statistic": _num(stat) if status == "tested" else None,
            "p_value": _num(p) if status == "tested" else None,
            "p_adjusted": _num(p_adj) if status == "tested" else None,
            "drifted": drifted,
            "ref_mean": float(ref.mean()) if len(ref) else None,
            "cur_mean": float(cur.mean()) if len(cur) else None,
            "n_ref": len(ref),
            "n_cur": len(cur),
        }


def _whole(x: FloatArray) -> bool:
    return bool(np.all(x == np.round(x)))


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def build_windowed(
    cfg: Fields, kind: str, features: Sequence[str], test: FeatureTest,
    calibration: Calibration, threshold: float | None = None, bins: int = 10,
) -> WindowedDetector:
    """A :class:`~detectors.windowed.WindowedDetector` running ``test`` per feature."""
    watched = list(features) if cfg.features is None else list(cfg.features)
    judge = PerFeatureJudge(cfg, test, watched, calibration, threshold, bins)
    windows = Windows(cfg.reference_size, cfg.window_size, cfg.min_samples, cfg.stride)
    return WindowedDetector(cfg.name or kind, cfg.signal, features, watched, windows, judge)
