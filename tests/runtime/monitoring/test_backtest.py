from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runtime.config import parse_config
from runtime.monitoring.backtest import backtest_command


def _stream(tmp_path: Path, name: str = "s.csv") -> Path:
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 1, 3000), rng.normal(1.0, 1, 1000)]
    path = tmp_path / name
    frame = pd.DataFrame({"x": x})
    frame.to_csv(path, index=False) if name.endswith(".csv") else frame.to_parquet(path)
    return path


def test_univariate_default_json_and_truth(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    truth.write_text("[3000]")
    out = json.loads(backtest_command(_stream(tmp_path), None, column=None, truth=truth,
                                      as_json=True, plot=None))
    assert {a["detector"] for a in out["alarms"]} <= {"cusum", "adwin"}
    first = next(a for a in out["alarms"] if a["detector"] == "cusum")
    assert set(first) >= {"index", "onset", "detector", "statistic"}
    assert 3000 <= first["index"] < 3200
    assert out["summary"]["detectors"]["adwin"]["false_alarms"] == 0
    summary = out["summary"]["detectors"]["cusum"]
    assert summary["detected"] == 1 and summary["missed"] == 0 and summary["false_alarms"] == 0
    assert 0 <= summary["mean_delay"] < 200


def test_text_parquet_and_plot(tmp_path: Path) -> None:
    png = tmp_path / "out" / "plot.png"
    text = backtest_command(_stream(tmp_path, "s.parquet"), None, column="x", truth=None,
                            as_json=False, plot=png)
    assert "cusum on x" in text and png.read_bytes()[:4] == b"\x89PNG"  # named by its column


def test_with_a_config(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 3000
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                          "error": (rng.random(n) < 0.1).astype(float)})
    frame.loc[2500:, "b"] += 1.0
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    cfg = parse_config({
        "state_dir": str(tmp_path / "state"), "schema": {"features": ["a", "b"]},
        "source": {"kind": "synthetic", "segments": [{"rows": 10}]},
        "detectors": [{"kind": "ks", "signal": "features"}, {"kind": "adwin"}],
    })
    out = json.loads(backtest_command(path, cfg, column=None, truth=None, as_json=True,
                                      plot=None))
    ks = [a for a in out["alarms"] if a["detector"] == "ks"]
    assert ks and 2500 <= ks[0]["index"] < 2800
    assert out["summary"]["detectors"]["adwin"]["alarms"] == 0


@pytest.mark.parametrize(("content", "message"), [
    ({"a": [1.0, 2.0], "b": [3.0, 4.0]}, "one numeric column"),
    ({"a": ["x", "y"]}, "one numeric column"),
])
def test_errors_are_one_line(
    tmp_path: Path, content: dict[str, list[object]], message: str
) -> None:
    path = tmp_path / "bad.csv"
    pd.DataFrame(content).to_csv(path, index=False)
    with pytest.raises(ValueError, match=message):
        backtest_command(path, None, column=None, truth=None, as_json=False, plot=None)
    with pytest.raises(ValueError, match="no such file"):
        backtest_command(tmp_path / "nope.csv", None, column=None, truth=None, as_json=False,
                         plot=None)
    truth = tmp_path / "t.json"
    truth.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="JSON list"):
        backtest_command(_stream(tmp_path), None, column=None, truth=truth, as_json=False,
                         plot=None)
