from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.monitoring.drift_reports import write_feature_drift_report


def test_report_is_written_under_reports(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(size=(300, 2)), rng.normal(size=(200, 2)) + np.array([0.0, 1.0])
    path = write_feature_drift_report(tmp_path, ref, cur, ["a", "b"], "ks", "event 17/ks")
    assert path == tmp_path / "reports" / "drift-event-17-ks.html"
    html = path.read_text(encoding="utf-8")
    assert "<html" in html.lower() and len(html) > 1000
    assert not list((tmp_path / "reports").glob("*.tmp"))


def test_empty_window_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs rows"):
        write_feature_drift_report(tmp_path, np.zeros((0, 1)), np.zeros((5, 1)), ["a"], "psi", "x")


@pytest.mark.slow  # evidently builds a report (seconds)
@pytest.mark.parametrize("kind", ["chi2", "ks"])
def test_a_categorical_column_is_reported_as_categories(tmp_path: Path, kind: str) -> None:
    """A category code (a hash) beside a number: chi-squared over both used to fail
    (evidently's chi-squared takes categories only) and KS compared codes as numbers."""
    rng = np.random.default_rng(0)
    codes = np.array([519488.0, 13273890.0, 16496565.0])
    ref = np.column_stack([codes[rng.integers(0, 3, 400)], rng.normal(size=400)])
    cur = np.column_stack([codes[rng.choice(3, 300, p=[0.2, 0.2, 0.6])], rng.normal(size=300)])
    path = write_feature_drift_report(
        tmp_path, ref, cur, ["plan", "spend"], kind, f"cat-{kind}", categorical=["plan"]
    )
    assert path.exists()
