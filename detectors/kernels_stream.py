"""Exact compiled ports of river's Page-Hinkley and KSWIN (river 0.26.1), for
:mod:`detectors.fast_engine`; same conventions as :mod:`detectors.kernels_binary`.

KSWIN draws its sample of the older window with Python's ``random.Random(seed).sample``
and tests it with ``scipy.stats.ks_2samp(..., method="auto")``. The port runs CPython's
Mersenne Twister (``genrand_uint32``, started from ``random.Random(seed).getstate()``)
and ``sample``'s two algorithms, so it draws the same positions. Both samples have
``stat_size`` values, so the KS statistic is ``h / stat_size`` for an integer ``h`` and
scipy's exact p-value depends on ``h`` only: which ``h`` alarm (``p <= alpha`` and
statistic ``> 0.1``) is tabulated once by scipy itself (:func:`kswin_alarm_table`).
"""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
from scipy import stats

from detectors.jit import njit
from detectors.ring import FloatArray, IndexArray

# ---- Page-Hinkley: s = [n, mean, sum_increase, sum_decrease, min_increase, max_decrease];
# fp = [min_instances, delta, threshold, alpha, mode (0 up, 1 down, 2 both)]

MODES = {"up": 0.0, "down": 1.0, "both": 2.0}


def pagehinkley_init(fp: FloatArray) -> FloatArray:
    return np.array([0.0, 0.0, 0.0, 0.0, np.inf, -1.0])


@njit
def pagehinkley(x: FloatArray, fp: FloatArray, ip: IndexArray, s: FloatArray,
                buf: FloatArray, ibuf: IndexArray) -> int:
    least, delta, threshold, alpha, mode = fp[0], fp[1], fp[2], fp[3], fp[4]
    n, mean, inc, dec, min_inc, max_dec = s[0], s[1], s[2], s[3], s[4], s[5]
    hit = -1
    for t in range(len(x)):
        n += 1.0
        mean += (1.0 / n) * (x[t] - mean)
        dev = x[t] - mean
        inc = alpha * inc + dev - delta
        dec = alpha * dec + dev + delta
        if inc < min_inc:
            min_inc = inc
        if dec > max_dec:
            max_dec = dec
        if n >= least:
            up = inc - min_inc > threshold
            down = max_dec - dec > threshold
            if (up and mode != 1) or (down and mode != 0):
                n, mean, inc, dec, min_inc, max_dec = 0.0, 0.0, 0.0, 0.0, np.inf, -1.0
                hit = t
                break
    s[0], s[1], s[2], s[3], s[4], s[5] = n, mean, inc, dec, min_inc, max_dec
    return hit


# ---- KSWIN: buf = [window ring (window_size), recent values sorted (stat_size)];
# s = [start, length]; ibuf = Mersenne Twister state (624 words, then the position);
# ip = [window_size, stat_size, pool (sample's list algorithm) or set, seeded MT state
# (625)]; fp = alarm table (stat_size + 1)

_N, _M = 624, 397


def kswin_init(
    window_size: int, stat_size: int, seed: int, alpha: float
) -> tuple[IndexArray, FloatArray]:
    """``ip`` and ``fp`` of a KSWIN kernel."""
    pop, k = window_size - stat_size, stat_size
    setsize = 21 + (4 ** math.ceil(math.log(k * 3, 4)) if k > 5 else 0)  # random.sample's
    mt = random.Random(seed).getstate()[1]
    ip = np.array([window_size, stat_size, int(pop <= setsize), *mt], dtype=np.int64)
    return ip, kswin_alarm_table(stat_size, alpha)


def kswin_alarm_table(stat_size: int, alpha: float) -> FloatArray:
    """1.0 where a KS statistic of ``h / stat_size`` alarms in river's KSWIN, for
    ``h = 0 .. stat_size``: scipy's own p-value of two samples that far apart."""
    a = np.arange(stat_size, dtype=np.float64)
    out = np.zeros(stat_size + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # as river does
        for h in range(1, stat_size + 1):
            st, p = stats.ks_2samp(a, a + h, method="auto")
            out[h] = float(p <= alpha and st > 0.1)
    return out


@njit
def _twist(mt: IndexArray) -> None:
    for kk in range(_N - _M):
        y = (mt[kk] & 0x80000000) | (mt[kk + 1] & 0x7FFFFFFF)
        mt[kk] = mt[kk + _M] ^ (y >> 1) ^ ((y & 1) * 0x9908B0DF)
    for kk in range(_N - _M, _N - 1):
        y = (mt[kk] & 0x80000000) | (mt[kk + 1] & 0x7FFFFFFF)
        mt[kk] = mt[kk + _M - _N] ^ (y >> 1) ^ ((y & 1) * 0x9908B0DF)
    y = (mt[_N - 1] & 0x80000000) | (mt[0] & 0x7FFFFFFF)
    mt[_N - 1] = mt[_M - 1] ^ (y >> 1) ^ ((y & 1) * 0x9908B0DF)
    mt[_N] = 0


@njit
def _shift(n: int) -> int:
    k = 0
    while (n >> k) > 0:
        k += 1
    return 32 - k


@njit
def _sample(mt: IndexArray, pop: int, k: int, pool: bool, ring: FloatArray, start: int,
            out: FloatArray, scratch: IndexArray, shifts: IndexArray) -> None:
    """The values at the positions ``random.sample(range(pop), k)`` draws, in its order;
    ``shifts[m]`` is ``_shift(m)``. Each position is CPython's ``_randbelow(n)``: 32-bit
    words of the twister (``genrand_uint32``: next word, tempered) shifted down to
    ``n.bit_length()`` bits, drawn again while not below ``n``."""
    w = len(ring)
    for i in range(pop):
        scratch[i] = i if pool else 0
    at = mt[_N]
    for i in range(k):
        n = pop - i if pool else pop
        shift = shifts[n]
        while True:
            if at >= _N:
                _twist(mt)
                at = 0
            y = mt[at]
            at += 1
            y ^= y >> 11
            y ^= (y << 7) & 0x9D2C5680
            y ^= (y << 15) & 0xEFC60000
            r = (y ^ (y >> 18)) >> shift
            if r < n and (pool or scratch[r] == 0):  # set: redraw a position already taken
                break
        if pool:
            pos = scratch[r]
            scratch[r] = scratch[n - 1]
        else:
            pos = r
            scratch[r] = 1
        pos += start
        out[i] = ring[pos - w * (pos >= w)]  # (start + pos) % w without a division
    mt[_N] = at


@njit
def _rank(r: FloatArray, v: float) -> tuple[int, int]:
    """``(#{r < v}, #{r <= v})`` in the sorted ``r``: a linear count, which the compiler
    vectorises (for a few dozen values, faster than a binary search's unpredictable
    branches), then the run of values equal to ``v`` (usually none)."""
    below = 0
    for j in range(len(r)):
        below += r[j] < v
    at_most = below
    while at_most < len(r) and r[at_most] == v:
        at_most += 1
    return below, at_most


@njit
def _ks_count(sample: FloatArray, r: FloatArray, le: IndexArray, lt: IndexArray) -> int:
    """``max |#{sample <= v} - #{r <= v}|`` over the values ``v`` of both (the KS
    distance times the sample size); ``r`` sorted, ``le``/``lt`` scratch of ``len(r) + 1``.

    ``|F_sample - F_r|`` is monotone between consecutive points of ``r``, so its maximum
    is at a point of ``r`` or just before one: there ``#{sample <= r_j}`` counts the
    values whose ``#{r < v}`` is at most ``j``, and ``#{sample < r_j}`` those whose
    ``#{r <= v}`` is."""
    n = len(r)
    le[:] = 0
    lt[:] = 0
    for v in sample:
        below, at_most = _rank(r, v)
        le[below] += 1
        lt[at_most] += 1
    best = 0
    a_le = a_lt = 0
    first = 0  # first index of r_j's run of ties: #{r < r_j}
    for j in range(n):
        if j > 0 and r[j - 1] < r[j]:
            first = j
        a_le += le[j]
        a_lt += lt[j]
        last = j + 1  # #{r <= r_j}, for the last of a run of ties
        if j + 1 < n and r[j + 1] == r[j]:
            continue
        best = max(best, abs(a_le - last), abs(a_lt - first))
    return best


@njit
def _replace_sorted(r: FloatArray, m: int, new: float) -> None:
    """Put ``new`` in place of ``r[m]`` and move it until ``r`` (sorted but for ``r[m]``)
    is sorted again."""
    while m < len(r) - 1 and r[m + 1] < new:
        r[m] = r[m + 1]
        m += 1
    while m > 0 and r[m - 1] > new:
        r[m] = r[m - 1]
        m -= 1
    r[m] = new


@njit
def kswin(x: FloatArray, fp: FloatArray, ip: IndexArray, s: FloatArray, buf: FloatArray,
          ibuf: IndexArray) -> int:
    w, k, pool = ip[0], ip[1], ip[2] > 0
    pop = w - k
    ring, recent = buf[:w], buf[w:]
    start, length = int(s[0]), int(s[1])
    sample = np.empty(k)
    scratch = np.empty(pop, dtype=np.int64)
    le = np.empty(k + 1, dtype=np.int64)
    lt = np.empty(k + 1, dtype=np.int64)
    shifts = np.empty(pop + 1, dtype=np.int64)
    for m in range(pop + 1):
        shifts[m] = _shift(m)
    hit = -1
    for t in range(len(x)):
        if length < w:
            ring[(start + length) % w] = x[t]
            length += 1
            if length <= pop:
                continue
            _replace_sorted(recent[: length - pop], length - pop - 1, x[t])  # start is 0
            if length < w:
                continue
        else:
            at = start + pop
            leaving = ring[at - w * (at >= w)]  # moves from the recent to the older part
            ring[start] = x[t]
            start = start + 1 if start + 1 < w else 0
            m = 0
            while recent[m] != leaving:
                m += 1
            _replace_sorted(recent, m, x[t])
        _sample(ibuf, pop, k, pool, ring, start, sample, scratch, shifts)
        if fp[_ks_count(sample, recent, le, lt)] > 0:
            start, length = 0, 0
            ibuf[:] = ip[3:]
            hit = t
            break
    s[0], s[1] = start, length
    return hit
