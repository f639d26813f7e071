"""CUSUM: Page's cumulative sums for shifts in the mean and the variance of one stream,
with thresholds calibrated from a reference for a false-alarm budget in rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from scipy import optimize

from detectors.base import STATE_VERSION, Detector, DriftSignal, check_stream_signal
from detectors.ring import FloatArray, IndexArray

BRANCHES = ("mean_up", "mean_down", "variance_up", "variance_down")
_BLOCKS = 100
_BLOCK = 2000
_REFERENCES = 20
_RATE_SAMPLE = 1000
_CHUNK = 65_536


class Config(BaseModel):
    """Four one-sided CUSUMs (Page 1954) on the stream standardised by a reference: mean up
    and down (increments ``±z - shift / 2``, optimal for a mean shift of ``shift``
    reference standard deviations) and variance up and down (the log-likelihood ratio of
    a standard deviation ``scale`` or ``1 / scale`` times the reference's).

    The first ``reference_size`` finite values (again after each alarm) give the mean and
    standard deviation; then each branch's threshold ``h`` is set by simulation from that
    reference (bootstrap resampling, so skewed or discrete signals such as a 0/1 error are
    handled) such that its average run length without change is ``4 x
    false_alarms_per_rows`` rows: four branches together then give at most about one false
    alarm per ``false_alarms_per_rows`` monitored rows. The run length of a CUSUM without
    change is close to exponential and grows as ``exp(theta h)``, ``theta`` the positive
    root of ``E[exp(theta X)] = 1`` for the increments ``X`` (Cramér-Lundberg): ``h`` is
    the median of the CUSUM's maximum over 100 resampled blocks of 2,000 rows (run length
    ``2000 / ln 2``), raised by ``ln(target / (2000 / ln 2)) / theta``, ``theta`` solved on
    the reference's increments. A constant reference
    (no spread) keeps sliding until it has spread. Any signal: error, loss, confidence or a
    feature; all updates are vectorised numpy (no per-value Python).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["cusum"] = "cusum"
    name: str | None = None
    signal: str = "error"
    reference_size: Annotated[int, Field(ge=10)] = 2000
    shift: Annotated[float, Field(gt=0)] = 0.5
    scale: Annotated[float, Field(gt=1)] = 2.0
    false_alarms_per_rows: Annotated[int, Field(ge=100)] = 300_000
    seed: int = 0


def tail_rates(x: FloatArray) -> FloatArray:
    """Per column of ``x`` (samples x columns): the root ``theta > 0`` of
    ``mean(exp(theta x)) = 1`` (a column with a negative mean and some positive values),
    the exponential rate at which a CUSUM of increments drawn from that column becomes
    less likely to reach a higher threshold; ``inf`` where no value is positive.

    >>> x = np.random.default_rng(0).normal(-0.25, 1.0, (100_000, 1))
    >>> round(float(tail_rates(x)[0]), 2)  # 2 |mean| / variance for a normal
    0.5
    """
    top = x.max(axis=0)
    ok = top > 0
    theta = np.where(ok, 2 * np.abs(x.mean(axis=0)) / np.maximum(x.var(axis=0), 1e-12), 1.0)
    for _ in range(60):  # f is convex with f(0) = 0, f'(0) < 0: Newton from the right
        e = np.exp(theta * (x - top))
        m0, m1 = e.mean(axis=0), (x * e).mean(axis=0)
        f = np.log(m0) + theta * top
        low = f < 0
        if low.any():
            theta = np.where(low, theta * 2, theta)
            continue
        step = f / (m1 / m0)
        theta = theta - step
        if np.all(np.abs(step[ok]) < 1e-9 * theta[ok]):
            break
    out: FloatArray = np.where(ok, theta, np.inf)
    return out


def lindley(x: FloatArray, s0: FloatArray) -> FloatArray:
    """``S_t = max(0, S_{t-1} + x_t)`` for each column of ``x`` (rows x branches) from
    ``S_0 = s0``, without a Python loop: ``S_t = C_t - min(-s0, min_{s<=t} C_s)``.

    >>> lindley(np.array([[1.0], [-3.0], [2.0]]), np.array([0.5])).ravel().tolist()
    [1.5, 0.0, 2.0]
    """
    c = np.cumsum(x, axis=0)
    out: FloatArray = c - np.minimum(np.minimum.accumulate(c, axis=0), -s0)
    return out


class CusumDetector:
    """See :class:`Config` and :func:`build`."""

    def __init__(self, cfg: Config, name: str, signal: str) -> None:
        self.cfg = cfg
        self.name = name
        self.signal = signal
        self._next = 0
        self.reset()

    def reset(self) -> None:
        self._ref: list[float] = []
        self._ref_rows: list[int] = []
        self._mean = self._sd = 0.0
        self._h = np.zeros(len(BRANCHES))
        self._s = np.zeros(len(BRANCHES))
        self._zero_row = np.zeros(len(BRANCHES), dtype=np.int64)  # last row with S == 0
        self._seen = 0
        self._nonfinite = 0
        self._alarms = 0
        self._latch: DriftSignal | None = None
        self._last_row: int | None = None

    @property
    def monitoring(self) -> bool:
        return self._sd > 0

    def _increments(self, x: FloatArray, mean: float, sd: float) -> FloatArray:
        z = (x - mean) / sd
        k, r = self.cfg.shift / 2, self.cfg.scale
        z2 = z * z
        return np.column_stack(
            [z - k, -z - k, -np.log(r) + z2 * (1 - 1 / r**2) / 2, np.log(r) + z2 * (1 - r**2) / 2]
        )

    def _learn(self, v: FloatArray, rows: IndexArray) -> int:
        """Add values to the reference; returns how many were used."""
        size = self.cfg.reference_size
        take = min(len(v), size - len(self._ref))
        self._ref.extend(v[:take].tolist())
        self._ref_rows.extend(rows[:take].tolist())
        if len(self._ref) < size:
            return take
        ref = np.asarray(self._ref)
        sd = float(ref.std())
        if not sd > 0:  # constant: slide until it has spread
            keep = size // 2
            self._ref, self._ref_rows = self._ref[-keep:], self._ref_rows[-keep:]
            return take
        self._mean, self._sd = float(ref.mean()), sd
        self._h = self._calibrate(ref)
        self._s = np.zeros(len(BRANCHES))
        self._zero_row[:] = self._ref_rows[-1]
        return take

    def _calibrate(self, ref: FloatArray) -> FloatArray:
        """Per-branch thresholds for a run length of ``4 x false_alarms_per_rows``, averaged
        over the uncertainty of the reference's mean and sd (see :class:`Config`)."""
        rng = np.random.default_rng(self.cfg.seed)
        n = len(ref)
        target = len(BRANCHES) * self.cfg.false_alarms_per_rows
        x = self._increments(ref[rng.integers(0, n, _BLOCKS * _BLOCK)], self._mean, self._sd)
        c = np.cumsum(x.reshape(_BLOCKS, _BLOCK, len(BRANCHES)), axis=1)
        maxima = (c - np.minimum(np.minimum.accumulate(c, axis=1), 0.0)).max(axis=1)
        h0 = np.median(maxima, axis=0)  # run length about _BLOCK / ln 2
        boot = ref[rng.integers(0, n, (_REFERENCES, n))]
        sample = ref[rng.choice(n, min(n, _RATE_SAMPLE), replace=False)]
        x_all = np.concatenate(
            [self._increments(sample, float(b.mean()), float(b.std()) or self._sd) for b in boot],
            axis=1,
        )
        rates = tail_rates(x_all).reshape(_REFERENCES, len(BRANCHES))
        out = np.empty(len(BRANCHES))
        for j in range(len(BRANCHES)):
            theta = rates[:, j][np.isfinite(rates[:, j])]
            if not len(theta):
                out[j] = np.inf
                continue

            def excess(h: float, theta: FloatArray = theta, h0: float = float(h0[j])) -> float:
                return float(np.mean(np.exp(-theta * (h - h0))) - _BLOCK / np.log(2) / target)

            hi = float(h0[j]) + 1.0
            while excess(hi) > 0:
                hi = float(h0[j]) + 2 * (hi - float(h0[j]))
            low = float(h0[j])
            out[j] = optimize.brentq(excess, low, hi) if excess(low) > 0 else low
        return out

    def update(
        self, values: npt.NDArray[np.float64], index: npt.NDArray[np.int64] | None = None
    ) -> None:
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"{self.name}: expected a 1-D array of values, got shape {v.shape}")
        if len(v) == 0:
            return
        rows = (np.arange(self._next, self._next + len(v), dtype=np.int64) if index is None
                else np.asarray(index, dtype=np.int64))
        if rows.shape != v.shape:
            raise ValueError(f"{self.name}: {len(v)} values but index of shape {rows.shape}")
        self._next = int(rows[-1]) + 1
        finite = np.isfinite(v)
        self._nonfinite += int(len(v) - finite.sum())
        v, rows = v[finite], rows[finite]
        self._seen += len(v)
        while len(v):
            if not self.monitoring:
                used = self._learn(v, rows)
                v, rows = v[used:], rows[used:]
                continue
            used = self._monitor(v, rows)
            v, rows = v[used:], rows[used:]

    def _monitor(self, v: FloatArray, rows: IndexArray) -> int:
        """Run the CUSUMs over ``v``; on an alarm latch it, restart learning and return how
        many values were consumed."""
        v, rows = v[:_CHUNK], rows[:_CHUNK]
        s = lindley(self._increments(v, self._mean, self._sd), self._s)
        over = s > self._h
        hit = np.flatnonzero(over.any(axis=1))
        zero = np.where(s == 0, rows[:, None], -1)
        last_zero = np.maximum(np.maximum.accumulate(zero, axis=0), self._zero_row)
        self._last_row = int(rows[-1])
        if not len(hit):
            self._s, self._zero_row = s[-1], last_zero[-1]
            return len(v)
        t = int(hit[0])
        b = int(np.argmax(s[t] / self._h))
        onset_row = int(last_zero[t, b]) + 1
        after = v[: t + 1][rows[: t + 1] >= onset_row]
        self._alarms += 1
        if self._latch is None:
            self._latch = DriftSignal(
                detector=self.name,
                signal=self.signal,
                status="drift",
                statistic=float(s[t, b]),
                threshold=float(self._h[b]),
                index=int(rows[t]),
                onset=min(onset_row, int(rows[t])),
                window=(self._ref_rows[0], int(rows[t])),
                details={
                    "branch": BRANCHES[b],
                    "mean_before": self._mean,
                    "sd_before": self._sd,
                    "mean_after": float(after.mean()) if len(after) else None,
                    "sd_after": float(after.std()) if len(after) > 1 else None,
                },
            )
        self._ref, self._ref_rows, self._sd = [], [], 0.0
        return t + 1

    def _counts(self) -> dict[str, Any]:
        return {"alarms": self._alarms, "seen": self._seen, "nonfinite": self._nonfinite}

    def check(self) -> DriftSignal:
        if self._latch is not None:
            sig = replace(self._latch, details={**self._latch.details, **self._counts()})
            self._latch = None
            self._alarms = 0
            return sig
        if not self.monitoring:
            return DriftSignal(self.name, self.signal, "not_enough_data", details={
                "reference_rows": len(self._ref), **self._counts()})
        b = int(np.argmax(self._s / self._h))
        return DriftSignal(
            detector=self.name,
            signal=self.signal,
            status="ok",
            statistic=float(self._s[b]),
            threshold=float(self._h[b]),
            window=(self._ref_rows[0], self._last_row if self._last_row is not None
                    else self._ref_rows[-1]),
            details={"branch": BRANCHES[b], "mean": self._mean, "sd": self._sd,
                     "cusum": dict(zip(BRANCHES, self._s.tolist(), strict=True)),
                     **self._counts()},
        )

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "kind": "cusum",
            "ref": self._ref,
            "ref_rows": self._ref_rows,
            "mean": self._mean,
            "sd": self._sd,
            "h": [v if np.isfinite(v) else None for v in self._h.tolist()],  # JSON: inf -> null
            "s": self._s.tolist(),
            "zero_row": self._zero_row.tolist(),
            "seen": self._seen,
            "nonfinite": self._nonfinite,
            "alarms": self._alarms,
            "next": self._next,
            "last_row": self._last_row,
            "latch": None if self._latch is None else self._latch.to_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION or state.get("kind") != "cusum":
            raise ValueError(f"{self.name}: state version {state.get('version')!r} "
                             f"of {state.get('kind')!r} is not {STATE_VERSION} of 'cusum'")
        self._ref = [float(x) for x in state["ref"]]
        self._ref_rows = [int(x) for x in state["ref_rows"]]
        self._mean, self._sd = float(state["mean"]), float(state["sd"])
        self._h = np.asarray([np.inf if v is None else v for v in state["h"]], dtype=np.float64)
        self._s = np.asarray(state["s"], dtype=np.float64)
        self._zero_row = np.asarray(state["zero_row"], dtype=np.int64)
        self._seen, self._nonfinite = int(state["seen"]), int(state["nonfinite"])
        self._alarms, self._next = int(state["alarms"]), int(state["next"])
        self._last_row = None if state["last_row"] is None else int(state["last_row"])
        latch = state["latch"]
        self._latch = None if latch is None else DriftSignal.from_dict(latch)


def build(cfg: Config, features: Sequence[str]) -> Detector:
    """A CUSUM detector.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = build(Config(signal="x"), features=["x"])
    >>> det.update(rng.normal(0.0, 1.0, 5000))
    >>> det.check().status
    'ok'
    >>> det.update(rng.normal(0.5, 1.0, 1000), np.arange(5000, 6000))
    >>> s = det.check()
    >>> s.status, s.details["branch"], 5000 <= s.index < 5300
    ('drift', 'mean_up', True)
    """
    check_stream_signal(cfg.signal, features)
    return CusumDetector(cfg, cfg.name or cfg.kind, cfg.signal)
