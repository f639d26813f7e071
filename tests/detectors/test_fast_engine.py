"""The compiled ports against river, their semantic reference: the same alarms, at the
same values, on several streams and parameters; exact JSON state round trips."""

from __future__ import annotations

import json
import random
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from river import drift
from scipy import stats

from detectors import kernels_stream
from detectors.fast_engine import FastEngine, decode_floats, encode_floats, from_river
from detectors.river_adapter import StreamDetector

F64 = np.ndarray


def _binary(seed: int) -> dict[str, F64]:
    rng = np.random.default_rng(seed)
    n = 6000
    rate = {
        "stationary": np.full(n, 0.1),
        "abrupt": np.r_[np.full(3000, 0.1), np.full(3000, 0.5)],
        "gradual": np.linspace(0.05, 0.6, n),
        "recurring": np.tile(np.r_[np.full(1500, 0.1), np.full(1500, 0.6)], 2),
    }
    return {k: (rng.random(n) < p).astype(np.float64) for k, p in rate.items()}


def _continuous(seed: int, n: int) -> dict[str, F64]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    half = n // 2
    return {
        "stationary": z,
        "mean shift": np.r_[z[:half], z[half:] + 1.0],
        "variance shift": np.r_[z[:half], 3 * z[half:]],
        "gradual": z + np.linspace(0.0, 2.0, n),
        "ties": np.round(np.r_[z[:half], z[half:] + 0.8]),
    }


def river_alarms(det: Any, x: F64) -> list[int]:
    out = []
    for i, v in enumerate(x.tolist()):
        det.update(v)
        if det.drift_detected:
            out.append(i)
    return out


def fast_alarms(engine: FastEngine, x: F64) -> list[int]:
    out, pos = [], 0
    while pos < len(x):
        k = engine.run(np.ascontiguousarray(x[pos:]))
        if k < 0:
            break
        out.append(pos + k)
        pos += k + 1
    return out


Factory = Callable[[], Any]
BINARY: list[tuple[str, Factory]] = [
    ("ddm", drift.binary.DDM),
    ("ddm tight", lambda: drift.binary.DDM(warm_start=100, drift_threshold=2.5)),
    ("eddm", drift.binary.EDDM),
    ("eddm driftloop", lambda: drift.binary.EDDM(warm_start=100, alpha=0.8, beta=0.75)),
    ("hddm_a", drift.binary.HDDMA),
    ("hddm_a two-sided", lambda: drift.binary.HDDMA(drift_confidence=0.01, two_sided_test=True)),
    ("hddm_w", drift.binary.HDDMW),
    ("hddm_w two-sided", lambda: drift.binary.HDDMW(lambda_val=0.1, two_sided_test=True)),
    ("fhddm", drift.binary.FHDDM),
    ("fhddm stacked", lambda: drift.binary.FHDDM(sliding_window_size=60, short_window_size=20)),
    ("pagehinkley", drift.PageHinkley),
]
CONTINUOUS: list[tuple[str, Factory, int]] = [
    ("pagehinkley", drift.PageHinkley, 6000),
    ("pagehinkley up", lambda: drift.PageHinkley(mode="up", threshold=20.0), 6000),
    ("pagehinkley down", lambda: drift.PageHinkley(mode="down", threshold=10.0), 6000),
    ("kswin", lambda: drift.KSWIN(alpha=0.005, seed=1), 800),
    ("kswin small", lambda: drift.KSWIN(alpha=0.2, window_size=40, stat_size=12, seed=3), 800),
]


@pytest.mark.parametrize(("name", "factory"), BINARY, ids=[b[0] for b in BINARY])
def test_binary_ports_alarm_where_river_does(name: str, factory: Factory) -> None:
    total = 0
    for seed in (0, 1):
        for kind, x in _binary(seed).items():
            for stream in (x, 1.0 - x):  # errors, and correctness (what FHDDM watches)
                expected = river_alarms(factory(), stream)
                engine = from_river(factory())
                assert engine is not None
                assert fast_alarms(engine, stream) == expected, (kind, seed)
                total += len(expected)
    assert total > 0


@pytest.mark.parametrize(("name", "factory", "n"), CONTINUOUS, ids=[c[0] for c in CONTINUOUS])
def test_continuous_ports_alarm_where_river_does(name: str, factory: Factory, n: int) -> None:
    total = 0
    for kind, x in _continuous(0, n).items():
        expected = river_alarms(factory(), x)
        engine = from_river(factory())
        assert engine is not None
        assert fast_alarms(engine, x) == expected, kind
        total += len(expected)
    assert total > 0


def test_adwin_and_unsupported_kswin_stay_on_river() -> None:
    assert from_river(drift.ADWIN()) is None
    assert from_river(drift.KSWIN(window=[0.0, 1.0])) is None
    assert from_river(drift.KSWIN(window_size=40, stat_size=30)) is None  # sample fails


@pytest.mark.parametrize(
    ("name", "factory"), [*BINARY, ("kswin", lambda: drift.KSWIN(alpha=0.01, seed=0))],
    ids=[*(b[0] for b in BINARY), "kswin"],
)
def test_state_round_trip_continues_exactly(name: str, factory: Factory) -> None:
    x = _binary(2)["recurring"] if name != "kswin" else _continuous(2, 2000)["mean shift"]
    whole = fast_alarms(from_river(factory()), x)  # type: ignore[arg-type]
    for cut in (777, len(x) // 2 + 13):
        first = from_river(factory())
        assert first is not None
        before = fast_alarms(first, x[:cut])
        restored = from_river(factory())
        assert restored is not None
        restored.load_state(json.loads(json.dumps(first.state())))
        after = [cut + i for i in fast_alarms(restored, x[cut:])]
        assert before + after == whole


def test_engine_state_sizes_are_checked() -> None:
    engine = from_river(drift.binary.FHDDM())
    assert engine is not None
    with pytest.raises(ValueError, match="sizes"):
        engine.load_state({"s": [0.0], "buf": [], "ibuf": []})


def test_nonfinite_floats_survive_json() -> None:
    x = np.array([1.5, np.inf, -np.inf, np.nan, 0.0])
    back = decode_floats(json.loads(json.dumps(encode_floats(x))))
    assert np.array_equal(back, x, equal_nan=True)


@pytest.mark.parametrize(("window", "stat"), [(100, 30), (2000, 30), (40, 4)])
def test_kswin_draws_the_positions_python_random_draws(window: int, stat: int) -> None:
    ip, _ = kernels_stream.kswin_init(window, stat, seed=7, alpha=0.01)
    pop = window - stat
    mt, shifts = ip[3:].copy(), np.array([kernels_stream._shift(m) for m in range(pop + 1)])
    ring = np.arange(window, dtype=np.float64)  # value = position
    out, scratch = np.empty(stat), np.empty(pop, dtype=np.int64)
    rng = random.Random(7)
    for start in range(0, 50):
        kernels_stream._sample(mt, pop, stat, bool(ip[2]), ring, 0, out, scratch, shifts)
        assert out.astype(int).tolist() == rng.sample(range(pop), stat), start


def test_kswin_ks_count_and_alarm_table_follow_scipy() -> None:
    rng = np.random.default_rng(0)
    n = 30
    le, lt = np.empty(n + 1, dtype=np.int64), np.empty(n + 1, dtype=np.int64)
    for t in range(300):
        a = np.round(rng.normal(size=n) * (1 + t % 3))  # ties within and across samples
        b = np.sort(np.round(rng.normal(0.3, 1.0, size=n)))
        h = kernels_stream._ks_count(a, b, le, lt)
        expected = stats.ks_2samp(a, b, method="asymp").statistic
        assert h / n == pytest.approx(expected, abs=1e-12)
    table = kernels_stream.kswin_alarm_table(n, 0.005)
    for h in range(n + 1):
        a = np.arange(n, dtype=np.float64)
        with warnings.catch_warnings():  # h = 1: exact fails, asymptotic (river ignores it)
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ks_2samp(a, a + h, method="auto")
        assert table[h] == float(res.pvalue <= 0.005 and res.statistic > 0.1)
    assert table[0] == 0 and table[n] == 1


@pytest.mark.parametrize("engine", ["DDM", "HDDMW", "FHDDM", "PageHinkley", "KSWIN"])
def test_adapter_signals_are_the_same_on_either_backend(engine: str) -> None:
    x = _binary(3)["abrupt"] if engine != "KSWIN" else _continuous(3, 1200)["mean shift"]
    params = {"seed": 0} if engine == "KSWIN" else {}
    x[::37] = np.nan
    signals = []
    for backend in ("fast", "river"):
        det = StreamDetector(engine, params, name="d", signal="error", invert=engine == "FHDDM",
                             backend=backend)  # type: ignore[arg-type]
        out = []
        for i in range(0, len(x), 100):
            det.update(x[i : i + 100], np.arange(i, min(i + 100, len(x))))
            out.append(det.check())
        signals.append(out)
    assert signals[0] == signals[1]
    assert any(s.drift for s in signals[0])
