"""The checks every registered detector passes, each with its default config.

Row counts are per detector (see ``CASES``): false-alarm horizons differ by design (DDM
is known to alarm on long stationary streams: in 10,000 rows of 10 % errors, half of 10
seeds alarm once); KSWIN's are short (its defaults suit short windows).
All streams come from seed 0 (``streams`` explains which input each detector
gets).
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from detectors.base import Detector, DriftSignal, ReferenceDetector
from detectors.registry import DETECTORS, build
from tests.detectors.streams import F64, FEATURES, feed, first_drift, stream


class Case:
    def __init__(self, streams: tuple[str, ...], quiet: int, warmup: int, within: int) -> None:
        self.streams = streams  # input kinds
        self.quiet = quiet  # stationary rows without an alarm
        self.warmup = warmup  # stationary rows before the shift
        self.within = within  # rows after the shift by which it is detected


CASES = {
    "adwin": Case(("bernoulli", "normal"), quiet=10_000, warmup=2_000, within=200),
    "pagehinkley": Case(("bernoulli",), quiet=5_000, warmup=2_000, within=300),
    "kswin": Case(("normal",), quiet=1_500, warmup=500, within=100),
    "ddm": Case(("bernoulli",), quiet=2_000, warmup=1_000, within=400),
    "eddm": Case(("bernoulli",), quiet=5_000, warmup=2_000, within=800),
    "hddm_a": Case(("bernoulli",), quiet=10_000, warmup=2_000, within=200),
    "hddm_w": Case(("bernoulli",), quiet=10_000, warmup=2_000, within=200),
    "fhddm": Case(("bernoulli",), quiet=10_000, warmup=2_000, within=200),
    "ks": Case(("normal",), quiet=5_000, warmup=3_000, within=200),
    "cvm": Case(("normal",), quiet=5_000, warmup=3_000, within=200),
    "chi2": Case(("normal",), quiet=5_000, warmup=3_000, within=200),
    "psi": Case(("normal",), quiet=5_000, warmup=3_000, within=200),
    "wasserstein": Case(("normal",), quiet=5_000, warmup=3_000, within=200),
    "jensenshannon": Case(("normal",), quiet=5_000, warmup=3_000, within=200),
    "cusum": Case(("bernoulli", "normal"), quiet=10_000, warmup=2_000, within=200),
    "mmd": Case(("normal",), quiet=3_000, warmup=2_500, within=300),
    "missing": Case(("missing",), quiet=5_000, warmup=3_000, within=200),
    "unseen": Case(("categories",), quiet=5_000, warmup=3_000, within=200),
    "classifier": Case(("normal",), quiet=4_000, warmup=2_500, within=500),
}

# the two multivariate tests are heavy (a kernel matrix or a model fit per test): smaller
# references keep the suite fast; everything else runs with its defaults
OVERRIDES: dict[str, dict[str, object]] = {
    "mmd": {"max_reference": 500, "permutations": 100, "device": "cpu"},
    "classifier": {"max_reference": 500, "max_iter": 10, "folds": 3},
}

PARAMS = [(kind, s) for kind, case in CASES.items() for s in case.streams]


def make(kind: str) -> Detector:
    det = build(DETECTORS[kind].Config(**OVERRIDES.get(kind, {})), FEATURES)  # type: ignore[arg-type]
    assert isinstance(det, Detector)
    return det


def data(det: Detector, kind: str, n: int, shifted: bool, rng: np.random.Generator) -> F64:
    width = len(FEATURES) if isinstance(det, ReferenceDetector) else 0
    return stream(kind, n, shifted, rng, width)


def shift_stream(kind: str, s: str) -> tuple[Detector, F64, int]:
    """A detector, its stream with an abrupt shift, and the shift's row."""
    det, case, rng = make(kind), CASES[kind], np.random.default_rng(0)
    before = data(det, s, case.warmup, False, rng)
    after = data(det, s, 2 * case.within, True, rng)
    return det, np.concatenate([before, after]), case.warmup


def test_every_registered_detector_has_a_case() -> None:
    assert set(CASES) == set(DETECTORS)


@pytest.mark.parametrize(("kind", "s"), PARAMS)
def test_no_alarm_on_stationary_noise(kind: str, s: str) -> None:
    det = make(kind)
    signals = feed(det, data(det, s, CASES[kind].quiet, False, np.random.default_rng(0)))
    assert first_drift(signals) is None
    assert signals[-1].status == "ok"
    assert all(x.detector == det.name and x.signal == det.signal for x in signals)


@pytest.mark.parametrize(("kind", "s"), PARAMS)
def test_abrupt_shift_detected(kind: str, s: str) -> None:
    det, rows, at = shift_stream(kind, s)
    alarm = first_drift(feed(det, rows))
    assert alarm is not None and alarm.index is not None and alarm.onset is not None
    assert at <= alarm.index <= at + CASES[kind].within
    assert alarm.window is not None and alarm.window[0] <= alarm.onset <= alarm.index
    if isinstance(det, ReferenceDetector):  # onset: the first row of the current window
        assert alarm.onset == alarm.window[0] >= alarm.index - 500
    else:  # onset: the change point estimated on the values since the last alarm
        assert abs(alarm.onset - at) <= 50
    json.dumps(alarm.to_dict())


@pytest.mark.parametrize(("kind", "s"), PARAMS)
@pytest.mark.parametrize("cut", [0.5, 1.1])  # as a fraction of the warm-up
def test_state_restored_mid_stream_gives_same_signals(kind: str, s: str, cut: float) -> None:
    det, rows, at = shift_stream(kind, s)
    split = int(at * cut) // 100 * 100 + 50  # mid-batch, so a latch may be pending
    det.update(rows[:split], np.arange(split))
    saved = json.loads(json.dumps(det.state()))
    assert saved["version"] == 1
    restored = make(kind)
    restored.load_state(saved)
    tail = rows[split:]
    expected, got = feed(det, tail, start=split), feed(restored, tail, start=split)
    assert got == expected
    assert any(x.drift for x in got) or cut < 1


@pytest.mark.parametrize(("kind", "s"), PARAMS)
def test_reset_clears_latch(kind: str, s: str) -> None:
    det, rows, _ = shift_stream(kind, s)
    det.update(rows)
    det.reset()
    assert det.check().status == "not_enough_data"
    det.update(rows)  # works again after the reset
    assert det.check().drift


@pytest.mark.parametrize(("kind", "s"), PARAMS)
def test_nonfinite_values_are_counted_and_excluded(kind: str, s: str) -> None:
    det, rows, at = shift_stream(kind, s)
    dirty = rows.copy()
    bad = np.arange(5, len(rows), 97)
    values = np.where(bad % 2 == 0, np.nan, np.inf)
    dirty[bad] = values[:, None] if dirty.ndim == 2 else values
    signals = feed(det, dirty)
    alarm = first_drift(signals)
    assert alarm is not None and alarm.index is not None and alarm.index >= at
    nonfinite = signals[-1].details["nonfinite"]
    if isinstance(det, ReferenceDetector):  # per feature, each cell excluded on its own
        # the stream's own missing values (the missing-value detector's input) count too
        counts = (~np.isfinite(dirty)).sum(axis=0).tolist()
        assert nonfinite == dict(zip(FEATURES, counts, strict=True))
        return
    assert nonfinite == len(bad)
    clean = make(kind)  # the same stream without the bad rows gives the same signals
    keep = np.setdiff1d(np.arange(len(rows)), bad)
    expected = [
        _without_counts(x) for x in feed_at(clean, rows[keep], keep, batch_ends=len(signals))
    ]
    assert [_without_counts(x) for x in signals] == expected


def feed_at(det: Detector, values: F64, index: np.ndarray, batch_ends: int) -> list[DriftSignal]:
    """Feed in the same 100-row batches (by row index) as ``feed`` did."""
    out = []
    for b in range(batch_ends):
        sel = (index >= 100 * b) & (index < 100 * (b + 1))
        det.update(values[sel], index[sel])
        out.append(det.check())
    return out


def _without_counts(sig: DriftSignal) -> DriftSignal:
    details = {k: v for k, v in sig.details.items() if k != "nonfinite"}
    return replace(sig, details=details)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_state_version_is_checked(kind: str) -> None:
    det = make(kind)
    state = det.state()
    with pytest.raises(ValueError, match="version"):
        det.load_state({**state, "version": 99})


def _rows(det: Detector, values: F64) -> F64:
    """``values`` as this detector's input: 1-D, or repeated across the features."""
    if isinstance(det, ReferenceDetector):
        return np.repeat(values[:, None], len(FEATURES), axis=1)
    return values


@pytest.mark.parametrize("kind", sorted(CASES))
def test_empty_tiny_and_all_nan_input_is_not_enough_data(kind: str) -> None:
    det = make(kind)
    det.update(_rows(det, np.zeros(0)), np.zeros(0, dtype=np.int64))
    assert det.check().status == "not_enough_data"
    det.update(_rows(det, np.array([0.0, 1.0, 0.0, 0.0, 1.0])))
    assert det.check().status == "not_enough_data"
    det.update(_rows(det, np.full(300, np.nan)))
    sig = det.check()
    assert sig.status == "not_enough_data"
    nonfinite = sig.details["nonfinite"]
    assert nonfinite == (dict.fromkeys(FEATURES, 300) if isinstance(nonfinite, dict) else 300)


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_constant_input_never_alarms(kind: str, value: float) -> None:
    det = make(kind)
    signals = feed(det, _rows(det, np.full(CASES[kind].warmup + 1000, value)))
    assert first_drift(signals) is None
    if kind in ("missing", "unseen"):  # a share of flagged values needs no spread
        assert signals[-1].status == "ok"
    elif isinstance(det, ReferenceDetector) or kind == "cusum":  # no spread: nothing to test
        assert {s.status for s in signals} == {"not_enough_data"}
    else:  # an error detector on a constant error stream: a steady model
        assert signals[-1].status == "ok"


def test_a_nan_statistic_is_never_read_as_no_drift() -> None:
    from detectors import ks
    from detectors.perfeature import build_windowed

    class NanTest(ks.KSTest):
        def numeric(self, ref: F64, cur: F64, edges: F64) -> tuple[float, float]:
            return float("nan"), float("nan")

    det = build_windowed(ks.Config(), "ks", FEATURES, NanTest(), "asymptotic")
    det.update(np.random.default_rng(0).standard_normal((2500, len(FEATURES))))
    sig = det.check()
    assert sig.status == "not_enough_data" and sig.statistic is None
    assert {r["status"] for r in sig.details["features"]} == {"nan_statistic"}


def test_cusum_state_with_an_infinite_threshold_is_strict_json() -> None:
    """A rare 0/1 error (1%) leaves the mean-down threshold at inf (no value of the
    reference can go lower); the runtime saves detector state as strict JSON, so inf
    must round-trip as null and restore to the same signals."""
    rng = np.random.default_rng(0)
    errors = (rng.random(3000) < 0.01).astype(np.float64)
    det = build(DETECTORS["cusum"].Config(), features=list(FEATURES))
    det.update(errors, np.arange(3000))
    assert None in det.state()["h"]  # an infinite threshold, the case at hand
    saved = json.loads(json.dumps(det.state(), allow_nan=False))
    restored = build(DETECTORS["cusum"].Config(), features=list(FEATURES))
    restored.load_state(saved)
    tail = (rng.random(1000) < 0.3).astype(np.float64)
    assert feed(restored, tail, start=3000) == feed(det, tail, start=3000)
