"""The windowing shared by every reference-vs-window test (per-feature and multivariate).

:class:`WindowedDetector` keeps a reference window and a bounded current window of rows,
runs its :class:`Judge` every ``stride`` rows once the current window holds
``min_samples`` rows, and turns the judge's :class:`Verdict` into a latched
:class:`~detectors.base.DriftSignal`. The judge decides; the windowing is the same for
every test, so the tests differ only in their judge.

Until a reference is set (:meth:`WindowedDetector.set_reference`), the first
``reference_size`` rows seen become the reference; monitoring starts after them. NaN and
infinities are stored as NaN, counted per feature, and left to the judge to exclude. On an
alarm ``onset`` and ``window`` start at the first row of the current window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from detectors.base import STATE_VERSION, DriftSignal, Status
from detectors.calibration import level_for_rows
from detectors.ring import FloatArray, IndexArray, Ring


class WindowFields(BaseModel):
    """Config fields of every windowed detector.

    ``false_alarms_per_rows`` states the false-alarm budget: a test every ``stride`` rows
    at level ``stride / false_alarms_per_rows`` gives at most one expected false alarm per
    that many stationary rows (:mod:`detectors.calibration`). ``alpha``, when set, is the
    per-test level instead (each test, not each stretch of rows).
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    signal: Literal["features"] = "features"
    features: list[str] | None = None
    reference_size: Annotated[int, Field(ge=2)] = 2000
    window_size: Annotated[int, Field(ge=2)] = 500
    min_samples: Annotated[int, Field(ge=2)] = 200
    stride: Annotated[int, Field(ge=1)] = 100
    false_alarms_per_rows: Annotated[int, Field(ge=1)] = 100_000
    alpha: Annotated[float | None, Field(gt=0, lt=1)] = None
    seed: int = 0

    @model_validator(mode="after")
    def _sizes(self) -> WindowFields:
        if self.min_samples > min(self.window_size, self.reference_size):
            raise ValueError("min_samples must not exceed window_size nor reference_size")
        return self

    @property
    def level(self) -> float:
        """The per-test level p-values are compared with."""
        if self.alpha is not None:
            return self.alpha
        return level_for_rows(self.stride, self.false_alarms_per_rows)


@dataclass(frozen=True)
class Verdict:
    """What a judge says about the current window."""

    status: Status
    statistic: float | None
    threshold: float | None
    details: dict[str, Any] = field(default_factory=dict)


class Judge(Protocol):
    """A two-sample test of the current window against the reference window."""

    threshold: float | None
    """Reported while there is not enough data to test."""

    def fit(self, reference: FloatArray) -> None:
        """Prepare for a new reference (rows x watched features, NaN where not finite):
        sort it, calibrate the null distribution."""
        ...

    def evaluate(self, current: FloatArray) -> Verdict:
        """Test the current window (rows x watched features, NaN where not finite)."""
        ...


@dataclass(frozen=True)
class Windows:
    """Window sizes and cadence (see the module docstring)."""

    reference_size: int
    window_size: int
    min_samples: int
    stride: int


class WindowedDetector:
    """A :class:`~detectors.base.ReferenceDetector` that compares windows with ``judge``.

    Parameters
    ----------
    name, signal : str
        As in :class:`~detectors.base.Detector` (``signal`` is ``"features"``).
    features : sequence of str
        The schema's feature names, in the column order of the rows handed in.
    watched : sequence of str
        The features the judge sees (a subset of ``features``).
    windows : Windows
        Sizes and cadence.
    judge : Judge
        The test.
    """

    def __init__(
        self,
        name: str,
        signal: str,
        features: Sequence[str],
        watched: Sequence[str],
        windows: Windows,
        judge: Judge,
    ) -> None:
        unknown = [f for f in watched if f not in features]
        if unknown or not watched:
            raise ValueError(f"{name} watches unknown or no features: {unknown or list(watched)}")
        self.name = name
        self.signal = signal
        self.features = list(watched)
        self.windows = windows
        self.judge = judge
        self._n_all = len(features)
        self._columns = np.array([list(features).index(f) for f in watched], dtype=np.int64)
        self._reference = Ring(windows.reference_size, len(watched))
        self._reference_full = False
        self._fitted = False
        self._window = Ring(windows.window_size, len(watched))
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

    def reference(self) -> npt.NDArray[np.float64]:
        """The reference window's rows, over :attr:`features` (for drift reports)."""
        return self._reference.values()

    def current(self) -> npt.NDArray[np.float64]:
        """The current window's rows, over :attr:`features`."""
        return self._window.values()

    def set_reference(
        self, values: npt.NDArray[np.float64], index: npt.NDArray[np.int64] | None = None
    ) -> None:
        v, rows = self._rows(values, np.full(len(values), -1) if index is None else index)
        self._reference.clear()
        self._reference.extend(v, rows)
        self._reference_full = True
        self._fitted = False

    def update(
        self, values: npt.NDArray[np.float64], index: npt.NDArray[np.int64] | None = None
    ) -> None:
        v, rows = self._rows(values, index)
        n = len(v)
        if n == 0:
            return
        w = self.windows
        self._next = int(rows[-1]) + 1
        self._nonfinite += np.isnan(v).sum(axis=0)
        start = 0
        if not self._reference_full:
            start = min(n, w.reference_size - len(self._reference))
            self._reference.extend(v[:start], rows[:start])
            self._reference_full = len(self._reference) >= w.reference_size
            self._fitted = False
        while start < n:
            step = min(n - start, w.stride - self._since_test)
            self._window.extend(v[start : start + step], rows[start : start + step])
            self._since_test += step
            start += step
            if self._since_test >= w.stride:
                self._since_test = 0
                if len(self._window) >= w.min_samples:
                    self._test()

    def _test(self) -> None:
        if not self._fitted:
            self.judge.fit(self._reference.values())
            self._fitted = True
        verdict = self.judge.evaluate(self._window.values())
        alarm = verdict.status == "drift"
        rows = self._window.index()
        window = (int(rows[0]), int(rows[-1]))
        sig = DriftSignal(
            detector=self.name,
            signal=self.signal,
            status=verdict.status,
            statistic=verdict.statistic,
            threshold=verdict.threshold,
            index=window[1] if alarm else None,
            onset=window[0] if alarm else None,
            window=window,
            details=verdict.details,
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
                threshold=self.judge.threshold,
                details=self._counts(),
            )
        status: Status = "ok" if self._last.status == "drift" else self._last.status
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
        """Restore; the judge is refitted on the restored reference (its calibration is a
        deterministic function of the reference and the configured seed)."""
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
        self._fitted = False
        self._window.load_state(state["window"])
        self._since_test = int(state["since_test"])
        self._next = int(state["next"])
        self._nonfinite = np.asarray(state["nonfinite"], dtype=np.int64)
        self._alarms = int(state["alarms"])
        self._latch = None if state["latch"] is None else DriftSignal.from_dict(state["latch"])
        self._last = None if state["last"] is None else DriftSignal.from_dict(state["last"])
