"""Compiled engines for the streaming detectors: river's algorithms, ported exactly.

river runs its detectors one Python call per value, which caps a daemon's rows/s;
:class:`FastEngine` runs a numba kernel (:mod:`detectors.kernels_binary`,
:mod:`detectors.kernels_stream`) over a whole batch with the same alarms: river stays
the semantic reference and ``tests/detectors/test_fast_engine.py`` checks
alarm-for-alarm equality against it. ADWIN has no port: river's is compiled already
(Rust). bench/detectors.py measures both against river's own loop.

The engine's state is a few float and integer arrays, saved to JSON exactly (floats by
their shortest round-trip repr, infinities as strings): a restore mid-stream continues
exactly as if uninterrupted, however long the stream. Kernels are compiled on first use
and cached on disk by numba (:mod:`detectors.jit`: ``detectors/__pycache__``,
``NUMBA_CACHE_DIR`` or a temp folder): with an empty cache the first call of each
detector kind compiles its kernel; later processes load it from the cache.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from detectors import kernels_binary as kb
from detectors import kernels_stream as ks
from detectors.ring import FloatArray, IndexArray

Kernel = Callable[[FloatArray, FloatArray, IndexArray, FloatArray, FloatArray, IndexArray], int]

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_floats(x: FloatArray) -> list[float | str]:
    """JSON-safe floats: finite ones as numbers, the others as ``"inf"``, ``"-inf"``,
    ``"nan"``."""
    return [v if math.isfinite(v) else str(v) for v in x.tolist()]


def decode_floats(values: list[float | str]) -> FloatArray:
    """Inverse of :func:`encode_floats`."""
    return np.array([_NONFINITE[v] if isinstance(v, str) else v for v in values],
                    dtype=np.float64)


class FastEngine:
    """One compiled detector: feeds values until an alarm, resets as river does after one.

    Parameters
    ----------
    kind : str
        The river class it ports (``"DDM"``, ...).
    kernel : callable
        ``kernel(x, fp, ip, s, buf, ibuf) -> int`` (see :mod:`detectors.kernels_binary`).
    fp, ip : ndarray
        Float and integer parameters.
    s0 : ndarray
        Scalar state after a reset.
    buf_size : int
        Length of the float buffer (windows).
    ibuf0 : ndarray
        Integer buffer after a reset.
    """

    exact_state = True

    def __init__(self, kind: str, kernel: Kernel, fp: FloatArray, ip: IndexArray,
                 s0: FloatArray, buf_size: int = 0, ibuf0: IndexArray | None = None) -> None:
        self.kind = kind
        self._kernel = kernel
        self._fp = np.ascontiguousarray(fp, dtype=np.float64)
        self._ip = np.ascontiguousarray(ip, dtype=np.int64)
        self._s0 = s0
        self._buf_size = buf_size
        self._ibuf0 = np.zeros(0, dtype=np.int64) if ibuf0 is None else ibuf0
        self.width_at_alarm = 0
        self.reset()

    def reset(self) -> None:
        self._s = self._s0.copy()
        self._buf = np.zeros(self._buf_size)
        self._ibuf = self._ibuf0.copy()

    def run(self, x: FloatArray) -> int:
        """Feed the contiguous float64 ``x`` up to and including the first alarm: its
        position, or ``-1`` if none (all of ``x`` consumed)."""
        return int(self._kernel(x, self._fp, self._ip, self._s, self._buf, self._ibuf))

    def state(self) -> dict[str, Any]:
        return {"s": encode_floats(self._s), "buf": encode_floats(self._buf),
                "ibuf": self._ibuf.tolist()}

    def load_state(self, state: dict[str, Any]) -> None:
        s, buf = decode_floats(state["s"]), decode_floats(state["buf"])
        ibuf = np.asarray(state["ibuf"], dtype=np.int64).reshape(-1)
        if (s.shape, buf.shape, ibuf.shape) != (self._s0.shape, (self._buf_size,),
                                                self._ibuf0.shape):
            raise ValueError(f"{self.kind}: engine state has the wrong sizes")
        self._s, self._buf, self._ibuf = s, buf, ibuf


def _none() -> IndexArray:
    return np.zeros(0, dtype=np.int64)


def from_river(det: Any) -> FastEngine | None:
    """The compiled port of the river detector ``det`` (read for its parameters, so
    river's defaults and checks apply), or ``None`` where there is none: ADWIN, and KSWIN
    started from a given window, with a window under twice ``stat_size`` (river's sample
    then fails) or over 10,000 values (scipy's p-values are then asymptotic)."""
    kind = type(det).__name__
    if kind == "DDM":
        fp = np.array([det.warm_start, det.drift_threshold], dtype=np.float64)
        return FastEngine(kind, kb.ddm, fp, _none(), kb.ddm_init(fp))
    if kind == "EDDM":
        fp = np.array([det.warm_start, det.beta, 0.5], dtype=np.float64)
        return FastEngine(kind, kb.eddm, fp, _none(), kb.eddm_init(fp))
    if kind == "HDDMA":
        c = det.drift_confidence
        fp = np.array([math.log(1.0 / c), math.log(2.0 / c), float(det.two_sided_test)])
        return FastEngine(kind, kb.hddm_a, fp, _none(), kb.hddm_a_init(fp))
    if kind == "HDDMW":
        lam = det.lambda_val
        fp = np.array([lam, lam * lam, (1 - lam) ** 2, math.log(1 / det.drift_confidence),
                       float(det.two_sided_test)])
        return FastEngine(kind, kb.hddm_w, fp, _none(), kb.hddm_w_init(fp))
    if kind == "FHDDM":
        short = det.short_window_size or 0
        fp = np.array([det._epsilon, det._epsilon_s if short else 0.0])
        ip = np.array([det.sliding_window_size, short], dtype=np.int64)
        return FastEngine(kind, kb.fhddm, fp, ip, kb.fhddm_init(fp), det.sliding_window_size)
    if kind == "PageHinkley":
        fp = np.array([det.min_instances, det.delta, det.threshold, det.alpha,
                       ks.MODES[det.mode]], dtype=np.float64)
        return FastEngine(kind, ks.pagehinkley, fp, _none(), ks.pagehinkley_init(fp))
    if kind == "KSWIN" and not det.window and 2 * det.stat_size <= det.window_size <= 10_000:
        ip, fp = ks.kswin_init(det.window_size, det.stat_size, det.seed, det.alpha)
        return FastEngine(kind, ks.kswin, fp, ip, np.zeros(2),
                          det.window_size + det.stat_size, ip[3:].copy())
    return None
