"""The one module that imports river: a :class:`~detectors.base.Detector` around any of
river's drift detectors.

:class:`StreamDetector` feeds a 1-D stream to a river detector's algorithm, skipping (and
counting) NaN and infinities, and latches the first alarm until
:meth:`~StreamDetector.check`. Every algorithm except ADWIN runs as an exact compiled port
(:mod:`detectors.fast_engine`: same alarms as river, a batch per call instead of a Python
call per value); ADWIN runs river's own (Rust) object, fed through ``map`` and
``operator.indexOf`` so that no Python bytecode runs per value. ``backend="river"`` runs
river's objects for every algorithm (the reference the ports are tested against).

Every river detector restarts from scratch after an alarm. The adapter keeps the values
fed since the last alarm (the most recent ``history_size`` of them) with their row
indices, for the onset; the compiled engines save their exact state too, so
:meth:`~StreamDetector.load_state` restores them exactly. A river object (ADWIN) cannot
be saved: it is rebuilt by replaying the kept values into a fresh one, exact while fewer
than ``history_size`` values have been seen since the last alarm, an approximation
(warmed on the most recent ``history_size`` values) beyond that. Nothing is pickled.

Onset, the row where the change began, is the single mean-shift change point of the
values since the last alarm: the argmax over ``k`` of
``|S_k - k S_n / n| / sqrt(k (n - k) / n)``, ``S_k`` the cumulative sums (the
standardised CUSUM estimator), for every engine. For ADWIN the first row of the window it
keeps after its cut is reported as well (``details["adwin_window_start"]``) but is not
the onset: river's ADWIN drops whole buckets, often only the oldest one, so that row
is only a lower bound, often far before the change, where the CUSUM point lands on it.

The alarm's ``statistic`` is the size of the shift: the mean of the watched values
from the onset on minus their mean before it (``threshold`` is ``None``: river does not
expose the quantity each detector compares with its threshold).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from river import drift

from detectors import fast_engine
from detectors.base import STATE_VERSION, DriftSignal, check_stream_signal
from detectors.ring import FloatArray, IndexArray, Ring

ENGINES: dict[str, Callable[..., Any]] = {
    "ADWIN": drift.ADWIN,
    "PageHinkley": drift.PageHinkley,
    "KSWIN": drift.KSWIN,
    "DDM": drift.binary.DDM,
    "EDDM": drift.binary.EDDM,
    "HDDMA": drift.binary.HDDMA,
    "HDDMW": drift.binary.HDDMW,
    "FHDDM": drift.binary.FHDDM,
}
"""River detectors by class name."""

BOUNDED = frozenset({"DDM", "EDDM", "HDDMA", "HDDMW", "FHDDM"})
"""Engines for a 0/1 (error) stream: their input must lie in [0, 1]."""

HISTORY_SIZE = 100_000
"""Values kept (since the last alarm) to rebuild a detector on :meth:`StreamDetector.load_state`."""

_COMMON_FIELDS = frozenset({"kind", "name", "signal", "min_samples"})

Backend = Literal["fast", "river"]


class Engine(Protocol):
    """A detector algorithm as the adapter drives it."""

    exact_state: bool
    width_at_alarm: int
    """ADWIN's window width at the last alarm (0 for the others)."""

    def run(self, x: FloatArray) -> int:
        """Feed ``x`` up to and including the first alarm and return its position (the
        engine then starts afresh, as river's detectors do), or ``-1`` if none."""
        ...

    def reset(self) -> None: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


class RiverEngine:
    """A river detector object (its state cannot be saved: ``exact_state`` is false)."""

    exact_state = False

    def __init__(self, engine: str, params: Mapping[str, Any]) -> None:
        self._factory = ENGINES[engine]
        self._params = dict(params)
        self.width_at_alarm = 0
        self.reset()

    def reset(self) -> None:
        self._det: Any = self._factory(**self._params)
        # ADWIN's Rust helper returns the alarm from update(): map it in C, stop at True
        helper = getattr(self._det, "_helper", None)
        self._fast_update = None if helper is None else helper.update

    def run(self, x: FloatArray) -> int:
        values = x.tolist()
        if self._fast_update is not None:
            try:
                pos = operator.indexOf(map(self._fast_update, values), True)
            except ValueError:
                return -1
            self.width_at_alarm = int(self._det.width)
            self.reset()
            return pos
        det, update = self._det, self._det.update
        for pos, v in enumerate(values):
            update(v)
            if det.drift_detected:
                self.width_at_alarm = int(getattr(det, "width", 0))
                self.reset()
                return pos
        return -1

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        raise ValueError("a river detector object cannot be restored; replay its values")


def make_engine(engine: str, params: Mapping[str, Any], backend: Backend = "fast") -> Engine:
    """The compiled port of river's ``engine`` where one exists (and ``backend`` is
    ``"fast"``), else river's object."""
    if engine not in ENGINES:
        raise ValueError(f"unknown river detector {engine!r}; one of {', '.join(ENGINES)}")
    if backend == "fast":
        fast = fast_engine.from_river(ENGINES[engine](**params))
        if fast is not None:
            return fast
    return RiverEngine(engine, params)


class StreamDetector:
    """A river drift detector watching one numeric stream.

    Parameters
    ----------
    engine : str
        A key of :data:`ENGINES`.
    params : mapping
        Keyword arguments of the river class.
    name, signal : str
        As in :class:`~detectors.base.Detector`.
    min_samples : int
        Finite values needed since the last alarm (or reset) before the status is
        ``"ok"`` rather than ``"not_enough_data"``; alarms before that are ignored.
    invert : bool
        Feed ``1 - x``: FHDDM alarms when the mean falls, so it watches correctness
        when the runtime hands in errors.
    history_size : int
        See the module docstring.
    backend : {"fast", "river"}
        See the module docstring.

    Examples
    --------
    >>> import numpy as np
    >>> det = StreamDetector("ADWIN", {}, name="adwin", signal="error", min_samples=50)
    >>> det.update(np.array([0.0, np.nan, 1.0]))
    >>> s = det.check()
    >>> s.status, s.details["nonfinite"], s.details["seen"]
    ('not_enough_data', 1, 2)
    """

    def __init__(
        self,
        engine: str,
        params: Mapping[str, Any],
        *,
        name: str,
        signal: str,
        min_samples: int = 0,
        invert: bool = False,
        history_size: int = HISTORY_SIZE,
        backend: Backend = "fast",
    ) -> None:
        self._engine = make_engine(engine, params, backend)
        self.name = name
        self.signal = signal
        self.engine = engine
        self.params = dict(params)
        self.min_samples = min_samples
        self.invert = invert
        self._is_adwin = engine == "ADWIN"
        self._history = Ring(history_size)
        self._next = 0  # default row index of the next value
        self.reset()

    def reset(self) -> None:
        """Start afresh; only the running row count (the default index) carries on."""
        self._engine.reset()
        self._history.clear()
        self._since = 0  # finite values since the last alarm or reset
        self._seen = 0  # finite values since reset
        self._nonfinite = 0
        self._alarms = 0  # alarms since the last check
        self._latch: DriftSignal | None = None

    def update(
        self, values: npt.NDArray[np.float64], index: npt.NDArray[np.int64] | None = None
    ) -> None:
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 1:
            raise ValueError(f"{self.name}: expected a 1-D array of values, got shape {v.shape}")
        n = len(v)
        if n == 0:
            return
        if index is None:
            rows = np.arange(self._next, self._next + n, dtype=np.int64)
        else:
            rows = np.asarray(index, dtype=np.int64)
            if rows.shape != v.shape:
                raise ValueError(f"{self.name}: {n} values but index of shape {rows.shape}")
        finite = np.isfinite(v)
        n_finite = int(np.count_nonzero(finite))
        if n_finite < n:
            v, rows_kept = v[finite], rows[finite]
        else:
            rows_kept = rows
        if n_finite and self.engine in BOUNDED and (v.min() < 0.0 or v.max() > 1.0):
            raise ValueError(
                f"{self.name}: {self.engine} watches values in [0, 1] "
                f"(1 = error), got {v.min():g} .. {v.max():g}"
            )
        self._next = int(rows[-1]) + 1
        self._nonfinite += n - n_finite
        if n_finite:
            self._feed(v, rows_kept)

    def _feed(self, v: FloatArray, rows: IndexArray) -> None:
        x = np.ascontiguousarray(1.0 - v if self.invert else v)
        run, hits, pos = self._engine.run, [], 0
        while pos < len(x):
            k = run(x[pos:])
            if k < 0:
                break
            pos += k + 1
            hits.append((pos - 1, self._engine.width_at_alarm))
        start = 0
        for pos, width in hits:
            self._history.extend(v[start : pos + 1], rows[start : pos + 1])
            self._since += pos + 1 - start
            if self._since >= self.min_samples:
                self._alarm(width)
            self._history.clear()
            self._since = 0
            start = pos + 1
        self._history.extend(v[start:], rows[start:])
        self._since += len(v) - start
        self._seen += len(v)

    def _alarm(self, width: int) -> None:
        self._alarms += 1
        if self._latch is not None:
            return
        vals, rows = self._history.values(), self._history.index()
        k = change_point(vals)
        before = float(vals[:k].mean()) if k else None
        after = float(vals[k:].mean())
        details: dict[str, Any] = {
            "engine": self.engine,
            "mean_before": before,
            "mean_after": after,
            "n_before": k,
            "n_after": len(vals) - k,
        }
        if self._is_adwin:
            details["adwin_window_start"] = int(rows[max(len(vals) - width, 0)])
        self._latch = DriftSignal(
            detector=self.name,
            signal=self.signal,
            status="drift",
            statistic=None if before is None else after - before,
            index=int(rows[-1]),
            onset=int(rows[k]),
            window=(int(rows[0]), int(rows[-1])),
            details=details,
        )

    def _counts(self) -> dict[str, Any]:
        return {"alarms": self._alarms, "seen": self._seen, "nonfinite": self._nonfinite}

    def check(self) -> DriftSignal:
        if self._latch is not None:
            sig = replace(self._latch, details={**self._latch.details, **self._counts()})
            self._latch = None
            self._alarms = 0
            return sig
        rows = self._history.index()
        vals = self._history.values()
        return DriftSignal(
            detector=self.name,
            signal=self.signal,
            status="not_enough_data" if self._since < self.min_samples else "ok",
            window=(int(rows[0]), int(rows[-1])) if len(rows) else None,
            details={
                "engine": self.engine,
                "mean": float(vals.mean()) if len(vals) else None,
                **self._counts(),
            },
        )

    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "engine": self.engine,
            "history": self._history.state(),
            "since": self._since,
            "seen": self._seen,
            "nonfinite": self._nonfinite,
            "next": self._next,
            "alarms": self._alarms,
            "latch": None if self._latch is None else self._latch.to_dict(),
            "engine_state": self._engine.state() if self._engine.exact_state else None,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise ValueError(
                f"{self.name}: state version {state.get('version')!r} is not {STATE_VERSION}"
            )
        if state.get("engine") != self.engine:
            raise ValueError(
                f"{self.name}: state is for {state.get('engine')!r}, not {self.engine!r}"
            )
        self.reset()
        self._history.load_state(state["history"])
        saved = state.get("engine_state")
        if saved is not None and self._engine.exact_state:
            self._engine.load_state(saved)
        else:  # rebuild from the values since the last alarm (none of them alarmed)
            v = self._history.values()
            x, pos = np.ascontiguousarray(1.0 - v if self.invert else v), 0
            while pos < len(x) and (k := self._engine.run(x[pos:])) >= 0:
                pos += k + 1
        self._since = int(state["since"])
        self._seen = int(state["seen"])
        self._nonfinite = int(state["nonfinite"])
        self._next = int(state["next"])
        self._alarms = int(state["alarms"])
        latch = state["latch"]
        self._latch = None if latch is None else DriftSignal.from_dict(latch)


def change_point(x: FloatArray) -> int:
    """Position of the first value after the most likely single shift in mean of ``x``
    (standardised CUSUM); ``len(x) - 1`` when ``x`` has fewer than two values."""
    n = len(x)
    if n < 2:
        return max(n - 1, 0)
    k = np.arange(1, n, dtype=np.float64)
    bridge = np.cumsum(x - x.mean())[:-1]
    return int(np.argmax(np.abs(bridge) / np.sqrt(k * (n - k) / n))) + 1


def from_config(
    engine: str, cfg: BaseModel, features: Sequence[str], *, invert: bool = False
) -> StreamDetector:
    """Build a :class:`StreamDetector` from a detector config: the fields other than
    ``kind``, ``name``, ``signal`` and ``min_samples`` are the river class's arguments.

    The bounded engines (:data:`BOUNDED`) watch only ``error`` or ``confidence``; on
    ``confidence`` the input is flipped so that they alarm when it falls."""
    fields = cfg.model_dump()
    signal = fields["signal"]
    check_stream_signal(signal, features)
    if engine in BOUNDED and signal not in ("error", "confidence"):
        what = "the loss" if signal == "loss" else f"feature {signal!r}"
        raise ValueError(
            f"{engine} watches the model's error or confidence (values in [0, 1]), not {what}: "
            "use adwin, kswin, pagehinkley or cusum"
        )
    # the bounded engines alarm when an error rate rises; confidence falls when things go
    # wrong, so they watch 1 - confidence (and FHDDM, fed correctness, the confidence itself)
    if engine in BOUNDED and signal == "confidence":
        invert = not invert
    return StreamDetector(
        engine,
        {k: v for k, v in fields.items() if k not in _COMMON_FIELDS},
        name=fields["name"] or fields["kind"],
        signal=signal,
        min_samples=fields["min_samples"],
        invert=invert,
    )
