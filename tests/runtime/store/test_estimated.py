"""The recorded calibrated confidence and the label-free estimate read from it: windows,
the band, the comparison with the realized accuracy on the same rows, the series."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.store import estimated as es
from runtime.store import served
from runtime.store.db import Database
from tests.runtime.store.test_served import _rows, _serve


def _confident(db: Database, seqs: list[int], conf: list[float], version: str) -> int:
    with db.begin() as conn:
        return es.record(conn, np.array(seqs, dtype=np.int64), np.array(conf), version)


def test_empty_state_has_no_estimate(db: Database) -> None:
    e = es.estimated(db)
    assert (e.value, e.rows, e.low) == (None, 0, None)
    assert es.versus(db, "v1") is None and es.estimated_series(db) == []
    assert es.estimated_summary(db, None, None) is None


def test_the_estimate_is_the_mean_confidence_with_its_band(db: Database) -> None:
    _rows(db, [None] * 10)
    assert _confident(db, list(range(1, 11)), [0.9] * 5 + [0.7] * 5, "v1") == 10
    assert _confident(db, [1, 2], [0.1, 0.1], "v2") == 0  # the first recorded stands
    e = es.estimated(db, error=0.02)
    assert e.value == pytest.approx(0.8) and e.rows == 10 and (e.first_row, e.last_row) == (1, 10)
    half = 1.96 * np.sqrt(5 * 0.09 + 5 * 0.21) / 10 + 0.02
    assert (e.low, e.high) == (pytest.approx(0.8 - half), 1.0)  # clipped at 1
    assert es.estimated(db, window=5).value == pytest.approx(0.7)  # the last five rows


def test_versus_compares_the_same_labelled_rows_and_flags_a_divergence(db: Database) -> None:
    _rows(db, [1] * 40 + [None] * 10 + [0] * 40)  # rows 51-90: labelled 0 (see below)
    seqs = list(range(1, 51))
    _confident(db, seqs, [0.9] * 50, "v1")
    _serve(db, seqs[:40], [1] * 36 + [0] * 4, "v1")  # 90 % right: as estimated
    got = es.versus(db, "v1")
    assert got is not None and got["diverged"] is False and abs(got["gap"]) < 1e-9
    assert got["estimated"]["rows"] == 40  # the unlabelled rows are not compared
    summary = es.estimated_summary(db, "v1", {"calibration": {"error": 0.01}})
    assert summary is not None and summary["rows"] == 50 and summary["calibration_error"] == 0.01
    # rows 51-90: as confident, but the label no longer follows the input
    _confident(db, list(range(51, 91)), [0.9] * 40, "v1")
    _serve(db, list(range(51, 91)), [1] * 40, "v1")
    got = es.versus(db, "v1", window=40)
    assert got is not None and got["diverged"] is True and got["gap"] == pytest.approx(0.9)
    assert served.realized(db, 40).value == 0.0


def test_the_series_follows_the_stream_and_its_versions(db: Database) -> None:
    _rows(db, [None] * 20)
    _confident(db, list(range(1, 11)), [0.9] * 10, "v1")
    _confident(db, list(range(11, 21)), [0.6] * 10, "v2")
    points = es.estimated_series(db, points=2)
    assert [(p.version, round(p.value, 6), p.rows) for p in points] == [
        ("v1", 0.9, 10), ("v2", 0.6, 10)]


def test_macro_f1_is_read_from_the_recorded_class_probabilities(db: Database) -> None:
    """Rows predicted 0 with p 0.8 and rows predicted 1 with p 0.6: per class, expected
    TP/FP/FN from those probabilities; the newest version's rows only."""
    assert es.macro_f1(db) is None
    probs = np.array([[0.8, 0.2]] * 6 + [[0.4, 0.6]] * 4)
    seqs = np.arange(1, 11, dtype=np.int64)
    with db.begin() as conn:
        assert es.record_probabilities(conn, seqs, probs, "v1") == 10
        assert es.record_probabilities(conn, seqs[:2], probs[:2] * 0, "v2") == 0  # kept
    tp0, fp0, fn0 = 6 * 0.8, 6 * 0.2, 4 * 0.4
    tp1, fp1, fn1 = 4 * 0.6, 4 * 0.4, 6 * 0.2
    want = (2 * tp0 / (2 * tp0 + fp0 + fn0) + 2 * tp1 / (2 * tp1 + fp1 + fn1)) / 2
    assert es.macro_f1(db, version="v1") == pytest.approx(want, abs=1e-6)
    assert es.expected_macro_f1(probs) == pytest.approx(want)
    assert es.macro_f1(db, window=4) == pytest.approx(es.expected_macro_f1(probs[6:]))
    assert es.macro_f1(db, version="v2") is None
    summary = es.estimated_summary(db, "v1", {})
    assert summary is not None and summary["macro_f1"] == pytest.approx(want, abs=1e-6)


def test_a_class_neither_predicted_nor_expected_is_left_out_of_macro_f1() -> None:
    """A third class no row is predicted as, with 0.01 of each row's mass (0.1 rows in
    all): absent, as the realized macro-F1 leaves it out; with 0.2 a row (2 rows) it is
    expected present and counts, with an F1 of 0."""
    two = np.array([[0.99, 0.0], [0.0, 0.99]] * 5)
    stray = np.hstack([two, np.full((10, 1), 0.01)])
    assert es.expected_macro_f1(stray) == pytest.approx(
        es.expected_macro_f1(two), abs=1e-9)
    assert es.expected_macro_f1(stray) > 0.98
    heavy = np.hstack([two * (0.8 / 0.99), np.full((10, 1), 0.2)])
    assert es.expected_macro_f1(heavy) < 0.7
