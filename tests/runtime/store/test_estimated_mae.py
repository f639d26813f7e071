"""A regression champion's expected MAE: recorded per monitored row from its loss model,
read over a window, set beside the realized MAE on the same labelled rows."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.store import estimated_mae as em
from runtime.store.db import Database
from tests.runtime.store.test_served import _rows, _serve


def _expect(db: Database, seqs: list[int], values: list[float], version: str) -> int:
    with db.begin() as conn:
        return em.record(conn, np.array(seqs, dtype=np.int64), np.array(values), version)


def test_no_champion_or_no_row_has_no_estimate(db: Database) -> None:
    assert em.estimated_mae(db, None) is None
    got = em.estimated_mae(db, "v1")
    assert got is not None and got["value"] is None and got["versus_realized"] is None


def test_the_expected_mae_and_the_realized_on_the_same_labelled_rows(db: Database) -> None:
    _rows(db, [10, 10, 10, 10, None, None])  # rows 1-4 labelled 10, rows 5-6 not
    assert _expect(db, [1, 2, 3, 4, 5, 6], [1.0, 1.0, 3.0, 3.0, 5.0, float("nan")], "v1") == 5
    assert _expect(db, [1], [9.0], "v2") == 0  # the first recorded stands
    _serve(db, [1, 2, 3, 4, 5, 6], [11.0, 9.0, 12.0, 8.0, 0.0, 0.0], "v1")
    got = em.estimated_mae(db, "v1")
    assert got is not None and got["value"] == pytest.approx(13 / 5) and got["rows"] == 5
    vs = got["versus_realized"]
    assert isinstance(vs, dict) and vs["rows"] == 4
    assert vs["estimated"] == pytest.approx(2.0) and vs["realized"]["value"] == pytest.approx(1.5)
    assert vs["gap"] == pytest.approx(0.5)
    assert em.estimated_mae(db, "v1", window=1)["value"] == pytest.approx(5.0)  # type: ignore[index]


def test_the_band_is_the_spread_of_a_mean_of_absolute_errors_and_flags_a_divergence(
    db: Database,
) -> None:
    n = 400
    _rows(db, [10] * n)
    _expect(db, list(range(1, n + 1)), [1.0] * n, "v1")
    _serve(db, list(range(1, n + 1)), [11.0] * n, "v1")  # realized 1.0: as expected
    got = em.estimated_mae(db, "v1")
    assert got is not None
    half = em.BAND_Z * np.sqrt(em.ABS_ERROR_SPREAD * n) / n  # about 0.074
    assert (got["low"], got["high"]) == (pytest.approx(1 - half), pytest.approx(1 + half))
    assert got["versus_realized"]["diverged"] is False  # type: ignore[index]


def test_a_realized_mae_far_outside_the_band_is_flagged(db: Database) -> None:
    n = 400
    _rows(db, [10] * n)
    _expect(db, list(range(1, n + 1)), [1.0] * n, "v1")
    _serve(db, list(range(1, n + 1)), [13.0] * n, "v1")  # realized 3.0 against 1.0 expected
    vs = em.estimated_mae(db, "v1")["versus_realized"]  # type: ignore[index]
    assert vs["diverged"] is True and vs["high"] < 3.0
