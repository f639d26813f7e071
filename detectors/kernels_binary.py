"""Exact compiled ports of river's 0/1-stream drift detectors: DDM, EDDM, HDDM-A, HDDM-W
and FHDDM (river 0.26.1, ``river.drift.binary``), for :mod:`detectors.fast_engine`.

Each kernel runs river's ``update`` over ``x`` with the same floating-point operations in
the same order, so it alarms at the same values (``tests/detectors/test_fast_engine.py``
checks alarm-for-alarm equality against river on several streams). They share one
signature, ``kernel(x, fp, ip, s, buf, ibuf) -> int``: float and integer parameters, then
the mutable state (scalars ``s``, float buffer ``buf``, integer buffer ``ibuf``). A kernel
consumes ``x`` up to and including the first alarm and returns its position, having reset
its state as river does on the update after an alarm; ``-1`` when ``x`` raised none.
Constants that river recomputes per value (``log(1 / confidence)``) come precomputed in
``fp`` by the same Python expression, so they are bit-identical.
"""

from __future__ import annotations

import math

import numpy as np

from detectors.jit import njit
from detectors.ring import FloatArray, IndexArray

# ---- DDM: s = [n, mean, p_min, s_min, ps_min]; fp = [warm_start, drift_threshold]


def ddm_init(fp: FloatArray) -> FloatArray:
    return np.array([0.0, 0.0, 0.0, 0.0, np.inf])


@njit
def ddm(x: FloatArray, fp: FloatArray, ip: IndexArray, s: FloatArray, buf: FloatArray,
        ibuf: IndexArray) -> int:
    warm, level = fp[0], fp[1]
    n, mean, p_min, s_min, ps_min = s[0], s[1], s[2], s[3], s[4]
    hit = -1
    for t in range(len(x)):
        n += 1.0
        mean += (1.0 / n) * (x[t] - mean)
        s_i = math.sqrt(mean * (1 - mean) / n)
        if n > warm:
            if mean + s_i <= ps_min:
                p_min = mean
                s_min = s_i
                ps_min = p_min + s_min
            if mean + s_i > p_min + level * s_min:
                n, mean, p_min, s_min, ps_min = 0.0, 0.0, 0.0, 0.0, np.inf
                hit = t
                break
    s[0], s[1], s[2], s[3], s[4] = n, mean, p_min, s_min, ps_min
    return hit


# ---- EDDM: s = [n, last_error, n_errors, var_n, var_mean, var_S, p2s_max];
# fp = [warm_start, beta, 0.5] (the exponent as data: LLVM rewrites a constant
# ``pow(v, 0.5)`` as ``sqrt(v)``, which differs from libm's ``pow`` that river's ``** 0.5``
# calls in the last bit about once in 1,000 values)


def eddm_init(fp: FloatArray) -> FloatArray:
    return np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0])


@njit
def eddm(x: FloatArray, fp: FloatArray, ip: IndexArray, s: FloatArray, buf: FloatArray,
         ibuf: IndexArray) -> int:
    warm, beta = fp[0], fp[1]
    n, last, errors = int(s[0]), int(s[1]), int(s[2])
    vn, vmean, vs, top = s[3], s[4], s[5], s[6]
    hit = -1
    for t in range(len(x)):
        n += 1
        if x[t] == 1:
            errors += 1
            d = float(n - last)
            old = vmean
            vn += 1.0
            vmean += (1.0 / vn) * (d - vmean)
            vs += 1.0 * (d - old) * (d - vmean)
            if n > warm:
                var = vs / (vn - 1) if vn > 1 else 0.0
                p2s = vmean + 2 * math.pow(var, fp[2])
                if p2s > top:
                    top = p2s
                elif errors > warm and p2s / top < beta:
                    n, last, errors, vn, vmean, vs, top = 0, 0, 0, 0.0, 0.0, 0.0, -1.0
                    hit = t
                    break
            last = n
    s[0], s[1], s[2], s[3], s[4], s[5], s[6] = n, last, errors, vn, vmean, vs, top
    return hit


# ---- HDDM-A: s = [z_n, z_mean, min_n, min_mean, max_n, max_mean];
# fp = [log(1 / drift_confidence), log(2 / drift_confidence), two_sided]


def hddm_a_init(fp: FloatArray) -> FloatArray:
    return np.zeros(6)


@njit
def _bound(n: float, log_c: float) -> float:
    return math.sqrt(1.0 / (2 * n) * log_c)


@njit
def _apart(n_big: float, n_small: float, log2_c: float) -> float:
    m = (n_big - n_small) / n_small * (1.0 / n_big)
    return math.sqrt(m / 2 * log2_c)


@njit
def hddm_a(x: FloatArray, fp: FloatArray, ip: IndexArray, s: FloatArray, buf: FloatArray,
           ibuf: IndexArray) -> int:
    log_c, log2_c, two_sided = fp[0], fp[1], fp[2] > 0
    zn, zm, an, am, bn, bm = s[0], s[1], s[2], s[3], s[4], s[5]
    hit = -1
    for t in range(len(x)):
        zn += 1.0
        zm += (1.0 / zn) * (x[t] - zm)
        if an == 0:
            an, am = zn, zm
        if bn == 0:
            bn, bm = zn, zm
        eps_z = _bound(zn, log_c)
        if am + _bound(an, log_c) >= zm + eps_z:
            an, am = zn, zm
        if bm - _bound(bn, log_c) <= zm - eps_z:
            bn, bm = zn, zm
        drift = an != zn and zm - am >= _apart(zn, an, log2_c)
        if two_sided and not drift:
            drift = bn != zn and bm - zm >= _apart(zn, bn, log2_c)
        if drift:
            zn, zm, an, am, bn, bm = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
            hit = t
            break
    s[0], s[1], s[2], s[3], s[4], s[5] = zn, zm, an, am, bn, bm
    return hit


# ---- HDDM-W: five samples (total, s1_incr, s2_incr, s1_decr, s2_decr), each
# [ewma, started, ibc] at s[3 k : 3 k + 3], then s[15] = incr_cut, s[16] = decr_cut;
# fp = [lambda, lambda ** 2, (1 - lambda) ** 2, log(1 / drift_confidence), two_sided]


def hddm_w_init(fp: FloatArray) -> FloatArray:
    return np.array([0.0, 0.0, 1.0] * 5 + [np.inf, -np.inf])


@njit
def _sample_update(s: FloatArray, k: int, x: float, fp: FloatArray) -> None:
    lam = fp[0]
    s[3 * k] = x if s[3 * k + 1] == 0 else lam * x + (1.0 - lam) * s[3 * k]
    s[3 * k + 1] = 1.0
    s[3 * k + 2] = fp[1] + fp[2] * s[3 * k + 2]


@njit
def _changed(s: FloatArray, a: int, b: int, log_c: float) -> bool:
    if s[3 * a + 1] == 0 or s[3 * b + 1] == 0:
        return False
    bound = math.sqrt((s[3 * a + 2] + s[3 * b + 2]) * log_c / 2)
    return bool(s[3 * b] - s[3 * a] > bound)


@njit
def _cut(s: FloatArray, first: int, second: int, fp: FloatArray, x: float, up: bool) -> None:
    """river's ``_update_incr_stats`` (``up``) or ``_update_decr_stats``."""
    eps = math.sqrt(s[2] * fp[3] / 2)
    cut = 15 if up else 16
    moved = s[0] + eps < s[cut] if up else s[0] - eps > s[cut]
    if moved:
        s[cut] = s[0] + eps if up else s[0] - eps
        s[3 * first], s[3 * first + 1], s[3 * first + 2] = s[0], s[1], s[2]
        s[3 * second], s[3 * second + 1], s[3 * second + 2] = 0.0, 0.0, 1.0
    else:
        _sample_update(s, second, x, fp)


@njit
def hddm_w(x: FloatArray, fp: FloatArray, ip: IndexArray, s: FloatArray, buf: FloatArray,
           ibuf: IndexArray) -> int:
    log_c, two_sided = fp[3], fp[4] > 0
    for t in range(len(x)):
        _sample_update(s, 0, x[t], fp)
        _cut(s, 1, 2, fp, x[t], True)
        drift = _changed(s, 1, 2, log_c)
        _cut(s, 3, 4, fp, x[t], False)
        if two_sided and not drift:
            drift = _changed(s, 4, 3, log_c)
        if drift:
            for k in range(5):
                s[3 * k], s[3 * k + 1], s[3 * k + 2] = 0.0, 0.0, 1.0
            s[15], s[16] = np.inf, -np.inf
            return t
    return -1


# ---- FHDDM: buf = the sliding window (a ring); s = [start, length, n_one, u_max,
# u_short_max]; ip = [window, short window or 0]; fp = [epsilon, epsilon_short]. The short
# window's mean adds left to right, as CPython 3.11's sum() does (3.12's compensated sum
# may differ in the last bit)


def fhddm_init(fp: FloatArray) -> FloatArray:
    return np.zeros(5)


@njit
def fhddm(x: FloatArray, fp: FloatArray, ip: IndexArray, s: FloatArray, buf: FloatArray,
          ibuf: IndexArray) -> int:
    w, short = ip[0], ip[1]
    start, length = int(s[0]), int(s[1])
    n_one, u_max, us_max = s[2], s[3], s[4]
    hit = -1
    for t in range(len(x)):
        buf[(start + length) % w] = x[t]
        length += 1
        n_one += x[t]
        if length == w:
            u = n_one / w
            u_max = u if u_max < u else u_max
            drift = False
            if short > 0:
                total = 0.0
                for i in range(w - short, w):
                    total += buf[(start + i) % w]
                u_s = total / short
                us_max = u_s if us_max < u_s else us_max
                drift = us_max - u_s > fp[1]
            drift = u_max - u > fp[0] or drift
            n_one -= buf[start]
            start = (start + 1) % w
            length -= 1
            if drift:
                start, length, n_one, u_max, us_max = 0, 0, 0.0, 0.0, 0.0
                hit = t
                break
    s[0], s[1], s[2], s[3], s[4] = start, length, n_one, u_max, us_max
    return hit
