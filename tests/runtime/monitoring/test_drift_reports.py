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
