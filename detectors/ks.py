"""Windowed two-sample Kolmogorov-Smirnov tests, one per feature, against a reference."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats

from detectors.base import STATE_VERSION, DriftSignal, ReferenceDetector
from detectors.ring import FloatArray, IndexArray, Ring


class Config(BaseModel):
    """Per-feature KS tests of the latest ``window_size`` rows against a reference window.

    Until a reference is set (:meth:`KSDetector.set_reference`), the first
    ``reference_size`` rows seen become the reference; monitoring starts after them.
    Every ``stride`` rows, once the current window holds ``min_samples`` rows, each watched
    feature is tested; p-values are adjusted for the number of features tested
    (``correction``) and the detector alarms when at least one feature, and at least a
    ``drift_share`` fraction of the features tested, has an adjusted p-value below
    ``alpha``.
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["ks"] = "ks"
    name: str | None = None
    signal: Literal["features"] = "features"
    features: list[str] | None = None
    reference_size: Annotated[int, Field(ge=2)] = 2000
    window_size: Annotated[int, Field(ge=2)] = 500
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    correction: Literal["bonferroni", "holm", "none"] = "bonferroni"
    drift_share: Annotated[float, Field(ge=0, le=1)] = 0.0
    min_samples: Annotated[int, Field(ge=2)] = 200
    stride: Annotated[int, Field(ge=1)] = 100

    @model_validator(mode="after")
    def _sizes(self) -> Config:
        if self.min_samples > min(self.window_size, self.reference_size):
            raise ValueError("min_samples must not exceed window_size nor reference_size")
        return self


class KSDetector:
    """See :class:`Config` and :func:`build`.

    A feature is tested only when both windows hold at least ``min_samples`` finite values
    of it and neither window is constant in it (a constant window is more often a fill
    value than a distribution, and KS p-values assume continuous data); otherwise its row
    in the table has ``p_value=None``, and with no feature tested the status is
    ``"not_enough_data"``. NaN and infinities are excluded per feature and counted.

    The signal's ``statistic`` is the smallest adjusted p-value and ``threshold`` is
    ``alpha``; ``details["features"]`` is the per-feature table of the latest test,
    ``details["max_statistic"]`` the largest KS distance. On an alarm ``onset`` and
    ``window`` start at the first row of the current window. p-values are Smirnov's
    asymptotic ones (as ``scipy.stats.ks_2samp(..., method="asymp")``).
    """

    def __init__(self, cfg: Config, features: Sequence[str]) -> None:
        watched = list(features) if cfg.features is None else list(cfg.features)
        unknown = [f for f in watched if f not in features]
        if unknown or not watched:
            raise ValueError(f"ks watches unknown or no features: {unknown or watched}")
        self.name = cfg.name or cfg.kind
        self.signal: str = cfg.signal
        self.cfg = cfg
        self.features = watched
        self._n_all = len(features)
        self._columns = np.array([list(features).index(f) for f in watched], dtype=np.int64)
        self._reference = Ring(cfg.reference_size, len(watched))
        self._reference_full = False
        self._window = Ring(cfg.window_size, len(watched))
        self._sorted_ref: FloatArray | None = None  # per feature, NaN last; None when stale
        self._next = 0
        self.reset()

    def reset(self) -> None:
        self._window.clear()
        self._since_test = 0
        self._nonfinite = np.zeros(len(self.features), dtype=np.int64)
        self._alarms = 0
        self._latch: DriftSignal | None = None
        self._last: DriftSignal | None = None

    def _rows(
        self, values: npt.NDArray[np.float64], index: npt.NDArray[np.int64] | None
    ) -> tuple[FloatArray, IndexArray]:
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != self._n_all:
            raise ValueError(f"{self.name}: expected rows x {self._n_all} values, got {v.shape}")
        if index is None:
            rows = np.arange(self._next, self._next + len(v), dtype=np.int64)
        else:
            rows = np.asarray(index, dtype=np.int64)
            if rows.shape != (len(v),):
                raise ValueError(f"{self.name}: {len(v)} rows but index of shape {rows.shape}")
        v = v[:, self._columns]
        v[~np.isfinite(v)] = np.nan
        return v, rows

    def set_reference(
        self, values: npt.NDArray[np.float64], index: npt.NDArray[np.int64] | None = None
    ) -> None:
        v, rows = self._rows(values, np.full(len(values), -1) if index is None else index)
        self._reference.clear()
        self._reference.extend(v, rows)
        self._reference_full = True
        self._sorted_ref = None

    def update(
        self, values: npt.NDArray[np.float64], index: npt.NDArray[np.int64] | None = None
    ) -> None:
        v, rows = self._rows(values, index)
        n = len(v)
        if n == 0:
            return
        self._next = int(rows[-1]) + 1
        self._nonfinite += np.isnan(v).sum(axis=0)
        start = 0
        if not self._reference_full:
            start = min(n, self.cfg.reference_size - len(self._reference))
            self._reference.extend(v[:start], rows[:start])
            self._reference_full = len(self._reference) >= self.cfg.reference_size
            self._sorted_ref = None
        while start < n:
            step = min(n - start, self.cfg.stride - self._since_test)
            self._window.extend(v[start : start + step], rows[start : start + step])
            self._since_test += step
            start += step
            if self._since_test >= self.cfg.stride:
                self._since_test = 0
                if len(self._window) >= self.cfg.min_samples:
                    self._test()

    def _test(self) -> None:
        cfg = self.cfg
        if self._sorted_ref is None:
            self._sorted_ref = np.sort(self._reference.values().T, axis=1)
        ref = self._sorted_ref
        cur = np.sort(self._window.values().T, axis=1)
        n_ref, n_cur = (~np.isnan(ref)).sum(axis=1), (~np.isnan(cur)).sum(axis=1)
        ref_mean, cur_mean = _means(ref, n_ref), _means(cur, n_cur)
        testable = (n_ref >= cfg.min_samples) & (n_cur >= cfg.min_samples)
        testable &= ~_constant(ref, n_ref) & ~_constant(cur, n_cur)
        tested = np.flatnonzero(testable)
        d = np.array([_ks_distance(ref[j, : n_ref[j]], cur[j, : n_cur[j]]) for j in tested])
        en = np.round(n_ref[tested] * n_cur[tested] / (n_ref[tested] + n_cur[tested]))
        p = np.clip(stats.kstwo.sf(d, en), 0.0, 1.0) if len(tested) else np.zeros(0)
        p_adj = adjust(p, cfg.correction)
        drifted = p_adj < cfg.alpha
        table: list[dict[str, Any]] = []
        pos = {int(j): i for i, j in enumerate(tested)}
        for j, feature in enumerate(self.features):
            i = pos.get(j)
            table.append(
                {
                    "feature": feature,
                    "statistic": None if i is None else float(d[i]),
                    "p_value": None if i is None else float(p[i]),
                    "p_adjusted": None if i is None else float(p_adj[i]),
                    "drifted": False if i is None else bool(drifted[i]),
                    "ref_mean": ref_mean[j],
                    "cur_mean": cur_mean[j],
                    "n_ref": int(n_ref[j]),
                    "n_cur": int(n_cur[j]),
                }
            )
        n_drifted = int(drifted.sum())
        alarm = n_drifted > 0 and n_drifted >= cfg.drift_share * len(tested)
        rows = self._window.index()
        window = (int(rows[0]), int(rows[-1]))
        sig = DriftSignal(
            detector=self.name,
            signal=self.signal,
            status="drift" if alarm else ("ok" if len(tested) else "not_enough_data"),
            statistic=float(p_adj.min()) if len(tested) else None,
            threshold=cfg.alpha,
            index=window[1] if alarm else None,
            onset=window[0] if alarm else None,
            window=window,
            details={
                "features": table,
                "max_statistic": float(d.max()) if len(tested) else None,
                "tested": len(tested),
                "drifted": n_drifted,
                "correction": cfg.correction,
            },
        )
        self._last = sig
        if alarm:
            self._alarms += 1
            self._latch = self._latch or sig

    def _counts(self) -> dict[str, Any]:
        return {
            "alarms": self._alarms,
            "nonfinite": dict(zip(self.features, self._nonfinite.tolist(), strict=True)),
            "reference_rows": len(self._reference),
            "window_rows": len(self._window),
        }

    def check(self) -> DriftSignal:
        if self._latch is not None:
            sig = replace(self._latch, details={**self._latch.details, **self._counts()})
            self._latch = None
            self._alarms = 0
            return sig
        if self._last is None:
            return DriftSignal(
                self.name,
                self.signal,
                "not_enough_data",
                threshold=self.cfg.alpha,
                details=self._counts(),
            )
        status = "ok" if self._last.status == "drift" else self._last.status
        return replace(
            self._last,
            status=status,
            index=None,
            onset=None,
            details={**self._last.details, **self._counts()},
        )

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "features": self.features,
            "reference": self._reference.state(),
            "reference_full": self._reference_full,
            "window": self._window.state(),
            "since_test": self._since_test,
            "next": self._next,
            "nonfinite": self._nonfinite.tolist(),
            "alarms": self._alarms,
            "latch": None if self._latch is None else self._latch.to_dict(),
            "last": None if self._last is None else self._last.to_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"{self.name}: state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        if state.get("features") != self.features:
            raise ValueError(
                f"{self.name}: state watches {state.get('features')}, not {self.features}"
            )
        self._reference.load_state(state["reference"])
        self._reference_full = bool(state["reference_full"])
        self._sorted_ref = None
        self._window.load_state(state["window"])
        self._since_test = int(state["since_test"])
        self._next = int(state["next"])
        self._nonfinite = np.asarray(state["nonfinite"], dtype=np.int64)
        self._alarms = int(state["alarms"])
        self._latch = None if state["latch"] is None else DriftSignal.from_dict(state["latch"])
        self._last = None if state["last"] is None else DriftSignal.from_dict(state["last"])


def _means(sorted_rows: FloatArray, counts: npt.NDArray[np.int64]) -> list[float | None]:
    sums = np.where(np.isnan(sorted_rows), 0.0, sorted_rows).sum(axis=1)
    return [float(s / c) if c else None for s, c in zip(sums, counts, strict=True)]


def _constant(sorted_rows: FloatArray, counts: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Per feature: at most one distinct finite value."""
    if sorted_rows.shape[1] == 0:
        return np.ones(len(counts), dtype=np.bool_)
    last = sorted_rows[np.arange(len(counts)), np.maximum(counts - 1, 0)]
    out: npt.NDArray[np.bool_] = (sorted_rows[:, 0] == last) | (counts == 0)
    return out


def _ks_distance(a: FloatArray, b: FloatArray) -> float:
    """Two-sample KS distance of sorted, finite samples."""
    both = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, both, side="right") / len(a)
    cdf_b = np.searchsorted(b, both, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def adjust(p: FloatArray, correction: str) -> FloatArray:
    """Adjust p-values for testing ``len(p)`` features: Bonferroni, Holm's step-down, or
    none.

    >>> adjust(np.array([0.01, 0.04, 0.03]), "holm").round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    m = len(p)
    if correction == "none" or m == 0:
        return p.copy()
    if correction == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def build(cfg: Config, features: Sequence[str]) -> ReferenceDetector:
    """A per-feature KS detector over ``cfg.features`` (all of ``features`` if ``None``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(), features=["a", "b"])
    >>> det.update(rng.normal(size=(2500, 2)))   # 2000 rows fill the reference
    >>> det.check().status
    'ok'
    >>> det.update(rng.normal(size=(500, 2)) + [0.0, 1.0])
    >>> s = det.check()
    >>> s.status, [row["drifted"] for row in s.details["features"]]
    ('drift', [False, True])
    """
    return KSDetector(cfg, features)
